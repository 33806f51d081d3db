//! Steering a running execution: resume a halted one, continue one paused at a manual
//! gate, abort one for good.

use super::progress::{progress, ExecutionView};
use crate::db::{changes as change_repo, exec as repo, write_tx, DbConn};
use crate::domain::access::ChangeAction;
use crate::domain::event::Event;
use crate::domain::execution::ExecState;
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::{locked, require};
use crate::service::events::record;
use crate::service::views::number;
use crate::service::CurrentUser;

/// Continue a halted execution (implementing team).
#[tracing::instrument(name = "execution::resume", skip_all, fields(change = id, user = user.id))]
pub fn resume(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Resume)?;
        crate::service::calendar::check_not_locked_down(conn, &c)?;
        crate::service::budget::check_resume(conn, schema, &c)?;
        let e = execution_of(conn, id)?;
        // Targets the drift check held back are checked again before they run.
        repo::undrift(conn, e.id)?;
        repo::set_state(conn, e.id, ExecState::Running, None)?;
        change_repo::set_state(conn, id, ChangeState::Executing)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::ExecutionResumed {
                execution_id: e.id,
                halt_reason: e.halt_reason.clone(),
                next_wave: e.current_wave as u32,
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}

/// Continue an execution paused at a manual gate (`pause_after_waves`; implementing
/// team): the next wave runs.
#[tracing::instrument(name = "execution::continue", skip_all, fields(change = id, user = user.id))]
pub fn continue_paused(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Continue)?;
        crate::service::calendar::check_not_locked_down(conn, &c)?;
        let e = execution_of(conn, id)?;
        // Paused during a bake: the bake (and the health check after it) still comes.
        let back = if e.bake_until.is_some() {
            ExecState::Baking
        } else {
            ExecState::Running
        };
        repo::set_state(conn, e.id, back, None)?;
        repo::set_between_waves(conn, e.id, e.bake_until, None)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::ExecutionContinued {
                execution_id: e.id,
                next_wave: e.current_wave as u32,
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}

/// "by ann@…: the reason", or "by ann@…" without one.
fn why(user: &CurrentUser, reason: Option<&str>) -> String {
    format!(
        "by {}{}",
        user.email,
        reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| format!(": {}", crate::domain::lines::clip_to(r, 500)))
            .unwrap_or_default()
    )
}

/// Pause a running or baking execution (implementing team or an admin): the worker stops
/// at its next batch (a webhook batch in flight is dropped and re-sent later with the same
/// idempotency keys); continue picks it up where it stopped, bake included.
#[tracing::instrument(name = "execution::pause", skip_all, fields(change = id, user = user.id))]
pub fn pause(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: Option<&str>,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Pause)?;
        let e = execution_of(conn, id)?;
        let reason = format!("paused {}", why(user, reason));
        repo::set_state(conn, e.id, ExecState::Paused, None)?;
        repo::set_between_waves(conn, e.id, e.bake_until, Some(&reason))?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::ExecutionPausedByOperator {
                execution_id: e.id,
                wave: e.current_wave as u32,
                reason,
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}

/// Skip the pending targets of the current wave of a paused or halted execution
/// (implementing team): recorded as skipped with the reason; continue or resume goes on
/// with the next wave.
#[tracing::instrument(name = "execution::skip_wave", skip_all, fields(change = id, user = user.id))]
pub fn skip_wave(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: Option<&str>,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::SkipWave)?;
        let e = execution_of(conn, id)?;
        let reason = format!("skipped {}", why(user, reason));
        let skipped = repo::skip_pending_in_wave(conn, e.id, e.current_wave, &reason)?;
        repo::add_counts(conn, e.id, 0, 0, skipped as i64)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::WaveSkipped {
                execution_id: e.id,
                wave: e.current_wave as u32,
                skipped: skipped as u64,
                reason,
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}

/// Skip the targets the drift check held back (implementing team): recorded as skipped
/// with the reason and the drift; resume goes on with the rest of the wave.
#[tracing::instrument(name = "execution::skip_drifted", skip_all, fields(change = id, user = user.id))]
pub fn skip_drifted(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: Option<&str>,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::SkipDrifted)?;
        let e = execution_of(conn, id)?;
        let reason = format!("skipped {}", why(user, reason));
        let skipped = repo::skip_drifted(conn, e.id, &reason)?;
        repo::add_counts(conn, e.id, 0, 0, skipped as i64)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::DriftedSkipped {
                execution_id: e.id,
                wave: e.current_wave as u32,
                skipped: skipped as u64,
                reason,
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}

/// Retry the failed targets (implementing team): each goes back to pending for a new
/// attempt on the same item (a webhook gets a new idempotency key, `…-r<n>`), and the
/// execution runs again from the earliest wave with a failure, checking drift again
/// before each wave; waves it already passed do not bake or pause again.
#[tracing::instrument(name = "execution::retry_failed", skip_all, fields(change = id, user = user.id))]
pub fn retry_failed(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: Option<&str>,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::RetryFailed)?;
        // Lock order: change row, the gates' conflict lock, then the audit head.
        repo::lock_gates(conn)?;
        crate::service::budget::check_resume(conn, schema, &c)?;
        // An ended execution holds no targets: another change may be acting on them now.
        super::start::check_conflicts(conn, &c)?;
        let e = execution_of(conn, id)?;
        // Targets the drift check held back are checked again, not left behind.
        repo::undrift(conn, e.id)?;
        let (retried, first) = repo::retry_failed(conn, e.id)?;
        let from = first.unwrap_or(e.current_wave);
        let passed = (e.current_wave - 1).max(e.rerun_through_wave);
        repo::rewind(conn, e.id, from, retried as i64, passed)?;
        repo::set_between_waves(conn, e.id, None, None)?;
        change_repo::set_state(conn, id, ChangeState::Executing)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::FailedRetried {
                execution_id: e.id,
                targets: retried as u64,
                from_wave: from as u32,
                reason: format!("retried {}", why(user, reason)),
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}

fn execution_of(conn: &mut DbConn, id: i64) -> AppResult<crate::db::models::Execution> {
    repo::for_change(conn, id)?.ok_or_else(|| {
        AppError::new(
            ErrorCode::NotFound,
            format!("{} has no execution", number(id)),
        )
    })
}

/// Stop an executing or halted change for good; pending targets are skipped.
#[tracing::instrument(name = "execution::abort", skip_all, fields(change = id, user = user.id))]
pub fn abort(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: Option<&str>,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Abort)?;
        let e = execution_of(conn, id)?;
        let why = format!(
            "aborted by {}{}",
            user.email,
            reason
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        let skipped = repo::skip_pending(conn, e.id, &why)?;
        repo::add_counts(conn, e.id, 0, 0, skipped as i64)?;
        repo::set_state(conn, e.id, ExecState::Aborted, Some(&why))?;
        change_repo::set_state(conn, id, ChangeState::Aborted)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::ExecutionAborted {
                execution_id: e.id,
                skipped: skipped as u64,
                reason: why,
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}
