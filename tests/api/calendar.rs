//! The change calendar (issue #13), on both backends: freezes (hard refuse with `frozen`,
//! soft need a freeze exception), the two-person rule for every calendar act, recurring
//! windows at the gate, a lockdown pausing a running execution within one batch and its
//! lift resuming it, the calendar API, the iCalendar feed and the new-change form's warning.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use countersign::db::{users, write_tx};
use countersign::error::AppError;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};

/// An app with a second admin (`rita`), the fixture loaded, a fast runner.
async fn app(backend: Backend, batch: u64, throttle_ms: u64) -> TestApp {
    let mut app = spawn_app_with(backend, |c| {
        c.exec_batch = batch as _;
        c.exec_throttle_ms = throttle_ms;
        c.poll_ms = 20;
    })
    .await;
    let token = {
        let mut conn = app.conn();
        write_tx(&mut conn, |conn| -> Result<String, AppError> {
            let u = users::create_user(conn, "rita@admin.example", "Rita", true)?;
            Ok(users::create_token(conn, u.id, "test")?)
        })
        .unwrap()
    };
    app.tokens.insert("rita", token);
    app.load_fixture().await;
    app
}

fn at(d: Duration) -> String {
    (Utc::now() + d).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Propose as `root`, confirm as `rita`; the confirmed proposal.
async fn agreed(app: &TestApp, path: &str, body: Value) -> Value {
    let (s, p) = app.post(path, "root", body).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let id = p["id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{id}/confirm"),
            "rita",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "confirmed");
    v
}

/// A confirmed freeze; its id.
async fn freeze(app: &TestApp, body: Value) -> i64 {
    let (_, state) = app.get("/api/v1/calendar/state", "ana").await;
    let before = state["freezes"].as_array().unwrap().len();
    agreed(app, "/api/v1/calendar/freezes", body).await;
    let (_, state) = app.get("/api/v1/calendar/state", "ana").await;
    let list = state["freezes"].as_array().unwrap();
    assert_eq!(list.len(), before + 1, "{state}");
    list.last().unwrap()["id"].as_i64().unwrap()
}

