//! What the drift check, the retry of failed targets and the conflict check read and
//! write: a wave's pending targets with their signed scope paths, entities as they are
//! now, what others changed since the approval, drifted and retried items, and the other
//! executions that hold the same targets.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{change_targets, entities, entity_versions, execution_items, executions};
use crate::db::{now, per_chunk, DbConn};
use crate::domain::drift::{Changed, Now};
use crate::domain::execution::{ExecState, ItemStatus};
use crate::domain::EntityState;

/// A pending target of a wave as signed: (position, kind, id, scope path).
pub type WaveTarget = (i64, String, String, String);

/// Up to `limit` pending items of `wave` after position `after`, with their signed
/// scope paths, in order.
pub fn pending_targets(
    conn: &mut DbConn,
    exec_id: i64,
    change_id: i64,
    wave: i64,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<WaveTarget>> {
    execution_items::table
        .inner_join(
            change_targets::table.on(change_targets::change_id
                .eq(change_id)
                .and(change_targets::position.eq(execution_items::position))),
        )
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::wave.eq(wave))
        .filter(execution_items::status.eq(ItemStatus::Pending))
        .filter(execution_items::position.gt(after))
        .order(execution_items::position.asc())
        .limit(limit)
        .select((
            execution_items::position,
            execution_items::kind,
            execution_items::entity_id,
            change_targets::scope_path,
        ))
        .load(conn)
}

/// Entities as they are now (kind, parent, state), by ID; missing IDs have no entry.
pub fn entities_now(conn: &mut DbConn, ids: &[&str]) -> QueryResult<HashMap<String, Now>> {
    let rows: Vec<(String, String, Option<String>, EntityState)> = per_chunk(ids, |chunk| {
        entities::table
            .filter(entities::id.eq_any(chunk))
            .select((
                entities::id,
                entities::kind,
                entities::parent_id,
                entities::state,
            ))
            .load(conn)
    })?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, parent_id, state)| {
            (
                id,
                Now {
                    kind,
                    parent_id,
                    state,
                },
            )
        })
        .collect())
}

type VersionFacts = (
    String,
    i64,
    NaiveDateTime,
    Option<i64>,
    Option<i64>,
    (String, String),
    (String, String),
    (Option<String>, Option<String>),
    (EntityState, EntityState),
);

/// For each of `ids` that anyone but change `change_id` changed after `since`: the first
/// such version, and everything those versions changed.
pub fn changed_since(
    conn: &mut DbConn,
    ids: &[&str],
    since: NaiveDateTime,
    change_id: i64,
) -> QueryResult<HashMap<String, Changed>> {
    let rows: Vec<VersionFacts> = per_chunk(ids, |chunk| {
        entity_versions::table
            .filter(entity_versions::entity_id.eq_any(chunk))
            .filter(entity_versions::at.gt(since))
            .filter(
                entity_versions::change_id
                    .is_null()
                    .or(entity_versions::change_id.ne(change_id)),
            )
            .order((entity_versions::entity_id, entity_versions::version))
            .select((
                entity_versions::entity_id,
                entity_versions::version,
                entity_versions::at,
                entity_versions::change_id,
                entity_versions::import_id,
                (entity_versions::before_name, entity_versions::after_name),
                (entity_versions::before_attrs, entity_versions::after_attrs),
                (
                    entity_versions::before_parent,
                    entity_versions::after_parent,
                ),
                (entity_versions::before_state, entity_versions::after_state),
            ))
            .load(conn)
    })?;
    let mut out: HashMap<String, Changed> = HashMap::new();
    for (id, version, at, change, import, name, attrs, parent, state) in rows {
        let c = out.entry(id).or_insert_with(|| Changed {
            version,
            at,
            by: match (change, import) {
                (Some(c), _) => crate::domain::change::number(c),
                (None, Some(i)) => format!("import {i}"),
                (None, None) => "someone".into(),
            },
            what: Vec::new(),
        });
        for (differs, what) in [
            (name.0 != name.1, "name"),
            (attrs.0 != attrs.1, "attributes"),
            (parent.0 != parent.1, "parent"),
            (state.0 != state.1, "state"),
        ] {
            if differs && !c.what.contains(&what) {
                c.what.push(what);
            }
        }
    }
    for c in out.values_mut() {
        if c.what.is_empty() {
            c.what.push("a new version");
        }
    }
    Ok(out)
}

/// When the first sign-off that still counts for `fingerprint` was given: what "since
/// signing" means for the drift check (the fingerprint covers the list, not the
/// attributes, so a change after the first signer looked is drift).
pub fn first_signed(
    conn: &mut DbConn,
    change_id: i64,
    fingerprint: &str,
) -> QueryResult<Option<NaiveDateTime>> {
    crate::db::schema::signoffs::table
        .filter(crate::db::schema::signoffs::change_id.eq(change_id))
        .filter(crate::db::schema::signoffs::fingerprint.eq(fingerprint))
        .filter(crate::db::schema::signoffs::stale.eq(false))
        .select(diesel::dsl::min(crate::db::schema::signoffs::created_at))
        .first(conn)
}

/// Mark pending items drifted, each with its reason; how many moved.
pub fn mark_drifted(
    conn: &mut DbConn,
    exec_id: i64,
    drifted: &[(i64, String)],
) -> QueryResult<usize> {
    let mut n = 0;
    for (position, why) in drifted {
        n += diesel::update(
            execution_items::table
                .filter(execution_items::execution_id.eq(exec_id))
                .filter(execution_items::position.eq(position))
                .filter(execution_items::status.eq(ItemStatus::Pending)),
        )
        .set((
            execution_items::status.eq(ItemStatus::Drifted),
            execution_items::error.eq(Some(why)),
        ))
        .execute(conn)?;
    }
    Ok(n)
}

