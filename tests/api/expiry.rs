//! Approvals that expire (issue #12, `signoffs_expire_after`): an expired sign-off stops
//! counting everywhere, the execute gate refuses it by name, the sweep sends an approved
//! change back once (its event and mails written once, however often it runs), the signer
//! is reminded once, and an unexpired sign-off keeps counting. Time is moved by backdating
//! `signoffs.created_at` in the database, never by sleeping; the worker is off, so the
//! sweep runs only when a test calls it.

use countersign::config::Config;
use countersign::db::schema::{outbox, signoffs};
use countersign::db::{audit, now};
use countersign::domain::schema::EXAMPLE_SCHEMA;
use countersign::domain::Schema;
use countersign::service::expiry::{sweep, Swept};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp, TestDb};
use crate::web::sign_in;

const EXPIRING: &str = r#"

[operations.uninstall_expiring]
label = "Uninstall apps (sign-offs expire)"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
requested_by = ["app-owners"]
signoffs = { requester = 1, implementer = 1 }
signoffs_expire_after = "72h"
"#;

const OP: &str = "uninstall_expiring";

fn source() -> String {
    format!("{EXAMPLE_SCHEMA}{EXPIRING}")
}

/// A server on the schema with [`EXPIRING`], without its worker (no sweep of its own), and
/// the schema to sweep with.
async fn app(backend: Backend) -> (TestApp, Schema, tempfile::TempDir) {
    app_with_worker(backend, false).await
}

/// [`app`], with the execution worker running when `worker` (it sweeps when it starts,
/// then once a minute: a test with it on does not sweep itself).
async fn app_with_worker(backend: Backend, worker: bool) -> (TestApp, Schema, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    std::fs::write(&path, source()).unwrap();
    let app = spawn_app_with(backend, |c| {
        c.schema_path = Some(path.clone());
        c.worker = worker;
    })
    .await;
    app.load_fixture().await;
    (app, Schema::from_toml(&source()).unwrap(), dir)
}

/// Make `who`'s sign-offs on change `id` as old as `hours`.
fn age_signoff(app: &TestApp, id: i64, who: &str, hours: i64) {
    let mut conn = app.conn();
    let user = countersign::db::users::find_user_by_email(&mut conn, TestApp::email(who))
        .unwrap()
        .unwrap();
    let n = diesel::update(
        signoffs::table
            .filter(signoffs::change_id.eq(id))
            .filter(signoffs::user_id.eq(user.id)),
    )
    .set(signoffs::created_at.eq(now() - chrono::Duration::hours(hours)))
    .execute(&mut conn)
    .unwrap();
    assert!(n > 0, "{who} has no sign-off on {id}");
}

fn run_sweep(app: &TestApp, schema: &Schema) -> Swept {
    let mut conn = app.conn();
    sweep(&mut conn, schema).unwrap()
}

/// The outbox rows of `kind` for change `id`: (recipient, payload).
fn mails(app: &TestApp, id: i64, kind: &str) -> Vec<(String, Value)> {
    let mut conn = app.conn();
    outbox::table
        .filter(outbox::change_id.eq(id))
        .filter(outbox::event_kind.eq(kind))
        .order(outbox::id.asc())
        .select((outbox::recipient, outbox::payload))
        .load::<(String, String)>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(r, p)| (r, serde_json::from_str(&p).unwrap()))
        .collect()
}

fn actions(app: &TestApp, id: i64, action: &str) -> usize {
    let mut conn = app.conn();
    audit::for_change(&mut conn, id)
        .unwrap()
        .iter()
        .filter(|e| e.action == action)
        .count()
}

fn side<'v>(c: &'v Value, side: &str) -> &'v Value {
    c["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["side"] == side)
        .unwrap_or_else(|| panic!("no {side} sign-off in {c}"))
}

