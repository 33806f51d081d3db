//! The pure core of resolution: from a [`Plan`] and what the loader read for it, decide the
//! targets, every line's error (a wrong kind names the kind the ID really is), the cascade,
//! retention, `max_targets`, the summary and the fingerprint.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;

use super::guards::{self, GuardInput, Population};
use super::plan::{state_problem, EntityFacts, Plan};
use super::problems::{kind_desc, plural_desc, Order, Problems};
use super::scope::{self, Ancestors};
use super::summary::{summarize, verb};
use super::{fingerprint, Resolution, ResolvedTarget};

/// What `db::resolve` read for a plan, in batched queries. Everything keyed by a target is
/// read for every entity the plan [may target](Plan::may_target), a superset of the
/// targets `evaluate` settles on.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The entities of the plan's explicit IDs (any order; an unknown ID has none).
    pub explicit: Vec<EntityFacts>,
    /// The entities of the scope's IDs.
    pub scopes: Vec<EntityFacts>,
    /// What the query found: the operation's kind below the scopes, or of the whole kind,
    /// the `where` applied by the database (and checked again here).
    pub candidates: Vec<EntityFacts>,
    /// A whole-kind query stops after `max_targets + 1`: then, all its matches in a usable
    /// state.
    pub matched_total: Option<u64>,
    /// A whole-kind query's matches in other states (left out, and said so).
    pub others: u64,
    /// Every ancestor of every possible target.
    pub ancestors: Ancestors,
    /// A cascade's active descendants of the possible targets, parents before children.
    pub descendants: Vec<EntityFacts>,
    /// Active children per possible target that has any.
    pub active_children: HashMap<String, i64>,
    /// A purge's `purge_after` per possible target that is deleted.
    pub purge_after: HashMap<String, Option<NaiveDateTime>>,
    /// What the operation's population guards count.
    pub population: Population,
}

/// Resolve: decide everything about `plan` from what was loaded for it, as of `now`.
pub fn evaluate(
    mut plan: Plan<'_>,
    params: &serde_json::Value,
    loaded: Loaded,
    now: NaiveDateTime,
) -> Resolution {
    let mut problems = std::mem::take(&mut plan.problems);
    let mut warnings = std::mem::take(&mut plan.warnings);
    let mut picked = judge_ids(&plan, loaded.explicit, &mut problems);
    plan.judge_scopes(&loaded.scopes, Some(&mut problems));
    let excluded = pick_candidates(&plan, loaded.candidates, &mut picked) + loaded.others;
    if excluded > 0 {
        let what = if plan.op.effect.acts_on_deleted() {
            "are not deleted"
        } else {
            "are already deleted"
        };
        warnings.push(format!(
            "{excluded} {} matched the query but {what}, and were left out",
            plan.target_kind.plural
        ));
    }
    if plan.selector.is_empty() {
        let message = "name the targets: `ids`, and/or `within` (+ `where`)".into();
        problems.push("targets", None, "", "empty", message);
    }
    // An ID both listed and matched by the query is one target (listed first: its line).
    picked.sort_by(|a, b| a.id.cmp(&b.id));
    picked.dedup_by(|a, b| a.id == b.id);
    let mut targets = place(picked, &loaded.ancestors);
    if plan.cascades() {
        cascade(&mut targets, loaded.descendants);
    }
    targets.sort_unstable_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    check_children(&plan, &targets, &loaded.active_children, &mut problems);
    check_retention(&plan, &targets, &loaded.purge_after, now, &mut problems);
    check_limits(&plan, &targets, loaded.matched_total, &mut problems);

    let ancestors = &loaded.ancestors;
    let name_of = |root: &str| {
        ancestors
            .get(root)
            .map(|a| a.name.clone())
            .or_else(|| name_in(&targets, &plan.op.target, root))
    };
    let (op, verb) = (plan.op, verb(plan.op.effect, false));
    let mut summary = summarize(plan.schema, op, verb, &targets, warnings, name_of);
    summary.guards = guards::check(
        &GuardInput {
            schema: plan.schema,
            op,
            whole_kind: plan.queries_whole_kind(),
            scope_roots: plan
                .scope
                .as_ref()
                .map(|_| scope_roots(&loaded.scopes, ancestors)),
            targets: &targets,
            population: &loaded.population,
            ancestors,
        },
        &mut problems,
    );
    summary.undo = Some(super::undo_plan(plan.schema, op, &targets));
    let (errors, error_count) = problems.into_sorted(Order::FieldLine);
    let fingerprint = fingerprint(&plan.schema.hash, &op.name, params, &targets);
    Resolution {
        targets,
        summary,
        errors,
        error_count,
        fingerprint,
    }
}

