//! Population guards (issue #12): how much of the inventory one change may touch. Each
//! guard the operation sets is checked at every resolution (creation, submit, the execute
//! gate); its outcome is part of the summary, with the numbers, and a failed guard is an
//! error on the change (its code is the guard's name), so the change cannot be submitted
//! or executed while it fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::scope::{segments, Ancestors};
use super::{ResolvedTarget, RootRef};
use crate::domain::budget::{root_of, Budget};
use crate::domain::schema::{Kind, Operation, Schema};

/// Entities named in a guard's outcome (the worst roots, the scopes left short).
pub const NAMED: usize = 10;

/// What the loader counted for the guards, only what the operation's guards need.
#[derive(Debug, Default)]
pub struct Population {
    /// Active entities of the target kind (`max_fraction`).
    pub of_kind: Option<u64>,
    /// Active entities of the root kind (a destructive operation: `selects_everything`).
    pub roots: Option<u64>,
    /// Active entities of the target kind below each root and each `min_remaining.per`
    /// entity that a possible target is under (a superset of the touched ones).
    pub under: HashMap<String, u64>,
}

/// One guard's outcome, as the summary shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardCheck {
    /// `max_fraction`, `max_fraction_per_root`, `min_remaining` or `selects_everything`.
    pub guard: String,
    pub passed: bool,
    /// It holds only because the operation allows it (`allow_everything`): the change
    /// selects everything and needs the operation's strictest tier.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allowed: bool,
    /// One sentence with the numbers, ending in "refused" when it failed.
    pub text: String,
    /// What was measured: targets (`max_fraction`), the worst root's targets
    /// (`max_fraction_per_root`), the fewest left in one scope (`min_remaining`), roots
    /// selected (`selects_everything`).
    pub measured: u64,
    /// What it was measured against: active entities of the kind, of the worst root, the
    /// scopes touched, all active roots.
    pub population: u64,
    /// The schema's limit: a share (0.2), a count to keep (1), or 1.0 (all roots).
    pub limit: f64,
    /// How many roots or scopes break the guard (per-root guards).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub violations: u64,
    /// The first of them, with names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<RootRef>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// "20%", "22.1%".
fn percent(x: f64) -> String {
    let s = format!("{:.1}", x * 100.0);
    format!("{}%", s.strip_suffix(".0").unwrap_or(&s))
}

fn words(n: u64, k: &Kind) -> String {
    if n == 1 {
        format!("1 {}", k.label)
    } else {
        format!("{n} {}", k.plural)
    }
}

fn named(id: &str, name: Option<String>) -> RootRef {
    RootRef {
        id: id.to_string(),
        name: name.unwrap_or_default(),
    }
}

fn describe(r: &RootRef) -> String {
    if r.name.is_empty() {
        r.id.clone()
    } else {
        format!("{} ({})", r.name, r.id)
    }
}

/// The inputs the checks share.
pub(crate) struct GuardInput<'a> {
    pub schema: &'a Schema,
    pub op: &'a Operation,
    /// The selector queries the whole kind (a `where` without `within`).
    pub whole_kind: bool,
    /// Distinct roots of the `within` scopes, when there is one.
    pub scope_roots: Option<u64>,
    pub targets: &'a [ResolvedTarget],
    pub population: &'a Population,
    pub ancestors: &'a Ancestors,
}

/// Check every guard `op` sets; failures are pushed to `p` (field `targets`).
pub(crate) fn check(input: &GuardInput<'_>, p: &mut Problems) -> Vec<GuardCheck> {
    let (op, g) = (input.op, &input.op.guards);
    let Some(kind) = input.schema.kind(&op.target) else {
        return Vec::new();
    };
    // Only the operation's own kind counts (not what a cascade takes with it).
    let own: Vec<&ResolvedTarget> = input
        .targets
        .iter()
        .filter(|t| t.kind == op.target)
        .collect();
    let mut out = Vec::new();
    if let (Some(limit), Some(pop)) = (g.max_fraction, input.population.of_kind) {
        out.push(max_fraction(kind, own.len() as u64, pop, limit));
    }
    if let Some(limit) = g.max_fraction_per_root {
        out.extend(per_root(input, kind, &own, limit));
    }
    if let Some(m) = &g.min_remaining {
        out.extend(min_remaining(input, kind, &own, &m.per, m.count));
    }
    if op.effect.is_destructive() {
        out.extend(everything(input, own.len() as u64, g.allow_everything));
    }
    if let Some(b) = &op.budget {
        out.push(larger_than_budget(input, b));
    }
    for c in out.iter().filter(|c| !c.passed) {
        p.push("targets", None, "", &c.guard, c.text.clone());
    }
    out
}

