//! Rollbacks and restores over the hand-written inventory of `tests.rs`.

use super::*;

fn stored(inv: &Inventory, list: &[String]) -> Vec<ResolvedTarget> {
    let ancestors = inv.ancestors();
    let paths = scope::paths(
        &ancestors,
        list.iter()
            .filter_map(|id| inv.get(id)?.parent_id.as_deref()),
    );
    list.iter()
        .map(|id| {
            let e = inv.get(id).unwrap();
            ResolvedTarget {
                kind: e.kind.clone(),
                id: e.id.clone(),
                scope_path: paths[e.parent_id.as_deref().unwrap()].clone(),
                name: e.name.clone(),
            }
        })
        .collect()
}

#[test]
fn a_rollback_covers_what_is_still_as_the_execution_left_it() {
    let (s, inv) = (schema(), Inventory::new());
    let op = s.operation("uninstall_app").unwrap();
    let standing = |state, deleted_by| Standing { state, deleted_by };
    assert!(left_as_it_was(
        Effect::Restore,
        standing(Deleted, Some(7)),
        7
    ));
    assert!(!left_as_it_was(
        Effect::Restore,
        standing(Deleted, Some(8)),
        7
    ));
    assert!(!left_as_it_was(Effect::Restore, standing(Active, None), 7));
    assert!(left_as_it_was(
        Effect::SoftDelete,
        standing(Active, None),
        7
    ));
    let now: HashMap<String, Standing> = [
        (app(1), standing(Deleted, Some(7))),
        (app(2), standing(Active, None)),
    ]
    .into();
    let rb = Rollback {
        schema: &s,
        op,
        original_change: 7,
        inverse: Effect::Restore,
    };
    let r = evaluate_rollback(rb, stored(&inv, &[app(1), app(2), app(3)]), &now);
    assert_eq!(target_ids(&r), [app(1)]);
    assert_eq!(r.summary.warnings, [
        "1 of the 3 targets the original execution changed are no longer as it left them (restored or changed since) and are left out",
        "1 targets are no longer in the inventory",
    ]);
    // The same sentence as a resolution's, with the inverse's verb.
    assert_eq!(r.summary.text, "1 App installation on 1 Cloud site of 1 Customer organisation; 1 App installation restored, 0 Cloud sites restored");
    let again = fingerprint(
        &s.hash,
        "rollback:uninstall_app",
        &json!({"rollback_of": 7}),
        &r.targets,
    );
    assert_eq!(r.fingerprint, again);
    let r = evaluate_rollback(rb, vec![], &now);
    assert_eq!(codes(&r), ["no_targets"]);
    // Putting attributes back says so.
    let set = s.operation("set_app_version").unwrap();
    let rb = Rollback {
        op: set,
        inverse: Effect::SetAttributes,
        ..rb
    };
    let now = [(app(1), standing(Active, None))].into();
    let r = evaluate_rollback(rb, stored(&inv, &[app(1)]), &now);
    assert!(r.summary.text.ends_with("1 App installation set back to their previous values, 0 Cloud sites set back to their previous values"), "{}", r.summary.text);
}

