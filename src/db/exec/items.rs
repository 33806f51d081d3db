//! An execution's per-target items: the next ones to run, their counts by wave and
//! status, their outcomes (done, failed, skipped, retried), and the stored targets
//! they stand for.

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;

use crate::db::models::ExecutionItem;
use crate::db::schema::{change_targets, execution_items};
use crate::db::{count_per_chunk, now, per_chunk, DbConn};
use crate::domain::execution::ItemStatus;

/// The next pending items of a wave, in order; items waiting for a retry are skipped
/// until their time.
/// Every item of wave `wave`, in order: (kind, entity id, status).
pub fn wave_items(
    conn: &mut DbConn,
    exec_id: i64,
    wave: i64,
) -> QueryResult<Vec<(String, String, ItemStatus)>> {
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::wave.eq(wave))
        .order(execution_items::position.asc())
        .select((
            execution_items::kind,
            execution_items::entity_id,
            execution_items::status,
        ))
        .load(conn)
}

pub fn pending(
    conn: &mut DbConn,
    exec_id: i64,
    wave: i64,
    limit: i64,
) -> QueryResult<Vec<ExecutionItem>> {
    let t = now();
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq(ItemStatus::Pending))
        .filter(execution_items::wave.eq(wave))
        .filter(
            execution_items::next_attempt_at
                .is_null()
                .or(execution_items::next_attempt_at.le(t)),
        )
        .order(execution_items::position.asc())
        .limit(limit)
        .select(ExecutionItem::as_select())
        .load(conn)
}

/// Pending items of a wave, whether due or waiting for a retry.
pub fn pending_count(conn: &mut DbConn, exec_id: i64, wave: i64) -> QueryResult<i64> {
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq(ItemStatus::Pending))
        .filter(execution_items::wave.eq(wave))
        .select(count_star())
        .first(conn)
}

/// Earliest retry time among a wave's pending items.
pub fn next_retry(
    conn: &mut DbConn,
    exec_id: i64,
    wave: i64,
) -> QueryResult<Option<NaiveDateTime>> {
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq(ItemStatus::Pending))
        .filter(execution_items::wave.eq(wave))
        .select(diesel::dsl::min(execution_items::next_attempt_at))
        .first(conn)
}

/// (wave, status, count) for an execution.
pub fn wave_counts(conn: &mut DbConn, exec_id: i64) -> QueryResult<Vec<(i64, ItemStatus, i64)>> {
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .group_by((execution_items::wave, execution_items::status))
        .select((execution_items::wave, execution_items::status, count_star()))
        .order((execution_items::wave.asc(), execution_items::status.asc()))
        .load(conn)
}

/// Items with a given status (failed, skipped), in order.
pub fn items_with_status(
    conn: &mut DbConn,
    exec_id: i64,
    status: ItemStatus,
    limit: i64,
) -> QueryResult<Vec<ExecutionItem>> {
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq(status))
        .order(execution_items::position.asc())
        .limit(limit)
        .select(ExecutionItem::as_select())
        .load(conn)
}

/// All items of an execution, in order (for tests, exports and rollbacks).
pub fn items(
    conn: &mut DbConn,
    exec_id: i64,
    status: Option<ItemStatus>,
    offset: i64,
    limit: i64,
) -> QueryResult<(i64, Vec<ExecutionItem>)> {
    let filtered = || {
        let q = execution_items::table
            .filter(execution_items::execution_id.eq(exec_id))
            .into_boxed();
        match status {
            Some(s) => q.filter(execution_items::status.eq(s)),
            None => q,
        }
    };
    let total: i64 = filtered().select(count_star()).first(conn)?;
    let rows = filtered()
        .order(execution_items::position.asc())
        .offset(offset)
        .limit(limit)
        .select(ExecutionItem::as_select())
        .load(conn)?;
    Ok((total, rows))
}

