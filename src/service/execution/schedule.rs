//! Scheduled starts (issue #13): the implementing team lets an approved change start by
//! itself — at its window's opening (`not_before`), at a time inside the window, or as
//! soon as the changes sharing its targets finish. When it is due, the worker runs the
//! whole execute gate under the authority of the person who scheduled it: still approved,
//! the same fingerprint, fresh, inside the window, within budget, no conflicting execution
//! (and whatever else the gate checks). A start the gate refuses runs nothing: the
//! schedule is called off and the change's people are mailed why; one waiting for
//! conflicts keeps waiting while its window is open.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use serde::Deserialize;
use serde_json::json;

use super::start::{execute_scheduled, ExecuteRequest};
use crate::db::models::ScheduledStart;
use crate::db::{exec as repo, now, users, write_tx, DbConn, Pool};
use crate::domain::access::ChangeAction;
use crate::domain::event::Event;
use crate::domain::lines::clip_to;
use crate::domain::resolution::short_fingerprint;
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::{locked, require};
use crate::service::events::record;
use crate::service::views::{number, schedule_view as view, ScheduleView};
use crate::service::CurrentUser;

/// `POST /api/v1/changes/{id}/schedule`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The fingerprint that was signed: the start executes exactly that.
    pub fingerprint: String,
    /// `"window"` (the default): the window's opening; `"now"`: as soon as nothing
    /// conflicts; or an RFC 3339 time inside the window.
    #[serde(default)]
    pub at: Option<String>,
    /// Refused only because another execution shares targets: wait and try again
    /// (always on for `"now"`).
    #[serde(default)]
    pub wait_for_conflicts: bool,
}

fn invalid(msg: String) -> AppError {
    AppError::new(ErrorCode::InvalidStart, msg)
}

/// When the start is due, from the request and the change's window.
fn start_time(
    at: Option<&str>,
    not_before: Option<NaiveDateTime>,
    not_after: Option<NaiveDateTime>,
    t: NaiveDateTime,
) -> AppResult<NaiveDateTime> {
    let at = at
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("window");
    let when = match at {
        "now" => t,
        "window" => match not_before {
            Some(nb) if nb > t => nb,
            Some(_) => {
                return Err(invalid(
                    "the window is open already: execute it now, or schedule it with `at` = \"now\" to start as soon as nothing conflicts".into(),
                ))
            }
            None => {
                return Err(invalid(
                    "the change has no window opening (`not_before`) to start at: give `at` (\"now\" or an RFC 3339 time)".into(),
                ))
            }
        },
        other => chrono::DateTime::parse_from_rfc3339(other)
            .map_err(|e| {
                invalid(format!(
                    "`at` must be \"window\", \"now\" or an RFC 3339 time such as 2026-12-20T08:00:00Z, not `{}` ({e})",
                    clip_to(other, 60)
                ))
            })?
            .naive_utc(),
    };
    if at != "now" && when < t {
        return Err(invalid(format!(
            "{} UTC is in the past",
            when.format("%Y-%m-%d %H:%M:%S")
        )));
    }
    if let Some(nb) = not_before.filter(|nb| when < *nb) {
        return Err(invalid(format!(
            "the change may not run before {} UTC (its window)",
            nb.format("%Y-%m-%d %H:%M")
        )));
    }
    if let Some(na) = not_after.filter(|na| when > *na) {
        return Err(invalid(format!(
            "the change's window closes at {} UTC, before that start",
            na.format("%Y-%m-%d %H:%M")
        )));
    }
    Ok(when)
}

/// Schedule an approved change's start (implementing team).
#[tracing::instrument(name = "execution::schedule", skip_all, fields(change = id, user = user.id))]
pub fn schedule(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: &ScheduleRequest,
) -> AppResult<ScheduleView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Schedule)?;
        let current = c.fingerprint.clone().unwrap_or_default();
        if req.fingerprint.trim() != current {
            return Err(AppError::new(
                ErrorCode::FingerprintMismatch,
                format!(
                    "{} was signed for {}, not for {}: schedule exactly what was signed",
                    number(id),
                    short_fingerprint(&current),
                    short_fingerprint(req.fingerprint.trim())
                ),
            )
            .with_details(json!({"current_fingerprint": current})));
        }
        let t = now();
        let at = start_time(req.at.as_deref(), c.not_before, c.not_after, t)?;
        let wait = req.wait_for_conflicts || req.at.as_deref().map(str::trim) == Some("now");
        repo::insert_schedule(
            conn,
            &ScheduledStart {
                change_id: id,
                start_at: at,
                fingerprint: current.clone(),
                scheduled_by: user.id,
                wait_for_conflicts: wait,
                waiting_on: None,
                created_at: t,
            },
        )?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::StartScheduled {
                at,
                fingerprint: current,
                wait_for_conflicts: wait,
            },
        )?;
        Ok(())
    })?;
    view(conn, id)?.ok_or_else(|| AppError::not_found("scheduled start of", number(id)))
}

