//! The change calendar (issue #13): freezes and lockdowns, what they block, and the views
//! of the calendar.
//!
//! * [`blocking`]: the freeze or lockdown that would block an execution of a change now
//!   (the execute gate's check, and the one to call before a scheduled start);
//! * `proposals`: every calendar act is proposed by an admin and applied when another
//!   admin confirms it, in the confirming transaction;
//! * `runner`: the runner's check before each batch (a lockdown pauses the execution) and
//!   the lift that resumes what the lockdown paused;
//! * `exception`: a soft freeze's exception, one more implementer sign-off;
//! * `feed`: the calendar over a range (JSON, the page) and the iCalendar feed.

mod exception;
mod feed;
mod proposals;
pub(crate) mod runner;

pub use exception::{exceptions, give_exception, offer, ExceptionRequest, ExceptionView};
pub use feed::{
    calendar, feed_token, ics, user_for_feed, CalendarItem, CalendarView, Range, MAX_ITEMS,
};
pub use proposals::{confirm, decline, propose, ProposalRequest, ProposalView};

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::json;

use crate::db::calendar::{self as repo, FreezeRow, LockdownRow};
use crate::db::models::Change;
use crate::db::{users, DbConn};
use crate::domain::calendar::{self as cal, Blocker, Freeze, Recurrence, Severity};
use crate::domain::{Schema, Side};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::views::number;
use crate::service::CurrentUser;

/// A stored freeze as the domain evaluates it (a rule that no longer parses is treated as
/// a freeze that never holds, and logged).
pub(crate) fn to_domain(r: &FreezeRow) -> Freeze {
    let recurrence = r
        .recurrence
        .as_deref()
        .and_then(|t| match Recurrence::parse(t) {
            Ok(rule) => Some(rule),
            Err(e) => {
                tracing::warn!(freeze = r.id, error = %e, "stored freeze rule does not parse");
                None
            }
        });
    Freeze {
        id: r.id,
        name: r.name.clone(),
        severity: r.severity,
        starts_at: r.starts_at,
        // A stored rule this build cannot read fails closed: the freeze holds from its
        // start until its end (or until it is lifted), rather than not at all.
        ends_at: if r.recurrence.is_some() && recurrence.is_none() {
            Some(r.ends_at.unwrap_or_else(|| {
                chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
                    .expect("a valid date")
                    .and_time(chrono::NaiveTime::MIN)
            }))
        } else {
            r.ends_at
        },
        recurrence,
        operations: serde_json::from_str(&r.operations).unwrap_or_default(),
        reason: r.reason.clone(),
    }
}

/// Every freeze in force, for the domain.
pub(crate) fn freezes(conn: &mut DbConn) -> AppResult<Vec<Freeze>> {
    Ok(repo::active_freezes(conn)?.iter().map(to_domain).collect())
}

fn lockdown_blocker(l: &LockdownRow) -> Blocker {
    Blocker::Lockdown {
        lockdown: l.id,
        reason: l.reason.clone(),
        since: l.declared_at,
    }
}

/// The freeze or lockdown that would block an execution of `change` at `at`, if any: a
/// lockdown; else a hard freeze covering its operation; else a soft one for which the
/// change has no exception on its current fingerprint by an implementer who still counts.
/// For scheduled starts (`at` = the start time); the execute gate calls it with now,
/// inside its transaction.
pub fn blocking(
    conn: &mut DbConn,
    _schema: &Schema,
    change: &Change,
    at: NaiveDateTime,
) -> AppResult<Option<Blocker>> {
    if let Some(l) = repo::active_lockdown(conn)? {
        return Ok(Some(lockdown_blocker(&l)));
    }
    let all = freezes(conn)?;
    let holding = cal::holding(&all, &change.operation, at);
    if holding.is_empty() {
        return Ok(None);
    }
    let excepted = excepted_freezes(conn, change)?;
    for (f, (from, until)) in holding {
        if f.severity == Severity::Soft && excepted.contains(&f.id) {
            continue;
        }
        return Ok(Some(Blocker::Freeze {
            freeze: f.id,
            name: f.name.clone(),
            severity: f.severity,
            from,
            until,
        }));
    }
    Ok(None)
}

/// The freezes `change` has a counting exception for: given for its current fingerprint
/// by someone still in the implementing team who is not one of its counted implementer
/// signers (the exception is one *more* sign-off).
fn excepted_freezes(conn: &mut DbConn, change: &Change) -> AppResult<Vec<i64>> {
    let current = change.fingerprint.clone().unwrap_or_default();
    let rows = repo::exceptions_of(conn, change.id)?;
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let implementers: Vec<i64> = crate::db::changes::signoffs(conn, change.id)?
        .into_iter()
        .filter(|(s, _, _)| s.side == Side::Implementer && !s.stale && s.fingerprint == current)
        .map(|(s, _, _)| s.user_id)
        .collect();
    let mut out = Vec::new();
    for r in rows {
        if r.fingerprint != current || implementers.contains(&r.user_id) {
            continue;
        }
        if users::is_member(conn, r.user_id, &change.implementing_team)? {
            out.push(r.freeze_id);
        }
    }
    Ok(out)
}

