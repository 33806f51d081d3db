//! Executions, their per-target items, entity mutations and version rows.
//!
//! Every function that changes an entity writes its version row in the same statement
//! group, and the runner calls them inside the transaction that also records the item's
//! result and re-checks the worker's lease, so an effect and its result commit together
//! or not at all.
//!
//! By use case: `runs` (an execution's life: creation, leases, counts, state), `items`
//! (its per-target items and their outcomes), `mutations` (what effects do to entities)
//! and `history` (version rows, and the state a restore goes back to).

use diesel::prelude::*;

use super::models::Execution;
use super::schema::executions;
use super::DbConn;

mod control;
mod history;
mod items;
mod mutations;
mod runs;
mod schedule;

pub use control::{
    changed_since, entities_now, first_signed, lock_gates, mark_drifted, pending_targets,
    retry_failed, rewind, set_drift_checked, sharing_targets, skip_drifted, undrift, WaveTarget,
};
pub use history::{
    changes_undone, restore_point, state_at, touched_by, version_count_for_change,
    versions_by_change, versions_by_pairs, versions_of,
};
pub use items::{
    done_positions, finish_items, items, items_at, items_with_status, next_retry, pending,
    pending_count, retry_item, skip_pending, skip_pending_in_wave, targets_at, wave_counts,
    wave_items, StoredTarget,
};
pub use mutations::{entities_by_id, insert_versions, reactivate, rewrite, soft_delete};
pub use runs::{
    add_counts, claim, create, executors, heartbeat, release, running_ids, set_between_waves,
    set_state, set_wave,
};
pub use schedule::{
    delete_schedule, drifted_count, due_schedules, insert_schedule, scheduled_start,
    set_waiting_on, unfinished_count,
};

pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<Execution>> {
    executions::table
        .find(id)
        .select(Execution::as_select())
        .first(conn)
        .optional()
}

pub fn for_change(conn: &mut DbConn, change_id: i64) -> QueryResult<Option<Execution>> {
    executions::table
        .filter(executions::change_id.eq(change_id))
        .select(Execution::as_select())
        .first(conn)
        .optional()
}
