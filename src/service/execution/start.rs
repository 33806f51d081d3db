//! The execute gate: an approved change starts running only with the fingerprint that was
//! signed, while its approval still holds, inside its window, after a fresh resolution
//! gives the same list, and when its budget has room for it — checked in that order, in one write transaction under the
//! change's row lock.

use serde::Deserialize;
use serde_json::json;

use super::operation;
use super::progress::{progress, ExecutionView};
use crate::db::models::{Change, Signoff};
use crate::db::users;
use crate::db::{changes as change_repo, exec as repo, now, write_tx, DbConn, WriteTx};
use crate::domain::access::ChangeAction;
use crate::domain::event::Event;
use crate::domain::execution::plan_waves;
use crate::domain::resolution::{short_fingerprint, ResolutionError};
use crate::domain::signoff::{self, SignoffRecord};
use crate::domain::{ChangeState, Operation, Schema, Side};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::budget;
use crate::service::changes::{
    effect_for, locked, move_state, policy_for, records, require, reresolve_locked, ResolveOutcome,
};
use crate::service::events::record;
use crate::service::expiry;
use crate::service::views::{number, tier_of};
use crate::service::CurrentUser;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    pub fingerprint: String,
}

/// A step of the gate that may send the change back: `Ok(())` goes on; `Err(refusal)`
/// refuses the execution but commits what the step wrote (the change sent back, its
/// stale sign-offs), unlike an error of the transaction, which rolls everything back.
type Gate = Result<(), AppError>;

/// Start executing an approved change.
#[tracing::instrument(name = "execution::execute", skip_all, fields(change = id, user = user.id))]
pub fn execute(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: &ExecuteRequest,
) -> AppResult<ExecutionView> {
    gate(conn, schema, user, id, req, None)
}

/// The gate for a due scheduled start: the same, provided the schedule created at
/// `scheduled` is still there under the change's row lock (a start called off, or
/// scheduled again, after the worker read it does not run).
pub(crate) fn execute_scheduled(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: &ExecuteRequest,
    scheduled: chrono::NaiveDateTime,
) -> AppResult<ExecutionView> {
    gate(conn, schema, user, id, req, Some(scheduled))
}

fn gate(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: &ExecuteRequest,
    scheduled: Option<chrono::NaiveDateTime>,
) -> AppResult<ExecutionView> {
    let started = write_tx(conn, |conn| -> AppResult<Result<i64, AppError>> {
        let c = locked(conn, id)?;
        // Lock order: the change row, the gates' conflict lock, then the audit head.
        repo::lock_gates(conn)?;
        if let Some(created) = scheduled {
            let still = repo::scheduled_start(conn, id)?
                .is_some_and(|s| s.created_at == created && s.fingerprint == req.fingerprint);
            if !still {
                return Err(AppError::new(
                    ErrorCode::NotFound,
                    format!("the scheduled start of {} was called off", number(id)),
                ));
            }
        }
        check_allowed(conn, schema, user, &c)?;
        let current = check_fingerprint(&c, &req.fingerprint)?;
        let op = operation(schema, &c)?;
        if let Err(refused) = check_approval(conn, schema, user, &c, op, &current)? {
            return Ok(Err(refused));
        }
        check_window(&c)?;
        // A lockdown or a freeze that holds now (the change's row lock is held).
        crate::service::calendar::check_gate(conn, schema, &c)?;
        if let Err(refused) = check_resolution(conn, schema, user, &c)? {
            return Ok(Err(refused));
        }
        // The same list may still need another policy now (it selects everything since a
        // root left the inventory): the approval must hold under the fresh resolution's.
        let c =
            change_repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        if let Err(refused) = check_approval(conn, schema, user, &c, op, &current)? {
            return Ok(Err(refused));
        }
        budget::check_gate(conn, schema, &c)?;
        check_conflicts(conn, &c)?;
        start(conn, user, &c, op, &current).map(Ok)
    })?;
    started?;
    progress(conn, id)
}

