use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{inst, site, TestApp, ORG1, ORG2};

async fn wrong_kind_is_named_and_blocks_submission(app: TestApp) {
    app.load_fixture().await;
    // The outage: a site ID where app installations belong, plus a typo and a missing ID.
    let missing = "0b1c2d3e-0000-4000-8000-00000000ffff";
    let v = app
        .create(
            "ana",
            "uninstall_app",
            json!({"ids": [inst(1), site(2), "nonsense", missing, format!("site:{}", site(3))]}),
        )
        .await;
    assert_eq!(v["state"], "draft");
    assert_eq!(v["number"], format!("CHG-{}", v["id"]));
    assert_eq!(v["error_count"], 4);
    let errs = v["errors"].as_array().unwrap();
    let at = |line: u64| {
        errs.iter()
            .find(|e| e["line"] == line)
            .unwrap_or_else(|| panic!("no error on line {line}: {errs:?}"))
            .clone()
    };
    let e2 = at(2);
    assert_eq!(e2["code"], "wrong_kind");
    assert_eq!(e2["actual_kind"], "site");
    assert_eq!(e2["expected_kind"], "app_install");
    assert!(
        e2["message"].as_str().unwrap().starts_with(&format!("`{}` is a Cloud site (site), but Uninstall an app acts on App installations (app_install)", site(2))),
        "{e2}"
    );
    assert_eq!(at(3)["code"], "pattern_mismatch");
    assert!(at(3)["message"]
        .as_str()
        .unwrap()
        .contains("e.g. `0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d`"));
    assert_eq!(at(4)["code"], "not_found");
    assert_eq!(at(5)["code"], "wrong_kind");
    assert_eq!(v["summary"]["targets"], 1);

    let id = v["id"].as_i64().unwrap();
    let (s, r) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["error"]["code"], "resolution_errors");
    assert_eq!(r["error"]["details"]["error_count"], 4);

    // The author fixes the list: resolved again, submittable.
    let (s, r) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"targets": {"ids": [inst(1), inst(3)]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["error_count"], 0);
    assert_eq!(r["resolution_outcome"]["fingerprint_changed"], true);
    let (s, r) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "awaiting_signoff");
    // Somebody else cannot edit it.
    let (s, _) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ben",
            json!({"title": "mine now"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

async fn scoped_queries_and_summary(app: TestApp) {
    app.load_fixture().await;
    // insight inside all of org1 (two levels down) and site4 of org2.
    let v = app
        .create(
            "ana",
            "uninstall_app",
            json!({"within": {"kind": "org", "ids": [ORG1]}, "where": {"app": "insight"}}),
        )
        .await;
    assert_eq!(v["error_count"], 0, "{v}");
    let s = &v["summary"];
    assert_eq!(s["targets"], 3);
    assert_eq!(s["scopes"]["site"], 3);
    assert_eq!(s["scopes"]["org"], 1);
    assert_eq!(s["roots"], 1);
    assert_eq!(s["root_kind"], "org");
    assert_eq!(s["sample_roots"][0]["name"], "Acme Corp");
    assert_eq!(s["text"], "3 App installations on 3 Cloud sites of 1 Customer organisation; 3 App installations soft-deleted, 0 Cloud sites soft-deleted");

    // Explicit IDs and a scope together, deduplicated.
    let v = app
        .create(
            "ana",
            "uninstall_app",
            json!({"ids": [inst(7), inst(1)], "within": {"kind": "site", "ids": [site(1)]}}),
        )
        .await;
    assert_eq!(v["summary"]["targets"], 3);
    assert_eq!(v["summary"]["roots"], 2);

    // A scope of the wrong kind, a scope ID of the wrong kind, an unknown attribute.
    let v = app
        .create(
            "ana",
            "uninstall_app",
            json!({"within": {"kind": "app_install", "ids": [inst(1)]}}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], "wrong_scope_kind");
    let v = app
        .create(
            "ana",
            "uninstall_app",
            json!({"within": {"kind": "site", "ids": [ORG1, inst(2)]}}),
        )
        .await;
    let codes: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["wrong_kind", "wrong_kind"], "{v}");
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("is a Customer organisation (org), but the scope kind is Cloud site (site)"));
    assert!(v["errors"][1]["message"]
        .as_str()
        .unwrap()
        .contains("is an App installation (app_install), but the scope kind is Cloud site (site)"));
    let v = app
        .create(
            "ana",
            "uninstall_app",
            json!({"within": {"kind": "site", "ids": [site(1)]}, "where": {"colour": "red"}}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], "unknown_attribute");
    // Empty selection.
    let v = app
        .create(
            "ana",
            "uninstall_app",
            json!({"within": {"kind": "site", "ids": [site(5)]}}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], "no_targets");
}

