//! What effects do to entities: soft-delete, reactivate, rewrite (state and attributes),
//! each with its version rows.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::models::{Entity, EntityVersion};
use crate::db::schema::{entities, entity_versions};
use crate::db::{count_per_chunk, now, per_chunk, DbConn, CHUNK};
use crate::domain::EntityState;
use crate::with_concrete;

/// Full rows of the given entities, by id.
pub fn entities_by_id(conn: &mut DbConn, ids: &[&str]) -> QueryResult<HashMap<String, Entity>> {
    let rows: Vec<Entity> = per_chunk(ids, |chunk| {
        entities::table
            .filter(entities::id.eq_any(chunk))
            .select(Entity::as_select())
            .load(conn)
    })?;
    Ok(rows.into_iter().map(|e| (e.id.clone(), e)).collect())
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
    count_per_chunk(ids, |chunk| {
        diesel::update(
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
        .execute(conn)
    })
}

/// Set one entity's state and attributes (restore, set_attributes, purge).
/// Deleted entities back to `active` with their attributes untouched, set-based.
pub fn reactivate(conn: &mut DbConn, ids: &[&str]) -> QueryResult<usize> {
    let t = now();
    count_per_chunk(ids, |chunk| {
        diesel::update(
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
        .execute(conn)
    })
}

pub fn rewrite(conn: &mut DbConn, id: &str, state: EntityState, attrs: &str) -> QueryResult<()> {
    let t = now();
    // An active entity is no longer deleted; `None` sets nothing.
    let undeleted = (state == EntityState::Active).then_some((
        entities::deleted_at.eq(None::<NaiveDateTime>),
        entities::deleted_by.eq(None::<i64>),
        entities::purge_after.eq(None::<NaiveDateTime>),
    ));
    diesel::update(entities::table.find(id))
        .set((
            entities::state.eq(state),
            entities::attrs.eq(attrs),
            undeleted,
            entities::version.eq(entities::version + 1),
            entities::updated_at.eq(t),
        ))
        .execute(conn)?;
    Ok(())
}
