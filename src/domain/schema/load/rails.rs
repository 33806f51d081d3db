//! The safety rails of an operation (issue #12): population guards, risk tiers, the extra
//! sign-offs of an irreversible effect and how long a sign-off counts, each checked against
//! the effect and the kinds it names, on the loader's shared problem list.

use std::collections::BTreeMap;

use super::super::{
    team_name_ok, Budget, Effect, Guards, Kind, Lifetime, SignoffPolicy, ThirdSide, Tier,
};
use super::{header_line, Problems, RawOperation, Table};

/// How long a sign-off counts (`signoffs_expire_after = "72h"`; none: until execution).
pub(super) fn signoff_lifetime(t: &Table, o: &RawOperation, p: &mut Problems) -> Option<Lifetime> {
    let text = o.signoffs_expire_after.as_deref()?;
    match Lifetime::parse(text) {
        Ok(l) => Some(l),
        Err(m) => {
            t.push(p, "signoffs_expire_after", m);
            None
        }
    }
}

/// Extra implementer sign-offs for an effect no rollback can undo (default 1).
pub(super) fn irreversible_signoffs(
    t: &Table,
    o: &RawOperation,
    effect: Option<Effect>,
    p: &mut Problems,
) -> u32 {
    if o.irreversible_signoffs.is_some() && effect.is_some_and(Effect::is_reversible) {
        t.push(
            p,
            "irreversible_signoffs",
            "this operation can be rolled back: only purge and webhook operations are irreversible",
        );
    }
    o.irreversible_signoffs.unwrap_or(1)
}

/// Risk tiers: each needs a threshold and at least the operation's own sign-offs; a third
/// side (`also`) names a team that is neither the implementing team nor one that may
/// request the operation, and at least one sign-off.
pub(super) fn tiers(
    t: &Table,
    o: &RawOperation,
    base: SignoffPolicy,
    (implemented_by, requested_by): (&str, Option<&[String]>),
    p: &mut Problems,
) -> Vec<Tier> {
    let mut out = Vec::new();
    for (i, raw) in o.tiers.iter().enumerate() {
        let at = |f: &str| format!("tiers[{}].{f}", i + 1);
        if raw.above_targets.is_none() && raw.above_roots.is_none() {
            t.push(
                p,
                &at("above_targets"),
                "a tier needs above_targets and/or above_roots",
            );
        }
        let Some(signoffs) = raw.signoffs else {
            t.push(
                p,
                &at("signoffs"),
                "a tier needs its signoffs = { requester = …, implementer = … }",
            );
            continue;
        };
        if signoffs.requester < base.requester || signoffs.implementer < base.implementer {
            t.push(
                p,
                &at("signoffs"),
                format!(
                    "a tier may not need fewer sign-offs than the operation itself ({} requester, {} implementer)",
                    base.requester, base.implementer
                ),
            );
        }
        if let Some(also) = &raw.also {
            third_side(t, &at("also"), also, (implemented_by, requested_by), p);
        }
        out.push(Tier {
            above_targets: raw.above_targets,
            above_roots: raw.above_roots,
            signoffs,
            also: raw.also.clone(),
        });
    }
    out
}

/// A tier's third side: a valid team name, independent of the change's two teams.
fn third_side(
    t: &Table,
    at: &str,
    also: &ThirdSide,
    (implemented_by, requested_by): (&str, Option<&[String]>),
    p: &mut Problems,
) {
    let team = also.team.as_str();
    if !team_name_ok(team) {
        t.push(
            p,
            at,
            format!("`{team}` is not a valid team name (lowercase letters, digits, `-`, `_`, `.`)"),
        );
    } else if team == implemented_by {
        t.push(p, at, format!("`{team}` implements this operation, so it cannot also be its third side: a third side is a team other than the change's two"));
    } else if requested_by.is_some_and(|l| l.iter().any(|r| r == team)) {
        t.push(p, at, format!("`{team}` may request this operation (requested_by), so it cannot also be its third side: a third side is a team other than the change's two"));
    }
    if also.signoffs == 0 {
        t.push(
            p,
            at,
            "a third side needs at least 1 sign-off (signoffs = 1): leave `also` out for none",
        );
    }
}

