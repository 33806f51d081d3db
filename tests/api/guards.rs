//! Safety rails (issue #12) through the API and the change page, on both backends:
//! population guards, risk tiers, the undo plan and the irreversible sign-off.
//! The fixture: org 1 holds sites 1–3, org 2 sites 4 (apps 7, 8) and 5 (empty). The example
//! schema keeps at least one active site per organisation on `delete_site` and
//! `decommission_site` (`min_remaining`), and no destructive operation may reach every
//! organisation (`selects_everything`).

use diesel::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{json, Value};

use countersign::domain::schema::EXAMPLE_SCHEMA;

use crate::both_backends;
use crate::helpers::{inst, site, spawn_app_with, Backend, TestApp, ORG1, ORG2};
use crate::web::sign_in;

fn guard<'v>(change: &'v Value, name: &str) -> &'v Value {
    change["summary"]["guards"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["guard"] == name))
        .unwrap_or_else(|| panic!("no {name} guard in {}", change["summary"]))
}

async fn min_remaining_refuses_the_last_site_of_a_customer(app: TestApp) {
    app.load_fixture().await;
    // Decommissioning org 2's two sites (and the apps on them) would leave it with none.
    let c = app
        .create(
            "ana",
            "decommission_site",
            json!({"within": {"kind": "org", "ids": [ORG2]}}),
        )
        .await;
    let g = guard(&c, "min_remaining");
    assert_eq!(g["passed"], false, "{g}");
    assert_eq!(
        (&g["measured"], &g["population"], &g["violations"]),
        (&json!(0), &json!(1), &json!(1))
    );
    assert_eq!(g["at"][0]["id"], ORG2);
    assert_eq!(
        g["text"],
        format!("would leave 1 Customer organisation with no active Cloud site (Globex ({ORG2})): refused")
    );
    let e = c["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "min_remaining")
        .unwrap_or_else(|| panic!("no min_remaining error: {c}"));
    assert_eq!(e["message"], g["text"]);
    // It cannot be submitted; the refusal names the rule and carries the numbers.
    let id = c["id"].as_i64().unwrap();
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "resolution_errors", "{v}");
    assert_eq!(v["error"]["details"]["errors"][0]["code"], "min_remaining");
    let refused = &v["error"]["details"]["guards"][0];
    assert_eq!(
        (&refused["guard"], &refused["measured"], &refused["limit"]),
        (&json!("min_remaining"), &json!(0), &json!(1.0))
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("would leave 1 Customer organisation with no active Cloud site"));
    // The change page says so beside the blast radius.
    let b = sign_in(&app, "carla").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(
        page.contains(r#"<li class="guard-refused" data-guard="min_remaining"><code>min_remaining</code> refused: would leave 1 Customer organisation"#),
        "{page}"
    );
    // One of the two sites is fine, and the summary says what is left.
    let c = app
        .create("ana", "delete_site", json!({"ids": [site(5)]}))
        .await;
    let g = guard(&c, "min_remaining");
    assert_eq!(g["passed"], true, "{g}");
    assert_eq!(g["measured"], 1);
    assert!(c["errors"].as_array().unwrap().is_empty(), "{c}");
}

async fn a_guard_is_checked_again_at_the_execute_gate(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app.approved("delete_site", json!({"ids": [site(5)]})).await;
    // Since the sign-offs, org 2's other site went away (the signed list is unchanged, so
    // the fingerprint is too): executing now would leave org 2 with no site.
    {
        let mut conn = app.conn();
        diesel::sql_query(format!(
            "UPDATE entities SET state = 'deleted' WHERE id IN ('{}', '{}', '{}')",
            site(4),
            crate::helpers::inst(7),
            crate::helpers::inst(8)
        ))
        .execute(&mut *conn)
        .unwrap();
    }
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "not_approved", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("back to draft")
            && msg.contains("would leave 1 Customer organisation with no active Cloud site"),
        "{msg}"
    );
    let c = app.change(id).await;
    assert_eq!(c["state"], "draft");
    assert_eq!(c["fingerprint"], fp.as_str(), "same list, same fingerprint");
    assert_eq!(guard(&c, "min_remaining")["passed"], false);
    assert_eq!(app.entity(&site(5)).await["state"], "active");
}