/// The wave the drift check passed last.
pub fn set_drift_checked(conn: &mut DbConn, exec_id: i64, wave: i64) -> QueryResult<()> {
    diesel::update(executions::table.find(exec_id))
        .set(executions::drift_checked_wave.eq(wave))
        .execute(conn)?;
    Ok(())
}

/// Drifted items back to pending (a resume checks them again); how many.
pub fn undrift(conn: &mut DbConn, exec_id: i64) -> QueryResult<usize> {
    diesel::update(
        execution_items::table
            .filter(execution_items::execution_id.eq(exec_id))
            .filter(execution_items::status.eq(ItemStatus::Drifted)),
    )
    .set(execution_items::status.eq(ItemStatus::Pending))
    .execute(conn)
}

/// Skip every drifted item with `reason` (its drift kept after it); how many.
pub fn skip_drifted(conn: &mut DbConn, exec_id: i64, reason: &str) -> QueryResult<usize> {
    let t = now();
    let rows: Vec<(i64, Option<String>)> = execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq(ItemStatus::Drifted))
        .select((execution_items::position, execution_items::error))
        .load(conn)?;
    for (position, why) in &rows {
        let text = format!("{reason} ({})", why.as_deref().unwrap_or("drifted"));
        diesel::update(
            execution_items::table
                .filter(execution_items::execution_id.eq(exec_id))
                .filter(execution_items::position.eq(position)),
        )
        .set((
            execution_items::status.eq(ItemStatus::Skipped),
            execution_items::error.eq(Some(text)),
            execution_items::finished_at.eq(Some(t)),
        ))
        .execute(conn)?;
    }
    Ok(rows.len())
}

/// Put every failed item back to pending for a new attempt (its last error kept until
/// then, its retry count up by one). Returns (how many, the earliest wave among them).
pub fn retry_failed(conn: &mut DbConn, exec_id: i64) -> QueryResult<(usize, Option<i64>)> {
    let first: Option<i64> = execution_items::table
        .filter(execution_items::execution_id.eq(exec_id))
        .filter(execution_items::status.eq(ItemStatus::Failed))
        .select(diesel::dsl::min(execution_items::wave))
        .first(conn)?;
    let n = diesel::update(
        execution_items::table
            .filter(execution_items::execution_id.eq(exec_id))
            .filter(execution_items::status.eq(ItemStatus::Failed)),
    )
    .set((
        execution_items::status.eq(ItemStatus::Pending),
        execution_items::retries.eq(execution_items::retries + 1),
        execution_items::finished_at.eq(None::<NaiveDateTime>),
        execution_items::next_attempt_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok((n, first))
}

/// Rewind an execution to `wave` after a retry: running again, unfinished, its failed
/// count down by `retried`, the drift check due again from `wave`, and the waves up to
/// `rerun_through` already past their gates.
pub fn rewind(
    conn: &mut DbConn,
    exec_id: i64,
    wave: i64,
    retried: i64,
    rerun_through: i64,
) -> QueryResult<()> {
    diesel::update(executions::table.find(exec_id))
        .set((
            executions::state.eq(ExecState::Running),
            executions::current_wave.eq(wave),
            executions::failed.eq(executions::failed - retried),
            executions::finished_at.eq(None::<NaiveDateTime>),
            executions::halt_reason.eq(None::<String>),
            executions::drift_checked_wave.eq(wave - 1),
            executions::rerun_through_wave.eq(rerun_through),
            executions::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Serialise everything that may start an execution (the execute gate, a retry of an
/// ended one) until commit: two gates of overlapping changes lock different change rows,
/// and the second must see the first's execution before its conflict check. PostgreSQL:
/// a transaction-scoped advisory lock, taken right after the change row and before the
/// audit head (the one lock order); SQLite's write transaction already excludes every
/// other writer.
pub fn lock_gates(conn: &mut DbConn) -> QueryResult<()> {
    if let DbConn::Pg(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7243001)").execute(c)?;
    }
    Ok(())
}

/// Executions still in progress (running, baking, paused, halted) of changes other than
/// `change_id` that hold any of its stored targets: (change id, targets shared), by
/// change. One statement, from the change's targets through the items' entity index; not
/// run at all while no other execution is in progress. A gate calls it after
/// [`lock_gates`], so the answer holds until it commits.
pub fn sharing_targets(conn: &mut DbConn, change_id: i64) -> QueryResult<Vec<(i64, i64)>> {
    let open = [
        ExecState::Running,
        ExecState::Baking,
        ExecState::Paused,
        ExecState::Halted,
    ];
    let any: i64 = executions::table
        .filter(executions::state.eq_any(open))
        .filter(executions::change_id.ne(change_id))
        .count()
        .get_result(conn)?;
    if any == 0 {
        return Ok(Vec::new());
    }
    change_targets::table
        .inner_join(
            execution_items::table.on(execution_items::entity_id.eq(change_targets::entity_id)),
        )
        .inner_join(executions::table.on(executions::id.eq(execution_items::execution_id)))
        .filter(change_targets::change_id.eq(change_id))
        .filter(executions::state.eq_any(open))
        .filter(executions::change_id.ne(change_id))
        .group_by(executions::change_id)
        .select((executions::change_id, diesel::dsl::count_star()))
        .order(executions::change_id.asc())
        .load(conn)
}
