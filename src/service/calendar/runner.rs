//! A lockdown and the runner. The runner calls [`pause_if_locked_down`] at the start of
//! every batch (inside the fenced batch transaction, under the change's row lock): during a
//! lockdown the execution is paused there (`paused`, its lease released, like an operator's
//! pause) and the pause is recorded against the lockdown. Confirming the lift resumes
//! exactly those executions that are still paused by it (running again, or baking if it
//! was paused during a bake), in the confirming transaction; an operator's own pause, a
//! halt or an abort meanwhile is left as it is (each resume is one conditional statement).
//! The pause and the lift serialise on the lockdown's row: the runner locks it before
//! pausing (and does not pause once it is lifted), the lift locks it before reading what
//! it paused — so no pause is missed. Lock order: the runner's change row → execution →
//! lockdown row → audit head; the lift's lockdown row → executions (only paused ones, which
//! no runner holds) → audit head.

use crate::db::audit::Actor;
use crate::db::calendar::{self as repo, LockdownRow};
use crate::db::models::{Change, Execution};
use crate::db::{exec as exec_repo, DbConn, WriteTx};
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
    // Its row lock: a lift being confirmed right now either sees this pause or wins.
    if !repo::lock_lockdown(conn, l.id)? {
        return Ok(false);
    }
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
) -> AppResult<()> {
    // After the lift took the lockdown's row lock: every pause the runner committed is
    // visible here, and none can follow. Every execution row first, the audit head (the
    // events) after: an abort holding one of those rows may be waiting for the audit head.
    let mut resumed = Vec::new();
    for exec_id in repo::paused_by(conn, l.id)? {
        repo::mark_resumed(conn, l.id, exec_id)?;
        if let Some(back) = repo::resume_paused(conn, exec_id, PAUSED_BY_LOCKDOWN)? {
            resumed.push((exec_id, back));
        }
    }
    for (exec_id, back) in resumed {
        let Some(e) = exec_repo::get(conn, exec_id)? else {
            continue;
        };
        record(
            conn,
            &Actor::system(),
            Some(e.change_id),
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
