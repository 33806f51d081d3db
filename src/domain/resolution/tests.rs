//! The resolution rules without a server or a database: an inventory written out by hand,
//! the example schema (org → site → app_install). Rollbacks and restores: `tests/undo.rs`.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::json;

use super::*;
use crate::domain::execution::RestoreSpec;
use crate::domain::schema::{Effect, Operation, Schema, EXAMPLE_SCHEMA};
use crate::domain::selector::{Scope, Selector};
use crate::domain::EntityState::{self, Active, Deleted, Purged};

mod guards;
mod undo;

const ORG: &str = "org-0000000a";
const ORG2: &str = "org-0000000b";

fn site(n: u32) -> String {
    format!("5f0c6a52-8d7e-4c1b-9a3f-{n:012}")
}

fn app(n: u32) -> String {
    format!("0b1c2d3e-4f50-4a6b-8c7d-{n:012}")
}

fn schema() -> Schema {
    Schema::from_toml(EXAMPLE_SCHEMA).unwrap()
}

fn now() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2030, 6, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

fn ent(id: &str, kind: &str, parent: Option<&str>, state: EntityState) -> EntityFacts {
    EntityFacts {
        id: id.into(),
        kind: kind.into(),
        parent_id: parent.map(str::to_string),
        name: format!("{id} name"),
        attrs: r#"{"app":"insight"}"#.into(),
        state,
    }
}

/// A hand-written inventory: org A has sites 1 and 2, org B site 3; apps 1–2 on site 1,
/// 3 on site 2, 4 on site 3.
struct Inventory(Vec<EntityFacts>);

impl Inventory {
    fn new() -> Inventory {
        let mut v = vec![
            ent(ORG, "org", None, Active),
            ent(ORG2, "org", None, Active),
        ];
        for (s, o) in [(1, ORG), (2, ORG), (3, ORG2)] {
            v.push(ent(&site(s), "site", Some(o), Active));
        }
        for (a, s) in [(1, 1), (2, 1), (3, 2), (4, 3)] {
            v.push(ent(&app(a), "app_install", Some(&site(s)), Active));
        }
        Inventory(v)
    }

    fn get(&self, id: &str) -> Option<&EntityFacts> {
        self.0.iter().find(|e| e.id == id)
    }

    fn set(&mut self, id: &str, state: EntityState) {
        self.0.iter_mut().find(|e| e.id == id).unwrap().state = state;
    }

    fn ancestors(&self) -> Ancestors {
        self.0
            .iter()
            .map(|e| {
                let a = Ancestor {
                    kind: e.kind.clone(),
                    parent_id: e.parent_id.clone(),
                    name: e.name.clone(),
                };
                (e.id.clone(), a)
            })
            .collect()
    }

    /// What `db::resolve` would load for `plan` (more than it needs: every ancestor).
    fn load(&self, plan: &Plan<'_>) -> Loaded {
        let mut l = Loaded {
            explicit: plan
                .wanted
                .iter()
                .filter_map(|w| self.get(w.id).cloned())
                .collect(),
            ancestors: self.ancestors(),
            ..Loaded::default()
        };
        if let Some(scope) = &plan.scope {
            l.scopes = scope
                .lines
                .iter()
                .filter_map(|id| self.get(id).cloned())
                .collect();
            if plan.descends().is_some() {
                let roots = plan.judge_scopes(&l.scopes, None);
                l.candidates = self
                    .0
                    .iter()
                    .filter(|e| e.kind == plan.op.target && self.below(e, &roots))
                    .cloned()
                    .collect();
            }
        }
        if plan.queries_whole_kind() {
            // The core checks the `where` again: hand it the whole kind.
            l.candidates = self
                .0
                .iter()
                .filter(|e| e.kind == plan.op.target)
                .cloned()
                .collect();
        }
        let subjects: Vec<&EntityFacts> = l
            .explicit
            .iter()
            .chain(&l.candidates)
            .filter(|e| plan.may_target(e))
            .collect();
        for s in &subjects {
            let children = self
                .0
                .iter()
                .filter(|c| c.parent_id.as_ref() == Some(&s.id));
            let n = children.filter(|c| c.state == Active).count() as i64;
            if n > 0 {
                l.active_children.insert(s.id.clone(), n);
            }
        }
        if plan.cascades() {
            let mut level: Vec<&str> = subjects.iter().map(|s| s.id.as_str()).collect();
            while !level.is_empty() {
                let next: Vec<&EntityFacts> = self
                    .0
                    .iter()
                    .filter(|c| c.state == Active)
                    .filter(|c| c.parent_id.as_deref().is_some_and(|p| level.contains(&p)))
                    .collect();
                l.descendants.extend(next.iter().map(|c| (*c).clone()));
                level = next.iter().map(|c| c.id.as_str()).collect();
            }
        }
        l.population = self.population(plan.schema, &plan.op.target);
        l
    }

