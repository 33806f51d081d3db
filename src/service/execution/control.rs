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
        crate::service::budget::check_resume(conn, schema, &c)?;
        let e = repo::for_change(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                format!("{} has no execution", number(id)),
            )
        })?;
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
        let e = repo::for_change(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                format!("{} has no execution", number(id)),
            )
        })?;
        repo::set_between_waves(conn, e.id, None, None)?;
        repo::set_state(conn, e.id, ExecState::Running, None)?;
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
        let e = repo::for_change(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                format!("{} has no execution", number(id)),
            )
        })?;
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
