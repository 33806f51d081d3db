//! Loading the schema: the example, the hash, every problem with its place.

use super::*;

#[test]
fn example_schema_loads() {
    let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    assert!(s.hash.starts_with("sha256:"));
    assert_eq!(
        s.kind("app_install").unwrap().parent.as_deref(),
        Some("site")
    );
    assert_eq!(
        s.descent("org", "app_install").unwrap(),
        vec!["site", "app_install"]
    );
    assert_eq!(
        s.descent("site", "app_install").unwrap(),
        vec!["app_install"]
    );
    assert!(s.descent("app_install", "site").is_none());
    assert!(s.descent("site", "site").is_none());
    assert_eq!(s.operation("delete_site").unwrap().signoffs.implementer, 2);
}

#[test]
fn hash_ignores_layout_and_comments() {
    let a = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    let b = Schema::from_toml(&format!("# a comment\n\n{EXAMPLE_SCHEMA}\n")).unwrap();
    assert_eq!(a.hash, b.hash);
    let c = Schema::from_toml(&EXAMPLE_SCHEMA.replace("confirm_above = 20", "confirm_above = 21"))
        .unwrap();
    assert_ne!(a.hash, c.hash);
}

#[test]
fn reports_every_problem_with_its_place() {
    let src = r#"
[kinds.org]
label = "Org"
pattern = "org-[0-9a-f]{8}"
example = "nope"

[kinds.site]
label = "Site"
parent = "galaxy"
pattern = "[0-9a-f"

[kinds.a]
label = "A"
prefix = "a-"
parent = "b"
[kinds.b]
label = "B"
prefix = "b-"
parent = "a"

[operations.zap]
label = "Zap"
target = "planet"
effect = "vaporise"

[operations.ok]
label = "Ok"
target = "org"
effect = "soft_delete"
implemented_by = "ops"
"#;
    let err = Schema::from_toml(src).unwrap_err();
    let text = err.to_string();
    for needle in [
        "kinds.org.example",
        "kinds.site.parent: unknown parent kind `galaxy`",
        "kinds.site.pattern: not a valid regular expression",
        "parent chain is a cycle",
        "operations.zap.target: target kind `planet` does not exist",
        "operations.zap.effect: unknown effect `vaporise`",
        "operations.zap.implemented_by: the implementing team is missing",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let site = err
        .0
        .iter()
        .find(|p| p.place == "kinds.site.parent")
        .unwrap();
    assert_eq!(site.line, Some(7));
}

#[test]
fn webhook_concurrency_and_rate() {
    let op = |extra: &str| {
        format!(
            "{EXAMPLE_SCHEMA}\n[operations.hook]\nlabel = \"Hook\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"http://127.0.0.1:9/h\"\nsecret_env = \"HOOK_SECRET\"\n{extra}"
        )
    };
    let spec = |extra: &str| {
        Schema::from_toml(&op(extra))
            .unwrap()
            .operation("hook")
            .unwrap()
            .webhook
            .clone()
            .unwrap()
    };
    let d = spec("");
    assert_eq!(d.concurrency, DEFAULT_WEBHOOK_CONCURRENCY);
    assert_eq!(d.max_per_second, None);
    let s = spec("concurrency = 64\nmax_per_second = 2.5\n");
    assert_eq!((s.concurrency, s.max_per_second), (64, Some(2.5)));
    assert_eq!(
        spec("concurrency = 256\nmax_per_second = 50\n").max_per_second,
        Some(50.0)
    );
    for (extra, place, needle) in [
        (
            "concurrency = 0",
            "operations.hook.concurrency",
            "between 1 and 256",
        ),
        (
            "concurrency = 257",
            "operations.hook.concurrency",
            "between 1 and 256",
        ),
        (
            "concurrency = -3",
            "operations.hook.concurrency",
            "between 1 and 256",
        ),
        (
            "max_per_second = 0",
            "operations.hook.max_per_second",
            "above 0",
        ),
        (
            "max_per_second = -1.5",
            "operations.hook.max_per_second",
            "above 0",
        ),
        (
            "max_per_second = nan",
            "operations.hook.max_per_second",
            "above 0",
        ),
    ] {
        let err = Schema::from_toml(&op(extra)).unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|p| p.place == place && p.message.contains(needle)),
            "{extra}: {err}"
        );
    }
    // Only a webhook operation has them.
    let src = EXAMPLE_SCHEMA.replace(
        "[operations.delete_site]\n",
        "[operations.delete_site]\nconcurrency = 4\n",
    );
    assert_ne!(src, EXAMPLE_SCHEMA);
    let err = Schema::from_toml(&src).unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|p| p.place == "operations.delete_site.concurrency"),
        "{err}"
    );
}