    /// Every count a guard may ask for (the loader reads only what the operation's need).
    fn population(&self, schema: &Schema, kind: &str) -> Population {
        let active = |k: &str| {
            let k = k.to_string();
            self.0
                .iter()
                .filter(move |e| e.kind == k && e.state == Active)
        };
        let root = schema.ancestry(kind).last().unwrap().name.clone();
        let mut under = HashMap::new();
        for e in active(kind) {
            // Up through active parents only, as the loader descends.
            let mut cur = e.parent_id.as_deref().and_then(|p| self.get(p));
            while let Some(p) = cur {
                *under.entry(p.id.clone()).or_default() += 1;
                cur = match p.parent_id.as_deref().and_then(|q| self.get(q)) {
                    Some(q) if p.state == Active => Some(q),
                    _ => None,
                };
            }
        }
        Population {
            of_kind: Some(active(kind).count() as u64),
            roots: Some(active(&root).count() as u64),
            under,
        }
    }

    fn below(&self, e: &EntityFacts, roots: &[&str]) -> bool {
        let mut cur = e.parent_id.as_deref();
        while let Some(p) = cur {
            if roots.contains(&p) {
                return true;
            }
            cur = self.get(p).and_then(|x| x.parent_id.as_deref());
        }
        false
    }

    fn resolve(&self, schema: &Schema, op: &Operation, selector: &Selector) -> Resolution {
        let plan = Plan::new(schema, op, selector);
        let loaded = self.load(&plan);
        evaluate(plan, &json!({}), loaded, now())
    }
}

fn ids(list: &[String]) -> Selector {
    Selector {
        ids: list.to_vec(),
        ..Selector::default()
    }
}

fn within(kind: &str, list: &[&str]) -> Selector {
    Selector {
        within: Some(Scope {
            kind: kind.into(),
            ids: list.iter().map(|s| s.to_string()).collect(),
        }),
        ..Selector::default()
    }
}

fn codes(r: &Resolution) -> Vec<&str> {
    r.errors.iter().map(|e| e.code.as_str()).collect()
}

fn target_ids(r: &Resolution) -> Vec<&str> {
    r.targets.iter().map(|t| t.id.as_str()).collect()
}