async fn destructive_site_delete_refuses_active_children(app: TestApp) {
    app.load_fixture().await;
    let v = app
        .create("ana", "delete_site", json!({"ids": [site(1), site(5)]}))
        .await;
    assert_eq!(v["error_count"], 1, "{v}");
    assert_eq!(v["errors"][0]["code"], "has_active_children");
    assert_eq!(v["errors"][0]["line"], 1);
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("2 active App installations"));
}

async fn expectation_must_match(app: TestApp) {
    app.load_fixture().await;
    // The insight installations of both organisations, named one by one (a `within` over
    // every organisation would be refused by `selects_everything` before the expectation).
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            json!({"title": "t", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1), inst(3), inst(5), inst(7)]}, "expect": {"targets": 883, "roots": 775}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = v["id"].as_i64().unwrap();
    let (s, r) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r["error"]["code"], "expectation_mismatch");
    assert_eq!(r["error"]["details"]["expected"]["targets"], 883);
    assert_eq!(r["error"]["details"]["actual"]["targets"], 4);
    assert_eq!(r["error"]["details"]["actual"]["roots"], 2);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expected 883 targets, resolved 4"));
    let (s, _) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"expect": {"targets": 4, "roots": 2}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
}

async fn params_are_typed(app: TestApp) {
    app.load_fixture().await;
    let base = json!({"title": "v", "requesting_team": "app-owners", "operation": "set_app_version", "targets": {"ids": [inst(2)]}});
    let mut bad = base.clone();
    bad["params"] = json!({"version": "latest", "colour": 1});
    let (s, v) = app.post("/api/v1/changes", "ana", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "invalid_params");
    assert_eq!(v["error"]["details"].as_array().unwrap().len(), 2);
    let (s, v) = app.post("/api/v1/changes", "ana", base.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`version` is required"));
    let mut good = base;
    good["params"] = json!({"version": "2.4.1"});
    let (s, v) = app.post("/api/v1/changes", "ana", good).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["params"]["version"], "2.4.1");
    // Unknown operation, team not mine.
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "x", "requesting_team": "app-owners", "operation": "nuke", "targets": {"ids": []}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "unknown_operation");
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "x", "requesting_team": "platform-ops", "operation": "uninstall_app", "targets": {"ids": [inst(1)]}})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = app.post("/api/v1/changes", "ana", json!({"title": "  ", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1)]}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Recompute the fingerprint from GET …/targets as README "Fingerprint" documents.
async fn fingerprint_is_recomputable(app: TestApp) {
    app.load_fixture().await;
    let mut body = json!({"title": "v", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "3.0.0"}, "targets": {"within": {"kind": "org", "ids": [ORG1, ORG2]}}});
    let (s, v) = app.post("/api/v1/changes", "ana", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, t) = app
        .get(&format!("/api/v1/changes/{id}/targets?limit=3"), "ben")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["total"], 8);
    assert_eq!(t["targets"].as_array().unwrap().len(), 3);
    let (_, t) = app
        .get(&format!("/api/v1/changes/{id}/targets?limit=10000"), "ben")
        .await;
    let mut doc = format!(
        "countersign-fingerprint-v1\nschema {}\noperation {}\nparams {}\ntargets {}\n",
        t["schema_hash"].as_str().unwrap(),
        t["operation"].as_str().unwrap(),
        serde_json::to_string(&t["params"]).unwrap(),
        t["total"]
    );
    for x in t["targets"].as_array().unwrap() {
        doc.push_str(&format!(
            "{} {} {}\n",
            x["kind"].as_str().unwrap(),
            x["id"].as_str().unwrap(),
            x["scope_path"].as_str().unwrap()
        ));
    }
    let fp = format!("sha256:{}", hex::encode(Sha256::digest(doc.as_bytes())));
    assert_eq!(Value::String(fp), v["fingerprint"]);
    assert_eq!(v["fingerprint_short"].as_str().unwrap().len(), 12);
    assert_eq!(t["targets"][0]["scope_path"], format!("{ORG1}/{}", site(1)));

    // Search, and CSV.
    let (_, t) = app
        .get(&format!("/api/v1/changes/{id}/targets?q=site4"), "ben")
        .await;
    assert_eq!(t["total"], 2);
    let r = app
        .client
        .get(format!(
            "{}/api/v1/changes/{id}/targets?format=csv",
            app.address
        ))
        .bearer_auth(app.token("ben"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 9);
    // A set_attributes change: each target with the attribute's value now and after.
    assert!(
        csv.starts_with(
            "kind,id,scope_path,name,effect,outcome,what_happens,cascaded_from,\"version now\",\"version after\"\n\"app_install\","
        ),
        "{csv}"
    );
    assert!(csv.contains(",\"1.0.0\",\"3.0.0\"\n"), "{csv}");

    // Same selection, other params: another fingerprint.
    body["params"] = json!({"version": "3.0.1"});
    let (_, v2) = app.post("/api/v1/changes", "ana", body).await;
    assert_ne!(v["fingerprint"], v2["fingerprint"]);
}