#[test]
fn a_restore_returns_what_changed_and_refuses_what_it_cannot() {
    let (s, mut inv) = (schema(), Inventory::new());
    inv.set(&site(1), Deleted);
    inv.set(&app(1), Deleted);
    inv.set(&app(3), Purged);
    let op = s.operation("restore_site").unwrap();
    let spec = RestoreSpec {
        entities: vec![
            ORG.into(),
            site(1),
            app(3),
            " ".into(),
            "nope".into(),
            site(3),
        ],
        changes: vec![4],
        before_change: None,
        at: None,
    };
    let candidates = restore_candidates(&spec.entities, vec![app(1), app(2)]);
    assert_eq!(candidates[&site(1)], Some(2));
    assert_eq!(candidates[&app(1)], None);
    let mut loaded = RestoreLoaded {
        entities: candidates
            .keys()
            .filter_map(|id| inv.get(id).map(|e| (id.clone(), e.clone())))
            .collect(),
        ancestors: inv.ancestors(),
        ..RestoreLoaded::default()
    };
    // At the point, site 1 and app 1 were active; app 2 had other attributes; site 3 is
    // as it was.
    loaded.at_point.insert(site(1), (Active, "{}".into()));
    loaded.at_point.insert(app(1), (Active, "{}".into()));
    loaded
        .at_point
        .insert(app(2), (Active, r#"{"app":"other"}"#.into()));
    let r = evaluate_restore(&s, op, &spec, &candidates, loaded);
    assert_eq!(
        codes(&r),
        ["wrong_kind", "purged", "not_found"],
        "{:?}",
        r.errors
    );
    let lines: Vec<Option<usize>> = r.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(1), Some(3), Some(5)]);
    assert_eq!(r.errors[0].message, format!("`{ORG}` is a Customer organisation (org); Restore cloud sites restores Cloud sites (site) and what is below them"));
    assert_eq!(target_ids(&r), [app(1), app(2), site(1)]);
    assert_eq!(r.summary.cascaded, [("app_install".to_string(), 2)].into());
    assert_eq!(
        r.summary.warnings,
        ["1 entities are already as they were at that point and are left out"]
    );
    assert_eq!(r.summary.text, "1 Cloud site on 1 Customer organisation; 1 Cloud site restored with the 2 App installations below them, 0 Customer organisations restored");
    assert_eq!(r.summary.sample_roots[0].name, format!("{ORG} name"));
}

/// `deprovision` (a webhook) undone by `reprovision`; `notify` (a webhook) with no undo.
fn webhook_schema() -> Schema {
    let hook = |name: &str, label: &str, undo: &str| {
        format!("\n[operations.{name}]\nlabel = \"{label}\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://hooks.example.net/{name}\"\nsecret_env = \"HOOK_SECRET\"\n{undo}\n")
    };
    let src = format!(
        "{EXAMPLE_SCHEMA}{}{}{}",
        hook(
            "deprovision",
            "Deprovision at the vendor",
            "undo = \"reprovision\""
        ),
        hook("reprovision", "Reprovision at the vendor", ""),
        hook("notify", "Notify the vendor", ""),
    );
    Schema::from_toml(&src).unwrap()
}

#[test]
fn a_webhook_with_an_undo_is_reversible_by_calling_it_for_what_was_done() {
    let (s, mut inv) = (webhook_schema(), Inventory::new());
    let op = s.operation("deprovision").unwrap();
    let r = inv.resolve(&s, op, &ids(&[app(1), app(2), app(3)]));
    let u = r.summary.undo.unwrap();
    assert!(u.reversible);
    assert_eq!(
        u.text,
        "Reversible: one rollback calls Reprovision at the vendor for the 3 App installations that were done"
    );
    let notify = s.operation("notify").unwrap();
    let u = inv
        .resolve(&s, notify, &ids(&[app(1)]))
        .summary
        .undo
        .unwrap();
    assert!(!u.reversible);
    assert!(u.text.starts_with("Irreversible: "), "{}", u.text);
    // The rollback: every done target still in the inventory, whatever its state (the
    // call left the inventory as it was), none that is gone.
    inv.set(&app(2), Deleted);
    let standing = |state| Standing {
        state,
        deleted_by: None,
    };
    let now: HashMap<String, Standing> =
        [(app(1), standing(Active)), (app(2), standing(Deleted))].into();
    let rb = Rollback {
        schema: &s,
        op,
        original_change: 9,
        inverse: op.rollback_effect().unwrap(),
    };
    let r = evaluate_rollback(rb, stored(&inv, &[app(1), app(2), app(3)]), &now);
    assert_eq!(target_ids(&r), [app(1), app(2)]);
    assert_eq!(
        r.summary.warnings,
        ["1 targets are no longer in the inventory"]
    );
}