#[test]
fn a_site_id_is_never_an_app_install_target_and_the_error_says_what_it_is() {
    let (s, inv) = (schema(), Inventory::new());
    let op = s.operation("uninstall_app").unwrap();
    let r = inv.resolve(&s, op, &ids(&[app(1), site(1)]));
    assert_eq!(target_ids(&r), [app(1)]);
    let e = &r.errors[0];
    assert_eq!(
        (e.code.as_str(), e.field.as_str(), e.line),
        ("wrong_kind", "targets.ids", Some(2))
    );
    assert_eq!(e.actual_kind.as_deref(), Some("site"));
    assert_eq!(e.expected_kind.as_deref(), Some("app_install"));
    assert_eq!(
        e.message,
        format!("`{}` is a Cloud site (site), but Uninstall an app acts on App installations (app_install); a Cloud site (site) can only be a scope: to act on the App installations inside it, use targets.within with kind `site`", site(1))
    );
    // A line that says it is a site is refused before the inventory is asked.
    let r = inv.resolve(&s, op, &ids(&[format!("site:{}", app(1))]));
    assert_eq!(r.errors[0].code, "wrong_kind");
    assert_eq!(r.errors[0].actual_kind.as_deref(), Some("site"));
    assert!(
        r.errors[0].message.starts_with("line says `site:`"),
        "{}",
        r.errors[0].message
    );
    assert!(r.targets.is_empty());
    // An app install is not a scope of a site operation, and an org is not a site.
    let del = s.operation("delete_site").unwrap();
    let r = inv.resolve(&s, del, &ids(&[app(1)]));
    assert_eq!(r.errors[0].actual_kind.as_deref(), Some("app_install"));
    assert!(!r.errors[0].message.contains("can only be a scope"));
    let r = inv.resolve(&s, op, &within("site", &[ORG]));
    assert_eq!(
        codes(&r),
        ["wrong_kind"],
        "no `no_targets` beside another error"
    );
    assert_eq!(r.errors[0].field, "targets.within.ids");
    assert_eq!(r.errors[0].message, format!("scope `{ORG}` is a Customer organisation (org), but the scope kind is Cloud site (site)"));
}

#[test]
fn unknown_ids_say_whether_they_could_be_one() {
    let (s, inv) = (schema(), Inventory::new());
    let op = s.operation("uninstall_app").unwrap();
    let r = inv.resolve(&s, op, &ids(&[app(99), "org-12345678".into(), "".into()]));
    assert_eq!(codes(&r), ["not_found", "pattern_mismatch", "empty"]);
    assert!(r.errors[0]
        .message
        .contains("there is no App installation (app_install) with that ID"));
    assert!(
        r.errors[1]
            .message
            .ends_with("(it looks like a Customer organisation (org) ID)"),
        "{}",
        r.errors[1].message
    );
    assert_eq!(r.error_count, 3);
}

#[test]
fn a_repeated_id_counts_once_with_a_warning() {
    let (s, inv) = (schema(), Inventory::new());
    let op = s.operation("uninstall_app").unwrap();
    let mut list = vec![app(1)];
    list.extend(std::iter::repeat_n(app(1), 7));
    let r = inv.resolve(&s, op, &ids(&list));
    assert_eq!(r.targets.len(), 1);
    assert_eq!(r.summary.warnings.len(), plan::NAMED_REPEATS + 1);
    assert_eq!(
        r.summary.warnings[0],
        format!("line 2: `{}` repeats line 1 and is counted once", app(1))
    );
    assert_eq!(
        r.summary.warnings[5],
        "2 more repeated IDs were counted once"
    );
}

#[test]
fn states_decide_what_an_effect_can_act_on() {
    let (s, mut inv) = (schema(), Inventory::new());
    inv.set(&app(2), Deleted);
    inv.set(&app(3), Purged);
    let uninstall = s.operation("uninstall_app").unwrap();
    let r = inv.resolve(&s, uninstall, &ids(&[app(1), app(2), app(3)]));
    assert_eq!(codes(&r), ["already_deleted", "purged"]);
    let restore = s.operation("restore_app").unwrap();
    let r = inv.resolve(&s, restore, &ids(&[app(1), app(2)]));
    assert_eq!(codes(&r), ["not_deleted"]);
    assert_eq!(target_ids(&r), [app(2)]);
    // A query leaves them out and says how many.
    let r = inv.resolve(&s, uninstall, &within("site", &[&site(1), &site(2)]));
    assert_eq!(target_ids(&r), [app(1)]);
    assert_eq!(
        r.summary.warnings,
        ["2 App installations matched the query but are already deleted, and were left out"]
    );
    // The rule the loader reads by and the rule that judges agree.
    for effect in [
        Effect::SoftDelete,
        Effect::Restore,
        Effect::SetAttributes,
        Effect::Purge,
        Effect::Webhook,
    ] {
        for state in [Active, Deleted, Purged] {
            let e = ent("x", "k", None, state);
            assert_eq!(
                usable_states(effect).contains(&state),
                state_problem(effect, &e).is_none(),
                "{effect:?} {state:?}"
            );
        }
    }
}

