//! `where` filters in SQL: entities whose attributes equal given values, over a whole
//! kind or below given parents (`json_extract` on SQLite, `->>` on PostgreSQL).

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::EntityLite;
use crate::db::schema::entities;
use crate::db::{DbConn, CHUNK};
use crate::domain::EntityState;

/// What a `where` query over a whole kind found, filtered by the database.
pub struct Matching {
    /// Matches in one of the wanted states, in ID order, at most the limit asked for.
    pub rows: Vec<EntityLite>,
    /// All matches in a wanted state, when there were more than the limit.
    pub total: Option<u64>,
    /// Matches in other states (left out, and said so).
    pub others: u64,
}

/// `q` (a boxed `entities` query) narrowed to rows whose attribute `k` equals `v` for every
/// pair of `filter`, in the backend's JSON syntax (`sqlite`: `json_extract`, `pg`: `->>`),
/// names and values bound.
macro_rules! with_attrs {
    ($q:expr, $filter:expr, sqlite) => {
        with_attrs!(@ $q, $filter, "json_extract(entities.attrs, ", |k: &str| format!(
            "$.\"{}\"",
            k.replace('"', "")
        ))
    };
    ($q:expr, $filter:expr, pg) => {
        with_attrs!(@ $q, $filter, "(entities.attrs::jsonb ->> ", |k: &str| k.to_string())
    };
    (@ $q:expr, $filter:expr, $open:expr, $path:expr) => {{
        let mut q = $q;
        for (k, v) in $filter {
            q = q.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>($open)
                    .bind::<diesel::sql_types::Text, _>($path(k))
                    .sql(") = ")
                    .bind::<diesel::sql_types::Text, _>(v.clone()),
            );
        }
        q
    }};
}

/// Entities of `kind` whose attributes equal every value of `filter`, with the attribute
/// comparison and the limit in SQL (`json_extract` on SQLite, `->>` on PostgreSQL), so a
/// query without a scope never loads a whole kind. Attribute names must be the kind's
/// (the resolver checks them first).
pub fn matching_of_kind(
    conn: &mut DbConn,
    kind: &str,
    filter: &BTreeMap<String, String>,
    states: &[EntityState],
    limit: u64,
) -> QueryResult<Matching> {
    // One boxed query per backend and purpose: the JSON operator differs.
    macro_rules! matching {
        ($backend:ty, $c:expr, $json:ident) => {{
            let base = || {
                let q = entities::table
                    .filter(entities::kind.eq(kind.to_string()))
                    .into_boxed::<$backend>();
                with_attrs!(q, filter, $json)
            };
            let wanted: Vec<EntityState> = states.to_vec();
            let rows: Vec<EntityLite> = base()
                .filter(entities::state.eq_any(wanted.clone()))
                .order(entities::id.asc())
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .select(EntityLite::as_select())
                .load($c)?;
            let total = if rows.len() as u64 >= limit {
                Some(
                    base()
                        .filter(entities::state.eq_any(wanted.clone()))
                        .count()
                        .get_result::<i64>($c)? as u64,
                )
            } else {
                None
            };
            let others = base()
                .filter(entities::state.ne_all(wanted))
                .count()
                .get_result::<i64>($c)? as u64;
            Ok(Matching {
                rows,
                total,
                others,
            })
        }};
    }
    match conn {
        DbConn::Sqlite(c) => matching!(diesel::sqlite::Sqlite, c, sqlite),
        DbConn::Pg(c) => matching!(diesel::pg::Pg, c, pg),
    }
}

/// Entities of `kind` whose parent is one of `parents` and whose attributes equal every
/// value of `filter`, the filter in SQL as in [`matching_of_kind`]. Each row comes from the
/// scope index alone (`entities_children`: parent, kind, state, name and, on SQLite, the
/// attributes), so a level of 400,000 children of which 100,000 match reads no table row.
///
/// SQLite gets the parents as one value, a JSON array read by `json_each`: one statement
/// per level whatever the number of parents, with one plan. PostgreSQL gets them in arrays
/// of [`CHUNK`] (`= ANY(…)`), so that its estimate of the rows (from the array's length)
/// keeps choosing the index. `with_attrs`: read the attributes too (a `where` is checked
/// again by the core); without, every `attrs` is empty.
pub fn children(
    conn: &mut DbConn,
    parents: &[&str],
    kind: &str,
    filter: &BTreeMap<String, String>,
    with_attrs: bool,
) -> QueryResult<Vec<EntityLite>> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    macro_rules! rows {
        ($q:expr, $c:expr) => {
            if with_attrs {
                $q.select(EntityLite::as_select()).load::<EntityLite>($c)?
            } else {
                $q.select((
                    entities::id,
                    entities::kind,
                    entities::parent_id,
                    entities::name,
                    entities::state,
                ))
                .load::<(String, String, Option<String>, String, EntityState)>($c)?
                .into_iter()
                .map(without_attrs)
                .collect()
            }
        };
    }
    match conn {
        DbConn::Sqlite(c) => {
            let list = serde_json::to_string(parents).expect("a list of strings");
            let q = entities::table
                .filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>(
                        "`entities`.`parent_id` IN (SELECT value FROM json_each(",
                    )
                    .bind::<diesel::sql_types::Text, _>(list)
                    .sql("))"),
                )
                .filter(entities::kind.eq(kind))
                .into_boxed::<diesel::sqlite::Sqlite>();
            let q = with_attrs!(q, filter, sqlite);
            Ok(rows!(q, c))
        }
        DbConn::Pg(c) => {
            let mut out = Vec::new();
            for chunk in parents.chunks(CHUNK) {
                let q = entities::table
                    .filter(entities::parent_id.eq_any(chunk))
                    .filter(entities::kind.eq(kind))
                    .into_boxed::<diesel::pg::Pg>();
                let q = with_attrs!(q, filter, pg);
                out.extend(rows!(q, c));
            }
            Ok(out)
        }
    }
}

/// An entity read without its attributes.
pub(super) fn without_attrs(
    (id, kind, parent_id, name, state): (String, String, Option<String>, String, EntityState),
) -> EntityLite {
    EntityLite {
        id,
        kind,
        parent_id,
        name,
        attrs: String::new(),
        state,
    }
}
