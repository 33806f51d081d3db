//! The execute gate, the runner (waves, final states), soft delete with versions, and
//! rollback, through the API on both backends.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, site, TestApp};

const INSIGHT: [u32; 4] = [1, 3, 5, 7];

async fn execute_gate_and_waves(app: TestApp) {
    app.load_fixture().await;
    let ids: Vec<String> = INSIGHT.iter().map(|n| inst(*n)).collect();
    let (id, fp) = app.approved("uninstall_app", json!({"ids": ids})).await;
    let path = format!("/api/v1/changes/{id}/execute");
    // Not the signed fingerprint.
    let (s, v) = app
        .post(&path, "carla", json!({"fingerprint": "sha256:abc"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "fingerprint_mismatch");
    assert_eq!(v["error"]["details"]["current_fingerprint"], fp);
    // Not in the implementing team.
    let (s, v) = app.post(&path, "ana", json!({"fingerprint": fp})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "not_implementer");
    // Nothing ran yet.
    assert_eq!(app.entity(&inst(1)).await["state"], "active");

    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["total"], 4);
    let sizes: Vec<u64> = v["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![1, 1, 2], "canary, 10 %, the rest");
    // Executing twice is refused.
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 4);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["pending"], 0);
    assert_eq!(v["change_state"], "completed");
    for w in v["waves"].as_array().unwrap() {
        assert_eq!(w["done"], w["size"], "{w}");
    }
    // The targets are soft-deleted by this change, with a version row; nothing else moved.
    for n in 1..=8u32 {
        let e = app.entity(&inst(n)).await;
        if INSIGHT.contains(&n) {
            assert_eq!(e["state"], "deleted", "{e}");
            assert_eq!(e["deleted_by"], format!("CHG-{id}"));
            assert!(e["purge_after"].is_string());
            assert_eq!(e["versions"][0]["change"], format!("CHG-{id}"));
            assert_eq!(e["versions"][0]["before"]["state"], "active");
            assert_eq!(e["versions"][0]["after"]["state"], "deleted");
            assert_eq!(e["version"], 2);
        } else {
            assert_eq!(e["state"], "active", "{e}");
            assert_eq!(e["version"], 1);
        }
    }
    assert_eq!(app.entity(&site(1)).await["state"], "active");
    // The audit trail has the execution.
    let (_, ev) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    let actions: Vec<String> = ev["events"]
        .as_array()
        .or(ev.as_array())
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in ["execution_started", "wave_completed", "execution_finished"] {
        assert!(actions.iter().any(|x| x == a), "{a} missing in {actions:?}");
    }
}

async fn inventory_drift_returns_to_signoff(app: TestApp) {
    app.load_fixture().await;
    let sel =
        json!({"within": {"kind": "site", "ids": [site(1), site(2)]}, "where": {"app": "insight"}});
    let (id, fp) = app.approved("uninstall_app", sel).await;
    // A new insight installation appears on site 1 after the sign-offs.
    let line = json!({"kind": "app_install", "id": inst(99), "parent": site(1), "name": "insight again", "attrs": {"app": "insight", "version": "1.0.0"}}).to_string();
    let (s, v) = app.import("carla", &[line], false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "stale_fingerprint");
    assert_eq!(v["error"]["details"]["added"], 1);
    assert_eq!(v["error"]["details"]["added_sample"][0], inst(99));
    let c = app.change(id).await;
    assert_eq!(c["state"], "awaiting_signoff");
    assert!(c["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["stale"] == true));
    assert_ne!(c["fingerprint"], fp);
    // Nothing was touched.
    assert_eq!(app.entity(&inst(1)).await["state"], "active");
    // Sign the new list and it runs.
    let fp2 = c["fingerprint"].as_str().unwrap().to_string();
    app.approve(id, &fp2).await;
    let (s, v) = app.execute(id, &fp2).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 3);
}

async fn window_is_enforced(app: TestApp) {
    app.load_fixture().await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "later", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1)]}, "not_before": later})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(id, &fp).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "outside_window");
    assert_eq!(app.change(id).await["state"], "approved");
}

