//! Executions, their per-target items, entity mutations and version rows.
//!
//! Every function that changes an entity writes its version row in the same statement
//! group, and the runner calls them inside the transaction that also records the item's
//! result and re-checks the worker's lease, so an effect and its result commit together
//! or not at all.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;

use super::models::{Entity, EntityVersion, Execution, ExecutionItem};
use super::schema::{change_targets, entities, entity_versions, execution_items, executions};
use super::{now, DbConn, CHUNK};
use crate::domain::execution::{
    undo_changes, ChangeStep, ExecState, ItemStatus, RestorePoint, RestoreSpec, Wave,
};
use crate::domain::{Effect, EntityState};
use crate::with_concrete;

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

/// Create the execution of a change and one pending item per stored target, each in its
/// wave. Runs in the transaction that moved the change to `executing`; the unique
/// `change_id` makes a second execution of the same change impossible.
pub fn create(
    conn: &mut DbConn,
    change_id: i64,
    fingerprint: &str,
    effect: Effect,
    waves: &[Wave],
    total: i64,
    started_by: i64,
) -> QueryResult<Execution> {
    let t = now();
    let id: i64 = diesel::insert_into(executions::table)
        .values((
            executions::change_id.eq(change_id),
            executions::fingerprint.eq(fingerprint),
            executions::effect.eq(effect),
            executions::state.eq(ExecState::Running),
            executions::waves.eq(serde_json::to_string(waves).expect("waves")),
            executions::current_wave.eq(1i64),
            executions::total.eq(total),
            executions::started_by.eq(started_by),
            executions::started_at.eq(t),
            executions::updated_at.eq(t),
        ))
        .returning(executions::id)
        .get_result(conn)?;
    // Items straight from the signed, stored list: INSERT … SELECT, one per wave.
    for w in waves {
        let rows = change_targets::table
            .filter(change_targets::change_id.eq(change_id))
            .filter(change_targets::position.ge(w.start as i64))
            .filter(change_targets::position.lt(w.end as i64))
            .select((
                id.into_sql::<diesel::sql_types::BigInt>(),
                change_targets::position,
                (w.number as i64).into_sql::<diesel::sql_types::BigInt>(),
                change_targets::kind,
                change_targets::entity_id,
                ItemStatus::Pending.into_sql::<diesel::sql_types::Text>(),
            ));
        diesel::insert_into(execution_items::table)
            .values(rows)
            .into_columns((
                execution_items::execution_id,
                execution_items::position,
                execution_items::wave,
                execution_items::kind,
                execution_items::entity_id,
                execution_items::status,
            ))
            .execute(conn)?;
    }
    Ok(get(conn, id)?.expect("just inserted"))
}

/// Claim one running execution whose lease is free or expired.
pub fn claim(
    conn: &mut DbConn,
    owner: &str,
    ttl: chrono::Duration,
) -> QueryResult<Option<Execution>> {
    let t = now();
    let free = executions::state.eq(ExecState::Running).and(
        executions::lease_owner
            .is_null()
            .or(executions::lease_expires_at.lt(t)),
    );
    let id: Option<i64> = match conn {
        DbConn::Pg(c) => executions::table
            .filter(free)
            .order(executions::id.asc())
            .select(executions::id)
            .for_update()
            .skip_locked()
            .first(c)
            .optional()?,
        DbConn::Sqlite(c) => executions::table
            .filter(free)
            .order(executions::id.asc())
            .select(executions::id)
            .first(c)
            .optional()?,
    };
    let Some(id) = id else { return Ok(None) };
    let n = diesel::update(executions::table.find(id).filter(free))
        .set((
            executions::lease_owner.eq(owner),
            executions::lease_expires_at.eq(t + ttl),
        ))
        .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    get(conn, id)
}