/// An approved `set_app_version` change (it takes a parameter); (id, fingerprint).
async fn versioned(app: &TestApp, ids: Value) -> (i64, String) {
    let (s, v) = app
        .post("/api/v1/changes", "ana", json!({"title": "t", "rationale": "r", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": ids, "submit": true}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (id, fp) = (
        v["id"].as_i64().unwrap(),
        v["fingerprint"].as_str().unwrap().to_string(),
    );
    app.approve(id, &fp).await;
    (id, fp)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

async fn the_proposer_never_confirms_and_only_admins_take_part(app: TestApp) {
    let spec = json!({"name": "Year end", "severity": "hard", "starts_at": at(Duration::hours(-1)), "ends_at": at(Duration::days(10)), "reason": "the year closes"});
    // Only admins propose.
    let (s, v) = app
        .post("/api/v1/calendar/freezes", "carla", spec.clone())
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
    let (s, p) = app
        .post("/api/v1/calendar/freezes", "root", spec.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["state"], "pending");
    assert!(p["summary"].as_str().unwrap().contains("Year end"), "{p}");
    let id = p["id"].as_i64().unwrap();
    // Proposed is not in force: an approved change still runs.
    let (c1, fp1) = app
        .approved("uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let confirm = format!("/api/v1/calendar/proposals/{id}/confirm");
    // The proposer cannot confirm; nor can someone who is not an admin.
    let (s, v) = app.post(&confirm, "root", json!({})).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "own_proposal"),
        "{v}"
    );
    let (s, v) = app.post(&confirm, "carla", json!({})).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    assert!(st["freezes"].as_array().unwrap().is_empty(), "{st}");
    assert_eq!(st["pending"].as_array().unwrap().len(), 1);
    // A second admin confirms: in force now; once only.
    let (s, v) = app.post(&confirm, "rita", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["decided_by"], "rita@admin.example");
    let (s, v) = app.post(&confirm, "rita", json!({})).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "proposal_not_pending"),
        "{v}"
    );
    let (s, v) = app.execute(c1, &fp1).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "frozen"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("Year end"),
        "{v}"
    );
    // Withdrawn and declined proposals do nothing.
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    let fid = st["freezes"][0]["id"].as_i64().unwrap();
    let lift = format!("/api/v1/calendar/freezes/{fid}/lift");
    let (s, p) = app.post(&lift, "rita", json!({"reason": "early"})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{pid}/decline"),
            "root",
            json!({"reason": "not yet"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "declined");
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{pid}/confirm"),
            "root",
            json!({}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "proposal_not_pending"),
        "{v}"
    );
    // Lifting takes two as well; then the change runs.
    agreed(&app, &lift, json!({"reason": "done early"})).await;
    let (s, v) = app.execute(c1, &fp1).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // Every step is in the audit trail.
    let conn = &mut app.conn();
    let actions: Vec<String> = countersign::db::audit::recent(conn, 200)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "calendar_proposed",
        "calendar_confirmed",
        "calendar_declined",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

async fn freezes_are_checked_and_edited_by_two(app: TestApp) {
    let bad = [
        (
            json!({"name": "x", "severity": "hard", "starts_at": at(Duration::hours(1))}),
            "invalid_freeze",
            "ends_at",
        ),
        (
            json!({"name": "", "severity": "hard", "starts_at": at(Duration::hours(1)), "ends_at": at(Duration::hours(2))}),
            "invalid_freeze",
            "name",
        ),
        (
            json!({"name": "x", "severity": "hard", "starts_at": at(Duration::hours(1)), "ends_at": at(Duration::hours(2)), "operations": ["no_such_op"]}),
            "invalid_freeze",
            "operations",
        ),
        (
            json!({"name": "x", "severity": "hard", "starts_at": at(Duration::hours(1)), "recurrence": "FREQ=WEEKLY;BYDAY=XX;START=16:00;DURATION=64h"}),
            "invalid_recurrence",
            "recurrence",
        ),
    ];
    for (body, want, field) in bad {
        let (s, v) = app
            .post("/api/v1/calendar/freezes", "root", body.clone())
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, want),
            "{body} {v}"
        );
        assert_eq!(v["error"]["details"]["field"], field, "{v}");
    }
    let (s, v) = app
        .post(
            "/api/v1/calendar/freezes",
            "root",
            json!({"name": "x", "severity": "icy", "starts_at": "soon"}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_json"),
        "{v}"
    );
    let (s, v) = app
        .post("/api/v1/calendar/freezes", "root", json!({"name": "x", "severity": "hard", "starts_at": at(Duration::hours(1)), "recurrence": "FREQ=WEEKLY;BYDAY=FR;START=25:00;DURATION=64h"}))
        .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("START=25:00"),
        "{s} {v}"
    );
    // Only some operations: another one runs.
    let fid = freeze(&app, json!({"name": "No uninstalls", "severity": "hard", "starts_at": at(Duration::hours(-1)), "ends_at": at(Duration::hours(5)), "operations": ["uninstall_app"]})).await;
    let (c, fp) = versioned(&app, json!({"ids": [inst(2)]})).await;
    let (s, v) = app.execute(c, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // An edit (all fields) takes two as well: now it covers every operation.
    let (s, p) = app
        .patch(&format!("/api/v1/calendar/freezes/{fid}"), "root", json!({"name": "Nothing", "severity": "hard", "starts_at": at(Duration::hours(-1)), "ends_at": at(Duration::hours(5))}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (_, f) = app
        .get(&format!("/api/v1/calendar/freezes/{fid}"), "ana")
        .await;
    assert_eq!(f["name"], "No uninstalls");
    let pid = p["id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{pid}/confirm"),
            "rita",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, f) = app
        .get(&format!("/api/v1/calendar/freezes/{fid}"), "ana")
        .await;
    assert_eq!(
        (&f["name"], &f["holding"]),
        (&json!("Nothing"), &json!(true)),
        "{f}"
    );
    let (c2, fp2) = versioned(&app, json!({"ids": [inst(4)]})).await;
    let (s, v) = app.execute(c2, &fp2).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "frozen"), "{v}");
    // A lifted freeze is not edited or lifted again.
    agreed(
        &app,
        &format!("/api/v1/calendar/freezes/{fid}/lift"),
        json!({}),
    )
    .await;
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/freezes/{fid}/lift"),
            "root",
            json!({}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "freeze_lifted"),
        "{v}"
    );
    let (s, v) = app.get("/api/v1/calendar/freezes/999", "ana").await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{v}");
}