#[test]
fn a_pattern_cannot_escape_its_anchors() {
    let src = "[kinds.org]\nlabel = \"Org\"\npattern = \"org-1)|(.*\"\nexample = \"x\"\n";
    let err = Schema::from_toml(src).unwrap_err();
    assert!(
        err.0.iter().any(|p| p.place == "kinds.org.pattern"),
        "{err}"
    );
}

#[test]
fn toml_syntax_error_without_a_message_gets_one() {
    // Found by fuzzing (fuzz/regressions/schema_toml): toml gives no message here.
    let err = Schema::from_toml("# a\0b\n[kinds.x]\n").unwrap_err();
    assert_eq!(err.0[0].line, Some(1), "{err}");
    assert!(err.0[0].message.contains("not valid TOML"), "{err}");
}

#[test]
fn toml_syntax_error_has_a_line() {
    let err = Schema::from_toml("[kinds.org]\nlabel = \"x\"\nlabel = 3\n").unwrap_err();
    assert_eq!(err.0[0].line, Some(3), "{err}");
    let err = Schema::from_toml("[kinds.org]\nlabl = \"x\"\n").unwrap_err();
    assert!(err.to_string().contains("labl"), "{err}");
}

#[test]
fn param_checks() {
    let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    let op = s.operation("set_app_version").unwrap();
    let p = op.param("version").unwrap();
    assert!(p.check(&serde_json::json!("2.4.1")).is_ok());
    assert!(p.check(&serde_json::json!("latest!")).is_err());
    assert!(p.check(&serde_json::json!(3)).is_err());
}

#[test]
fn kind_syntax() {
    let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    let org = s.kind("org").unwrap();
    assert!(org.matches("org-1a2b3c4d"));
    assert!(!org.matches("org-1a2b3c4d5"));
    assert!(!org.matches("xorg-1a2b3c4d"));
    let uuid = "0b1c2d3e-0000-4000-8000-000000000001";
    let names: Vec<_> = s
        .kinds_matching(uuid)
        .iter()
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(names, vec!["app_install", "site"]);
}

#[test]
fn risk_tiers_pick_the_strictest_that_applies() {
    let src = format!(
        "{EXAMPLE_SCHEMA}{}",
        r#"
[operations.tiered]
label = "Tiered"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
signoffs = { requester = 1, implementer = 1 }
rollback_signoffs = { requester = 0, implementer = 1 }

[[operations.tiered.tiers]]
above_targets = 100
signoffs = { requester = 1, implementer = 2 }

[[operations.tiered.tiers]]
above_targets = 1000
above_roots = 10
signoffs = { requester = 2, implementer = 2 }
"#
    );
    let s = Schema::from_toml(&src).unwrap();
    let op = s.operation("tiered").unwrap();
    let p = op.policy(100, 10, false, false);
    assert_eq!((p.signoffs, p.tier), (op.signoffs, None));
    let p = op.policy(101, 1, false, false);
    assert_eq!(p.signoffs.implementer, 2);
    assert_eq!(p.tier.map(|t| t.0), Some(1));
    assert_eq!(
        p.describe().unwrap(),
        "tier 1 (above 100 targets): 1 requester and 2 implementer sign-offs"
    );
    // 11 roots is tier 2 however few targets; both apply above 1000: the stricter wins.
    for (targets, roots) in [(5, 11), (5000, 1)] {
        let p = op.policy(targets, roots, false, false);
        assert_eq!(p.tier.map(|t| t.0), Some(2), "{targets} {roots}");
        assert_eq!(
            p.signoffs,
            SignoffPolicy {
                requester: 2,
                implementer: 2,
                reviewer: 0,
            }
        );
    }
    assert_eq!(
        op.policy(5000, 1, false, false).describe().unwrap(),
        "tier 2 (above 1000 targets or 10 roots): 2 requester and 2 implementer sign-offs"
    );
    // A rollback keeps its own lighter policy.
    let p = op.policy(5000, 50, true, false);
    assert_eq!((p.signoffs.requester, p.tier), (0, None));
}