/// The items of execution `exec_id` at these target positions (a page of the target list).
pub fn items_at(
    conn: &mut DbConn,
    exec_id: i64,
    positions: &[i64],
) -> QueryResult<Vec<ExecutionItem>> {
    per_chunk(positions, |chunk| {
        execution_items::table
            .filter(execution_items::execution_id.eq(exec_id))
            .filter(execution_items::position.eq_any(chunk))
            .select(ExecutionItem::as_select())
            .load(conn)
    })
}

/// Positions of the items that changed their entity.
pub fn done_positions(conn: &mut DbConn, exec_id: i64) -> QueryResult<Vec<i64>> {
    execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq(ItemStatus::Done))
        .order(execution_items::position.asc())
        .select(execution_items::position)
        .load(conn)
}

/// Mark items with one outcome. `error` is shared by all of them. Only pending items
/// move; returns how many did.
pub fn finish_items(
    conn: &mut DbConn,
    exec_id: i64,
    positions: &[i64],
    status: ItemStatus,
    error: Option<&str>,
) -> QueryResult<usize> {
    let t = now();
    count_per_chunk(positions, |chunk| {
        diesel::update(
            execution_items::table
                .filter(execution_items::execution_id.eq(exec_id))
                .filter(execution_items::position.eq_any(chunk))
                .filter(execution_items::status.eq(ItemStatus::Pending)),
        )
        .set((
            execution_items::status.eq(status),
            execution_items::attempts.eq(execution_items::attempts + 1),
            execution_items::error.eq(error),
            execution_items::finished_at.eq(Some(t)),
            execution_items::next_attempt_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
    })
}

/// Record a failed attempt of a pending item that will be retried at `at`.
pub fn retry_item(
    conn: &mut DbConn,
    exec_id: i64,
    position: i64,
    error: &str,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        execution_items::table
            .filter(execution_items::execution_id.eq(exec_id))
            .filter(execution_items::position.eq(position))
            .filter(execution_items::status.eq(ItemStatus::Pending)),
    )
    .set((
        execution_items::attempts.eq(execution_items::attempts + 1),
        execution_items::error.eq(Some(error)),
        execution_items::next_attempt_at.eq(Some(at)),
    ))
    .execute(conn)?;
    Ok(())
}

/// Mark every pending (or drifted) item skipped (abort).
pub fn skip_pending(conn: &mut DbConn, exec_id: i64, reason: &str) -> QueryResult<usize> {
    diesel::update(
        execution_items::table
            .filter(execution_items::execution_id.eq(exec_id))
            .filter(execution_items::status.eq_any([ItemStatus::Pending, ItemStatus::Drifted])),
    )
    .set((
        execution_items::status.eq(ItemStatus::Skipped),
        execution_items::error.eq(Some(reason)),
        execution_items::finished_at.eq(Some(now())),
    ))
    .execute(conn)
}

/// Skip the pending (and drifted) items of wave `wave` with `reason`; how many.
pub fn skip_pending_in_wave(
    conn: &mut DbConn,
    exec_id: i64,
    wave: i64,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        execution_items::table
            .filter(execution_items::execution_id.eq(exec_id))
            .filter(execution_items::wave.eq(wave))
            .filter(execution_items::status.eq_any([ItemStatus::Pending, ItemStatus::Drifted])),
    )
    .set((
        execution_items::status.eq(ItemStatus::Skipped),
        execution_items::error.eq(Some(reason)),
        execution_items::finished_at.eq(Some(now())),
    ))
    .execute(conn)
}

/// A stored target of a change: (position, kind, id, scope path, name).
pub type StoredTarget = (i64, String, String, String, String);

/// The stored targets of a change at the given positions.
pub fn targets_at(
    conn: &mut DbConn,
    change_id: i64,
    positions: &[i64],
) -> QueryResult<Vec<StoredTarget>> {
    let mut out: Vec<StoredTarget> = per_chunk(positions, |chunk| {
        change_targets::table
            .filter(change_targets::change_id.eq(change_id))
            .filter(change_targets::position.eq_any(chunk))
            .select((
                change_targets::position,
                change_targets::kind,
                change_targets::entity_id,
                change_targets::scope_path,
                change_targets::name,
            ))
            .load(conn)
    })?;
    out.sort_by_key(|r| r.0);
    Ok(out)
}