/// The distinct roots above (or at) the scope entities.
fn scope_roots(scopes: &[EntityFacts], ancestors: &Ancestors) -> u64 {
    let mut roots: Vec<&str> = scopes
        .iter()
        .map(|e| {
            let mut root = e.id.as_str();
            let mut up = e.parent_id.as_deref();
            while let Some(p) = up {
                root = p;
                up = ancestors.get(p).and_then(|a| a.parent_id.as_deref());
            }
            root
        })
        .collect();
    roots.sort_unstable();
    roots.dedup();
    roots.len() as u64
}

/// The name of target `id` in `targets` (sorted by kind and ID), looked up as `kind` first.
pub(crate) fn name_in(targets: &[ResolvedTarget], kind: &str, id: &str) -> Option<String> {
    let i = targets
        .binary_search_by(|t| (t.kind.as_str(), t.id.as_str()).cmp(&(kind, id)))
        .ok()
        .or_else(|| targets.iter().position(|t| t.id == id))?;
    Some(targets[i].name.clone())
}

/// Explicit IDs: each distinct line against the entity of that ID, if there is one. Returns
/// the entities that are targets, in ID order.
fn judge_ids(plan: &Plan<'_>, mut rows: Vec<EntityFacts>, p: &mut Problems) -> Vec<EntityFacts> {
    let (schema, op, target_kind) = (plan.schema, plan.op, plan.target_kind);
    let field = "targets.ids";
    let mut picked = Vec::with_capacity(rows.len());
    // Merge-walk two ID-sorted lists (the wanted IDs are distinct).
    rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let mut rows = rows.into_iter().peekable();
    for w in &plan.wanted {
        let (line, input, id) = (Some(w.line), w.input, w.id);
        while rows.next_if(|e| e.id.as_str() < id).is_some() {}
        match rows.next_if(|e| e.id == id) {
            Some(e) if e.kind != op.target => {
                let mut msg = format!(
                    "`{id}` is {}, but {} acts on {}",
                    kind_desc(schema, &e.kind),
                    op.label,
                    plural_desc(target_kind)
                );
                if schema.descent(&e.kind, &op.target).is_some() {
                    msg.push_str(&format!(
                        "; {} can only be a scope: to act on the {} inside it, use targets.within with kind `{}`",
                        kind_desc(schema, &e.kind),
                        target_kind.plural,
                        e.kind
                    ));
                }
                p.push_kinds(field, line, input, msg, &e.kind, &op.target);
            }
            Some(e) => match state_problem(op.effect, &e) {
                Some((code, msg)) => p.push(field, line, input, code, msg),
                None => picked.push(e),
            },
            None if target_kind.matches(id) => p.push(
                field,
                line,
                input,
                "not_found",
                format!(
                    "`{id}` is not in the inventory: there is no {} with that ID",
                    target_kind.describe()
                ),
            ),
            None => {
                let mut msg = format!(
                    "`{id}` is not a valid {} ID: expected {}",
                    target_kind.describe(),
                    target_kind.syntax_hint()
                );
                let looks: Vec<String> = schema
                    .kinds_matching(id)
                    .iter()
                    .map(|k| k.a_describe())
                    .collect();
                if !looks.is_empty() {
                    msg.push_str(&format!(" (it looks like {} ID)", looks.join(" or ")));
                }
                p.push(field, line, input, "pattern_mismatch", msg);
            }
        }
    }
    picked
}

/// The query's rows that are targets: those matching the `where` in a usable state (a
/// matching row in another state is counted: the count is returned).
fn pick_candidates(plan: &Plan<'_>, rows: Vec<EntityFacts>, picked: &mut Vec<EntityFacts>) -> u64 {
    if !plan.filter_ok {
        return 0;
    }
    let filter = &plan.selector.filter;
    let mut excluded = 0;
    for e in rows {
        if !attrs_match(&e, filter) {
            continue;
        }
        if state_problem(plan.op.effect, &e).is_some() {
            excluded += 1;
            continue;
        }
        picked.push(e);
    }
    excluded
}

fn attrs_match(e: &EntityFacts, filter: &BTreeMap<String, String>) -> bool {
    if filter.is_empty() {
        return true;
    }
    let attrs: BTreeMap<String, String> = serde_json::from_str(&e.attrs).unwrap_or_default();
    filter.iter().all(|(k, v)| attrs.get(k) == Some(v))
}