async fn an_expired_signoff_stops_counting(backend: Backend) {
    let (app, _schema, _dir) = app(backend).await;
    let (id, _fp) = app.approved(OP, json!({"ids": [inst(1)]})).await;
    let c = app.change(id).await;
    assert_eq!(c["signoffs_expire_after"], "72 hours", "{c}");
    assert_eq!(c["approval_expired"], false, "{c}");
    let r = side(&c, "requester");
    assert_eq!(r["expired"], false);
    assert_eq!(r["counts"], true);
    assert!(r["expires_at"].is_string(), "{r}");
    age_signoff(&app, id, "ben", 73);
    let c = app.change(id).await;
    let r = side(&c, "requester");
    assert_eq!(r["expired"], true, "{r}");
    assert_eq!(r["counts"], false, "{r}");
    let why = r["why_not"].as_str().unwrap();
    assert!(
        why.starts_with("expired at ") && why.ends_with("UTC, 72 hours after it was given"),
        "{why}"
    );
    assert_eq!(c["approval_expired"], true, "{c}");
    assert_eq!(c["requester_side"]["current"], 0, "{c}");
    assert_eq!(c["requester_side"]["missing"], 1, "{c}");
    // The other side's sign-off still counts.
    assert_eq!(side(&c, "implementer")["counts"], true);
    // Carla, who could execute it a moment ago, is offered no execute any more.
    let (s, c) = app.get(&format!("/api/v1/changes/{id}"), "carla").await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert!(
        !c["allowed_actions"].to_string().contains("\"execute\""),
        "{c}"
    );
}