/// May this person execute the change? The two refusals the gate gives with more words
/// are left to their own steps: approval no longer holding ([`check_approval`], which
/// also sends the change back) and the window ([`check_window`], with the times).
fn check_allowed(
    conn: &mut WriteTx<'_>,
    schema: &Schema,
    user: &CurrentUser,
    c: &Change,
) -> AppResult<()> {
    match require(conn, schema, user, c, ChangeAction::Execute) {
        // A signer left their team: go back for sign-off below (committed), naming them.
        Err(e) if e.code() == ErrorCode::SignoffsNoLongerCount => Ok(()),
        // The window has its own message with the times.
        Err(e) if e.code() == ErrorCode::OutsideWindow => Ok(()),
        // A lockdown or freeze: `calendar::check_gate` names it, with the details.
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::Lockdown | ErrorCode::Frozen | ErrorCode::FreezeExceptionRequired
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The fingerprint the caller sends must be the change's: execute exactly what was
/// signed. Returns the current fingerprint.
fn check_fingerprint(c: &Change, given: &str) -> AppResult<String> {
    let current = c.fingerprint.clone().unwrap_or_default();
    if given.trim() != current {
        return Err(AppError::new(
            ErrorCode::FingerprintMismatch,
            format!(
                "{} was signed for {}, not for {}: execute exactly what was signed",
                number(c.id),
                short_fingerprint(&current),
                short_fingerprint(given.trim())
            ),
        )
        .with_details(json!({"current_fingerprint": current})));
    }
    Ok(current)
}

/// Sign-offs stay earned until execution: each counted signer must still be in the side's
/// team, and no counted sign-off may be older than the operation's
/// `signoffs_expire_after`. Otherwise the change goes back for sign-off (committed, with
/// the expiry recorded as the sweep records it) and the execution is refused, naming who
/// no longer counts, or whose sign-off expired and when.
fn check_approval(
    conn: &mut WriteTx<'_>,
    schema: &Schema,
    user: &CurrentUser,
    c: &Change,
    op: &Operation,
    current: &str,
) -> AppResult<Gate> {
    let rows = change_repo::signoffs(conn, c.id)?;
    let recs = records(conn, schema, c, &rows)?;
    let policy = policy_for(op, c);
    if signoff::is_approved(&recs, policy, current) {
        return Ok(Ok(()));
    }
    let reviewing = tier_of(op, c).reviewer_team();
    let left = no_longer_counting(conn, c, &rows, &recs, current, reviewing)?;
    let expired = expiry::expired_on_current(schema, c, &rows, &recs);
    let described: Vec<String> = expired.iter().map(expiry::describe).collect();
    let mut why = Vec::new();
    if !left.is_empty() {
        why.push(format!("sign-offs no longer count: {}", left.join("; ")));
    }
    if !described.is_empty() {
        why.push(format!("sign-offs expired: {}", described.join("; ")));
    }
    let reason = if why.is_empty() {
        // Nobody left and nothing expired: the policy as resolved now asks for more (a
        // larger list moved it to a stricter tier).
        let m = signoff::missing(&recs, policy, current);
        let teams = [
            (m.requester, c.requesting_team.as_str(), "requester"),
            (m.implementer, c.implementing_team.as_str(), "implementer"),
            (m.reviewer, reviewing.unwrap_or_default(), "third"),
        ];
        let needs: Vec<String> = teams
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, team, side)| format!("{n} more from `{team}` ({side} side)"))
            .collect();
        format!(
            "the current fingerprint does not have every sign-off its policy needs now: {}",
            needs.join(", ")
        )
    } else {
        why.join("; ")
    };
    move_state(
        conn,
        &user.actor(),
        c.id,
        (ChangeState::Approved, ChangeState::AwaitingSignoff),
        reason.clone(),
    )?;
    let details = json!({"no_longer_counting": left, "expired": expired});
    expiry::record_expired(conn, &user.actor(), c, expired, true)?;
    // Only expiries: its own code; a signer who left (too): the older one.
    let code = if left.is_empty() && !described.is_empty() {
        ErrorCode::SignoffsExpired
    } else {
        ErrorCode::SignoffsNoLongerCount
    };
    Ok(Err(AppError::new(
        code,
        format!(
            "{reason}; {} is back to awaiting_signoff and needs new sign-offs",
            number(c.id)
        ),
    )
    .with_details(details)))
}

/// Who signed the current fingerprint but no longer counts, in words: "ann@… (requester
/// side) is no longer a member of `app-owners`".
fn no_longer_counting(
    conn: &mut WriteTx<'_>,
    c: &Change,
    rows: &[(Signoff, String, String)],
    recs: &[SignoffRecord],
    current: &str,
    reviewing: Option<&str>,
) -> AppResult<Vec<String>> {
    let mut left: Vec<String> = Vec::new();
    for r in recs
        .iter()
        .filter(|r| !r.stale && r.fingerprint == current && !r.earned && !r.expired)
    {
        // Each record with its own row.
        let Some((s, email, _)) = rows.iter().find(|(s, _, _)| s.id == r.id) else {
            continue;
        };
        let (team, joined) = match r.side {
            Side::Requester => (
                c.requesting_team.as_str(),
                users::is_member(conn, r.user_id, &c.implementing_team)?
                    .then_some(" or is now in the implementing team"),
            ),
            Side::Implementer => (c.implementing_team.as_str(), None),
            // A review under a policy that names no third side now is not needed either.
            Side::Reviewer => match reviewing {
                Some(t) => (
                    t,
                    (users::is_member(conn, r.user_id, &c.requesting_team)?
                        || users::is_member(conn, r.user_id, &c.implementing_team)?)
                    .then_some(" or is now in one of the change's teams"),
                ),
                None => continue,
            },
        };
        if !users::deactivated_among(conn, &[r.user_id])?.is_empty() {
            left.push(format!("{email} ({} side) is deactivated", s.side));
            continue;
        }
        left.push(format!(
            "{email} ({} side) is no longer a member of `{team}`{}",
            s.side,
            joined.unwrap_or("")
        ));
    }
    Ok(left)
}