async fn a_destructive_change_may_not_reach_everything(app: TestApp) {
    app.load_fixture().await;
    let c = app
        .create(
            "ana",
            "uninstall_app",
            json!({"within": {"kind": "org", "ids": [ORG1, ORG2]}}),
        )
        .await;
    let g = guard(&c, "selects_everything");
    assert_eq!(g["passed"], false);
    assert_eq!((&g["measured"], &g["population"]), (&json!(2), &json!(2)));
    assert!(g["text"]
        .as_str()
        .unwrap()
        .starts_with("`within` covers every Customer organisation (2 of 2)"));
    // A `where` over the whole kind, even when it matches little.
    let c = app
        .create("ana", "uninstall_app", json!({"where": {"app": "insight"}}))
        .await;
    assert_eq!(guard(&c, "selects_everything")["passed"], false, "{c}");
    // IDs named one by one are never "everything".
    let c = app
        .create("ana", "uninstall_app", json!({"ids": [inst(1), inst(7)]}))
        .await;
    assert_eq!(guard(&c, "selects_everything")["passed"], true, "{c}");
    // One organisation of two is fine; a non-destructive operation is never asked.
    let c = app
        .create(
            "ana",
            "uninstall_app",
            json!({"within": {"kind": "org", "ids": [ORG1]}}),
        )
        .await;
    assert_eq!(guard(&c, "selects_everything")["passed"], true);
    assert!(c["errors"].as_array().unwrap().is_empty(), "{c}");
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            json!({"title": "t", "rationale": "r", "requesting_team": "app-owners",
                   "operation": "set_app_version", "params": {"version": "2.0.0"},
                   "targets": {"within": {"kind": "org", "ids": [ORG1, ORG2]}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v["summary"]["guards"].is_null(), "{v}");
    assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");
}

/// An operation with a risk tier above 2 targets: one more implementer sign-off.
const TIERED: &str = r#"

[operations.uninstall_tiered]
label = "Uninstall apps (tiered)"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
requested_by = ["app-owners"]
signoffs = { requester = 1, implementer = 1 }

[[operations.uninstall_tiered.tiers]]
above_targets = 2
signoffs = { requester = 1, implementer = 2 }
"#;

async fn a_larger_change_needs_its_risk_tier(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    std::fs::write(&path, format!("{EXAMPLE_SCHEMA}{TIERED}")).unwrap();
    let app = spawn_app_with(backend, |c| c.schema_path = Some(path.clone())).await;
    app.load_fixture().await;
    let tier = "tier 1 (above 2 targets): 1 requester and 2 implementer sign-offs";
    let (id, fp) = app
        .submitted(
            "ana",
            "uninstall_tiered",
            json!({"ids": [inst(1), inst(2), inst(3)]}),
        )
        .await;
    let c = app.change(id).await;
    assert_eq!(c["tier"], tier, "{c}");
    assert_eq!(c["policy"], json!({"requester": 1, "implementer": 2}));
    // The queue and the list say it too.
    let (_, q) = app.get("/api/v1/queue", "eli").await;
    let item = q["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("not queued: {q}"))
        .clone();
    assert_eq!(item["tier"], tier);
    assert_eq!(item["missing_implementer"], 2);
    // One requester and one implementer are not enough any more.
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(id, "carla", "implementer", &fp, Some(3)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "awaiting_signoff", "{v}");
    let b = sign_in(&app, "eli").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(page.contains(&format!("Risk {tier}")), "{page}");
    let (s, v) = app.sign(id, "dev", "implementer", &fp, Some(3)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    // Two targets are below the tier: the operation's own policy again.
    let (id2, _) = app
        .submitted(
            "ana",
            "uninstall_tiered",
            json!({"ids": [inst(5), inst(6)]}),
        )
        .await;
    let c = app.change(id2).await;
    assert!(c["tier"].is_null(), "{c}");
    assert_eq!(c["policy"], json!({"requester": 1, "implementer": 1}));
}

async fn the_undo_plan_is_shown_and_an_irreversible_change_needs_one_more(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1), inst(2)]}))
        .await;
    let c = app.change(id).await;
    let undo = "Fully reversible for 30 days after execution (retention): one rollback restores all 2 App installations";
    assert_eq!(c["summary"]["undo"]["text"], undo, "{}", c["summary"]);
    assert_eq!(c["summary"]["undo"]["reversible"], true);
    assert!(c["irreversible"].is_null());
    let b = sign_in(&app, "carla").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(
        page.contains(&format!(r#"<p class="undo-ok" id="undo-plan">{undo}</p>"#)),
        "{page}"
    );
    // The sign form repeats it next to the typed count.
    assert!(
        page.contains(&format!(
            r#"<p class="small undo-ok" id="sign-undo-implementer">{undo}.</p>"#
        )),
        "{page}"
    );
    app.approve(id, &fp).await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    // Purging what was deleted cannot be undone: the schema's 2 implementers, plus one.
    let mut conn = app.conn();
    diesel::sql_query(
        "UPDATE entities SET purge_after = '2000-01-01 00:00:00' WHERE state = 'deleted'",
    )
    .execute(&mut *conn)
    .unwrap();
    drop(conn);
    let (pid, pfp) = app
        .submitted("ana", "purge_app", json!({"ids": [inst(1), inst(2)]}))
        .await;
    let c = app.change(pid).await;
    assert_eq!(
        c["summary"]["undo"]["reversible"], false,
        "{}",
        c["summary"]
    );
    assert_eq!(c["policy"], json!({"requester": 1, "implementer": 3}));
    assert_eq!(
        c["irreversible"],
        "1 more implementer sign-off because no rollback can undo it"
    );
    let (_, page) = b.get(&format!("/changes/CHG-{pid}")).await;
    assert!(page.contains(r#"<p class="undo-irreversible" id="undo-plan">Irreversible: purging erases all 2 App installations permanently"#), "{page}");
    assert!(
        page.contains("Irreversible: 1 more implementer sign-off because no rollback can undo it."),
        "{page}"
    );
    for who in ["carla", "dev"] {
        let (s, v) = app.sign(pid, who, "implementer", &pfp, Some(2)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["state"], "awaiting_signoff", "{v}");
    }
    let (s, v) = app.sign(pid, "ben", "requester", &pfp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["state"], "awaiting_signoff",
        "two implementers are not enough: {v}"
    );
    let (s, v) = app.sign(pid, "eli", "implementer", &pfp, Some(2)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
}

both_backends!(
    the_undo_plan_is_shown_and_an_irreversible_change_needs_one_more,
    min_remaining_refuses_the_last_site_of_a_customer,
    a_guard_is_checked_again_at_the_execute_gate,
    a_destructive_change_may_not_reach_everything,
);
both_backends!(backend: a_larger_change_needs_its_risk_tier);

/// An operation that may reach everything: such a change needs its strictest tier.
const EVERYWHERE: &str = r#"

[operations.uninstall_everywhere]
label = "Uninstall apps everywhere"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
requested_by = ["app-owners"]
signoffs = { requester = 1, implementer = 1 }
allow_everything = true

[[operations.uninstall_everywhere.tiers]]
above_targets = 1000
signoffs = { requester = 1, implementer = 2 }
"#;

async fn a_change_over_everything_needs_the_strictest_tier(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    std::fs::write(&path, format!("{EXAMPLE_SCHEMA}{EVERYWHERE}")).unwrap();
    let app = spawn_app_with(backend, |c| c.schema_path = Some(path.clone())).await;
    app.load_fixture().await;
    let tier = "tier 1 (the strictest, because the change selects everything): 1 requester and 2 implementer sign-offs";
    let (id, fp) = app
        .submitted(
            "ana",
            "uninstall_everywhere",
            json!({"within": {"kind": "org", "ids": [ORG1, ORG2]}}),
        )
        .await;
    let c = app.change(id).await;
    let g = guard(&c, "selects_everything");
    assert_eq!(
        (&g["passed"], &g["allowed"]),
        (&json!(true), &json!(true)),
        "{g}"
    );
    assert_eq!(c["tier"], tier, "{c}");
    assert_eq!(c["policy"], json!({"requester": 1, "implementer": 2}));
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(id, "carla", "implementer", &fp, Some(8)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["state"], "awaiting_signoff",
        "8 targets, yet the strictest tier: {v}"
    );
    let (s, v) = app.sign(id, "dev", "implementer", &fp, Some(8)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    // One organisation of two is an ordinary change of the operation.
    let c = app
        .create(
            "ana",
            "uninstall_everywhere",
            json!({"within": {"kind": "org", "ids": [ORG1]}}),
        )
        .await;
    assert!(c["tier"].is_null(), "{c}");
    assert_eq!(c["policy"], json!({"requester": 1, "implementer": 1}));
}

both_backends!(backend: a_change_over_everything_needs_the_strictest_tier);