async fn the_gate_refuses_an_expired_approval_by_name(backend: Backend) {
    let (app, schema, _dir) = app(backend).await;
    let (id, fp) = app.approved(OP, json!({"ids": [inst(1)]})).await;
    age_signoff(&app, id, "ben", 80);
    // The sweep has not run: the change still says approved, the gate decides by itself.
    assert_eq!(app.change(id).await["state"], "approved");
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let v = &v["error"];
    assert_eq!(v["code"], "signoffs_expired", "{v}");
    let msg = v["message"].as_str().unwrap();
    for part in [
        "ben@req.example (requester side) signed at ",
        " UTC, expired at ",
        "72 hours after it was given",
        "back to awaiting_signoff",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
    let e = &v["details"]["expired"][0];
    assert_eq!(e["email"], "ben@req.example", "{v}");
    assert_eq!(e["side"], "requester");
    assert!(
        e["signed_at"].is_string() && e["expires_at"].is_string(),
        "{e}"
    );
    // Committed: back for sign-off, the expiry recorded (with its mails) once.
    assert_eq!(app.change(id).await["state"], "awaiting_signoff");
    assert_eq!(actions(&app, id, "signoffs_expired"), 1);
    let sent = mails(&app, id, "signoffs_expired").len();
    assert!(sent > 0);
    // The sweep finds nothing left to do.
    assert_eq!(run_sweep(&app, &schema), Swept::default());
    assert_eq!(actions(&app, id, "signoffs_expired"), 1);
    assert_eq!(mails(&app, id, "signoffs_expired").len(), sent);
}

async fn the_sweep_sends_an_expired_approval_back_once(backend: Backend) {
    let (app, schema, _dir) = app(backend).await;
    let (id, fp) = app.approved(OP, json!({"ids": [inst(1)]})).await;
    // Another approved change whose sign-offs are young is left alone.
    let (young, _) = app.approved(OP, json!({"ids": [inst(3)]})).await;
    age_signoff(&app, id, "ben", 73);
    age_signoff(&app, id, "carla", 73);
    // Two processes sweeping at once: between them, each expiry is recorded once.
    let (one, two) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run_sweep(&app, &schema));
        let b = scope.spawn(|| run_sweep(&app, &schema));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(one.expired + two.expired, 2, "{one:?} {two:?}");
    let mut unapproved = [one.unapproved, two.unapproved].concat();
    unapproved.sort_unstable();
    assert_eq!(unapproved, vec![id]);
    let c = app.change(id).await;
    assert_eq!(c["state"], "awaiting_signoff", "{c}");
    assert!(
        c["state_reason"]
            .as_str()
            .unwrap()
            .starts_with("sign-offs expired: "),
        "{c}"
    );
    assert_eq!(app.change(young).await["state"], "approved");
    // One event naming who and when, mailed to the participants once.
    let mut conn = app.conn();
    let events = audit::for_change(&mut conn, id).unwrap();
    drop(conn);
    let ev: Vec<_> = events
        .iter()
        .filter(|e| e.action == "signoffs_expired")
        .collect();
    assert_eq!(ev.len(), 1);
    let detail: Value = serde_json::from_str(&ev[0].detail).unwrap();
    assert_eq!(detail["unapproved"], true, "{detail}");
    let people: Vec<&str> = detail["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["email"].as_str().unwrap())
        .collect();
    assert_eq!(people, vec!["ben@req.example", "carla@ops.example"]);
    assert_eq!(ev[0].actor, "system");
    let written = mails(&app, id, "signoffs_expired");
    let to: Vec<&str> = written.iter().map(|(r, _)| r.as_str()).collect();
    for who in ["ana@req.example", "ben@req.example", "carla@ops.example"] {
        assert!(to.contains(&who), "{who} not mailed: {to:?}");
    }
    let headline = countersign::notify::mail::headline(&written[0].1);
    assert!(headline.contains("is no longer approved"), "{headline}");
    assert_eq!(written[0].1["signoffs_expire_after"], "72 hours");
    // Twice, or from a second process: nothing more.
    assert_eq!(run_sweep(&app, &schema), Swept::default());
    assert_eq!(actions(&app, id, "signoffs_expired"), 1);
    assert_eq!(mails(&app, id, "signoffs_expired").len(), written.len());
    // Signing again approves it again.
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(id, "carla", "implementer", &fp, Some(1)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(app.change(id).await["state"], "approved");
}

async fn the_reminder_is_mailed_once(backend: Backend) {
    let (app, schema, _dir) = app(backend).await;
    let (id, fp) = app.submitted("ana", OP, json!({"ids": [inst(1)]})).await;
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // 47 hours: a 72-hour sign-off is reminded a day before, at 48 hours.
    age_signoff(&app, id, "ben", 47);
    assert_eq!(run_sweep(&app, &schema), Swept::default());
    age_signoff(&app, id, "ben", 49);
    assert_eq!(run_sweep(&app, &schema).reminded, 1);
    assert_eq!(run_sweep(&app, &schema), Swept::default());
    let written = mails(&app, id, "signoff_expiring");
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0].0, "ben@req.example");
    let headline = countersign::notify::mail::headline(&written[0].1);
    assert!(
        headline.starts_with(&format!("Your sign-off on CHG-{id} expires at ")),
        "{headline}"
    );
    assert_eq!(actions(&app, id, "signoff_expiring"), 1);
    // Still awaiting, and still counting until it expires.
    let c = app.change(id).await;
    assert_eq!(c["requester_side"]["current"], 1, "{c}");
    // The implementers' queue marks that this sign-off expires within a day.
    let (s, q) = app.get("/api/v1/queue", "carla").await;
    assert_eq!(s, StatusCode::OK, "{q}");
    let item = q["changes"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["id"] == id))
        .unwrap_or_else(|| panic!("CHG-{id} not in {q}"));
    assert!(item["expires_soon"].is_string(), "{item}");
    // Expired on an awaiting change: recorded (and mailed), but no state change.
    age_signoff(&app, id, "ben", 72);
    let swept = run_sweep(&app, &schema);
    assert_eq!((swept.expired, swept.unapproved.len()), (1, 0), "{swept:?}");
    assert_eq!(app.change(id).await["state"], "awaiting_signoff");
    assert_eq!(mails(&app, id, "signoff_expiring").len(), 1);
}

