//! Scheduled starts: one row per approved change that starts by itself.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::models::ScheduledStart;
use crate::db::schema::{execution_items, scheduled_starts};
use crate::db::DbConn;
use crate::domain::execution::ItemStatus;

pub fn scheduled_start(conn: &mut DbConn, change_id: i64) -> QueryResult<Option<ScheduledStart>> {
    scheduled_starts::table
        .find(change_id)
        .select(ScheduledStart::as_select())
        .first(conn)
        .optional()
}

pub fn insert_schedule(conn: &mut DbConn, row: &ScheduledStart) -> QueryResult<()> {
    diesel::insert_into(scheduled_starts::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Remove a change's scheduled start; whether there was one.
pub fn delete_schedule(conn: &mut DbConn, change_id: i64) -> QueryResult<bool> {
    Ok(diesel::delete(scheduled_starts::table.find(change_id)).execute(conn)? > 0)
}

/// The changes whose start is due at `at`: those not yet waiting for a conflicting change
/// first (so starts that wait never crowd out the others), then oldest first.
pub fn due_schedules(conn: &mut DbConn, at: NaiveDateTime, limit: i64) -> QueryResult<Vec<i64>> {
    scheduled_starts::table
        .filter(scheduled_starts::start_at.le(at))
        .order((
            scheduled_starts::waiting_on.is_not_null().asc(),
            scheduled_starts::start_at.asc(),
            scheduled_starts::change_id.asc(),
        ))
        .limit(limit)
        .select(scheduled_starts::change_id)
        .load(conn)
}

/// Record which changes a queued start waits for.
pub fn set_waiting_on(conn: &mut DbConn, change_id: i64, on: Option<&str>) -> QueryResult<()> {
    diesel::update(scheduled_starts::table.find(change_id))
        .set(scheduled_starts::waiting_on.eq(on))
        .execute(conn)?;
    Ok(())
}

/// Items the drift check held back.
pub fn drifted_count(conn: &mut DbConn, exec_id: i64) -> QueryResult<i64> {
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq(ItemStatus::Drifted))
        .count()
        .get_result(conn)
}

/// Items still pending or drifted: none may be left when an execution finishes.
pub fn unfinished_count(conn: &mut DbConn, exec_id: i64) -> QueryResult<i64> {
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq_any([ItemStatus::Pending, ItemStatus::Drifted]))
        .count()
        .get_result(conn)
}
