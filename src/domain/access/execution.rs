//! The rules of the actions on an execution: start and resume it, continue it past a
//! manual gate, pause it, skip the rest of a wave, retry its failed targets, abort it, and
//! roll back what it did. Each reads like that action's row of the table in `mod.rs`.

use super::{refused, when, who, ChangeAction, Denied, Facts, Reason};
use crate::domain::calendar::BlockKind;
use crate::domain::change::ChangeState;
use crate::domain::execution::ExecState;

/// Execute (approved, in the window, with an approval that still holds) and resume
/// (halted): the implementing team, while the operation is in the schema.
pub(super) fn run(f: &Facts<'_>, state: ChangeState, action: ChangeAction) -> Result<(), Denied> {
    use ChangeAction as A;
    use ChangeState as S;
    if !f.in_implementing_team {
        return Err(who(
            Reason::NotImplementer,
            action,
            format!(
                "only members of the implementing team `{}` can {} a change",
                f.implementing_team,
                action.words()
            ),
        ));
    }
    let ok = match action {
        A::Execute => state == S::Approved,
        _ => state == S::Halted,
    };
    if !ok {
        return Err(when(state, action));
    }
    if action == A::Execute && !f.in_window {
        return Err(refused(
            action,
            Reason::OutsideWindow,
            state,
            "now is outside the change's execution window",
        ));
    }
    if action == A::Execute && !f.approval_holds {
        return Err(refused(
            action,
            Reason::SignoffsNoLongerCount,
            state,
            "its sign-offs no longer all count (a signer left their team, or a sign-off expired): it needs new sign-offs",
        ));
    }
    if let Some(k) = f.blocked_by {
        if action == A::Execute || k == BlockKind::Lockdown {
            return Err(blocked(action, state, k));
        }
    }
    if !f.operation_known {
        return Err(refused(
            action,
            Reason::OperationRemoved,
            state,
            "the change's operation is no longer in the schema; it cannot run",
        ));
    }
    Ok(())
}

/// What the change calendar refuses, in words.
fn blocked(action: ChangeAction, state: ChangeState, k: BlockKind) -> Denied {
    let message = match k {
        BlockKind::Lockdown => "a lockdown is in force: nothing starts or goes on until two admins lift it",
        BlockKind::HardFreeze => "a hard freeze holds for this change's operation now",
        BlockKind::SoftFreeze => "a soft freeze holds for this change's operation now: it runs with one more implementer sign-off marked as a freeze exception",
    };
    refused(action, Reason::Blocked(k), state, message)
}

/// Continue an execution paused at a manual gate: the implementing team, while the change
/// is executing and its execution waits there (and no lockdown is in force).
pub(super) fn continue_paused(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Continue;
    implementers(f, action)?;
    if state != ChangeState::Executing {
        return Err(when(state, action));
    }
    if f.blocked_by == Some(BlockKind::Lockdown) {
        return Err(blocked(action, state, BlockKind::Lockdown));
    }
    needs_execution(
        f,
        action,
        state,
        &[ExecState::Paused],
        "the execution is not paused: there is nothing to continue",
    )
}

/// Pause a running or baking execution (it stops at its next batch): the implementing
/// team or an admin, like abort, since stopping is always safe.
pub(super) fn pause(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Pause;
    if !(f.is_admin || f.in_implementing_team) {
        return Err(who(
            Reason::NotImplementer,
            action,
            format!(
                "only members of the implementing team `{}` or an admin can pause an execution",
                f.implementing_team
            ),
        ));
    }
    if state != ChangeState::Executing {
        return Err(when(state, action));
    }
    needs_execution(
        f,
        action,
        state,
        &[ExecState::Running, ExecState::Baking],
        "the execution is not running: only a running or baking execution can be paused",
    )
}

/// Skip the pending targets of the current wave: the implementing team, while the
/// execution is paused or halted (someone stopped to decide).
pub(super) fn skip_wave(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::SkipWave;
    implementers(f, action)?;
    if !matches!(state, ChangeState::Executing | ChangeState::Halted) {
        return Err(when(state, action));
    }
    needs_execution(
        f,
        action,
        state,
        &[ExecState::Paused, ExecState::Halted],
        "pause the execution first: the rest of a wave is skipped only while it is paused or halted",
    )
}

/// Only the implementing team steers an execution forward.
fn implementers(f: &Facts<'_>, action: ChangeAction) -> Result<(), Denied> {
    if f.in_implementing_team {
        return Ok(());
    }
    Err(who(
        Reason::NotImplementer,
        action,
        format!(
            "only members of the implementing team `{}` can {} an execution",
            f.implementing_team,
            action.as_str().replace('_', " ")
        ),
    ))
}

/// The execution must be in one of `states`.
fn needs_execution(
    f: &Facts<'_>,
    action: ChangeAction,
    state: ChangeState,
    states: &[ExecState],
    message: &str,
) -> Result<(), Denied> {
    match f.execution {
        Some(e) if states.contains(&e) => Ok(()),
        Some(e) => Err(refused(
            action,
            Reason::ExecutionState,
            state,
            &format!("{message} (it is {e})"),
        )),
        None => Err(refused(action, Reason::ExecutionState, state, message)),
    }
}

