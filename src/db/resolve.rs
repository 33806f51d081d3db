//! Loading for resolution: what a selector, a rollback or a restore needs from the
//! inventory, read in batched queries (chunked `IN` lists, scopes descended level by level)
//! into plain data. The pure core (`domain::resolution`) decides everything from it.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::inventory::{self, EntityLite};
use super::schema::entities;
use super::{DbConn, CHUNK};
use crate::domain::execution::{RestorePoint, RestoreSpec};
use crate::domain::resolution::{
    evaluate, evaluate_restore, evaluate_rollback, restore_candidates, Ancestor, Ancestors,
    EntityFacts, Loaded, Plan, Population, Resolution, ResolvedTarget, RestoreLoaded, Rollback,
    Standing,
};
use crate::domain::schema::{Effect, Operation, Schema};
use crate::domain::selector::Selector;
use crate::domain::EntityState;

fn facts(e: EntityLite) -> EntityFacts {
    EntityFacts {
        id: e.id,
        kind: e.kind,
        parent_id: e.parent_id,
        name: e.name,
        attrs: e.attrs,
        state: e.state,
    }
}

fn all_facts(rows: Vec<EntityLite>) -> Vec<EntityFacts> {
    rows.into_iter().map(facts).collect()
}

/// Resolve `selector` for `op` against the inventory as it is now.
pub fn resolve(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    params: &serde_json::Value,
    selector: &Selector,
) -> QueryResult<Resolution> {
    let started = Instant::now();
    let lap = |what: &str| {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::debug!(phase = what, ms, "resolve")
    };
    let plan = Plan::new(schema, op, selector);
    let mut loaded = Loaded::default();
    load_selected(conn, &plan, &mut loaded)?;
    lap("selected");
    load_around(conn, &plan, &mut loaded)?;
    lap("fetched ancestry, descendants, children, retention");
    let r = evaluate(plan, params, loaded, super::now());
    lap("evaluated");
    Ok(r)
}

/// The explicit IDs' entities, the scopes' entities, and what the query finds: below the
/// scopes level by level (the `where` in SQL at the last level), or over the whole kind.
/// The scopes and the levels above the last are the targets' ancestors: they go into
/// `loaded.ancestors` as they are read, so [`ancestors`] reads only what is above them.
fn load_selected(conn: &mut DbConn, plan: &Plan<'_>, loaded: &mut Loaded) -> QueryResult<()> {
    if !plan.wanted.is_empty() {
        let ids: Vec<&str> = plan.wanted.iter().map(|w| w.id).collect();
        loaded.explicit = all_facts(inventory::fetch_refs(conn, &ids)?);
    }
    if let Some(scope) = &plan.scope {
        loaded.scopes = all_facts(inventory::fetch_refs(conn, &scope.lines)?);
    }
    if let Some(scope) = plan.descends() {
        let known = &mut loaded.ancestors;
        known.extend(loaded.scopes.iter().map(|e| (e.id.clone(), ancestor_of(e))));
        let roots = plan.judge_scopes(&loaded.scopes, None);
        let filter = &plan.selector.filter;
        let mut rows: Vec<EntityLite> = Vec::new();
        for (depth, level) in scope.levels.iter().enumerate() {
            let parents: Vec<&str> = if depth == 0 {
                roots.clone()
            } else {
                rows.iter().map(|e| e.id.as_str()).collect()
            };
            // The last level is the operation's kind: its `where` goes to SQL (and is
            // checked again, with the states, by the core, which reads the attributes).
            let next = if depth + 1 == scope.levels.len() {
                inventory::children(conn, &parents, level, filter, !filter.is_empty())?
            } else {
                inventory::children(conn, &parents, level, &BTreeMap::new(), false)?
            };
            known.extend(rows.into_iter().map(|e| {
                let a = Ancestor {
                    kind: e.kind,
                    parent_id: e.parent_id,
                    name: e.name,
                };
                (e.id, a)
            }));
            rows = next;
        }
        loaded.candidates = all_facts(rows);
    } else if plan.queries_whole_kind() {
        // The whole kind: the database filters and stops after one more than the limit.
        let m = inventory::matching_of_kind(
            conn,
            &plan.op.target,
            &plan.selector.filter,
            plan.usable_states(),
            plan.op.max_targets.saturating_add(1),
        )?;
        loaded.others = m.others;
        loaded.matched_total = m.total;
        loaded.candidates = all_facts(m.rows);
    }
    Ok(())
}

