//! An execution's life: created with its items, leased by one worker at a time
//! (claim, heartbeat, release), counted, moved between states.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::get;
use crate::db::models::Execution;
use crate::db::schema::{change_targets, execution_items, executions};
use crate::db::{now, DbConn};
use crate::domain::execution::{ExecState, ItemStatus, Wave};
use crate::domain::Effect;

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
    // Running, or baking with its bake over (the health check and gates are due).
    let due = executions::state
        .eq(ExecState::Running)
        .or(executions::state
            .eq(ExecState::Baking)
            .and(executions::bake_until.le(t)));
    let free = due.and(
        executions::lease_owner
            .is_null()
            .or(executions::lease_expires_at.lt(t)),
    );
    let found: Option<(i64, Option<String>)> = match conn {
        DbConn::Pg(c) => executions::table
            .filter(free)
            .order(executions::id.asc())
            .select((executions::id, executions::lease_owner))
            .for_update()
            .skip_locked()
            .first(c)
            .optional()?,
        DbConn::Sqlite(c) => executions::table
            .filter(free)
            .order(executions::id.asc())
            .select((executions::id, executions::lease_owner))
            .first(c)
            .optional()?,
    };
    let Some((id, before)) = found else {
        return Ok(None);
    };
    let n = diesel::update(executions::table.find(id).filter(free))
        .set((
            executions::lease_owner.eq(owner),
            executions::lease_expires_at.eq(t + ttl),
        ))
        .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    // Another worker held it and let its lease expire (it crashed or stalled).
    if let Some(prev) = before.filter(|p| p != owner) {
        tracing::warn!(execution = id, previous = %prev, "took over an execution whose lease expired");
        crate::counters::lease_takeover();
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
            .filter(executions::state.eq_any([ExecState::Running, ExecState::Baking])),
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
    // A running execution keeps its lease (and has not finished); `None` sets nothing.
    let stopped = (state != ExecState::Running).then_some((
        executions::finished_at.eq(finished),
        executions::lease_owner.eq(None::<String>),
        executions::lease_expires_at.eq(None::<NaiveDateTime>),
    ));
    diesel::update(executions::table.find(exec_id))
        .set((
            executions::state.eq(state),
            executions::halt_reason.eq(reason),
            executions::updated_at.eq(t),
            stopped,
        ))
        .execute(conn)?;
    Ok(())
}

/// Between waves: when the bake ends (`baking`) and why it waits for a person (`paused`);
/// `None` clears each.
pub fn set_between_waves(
    conn: &mut DbConn,
    exec_id: i64,
    bake_until: Option<NaiveDateTime>,
    pause_reason: Option<&str>,
) -> QueryResult<()> {
    diesel::update(executions::table.find(exec_id))
        .set((
            executions::bake_until.eq(bake_until),
            executions::pause_reason.eq(pause_reason),
        ))
        .execute(conn)?;
    Ok(())
}

/// Running executions (for the worker's idle check and operators).
pub fn running_ids(conn: &mut DbConn) -> QueryResult<Vec<i64>> {
    executions::table
        .filter(executions::state.eq(ExecState::Running))
        .select(executions::id)
        .load(conn)
}

/// Who started the execution of each of the given changes (email).
pub fn executors(conn: &mut DbConn, changes: &[i64]) -> QueryResult<HashMap<i64, String>> {
    use crate::db::schema::users;
    Ok(executions::table
        .inner_join(users::table.on(users::id.eq(executions::started_by)))
        .filter(executions::change_id.eq_any(changes))
        .select((executions::change_id, users::email))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}
