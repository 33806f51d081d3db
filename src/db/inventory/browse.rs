//! Reading the inventory as pages show it: an entity's ancestry and children, and the
//! filtered, keyset-paginated listing.

use diesel::prelude::*;
use serde::Deserialize;

use super::get;
use crate::db::models::Entity;
use crate::db::schema::entities;
use crate::db::DbConn;
use crate::domain::EntityState;

/// Ancestors of an entity, nearest first.
pub fn ancestry(conn: &mut DbConn, e: &Entity) -> QueryResult<Vec<Entity>> {
    let mut out = Vec::new();
    let mut cur = e.parent_id.clone();
    while let Some(id) = cur {
        match get(conn, &id)? {
            Some(p) => {
                cur = p.parent_id.clone();
                out.push(p);
            }
            None => break,
        }
        if out.len() > 64 {
            break; // defensive: the schema forbids cycles
        }
    }
    Ok(out)
}

/// Children counts per (kind, state).
pub fn children_counts(
    conn: &mut DbConn,
    id: &str,
) -> QueryResult<Vec<(String, EntityState, i64)>> {
    entities::table
        .filter(entities::parent_id.eq(id))
        .group_by((entities::kind, entities::state))
        .select((entities::kind, entities::state, diesel::dsl::count_star()))
        .order((entities::kind.asc(), entities::state.asc()))
        .load(conn)
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub parent: Option<String>,
    pub state: Option<String>,
    /// ID prefix or case-insensitive name substring.
    pub q: Option<String>,
    /// Return entities with id greater than this (keyset pagination).
    pub after: Option<String>,
    pub limit: Option<i64>,
}

pub fn list(conn: &mut DbConn, f: &ListFilter) -> QueryResult<Vec<Entity>> {
    let mut q = entities::table.into_boxed();
    if let Some(k) = &f.kind {
        q = q.filter(entities::kind.eq(k.clone()));
    }
    if let Some(p) = &f.parent {
        q = q.filter(entities::parent_id.eq(p.clone()));
    }
    if let Some(s) = &f.state {
        // The service refuses an unknown state; here it would match nothing.
        let states: Vec<EntityState> = EntityState::parse(s).into_iter().collect();
        q = q.filter(entities::state.eq_any(states));
    }
    if let Some(text) = f.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let esc = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q = q.filter(
            entities::id
                .like(format!("{esc}%"))
                .escape('\\')
                .or(entities::name.like(format!("%{esc}%")).escape('\\')),
        );
    }
    if let Some(a) = &f.after {
        q = q.filter(entities::id.gt(a.clone()));
    }
    let limit = f.limit.unwrap_or(100).clamp(1, 1000);
    q.order(entities::id.asc())
        .limit(limit)
        .select(Entity::as_select())
        .load(conn)
}