fn ancestor_of(e: &EntityFacts) -> Ancestor {
    Ancestor {
        kind: e.kind.clone(),
        parent_id: e.parent_id.clone(),
        name: e.name.clone(),
    }
}

/// What the rules need around every entity that may be a target: its ancestors (scope
/// paths, roots), and as the operation asks, its active descendants (cascade), its active
/// children counts (a delete that does not cascade) or its retention date (purge).
fn load_around(conn: &mut DbConn, plan: &Plan<'_>, loaded: &mut Loaded) -> QueryResult<()> {
    let explicit = std::mem::take(&mut loaded.explicit);
    let candidates = std::mem::take(&mut loaded.candidates);
    let r = load_around_subjects(conn, plan, &explicit, &candidates, loaded);
    loaded.explicit = explicit;
    loaded.candidates = candidates;
    r
}

fn load_around_subjects(
    conn: &mut DbConn,
    plan: &Plan<'_>,
    explicit: &[EntityFacts],
    candidates: &[EntityFacts],
    loaded: &mut Loaded,
) -> QueryResult<()> {
    let subjects: Vec<&EntityFacts> = explicit
        .iter()
        .chain(candidates)
        .filter(|e| plan.may_target(e))
        .collect();
    let known = std::mem::take(&mut loaded.ancestors);
    let parents = subjects.iter().filter_map(|e| e.parent_id.as_deref());
    loaded.ancestors = ancestors(conn, known, parents)?;
    if subjects.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<&str> = subjects.iter().map(|e| e.id.as_str()).collect();
    if !explicit.is_empty() && !candidates.is_empty() {
        ids.sort_unstable();
        ids.dedup();
    }
    if plan.cascades() {
        loaded.descendants = descendants(conn, &ids)?;
    }
    if plan.checks_children() {
        loaded.active_children = inventory::active_children_counts(conn, &ids)?;
    }
    if plan.checks_retention() {
        loaded.purge_after = purge_dates(conn, &ids)?;
    }
    load_population(conn, plan, &subjects, loaded)
}

/// What the operation's population guards count: active entities of the target kind and of
/// the root kind, and of the target kind below every root and `min_remaining.per` entity a
/// possible target is under (found through the loaded ancestors).
fn load_population(
    conn: &mut DbConn,
    plan: &Plan<'_>,
    subjects: &[&EntityFacts],
    loaded: &mut Loaded,
) -> QueryResult<()> {
    let (op, g) = (plan.op, &plan.op.guards);
    if !g.any(op.effect) {
        return Ok(());
    }
    let chain = plan.schema.ancestry(&op.target);
    let mut pop = Population::default();
    if g.max_fraction.is_some() {
        pop.of_kind = Some(count_active(conn, &op.target)?);
    }
    if op.effect.is_destructive() {
        if let Some(root) = chain.last() {
            pop.roots = Some(count_active(conn, &root.name)?);
        }
    }
    let mut scope_kinds: Vec<&str> = Vec::new();
    if g.max_fraction_per_root.is_some() && chain.len() > 1 {
        scope_kinds.extend(chain.last().map(|k| k.name.as_str()));
    }
    if let Some(m) = &g.min_remaining {
        scope_kinds.push(&m.per);
    }
    scope_kinds.dedup();
    for scope_kind in scope_kinds {
        let Some(levels) = plan.schema.descent(scope_kind, &op.target) else {
            continue;
        };
        let mut tops: Vec<&str> = subjects
            .iter()
            .filter_map(|e| ancestor_of_kind(&loaded.ancestors, e.parent_id.as_deref(), scope_kind))
            .collect();
        tops.sort_unstable();
        tops.dedup();
        pop.under.extend(active_below(conn, &tops, &levels)?);
    }
    loaded.population = pop;
    Ok(())
}

/// The ancestor of kind `kind`, walking up from `parent`.
fn ancestor_of_kind<'a>(
    ancestors: &'a Ancestors,
    mut parent: Option<&'a str>,
    kind: &str,
) -> Option<&'a str> {
    while let Some(id) = parent {
        let (key, a) = ancestors.get_key_value(id)?;
        if a.kind == kind {
            return Some(key.as_str());
        }
        parent = a.parent_id.as_deref();
    }
    None
}