/// The population guards, each checked against the effect and the kinds it names.
pub(super) fn guards(
    t: &Table,
    o: &RawOperation,
    effect: Option<Effect>,
    kinds: &BTreeMap<String, Kind>,
    target: &str,
    p: &mut Problems,
) -> Guards {
    let acts_on_deleted = effect.is_some_and(Effect::acts_on_deleted);
    for (field, v) in [
        ("max_fraction", o.max_fraction),
        ("max_fraction_per_root", o.max_fraction_per_root),
    ] {
        let Some(v) = v else { continue };
        if !(v > 0.0 && v <= 1.0) {
            t.push(
                p,
                field,
                "must be a share above 0 and at most 1 (0.2 = 20%)",
            );
        }
        if acts_on_deleted {
            t.push(p, field, "restore and purge act on deleted entities: a share of the active ones does not limit them");
        }
    }
    // The target kind's ancestors, parent first.
    let mut above: Vec<&str> = Vec::new();
    let mut cur = kinds.get(target).and_then(|k| k.parent.as_deref());
    while let Some(k) = cur {
        if above.contains(&k) {
            break; // a parent cycle, reported with the kinds
        }
        above.push(k);
        cur = kinds.get(k).and_then(|k| k.parent.as_deref());
    }
    if o.max_fraction_per_root.is_some() && above.is_empty() && kinds.contains_key(target) {
        t.push(
            p,
            "max_fraction_per_root",
            format!("`{target}` is a root kind: there is no root above its entities to share"),
        );
    }
    if let Some(m) = &o.min_remaining {
        if effect.is_some_and(|e| e != Effect::SoftDelete) {
            t.push(
                p,
                "min_remaining",
                "only a soft_delete takes entities out of service: other effects leave every count as it is",
            );
        }
        if !above.contains(&m.per.as_str()) && kinds.contains_key(target) {
            let expected = if above.is_empty() {
                format!("`{target}` is a root kind and has none")
            } else {
                format!(
                    "one of {}",
                    above
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            t.push(
                p,
                "min_remaining.per",
                format!(
                    "`{}` is not a kind above `{target}`: expected {expected}",
                    m.per
                ),
            );
        }
        if m.count == 0 {
            t.push(
                p,
                "min_remaining.count",
                "must be at least 1 (0 would allow emptying it)",
            );
        }
    }
    if o.allow_everything == Some(true) && effect.is_some_and(|e| !e.is_destructive()) {
        t.push(
            p,
            "allow_everything",
            "only a destructive operation (soft_delete, purge) is refused for selecting everything",
        );
    } else if o.allow_everything == Some(true) && o.tiers.is_empty() {
        t.push(
            p,
            "allow_everything",
            "a change over everything needs the operation's strictest tier: add at least one [[operations.NAME.tiers]]",
        );
    }
    Guards {
        max_fraction: o.max_fraction,
        max_fraction_per_root: o.max_fraction_per_root,
        min_remaining: o.min_remaining.clone(),
        allow_everything: o.allow_everything.unwrap_or(false),
    }
}

/// The operation's budget: at least one limit, each at least 1, and a group name of
/// lowercase letters, digits, `-`, `_` and `.` (the operation's own name by default).
pub(super) fn budget(t: &Table, name: &str, o: &RawOperation, p: &mut Problems) -> Option<Budget> {
    let Some(b) = &o.budget else {
        if o.budget_group.is_some() {
            t.push(
                p,
                "budget_group",
                "a budget group needs the budget it shares: budget = { roots_per_day = …, targets_per_day = … }",
            );
        }
        return None;
    };
    if b.roots_per_day.is_none() && b.targets_per_day.is_none() {
        t.push(
            p,
            "budget",
            "a budget needs roots_per_day and/or targets_per_day",
        );
    }
    for (field, v) in [
        ("budget.roots_per_day", b.roots_per_day),
        ("budget.targets_per_day", b.targets_per_day),
    ] {
        if v == Some(0) {
            t.push(
                p,
                field,
                "must be at least 1 (an operation that may never run needs no budget)",
            );
        }
    }
    let group = o.budget_group.clone().unwrap_or_else(|| name.to_string());
    if o.budget_group.is_some() && !team_name_ok(&group) {
        t.push(
            p,
            "budget_group",
            "a budget group is 1–64 lowercase letters, digits, `-`, `_` or `.`",
        );
    }
    Some(Budget {
        group,
        roots_per_day: b.roots_per_day,
        targets_per_day: b.targets_per_day,
    })
}

/// Operations that share a budget group declare the same budget (else which one holds
/// would depend on which change runs first).
pub(super) fn budget_groups(source: &str, ops: &BTreeMap<String, RawOperation>, p: &mut Problems) {
    let mut first: BTreeMap<&str, (&str, &super::super::raw::RawBudget)> = BTreeMap::new();
    for (name, o) in ops {
        let Some(b) = &o.budget else { continue };
        let group = o.budget_group.as_deref().unwrap_or(name);
        match first.get(group) {
            None => {
                first.insert(group, (name, b));
            }
            Some((other, ob)) if *ob != b => {
                p.push(
                    format!("operations.{name}.budget"),
                    header_line(source, "operations", name),
                    format!(
                        "`{other}` draws from the budget group `{group}` too, with another budget: operations of one group declare the same budget"
                    ),
                );
            }
            Some(_) => {}
        }
    }
}