async fn a_recurring_freeze_holds_at_the_gate(app: TestApp) {
    // Every day, starting an hour ago, for three hours: it holds now.
    let start = (Utc::now() - Duration::hours(1))
        .format("%H:%M")
        .to_string();
    freeze(&app, json!({"name": "Nightly batch", "severity": "hard", "starts_at": at(Duration::days(-2)), "recurrence": format!("FREQ=DAILY;START={start};DURATION=3h")})).await;
    let (c, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    let (s, v) = app.execute(c, &fp).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "frozen"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Nightly batch"),
        "{v}"
    );
    assert_eq!(v["error"]["details"]["blocker"]["type"], "freeze");
    // One that starts in four hours (and lasts two) does not hold now.
    let later = (Utc::now() + Duration::hours(4))
        .format("%H:%M")
        .to_string();
    let mut app = app;
    let _ = &mut app;
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    let fid = st["freezes"][0]["id"].as_i64().unwrap();
    agreed(
        &app,
        &format!("/api/v1/calendar/freezes/{fid}/lift"),
        json!({}),
    )
    .await;
    freeze(&app, json!({"name": "Later", "severity": "hard", "starts_at": at(Duration::days(-2)), "recurrence": format!("FREQ=DAILY;START={later};DURATION=2h")})).await;
    let (s, v) = app.execute(c, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
}

async fn a_soft_freeze_needs_one_more_implementer(app: TestApp) {
    let fid = freeze(&app, json!({"name": "Soft week", "severity": "soft", "starts_at": at(Duration::hours(-1)), "ends_at": at(Duration::days(2)), "operations": ["uninstall_app"]})).await;
    let hard = freeze(&app, json!({"name": "Other ops", "severity": "hard", "starts_at": at(Duration::hours(-1)), "ends_at": at(Duration::days(2)), "operations": ["set_app_version"]})).await;
    let (c, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(5)]}))
        .await;
    let (s, v) = app.execute(c, &fp).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "freeze_exception_required"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Soft week"),
        "{v}"
    );
    let path = format!("/api/v1/changes/{c}/freeze-exceptions");
    let body = |who_fp: &str| json!({"freeze": fid, "fingerprint": who_fp, "comment": "customer deadline"});
    // Not a requester, not the implementer already counted (carla signed), not with an old
    // fingerprint, not for a hard freeze or one of another operation.
    let (s, v) = app.post(&path, "ana", body(&fp)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "not_implementer"),
        "{v}"
    );
    let (s, v) = app.post(&path, "carla", body(&fp)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "separation_of_duties"),
        "{v}"
    );
    let (s, v) = app.post(&path, "dev", body("sha256:0000")).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "stale_fingerprint"),
        "{v}"
    );
    let (s, v) = app
        .post(&path, "dev", json!({"freeze": hard, "fingerprint": fp}))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "not_a_soft_freeze"),
        "{v}"
    );
    let (s, v) = app.post(&path, "dev", body(&fp)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["exceptions"][0]["by"], "dev@ops.example");
    assert_eq!(v["exceptions"][0]["current"], true);
    let (s, v) = app.execute(c, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (_, events) = app.get(&format!("/api/v1/changes/{c}/events"), "ana").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "freeze_exception_given"),
        "{events}"
    );
}