fn max_fraction(kind: &Kind, n: u64, pop: u64, limit: f64) -> GuardCheck {
    let share = if pop == 0 { 0.0 } else { n as f64 / pop as f64 };
    let passed = share <= limit;
    let text = if passed {
        format!(
            "{n} of {pop} active {} ({}), within the limit of {}",
            kind.plural,
            percent(share),
            percent(limit)
        )
    } else {
        format!(
            "would touch {n} of {pop} active {} ({}), more than the limit of {}: refused",
            kind.plural,
            percent(share),
            percent(limit)
        )
    };
    GuardCheck {
        guard: "max_fraction".into(),
        allowed: false,
        passed,
        text,
        measured: n,
        population: pop,
        limit,
        violations: 0,
        at: Vec::new(),
    }
}

/// Targets per scope entity at `depth` of the scope paths (0: the root).
fn per_scope<'t>(own: &[&'t ResolvedTarget], depth: usize) -> BTreeMap<&'t str, u64> {
    let mut out: BTreeMap<&str, u64> = BTreeMap::new();
    for t in own {
        if let Some(s) = segments(&t.scope_path).nth(depth) {
            *out.entry(s).or_default() += 1;
        }
    }
    out
}

fn name_of(input: &GuardInput<'_>, id: &str) -> Option<String> {
    input.ancestors.get(id).map(|a| a.name.clone())
}

fn per_root(
    input: &GuardInput<'_>,
    kind: &Kind,
    own: &[&ResolvedTarget],
    limit: f64,
) -> Option<GuardCheck> {
    let chain = input.schema.ancestry(&kind.name);
    let root_kind = chain.last().filter(|_| chain.len() > 1)?;
    // (share, targets, active, root), worst first.
    let mut over: Vec<(f64, u64, u64, &str)> = Vec::new();
    let mut worst: Option<(f64, u64, u64, &str)> = None;
    for (root, n) in per_scope(own, 0) {
        let pop = input
            .population
            .under
            .get(root)
            .copied()
            .unwrap_or(n)
            .max(n);
        let share = n as f64 / pop as f64;
        if worst.map_or(true, |w| share > w.0) {
            worst = Some((share, n, pop, root));
        }
        if share > limit {
            over.push((share, n, pop, root));
        }
    }
    let (share, n, pop, root) = worst?;
    over.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.3.cmp(b.3)));
    let worst_ref = named(root, name_of(input, root));
    let text = if over.is_empty() {
        format!(
            "at most {n} of {pop} active {} of one {} ({}: {}), within the limit of {} per {}",
            kind.plural,
            root_kind.label,
            describe(&worst_ref),
            percent(share),
            percent(limit),
            root_kind.label
        )
    } else {
        let more = if over.len() > 1 {
            format!(" ({} {} over the limit)", over.len(), root_kind.plural)
        } else {
            String::new()
        };
        format!(
            "would touch {n} of {pop} active {} of {} {} ({}), more than the limit of {} per {}{more}: refused",
            kind.plural,
            root_kind.label,
            describe(&worst_ref),
            percent(share),
            percent(limit),
            root_kind.label
        )
    };
    Some(GuardCheck {
        guard: "max_fraction_per_root".into(),
        allowed: false,
        passed: over.is_empty(),
        text,
        measured: n,
        population: pop,
        limit,
        violations: over.len() as u64,
        at: over
            .iter()
            .take(NAMED)
            .map(|o| named(o.3, name_of(input, o.3)))
            .collect(),
    })
}

fn min_remaining(
    input: &GuardInput<'_>,
    kind: &Kind,
    own: &[&ResolvedTarget],
    per: &str,
    count: u64,
) -> Option<GuardCheck> {
    let per_kind = input.schema.kind(per)?;
    // The scope paths list the ancestors root first: `per`'s place in them.
    let chain = input.schema.ancestry(&kind.name);
    let depth = chain.iter().skip(1).rev().position(|k| k.name == per)?;
    let touched = per_scope(own, depth);
    // (left, scope), fewest first.
    let mut short: Vec<(u64, &str)> = touched
        .iter()
        .map(|(scope, n)| {
            let active = input.population.under.get(*scope).copied().unwrap_or(*n);
            (active.saturating_sub(*n), *scope)
        })
        .filter(|(left, _)| *left < count)
        .collect();
    short.sort();
    let fewest = touched
        .iter()
        .map(|(scope, n)| {
            let active = input.population.under.get(*scope).copied().unwrap_or(*n);
            active.saturating_sub(*n)
        })
        .min()?;
    let keep = if count == 1 {
        format!("no active {}", kind.label)
    } else {
        format!("fewer than {count} active {}", kind.plural)
    };
    let text = if short.is_empty() {
        format!(
            "every {} touched keeps at least {} ({} touched, the fewest left is {fewest})",
            per_kind.label,
            words(count, kind),
            touched.len()
        )
    } else {
        let names: Vec<String> = short
            .iter()
            .take(3)
            .map(|(_, s)| describe(&named(s, name_of(input, s))))
            .collect();
        format!(
            "would leave {} with {keep} ({}{}): refused",
            words(short.len() as u64, per_kind),
            names.join(", "),
            if short.len() > 3 { ", …" } else { "" }
        )
    };
    Some(GuardCheck {
        guard: "min_remaining".into(),
        allowed: false,
        passed: short.is_empty(),
        text,
        measured: fewest,
        population: touched.len() as u64,
        limit: count as f64,
        violations: short.len() as u64,
        at: short
            .iter()
            .take(NAMED)
            .map(|(_, s)| named(s, name_of(input, s)))
            .collect(),
    })
}

