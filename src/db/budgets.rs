//! Budgets shared across changes: one row per target an execution took from a budget
//! group (`budget_uses`), counted over the last 24 hours, and the group's row
//! (`budget_groups`) whose lock serialises the takers. The rules are in `domain::budget`.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::dsl::{count, count_star, min};
use diesel::prelude::*;

use super::schema::{budget_groups, budget_uses};
use super::{per_chunk, DbConn};
use crate::domain::budget::{Usage, WINDOW_HOURS};
use crate::with_concrete;

/// The start of the window that ends at `now`.
pub fn window_start(now: NaiveDateTime) -> NaiveDateTime {
    now - chrono::Duration::hours(WINDOW_HOURS)
}

/// Take the group's row lock for the rest of the transaction (creating the row the first
/// time): every taker locks it before it counts, so two executions drawing from one budget
/// at once are serialised on PostgreSQL (SQLite's write transaction already is).
pub fn lock_group(conn: &mut DbConn, group: &str) -> QueryResult<()> {
    with_concrete!(&mut *conn, |c| diesel::insert_into(budget_groups::table)
        .values((
            budget_groups::name.eq(group),
            budget_groups::lock_version.eq(0i64),
        ))
        .on_conflict(budget_groups::name)
        .do_nothing()
        .execute(c))?;
    diesel::update(budget_groups::table.find(group))
        .set(budget_groups::lock_version.eq(budget_groups::lock_version + 1))
        .execute(conn)?;
    Ok(())
}

/// What the group took in the window ending at `now`.
pub fn usage(conn: &mut DbConn, group: &str, now: NaiveDateTime) -> QueryResult<Usage> {
    let (targets, roots, oldest): (i64, i64, Option<NaiveDateTime>) = budget_uses::table
        .filter(budget_uses::budget_group.eq(group))
        .filter(budget_uses::used_at.gt(window_start(now)))
        .select((
            count_star(),
            count(budget_uses::root_id).aggregate_distinct(),
            min(budget_uses::used_at),
        ))
        .first(conn)?;
    Ok(Usage {
        targets: targets as u64,
        roots: roots as u64,
        oldest,
    })
}

/// The roots the group touched in the window (at most its `roots_per_day`, give or take a
/// lowered limit).
pub fn used_roots(
    conn: &mut DbConn,
    group: &str,
    now: NaiveDateTime,
) -> QueryResult<HashSet<String>> {
    Ok(budget_uses::table
        .filter(budget_uses::budget_group.eq(group))
        .filter(budget_uses::used_at.gt(window_start(now)))
        .select(budget_uses::root_id)
        .distinct()
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Which of `ids` were already taken for `change` (in any window: a target is taken once
/// per change).
pub fn taken_of(
    conn: &mut DbConn,
    group: &str,
    change: i64,
    ids: &[&str],
) -> QueryResult<HashSet<String>> {
    Ok(per_chunk(ids, |chunk| {
        budget_uses::table
            .filter(budget_uses::budget_group.eq(group))
            .filter(budget_uses::change_id.eq(change))
            .filter(budget_uses::entity_id.eq_any(chunk))
            .select(budget_uses::entity_id)
            .load::<String>(conn)
    })?
    .into_iter()
    .collect())
}

/// Every target already taken for `change`.
pub fn taken_for(conn: &mut DbConn, group: &str, change: i64) -> QueryResult<HashSet<String>> {
    Ok(budget_uses::table
        .filter(budget_uses::budget_group.eq(group))
        .filter(budget_uses::change_id.eq(change))
        .select(budget_uses::entity_id)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Record that `change` took `targets` (entity, root) from the group at `at`. The caller
/// holds the group's lock and passes only targets not taken before.
pub fn take(
    conn: &mut DbConn,
    group: &str,
    change: i64,
    targets: &[(&str, &str)],
    at: NaiveDateTime,
) -> QueryResult<usize> {
    let mut n = 0;
    // 5 values a row: 1,000 rows stay below both backends' bind limits.
    for chunk in targets.chunks(1000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(id, root)| {
                (
                    budget_uses::budget_group.eq(group),
                    budget_uses::change_id.eq(change),
                    budget_uses::entity_id.eq(*id),
                    budget_uses::root_id.eq(*root),
                    budget_uses::used_at.eq(at),
                )
            })
            .collect();
        n += with_concrete!(&mut *conn, |c| diesel::insert_into(budget_uses::table)
            .values(rows)
            .execute(c))?;
    }
    Ok(n)
}

/// (entity ID, scope path) of every stored target of `change`, in order.
pub fn targets_of(conn: &mut DbConn, change: i64) -> QueryResult<Vec<(String, String)>> {
    use super::schema::change_targets;
    change_targets::table
        .filter(change_targets::change_id.eq(change))
        .order(change_targets::position.asc())
        .select((change_targets::entity_id, change_targets::scope_path))
        .load(conn)
}
