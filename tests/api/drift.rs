//! Execution control, part two (issue #13), on both backends: the drift check before each
//! wave (targets deleted, moved or changed since approval are held back and named; skip
//! them or abort), retrying failed targets (a new attempt with a new idempotency key, on
//! a real loopback receiver), two changes sharing targets never executing at once, and
//! scheduled starts (at the window's opening; queued behind a conflicting change; refused
//! and mailed when the gate says no).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use countersign::config::Secret;
use countersign::db::schema::entities;
use countersign::domain::schema::EXAMPLE_SCHEMA;

use crate::both_backends;
use crate::helpers::{inst, site, spawn_app_with, Backend, TestApp};

/// An app with the example schema and these extra lines.
pub(crate) async fn app_with(
    backend: Backend,
    extra: &str,
    secret: bool,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    std::fs::write(&path, format!("{EXAMPLE_SCHEMA}\n\n{extra}")).unwrap();
    let app = spawn_app_with(backend, |c| {
        c.schema_path = Some(path.clone());
        if secret {
            c.secrets
                .insert("CS_TEST_HOOK_SECRET".into(), Secret::new("drift-secret"));
        }
    })
    .await;
    app.load_fixture().await;
    (app, dir)
}

const GATED: &str = "[operations.uninstall_gated]\nlabel = \"Uninstall apps, wave by wave\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nrequested_by = [\"app-owners\"]\nsignoffs = { requester = 1, implementer = 1 }\nwaves = [1]\npause_after_waves = [1]\n";

async fn post(app: &TestApp, id: i64, what: &str, who: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/api/v1/changes/{id}/{what}"), who, body)
        .await
}

