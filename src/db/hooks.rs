//! Teams' chat and event hooks. A deleted hook keeps its row (its deliveries refer to it)
//! with `deleted_at` set; its undelivered messages are given up.

use diesel::prelude::*;

use super::models::{Hook, NewHook, OutboxRow};
use super::schema::{hooks, outbox, teams};
use super::{now, DbConn};
use crate::domain::hook::OutboxChannel;
use crate::domain::OutboxState;

pub fn insert(conn: &mut DbConn, new: &NewHook) -> QueryResult<Hook> {
    diesel::insert_into(hooks::table)
        .values(new)
        .returning(hooks::all_columns)
        .get_result(conn)
}

/// The team's hooks in force, oldest first.
pub fn of_team(conn: &mut DbConn, team_id: i64) -> QueryResult<Vec<Hook>> {
    hooks::table
        .filter(hooks::team_id.eq(team_id))
        .filter(hooks::deleted_at.is_null())
        .order(hooks::id.asc())
        .select(Hook::as_select())
        .load(conn)
}

/// A hook with its team's name (deleted ones too).
pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<(Hook, String)>> {
    hooks::table
        .inner_join(teams::table)
        .filter(hooks::id.eq(id))
        .select((Hook::as_select(), teams::name))
        .first(conn)
        .optional()
}

/// The hooks in force of the teams named (every team's when `teams` is `None`), with
/// their team's name. One statement of fixed text for every event (prepared once per
/// connection; a filter on the names would be an `IN (…)` list prepared anew each time):
/// there are at most 20 hooks per team, and most events find none.
pub fn subscribed(
    conn: &mut DbConn,
    team_names: Option<&[String]>,
) -> QueryResult<Vec<(Hook, String)>> {
    let all: Vec<(Hook, String)> = hooks::table
        .inner_join(teams::table)
        .filter(hooks::deleted_at.is_null())
        .order(hooks::id.asc())
        .select((Hook::as_select(), teams::name))
        .load(conn)?;
    Ok(match team_names {
        Some(names) => all.into_iter().filter(|(_, t)| names.contains(t)).collect(),
        None => all,
    })
}

/// Delete a hook; its messages not delivered yet are given up (`dead`, with the reason).
/// How many were given up; `None` when it was deleted already.
pub fn delete(conn: &mut DbConn, id: i64) -> QueryResult<Option<u64>> {
    let n = diesel::update(hooks::table.find(id).filter(hooks::deleted_at.is_null()))
        .set(hooks::deleted_at.eq(Some(now())))
        .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    let abandoned = diesel::update(
        outbox::table
            .filter(outbox::hook_id.eq(id))
            .filter(outbox::state.eq(OutboxState::Pending)),
    )
    .set((
        outbox::state.eq(OutboxState::Dead),
        outbox::last_error.eq(Some("the hook was deleted")),
        outbox::lease_owner.eq(None::<String>),
        outbox::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(Some(abandoned as u64))
}

/// How many hooks team `team_id` has in force; on PostgreSQL the team's row is locked
/// for the transaction first, so two creations cannot both pass the limit (SQLite's write
/// transaction already excludes the other).
pub fn count_locked(conn: &mut DbConn, team_id: i64) -> QueryResult<i64> {
    if let DbConn::Pg(c) = conn {
        teams::table
            .find(team_id)
            .select(teams::id)
            .for_update()
            .first::<i64>(c)?;
    }
    hooks::table
        .filter(hooks::team_id.eq(team_id))
        .filter(hooks::deleted_at.is_null())
        .count()
        .get_result(conn)
}

/// The hook's latest deliveries, newest first.
pub fn deliveries(conn: &mut DbConn, id: i64, limit: i64) -> QueryResult<Vec<OutboxRow>> {
    outbox::table
        .filter(outbox::channel.eq(OutboxChannel::Hook))
        .filter(outbox::hook_id.eq(id))
        .order(outbox::id.desc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
}

/// (team, name) of the hooks `ids` (deleted ones too), by id.
pub fn names(
    conn: &mut DbConn,
    ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, (String, String)>> {
    Ok(hooks::table
        .inner_join(teams::table)
        .filter(hooks::id.eq_any(ids.to_vec()))
        .select((hooks::id, teams::name, hooks::name))
        .load::<(i64, String, String)>(conn)?
        .into_iter()
        .map(|(id, team, name)| (id, (team, name)))
        .collect())
}
