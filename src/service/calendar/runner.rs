//! A lockdown and the runner. The runner calls [`pause_if_locked_down`] at the start of
//! every batch (inside the fenced batch transaction, under the change's row lock): during a
//! lockdown the execution is paused there (`paused`, its lease released, like an operator's
//! pause) and the pause is recorded against the lockdown. Confirming the lift resumes
//! exactly those executions that are still paused by it (running again, or baking if it
//! was paused during a bake), in the confirming transaction; an operator's own pause, a
//! halt or an abort meanwhile is left as it is.

use crate::db::audit::Actor;
use crate::db::calendar::{self as repo, LockdownRow};
use crate::db::models::{Change, Execution};
use crate::db::{changes as change_repo, exec as exec_repo, DbConn, WriteTx};
use crate::domain::event::Event;
use crate::domain::execution::ExecState;
use crate::domain::ChangeState;
use crate::error::AppResult;
use crate::service::events::record;
use crate::service::CurrentUser;

/// How many changes a lockdown's declaration and lift are recorded on (and mailed about).
const MAX_TOLD: i64 = 10_000;

/// The text a lockdown's pause starts with; its lift resumes only pauses that still say so.
const PAUSED_BY_LOCKDOWN: &str = "paused by the lockdown";

fn pause_reason(l: &LockdownRow) -> String {
    format!(
        "{PAUSED_BY_LOCKDOWN} of {} UTC: {}; it goes on by itself when the lockdown is lifted",
        l.declared_at.format("%Y-%m-%d %H:%M"),
        crate::domain::lines::clip_to(&l.reason, 300)
    )
}

/// In the runner's fenced batch transaction: pause the execution when a lockdown is in
/// force. `true`: it is paused now, stop.
pub(crate) fn pause_if_locked_down(
    conn: &mut WriteTx<'_>,
    e: &Execution,
    c: &Change,
) -> AppResult<bool> {
    let Some(l) = repo::active_lockdown(conn)? else {
        return Ok(false);
    };
    let reason = pause_reason(&l);
    exec_repo::set_state(conn, e.id, ExecState::Paused, None)?;
    exec_repo::set_between_waves(conn, e.id, e.bake_until, Some(&reason))?;
    repo::record_pause(conn, l.id, e.id)?;
    record(
        conn,
        &Actor::system(),
        Some(c.id),
        Event::ExecutionPausedByLockdown {
            execution_id: e.id,
            wave: e.current_wave as u32,
            lockdown: l.id,
            reason,
        },
    )?;
    tracing::warn!(lockdown = l.id, "execution paused by the lockdown");
    Ok(true)
}

/// Before a lift: lock the change rows of the executions the lockdown paused (change id
/// order), the first locks the confirming transaction takes after the calendar's.
/// Returns (execution, change) pairs.
pub(super) fn lock_paused(conn: &mut DbConn, lockdown: i64) -> AppResult<Vec<(i64, i64)>> {
    let mut pairs = Vec::new();
    for e in repo::paused_by(conn, lockdown)? {
        if let Some(x) = exec_repo::get(conn, e)? {
            pairs.push((x.id, x.change_id));
        }
    }
    pairs.sort_by_key(|p| p.1);
    for (_, c) in &pairs {
        change_repo::lock(conn, *c)?;
    }
    Ok(pairs)
}

/// Who is told: the changes that are approved or executing (or halted).
fn told(conn: &mut DbConn) -> AppResult<Vec<i64>> {
    Ok(repo::changes_in_states(
        conn,
        &[
            ChangeState::Approved,
            ChangeState::Executing,
            ChangeState::Halted,
        ],
        MAX_TOLD,
    )?)
}

/// A lockdown came into force: recorded on every approved or executing change, whose
/// people are mailed. The runner pauses the running ones at their next batch.
pub(super) fn declared(
    conn: &mut WriteTx<'_>,
    user: &CurrentUser,
    l: &LockdownRow,
    proposer: &str,
) -> AppResult<()> {
    for c in told(conn)? {
        record(
            conn,
            &user.actor(),
            Some(c),
            Event::LockdownDeclared {
                lockdown: l.id,
                reason: l.reason.clone(),
                proposed_by: proposer.to_string(),
                confirmed_by: user.email.clone(),
            },
        )?;
    }
    Ok(())
}

/// The lockdown is lifted: resume what it paused (still paused by it), tell the same
/// people.
pub(super) fn lifted(
    conn: &mut WriteTx<'_>,
    user: &CurrentUser,
    l: &LockdownRow,
    reason: &str,
    proposer: &str,
    resuming: &[(i64, i64)],
) -> AppResult<()> {
    for (exec_id, change_id) in resuming {
        let Some(e) = exec_repo::get(conn, *exec_id)? else {
            continue;
        };
        let still = e.state == ExecState::Paused
            && e.pause_reason
                .as_deref()
                .is_some_and(|r| r.starts_with(PAUSED_BY_LOCKDOWN));
        repo::mark_resumed(conn, l.id, e.id)?;
        if !still {
            continue;
        }
        let back = if e.bake_until.is_some() {
            ExecState::Baking
        } else {
            ExecState::Running
        };
        exec_repo::set_state(conn, e.id, back, None)?;
        exec_repo::set_between_waves(conn, e.id, e.bake_until, None)?;
        record(
            conn,
            &Actor::system(),
            Some(*change_id),
            Event::ExecutionResumedAfterLockdown {
                execution_id: e.id,
                lockdown: l.id,
                state: back,
            },
        )?;
    }
    for c in told(conn)? {
        record(
            conn,
            &user.actor(),
            Some(c),
            Event::LockdownLifted {
                lockdown: l.id,
                reason: reason.to_string(),
                proposed_by: proposer.to_string(),
                confirmed_by: user.email.clone(),
            },
        )?;
    }
    Ok(())
}
