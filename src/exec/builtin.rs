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

/// Apply `effect` to the entities of `items` for change `c`.
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
    let op = schema.operation(&c.operation);

    // What the entity looked like before the change being undone, when it matters.
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
            before = repo::versions_by_change(conn, orig, &ids)?;
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
            Some(repo::state_at(conn, &ents, &point)?)
        }
        _ => None,
    };
    // set_attributes: the typed params (or, for a rollback, the keys the original set).
    let params: Attrs = attrs_of(&c.params);
    let rollback_keys: Vec<String> = match c.rollback_of {
        Some(orig) if effect == Effect::SetAttributes => {
            let orig_params = crate::db::changes::get(conn, orig)?
                .map(|o| attrs_of(&o.params))
                .unwrap_or_default();
            orig_params.keys().cloned().collect()
        }
        _ => vec![],
    };

    let rule = Rule {
        effect,
        rollback: c.rollback_of.is_some(),
        params: &params,
        rollback_keys: &rollback_keys,
    };
    let mut versions = Vec::new();
    let mut deletes: Vec<&str> = Vec::new();
    let mut reactivate: Vec<&str> = Vec::new();
    let mut rewrites: Vec<(&str, EntityState, String)> = Vec::new();
    let mut done = Vec::new();
    let mut other: BTreeMap<(ItemStatus, String), Vec<i64>> = BTreeMap::new();
    for it in items {
        let outcome = match ents.get(&it.entity_id) {
            None => Outcome::Fail("the entity is no longer in the inventory".into()),
            // The rules every preview of this change shows (`domain::effect`).
            Some(e) => match &restore_to {
                Some(points) => {
                    restore_to_point(found(e), points.get(&e.id).map(|(s, a)| (*s, a.as_str())))
                }
                None => {
                    let before = before.get(&e.id).map(|v| ChangeStep {
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
                versions.push(EntityVersion {
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
                    deletes.push(it.entity_id.as_str());
                } else if effect == Effect::Restore && attrs == e.attrs {
                    // The common case: nothing to rewrite but the state, so set-based.
                    reactivate.push(it.entity_id.as_str());
                } else {
                    rewrites.push((it.entity_id.as_str(), state, attrs));
                }
                done.push(it.position);
            }
            Outcome::Skip(why) => other
                .entry((ItemStatus::Skipped, why))
                .or_default()
                .push(it.position),
            Outcome::Fail(why) => other
                .entry((ItemStatus::Failed, why))
                .or_default()
                .push(it.position),
        }
    }
    repo::insert_versions(conn, &versions)?;
    if !deletes.is_empty() {
        let days = op
            .map(|o| o.retention_days)
            .unwrap_or(DEFAULT_RETENTION_DAYS);
        let purge_after = t + chrono::Duration::days(i64::from(days));
        let n = repo::soft_delete(conn, &deletes, c.id, purge_after)?;
        debug_assert_eq!(n, deletes.len());
    }
    if !reactivate.is_empty() {
        let n = repo::reactivate(conn, &reactivate)?;
        debug_assert_eq!(n, reactivate.len());
    }
    for (id, state, attrs) in &rewrites {
        repo::rewrite(conn, id, *state, attrs)?;
    }
    repo::finish_items(conn, c_exec(items), &done, ItemStatus::Done, None)?;
    let mut counts = Counts {
        done: done.len() as i64,
        ..Counts::default()
    };
    for ((status, why), positions) in &other {
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
