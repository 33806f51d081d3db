//! Entities by ID and by parent, in chunked `IN` lists: what resolution loads.

use std::collections::HashMap;

use diesel::prelude::*;

use super::EntityLite;
use crate::db::schema::entities;
use crate::db::{per_chunk, DbConn};
use crate::domain::EntityState;
use crate::with_concrete;

/// Fetch many entities by id (chunked `IN` lists).
pub fn fetch_lite(conn: &mut DbConn, ids: &[&str]) -> QueryResult<Vec<EntityLite>> {
    per_chunk(ids, |chunk| {
        entities::table
            .filter(entities::id.eq_any(chunk))
            .select(EntityLite::as_select())
            .load(conn)
    })
}

/// Like [`fetch_lite`] without the attributes (explicit IDs and ancestors need none).
pub fn fetch_refs(conn: &mut DbConn, ids: &[&str]) -> QueryResult<Vec<EntityLite>> {
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let rows: Vec<(String, String, Option<String>, String, EntityState)> =
        per_chunk(&sorted, |chunk| {
            with_concrete!(&mut *conn, |c| entities::table
                .filter(entities::id.eq_any(chunk))
                .select((
                    entities::id,
                    entities::kind,
                    entities::parent_id,
                    entities::name,
                    entities::state
                ))
                .load(c))
        })?;
    Ok(rows
        .into_iter()
        .map(super::matching::without_attrs)
        .collect())
}

/// Active entities of any kind whose parent is one of `parents` (cascades).
pub fn active_children_lite(conn: &mut DbConn, parents: &[&str]) -> QueryResult<Vec<EntityLite>> {
    per_chunk(parents, |chunk| {
        with_concrete!(&mut *conn, |c| entities::table
            .filter(entities::parent_id.eq_any(chunk))
            .filter(entities::state.eq(EntityState::Active))
            .select(EntityLite::as_select())
            .load(c))
    })
}

/// Active children per parent, for the given parents.
pub fn active_children_counts(
    conn: &mut DbConn,
    parents: &[&str],
) -> QueryResult<HashMap<String, i64>> {
    let rows: Vec<(Option<String>, i64)> = per_chunk(parents, |chunk| {
        entities::table
            .filter(entities::parent_id.eq_any(chunk))
            .filter(entities::state.eq(EntityState::Active))
            .group_by(entities::parent_id)
            .select((entities::parent_id, diesel::dsl::count_star()))
            .load(conn)
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|(p, n)| p.map(|p| (p, n)))
        .collect())
}