#[test]
fn a_tier_needs_a_threshold_and_no_fewer_signoffs() {
    let src = format!(
        "{EXAMPLE_SCHEMA}{}",
        r#"
[operations.tiered]
label = "Tiered"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
signoffs = { requester = 1, implementer = 2 }

[[operations.tiered.tiers]]
signoffs = { requester = 1, implementer = 3 }

[[operations.tiered.tiers]]
above_roots = 5
signoffs = { requester = 1, implementer = 1 }

[[operations.tiered.tiers]]
above_roots = 9
"#
    );
    let problems: Vec<String> = Schema::from_toml(&src)
        .unwrap_err()
        .0
        .iter()
        .map(|p| format!("{}: {}", p.place, p.message))
        .collect();
    for want in [
        "operations.tiered.tiers[1].above_targets: a tier needs above_targets and/or above_roots",
        "operations.tiered.tiers[2].signoffs: a tier may not need fewer sign-offs than the operation itself (1 requester, 2 implementer)",
        "operations.tiered.tiers[3].signoffs: a tier needs its signoffs = { requester = …, implementer = … }",
    ] {
        assert!(problems.iter().any(|p| p == want), "missing {want:?} in {problems:#?}");
    }
}

#[test]
fn an_irreversible_operation_needs_one_more_implementer() {
    let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    // purge_app: 1 + 2 in the schema, plus one because nothing can undo a purge.
    let purge = s.operation("purge_app").unwrap();
    let p = purge.policy(3, 1, false, false);
    assert_eq!(
        p.signoffs,
        SignoffPolicy {
            requester: 1,
            implementer: 3,
            reviewer: 0,
        }
    );
    assert_eq!(
        p.irreversible_note().unwrap(),
        "1 more implementer sign-off because no rollback can undo it"
    );
    let uninstall = s.operation("uninstall_app").unwrap();
    assert_eq!(uninstall.policy(3, 1, false, false).irreversible_extra, 0);
    let bad = format!(
        "{EXAMPLE_SCHEMA}\n[operations.x]\nlabel = \"X\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nirreversible_signoffs = 2\n"
    );
    let problems: Vec<String> = Schema::from_toml(&bad)
        .unwrap_err()
        .0
        .iter()
        .map(|p| format!("{}: {}", p.place, p.message))
        .collect();
    assert!(
        problems.contains(&"operations.x.irreversible_signoffs: this operation can be rolled back: only purge and webhook operations are irreversible".to_string()),
        "{problems:#?}"
    );
}

#[test]
fn signoffs_expire_after_is_a_duration_of_at_least_an_hour() {
    let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    let purge = s.operation("purge_app").unwrap();
    assert_eq!(
        purge
            .signoffs_expire_after
            .map(|l| l.to_string())
            .as_deref(),
        Some("72 hours")
    );
    assert_eq!(
        s.operation("uninstall_app").unwrap().signoffs_expire_after,
        None
    );
    let with = |value: &str| {
        format!(
            "{EXAMPLE_SCHEMA}\n[operations.x]\nlabel = \"X\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nsignoffs_expire_after = \"{value}\"\n"
        )
    };
    for ok in ["90m", "72h", "7d"] {
        assert!(Schema::from_toml(&with(ok)).is_ok(), "{ok}");
    }
    for (bad, says) in [
        (
            "72",
            "is not a duration: expected a whole number of minutes, hours or days",
        ),
        ("3 days", "is not a duration"),
        (
            "30m",
            "too short: a sign-off must count for at least 1 hour",
        ),
        ("0h", "too short"),
        ("400d", "longer than a year"),
    ] {
        let problems: Vec<String> = Schema::from_toml(&with(bad))
            .unwrap_err()
            .0
            .iter()
            .map(|p| format!("{}: {}", p.place, p.message))
            .collect();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("operations.x.signoffs_expire_after: ") && p.contains(says)),
            "{bad}: {problems:#?}"
        );
    }
    // Not a string at all: a parse error with its line.
    let e = Schema::from_toml(&with("x").replace("\"x\"", "72")).unwrap_err();
    assert_eq!(e.0[0].place, "file");
}

