//! The blast-radius summary of a target list: counts per scope kind, the affected roots, and
//! one sentence ("3 App installations on 3 Cloud sites of 1 Customer organisation; 3 App
//! installations soft-deleted, 0 Cloud sites soft-deleted"). One builder for resolutions,
//! rollbacks and restores, read from the targets' scope paths, so a summary always
//! describes exactly the list that is signed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::scope::segments;
use super::{ResolvedTarget, RootRef, Summary};
use crate::domain::schema::{Effect, Kind, Operation, Schema};

/// Roots listed by name in a summary.
pub const SAMPLE_ROOTS: usize = 10;

/// What the summary says happens to the targets: the operation's own effect, or (`undo`)
/// the inverse a rollback runs.
pub fn verb(effect: Effect, undo: bool) -> &'static str {
    match effect {
        Effect::SoftDelete => "soft-deleted",
        Effect::Restore => "restored",
        Effect::SetAttributes if undo => "set back to their previous values",
        Effect::SetAttributes => "changed",
        Effect::Purge => "purged permanently",
        Effect::Webhook => "sent to the external executor",
    }
}

/// "1 App installation", "3 App installations"; `fallback` names a kind the schema lacks.
fn count_words(n: u64, k: Option<&Kind>, fallback: &str) -> String {
    match k {
        Some(k) if n == 1 => format!("1 {}", k.label),
        Some(k) => format!("{n} {}", k.plural),
        None => format!("{n} {fallback}"),
    }
}

/// The summary of `targets` (sorted or not) of `op`, whose effect on them `verb` says.
/// Targets of another kind than the operation's are the descendants it takes with it
/// (cascade, or a restore of what is below). `name_of` names the sample roots it can.
pub fn summarize(
    schema: &Schema,
    op: &Operation,
    verb: &str,
    targets: &[ResolvedTarget],
    warnings: Vec<String>,
    name_of: impl Fn(&str) -> Option<String>,
) -> Summary {
    let target_kind = op.target.as_str();
    let chain = schema.ancestry(target_kind);
    let mut per_level: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut roots: BTreeSet<&str> = BTreeSet::new();
    let mut below: BTreeMap<&str, u64> = BTreeMap::new();
    // Each distinct (kind, scope path) is walked once: targets share their parents.
    let mut walked: HashSet<(&str, &str)> = HashSet::new();
    let mut scope_kinds: HashMap<&str, Vec<&str>> = HashMap::new();
    for t in targets {
        if t.kind != target_kind {
            *below.entry(t.kind.as_str()).or_default() += 1;
        }
        let mut ids = segments(&t.scope_path).peekable();
        let Some(root) = ids.peek() else {
            // A root itself.
            roots.insert(t.id.as_str());
            continue;
        };
        if !walked.insert((t.kind.as_str(), t.scope_path.as_str())) {
            continue;
        }
        roots.insert(root);
        // The scope kinds of this kind, root first, beside the path's IDs.
        let kinds = scope_kinds.entry(t.kind.as_str()).or_insert_with(|| {
            let mut up: Vec<&str> = schema
                .ancestry(&t.kind)
                .iter()
                .skip(1)
                .map(|k| k.name.as_str())
                .collect();
            up.reverse();
            up
        });
        for (id, k) in ids.zip(kinds.iter()) {
            per_level.entry(k).or_default().insert(id);
        }
    }
    let scopes: BTreeMap<String, u64> = chain
        .iter()
        .skip(1)
        .map(|k| {
            let n = per_level.get(k.name.as_str()).map_or(0, HashSet::len);
            (k.name.clone(), n as u64)
        })
        .collect();
    let cascaded: BTreeMap<String, u64> = below.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let n = targets.len() as u64 - cascaded.values().sum::<u64>();
    let target = schema.kind(target_kind);
    let mut text = count_words(n, target, "targets");
    for (i, k) in chain.iter().enumerate().skip(1) {
        text.push_str(if i == 1 { " on " } else { " of " });
        text.push_str(&count_words(scopes[&k.name], Some(k), &k.name));
    }
    text.push_str(&format!("; {} {verb}", count_words(n, target, "targets")));
    if !cascaded.is_empty() {
        let below = cascaded
            .iter()
            .map(|(k, c)| count_words(*c, schema.kind(k), k))
            .collect::<Vec<_>>()
            .join(" and ");
        text.push_str(&format!(" with the {below} below them"));
        if op.cascade {
            text.push_str(" (cascade)");
        }
    }
    if let Some(parent) = chain.get(1) {
        text.push_str(&format!(", 0 {} {verb}", parent.plural));
    }
    Summary {
        targets: targets.len() as u64,
        cascaded,
        target_kind: op.target.clone(),
        scopes,
        root_kind: chain.last().map(|k| k.name.clone()).unwrap_or_default(),
        roots: roots.len() as u64,
        sample_roots: roots
            .iter()
            .take(SAMPLE_ROOTS)
            .map(|r| RootRef {
                id: r.to_string(),
                name: name_of(r).unwrap_or_default(),
            })
            .collect(),
        text,
        warnings,
        guards: Vec::new(),
        undo: None,
    }
}
