//! Version rows as history: what a change wrote, an entity's versions, and the state of
//! entities at a restore's point (what a bulk restore goes back to).

use std::collections::{BTreeSet, HashMap};

use diesel::dsl::count_star;
use diesel::prelude::*;

use super::for_change;
use crate::db::models::{Entity, EntityVersion};
use crate::db::schema::entity_versions;
use crate::db::{per_chunk, DbConn, CHUNK};
use crate::domain::execution::{undo_changes, ChangeStep, RestorePoint, RestoreSpec};
use crate::domain::EntityState;

/// The version row a change wrote for each of the given entities.
pub fn versions_by_change(
    conn: &mut DbConn,
    change_id: i64,
    ids: &[&str],
) -> QueryResult<HashMap<String, EntityVersion>> {
    let rows: Vec<EntityVersion> = per_chunk(ids, |chunk| {
        entity_versions::table
            .filter(entity_versions::change_id.eq(change_id))
            .filter(entity_versions::entity_id.eq_any(chunk))
            .select(EntityVersion::as_select())
            .load(conn)
    })?;
    Ok(rows.into_iter().map(|v| (v.entity_id.clone(), v)).collect())
}

/// For each `(entity, change)` pair, the version row that change wrote for that entity
/// (e.g. the deletion a restore undoes), in one chunked query however many changes.
pub fn versions_by_pairs(
    conn: &mut DbConn,
    pairs: &[(&str, i64)],
) -> QueryResult<HashMap<String, EntityVersion>> {
    let want: HashMap<&str, i64> = pairs.iter().copied().collect();
    let changes: Vec<i64> = pairs
        .iter()
        .map(|p| p.1)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids: Vec<&str> = want.keys().copied().collect();
    let rows: Vec<EntityVersion> = per_chunk(&ids, |chunk| {
        entity_versions::table
            .filter(entity_versions::entity_id.eq_any(chunk))
            .filter(entity_versions::change_id.eq_any(&changes))
            .select(EntityVersion::as_select())
            .load(conn)
    })?;
    Ok(rows
        .into_iter()
        .filter(|v| v.change_id.is_some() && want.get(v.entity_id.as_str()) == v.change_id.as_ref())
        .map(|v| (v.entity_id.clone(), v))
        .collect())
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

/// Number of version rows a change wrote (tests and reports).
pub fn version_count_for_change(conn: &mut DbConn, change_id: i64) -> QueryResult<i64> {
    entity_versions::table
        .filter(entity_versions::change_id.eq(change_id))
        .select(count_star())
        .first(conn)
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
) -> QueryResult<BTreeSet<i64>> {
    let mut out = BTreeSet::new();
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