#[test]
fn budgets_are_checked_and_shared_by_group() {
    let op = |name: &str, extra: &str| {
        format!(
            "\n[operations.{name}]\nlabel = \"{name}\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\n{extra}\n"
        )
    };
    // A valid one: the group defaults to the operation's name; a rollback draws from none.
    let src = format!(
        "{EXAMPLE_SCHEMA}{}{}{}",
        op("own", "budget = { roots_per_day = 5 }"),
        op(
            "a",
            "budget = { targets_per_day = 10 }\nbudget_group = \"shared\""
        ),
        op(
            "b",
            "budget = { targets_per_day = 10 }\nbudget_group = \"shared\""
        ),
    );
    let s = Schema::from_toml(&src).unwrap();
    let own = s.operation("own").unwrap();
    let b = own.budget.as_ref().unwrap();
    assert_eq!((b.group.as_str(), b.roots_per_day), ("own", Some(5)));
    assert!(own.budget_for(true).is_none());
    assert_eq!(
        s.operation("b").unwrap().budget.as_ref().unwrap().group,
        "shared"
    );
    // The example's two site deletions share one.
    let ex = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    for name in ["delete_site", "decommission_site"] {
        let b = ex.operation(name).unwrap().budget.as_ref().unwrap();
        assert_eq!(
            (b.group.as_str(), b.roots_per_day),
            ("site-deletions", Some(50))
        );
    }

    let src = format!(
        "{EXAMPLE_SCHEMA}{}{}{}{}{}{}",
        op("empty", "budget = {}"),
        op("zero", "budget = { roots_per_day = 0 }"),
        op("lonely", "budget_group = \"nobody\""),
        op(
            "badname",
            "budget = { roots_per_day = 1 }\nbudget_group = \"Not A Name\""
        ),
        op(
            "first",
            "budget = { roots_per_day = 1 }\nbudget_group = \"g\""
        ),
        op(
            "second",
            "budget = { roots_per_day = 2 }\nbudget_group = \"g\""
        ),
    );
    let problems: Vec<String> = Schema::from_toml(&src)
        .unwrap_err()
        .0
        .iter()
        .map(|p| format!("{}: {}", p.place, p.message))
        .collect();
    for want in [
        "operations.empty.budget: a budget needs roots_per_day and/or targets_per_day",
        "operations.zero.budget.roots_per_day: must be at least 1 (an operation that may never run needs no budget)",
        "operations.lonely.budget_group: a budget group needs the budget it shares: budget = { roots_per_day = …, targets_per_day = … }",
        "operations.badname.budget_group: a budget group is 1–64 lowercase letters, digits, `-`, `_` or `.`",
        "operations.second.budget: `first` draws from the budget group `g` too, with another budget: operations of one group declare the same budget",
    ] {
        assert!(problems.iter().any(|p| p == want), "missing {want:?} in {problems:#?}");
    }
}

/// Two webhook operations on app installations: `deprovision` undone by `reprovision`.
fn with_undo(extra: &str) -> String {
    format!(
        "{EXAMPLE_SCHEMA}\n[operations.deprovision]\nlabel = \"Deprovision at the vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://hooks.example.net/deprovision\"\nsecret_env = \"HOOK_SECRET\"\nundo = \"reprovision\"\n\n[operations.reprovision]\nlabel = \"Reprovision at the vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://hooks.example.net/reprovision\"\nsecret_env = \"HOOK_SECRET\"\n{extra}"
    )
}

fn problems_of(src: &str) -> Vec<String> {
    Schema::from_toml(src)
        .unwrap_err()
        .0
        .iter()
        .map(|p| format!("{}: {}", p.place, p.message))
        .collect()
}