async fn actions(app: &TestApp, id: i64) -> Vec<String> {
    let (_, events) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

fn allowed(c: &Value) -> Vec<String> {
    c["allowed_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

async fn the_inventory_changes_between_waves(backend: Backend) {
    let (app, _dir) = app_with(backend, GATED, false).await;
    // Wave 1: inst 1; wave 2: inst 2, 3, 5, 6.
    let ids = json!({"ids": [inst(1), inst(2), inst(3), inst(5), inst(6)]});
    let (id, fp) = app.approved("uninstall_gated", ids).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["paused"]).await;
    // Between the waves: an import changes inst 2's attributes and moves inst 3 to
    // another customer's site; inst 6 is deleted by hand.
    let lines = vec![
        json!({"kind": "app_install", "id": inst(2), "parent": site(1), "name": "ledger on site1", "attrs": {"app": "ledger", "version": "2.0.0"}}).to_string(),
        json!({"kind": "app_install", "id": inst(3), "parent": site(4), "name": "insight on site2", "attrs": {"app": "insight", "version": "1.0.0"}}).to_string(),
    ];
    let (s, v) = app.import("carla", &lines, false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    {
        let mut conn = app.conn();
        diesel::update(entities::table.find(inst(6)))
            .set(entities::state.eq("deleted"))
            .execute(&mut *conn)
            .unwrap();
    }
    let (s, v) = post(&app, id, "continue", "carla", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = app.wait_execution(id, &["halted"]).await;
    let reason = v["halt_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "drift before wave 2 of 2: 3 of 4 target(s) are no longer what was signed"
        ),
        "{reason}"
    );
    assert_eq!((&v["drifted"], &v["done"]), (&json!(3), &json!(1)), "{v}");
    assert_eq!(v["waves"][1]["drifted"], 3, "{v}");
    let whys: HashMap<String, String> = v["drifted_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        whys[&inst(2)].contains("changed since it was signed: attributes by import"),
        "{whys:?}"
    );
    assert!(
        whys[&inst(3)].contains(&format!(
            "is now under {}, it was under {}",
            site(4),
            site(2)
        )),
        "{whys:?}"
    );
    assert!(
        whys[&inst(6)].contains("is deleted now; it was active"),
        "{whys:?}"
    );
    // Nothing drifted ran; the one that did not drift has not run either (the wave waits).
    assert_eq!(app.entity(&inst(2)).await["state"], "active");
    assert_eq!(app.entity(&inst(5)).await["state"], "active");
    // The change page and the targets API show them.
    let (_, t) = app
        .get(
            &format!("/api/v1/changes/{id}/targets?status=drifted"),
            "ana",
        )
        .await;
    assert_eq!(t["total"], 3, "{t}");
    let c = app.change(id).await;
    assert!(
        !allowed(&c).contains(&"skip_drifted".to_string()),
        "ana: {c}"
    );
    let (_, c) = app.get(&format!("/api/v1/changes/{id}"), "carla").await;
    assert!(allowed(&c).contains(&"skip_drifted".to_string()), "{c}");
    // A resume without skipping checks them again: still drifted, halted again.
    let (s, v) = post(&app, id, "resume", "carla", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = app.wait_execution(id, &["halted"]).await;
    assert_eq!(v["drifted"], 3, "{v}");
    // Only the implementers skip them, with a reason kept on each.
    let (s, v) = post(&app, id, "skip-drifted", "ana", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = post(
        &app,
        id,
        "skip-drifted",
        "carla",
        json!({"reason": "re-request those"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["drifted"], &v["skipped"]),
        (&json!(0), &json!(3)),
        "{v}"
    );
    let skipped = v["skipped_items"][0]["error"].as_str().unwrap();
    assert!(
        skipped.starts_with("skipped by carla@ops.example: re-request those ("),
        "{skipped}"
    );
    let (s, v) = post(&app, id, "skip-drifted", "carla", json!({})).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::CONFLICT, &json!("execution_state")),
        "{v}"
    );
    let (s, v) = post(&app, id, "resume", "carla", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!((&v["done"], &v["skipped"]), (&json!(2), &json!(3)), "{v}");
    assert_eq!(app.entity(&inst(5)).await["state"], "deleted");
    assert_eq!(app.entity(&inst(2)).await["state"], "active");
    assert!(actions(&app, id)
        .await
        .iter()
        .any(|a| a == "drifted_skipped"));
}

/// A receiver that refuses inst 3 (422) unless the key is a retry's; counts keys.
pub(crate) async fn refusing_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let k2 = keys.clone();
    let server = HttpServer::new(move || {
        let keys = k2.clone();
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Bytes| {
                let keys = keys.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let key = v["idempotency_key"].as_str().unwrap().to_string();
                    let id = v["target"]["id"].as_str().unwrap().to_string();
                    keys.lock().unwrap().push(key.clone());
                    if id == inst(3) && !key.ends_with("-r1") {
                        return HttpResponse::UnprocessableEntity().body("vendor says no");
                    }
                    HttpResponse::Ok().json(json!({"id": id, "kind": "app_install"}))
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), keys)
}

/// `deprovision_app` calling `endpoint`, tolerating a failed target per wave.
pub(crate) fn deprovision(endpoint: &str) -> String {
    format!("[operations.deprovision_app]\nlabel = \"Deprovision at the app vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nsignoffs = {{ requester = 1, implementer = 1 }}\nendpoint = \"{endpoint}\"\nsecret_env = \"CS_TEST_HOOK_SECRET\"\ntimeout_ms = 2000\nwaves = [1]\nfailure_threshold = 0.6\n")
}

async fn failed_targets_are_retried_with_a_new_key(backend: Backend) {
    let (endpoint, keys) = refusing_receiver().await;
    let (app, _dir) = app_with(backend, &deprovision(&endpoint), true).await;
    let ids = json!({"ids": [inst(1), inst(2), inst(3)]});
    let (id, fp) = app.approved("deprovision_app", ids).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(id, &["partially_failed"]).await;
    assert_eq!((&v["done"], &v["failed"]), (&json!(2), &json!(1)), "{v}");
    let (_, c) = app.get(&format!("/api/v1/changes/{id}"), "carla").await;
    assert!(allowed(&c).contains(&"retry_failed".to_string()), "{c}");
    let (s, v) = post(&app, id, "retry-failed", "ana", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = post(
        &app,
        id,
        "retry-failed",
        "carla",
        json!({"reason": "vendor fixed it"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!((&v["done"], &v["failed"]), (&json!(3), &json!(0)), "{v}");
    assert_eq!(app.change(id).await["state"], "completed");
    // The retried target: a second attempt on the same item, under a new key; the others
    // were not sent again.
    let (_, items) = app
        .get(&format!("/api/v1/changes/{id}/execution/items"), "ana")
        .await;
    let third = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == inst(3))
        .cloned()
        .unwrap();
    assert_eq!(third["attempts"], 2, "{third}");
    let keys = keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with("-r1")), "{keys:?}");
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "no key sent twice: {keys:?}");
    let a = actions(&app, id).await;
    assert!(a.iter().any(|x| x == "failed_retried"), "{a:?}");
    assert_eq!(
        a.iter().filter(|x| *x == "execution_finished").count(),
        2,
        "{a:?}"
    );
    // Nothing failed any more: nothing to retry.
    let (s, v) = post(&app, id, "retry-failed", "carla", json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

/// A retry of a halted execution whose drift check held targets back checks them again:
/// they are neither run nor left behind as the execution completes.
async fn a_retry_checks_drifted_targets_again(backend: Backend) {
    let (endpoint, _keys) = refusing_receiver().await;
    let op = deprovision(&endpoint).replace("failure_threshold = 0.6\n", "");
    let (app, _dir) = app_with(backend, &op, true).await;
    // Wave 1: inst 3 (refused until retried: the wave halts); wave 2: inst 5 and 6.
    let ids = json!({"ids": [inst(3), inst(5), inst(6)]});
    let (id, fp) = app.approved("deprovision_app", ids).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(id, &["halted"]).await;
    assert_eq!(v["failed"], 1, "{v}");
    // Before wave 2 runs, inst 5 changes.
    let line = json!({"kind": "app_install", "id": inst(5), "parent": site(3), "name": "insight on site3", "attrs": {"app": "insight", "version": "9.9.9"}}).to_string();
    let (s, v) = app.import("carla", &[line], false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post(&app, id, "resume", "carla", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = app.wait_execution(id, &["halted"]).await;
    assert_eq!(v["drifted"], 1, "{v}");
    // Retry the failed one: it runs; the drifted one is checked again and holds the wave.
    let (s, v) = post(&app, id, "retry-failed", "carla", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = app.wait_execution(id, &["halted", "completed"]).await;
    assert_eq!(v["state"], "halted", "{v}");
    assert_eq!((&v["drifted"], &v["failed"]), (&json!(1), &json!(0)), "{v}");
    assert_eq!(v["drifted_items"][0]["id"], inst(5), "{v}");
}

async fn changes_sharing_targets_never_execute_at_once(backend: Backend) {
    let (app, _dir) = app_with(backend, GATED, false).await;
    let (first, fp1) = app
        .approved("uninstall_gated", json!({"ids": [inst(1), inst(2)]}))
        .await;
    let (second, fp2) = app
        .approved("uninstall_app", json!({"ids": [inst(2), inst(4)]}))
        .await;
    let (s, v) = app.execute(first, &fp1).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(first, &["paused"]).await;
    let (s, v) = app.execute(second, &fp2).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "conflicting_execution", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("CHG-{first} (1 shared target(s))")),
        "{msg}"
    );
    assert_eq!(
        v["error"]["details"]["changes"][0]["change_id"], first,
        "{v}"
    );
    assert_eq!(app.change(second).await["state"], "approved");
    // Queue it: it starts by itself once the first finishes.
    let (s, v) = post(
        &app,
        second,
        "schedule",
        "carla",
        json!({"fingerprint": fp2, "at": "now"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["wait_for_conflicts"], true, "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, c) = app.get(&format!("/api/v1/changes/{second}"), "carla").await;
    assert_eq!(c["state"], "approved", "{c}");
    assert_eq!(
        c["scheduled_start"]["waiting_on"],
        format!("CHG-{first}"),
        "{c}"
    );
    assert!(allowed(&c).contains(&"unschedule".to_string()), "{c}");
    // The first is aborted after its first wave (inst 2 untouched): the second starts.
    let (s, v) = post(
        &app,
        first,
        "abort",
        "carla",
        json!({"reason": "the other first"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = until_completed(&app, second).await;
    assert_eq!(v["done"], 2, "{v}");
    assert_eq!(app.entity(&inst(2)).await["state"], "deleted");
    let a = actions(&app, second).await;
    assert!(a.iter().any(|x| x == "start_scheduled"), "{a:?}");
    let (s, _) = app
        .get(&format!("/api/v1/changes/{second}/schedule"), "ana")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the start is spent");
}

/// Poll until the change has an execution that completed (20 s at most).
async fn until_completed(app: &TestApp, id: i64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = app
            .get(&format!("/api/v1/changes/{id}/execution"), "ana")
            .await;
        if s == StatusCode::OK && v["state"] == "completed" {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{s} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two overlapping changes executed at the same moment, many times over: exactly one
/// starts each round (the gate's conflict check is serialised until commit).
async fn overlapping_gates_at_once_start_one(backend: Backend) {
    let (app, _dir) = app_with(backend, GATED, false).await;
    for round in 0..4u32 {
        // The shared target sorts last: it is in wave 2, after the pause, so a fresh
        // resolution of the other change still finds it.
        let [one, two, shared] = [0, 1, 2].map(|k| inst(200 + 3 * round + k));
        let lines: Vec<String> = [&shared, &one, &two].iter().map(|id| json!({"kind": "app_install", "id": id, "parent": site(1), "name": format!("app {id}"), "attrs": {"app": "insight", "version": "1.0.0"}}).to_string()).collect();
        let (s, v) = app.import("carla", &lines, false).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // Each pauses after its first wave, holding both its targets.
        let (a, fa) = app
            .approved("uninstall_gated", json!({"ids": [shared.clone(), one]}))
            .await;
        let (b, fb) = app
            .approved("uninstall_gated", json!({"ids": [shared.clone(), two]}))
            .await;
        let (ra, rb) = tokio::join!(app.execute(a, &fa), app.execute(b, &fb));
        let started = [&ra, &rb]
            .iter()
            .filter(|(s, _)| *s == StatusCode::ACCEPTED)
            .count();
        assert_eq!(started, 1, "round {round}: {ra:?} {rb:?}");
        let refused = if ra.0 == StatusCode::ACCEPTED {
            &rb
        } else {
            &ra
        };
        assert_eq!(
            refused.1["error"]["code"], "conflicting_execution",
            "{refused:?}"
        );
        let runner = if ra.0 == StatusCode::ACCEPTED { a } else { b };
        app.wait_execution(runner, &["paused"]).await;
        let (s, v) = post(&app, runner, "abort", "carla", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

async fn a_change_starts_at_its_window_opening(backend: Backend) {
    let (app, _dir) = app_with(backend, "", false).await;
    let opens = chrono::Utc::now() + chrono::Duration::seconds(5);
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "at the window", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1)]}, "not_before": opens.to_rfc3339(), "submit": true})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(id, &fp).await;
    // Bad input: a clear 422 each.
    for (body, want) in [
        (json!({"fingerprint": fp, "at": "soon"}), "not `soon`"),
        (
            json!({"fingerprint": fp, "at": "2020-01-01T00:00:00Z"}),
            "in the past",
        ),
    ] {
        let (s, v) = post(&app, id, "schedule", "carla", body).await;
        assert_eq!(
            (s, &v["error"]["code"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_start")),
            "{v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{v}"
        );
    }
    let (s, v) = post(
        &app,
        id,
        "schedule",
        "carla",
        json!({"fingerprint": "sha256:00"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = post(&app, id, "schedule", "ana", json!({"fingerprint": fp})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = post(&app, id, "schedule", "carla", json!({"fingerprint": fp})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = post(&app, id, "schedule", "carla", json!({"fingerprint": fp})).await;
    assert_eq!(s, StatusCode::CONFLICT, "scheduled once: {v}");
    assert_eq!(app.change(id).await["state"], "approved");
    let v = until_completed(&app, id).await;
    let started = chrono::DateTime::parse_from_rfc3339(&format!(
        "{}Z",
        v["started_at"].as_str().unwrap().trim_end_matches('Z')
    ))
    .unwrap();
    assert!(started >= opens - chrono::Duration::milliseconds(1), "{v}");
    assert_eq!(app.entity(&inst(1)).await["state"], "deleted");
}

async fn a_due_start_the_gate_refuses_runs_nothing_and_tells_why(backend: Backend) {
    let (app, _dir) = app_with(backend, "", false).await;
    let opens = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "refused later", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"within": {"kind": "site", "ids": [site(1)]}}, "not_before": opens.to_rfc3339(), "submit": true})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(id, &fp).await;
    let (s, v) = post(&app, id, "schedule", "carla", json!({"fingerprint": fp})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Before it is due the inventory grows: the fresh resolution at the gate differs.
    let line = json!({"kind": "app_install", "id": inst(77), "parent": site(1), "name": "new", "attrs": {"app": "insight", "version": "1.0.0"}}).to_string();
    let (s, v) = app.import("carla", &[line], false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = actions(&app, id).await;
        if a.iter().any(|x| x == "start_unscheduled") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{a:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = app.change(id).await;
    assert_eq!(c["state"], "awaiting_signoff", "{c}");
    assert!(c["scheduled_start"].is_null(), "{c}");
    let (s, _) = app
        .get(&format!("/api/v1/changes/{id}/execution"), "ana")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing ran");
    assert_eq!(app.entity(&inst(1)).await["state"], "active");
    // Recorded as refused (the event the implementers are mailed about).
    let (_, events) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    let ev = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "start_unscheduled")
        .cloned()
        .unwrap();
    let reason = ev["detail"]["reason"].as_str().unwrap();
    assert!(reason.contains("the inventory changed"), "{reason}");
    assert_eq!(ev["detail"]["refused"], true);
}

/// The command line schedules and calls off a start.
async fn the_command_line_schedules_a_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    std::fs::write(&path, EXAMPLE_SCHEMA).unwrap();
    let app = spawn_app_with(backend, |c| c.schema_path = Some(path.clone())).await;
    app.load_fixture().await;
    let opens = chrono::Utc::now() + chrono::Duration::hours(2);
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "later", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1)]}, "not_before": opens.to_rfc3339(), "submit": true})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    app.approve(id, v["fingerprint"].as_str().unwrap()).await;
    let (db, schema) = (
        app.database_url.clone(),
        path.to_string_lossy().into_owned(),
    );
    let run = move |args: Vec<String>| {
        let (db, schema) = (db.clone(), schema.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
                .args(&args)
                .env("DATABASE_URL", db)
                .env("COUNTERSIGN_SCHEMA", schema)
                .env("RUST_LOG", "warn")
                .env("COUNTERSIGN_MAILER", "false")
                .output()
                .unwrap()
        })
    };
    let chg = format!("CHG-{id}");
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let o = run(args(&[
        "change",
        "schedule",
        &chg,
        "--as",
        "ana@req.example",
    ]))
    .await
    .unwrap();
    assert!(!o.status.success(), "a requester does not schedule it");
    let o = run(args(&[
        "change",
        "schedule",
        &chg,
        "--as",
        "carla@ops.example",
    ]))
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains(&format!("{chg} starts by itself at")), "{out}");
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/schedule"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scheduled_by"], "carla@ops.example", "{v}");
    let o = run(args(&[
        "change",
        "unschedule",
        &chg,
        "--as",
        "carla@ops.example",
        "--reason",
        "moved",
    ]))
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (s, _) = app
        .get(&format!("/api/v1/changes/{id}/schedule"), "ana")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let a = actions(&app, id).await;
    assert!(a.iter().any(|x| x == "start_unscheduled"), "{a:?}");
}

both_backends!(backend:
    the_command_line_schedules_a_start,
    the_inventory_changes_between_waves,
    failed_targets_are_retried_with_a_new_key,
    a_retry_checks_drifted_targets_again,
    changes_sharing_targets_never_execute_at_once,
    overlapping_gates_at_once_start_one,
    a_change_starts_at_its_window_opening,
    a_due_start_the_gate_refuses_runs_nothing_and_tells_why,
);