/// Extend the lease; `false` when this worker no longer holds it or the execution is not
/// running any more (halted, aborted, taken over). Called first in every batch
/// transaction, so a worker that lost its lease can never commit an effect.
pub fn heartbeat(
    conn: &mut DbConn,
    id: i64,
    owner: &str,
    ttl: chrono::Duration,
) -> QueryResult<bool> {
    let t = now();
    let n = diesel::update(
        executions::table
            .find(id)
            .filter(executions::lease_owner.eq(owner))
            .filter(executions::state.eq(ExecState::Running)),
    )
    .set((
        executions::lease_expires_at.eq(t + ttl),
        executions::updated_at.eq(t),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn release(conn: &mut DbConn, id: i64, owner: &str) -> QueryResult<()> {
    diesel::update(
        executions::table
            .find(id)
            .filter(executions::lease_owner.eq(owner)),
    )
    .set((
        executions::lease_owner.eq(None::<String>),
        executions::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(())
}

/// The next pending items of a wave, in order; items waiting for a retry are skipped
/// until their time.
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
    let mut n = 0;
    for chunk in positions.chunks(CHUNK) {
        n += diesel::update(
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
        .execute(conn)?;
    }
    Ok(n)
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

/// Mark every pending item skipped (abort).
pub fn skip_pending(conn: &mut DbConn, exec_id: i64, reason: &str) -> QueryResult<usize> {
    diesel::update(
        execution_items::table
            .filter(execution_items::execution_id.eq(exec_id))
            .filter(execution_items::status.eq(ItemStatus::Pending)),
    )
    .set((
        execution_items::status.eq(ItemStatus::Skipped),
        execution_items::error.eq(Some(reason)),
        execution_items::finished_at.eq(Some(now())),
    ))
    .execute(conn)
}

pub fn add_counts(
    conn: &mut DbConn,
    exec_id: i64,
    done: i64,
    failed: i64,
    skipped: i64,
) -> QueryResult<()> {
    diesel::update(executions::table.find(exec_id))
        .set((
            executions::done.eq(executions::done + done),
            executions::failed.eq(executions::failed + failed),
            executions::skipped.eq(executions::skipped + skipped),
            executions::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_wave(conn: &mut DbConn, exec_id: i64, wave: i64) -> QueryResult<()> {
    diesel::update(executions::table.find(exec_id))
        .set((
            executions::current_wave.eq(wave),
            executions::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Move an execution to `state`; final states set `finished_at` and drop the lease.
pub fn set_state(
    conn: &mut DbConn,
    exec_id: i64,
    state: ExecState,
    reason: Option<&str>,
) -> QueryResult<()> {
    let t = now();
    let finished = state.is_final().then_some(t);
    let keep_lease = state == ExecState::Running;
    if keep_lease {
        diesel::update(executions::table.find(exec_id))
            .set((
                executions::state.eq(state),
                executions::halt_reason.eq(reason),
                executions::updated_at.eq(t),
            ))
            .execute(conn)?;
    } else {
        diesel::update(executions::table.find(exec_id))
            .set((
                executions::state.eq(state),
                executions::halt_reason.eq(reason),
                executions::updated_at.eq(t),
                executions::finished_at.eq(finished),
                executions::lease_owner.eq(None::<String>),
                executions::lease_expires_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Running executions (for the worker's idle check and operators).
pub fn running_ids(conn: &mut DbConn) -> QueryResult<Vec<i64>> {
    executions::table
        .filter(executions::state.eq(ExecState::Running))
        .select(executions::id)
        .load(conn)
}

// ---- entities --------------------------------------------------------------------------

/// Full rows of the given entities, by id.
pub fn entities_by_id(conn: &mut DbConn, ids: &[&str]) -> QueryResult<HashMap<String, Entity>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<Entity> = entities::table
            .filter(entities::id.eq_any(chunk))
            .select(Entity::as_select())
            .load(conn)?;
        out.extend(rows.into_iter().map(|e| (e.id.clone(), e)));
    }
    Ok(out)
}

/// Insert version rows (one per mutated entity).
pub fn insert_versions(conn: &mut DbConn, rows: &[EntityVersion]) -> QueryResult<()> {
    with_concrete!(&mut *conn, |c| {
        for chunk in rows.chunks(CHUNK / 10) {
            diesel::insert_into(entity_versions::table)
                .values(chunk)
                .execute(c)?;
        }
        QueryResult::Ok(())
    })
}

/// Soft-delete active entities (one statement per chunk); they must be active.
pub fn soft_delete(
    conn: &mut DbConn,
    ids: &[&str],
    change_id: i64,
    purge_after: NaiveDateTime,
) -> QueryResult<usize> {
    let t = now();
    let mut n = 0;
    for chunk in ids.chunks(CHUNK) {
        n += diesel::update(
            entities::table
                .filter(entities::id.eq_any(chunk))
                .filter(entities::state.eq(EntityState::Active)),
        )
        .set((
            entities::state.eq(EntityState::Deleted),
            entities::deleted_at.eq(Some(t)),
            entities::deleted_by.eq(Some(change_id)),
            entities::purge_after.eq(Some(purge_after)),
            entities::version.eq(entities::version + 1),
            entities::updated_at.eq(t),
        ))
        .execute(conn)?;
    }
    Ok(n)
}

/// Set one entity's state and attributes (restore, set_attributes, purge).
/// Deleted entities back to `active` with their attributes untouched, set-based.
pub fn reactivate(conn: &mut DbConn, ids: &[&str]) -> QueryResult<usize> {
    let t = now();
    let mut n = 0;
    for chunk in ids.chunks(CHUNK) {
        n += diesel::update(
            entities::table
                .filter(entities::id.eq_any(chunk))
                .filter(entities::state.eq(EntityState::Deleted)),
        )
        .set((
            entities::state.eq(EntityState::Active),
            entities::deleted_at.eq(None::<NaiveDateTime>),
            entities::deleted_by.eq(None::<i64>),
            entities::purge_after.eq(None::<NaiveDateTime>),
            entities::version.eq(entities::version + 1),
            entities::updated_at.eq(t),
        ))
        .execute(conn)?;
    }
    Ok(n)
}

pub fn rewrite(conn: &mut DbConn, id: &str, state: EntityState, attrs: &str) -> QueryResult<()> {
    let t = now();
    if state == EntityState::Active {
        diesel::update(entities::table.find(id))
            .set((
                entities::state.eq(state),
                entities::attrs.eq(attrs),
                entities::deleted_at.eq(None::<NaiveDateTime>),
                entities::deleted_by.eq(None::<i64>),
                entities::purge_after.eq(None::<NaiveDateTime>),
                entities::version.eq(entities::version + 1),
                entities::updated_at.eq(t),
            ))
            .execute(conn)?;
    } else {
        diesel::update(entities::table.find(id))
            .set((
                entities::state.eq(state),
                entities::attrs.eq(attrs),
                entities::version.eq(entities::version + 1),
                entities::updated_at.eq(t),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The version row a change wrote for each of the given entities.
pub fn versions_by_change(
    conn: &mut DbConn,
    change_id: i64,
    ids: &[&str],
) -> QueryResult<HashMap<String, EntityVersion>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<EntityVersion> = entity_versions::table
            .filter(entity_versions::change_id.eq(change_id))
            .filter(entity_versions::entity_id.eq_any(chunk))
            .select(EntityVersion::as_select())
            .load(conn)?;
        out.extend(rows.into_iter().map(|v| (v.entity_id.clone(), v)));
    }
    Ok(out)
}

/// An entity's versions, newest first.
pub fn versions_of(
    conn: &mut DbConn,
    entity_id: &str,
    limit: i64,
) -> QueryResult<Vec<EntityVersion>> {
    entity_versions::table
        .filter(entity_versions::entity_id.eq(entity_id))
        .order(entity_versions::version.desc())
        .limit(limit)
        .select(EntityVersion::as_select())
        .load(conn)
}

/// Who started the execution of each of the given changes (email).
pub fn executors(conn: &mut DbConn, changes: &[i64]) -> QueryResult<HashMap<i64, String>> {
    use super::schema::users;
    Ok(executions::table
        .inner_join(users::table.on(users::id.eq(executions::started_by)))
        .filter(executions::change_id.eq_any(changes))
        .select((executions::change_id, users::email))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

/// Number of version rows a change wrote (tests and reports).
pub fn version_count_for_change(conn: &mut DbConn, change_id: i64) -> QueryResult<i64> {
    entity_versions::table
        .filter(entity_versions::change_id.eq(change_id))
        .select(count_star())
        .first(conn)
}

/// A stored target of a change: (position, kind, id, scope path, name).
pub type StoredTarget = (i64, String, String, String, String);

/// The stored targets of a change at the given positions.
pub fn targets_at(
    conn: &mut DbConn,
    change_id: i64,
    positions: &[i64],
) -> QueryResult<Vec<StoredTarget>> {
    let mut out = Vec::with_capacity(positions.len());
    for chunk in positions.chunks(CHUNK) {
        let rows: Vec<StoredTarget> = change_targets::table
            .filter(change_targets::change_id.eq(change_id))
            .filter(change_targets::position.eq_any(chunk))
            .select((
                change_targets::position,
                change_targets::kind,
                change_targets::entity_id,
                change_targets::scope_path,
                change_targets::name,
            ))
            .load(conn)?;
        out.extend(rows);
    }
    out.sort_by_key(|r| r.0);
    Ok(out)
}

/// Per entity of `ents` that a change changed after `point`: its (state, attrs) to go
/// back to. The state is the `before` of its first version row of a change after the
/// point; the attributes are its current ones with every change from that row on undone
/// ([`undo_changes`]). Version rows of inventory imports are history, not points: a
/// restore never stops at one, and what an import recorded stays unless a change being
/// undone set the same attribute. Entities not in the map have not been changed by a
/// change since.
pub fn state_at(
    conn: &mut DbConn,
    ents: &HashMap<String, Entity>,
    point: &RestorePoint,
) -> QueryResult<HashMap<String, (EntityState, String)>> {
    let ids: Vec<&str> = ents.keys().map(String::as_str).collect();
    let mut out: HashMap<String, (EntityState, String)> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let rows = change_rows_after(conn, chunk, point)?;
        for group in rows.chunk_by(|a, b| a.0 == b.0) {
            let (Some(first), Some(e)) = (first_undone(group, point), ents.get(&group[0].0)) else {
                continue;
            };
            let steps: Vec<ChangeStep<'_>> = group[first..]
                .iter()
                .map(|r| ChangeStep {
                    before_attrs: &r.3,
                    after_attrs: &r.4,
                })
                .collect();
            out.insert(
                e.id.clone(),
                (group[first].2, undo_changes(&e.attrs, &steps)),
            );
        }
    }
    Ok(out)
}

/// The changes whose effects on `ids` a restore to `point` undoes: every change with a
/// version row from the restore's first row on (the rows [`state_at`] undoes).
pub fn changes_undone(
    conn: &mut DbConn,
    ids: &[&str],
    point: &RestorePoint,
) -> QueryResult<std::collections::BTreeSet<i64>> {
    let mut out = std::collections::BTreeSet::new();
    for chunk in ids.chunks(CHUNK) {
        let rows = change_rows_after(conn, chunk, point)?;
        for group in rows.chunk_by(|a, b| a.0 == b.0) {
            if let Some(first) = first_undone(group, point) {
                out.extend(group[first..].iter().filter_map(|r| r.1));
            }
        }
    }
    Ok(out)
}

/// (entity, change, before state, before attrs, after attrs) of a version row.
type ChangeRow = (String, Option<i64>, EntityState, String, String);

/// The version rows of changes (not imports) of `chunk` that a restore to `point` may undo,
/// by entity and version.
fn change_rows_after(
    conn: &mut DbConn,
    chunk: &[&str],
    point: &RestorePoint,
) -> QueryResult<Vec<ChangeRow>> {
    let q = entity_versions::table
        .filter(entity_versions::entity_id.eq_any(chunk))
        .filter(entity_versions::import_id.is_null())
        .into_boxed();
    let q = match point {
        // From the first row of one of these changes on (see `first_undone`).
        RestorePoint::BeforeChanges(_) => q,
        RestorePoint::Since(t) => q.filter(entity_versions::at.ge(*t)),
        RestorePoint::At(t) => q.filter(entity_versions::at.gt(*t)),
    };
    q.order((
        entity_versions::entity_id.asc(),
        entity_versions::version.asc(),
    ))
    .select((
        entity_versions::entity_id,
        entity_versions::change_id,
        entity_versions::before_state,
        entity_versions::before_attrs,
        entity_versions::after_attrs,
    ))
    .load(conn)
}

/// Where in one entity's rows the restore starts undoing.
fn first_undone(group: &[ChangeRow], point: &RestorePoint) -> Option<usize> {
    match point {
        RestorePoint::BeforeChanges(cs) => group
            .iter()
            .position(|r| r.1.is_some_and(|c| cs.contains(&c))),
        _ => Some(0),
    }
}

/// Every entity the given changes mutated, sorted.
pub fn touched_by(conn: &mut DbConn, changes: &[i64]) -> QueryResult<Vec<String>> {
    entity_versions::table
        .filter(entity_versions::change_id.eq_any(changes.to_vec()))
        .select(entity_versions::entity_id)
        .distinct()
        .order(entity_versions::entity_id.asc())
        .load(conn)
}

/// The point a stored restore goes back to; `None` when it names a change that never ran.
pub fn restore_point(conn: &mut DbConn, spec: &RestoreSpec) -> QueryResult<Option<RestorePoint>> {
    Ok(match (spec.at, spec.before_change) {
        (Some(t), _) => Some(RestorePoint::At(t)),
        (None, Some(c)) => for_change(conn, c)?.map(|x| RestorePoint::Since(x.started_at)),
        (None, None) => Some(RestorePoint::BeforeChanges(spec.changes.clone())),
    })
}
