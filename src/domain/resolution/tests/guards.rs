//! Population guards over the hand-written inventory of `tests.rs`: org A holds sites 1
//! and 2 (apps 1, 2 on site 1; app 3 on site 2), org B site 3 (app 4).

use super::*;

const GUARDED: &str = r#"
[operations.guarded_uninstall]
label = "Guarded uninstall"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
max_fraction = 0.5
max_fraction_per_root = 0.5
min_remaining = { per = "site", count = 1 }

[operations.uninstall_anything]
label = "Uninstall anything"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
allow_everything = true

[[operations.uninstall_anything.tiers]]
above_targets = 100
signoffs = { requester = 2, implementer = 2 }
"#;

fn guarded() -> Schema {
    Schema::from_toml(&format!("{EXAMPLE_SCHEMA}{GUARDED}")).unwrap()
}

fn check<'r>(r: &'r Resolution, guard: &str) -> &'r GuardCheck {
    r.summary
        .guards
        .iter()
        .find(|g| g.guard == guard)
        .unwrap_or_else(|| panic!("no {guard} in {:#?}", r.summary.guards))
}

fn error<'r>(r: &'r Resolution, code: &str) -> Option<&'r ResolutionError> {
    r.errors.iter().find(|e| e.code == code)
}

#[test]
fn max_fraction_counts_the_active_entities_of_the_kind() {
    let (s, inv) = (guarded(), Inventory::new());
    let op = s.operation("guarded_uninstall").unwrap();
    let r = inv.resolve(&s, op, &ids(&[app(1), app(3), app(4)]));
    let g = check(&r, "max_fraction");
    assert!(!g.passed);
    assert_eq!((g.measured, g.population, g.limit), (3, 4, 0.5));
    assert_eq!(
        g.text,
        "would touch 3 of 4 active App installations (75%), more than the limit of 50%: refused"
    );
    assert_eq!(error(&r, "max_fraction").unwrap().message, g.text);
    // Exactly the limit is allowed; a deleted entity is not part of the population.
    let r = inv.resolve(&s, op, &ids(&[app(1), app(4)]));
    assert!(check(&r, "max_fraction").passed, "{:#?}", r.summary.guards);
    let mut inv = Inventory::new();
    inv.set(&app(2), Deleted);
    let r = inv.resolve(&s, op, &ids(&[app(1), app(4)]));
    let g = check(&r, "max_fraction");
    assert_eq!((g.passed, g.measured, g.population), (false, 2, 3));
}

#[test]
fn max_fraction_per_root_names_the_roots_over_the_limit() {
    let (s, inv) = (guarded(), Inventory::new());
    let op = s.operation("guarded_uninstall").unwrap();
    // Org A holds 3 apps: 2 of them is 66.7%.
    let r = inv.resolve(&s, op, &ids(&[app(1), app(3)]));
    let g = check(&r, "max_fraction_per_root");
    assert!(!g.passed);
    assert_eq!((g.measured, g.population, g.violations), (2, 3, 1));
    assert_eq!(g.at.len(), 1);
    assert_eq!(g.at[0].id, ORG);
    assert_eq!(
        g.text,
        format!("would touch 2 of 3 active App installations of Customer organisation {ORG} name ({ORG}) (66.7%), more than the limit of 50% per Customer organisation: refused")
    );
    assert!(error(&r, "max_fraction_per_root").is_some());
    let r = inv.resolve(&s, op, &ids(&[app(1)]));
    let g = check(&r, "max_fraction_per_root");
    assert!(g.passed, "{g:#?}");
    assert!(
        g.text
            .starts_with("at most 1 of 3 active App installations of one Customer organisation"),
        "{}",
        g.text
    );
}

#[test]
fn min_remaining_keeps_one_in_every_scope_touched() {
    let (s, inv) = (guarded(), Inventory::new());
    let op = s.operation("guarded_uninstall").unwrap();
    // Site 1 holds apps 1 and 2: removing both leaves it with none.
    let r = inv.resolve(&s, op, &ids(&[app(1), app(2)]));
    let g = check(&r, "min_remaining");
    assert!(!g.passed);
    assert_eq!(
        (g.measured, g.population, g.violations, g.limit),
        (0, 1, 1, 1.0)
    );
    assert_eq!(g.at[0].id, site(1));
    assert_eq!(
        g.text,
        format!(
            "would leave 1 Cloud site with no active App installation ({} name ({})): refused",
            site(1),
            site(1)
        )
    );
    let r = inv.resolve(&s, op, &ids(&[app(1)]));
    let g = check(&r, "min_remaining");
    assert!(g.passed);
    assert_eq!(
        g.text,
        "every Cloud site touched keeps at least 1 App installation (1 touched, the fewest left is 1)"
    );
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
}