async fn an_unexpired_signoff_keeps_counting(backend: Backend) {
    let (app, schema, _dir) = app(backend).await;
    let (id, fp) = app.approved(OP, json!({"ids": [inst(1)]})).await;
    age_signoff(&app, id, "ben", 71);
    age_signoff(&app, id, "carla", 71);
    let swept = run_sweep(&app, &schema);
    assert_eq!((swept.expired, swept.unapproved.len()), (0, 0), "{swept:?}");
    let c = app.change(id).await;
    assert_eq!(c["state"], "approved");
    assert_eq!(side(&c, "requester")["counts"], true);
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // An operation without `signoffs_expire_after` never expires its sign-offs.
    let (other, _) = app
        .approved("uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    age_signoff(&app, other, "ben", 24 * 400);
    let c = app.change(other).await;
    assert_eq!(side(&c, "requester")["counts"], true, "{c}");
    assert!(side(&c, "requester")["expires_at"].is_null());
    assert_eq!(run_sweep(&app, &schema), Swept::default());
}

async fn a_rollback_expires_as_its_operation(backend: Backend) {
    let (app, _schema, _dir) = app_with_worker(backend, true).await;
    let (id, fp) = app.approved(OP, json!({"ids": [inst(1)]})).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["completed"]).await;
    let (s, rb) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb_id = rb["id"].as_i64().unwrap();
    let rfp = rb["fingerprint"].as_str().unwrap().to_string();
    app.approve(rb_id, &rfp).await;
    let c = app.change(rb_id).await;
    assert_eq!(c["signoffs_expire_after"], "72 hours", "{c}");
    age_signoff(&app, rb_id, "carla", 73);
    let c = app.change(rb_id).await;
    assert_eq!(side(&c, "implementer")["expired"], true, "{c}");
    assert_eq!(c["implementer_side"]["current"], 0, "{c}");
    if c["state"] == "approved" {
        // (Unless the worker's once-a-minute sweep came first.)
        let (s, v) = app.execute(rb_id, &rfp).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "signoffs_expired", "{v}");
    }
    assert_eq!(app.change(rb_id).await["state"], "awaiting_signoff");
}

async fn the_pages_show_expiry(backend: Backend) {
    let (app, _schema, _dir) = app(backend).await;
    let (id, fp) = app.submitted("ana", OP, json!({"ids": [inst(1)]})).await;
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    age_signoff(&app, id, "ben", 50);
    let b = sign_in(&app, "carla").await;
    // The queue marks the sign-off that expires within a day.
    let (s, queue) = b.get("/queue").await;
    assert_eq!(s, StatusCode::OK);
    assert!(queue.contains("sign-off expires "), "{queue}");
    // A counting sign-off shows when it expires; the operation says how long they count.
    let (s, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("class=\"small muted expires\">· expires at "),
        "{page}"
    );
    assert!(page.contains("id=\"signoff-expiry\""), "{page}");
    assert!(page.contains("a sign-off counts for 72 hours"), "{page}");
    // An expired one is struck through, with the reason.
    age_signoff(&app, id, "ben", 73);
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    let li = page
        .split("<li class=\"expired\"><del>")
        .nth(1)
        .unwrap_or_else(|| panic!("no expired sign-off in {page}"));
    let li = li.split("</li>").next().unwrap();
    assert!(li.starts_with("Ben signed "), "{li}");
    assert!(li.contains("(expired at "), "{li}");
    assert!(li.contains(" UTC, 72 hours after it was given)"), "{li}");
    // The new-change form says it of the operation.
    let (_, form) = b.get("/changes/new").await;
    assert!(
        form.contains("sign-offs expire 72 hours after they are given"),
        "{form}"
    );
}

async fn the_schema_check_refuses_bad_durations(backend: Backend) {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    for (value, says) in [
        (
            "30m",
            "too short: a sign-off must count for at least 1 hour",
        ),
        ("72", "is not a duration"),
        ("three days", "is not a duration"),
        ("400d", "longer than a year"),
    ] {
        let path = dir.path().join("schema.toml");
        std::fs::write(&path, source().replace("\"72h\"", &format!("\"{value}\""))).unwrap();
        let mut config = Config::for_database(db.url.clone());
        config.schema_path = Some(path);
        let e = config.load_schema().unwrap_err().to_string();
        assert!(
            e.contains("operations.uninstall_expiring.signoffs_expire_after") && e.contains(says),
            "{value}: {e}"
        );
    }
}

both_backends!(
    backend: an_expired_signoff_stops_counting,
    the_gate_refuses_an_expired_approval_by_name,
    the_sweep_sends_an_expired_approval_back_once,
    the_reminder_is_mailed_once,
    an_unexpired_signoff_keeps_counting,
    the_schema_check_refuses_bad_durations,
    the_pages_show_expiry,
    a_rollback_expires_as_its_operation,
);
