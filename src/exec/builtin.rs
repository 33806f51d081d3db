//! The built-in executor: the inventory is the system of record. Each batch applies its
//! effects and records the items' results in the caller's transaction, with one version
//! row per mutated entity (before and after, and the change that did it).

use std::collections::{BTreeMap, HashMap};

use crate::db::exec as repo;
use crate::db::models::{Change, Entity, EntityVersion, ExecutionItem};
use crate::db::{now, DbConn};
use crate::domain::effect::{decide, restore_to_point, Found, Outcome, Rule};
use crate::domain::execution::{Attrs, ChangeStep, ItemStatus, RestoreSpec};
use crate::domain::schema::{Effect, DEFAULT_RETENTION_DAYS};
use crate::domain::{EntityState, Schema};
use crate::error::{AppResult, ErrorCode};

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub done: i64,
    pub failed: i64,
    pub skipped: i64,
}

fn attrs_of(s: &str) -> Attrs {
    serde_json::from_str(s).unwrap_or_default()
}

fn found(e: &Entity) -> Found<'_> {
    Found {
        state: e.state,
        attrs: &e.attrs,
        deleted_by: e.deleted_by,
        purge_after: e.purge_after,
    }
}

/// What the rules need to know beyond the entities themselves.
struct Prior {
    /// What each entity looked like before the change being undone, when it matters.
    before: HashMap<String, EntityVersion>,
    /// A bulk restore: the state (and attributes) of each entity at its point.
    restore_to: Option<HashMap<String, (EntityState, String)>>,
    /// set_attributes: the typed params.
    params: Attrs,
    /// The rollback of a set_attributes: the keys the original set.
    rollback_keys: Vec<String>,
}

/// The batch's writes, as the rules decided them.
#[derive(Default)]
struct Writes<'i> {
    versions: Vec<EntityVersion>,
    deletes: Vec<&'i str>,
    reactivate: Vec<&'i str>,
    rewrites: Vec<(&'i str, EntityState, String)>,
    done: Vec<i64>,
    other: BTreeMap<(ItemStatus, String), Vec<i64>>,
}

/// Apply `effect` to the entities of `items` for change `c`: read what the rules need,
/// decide each item by the rules every preview shows (`domain::effect`), write it all.
pub fn apply(
    conn: &mut DbConn,
    schema: &Schema,
    c: &Change,
    effect: Effect,
    items: &[ExecutionItem],
) -> AppResult<Counts> {
    let ids: Vec<&str> = items.iter().map(|i| i.entity_id.as_str()).collect();
    let ents = repo::entities_by_id(conn, &ids)?;
    let t = now();
    let prior = prior(conn, c, effect, &ents, &ids)?;
    let writes = decide_all(c, effect, items, &ents, &prior, t);
    let days = schema
        .operation(&c.operation)
        .map(|o| o.retention_days)
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    write(
        conn,
        c,
        items,
        writes,
        t + chrono::Duration::days(i64::from(days)),
    )
}

fn prior(
    conn: &mut DbConn,
    c: &Change,
    effect: Effect,
    ents: &HashMap<String, Entity>,
    ids: &[&str],
) -> AppResult<Prior> {
    let mut before: HashMap<String, EntityVersion> = HashMap::new();
    match (effect, c.rollback_of) {
        (Effect::Restore, _) => {
            let mut by_deleter: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
            for e in ents.values() {
                if let Some(d) = e.deleted_by {
                    by_deleter.entry(d).or_default().push(e.id.as_str());
                }
            }
            for (deleter, ids) in by_deleter {
                before.extend(repo::versions_by_change(conn, deleter, &ids)?);
            }
        }
        (Effect::SetAttributes, Some(orig)) => {
            before = repo::versions_by_change(conn, orig, ids)?;
        }
        _ => {}
    }
    // A bulk restore goes back to the state at its point, per entity.
    let restore_to = match RestoreSpec::of_selector(&c.selector) {
        Some(spec) if effect == Effect::Restore => {
            let point = repo::restore_point(conn, &spec)?.ok_or_else(|| {
                crate::error::AppError::new(
                    ErrorCode::NotExecuted,
                    "the change this restore goes back before never ran",
                )
            })?;
            Some(repo::state_at(conn, ents, &point)?)
        }
        _ => None,
    };
    let rollback_keys: Vec<String> = match c.rollback_of {
        Some(orig) if effect == Effect::SetAttributes => {
            let orig_params = crate::db::changes::get(conn, orig)?
                .map(|o| attrs_of(&o.params))
                .unwrap_or_default();
            orig_params.keys().cloned().collect()
        }
        _ => vec![],
    };
    Ok(Prior {
        before,
        restore_to,
        params: attrs_of(&c.params),
        rollback_keys,
    })
}