#[test]
fn a_destructive_change_may_not_reach_everything() {
    let (s, inv) = (guarded(), Inventory::new());
    let op = s.operation("uninstall_app").unwrap();
    let r = inv.resolve(&s, op, &within("org", &[ORG, ORG2]));
    let g = check(&r, "selects_everything");
    assert!(!g.passed);
    assert_eq!((g.measured, g.population), (2, 2));
    assert!(
        g.text
            .starts_with("`within` covers every Customer organisation (2 of 2)"),
        "{}",
        g.text
    );
    assert!(error(&r, "selects_everything").is_some());
    // A `where` over the whole kind, however few it matches.
    let where_only = Selector {
        filter: [("app".to_string(), "insight".to_string())].into(),
        ..Selector::default()
    };
    let mut one = Inventory::new();
    one.0
        .iter_mut()
        .filter(|e| e.id != app(1))
        .for_each(|e| e.attrs = "{}".into());
    let r = one.resolve(&s, op, &where_only);
    assert_eq!(target_ids(&r), [app(1)]);
    assert!(!check(&r, "selects_everything").passed);
    // IDs named one by one are never "everything", whichever roots they are in.
    let r = inv.resolve(&s, op, &ids(&[app(1), app(4)]));
    let g = check(&r, "selects_everything");
    assert!(g.passed, "{g:#?}");
    assert_eq!(g.text, "targets named one by one");
    // One org of two is fine.
    let r = inv.resolve(&s, op, &within("org", &[ORG]));
    assert!(check(&r, "selects_everything").passed);
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    // The operation may allow it; non-destructive operations are never asked.
    let any = s.operation("uninstall_anything").unwrap();
    let r = inv.resolve(&s, any, &within("org", &[ORG, ORG2]));
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    let g = check(&r, "selects_everything");
    assert!(g.passed && g.allowed, "{g:#?}");
    assert_eq!(
        g.text,
        "`within` covers every Customer organisation (2 of 2): allowed (allow_everything), so it needs the operation's strictest tier"
    );
    assert!(crate::domain::resolution::guards::selects_everything(
        &r.summary.guards
    ));
    // 4 targets are far below the tier's threshold: the policy is still the strictest.
    let p = any.policy(r.summary.targets, r.summary.roots, false, true);
    assert_eq!((p.signoffs.requester, p.signoffs.implementer), (2, 2));
    assert_eq!(
        p.describe().unwrap(),
        "tier 1 (the strictest, because the change selects everything): 2 requester and 2 implementer sign-offs"
    );
    // Less than everything: an ordinary change of the operation.
    let r = inv.resolve(&s, any, &within("org", &[ORG]));
    assert!(!crate::domain::resolution::guards::selects_everything(
        &r.summary.guards
    ));
    assert!(!check(&r, "selects_everything").allowed);
    let restore = s.operation("restore_app").unwrap();
    let mut deleted = Inventory::new();
    for a in 1..=4 {
        deleted.set(&app(a), Deleted);
    }
    let r = deleted.resolve(&s, restore, &within("org", &[ORG, ORG2]));
    assert!(r.summary.guards.is_empty());
}

#[test]
fn the_schema_refuses_guards_that_cannot_hold() {
    let bad = format!(
        "{EXAMPLE_SCHEMA}{}",
        r#"
[operations.g1]
label = "G1"
target = "app_install"
effect = "set_attributes"
implemented_by = "platform-ops"
max_fraction = 1.5
min_remaining = { per = "app_install", count = 0 }
allow_everything = true

[operations.g2]
label = "G2"
target = "org"
effect = "soft_delete"
implemented_by = "platform-ops"
max_fraction_per_root = 0.5
allow_everything = true

[operations.g3]
label = "G3"
target = "app_install"
effect = "restore"
implemented_by = "platform-ops"
max_fraction = 0.5
"#
    );
    let problems: Vec<String> = Schema::from_toml(&bad)
        .unwrap_err()
        .0
        .iter()
        .map(|p| format!("{}: {}", p.place, p.message))
        .collect();
    for want in [
        "operations.g1.max_fraction: must be a share above 0 and at most 1 (0.2 = 20%)",
        "operations.g1.min_remaining: only a soft_delete takes entities out of service: other effects leave every count as it is",
        "operations.g1.min_remaining.per: `app_install` is not a kind above `app_install`: expected one of `site`, `org`",
        "operations.g1.min_remaining.count: must be at least 1 (0 would allow emptying it)",
        "operations.g1.allow_everything: only a destructive operation (soft_delete, purge) is refused for selecting everything",
        "operations.g2.allow_everything: a change over everything needs the operation's strictest tier: add at least one [[operations.NAME.tiers]]",
        "operations.g2.max_fraction_per_root: `org` is a root kind: there is no root above its entities to share",
        "operations.g3.max_fraction: restore and purge act on deleted entities: a share of the active ones does not limit them",
    ] {
        assert!(problems.iter().any(|p| p == want), "missing {want:?} in {problems:#?}");
    }
}

#[test]
fn the_undo_plan_says_what_one_more_change_could_undo() {
    let (s, mut inv) = (schema(), Inventory::new());
    let op = s.operation("uninstall_app").unwrap();
    let r = inv.resolve(&s, op, &ids(&[app(1), app(2)]));
    let u = r.summary.undo.as_ref().unwrap();
    assert!(u.reversible);
    assert_eq!(u.retention_days, Some(op.retention_days));
    assert_eq!(
        u.text,
        format!("Fully reversible for {} days after execution (retention): one rollback restores all 2 App installations", op.retention_days)
    );
    // A cascade's descendants come back with their parent.
    let decommission = s.operation("decommission_site").unwrap();
    let r = inv.resolve(&s, decommission, &ids(&[site(1)]));
    assert!(
        r.summary
            .undo
            .as_ref()
            .unwrap()
            .text
            .ends_with("restores the 1 Cloud site and the 2 entities below them"),
        "{:?}",
        r.summary.undo
    );
    let version = s.operation("set_app_version").unwrap();
    let one = ids(&[app(1)]);
    let plan = Plan::new(&s, version, &one);
    let loaded = inv.load(&plan);
    let r = evaluate(plan, &json!({"version": "2.0.0"}), loaded, now());
    assert_eq!(
        r.summary.undo.unwrap().text,
        "Fully reversible: one rollback sets the 1 App installation back to their previous values"
    );
    inv.set(&app(1), Deleted);
    let purge = s.operation("purge_app").unwrap();
    let r = inv.resolve(&s, purge, &ids(&[app(1)]));
    let u = r.summary.undo.unwrap();
    assert!(!u.reversible);
    assert_eq!(
        u.text,
        "Irreversible: purging erases the 1 App installation permanently; no rollback can bring them back"
    );
}