#[test]
fn a_webhook_with_an_undo_is_reversible() {
    let s = Schema::from_toml(&with_undo("")).unwrap();
    let op = s.operation("deprovision").unwrap();
    assert_eq!(op.undo.as_deref(), Some("reprovision"));
    assert!(op.is_reversible());
    assert_eq!(op.rollback_effect(), Some(Effect::Webhook));
    let p = op.policy(3, 1, false, false);
    assert_eq!(p.irreversible_extra, 0);
    assert_eq!(p.signoffs, op.signoffs);
    assert!(p.irreversible_note().is_none());
    assert_eq!(s.webhook_called(op, false).unwrap().name, "deprovision");
    assert_eq!(s.webhook_called(op, true).unwrap().name, "reprovision");
    // The undo operation is one of its own (requested directly); it has no undo itself.
    let undo = s.operation("reprovision").unwrap();
    assert!(!undo.is_reversible());
    assert_eq!(undo.policy(3, 1, false, false).irreversible_extra, 1);
    assert!(s.webhook_called(undo, true).is_none());
    // The example's billing pair undoes each other.
    for (name, undo) in [
        ("stop_app_billing", "resume_app_billing"),
        ("resume_app_billing", "stop_app_billing"),
    ] {
        let o = s.operation(name).unwrap();
        assert!(o.is_reversible(), "{name}");
        assert_eq!(s.webhook_called(o, true).unwrap().name, undo);
    }
    // The built-in inverses.
    assert_eq!(Effect::SoftDelete.inverse(), Some(Effect::Restore));
    assert_eq!(Effect::Restore.inverse(), Some(Effect::SoftDelete));
    assert_eq!(Effect::Purge.inverse(), None);
    assert_eq!(Effect::Webhook.inverse(), None);
    for name in ["uninstall_app", "purge_app", "set_app_version"] {
        let o = s.operation(name).unwrap();
        assert_eq!(o.is_reversible(), o.effect.is_reversible(), "{name}");
    }
}

#[test]
fn an_undo_is_another_webhook_on_the_same_kind_and_team() {
    let cases = [
        (
            "[operations.uninstall_app2]\nlabel = \"U\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nundo = \"reprovision\"\n",
            "operations.uninstall_app2.undo: only a webhook operation names an undo (its inverse external call); a soft_delete is undone by its built-in inverse",
        ),
        (
            "[operations.selfish]\nlabel = \"S\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://h.example/s\"\nsecret_env = \"HOOK_SECRET\"\nundo = \"selfish\"\n",
            "operations.selfish.undo: an operation cannot be its own undo: name the webhook operation that reverses this call",
        ),
        (
            "[operations.lost]\nlabel = \"L\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://h.example/l\"\nsecret_env = \"HOOK_SECRET\"\nundo = \"nowhere\"\n",
            "operations.lost.undo: unknown operation `nowhere` (webhook operations: `deprovision`, `reprovision`, `resume_app_billing`, `stop_app_billing`)",
        ),
        (
            "[operations.builtin]\nlabel = \"B\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://h.example/b\"\nsecret_env = \"HOOK_SECRET\"\nundo = \"restore_app\"\n",
            "operations.builtin.undo: `restore_app` is a restore operation: the undo of a webhook call is another webhook operation",
        ),
        (
            "[operations.sites]\nlabel = \"S\"\ntarget = \"site\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://h.example/s\"\nsecret_env = \"HOOK_SECRET\"\nundo = \"reprovision\"\n",
            "operations.sites.undo: `reprovision` acts on `app_install` and this operation on `site`: the undo acts on the same kind",
        ),
        (
            "[operations.other_team]\nlabel = \"O\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"vendor-ops\"\nendpoint = \"https://h.example/o\"\nsecret_env = \"HOOK_SECRET\"\nundo = \"reprovision\"\n",
            "operations.other_team.undo: `reprovision` is implemented by `platform-ops` and this operation by `vendor-ops`: the team that makes a call also carries out its undo",
        ),
        (
            "[operations.doubly]\nlabel = \"D\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://h.example/d\"\nsecret_env = \"HOOK_SECRET\"\nundo = \"reprovision\"\nirreversible_signoffs = 2\n",
            "operations.doubly.irreversible_signoffs: this operation can be rolled back (its undo is `reprovision`): extra sign-offs are only for operations nothing can undo",
        ),
    ];
    for (extra, want) in cases {
        let problems = problems_of(&with_undo(&format!("\n{extra}")));
        assert!(
            problems.iter().any(|p| p == want),
            "missing {want:?} in {problems:#?}"
        );
        // Each case reports its own problem only.
        assert_eq!(problems.len(), 1, "{problems:#?}");
    }
}