async fn inventory_drift_makes_signoffs_stale(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app.submitted("ana", "uninstall_app", json!({"within": {"kind": "site", "ids": [site(1), site(2)]}, "where": {"app": "insight"}})).await;
    assert_eq!(
        app.sign(id, "ana", "requester", &fp, None).await.0,
        StatusCode::CREATED
    );
    let (s, v) = app.sign(id, "carla", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved");

    // Nothing changed: re-resolution keeps the approval.
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/resolve"), "carla", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "approved");
    assert_eq!(v["resolution_outcome"]["fingerprint_changed"], false);

    // A new insight installation appears on site 2: the list changed.
    let line = json!({"kind": "app_install", "id": inst(50), "parent": site(2), "name": "insight again", "attrs": {"app": "insight"}}).to_string();
    assert_eq!(app.import("carla", &[line], false).await.0, StatusCode::OK);
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/resolve"), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "awaiting_signoff");
    let o = &v["resolution_outcome"];
    assert_eq!(o["fingerprint_changed"], true);
    assert_eq!(o["added"], 1);
    assert_eq!(o["added_sample"][0], inst(50));
    assert_eq!(o["stale_signoffs"], 2);
    let sos = v["signoffs"].as_array().unwrap();
    assert_eq!(sos.len(), 2);
    assert!(sos.iter().all(|s| s["stale"] == true));
    assert_eq!(v["requester_side"]["missing"], 1);
    // The old fingerprint no longer counts.
    let (s, r) = app.sign(id, "dev", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(r["error"]["code"], "stale_fingerprint");
    assert_eq!(
        r["error"]["details"]["current_fingerprint"],
        v["fingerprint"]
    );

    // The event trail tells the story.
    let (_, ev) = app
        .get(&format!("/api/v1/changes/{id}/events"), "olga")
        .await;
    let actions: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "created",
        "submitted",
        "signed",
        "approved",
        "signoffs_stale",
        "state_changed",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

async fn reject_cancel_comment_and_transitions(app: TestApp) {
    app.load_fixture().await;
    let (id, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/reject"), "carla", json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "reason_required");
    let (s, _) = app
        .post(
            &format!("/api/v1/changes/{id}/reject"),
            "olga",
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, c) = app
        .post(
            &format!("/api/v1/changes/{id}/comments"),
            "carla",
            json!({"body": "Why these?"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, _) = app
        .post(
            &format!("/api/v1/changes/{id}/comments"),
            "olga",
            json!({"body": "drive-by"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/reject"),
            "carla",
            json!({"reason": "Wrong app"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "rejected");
    assert_eq!(v["reject_reason"], "Wrong app");
    // Illegal transitions are 409 with the current state.
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], "illegal_transition");
    assert_eq!(v["error"]["details"]["state"], "rejected");
    let (s, _) = app
        .post(&format!("/api/v1/changes/{id}/cancel"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, list) = app
        .get(&format!("/api/v1/changes/{id}/comments"), "olga")
        .await;
    assert_eq!(list["comments"][0]["body"], "Why these?");

    let v = app
        .create("ana", "uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    let id2 = v["id"].as_i64().unwrap();
    let (s, _) = app
        .post(&format!("/api/v1/changes/{id2}/cancel"), "carla", json!({}))
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the implementing team cannot cancel a request"
    );
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id2}/cancel"),
            "ben",
            json!({"reason": "dup"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "cancelled");
    let (s, _) = app
        .post(
            &format!("/api/v1/changes/{id2}/signoffs"),
            "carla",
            json!({"side": "implementer", "fingerprint": v["fingerprint"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    let (_, l) = app
        .get(
            "/api/v1/changes?state=rejected,cancelled&team=app-owners",
            "olga",
        )
        .await;
    assert_eq!(l["changes"].as_array().unwrap().len(), 2);
    let (s, _) = app.get("/api/v1/changes?state=bogus", "olga").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn conflicts_and_queue(app: TestApp) {
    app.load_fixture().await;
    let (a, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1), inst(3)]}))
        .await;
    let (b, _) = app
        .submitted("ben", "uninstall_app", json!({"ids": [inst(3), inst(5)]}))
        .await;
    let draft = app
        .create("ben", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let v = app.change(b).await;
    assert_eq!(v["conflicts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["conflicts"][0]["number"], format!("CHG-{a}"));
    assert_eq!(v["conflicts"][0]["shared_targets"], 1);
    // A draft is not a claim, but it sees the open changes it overlaps.
    let v = app.change(draft["id"].as_i64().unwrap()).await;
    assert_eq!(v["conflicts"][0]["number"], format!("CHG-{a}"));

    // The implementers' queue: oldest first, implementer side needed.
    let (_, q) = app.get("/api/v1/queue", "dev").await;
    let ids: Vec<i64> = q["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![a, b]);
    assert_eq!(q["changes"][0]["needs"][0], "implementer");
    assert_eq!(q["changes"][0]["destructive"], true);
    // Requesters see them for the requester side; outsiders see nothing.
    let (_, q) = app.get("/api/v1/queue", "ben").await;
    assert_eq!(q["changes"][0]["needs"][0], "requester");
    let (_, q) = app.get("/api/v1/queue", "olga").await;
    assert_eq!(q["changes"].as_array().unwrap().len(), 0);
}

/// `"submit": true` creates and submits from one resolution in one transaction; refused,
/// it stores nothing. Created then submitted separately, the list is resolved again.
async fn create_and_submit_resolve_once(app: TestApp) {
    app.load_fixture().await;
    let actions = |v: &serde_json::Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    };
    let body = json!({"title": "t", "requesting_team": "app-owners", "operation": "uninstall_app",
        "targets": {"within": {"kind": "org", "ids": [ORG1]}, "where": {"app": "insight"}}, "submit": true});
    let (s, v) = app.post("/api/v1/changes", "ana", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "awaiting_signoff");
    let id = v["id"].as_i64().unwrap();
    let (_, ev) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    assert_eq!(actions(&ev), ["created", "submitted"], "{ev}");

    // The two-step way resolves at submission again (time may have passed).
    let mut two = body.clone();
    two["submit"] = json!(false);
    let (_, v) = app.post("/api/v1/changes", "ana", two).await;
    let id2 = v["id"].as_i64().unwrap();
    assert_eq!(v["state"], "draft");
    app.post(&format!("/api/v1/changes/{id2}/submit"), "ana", json!({}))
        .await;
    let (_, ev) = app
        .get(&format!("/api/v1/changes/{id2}/events"), "ana")
        .await;
    assert_eq!(actions(&ev), ["created", "resolved", "submitted"], "{ev}");

    // Refused: the submission's reason, and nothing stored.
    let (_, before) = app.get("/api/v1/changes?limit=100", "ana").await;
    let mut wrong = body.clone();
    wrong["expect"] = json!({"targets": 99});
    let (s, r) = app.post("/api/v1/changes", "ana", wrong).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["error"]["code"], "expectation_mismatch");
    let mut bad = body.clone();
    bad["targets"] = json!({"ids": [site(1)]});
    let (s, r) = app.post("/api/v1/changes", "ana", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["error"]["code"], "resolution_errors");
    let (_, after) = app.get("/api/v1/changes?limit=100", "ana").await;
    assert_eq!(before, after, "a refused create-and-submit stores nothing");
}

/// A change's JSON shows each list of its selector as a count and the first IDs (a change
/// of 100,000 IDs was a 3.9 MB answer); the lists page from `…/selector`.
async fn selector_is_a_shape_and_pages(app: TestApp) {
    app.load_fixture().await;
    // 300 IDs (most not in the inventory: resolution errors do not matter here).
    let ids: Vec<String> = (1..=300u32).map(inst).collect();
    let v = app
        .create(
            "ana",
            "uninstall_app",
            json!({"ids": ids, "within": {"kind": "site", "ids": [site(1)]}}),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    let (_, v) = app.get(&format!("/api/v1/changes/{id}"), "ben").await;
    assert!(v.get("targets").is_none(), "no whole selector echoed");
    assert_eq!(v["selector"]["ids"]["count"], 300);
    assert_eq!(v["selector"]["ids"]["first"].as_array().unwrap().len(), 20);
    assert_eq!(v["selector"]["ids"]["first"][0], inst(1));
    assert_eq!(v["selector"]["within"]["kind"], "site");
    assert_eq!(
        v["selector"]["within"]["ids"],
        json!({"count": 1, "first": [site(1)]})
    );
    // Beside the resolution errors (stored up to 1000), no list of IDs is echoed whole.
    let mut rest = v.clone();
    rest.as_object_mut().unwrap().remove("errors");
    assert!(!rest.to_string().contains(&inst(300)), "{rest}");
    assert!(
        rest.to_string().len() < 20_000,
        "{} bytes",
        rest.to_string().len()
    );

    let mut got = Vec::new();
    let mut offset = Some(0);
    while let Some(o) = offset {
        let (s, p) = app
            .get(
                &format!("/api/v1/changes/{id}/selector?part=ids&offset={o}&limit=128"),
                "ben",
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["total"], 300);
        got.extend(
            p["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string()),
        );
        offset = p["next_offset"].as_u64();
    }
    assert_eq!(got, ids, "every ID, in order, across pages");
    let (_, p) = app
        .get(&format!("/api/v1/changes/{id}/selector?part=within"), "ben")
        .await;
    assert_eq!(p["kind"], "site");
    assert_eq!(p["ids"], json!([site(1)]));
    let (s, p) = app
        .get(
            &format!("/api/v1/changes/{id}/selector?part=everything"),
            "ben",
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["error"]["code"], "invalid_part");
    let (s, _) = app.get("/api/v1/changes/CHG-999/selector", "ben").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

both_backends!(
    selector_is_a_shape_and_pages,
    create_and_submit_resolve_once,
    wrong_kind_is_named_and_blocks_submission,
    scoped_queries_and_summary,
    destructive_site_delete_refuses_active_children,
    expectation_must_match,
    params_are_typed,
    fingerprint_is_recomputable,
    inventory_drift_makes_signoffs_stale,
    reject_cancel_comment_and_transitions,
    conflicts_and_queue,
);