/// The picked entities as targets (in their order), each with its scope path.
pub(crate) fn place(picked: Vec<EntityFacts>, ancestors: &Ancestors) -> Vec<ResolvedTarget> {
    let paths = scope::paths(
        ancestors,
        picked.iter().filter_map(|e| e.parent_id.as_deref()),
    );
    picked
        .into_iter()
        .map(|e| ResolvedTarget {
            scope_path: e
                .parent_id
                .as_deref()
                .and_then(|p| paths.get(p))
                .cloned()
                .unwrap_or_default(),
            kind: e.kind,
            id: e.id,
            name: e.name,
        })
        .collect()
}

/// A cascading delete takes every active descendant of its targets with it, in the list
/// both teams sign. `descendants` come parents first; one whose parent is neither a target
/// nor a descendant taken is not taken.
fn cascade(targets: &mut Vec<ResolvedTarget>, descendants: Vec<EntityFacts>) {
    let scope_of: Vec<Option<String>> = {
        let mut below: HashMap<&str, String> = targets
            .iter()
            .map(|t| (t.id.as_str(), scope::below(&t.scope_path, &t.id)))
            .collect();
        descendants
            .iter()
            .map(|d| {
                let path = below.get(d.parent_id.as_deref()?)?.clone();
                below.insert(&d.id, scope::below(&path, &d.id));
                Some(path)
            })
            .collect()
    };
    for (d, path) in descendants.into_iter().zip(scope_of) {
        if let Some(scope_path) = path {
            targets.push(ResolvedTarget {
                kind: d.kind,
                id: d.id,
                scope_path,
                name: d.name,
            });
        }
    }
}

/// The field and line of an error about target `id`: its explicit line, or the query.
fn target_field(plan: &Plan<'_>, id: &str) -> (&'static str, Option<usize>) {
    match plan.line_of(id) {
        Some(line) => ("targets.ids", Some(line)),
        None => ("targets.within", None),
    }
}

/// A destructive operation that does not cascade refuses targets with active children.
fn check_children(
    plan: &Plan<'_>,
    targets: &[ResolvedTarget],
    active_children: &HashMap<String, i64>,
    p: &mut Problems,
) {
    if !plan.checks_children() || targets.is_empty() {
        return;
    }
    let child_words = plan
        .schema
        .children_of(&plan.op.target)
        .iter()
        .map(|k| k.plural.clone())
        .collect::<Vec<_>>()
        .join(" / ");
    for t in targets {
        if let Some(n) = active_children.get(&t.id) {
            let (field, line) = target_field(plan, &t.id);
            p.push(field, line, &t.id, "has_active_children", format!("`{}` ({}) still has {n} active {child_words}; {} does not cascade: remove them first", t.id, t.name, plan.op.label));
        }
    }
}

/// Is an entity deleted with this `purge_after` still within its retention period at
/// `now`? (One deleted by no change has no date, and is never purgeable.)
pub fn within_retention(purge_after: Option<NaiveDateTime>, now: NaiveDateTime) -> bool {
    match purge_after {
        Some(p) => p > now,
        None => true,
    }
}

/// The only irreversible effect: nothing still within its retention period is purged.
fn check_retention(
    plan: &Plan<'_>,
    targets: &[ResolvedTarget],
    purge_after: &HashMap<String, Option<NaiveDateTime>>,
    now: NaiveDateTime,
    p: &mut Problems,
) {
    if !plan.checks_retention() {
        return;
    }
    for t in targets {
        let Some(after) = purge_after.get(&t.id).copied() else {
            continue;
        };
        if !within_retention(after, now) {
            continue;
        }
        let (id, name) = (&t.id, &t.name);
        let message = match after {
            Some(after) => format!(
                "`{id}` ({name}) is still within its retention period: it may be purged after {} — until then it can be restored",
                after.format("%Y-%m-%d %H:%M UTC")
            ),
            None => format!("`{id}` ({name}) has no retention date (it was not deleted by a change), so it cannot be purged"),
        };
        let (field, line) = target_field(plan, id);
        p.push(field, line, id, "within_retention", message);
    }
}

/// `max_targets`, and a selection that matches nothing (when nothing else was wrong).
fn check_limits(
    plan: &Plan<'_>,
    targets: &[ResolvedTarget],
    matched_total: Option<u64>,
    p: &mut Problems,
) {
    let (op, plural) = (plan.op, &plan.target_kind.plural);
    if targets.len() as u64 > op.max_targets {
        let n = matched_total.unwrap_or(0).max(targets.len() as u64);
        p.push("targets", None, "", "too_many_targets", format!("the selection resolves to {n} {plural}, more than {}'s limit of {}: split the change or raise max_targets in the schema", op.label, op.max_targets));
    }
    if targets.is_empty() && p.is_empty() {
        p.push(
            "targets",
            None,
            "",
            "no_targets",
            format!(
                "the selection matches no {plural} that {} can act on",
                op.label
            ),
        );
    }
}