/// A destructive change may not query the whole kind, nor scope itself over every root.
/// IDs listed one by one are never "everything", however many roots they touch: each was
/// named. With one root in the inventory, every scope covers it, so only the whole-kind
/// query is refused there.
///
/// An operation with `allow_everything` lets it through, and says so (`allowed`): such a
/// change needs the operation's strictest tier ([`selects_everything`] tells the policy).
fn everything(input: &GuardInput<'_>, n: u64, allowed: bool) -> Option<GuardCheck> {
    let root_kind = *input.schema.ancestry(&input.op.target).last()?;
    let all = input.population.roots?;
    let covered = input.scope_roots.unwrap_or(0);
    // What it selects, when that is everything.
    let whole = if input.whole_kind && n > 0 {
        Some((
            format!(
                "a `where` without `within` queries every {}",
                root_kind.label
            ),
            "the whole kind",
        ))
    } else if n > 0 && all >= 2 && covered >= all {
        Some((
            format!(
                "`within` covers every {} ({covered} of {all})",
                root_kind.label
            ),
            "everything",
        ))
    } else {
        None
    };
    let everything = whole.is_some();
    let (passed, text) = match whole {
        Some((what, _)) if allowed => (
            true,
            format!("{what}: allowed (allow_everything), so it needs the operation's strictest tier"),
        ),
        Some((what, over)) => (
            false,
            format!(
                "{what}: a destructive change over {over} is refused (name fewer, or set allow_everything on the operation if it is meant)"
            ),
        ),
        None if input.scope_roots.is_some() => (
            true,
            format!(
                "`within` covers {covered} of {all} active {}",
                root_kind.plural
            ),
        ),
        None => (true, "targets named one by one".to_string()),
    };
    Some(GuardCheck {
        guard: "selects_everything".into(),
        passed,
        allowed: everything && allowed,
        text,
        measured: covered,
        population: all,
        limit: 1.0,
        violations: 0,
        at: Vec::new(),
    })
}

/// A change larger than its operation's whole daily budget could never pass the execute
/// gate: refused at resolution, so that nobody signs it. (What is left today is checked
/// at the gate, and by the runner batch by batch.)
fn larger_than_budget(input: &GuardInput<'_>, b: &Budget) -> GuardCheck {
    let n = input.targets.len() as u64;
    let roots: BTreeSet<&str> = input
        .targets
        .iter()
        .map(|t| root_of(&t.id, &t.scope_path))
        .collect();
    let roots = roots.len() as u64;
    let root_label = input
        .schema
        .ancestry(&input.op.target)
        .last()
        .map_or("roots".to_string(), |k| k.plural.clone());
    // (measured, limit, what): the first limit that is exceeded, else the tightest.
    let mut checks: Vec<(u64, u64, String)> = Vec::new();
    if let Some(l) = b.roots_per_day {
        checks.push((roots, l, root_label));
    }
    if let Some(l) = b.targets_per_day {
        checks.push((n, l, "targets".into()));
    }
    let over = checks.iter().find(|(m, l, _)| m > l);
    let (measured, limit, what) = over
        .or_else(|| {
            checks
                .iter()
                .max_by(|a, b| (a.0 as f64 / a.1 as f64).total_cmp(&(b.0 as f64 / b.1 as f64)))
        })
        .cloned()
        .unwrap_or((0, 0, String::new()));
    let text = if over.is_some() {
        format!(
            "touches {measured} {what}, more than the budget `{}` allows in 24 hours ({limit}): it could never run; split it into smaller changes: refused",
            b.group
        )
    } else {
        format!(
            "touches {measured} {what} of the {limit} the budget `{}` allows in 24 hours",
            b.group
        )
    };
    GuardCheck {
        guard: "larger_than_budget".into(),
        allowed: false,
        passed: over.is_none(),
        text,
        measured,
        population: limit,
        limit: limit as f64,
        violations: 0,
        at: Vec::new(),
    }
}

/// Did the resolution select everything, with the operation's leave (`allow_everything`)?
/// Then the change needs the operation's strictest tier
/// ([`crate::domain::schema::Operation::policy`]).
pub fn selects_everything(checks: &[GuardCheck]) -> bool {
    checks.iter().any(|c| c.allowed)
}