/// Abort an executing or halted change: the implementing team or an admin.
pub(super) fn abort(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Abort;
    if !(f.is_admin || f.in_implementing_team) {
        return Err(who(
            Reason::NotImplementer,
            action,
            format!(
                "only members of the implementing team `{}` or an admin can abort an execution",
                f.implementing_team
            ),
        ));
    }
    if !matches!(state, ChangeState::Executing | ChangeState::Halted) {
        return Err(when(state, action));
    }
    Ok(())
}

/// Roll back an executed change: the change's people, once, when it is not itself a
/// rollback, has an inverse and changed at least one target.
pub(super) fn rollback(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Rollback;
    if !f.involved() {
        return Err(who(
            Reason::Forbidden,
            action,
            format!(
                "only the teams of the change ({}) can roll it back",
                f.teams()
            ),
        ));
    }
    if !state.has_executed() {
        return Err(when(state, action));
    }
    if f.is_rollback {
        return Err(refused(
            action,
            Reason::NotReversible,
            state,
            "a rollback is not rolled back: request a new change for what should happen now",
        ));
    }
    if !f.operation_known || !f.reversible {
        return Err(refused(
            action,
            Reason::NotReversible,
            state,
            "this change's effect has no inverse and cannot be rolled back",
        ));
    }
    if f.has_open_rollback {
        return Err(refused(
            action,
            Reason::AlreadyRolledBack,
            state,
            "this change already has a rollback",
        ));
    }
    if f.executed_targets == 0 {
        return Err(refused(
            action,
            Reason::NothingToRollBack,
            state,
            "the execution changed no target, so there is nothing to roll back",
        ));
    }
    Ok(())
}

/// Skip the targets the drift check held back: the implementing team, while the halted
/// execution has some.
pub(super) fn skip_drifted(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::SkipDrifted;
    implementers(f, action)?;
    if state != ChangeState::Halted {
        return Err(when(state, action));
    }
    if f.drifted_targets == 0 {
        return Err(refused(
            action,
            Reason::ExecutionState,
            state,
            "the drift check held back no target of this execution",
        ));
    }
    Ok(())
}

/// Retry the failed targets: the implementing team, while the execution is halted, or
/// once it ended partially failed or failed, provided something failed, no rollback
/// exists (it would not undo what the retry changes), the operation is still in the
/// schema and the window has not closed.
pub(super) fn retry_failed(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    use ChangeState as S;
    let action = ChangeAction::RetryFailed;
    implementers(f, action)?;
    if !matches!(state, S::Halted | S::PartiallyFailed | S::Failed) {
        return Err(when(state, action));
    }
    if f.failed_targets == 0 {
        return Err(refused(
            action,
            Reason::ExecutionState,
            state,
            "no target of this execution failed: there is nothing to retry",
        ));
    }
    // A retry of an ended execution starts it again, as execute does: its sign-offs must
    // still count (nobody left, nothing expired).
    if state != S::Halted && !f.approval_holds {
        return Err(refused(
            action,
            Reason::SignoffsNoLongerCount,
            state,
            "its sign-offs no longer all count (a signer left their team, or a sign-off expired): request the rest as a new change",
        ));
    }
    // A retry of an ended execution starts it again: any calendar block; a halted one
    // goes on like a resume: only a lockdown.
    if let Some(k) = f.blocked_by {
        if k == BlockKind::Lockdown || state != S::Halted {
            return Err(blocked(action, state, k));
        }
    }
    if f.has_open_rollback {
        return Err(refused(
            action,
            Reason::AlreadyRolledBack,
            state,
            "this change has a rollback, which would not undo what a retry changes",
        ));
    }
    if !f.operation_known {
        return Err(refused(
            action,
            Reason::OperationRemoved,
            state,
            "the change's operation is no longer in the schema; it cannot run",
        ));
    }
    if !f.in_window {
        return Err(refused(
            action,
            Reason::OutsideWindow,
            state,
            "now is outside the change's execution window",
        ));
    }
    Ok(())
}

/// Schedule the start of an approved change: the implementing team, while its approval
/// holds and nothing is scheduled yet (the due start goes through the whole execute gate).
pub(super) fn schedule(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Schedule;
    implementers(f, action)?;
    if state != ChangeState::Approved {
        return Err(when(state, action));
    }
    if f.scheduled {
        return Err(refused(
            action,
            Reason::ExecutionState,
            state,
            "its start is scheduled already: call it off first to change it",
        ));
    }
    if !f.approval_holds {
        return Err(refused(
            action,
            Reason::SignoffsNoLongerCount,
            state,
            "its sign-offs no longer all count (a signer left their team, or a sign-off expired): it needs new sign-offs",
        ));
    }
    if !f.operation_known {
        return Err(refused(
            action,
            Reason::OperationRemoved,
            state,
            "the change's operation is no longer in the schema; it cannot run",
        ));
    }
    Ok(())
}

/// Call a scheduled start off: the implementing team or an admin (stopping is always
/// safe), while one is scheduled.
pub(super) fn unschedule(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Unschedule;
    if !(f.is_admin || f.in_implementing_team) {
        return Err(who(
            Reason::NotImplementer,
            action,
            format!(
                "only members of the implementing team `{}` or an admin can call off a scheduled start",
                f.implementing_team
            ),
        ));
    }
    if !f.scheduled {
        return Err(refused(
            action,
            Reason::ExecutionState,
            state,
            "no start is scheduled",
        ));
    }
    Ok(())
}