fn decide_all<'i>(
    c: &Change,
    effect: Effect,
    items: &'i [ExecutionItem],
    ents: &HashMap<String, Entity>,
    prior: &Prior,
    t: chrono::NaiveDateTime,
) -> Writes<'i> {
    let rule = Rule {
        effect,
        rollback: c.rollback_of.is_some(),
        params: &prior.params,
        rollback_keys: &prior.rollback_keys,
    };
    let mut w = Writes::default();
    for it in items {
        let outcome = match ents.get(&it.entity_id) {
            None => Outcome::Fail("the entity is no longer in the inventory".into()),
            // The rules every preview of this change shows (`domain::effect`).
            Some(e) => match &prior.restore_to {
                Some(points) => {
                    restore_to_point(found(e), points.get(&e.id).map(|(s, a)| (*s, a.as_str())))
                }
                None => {
                    let before = prior.before.get(&e.id).map(|v| ChangeStep {
                        before_attrs: &v.before_attrs,
                        after_attrs: &v.after_attrs,
                    });
                    decide(&rule, found(e), before, t)
                }
            },
        };
        match outcome {
            Outcome::Apply(state, attrs) => {
                let e = &ents[&it.entity_id];
                w.versions.push(EntityVersion {
                    entity_id: e.id.clone(),
                    version: e.version + 1,
                    change_id: Some(c.id),
                    at: t,
                    before_state: e.state,
                    before_name: e.name.clone(),
                    before_attrs: e.attrs.clone(),
                    after_state: state,
                    after_name: e.name.clone(),
                    after_attrs: attrs.clone(),
                    import_id: None,
                    before_parent: e.parent_id.clone(),
                    after_parent: e.parent_id.clone(),
                });
                if effect == Effect::SoftDelete {
                    w.deletes.push(it.entity_id.as_str());
                } else if effect == Effect::Restore && attrs == e.attrs {
                    // The common case: nothing to rewrite but the state, so set-based.
                    w.reactivate.push(it.entity_id.as_str());
                } else {
                    w.rewrites.push((it.entity_id.as_str(), state, attrs));
                }
                w.done.push(it.position);
            }
            Outcome::Skip(why) => w
                .other
                .entry((ItemStatus::Skipped, why))
                .or_default()
                .push(it.position),
            Outcome::Fail(why) => w
                .other
                .entry((ItemStatus::Failed, why))
                .or_default()
                .push(it.position),
        }
    }
    w
}

/// Write the batch: version rows, the entity mutations, the items' outcomes.
fn write(
    conn: &mut DbConn,
    c: &Change,
    items: &[ExecutionItem],
    w: Writes<'_>,
    purge_after: chrono::NaiveDateTime,
) -> AppResult<Counts> {
    repo::insert_versions(conn, &w.versions)?;
    if !w.deletes.is_empty() {
        let n = repo::soft_delete(conn, &w.deletes, c.id, purge_after)?;
        debug_assert_eq!(n, w.deletes.len());
    }
    if !w.reactivate.is_empty() {
        let n = repo::reactivate(conn, &w.reactivate)?;
        debug_assert_eq!(n, w.reactivate.len());
    }
    for (id, state, attrs) in &w.rewrites {
        repo::rewrite(conn, id, *state, attrs)?;
    }
    repo::finish_items(conn, c_exec(items), &w.done, ItemStatus::Done, None)?;
    let mut counts = Counts {
        done: w.done.len() as i64,
        ..Counts::default()
    };
    for ((status, why), positions) in &w.other {
        repo::finish_items(conn, c_exec(items), positions, *status, Some(why))?;
        if *status == ItemStatus::Failed {
            counts.failed += positions.len() as i64;
        } else {
            counts.skipped += positions.len() as i64;
        }
    }
    Ok(counts)
}

fn c_exec(items: &[ExecutionItem]) -> i64 {
    items.first().map(|i| i.execution_id).unwrap_or_default()
}
