//! Resolutions that undo: a rollback (exactly the targets an execution changed, while they
//! are still as it left them) and a bulk restore (named entities and what named changes
//! touched, back to a point). Pure, like [`super::evaluate`]: `db::resolve` loads, these
//! decide.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::evaluate::{name_in, place};
use super::plan::EntityFacts;
use super::problems::{kind_desc, plural_desc, Order, Problems};
use super::scope::Ancestors;
use super::summary::{summarize, verb};
use super::{fingerprint, Resolution, ResolutionError, ResolvedTarget};
use crate::domain::execution::RestoreSpec;
use crate::domain::schema::{Effect, Operation, Schema};
use crate::domain::EntityState;

/// The operation name a bulk restore's fingerprint is computed with.
pub fn restore_operation(op: &str) -> String {
    format!("restore:{op}")
}

/// The operation name a rollback's fingerprint is computed with.
pub fn rollback_operation(op: &str) -> String {
    format!("rollback:{op}")
}

/// The parameters a rollback's fingerprint is computed with.
pub fn rollback_params(original_change: i64) -> serde_json::Value {
    serde_json::json!({"rollback_of": original_change})
}

/// An entity as a rollback finds it today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub state: EntityState,
    pub deleted_by: Option<i64>,
}

/// Is an entity the original change acted on still as that change left it, so that
/// rolling back (running `inverse`) undoes that change and nothing later? A webhook call
/// left the inventory as it was, so its undo is called for every target it was done for
/// that is still in the inventory (as the call itself was, whatever the state).
pub fn left_as_it_was(inverse: Effect, now: Standing, original_change: i64) -> bool {
    match inverse {
        Effect::Restore => {
            now.state == EntityState::Deleted && now.deleted_by == Some(original_change)
        }
        Effect::Webhook => true,
        _ => now.state == EntityState::Active,
    }
}

/// What a rollback is of: the original change's operation, the change, and the inverse
/// effect the rollback runs.
#[derive(Debug, Clone, Copy)]
pub struct Rollback<'a> {
    pub schema: &'a Schema,
    pub op: &'a Operation,
    pub original_change: i64,
    pub inverse: Effect,
}

/// Resolve a rollback from the original execution's done targets (`stored`, as that change
/// stored them) and how their entities stand today (`standing`; a missing one is gone).
/// Anything restored or changed since is left out with a warning, so the fingerprint shows
/// it.
pub fn evaluate_rollback(
    rb: Rollback<'_>,
    stored: Vec<ResolvedTarget>,
    standing: &HashMap<String, Standing>,
) -> Resolution {
    let total = stored.len();
    let (mut gone, mut moved) = (0u64, 0u64);
    let mut targets: Vec<ResolvedTarget> = stored
        .into_iter()
        .filter(|t| match standing.get(&t.id) {
            None => {
                gone += 1;
                false
            }
            Some(now) if left_as_it_was(rb.inverse, *now, rb.original_change) => true,
            Some(_) => {
                moved += 1;
                false
            }
        })
        .collect();
    targets.sort_unstable_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    let mut warnings = Vec::new();
    if moved > 0 {
        warnings.push(format!("{moved} of the {total} targets the original execution changed are no longer as it left them (restored or changed since) and are left out"));
    }
    if gone > 0 {
        warnings.push(format!("{gone} targets are no longer in the inventory"));
    }
    let (schema, op) = (rb.schema, rb.op);
    let name_of = |root: &str| name_in(&targets, &op.target, root);
    let summary = summarize(
        schema,
        op,
        verb(rb.inverse, true),
        &targets,
        warnings,
        name_of,
    );
    let fp = fingerprint(
        &schema.hash,
        &rollback_operation(&op.name),
        &rollback_params(rb.original_change),
        &targets,
    );
    let errors = if targets.is_empty() {
        vec![ResolutionError {
            field: "targets".into(),
            line: None,
            input: String::new(),
            code: "no_targets".into(),
            message: "nothing left to roll back: every target is already back or gone".into(),
            actual_kind: None,
            expected_kind: None,
        }]
    } else {
        vec![]
    };
    Resolution {
        error_count: errors.len() as u64,
        targets,
        summary,
        errors,
        fingerprint: fp,
    }
}

/// What a restore considers, by ID: the named entities (with their 1-based line in
/// `entities`, the first if named twice) and everything the named changes `touched`.
pub fn restore_candidates(
    entities: &[String],
    touched: Vec<String>,
) -> BTreeMap<String, Option<usize>> {
    let mut out: BTreeMap<String, Option<usize>> = BTreeMap::new();
    for (i, raw) in entities.iter().enumerate() {
        let id = raw.trim();
        if !id.is_empty() {
            out.entry(id.to_string()).or_insert(Some(i + 1));
        }
    }
    for id in touched {
        out.entry(id).or_insert(None);
    }
    out
}