#[test]
fn cascade_takes_the_active_descendants_into_the_signed_list() {
    let (s, mut inv) = (schema(), Inventory::new());
    inv.set(&app(2), Deleted);
    let op = s.operation("decommission_site").unwrap();
    let r = inv.resolve(&s, op, &ids(&[site(1)]));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let got: Vec<(&str, &str)> = r
        .targets
        .iter()
        .map(|t| (t.id.as_str(), t.scope_path.as_str()))
        .collect();
    let path = format!("{ORG}/{}", site(1));
    assert_eq!(
        got,
        [(app(1).as_str(), path.as_str()), (site(1).as_str(), ORG)]
    );
    assert_eq!(r.summary.targets, 2);
    assert_eq!(r.summary.cascaded, [("app_install".to_string(), 1)].into());
    assert_eq!(r.summary.text, "1 Cloud site on 1 Customer organisation; 1 Cloud site soft-deleted with the 1 App installation below them (cascade), 0 Customer organisations soft-deleted");
    // The descendants are part of the fingerprint.
    let without = fingerprint(&s.hash, &op.name, &json!({}), &r.targets[1..]);
    assert_ne!(r.fingerprint, without);
}

#[test]
fn a_delete_that_does_not_cascade_refuses_targets_with_active_children() {
    let (s, mut inv) = (schema(), Inventory::new());
    inv.set(&app(3), Deleted);
    let op = s.operation("delete_site").unwrap();
    let r = inv.resolve(&s, op, &ids(&[site(1), site(2)]));
    // Both of org A's sites: its `min_remaining` guard refuses that too.
    assert_eq!(codes(&r), ["min_remaining", "has_active_children"]);
    let e = &r.errors[1];
    assert_eq!(
        (e.field.as_str(), e.line, e.input.as_str()),
        ("targets.ids", Some(1), site(1).as_str())
    );
    assert_eq!(e.message, format!("`{0}` ({0} name) still has 2 active App installations; Delete a cloud site does not cascade: remove them first", site(1)));
    // Found by a scope, the error is on the scope.
    let r = inv.resolve(&s, op, &within("org", &[ORG2]));
    let e = r
        .errors
        .iter()
        .find(|e| e.code == "has_active_children")
        .unwrap();
    assert_eq!((e.field.as_str(), e.line), ("targets.within", None));
}

#[test]
fn a_purge_refuses_what_is_still_within_retention() {
    let (s, mut inv) = (schema(), Inventory::new());
    for a in [1, 2, 3] {
        inv.set(&app(a), Deleted);
    }
    let op = s.operation("purge_app").unwrap();
    let sel = ids(&[app(1), app(2), app(3)]);
    let plan = Plan::new(&s, op, &sel);
    let mut loaded = inv.load(&plan);
    let day = chrono::Duration::days(1);
    loaded.purge_after = [
        (app(1), Some(now() - day)),
        (app(2), Some(now() + day)),
        (app(3), None),
    ]
    .into();
    let r = evaluate(plan, &json!({}), loaded, now());
    assert_eq!(codes(&r), ["within_retention", "within_retention"]);
    assert_eq!(r.errors[0].message, format!("`{0}` ({0} name) is still within its retention period: it may be purged after 2030-06-02 12:00 UTC — until then it can be restored", app(2)));
    assert_eq!(r.errors[1].message, format!("`{0}` ({0} name) has no retention date (it was not deleted by a change), so it cannot be purged", app(3)));
    assert_eq!(r.errors[1].line, Some(3));
    assert!(
        !within_retention(Some(now()), now()),
        "purgeable from its date on"
    );
    assert!(within_retention(
        Some(now() + chrono::Duration::seconds(1)),
        now()
    ));
    assert!(!within_retention(Some(now() - day), now()));
}