async fn a_lockdown_pauses_within_one_batch_and_its_lift_resumes(backend: Backend) {
    let app = app(backend, 1, 250).await;
    let ids: Vec<String> = (1..=8).map(inst).collect();
    let (c, fp) = app.approved("uninstall_app", json!({"ids": ids})).await;
    let (other, other_fp) = versioned(&app, json!({"ids": [inst(1)]})).await;
    let (s, v) = app.execute(c, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // Running, something done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, e) = app
            .get(&format!("/api/v1/changes/{c}/execution"), "ana")
            .await;
        if e["done"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (s, v) = app
        .post("/api/v1/calendar/lockdown", "root", json!({}))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "reason_required"),
        "{v}"
    );
    agreed(
        &app,
        "/api/v1/calendar/lockdown",
        json!({"reason": "incident INC-7"}),
    )
    .await;
    let (_, e) = app
        .get(&format!("/api/v1/changes/{c}/execution"), "ana")
        .await;
    let done_at_lockdown = e["done"].as_u64().unwrap();
    let e = app.wait_execution(c, &["paused"]).await;
    // Within one batch (of one target) of the confirmation.
    assert!(
        e["done"].as_u64().unwrap() <= done_at_lockdown + 1,
        "{e} vs {done_at_lockdown}"
    );
    assert!(e["done"].as_u64().unwrap() < 8, "{e}");
    assert!(
        e["pause_reason"].as_str().unwrap().contains("lockdown"),
        "{e}"
    );
    // It stays paused; nothing starts, nothing continues; a second lockdown is refused.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (_, e2) = app
        .get(&format!("/api/v1/changes/{c}/execution"), "ana")
        .await;
    assert_eq!(
        (&e2["state"], &e2["done"]),
        (&json!("paused"), &e["done"]),
        "{e2}"
    );
    let (s, v) = app.execute(other, &other_fp).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "lockdown"), "{v}");
    let (s, v) = app
        .post(&format!("/api/v1/changes/{c}/continue"), "carla", json!({}))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "lockdown"), "{v}");
    let (s, v) = app
        .post(
            "/api/v1/calendar/lockdown",
            "rita",
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "lockdown_state"),
        "{v}"
    );
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    assert_eq!(st["lockdown"]["reason"], "incident INC-7", "{st}");
    // Everyone involved is mailed: the approved and the executing change's people.
    {
        use countersign::db::schema::outbox;
        use diesel::prelude::*;
        let conn = &mut app.conn();
        let mails: Vec<(Option<i64>, String)> = outbox::table
            .filter(outbox::payload.like("%lockdown_declared%"))
            .select((outbox::change_id, outbox::recipient))
            .load(conn)
            .unwrap();
        let changes: std::collections::BTreeSet<i64> = mails.iter().filter_map(|m| m.0).collect();
        assert!(
            changes.contains(&c) && changes.contains(&other),
            "{mails:?}"
        );
        assert!(mails.iter().any(|m| m.1 == "ana@req.example"), "{mails:?}");
    }
    // The banner is on every page.
    let b = crate::web::sign_in(&app, "ana").await;
    let (_, home) = b.get("/").await;
    assert!(
        home.contains("Lockdown since") && home.contains("incident INC-7"),
        "{home}"
    );
    // Lifting takes two; the execution goes on by itself and completes.
    let (s, v) = app
        .post(
            "/api/v1/calendar/lockdown/lift",
            "root",
            json!({"reason": "resolved"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let pid = v["id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{pid}/confirm"),
            "root",
            json!({}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "own_proposal"),
        "{v}"
    );
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{pid}/confirm"),
            "rita",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let e = app.wait_execution(c, &["completed"]).await;
    assert_eq!(
        (e["done"].as_u64(), e["failed"].as_u64()),
        (Some(8), Some(0)),
        "{e}"
    );
    let (_, events) = app.get(&format!("/api/v1/changes/{c}/events"), "ana").await;
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "lockdown_declared",
        "execution_paused_by_lockdown",
        "execution_resumed_after_lockdown",
        "lockdown_lifted",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    // Each target exactly once.
    let (_, items) = app
        .get(&format!("/api/v1/changes/{c}/execution/items"), "ana")
        .await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for i in items["items"].as_array().unwrap() {
        *seen
            .entry(i["id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        assert_eq!(i["status"], "done", "{i}");
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    let (_, home) = b.get("/").await;
    assert!(!home.contains("Lockdown since"), "banner gone");
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    assert!(st["lockdown"].is_null(), "{st}");
}

async fn the_calendar_api_answers_a_checked_range(app: TestApp) {
    freeze(&app, json!({"name": "Weekend", "severity": "soft", "starts_at": "2026-11-01T00:00:00Z", "recurrence": "FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h"})).await;
    freeze(&app, json!({"name": "Year end", "severity": "hard", "starts_at": "2026-12-20T00:00:00Z", "ends_at": "2027-01-04T00:00:00Z", "operations": ["uninstall_app"]})).await;
    let (s, v) = app
        .post("/api/v1/changes", "ana", json!({"title": "Over the holidays", "rationale": "r", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(6)]}, "not_before": "2026-12-22T09:00:00Z", "not_after": "2026-12-22T17:00:00Z", "submit": true}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v) = app
        .get("/api/v1/calendar?from=2026-12-01&to=2027-01-01", "otto")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let freezes = v["freezes"].as_array().unwrap();
    assert_eq!(freezes.len(), 2, "{v}");
    let weekend = freezes.iter().find(|f| f["name"] == "Weekend").unwrap();
    assert_eq!(
        weekend["occurrences"].as_array().unwrap().len(),
        4,
        "{weekend}"
    );
    assert_eq!(weekend["occurrences"][0]["start"], "2026-12-04T16:00:00");
    assert_eq!(weekend["occurrences"][0]["end"], "2026-12-07T08:00:00");
    let ch = v["changes"].as_array().unwrap();
    assert_eq!(ch.len(), 1, "{v}");
    assert_eq!(ch[0]["change"], format!("CHG-{id}"));
    assert_eq!(ch[0]["freezes"], json!(["Year end (hard)"]), "{v}");
    for (q, want) in [
        ("from=2027-01-01&to=2026-12-01", "invalid_range"),
        ("from=2026-01-01&to=2027-06-01", "invalid_range"),
        ("from=yesterday", "invalid_range"),
        ("from=2026-01-01&until=2026-02-01", "invalid_query"),
    ] {
        let (s, v) = app.get(&format!("/api/v1/calendar?{q}"), "ana").await;
        assert!(s.is_client_error(), "{q}: {s}");
        assert_eq!(code(&v), want, "{q}: {v}");
    }
    let (s, _) = app.get("/api/v1/calendar", "nobody").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The new-change form warns about the overlap; the queue marks the change.
    let b = crate::web::sign_in(&app, "ben").await;
    let (_, queue) = b.get("/queue").await;
    assert!(queue.contains("frozen: Year end (hard)"), "{queue}");
    let (_, q) = app.get("/api/v1/queue", "ben").await;
    assert_eq!(
        q["changes"][0]["freezes"],
        json!(["Year end (hard)"]),
        "{q}"
    );
    // The new-change form's preview warns about a window that overlaps a freeze.
    let (s, _, form) = b
        .post(
            "/changes/new",
            &[
                ("csrf", b.csrf.as_str()),
                ("operation", "uninstall_app"),
                ("requesting_team", "app-owners"),
                ("title", "During the freeze"),
                ("ids", inst(7).as_str()),
                ("not_before", "2026-12-24T10:00"),
                ("not_after", "2026-12-24T12:00"),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{form}");
    assert!(
        form.contains("The chosen window overlaps a freeze: the hard freeze “Year end”"),
        "{form}"
    );
    let (_, _, form) = b
        .post(
            "/changes/new",
            &[
                ("csrf", b.csrf.as_str()),
                ("operation", "uninstall_app"),
                ("requesting_team", "app-owners"),
                ("title", "After the freeze"),
                ("ids", inst(7).as_str()),
                ("not_before", "2027-01-05T10:00"),
                ("not_after", "2027-01-05T12:00"),
                ("action", "preview"),
            ],
        )
        .await;
    assert!(
        !form.contains("overlaps a freeze: the hard"),
        "only the weekend: {form}"
    );
    let (s, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("Year end"),
        "the change page names the freeze"
    );
    let (s, cal) = b.get("/calendar?from=2026-12-01&to=2027-01-01").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        cal.contains("Weekend") && cal.contains(&format!("CHG-{id}")),
        "{cal}"
    );
    let (s, list) = b
        .get("/calendar?view=list&from=2026-12-01&to=2027-01-01")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.contains("Year end"), "{list}");
    let (s, _) = b.get("/calendar?from=2027-01-01&to=2026-01-01").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn the_ics_feed_is_rfc_5545(app: TestApp) {
    freeze(&app, json!({"name": "Weekend, EMEA; all ops", "severity": "hard", "starts_at": "2026-11-01T00:00:00Z", "ends_at": "2027-06-01T00:00:00Z", "recurrence": "FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h", "reason": "A long reason that goes on and on so that the description line is longer than seventy-five octets — with ünïcödé."})).await;
    freeze(&app, json!({"name": "Year end", "severity": "soft", "starts_at": "2026-12-20T00:00:00Z", "ends_at": "2027-01-04T00:00:00Z"})).await;
    // No token, a wrong token, a bearer token instead: refused.
    for q in [
        "",
        "?token=csf_nope",
        &format!("?token={}", app.token("ana")),
    ] {
        let r = app
            .client
            .get(format!("{}/calendar.ics{q}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{q}");
    }
    let (s, v) = app
        .post("/api/v1/me/calendar-token", "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    assert!(v["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/calendar.ics?token={token}")));
    let r = app
        .client
        .get(format!("{}/calendar.ics?token={token}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/calendar"));
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:"),
        "{body}"
    );
    assert!(body.ends_with("END:VCALENDAR\r\n"));
    assert!(
        !body.replace("\r\n", "").contains('\n'),
        "only CRLF line ends"
    );
    for line in body.split("\r\n") {
        assert!(line.len() <= 75, "{} octets: {line}", line.len());
    }
    let unfolded = body.replace("\r\n ", "");
    assert!(
        unfolded.contains("SUMMARY:Freeze (hard): Weekend\\, EMEA\\; all ops\r\n"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("RRULE:FREQ=WEEKLY;BYDAY=FR;UNTIL=20270531T235959Z\r\n"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("DTSTART:20261106T160000Z\r\nDURATION:PT64H\r\n"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("DTSTART:20261220T000000Z\r\nDTEND:20270104T000000Z\r\n"),
        "{unfolded}"
    );
    assert!(unfolded.contains("ünïcödé"), "characters are not split");
    let events = unfolded.matches("BEGIN:VEVENT").count();
    assert_eq!(events, 2);
    assert_eq!(unfolded.matches("\r\nUID:freeze-").count(), 2);
    assert_eq!(unfolded.matches("\r\nDTSTAMP:").count(), 2);
    // A new token replaces the old one.
    let (_, v) = app
        .post("/api/v1/me/calendar-token", "ana", json!({}))
        .await;
    assert_ne!(v["token"], json!(token));
    let r = app
        .client
        .get(format!("{}/calendar.ics?token={token}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

both_backends!(backend: a_lockdown_pauses_within_one_batch_and_its_lift_resumes);

mod plain {
    use super::*;

    pub async fn the_proposer_never_confirms_and_only_admins_take_part(b: Backend) {
        super::the_proposer_never_confirms_and_only_admins_take_part(app(b, 100, 0).await).await
    }
    pub async fn freezes_are_checked_and_edited_by_two(b: Backend) {
        super::freezes_are_checked_and_edited_by_two(app(b, 100, 0).await).await
    }
    pub async fn a_recurring_freeze_holds_at_the_gate(b: Backend) {
        super::a_recurring_freeze_holds_at_the_gate(app(b, 100, 0).await).await
    }
    pub async fn a_soft_freeze_needs_one_more_implementer(b: Backend) {
        super::a_soft_freeze_needs_one_more_implementer(app(b, 100, 0).await).await
    }
    pub async fn the_calendar_api_answers_a_checked_range(b: Backend) {
        super::the_calendar_api_answers_a_checked_range(app(b, 100, 0).await).await
    }
    pub async fn the_ics_feed_is_rfc_5545(b: Backend) {
        super::the_ics_feed_is_rfc_5545(app(b, 100, 0).await).await
    }

    crate::both_backends!(
        backend: the_proposer_never_confirms_and_only_admins_take_part,
        freezes_are_checked_and_edited_by_two,
        a_recurring_freeze_holds_at_the_gate,
        a_soft_freeze_needs_one_more_implementer,
        the_calendar_api_answers_a_checked_range,
        the_ics_feed_is_rfc_5545,
    );
}