/// What `db::resolve` read for a restore.
#[derive(Debug, Default)]
pub struct RestoreLoaded {
    /// The candidates' entities, by ID (an unknown ID has none).
    pub entities: HashMap<String, EntityFacts>,
    /// Per entity a change changed after the point: its (state, attributes) there.
    pub at_point: HashMap<String, (EntityState, String)>,
    /// Every ancestor of every candidate.
    pub ancestors: Ancestors,
}

/// The kinds a restore of `op` may return: its own kind and everything below it.
fn kinds_restored<'s>(schema: &'s Schema, op: &'s Operation) -> BTreeSet<&'s str> {
    let mut allowed: BTreeSet<&str> = BTreeSet::new();
    let mut frontier = vec![op.target.as_str()];
    while let Some(k) = frontier.pop() {
        if allowed.insert(k) {
            frontier.extend(schema.children_of(k).iter().map(|c| c.name.as_str()));
        }
    }
    allowed
}

/// Resolve a bulk restore: the candidates back to the state they had at the point.
/// Entities already as they were, or that were not active at the point, are left out with
/// a warning; unknown, purged and wrong-kind IDs are errors with their line in `entities`.
pub fn evaluate_restore(
    schema: &Schema,
    op: &Operation,
    spec: &RestoreSpec,
    candidates: &BTreeMap<String, Option<usize>>,
    mut loaded: RestoreLoaded,
) -> Resolution {
    let mut p = Problems::default();
    let (picked, warnings) = pick_restored(schema, op, candidates, &mut loaded, &mut p);
    let mut targets = place(picked, &loaded.ancestors);
    targets.sort_unstable_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    let field = "entities";
    if targets.len() as u64 > op.max_targets {
        p.push(field, None, "", "too_many_targets", format!("the restore covers {} entities, more than {}'s limit of {}: split it or raise max_targets in the schema", targets.len(), op.label, op.max_targets));
    }
    if targets.is_empty() && p.is_empty() {
        let message =
            "nothing to restore: every entity named is already as it was at that point".into();
        p.push(field, None, "", "no_targets", message);
    }
    let ancestors = &loaded.ancestors;
    let name_of = |root: &str| {
        ancestors
            .get(root)
            .map(|a| a.name.clone())
            .or_else(|| name_in(&targets, &op.target, root))
    };
    let verb = verb(Effect::Restore, false);
    let summary = summarize(schema, op, verb, &targets, warnings, name_of);
    let fp = fingerprint(
        &schema.hash,
        &restore_operation(&op.name),
        &spec.selector(),
        &targets,
    );
    let (errors, error_count) = p.into_sorted(Order::LineInput);
    Resolution {
        targets,
        summary,
        errors,
        error_count,
        fingerprint: fp,
    }
}

/// Judge each candidate (taken out of `loaded.entities`): the entities to restore, and the
/// warnings for those left out.
fn pick_restored(
    schema: &Schema,
    op: &Operation,
    candidates: &BTreeMap<String, Option<usize>>,
    loaded: &mut RestoreLoaded,
    p: &mut Problems,
) -> (Vec<EntityFacts>, Vec<String>) {
    let allowed = kinds_restored(schema, op);
    let (mut unchanged, mut not_active) = (0u64, 0u64);
    let mut picked = Vec::new();
    let field = "entities";
    for (id, line) in candidates {
        let line = *line;
        let Some(e) = loaded.entities.remove(id) else {
            let message = format!("`{id}` is not in the inventory");
            p.push(field, line, id, "not_found", message);
            continue;
        };
        if !allowed.contains(e.kind.as_str()) {
            let restores = schema.kind(&op.target).map(plural_desc);
            let message = format!(
                "`{id}` is {}; {} restores {} and what is below them",
                kind_desc(schema, &e.kind),
                op.label,
                restores.unwrap_or_else(|| op.target.clone())
            );
            p.push_kinds(field, line, id, message, &e.kind, &op.target);
            continue;
        }
        if e.state == EntityState::Purged {
            let message = format!(
                "`{id}` ({}) was purged permanently and cannot be restored",
                e.name
            );
            p.push(field, line, id, "purged", message);
            continue;
        }
        let (state, attrs) = loaded
            .at_point
            .get(id)
            .map(|(s, a)| (*s, a.as_str()))
            .unwrap_or((e.state, e.attrs.as_str()));
        if state != EntityState::Active {
            not_active += 1;
        } else if e.state == EntityState::Active && e.attrs == attrs {
            unchanged += 1;
        } else {
            picked.push(e);
        }
    }
    let mut warnings = Vec::new();
    if unchanged > 0 {
        warnings.push(format!(
            "{unchanged} entities are already as they were at that point and are left out"
        ));
    }
    if not_active > 0 {
        warnings.push(format!(
            "{not_active} entities were not active at that point and are left out"
        ));
    }
    (picked, warnings)
}