/// Active entities of `kind`.
fn count_active(conn: &mut DbConn, kind: &str) -> QueryResult<u64> {
    let n: i64 = entities::table
        .filter(entities::kind.eq(kind))
        .filter(entities::state.eq(EntityState::Active))
        .count()
        .get_result(conn)?;
    Ok(n as u64)
}

/// Active entities of the last of `levels` below each of `tops`, descending through the
/// active entities of each level (top-down kinds, as [`Schema::descent`] gives them).
fn active_below(
    conn: &mut DbConn,
    tops: &[&str],
    levels: &[String],
) -> QueryResult<HashMap<String, u64>> {
    let mut out: HashMap<String, u64> = HashMap::with_capacity(tops.len());
    // Each entity of the current level, and the top it is under.
    let mut under: HashMap<String, String> = tops
        .iter()
        .map(|t| (t.to_string(), t.to_string()))
        .collect();
    for (depth, kind) in levels.iter().enumerate() {
        let parents: Vec<&str> = under.keys().map(String::as_str).collect();
        let mut next: HashMap<String, String> = HashMap::new();
        for chunk in parents.chunks(CHUNK) {
            let rows = entities::table
                .filter(entities::parent_id.eq_any(chunk))
                .filter(entities::kind.eq(kind))
                .filter(entities::state.eq(EntityState::Active));
            if depth + 1 == levels.len() {
                let counts: Vec<(Option<String>, i64)> = rows
                    .group_by(entities::parent_id)
                    .select((entities::parent_id, diesel::dsl::count_star()))
                    .load(conn)?;
                for (parent, n) in counts {
                    if let Some(top) = parent.and_then(|p| under.get(&p)) {
                        *out.entry(top.clone()).or_default() += n as u64;
                    }
                }
            } else {
                let ids: Vec<(String, Option<String>)> = rows
                    .select((entities::id, entities::parent_id))
                    .load(conn)?;
                for (id, parent) in ids {
                    if let Some(top) = parent.and_then(|p| under.get(&p)) {
                        next.insert(id, top.clone());
                    }
                }
            }
        }
        under = next;
    }
    Ok(out)
}

/// Every ancestor of the given parents (themselves included), one query per level, added
/// to those already `known` (read in the same snapshot, so the same rows); only what is
/// not known is read.
fn ancestors<'a>(
    conn: &mut DbConn,
    known: Ancestors,
    parents: impl Iterator<Item = &'a str>,
) -> QueryResult<Ancestors> {
    let mut out = known;
    let mut level: Vec<String> = {
        let mut ids: Vec<&str> = parents.filter(|p| !out.contains_key(*p)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(str::to_string).collect()
    };
    // What is known may itself have parents that are not (a scope's own ancestors).
    let mut above: Vec<&str> = out
        .values()
        .filter_map(|a| a.parent_id.as_deref())
        .filter(|p| !out.contains_key(*p))
        .collect();
    above.sort_unstable();
    above.dedup();
    level.extend(above.into_iter().map(str::to_string));
    level.sort_unstable();
    level.dedup();
    while !level.is_empty() {
        let ids: Vec<&str> = level.iter().map(String::as_str).collect();
        let rows = inventory::fetch_refs(conn, &ids)?;
        let mut next: Vec<String> = Vec::new();
        for r in rows {
            if let Some(p) = &r.parent_id {
                next.push(p.clone());
            }
            let a = Ancestor {
                kind: r.kind,
                parent_id: r.parent_id,
                name: r.name,
            };
            out.insert(r.id, a);
        }
        next.retain(|p| !out.contains_key(p));
        next.sort_unstable();
        next.dedup();
        level = next;
    }
    Ok(out)
}

/// The active descendants of `roots`, parents before children, one level per query.
fn descendants(conn: &mut DbConn, roots: &[&str]) -> QueryResult<Vec<EntityFacts>> {
    let mut out = Vec::new();
    let mut level = inventory::active_children_lite(conn, roots)?;
    while !level.is_empty() {
        let next = {
            let ids: Vec<&str> = level.iter().map(|e| e.id.as_str()).collect();
            inventory::active_children_lite(conn, &ids)?
        };
        out.extend(level.into_iter().map(facts));
        level = next;
    }
    Ok(out)
}

/// `purge_after` of the deleted entities among `ids`.
fn purge_dates(
    conn: &mut DbConn,
    ids: &[&str],
) -> QueryResult<HashMap<String, Option<NaiveDateTime>>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(String, Option<NaiveDateTime>)> = entities::table
            .filter(entities::id.eq_any(chunk))
            .filter(entities::state.eq(EntityState::Deleted))
            .select((entities::id, entities::purge_after))
            .load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}