async fn concurrent_execute_starts_once(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(2), inst(4)]}))
        .await;
    let mut calls = Vec::new();
    for _ in 0..6 {
        let a = app.address.clone();
        let token = app.token("carla").to_string();
        let fp = fp.clone();
        calls.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{a}/api/v1/changes/{id}/execute"))
                .bearer_auth(token)
                .json(&json!({"fingerprint": fp}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut accepted = 0;
    for c in calls {
        match c.await.unwrap() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted, 1, "exactly one execute call starts the execution");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 2);
    let (_, items) = app
        .get(&format!("/api/v1/changes/{id}/execution/items"), "ana")
        .await;
    assert_eq!(items["items"].as_array().unwrap().len(), 2);
    assert_eq!(items["total"], 2);
    // Paged and filtered.
    let (_, page) = app
        .get(
            &format!("/api/v1/changes/{id}/execution/items?status=done&limit=1"),
            "ana",
        )
        .await;
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_offset"], 1);
    let (s, v) = app
        .get(
            &format!("/api/v1/changes/{id}/execution/items?status=nope"),
            "ana",
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "invalid_status");
}

async fn rollback_restores_exactly_what_ran(app: TestApp) {
    app.load_fixture().await;
    let ids: Vec<String> = INSIGHT.iter().map(|n| inst(*n)).collect();
    let (id, fp) = app.approved("uninstall_app", json!({"ids": ids})).await;
    // Not executed yet: no rollback.
    let (s, _) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    // Someone restores inst(7) by hand meanwhile: the rollback leaves it out.
    let (rid, rfp) = app.approved("restore_app", json!({"ids": [inst(7)]})).await;
    app.execute(rid, &rfp).await;
    app.wait_execution(rid, &["completed"]).await;
    assert_eq!(app.entity(&inst(7)).await["state"], "active");

    let (s, rb) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb_id = rb["id"].as_i64().unwrap();
    assert_eq!(rb["state"], "awaiting_signoff");
    assert_eq!(rb["rollback_of"], format!("CHG-{id}"));
    assert_eq!(rb["summary"]["targets"], 3);
    assert_eq!(rb["operation"]["effect"], "restore");
    assert!(rb["summary"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("no longer as it left them"));
    assert_eq!(
        app.change(id).await["rolled_back_by"],
        format!("CHG-{rb_id}")
    );
    // A second rollback of the same change is refused while this one is open.
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "already_rolled_back");
    // Targets cannot be edited.
    let (s, v) = app
        .patch(
            &format!("/api/v1/changes/{rb_id}"),
            "ana",
            json!({"targets": {"ids": [inst(2)]}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let rfp = rb["fingerprint"].as_str().unwrap().to_string();
    app.approve(rb_id, &rfp).await;
    let (s, v) = app.execute(rb_id, &rfp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(rb_id, &["completed"]).await;
    assert_eq!(v["done"], 3);
    for n in INSIGHT {
        let e = app.entity(&inst(n)).await;
        assert_eq!(e["state"], "active", "{e}");
        assert_eq!(e["attrs"]["app"], "insight");
        assert_eq!(e["attrs"]["version"], "1.0.0");
        assert!(e.get("deleted_by").is_none());
    }
    assert_eq!(
        app.entity(&inst(1)).await["versions"][0]["change"],
        format!("CHG-{rb_id}")
    );
}

async fn set_attributes_and_its_rollback(app: TestApp) {
    app.load_fixture().await;
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "bump", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.4.1"}, "targets": {"ids": [inst(2), inst(4)]}})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (_, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(id, &fp).await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    let e = app.entity(&inst(2)).await;
    assert_eq!(e["attrs"]["version"], "2.4.1");
    assert_eq!(e["attrs"]["app"], "ledger");
    assert_eq!(e["versions"][0]["before"]["attrs"]["version"], "1.0.0");

    let (s, rb) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb_id = rb["id"].as_i64().unwrap();
    let rfp = rb["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(rb["summary"]["targets"], 2);
    // ben authored it: ana signs the requester side.
    let (s, v) = app.sign(rb_id, "ana", "requester", &rfp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(rb_id, "carla", "implementer", &rfp, Some(2)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved");
    app.execute(rb_id, &rfp).await;
    app.wait_execution(rb_id, &["completed"]).await;
    for n in [2, 4] {
        let e = app.entity(&inst(n)).await;
        assert_eq!(e["attrs"]["version"], "1.0.0", "{e}");
        assert_eq!(e["version"], 3);
    }
}

both_backends!(
    execute_gate_and_waves,
    inventory_drift_returns_to_signoff,
    window_is_enforced,
    concurrent_execute_starts_once,
    rollback_restores_exactly_what_ran,
    set_attributes_and_its_rollback,
);
