//! Execution use cases: the execute gate, resume, abort, progress, and rollback.
//!
//! The gate runs in one write transaction holding the change's row lock: state, signed
//! fingerprint, window and a fresh resolution are checked, and the execution with one
//! item per signed target is created, all or nothing. Two concurrent execute calls
//! serialise on the lock; the second finds the change `executing` (409).
//!
//! One module per use case: `start` (the execute gate), `control` (resume, abort),
//! `progress` (what the execution did so far, its items), `schedule` (starts at a time
//! or once conflicting changes finish) and `rollback` (the change that
//! undoes an executed one, and the derived changes a bulk restore shares with it).

mod control;
mod progress;
mod rollback;
mod schedule;
mod start;

pub use crate::service::views::{schedule_view as schedule_of, ScheduleView};
pub use control::{abort, continue_paused, pause, resume, retry_failed, skip_drifted, skip_wave};
pub use progress::{item_status, items, progress, ExecutionView, ItemView, WaveTimeline, WaveView};
pub(crate) use rollback::{insert_submitted, Derived};
pub use rollback::{rollback, RollbackRequest};
pub use schedule::{schedule, start_due, unschedule, ScheduleRequest, Starter};
pub use start::{execute, ExecuteRequest};

use crate::db::models::Change;
use crate::db::DbConn;
use crate::service::CurrentUser;

/// An operator control that takes an optional reason (pause, skip the rest of a wave,
/// skip the drifted targets, retry the failed ones, abort): the one shape the API, the
/// pages and the command line call them by.
pub type Control =
    fn(&mut DbConn, &Schema, &CurrentUser, i64, Option<&str>) -> AppResult<ExecutionView>;
use crate::domain::{Operation, Schema};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::views::number;

/// The operation of a stored change, or 409 `operation_removed` when the schema no longer
/// has it.
fn operation<'s>(schema: &'s Schema, c: &Change) -> AppResult<&'s Operation> {
    schema.operation(&c.operation).ok_or_else(|| {
        AppError::new(
            ErrorCode::OperationRemoved,
            format!(
                "operation `{}` is no longer in the schema; {} cannot run",
                c.operation,
                number(c.id)
            ),
        )
    })
}