/// Now must be inside the change's window (`not_before`, `not_after`).
fn check_window(c: &Change) -> AppResult<()> {
    let t = now();
    if let Some(nb) = c.not_before {
        if t < nb {
            return Err(AppError::new(
                ErrorCode::OutsideWindow,
                format!(
                    "{} may not run before {} UTC",
                    number(c.id),
                    nb.format("%Y-%m-%d %H:%M")
                ),
            )
            .with_details(json!({"not_before": nb, "now": t})));
        }
    }
    if let Some(na) = c.not_after {
        if t > na {
            return Err(AppError::new(
                ErrorCode::OutsideWindow,
                format!(
                    "{}'s window closed at {} UTC; edit the window and sign again",
                    number(c.id),
                    na.format("%Y-%m-%d %H:%M")
                ),
            )
            .with_details(json!({"not_after": na, "now": t})));
        }
    }
    Ok(())
}

/// Resolve again against today's inventory: it must still be the signed list, and the
/// change still approved. Otherwise the re-resolution's writes (stale sign-offs, the
/// change sent back) are committed and the execution refused.
fn check_resolution(
    conn: &mut WriteTx<'_>,
    schema: &Schema,
    user: &CurrentUser,
    c: &Change,
) -> AppResult<Gate> {
    let id = c.id;
    let outcome: ResolveOutcome = reresolve_locked(
        conn,
        schema,
        c,
        &user.actor(),
        "re-resolved before execution",
    )?;
    if outcome.fingerprint_changed {
        let msg = format!(
            "the inventory changed since {} was signed ({} target(s) added, {} removed); it is back to {} and needs new sign-offs",
            number(id),
            outcome.added,
            outcome.removed,
            outcome.state
        );
        // Commit the stale sign-offs and the state change, refuse the execution.
        return Ok(Err(AppError::new(ErrorCode::StaleFingerprint, msg)
            .with_details(serde_json::to_value(&outcome).expect("outcome"))));
    }
    if outcome.state != ChangeState::Approved {
        // The resolution or the teams no longer hold (e.g. the schema no longer lets the
        // requesting team request this operation): back to draft, committed.
        let why = change_repo::get(conn, id)?
            .and_then(|f| serde_json::from_str::<Vec<ResolutionError>>(&f.errors).ok())
            .and_then(|e| e.first().map(|e| e.message.clone()))
            .unwrap_or_else(|| "the change can no longer be signed as it is".into());
        return Ok(Err(AppError::new(
            ErrorCode::NotApproved,
            format!("{} is back to {}: {why}", number(id), outcome.state),
        )));
    }
    Ok(Ok(()))
}

/// No other change's execution in progress may hold any of this change's targets: two
/// changes never act on the same target at once. Inside the gate's transaction, after the
/// change's row lock; the check holds a lock until commit, so two gates of overlapping
/// changes cannot both pass (the second waits for the first's commit and sees it).
pub(crate) fn check_conflicts(conn: &mut WriteTx<'_>, c: &Change) -> AppResult<()> {
    let sharing = repo::sharing_targets(conn, c.id)?;
    if sharing.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = sharing
        .iter()
        .map(|(other, n)| format!("{} ({n} shared target(s))", number(*other)))
        .collect();
    Err(AppError::new(
        ErrorCode::ConflictingExecution,
        format!(
            "{} shares targets with {} whose execution is in progress; it can start once that one finishes or is aborted (or schedule it to start then)",
            number(c.id),
            named.join(", ")
        ),
    )
    .with_details(json!({
        "changes": sharing
            .iter()
            .map(|(other, n)| json!({"change": number(*other), "change_id": other, "shared_targets": n}))
            .collect::<Vec<_>>()
    })))
}

/// Create the execution (one item per signed target, in waves), move the change to
/// `executing` and record the start. Returns the execution's id.
fn start(
    conn: &mut WriteTx<'_>,
    user: &CurrentUser,
    c: &Change,
    op: &Operation,
    current: &str,
) -> AppResult<i64> {
    let id = c.id;
    let effect = effect_for(op, c).ok_or_else(|| {
        AppError::new(
            ErrorCode::NotReversible,
            format!("{} has no inverse", op.label),
        )
    })?;
    let waves = plan_waves(c.target_count as u64, &op.waves);
    let e = repo::create(conn, id, current, effect, &waves, c.target_count, user.id)?;
    change_repo::set_state(conn, id, ChangeState::Executing)?;
    // Started (by hand or when due): a scheduled start is spent.
    repo::delete_schedule(conn, id)?;
    record(
        conn,
        &user.actor(),
        Some(id),
        Event::ExecutionStarted {
            execution_id: e.id,
            fingerprint: current.to_string(),
            effect,
            targets: c.target_count as u64,
            waves: waves.iter().map(|w| w.len()).collect(),
        },
    )?;
    Ok(e.id)
}
