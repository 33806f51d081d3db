//! The change calendar (issue #13), on both backends: freezes (hard refuse with `frozen`,
//! soft need a freeze exception), the two-person rule for every calendar act, recurring
//! windows at the gate, a lockdown pausing a running execution within one batch and its
//! lift resuming it, the calendar API, the iCalendar feed and the new-change form's warning
//! (`views.rs`: the lockdown, the calendar API and pages, the feed).

mod large;
mod views;

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use countersign::db::{users, write_tx};
use countersign::error::AppError;

use crate::helpers::{inst, spawn_app_with, Backend, TestApp};

/// An app with a second admin (`rita`), the fixture loaded, a fast runner.
pub(super) async fn app(backend: Backend, batch: u64, throttle_ms: u64) -> TestApp {
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

pub(super) fn at(d: Duration) -> String {
    (Utc::now() + d).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Propose as `root`, confirm as `rita`; the confirmed proposal.
pub(super) async fn agreed(app: &TestApp, path: &str, body: Value) -> Value {
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
pub(super) async fn freeze(app: &TestApp, body: Value) -> i64 {
    let (_, state) = app.get("/api/v1/calendar/state", "ana").await;
    let before = state["freezes"].as_array().unwrap().len();
    agreed(app, "/api/v1/calendar/freezes", body).await;
    let (_, state) = app.get("/api/v1/calendar/state", "ana").await;
    let list = state["freezes"].as_array().unwrap();
    assert_eq!(list.len(), before + 1, "{state}");
    list.last().unwrap()["id"].as_i64().unwrap()
}

/// An approved `set_app_version` change (it takes a parameter); (id, fingerprint).
pub(super) async fn versioned(app: &TestApp, ids: Value) -> (i64, String) {
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

pub(super) fn code(v: &Value) -> &str {
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
    // The change page offers the form to exactly those who may give it; execute is not
    // offered meanwhile.
    let carla = crate::web::sign_in(&app, "carla").await;
    let (_, page) = carla.get(&format!("/changes/CHG-{c}")).await;
    assert!(!page.contains("id=\"freeze-exception\""), "not for carla");
    assert!(
        page.contains("It cannot run now: the freeze “Soft week” (soft)"),
        "{page}"
    );
    let (_, v) = app.get(&format!("/api/v1/changes/{c}"), "carla").await;
    assert!(
        !v["allowed_actions"]
            .as_array()
            .unwrap()
            .contains(&json!("execute")),
        "{v}"
    );
    let dev = crate::web::sign_in(&app, "dev").await;
    let (_, page) = dev.get(&format!("/changes/CHG-{c}")).await;
    assert!(page.contains("id=\"freeze-exception\""), "{page}");
    let (s, loc, _) = dev
        .post(
            &format!("/changes/CHG-{c}/freeze-exception"),
            &[
                ("csrf", dev.csrf.as_str()),
                ("freeze", &fid.to_string()),
                ("fingerprint", &fp),
                ("comment", "from the page"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{loc}");
    let (s, v) = app.post(&path, "dev", body(&fp)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["exceptions"][0]["by"], "dev@ops.example");
    assert_eq!(v["exceptions"][0]["current"], true);
    let (_, v) = app.get(&format!("/api/v1/changes/{c}"), "carla").await;
    assert!(
        v["allowed_actions"]
            .as_array()
            .unwrap()
            .contains(&json!("execute")),
        "{v}"
    );
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

    crate::both_backends!(backend: the_proposer_never_confirms_and_only_admins_take_part, freezes_are_checked_and_edited_by_two, a_recurring_freeze_holds_at_the_gate, a_soft_freeze_needs_one_more_implementer);
}