/// Call a scheduled start off (implementing team or an admin).
#[tracing::instrument(name = "execution::unschedule", skip_all, fields(change = id, user = user.id))]
pub fn unschedule(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: Option<&str>,
) -> AppResult<()> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Unschedule)?;
        repo::delete_schedule(conn, id)?;
        let why = reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| format!(": {}", clip_to(r, 500)))
            .unwrap_or_default();
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::StartUnscheduled {
                reason: format!("called off by {}{why}", user.email),
                refused: false,
            },
        )?;
        Ok(())
    })
}

/// How often the worker looks for due starts.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Most due starts tried per look.
const PER_LOOK: i64 = 20;

/// Starts due changes from the worker (`exec::run`), at most every [`LOOK_EVERY`], also
/// between the batches of a long execution.
#[derive(Debug, Default)]
pub struct Starter {
    last: Option<Instant>,
}

impl Starter {
    pub fn tick(&mut self, pool: &Pool, schema: &Schema) -> bool {
        if self.last.is_some_and(|t| t.elapsed() < LOOK_EVERY) {
            return false;
        }
        self.last = Some(Instant::now());
        let started = pool
            .get()
            .map_err(AppError::from)
            .and_then(|mut conn| start_due(&mut conn, schema));
        match started {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, "could not start scheduled changes");
                false
            }
        }
    }
}

/// Try every due start once; how many started.
pub fn start_due(conn: &mut DbConn, schema: &Schema) -> AppResult<usize> {
    let mut started = 0;
    for id in repo::due_schedules(conn, now(), PER_LOOK)? {
        let Some(s) = repo::scheduled_start(conn, id)? else {
            continue;
        };
        let Some(person) = users::find_user(conn, s.scheduled_by)? else {
            refuse(
                conn,
                id,
                "the person who scheduled it no longer exists".into(),
            )?;
            continue;
        };
        // Still waiting: a cheap look first, not a whole gate (a fresh resolution) a second.
        let closed = crate::db::changes::get(conn, id)?
            .and_then(|c| c.not_after)
            .is_some_and(|na| now() > na);
        if s.wait_for_conflicts && !closed {
            let sharing = repo::sharing_targets(conn, id)?;
            if !sharing.is_empty() {
                let on: Vec<String> = sharing.iter().map(|(c, _)| number(*c)).collect();
                let on = on.join(", ");
                if s.waiting_on.as_deref() != Some(on.as_str()) {
                    repo::set_waiting_on(conn, id, Some(&on))?;
                }
                continue;
            }
        }
        let user = CurrentUser::load(conn, person)?;
        let req = ExecuteRequest {
            fingerprint: s.fingerprint.clone(),
        };
        // The gate removes the schedule in the transaction that starts the execution.
        match execute_scheduled(conn, schema, &user, id, &req, s.created_at) {
            Ok(_) => {
                tracing::info!(change = id, "scheduled start began");
                started += 1;
            }
            // A conflict that began since the look: wait for the next.
            Err(e) if e.code() == ErrorCode::ConflictingExecution && s.wait_for_conflicts => {}
            // Called off (or scheduled anew) since it was read: nothing to do.
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => {
                tracing::warn!(change = id, error = %e, "scheduled start refused");
                refuse(conn, id, format!("the execute gate refused it: {e}"))?;
            }
        }
    }
    Ok(started)
}

/// Call a due start off because it cannot happen, and tell the change's people.
fn refuse(conn: &mut DbConn, id: i64, reason: String) -> AppResult<()> {
    write_tx(conn, |conn| -> AppResult<()> {
        locked(conn, id)?;
        // Gone already when the refusing gate sent the change back (it leaves `approved`,
        // which drops the schedule in its committed transaction): recorded all the same.
        repo::delete_schedule(conn, id)?;
        record(
            conn,
            &crate::db::audit::Actor::system(),
            Some(id),
            Event::StartUnscheduled {
                reason,
                refused: true,
            },
        )?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().naive_utc()
    }

    #[test]
    fn start_times() {
        let now = t("2026-12-03T12:00:00Z");
        let opens = t("2026-12-04T08:00:00Z");
        let (nb, na) = (Some(opens), Some(t("2026-12-04T18:00:00Z")));
        assert_eq!(start_time(None, nb, na, now).unwrap(), opens);
        assert_eq!(start_time(Some("now"), None, None, now).unwrap(), now);
        assert_eq!(
            start_time(Some("2026-12-04T09:30:00+01:00"), nb, na, now).unwrap(),
            t("2026-12-04T08:30:00Z")
        );
        let e = |at: Option<&str>, nb, na| start_time(at, nb, na, now).unwrap_err().to_string();
        assert!(e(None, None, None).contains("no window opening"));
        assert!(e(None, Some(t("2026-12-01T00:00:00Z")), None).contains("open already"));
        assert!(e(Some("tomorrow"), None, None).contains("not `tomorrow`"));
        assert!(e(Some("2026-12-01T00:00:00Z"), None, None).contains("in the past"));
        assert!(e(Some("2026-12-04T07:00:00Z"), nb, na).contains("may not run before"));
        assert!(e(Some("2026-12-05T07:00:00Z"), nb, na).contains("closes at"));
    }
}