/// The execute gate's step (in its transaction, under the change's row lock): refuse with
/// `lockdown`, `frozen` (a hard freeze) or `freeze_exception_required` (a soft one).
pub(crate) fn check_gate(conn: &mut DbConn, schema: &Schema, c: &Change) -> AppResult<()> {
    match blocking(conn, schema, c, crate::db::now())? {
        None => Ok(()),
        Some(b) => Err(refusal(c, &b)),
    }
}

/// The refusal a blocker gives.
pub(crate) fn refusal(c: &Change, b: &Blocker) -> AppError {
    let details = json!({"blocker": b});
    match b {
        Blocker::Lockdown { .. } => AppError::new(
            ErrorCode::Lockdown,
            format!("{} cannot run: {}", number(c.id), b.describe()),
        ),
        Blocker::Freeze {
            severity: Severity::Hard,
            ..
        } => AppError::new(
            ErrorCode::Frozen,
            format!("{} cannot run: {}", number(c.id), b.describe()),
        ),
        Blocker::Freeze { freeze, .. } => AppError::new(
            ErrorCode::FreezeExceptionRequired,
            format!(
                "{} cannot run yet: {}; it runs with one more implementer sign-off marked as a freeze exception (POST /api/v1/changes/{}/freeze-exceptions {{\"freeze\": {freeze}, …}})",
                number(c.id),
                b.describe(),
                number(c.id)
            ),
        ),
    }
    .with_details(details)
}

/// Resume and continue refuse while a lockdown is in force (`lockdown`).
pub(crate) fn check_not_locked_down(conn: &mut DbConn, c: &Change) -> AppResult<()> {
    match repo::active_lockdown(conn)? {
        None => Ok(()),
        Some(l) => Err(refusal(c, &lockdown_blocker(&l))),
    }
}

/// The lockdown in force, for the banner on every page: its reason and since when.
pub fn lockdown_banner(conn: &mut DbConn) -> AppResult<Option<String>> {
    Ok(repo::active_lockdown(conn)?.map(|l| {
        format!(
            "Lockdown since {} UTC: {} — no execution starts, running ones pause at their next batch.",
            l.declared_at.format("%Y-%m-%d %H:%M"),
            l.reason
        )
    }))
}

// ---- views ----