#[test]
fn max_targets_counts_the_whole_selection() {
    let (s, inv) = (schema(), Inventory::new());
    let mut op = s.operation("uninstall_app").unwrap().clone();
    op.max_targets = 2;
    let r = inv.resolve(&s, &op, &within("org", &[ORG]));
    assert_eq!(
        r.targets.len(),
        3,
        "the list is kept, so the page can show it"
    );
    assert_eq!(codes(&r), ["too_many_targets"]);
    assert_eq!(r.errors[0].message, "the selection resolves to 3 App installations, more than Uninstall an app's limit of 2: split the change or raise max_targets in the schema");
    // A whole-kind query stops early: the database's count is the one reported.
    let sel = Selector {
        filter: [("app".to_string(), "insight".to_string())].into(),
        ..Selector::default()
    };
    let plan = Plan::new(&s, &op, &sel);
    assert!(plan.queries_whole_kind());
    let loaded = Loaded {
        candidates: (1..=3).map(|a| inv.get(&app(a)).unwrap().clone()).collect(),
        matched_total: Some(40),
        ancestors: inv.ancestors(),
        ..Loaded::default()
    };
    let r = evaluate(plan, &json!({}), loaded, now());
    assert!(r.errors[0]
        .message
        .starts_with("the selection resolves to 40 App installations"));
    // Cascaded descendants count too.
    let mut dec = s.operation("decommission_site").unwrap().clone();
    dec.max_targets = 2;
    let r = inv.resolve(&s, &dec, &ids(&[site(1)]));
    assert_eq!(codes(&r), ["too_many_targets"]);
}

#[test]
fn nothing_selected_is_an_error_and_an_empty_selector_says_what_to_name() {
    let (s, mut inv) = (schema(), Inventory::new());
    let op = s.operation("uninstall_app").unwrap();
    inv.set(&app(4), Deleted);
    let r = inv.resolve(&s, op, &within("org", &[ORG2]));
    assert_eq!(codes(&r), ["no_targets"]);
    assert_eq!(
        r.errors[0].message,
        "the selection matches no App installations that Uninstall an app can act on"
    );
    let r = inv.resolve(&s, op, &Selector::default());
    assert_eq!(codes(&r), ["empty"]);
    let r = inv.resolve(&s, op, &within("planet", &["x"]));
    assert_eq!(codes(&r), ["unknown_kind"]);
    let r = inv.resolve(&s, op, &within("app_install", &[&app(1)]));
    assert_eq!(codes(&r), ["wrong_scope_kind"]);
    assert_eq!(r.errors[0].message, "App installation (app_install) is not a scope of App installations (app_install): scopes of App installations are `site`, `org`");
    let sel = Selector {
        within: within("org", &[ORG]).within,
        filter: [("colour".to_string(), "red".to_string())].into(),
        ..Selector::default()
    };
    let r = inv.resolve(&s, op, &sel);
    assert_eq!(codes(&r), ["unknown_attribute"]);
    assert_eq!(r.errors[0].field, "targets.where.colour");
}

#[test]
fn ids_and_scopes_that_name_the_same_targets_sign_the_same_list() {
    let (s, inv) = (schema(), Inventory::new());
    let op = s.operation("uninstall_app").unwrap();
    let by_ids = inv.resolve(&s, op, &ids(&[app(3), app(1), app(2)]));
    let by_scope = inv.resolve(&s, op, &within("org", &[ORG]));
    let both = Selector {
        ids: vec![app(1)],
        within: within("org", &[ORG]).within,
        ..Selector::default()
    };
    let both = inv.resolve(&s, op, &both);
    assert_eq!(by_ids.fingerprint, by_scope.fingerprint);
    assert_eq!(by_ids.fingerprint, both.fingerprint);
    assert_eq!(by_ids.targets, both.targets);
    assert_eq!(by_ids.summary.text, "3 App installations on 2 Cloud sites of 1 Customer organisation; 3 App installations soft-deleted, 0 Cloud sites soft-deleted");
    assert_eq!(
        by_ids.summary.scopes,
        [("org".to_string(), 1), ("site".to_string(), 2)].into()
    );
    assert_eq!(
        by_ids.summary.sample_roots,
        [RootRef {
            id: ORG.into(),
            name: format!("{ORG} name")
        }]
    );
    assert_eq!(by_ids.targets[0].scope_path, format!("{ORG}/{}", site(1)));
}