/// Resolve a rollback: exactly the targets the original execution changed, as long as
/// they are still in the state that execution left them in (anything restored or changed
/// since is left out, with a warning, so the fingerprint shows it).
pub fn resolve_rollback(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    original_change: i64,
    execution_id: i64,
    inverse: Effect,
) -> QueryResult<Resolution> {
    let positions = super::exec::done_positions(conn, execution_id)?;
    let stored: Vec<ResolvedTarget> = super::exec::targets_at(conn, original_change, &positions)?
        .into_iter()
        .map(|(_, kind, id, scope_path, name)| ResolvedTarget {
            kind,
            id,
            scope_path,
            name,
        })
        .collect();
    let standing = {
        let ids: Vec<&str> = stored.iter().map(|t| t.id.as_str()).collect();
        standings(conn, &ids)?
    };
    let rb = Rollback {
        schema,
        op,
        original_change,
        inverse,
    };
    let mut r = evaluate_rollback(rb, stored, &standing);
    name_roots(conn, &mut r)?;
    Ok(r)
}

/// State and deleting change of each of `ids` that is in the inventory.
fn standings(conn: &mut DbConn, ids: &[&str]) -> QueryResult<HashMap<String, Standing>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(String, EntityState, Option<i64>)> = entities::table
            .filter(entities::id.eq_any(chunk))
            .select((entities::id, entities::state, entities::deleted_by))
            .load(conn)?;
        out.extend(
            rows.into_iter()
                .map(|(id, state, deleted_by)| (id, Standing { state, deleted_by })),
        );
    }
    Ok(out)
}

/// A rollback's stored scope paths carry no names: read the few sample roots' names.
fn name_roots(conn: &mut DbConn, r: &mut Resolution) -> QueryResult<()> {
    let roots = &mut r.summary.sample_roots;
    let unnamed: Vec<&str> = roots
        .iter()
        .filter(|s| s.name.is_empty())
        .map(|s| s.id.as_str())
        .collect();
    if unnamed.is_empty() {
        return Ok(());
    }
    let names: HashMap<String, String> = inventory::fetch_refs(conn, &unnamed)?
        .into_iter()
        .map(|e| (e.id, e.name))
        .collect();
    for s in roots.iter_mut() {
        if let Some(n) = names.get(&s.id) {
            s.name.clone_from(n);
        }
    }
    Ok(())
}

/// Resolve a bulk restore: the named entities and everything the named changes touched,
/// back to the state they had at `point`. Entities already as they were, or that were not
/// active at the point, are left out with a warning; unknown, purged and wrong-kind IDs are
/// errors with their line in `entities`.
pub fn resolve_restore(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    spec: &RestoreSpec,
    point: &RestorePoint,
) -> QueryResult<Resolution> {
    let touched = if spec.changes.is_empty() {
        Vec::new()
    } else {
        super::exec::touched_by(conn, &spec.changes)?
    };
    let candidates = restore_candidates(&spec.entities, touched);
    let ids: Vec<&str> = candidates.keys().map(String::as_str).collect();
    let rows = super::exec::entities_by_id(conn, &ids)?;
    let at_point = super::exec::state_at(conn, &rows, point)?;
    let entities: HashMap<String, EntityFacts> = rows
        .into_iter()
        .map(|(id, e)| {
            let f = EntityFacts {
                id: e.id,
                kind: e.kind,
                parent_id: e.parent_id,
                name: e.name,
                attrs: e.attrs,
                state: e.state,
            };
            (id, f)
        })
        .collect();
    let ancestors = ancestors(
        conn,
        Ancestors::new(),
        entities.values().filter_map(|e| e.parent_id.as_deref()),
    )?;
    let loaded = RestoreLoaded {
        entities,
        at_point,
        ancestors,
    };
    Ok(evaluate_restore(schema, op, spec, &candidates, loaded))
}