#[derive(Debug, Clone, Serialize)]
pub struct FreezeView {
    pub id: i64,
    pub name: String,
    pub severity: Severity,
    pub starts_at: NaiveDateTime,
    pub ends_at: Option<NaiveDateTime>,
    pub recurrence: Option<String>,
    /// In words: "every Friday at 16:00 UTC for 2d16h".
    pub when: String,
    /// Empty: every operation.
    pub operations: Vec<String>,
    pub reason: String,
    pub proposed_by: String,
    pub confirmed_by: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub lifted_at: Option<NaiveDateTime>,
    /// Holding right now.
    pub holding: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockdownView {
    pub id: i64,
    pub reason: String,
    pub proposed_by: String,
    pub confirmed_by: String,
    pub declared_at: NaiveDateTime,
    pub lifted_at: Option<NaiveDateTime>,
    pub lift_reason: Option<String>,
    pub lift_proposed_by: Option<String>,
    pub lift_confirmed_by: Option<String>,
}

pub(crate) fn email_of(conn: &mut DbConn, id: i64) -> AppResult<String> {
    Ok(users::find_user(conn, id)?
        .map(|u| u.email)
        .unwrap_or_else(|| format!("user {id}")))
}

pub(crate) fn freeze_view(conn: &mut DbConn, r: &FreezeRow) -> AppResult<FreezeView> {
    let f = to_domain(r);
    Ok(FreezeView {
        id: r.id,
        name: r.name.clone(),
        severity: r.severity,
        starts_at: r.starts_at,
        ends_at: r.ends_at,
        recurrence: r.recurrence.clone(),
        when: f.when(),
        holding: r.lifted_at.is_none() && f.holding_at(crate::db::now()).is_some(),
        operations: f.operations,
        reason: r.reason.clone(),
        proposed_by: email_of(conn, r.proposed_by)?,
        confirmed_by: email_of(conn, r.confirmed_by)?,
        created_at: r.created_at,
        updated_at: r.updated_at,
        lifted_at: r.lifted_at,
    })
}

pub(crate) fn lockdown_view(conn: &mut DbConn, l: &LockdownRow) -> AppResult<LockdownView> {
    let opt = |conn: &mut DbConn, id: Option<i64>| -> AppResult<Option<String>> {
        id.map(|i| email_of(conn, i)).transpose()
    };
    Ok(LockdownView {
        id: l.id,
        reason: l.reason.clone(),
        proposed_by: email_of(conn, l.proposed_by)?,
        confirmed_by: email_of(conn, l.confirmed_by)?,
        declared_at: l.declared_at,
        lifted_at: l.lifted_at,
        lift_reason: l.lift_reason.clone(),
        lift_proposed_by: opt(conn, l.lift_proposed_by)?,
        lift_confirmed_by: opt(conn, l.lift_confirmed_by)?,
    })
}

/// The calendar's state: freezes in force, the lockdown (if any), proposals waiting for a
/// second admin and the latest decided ones. Anyone signed in reads it.
#[derive(Debug, Clone, Serialize)]
pub struct CalendarState {
    pub freezes: Vec<FreezeView>,
    pub lockdown: Option<LockdownView>,
    pub pending: Vec<ProposalView>,
    pub decided: Vec<ProposalView>,
}

pub fn state(conn: &mut DbConn) -> AppResult<CalendarState> {
    crate::db::snapshot(conn, |conn| {
        let freezes = repo::active_freezes(conn)?
            .iter()
            .map(|r| freeze_view(conn, r))
            .collect::<AppResult<Vec<_>>>()?;
        let lockdown = match repo::active_lockdown(conn)? {
            Some(l) => Some(lockdown_view(conn, &l)?),
            None => None,
        };
        let pending = repo::proposals(conn, true, 200)?
            .iter()
            .map(|p| proposals::view(conn, p))
            .collect::<AppResult<Vec<_>>>()?;
        let decided = repo::proposals(conn, false, 20)?
            .iter()
            .map(|p| proposals::view(conn, p))
            .collect::<AppResult<Vec<_>>>()?;
        Ok(CalendarState {
            freezes,
            lockdown,
            pending,
            decided,
        })
    })
}

/// One freeze (lifted ones too).
pub fn freeze(conn: &mut DbConn, id: i64) -> AppResult<FreezeView> {
    let r = repo::freeze(conn, id)?.ok_or_else(|| AppError::not_found("freeze", id))?;
    freeze_view(conn, &r)
}

/// Only admins propose, confirm or decline calendar acts.
pub(crate) fn require_admin(user: &CurrentUser, what: &str) -> AppResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Forbidden,
            format!("only an admin can {what}; a second admin confirms it"),
        ))
    }
}

/// The freezes a change's window overlaps ("Year end (hard)"); a change without a window
/// is marked with the freezes that hold now. The queue's mark.
pub(crate) fn marks(all: &[Freeze], c: &Change) -> Vec<String> {
    let t = crate::db::now();
    let (from, to) = match (c.not_before, c.not_after) {
        (None, None) => (t, t + chrono::Duration::seconds(1)),
        (Some(a), None) => (a, a + chrono::Duration::days(365)),
        (None, Some(b)) => (t.min(b), b),
        (Some(a), Some(b)) => (a, b.max(a + chrono::Duration::seconds(1))),
    };
    cal::overlapping(all, &c.operation, from, to)
        .into_iter()
        .map(|(f, _)| format!("{} ({})", f.name, f.severity.as_str()))
        .collect()
}

/// The freezes that cover `operation` and overlap the window `[from, to)`: the new-change
/// form's warning and the queue's mark. An open end is a year from the other end.
pub fn overlapping(
    conn: &mut DbConn,
    operation: &str,
    from: Option<NaiveDateTime>,
    to: Option<NaiveDateTime>,
) -> AppResult<Vec<String>> {
    let (from, to) = match (from, to) {
        (None, None) => return Ok(vec![]),
        (Some(f), None) => (f, f + chrono::Duration::days(365)),
        (None, Some(t)) => (crate::db::now().min(t), t),
        (Some(f), Some(t)) => (f, t),
    };
    if to <= from {
        return Ok(vec![]);
    }
    let all = freezes(conn)?;
    Ok(cal::overlapping(&all, operation, from, to)
        .into_iter()
        .map(|(f, (s, e))| {
            format!(
                "the {} freeze “{}” holds from {} to {} UTC",
                f.severity.as_str(),
                f.name,
                s.format("%Y-%m-%d %H:%M"),
                e.format("%Y-%m-%d %H:%M")
            )
        })
        .collect())
}