#[test]
fn a_tier_may_name_a_third_side() {
    let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    let op = s.operation("delete_site").unwrap();
    // 3 sites of 3 customers: the operation's own policy, no third side.
    let p = op.policy(3, 3, false, false);
    assert_eq!(
        (p.tier, p.reviewer_team(), p.signoffs.reviewer),
        (None, None, 0)
    );
    // 4 customers: tier 1, both teams only.
    let p = op.policy(4, 4, false, false);
    assert_eq!((p.tier.map(|t| t.0), p.reviewer_team()), (Some(1), None));
    // 21 customers: tier 2, and one sign-off from `security`.
    let p = op.policy(21, 21, false, false);
    assert_eq!(p.tier.map(|t| t.0), Some(2));
    assert_eq!(p.reviewer_team(), Some("security"));
    assert_eq!(p.signoffs.reviewer, 1);
    assert_eq!(
        p.describe().unwrap(),
        "tier 2 (above 20 roots): 2 requester and 3 implementer sign-offs, and 1 from `security` as a third side"
    );
    // Without `rollback_signoffs`, restoring as many sites needs the same people.
    assert_eq!(
        op.policy(21, 21, true, false).reviewer_team(),
        Some("security")
    );
    // The third side never requests the operation.
    let e = op.may_be_requested_by("security").unwrap_err();
    assert!(matches!(e, RequestRefusal::ReviewingTeam { .. }), "{e}");
    assert!(e.to_string().contains("third side"), "{e}");
    assert!(op.may_be_requested_by("app-owners").is_ok());
    // `reviewer` is never read from a `signoffs` table: a third side names its team.
    let bad = format!(
        "{EXAMPLE_SCHEMA}{}",
        r#"
[operations.sneaky]
label = "Sneaky"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
signoffs = { requester = 1, implementer = 1, reviewer = 3 }
"#
    );
    let s = Schema::from_toml(&bad).unwrap();
    assert_eq!(s.operation("sneaky").unwrap().signoffs.reviewer, 0);
}

#[test]
fn a_third_side_is_independent_of_both_teams() {
    let src = format!(
        "{EXAMPLE_SCHEMA}{}",
        r#"
[operations.reviewed]
label = "Reviewed"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
requested_by = ["app-owners", "security"]

[[operations.reviewed.tiers]]
above_targets = 10
signoffs = { requester = 1, implementer = 1 }
also = { team = "platform-ops", signoffs = 1 }

[[operations.reviewed.tiers]]
above_targets = 20
signoffs = { requester = 1, implementer = 1 }
also = { team = "security", signoffs = 1 }

[[operations.reviewed.tiers]]
above_targets = 30
signoffs = { requester = 1, implementer = 1 }
also = { team = "Audit Team", signoffs = 0 }
"#
    );
    let problems: Vec<String> = Schema::from_toml(&src)
        .unwrap_err()
        .0
        .iter()
        .map(|p| format!("{}: {}", p.place, p.message))
        .collect();
    for want in [
        "operations.reviewed.tiers[1].also: `platform-ops` implements this operation, so it cannot also be its third side",
        "operations.reviewed.tiers[2].also: `security` may request this operation (requested_by), so it cannot also be its third side",
        "operations.reviewed.tiers[3].also: `Audit Team` is not a valid team name",
        "operations.reviewed.tiers[3].also: a third side needs at least 1 sign-off",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
}

#[test]
fn a_third_side_takes_only_team_and_signoffs() {
    let src = format!(
        "{EXAMPLE_SCHEMA}{}",
        r#"
[[operations.uninstall_app.tiers]]
above_targets = 40
signoffs = { requester = 1, implementer = 1 }
also = { team = "audit", signoffs = 1, members = 3 }
"#
    );
    let e = Schema::from_toml(&src).unwrap_err().to_string();
    assert!(e.contains("unknown field `members`"), "{e}");
}
