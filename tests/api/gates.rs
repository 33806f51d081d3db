//! Between waves (issue #13), on both backends: a bake time the execution waits after each
//! wave (`baking`, with the time left), a health check against a real loopback receiver
//! (healthy, unhealthy, down, slow, and a signature it verifies), and a manual gate an
//! implementer continues. Every test runs `uninstall_gated` over three installations in
//! waves of 1 and the rest.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::NaiveDateTime;
use reqwest::StatusCode;
use serde_json::{json, Value};

use countersign::config::Secret;
use countersign::domain::schema::EXAMPLE_SCHEMA;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};
use crate::web::sign_in;

const SECRET: &str = "health-secret-for-tests";

/// An app whose `uninstall_gated` operation has these extra lines.
async fn gated_app(backend: Backend, extra: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let schema = format!(
        "{EXAMPLE_SCHEMA}\n\n[operations.uninstall_gated]\nlabel = \"Uninstall apps, wave by wave\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nrequested_by = [\"app-owners\"]\nsignoffs = {{ requester = 1, implementer = 1 }}\nwaves = [1]\n{extra}"
    );
    std::fs::write(&path, schema).unwrap();
    let app = spawn_app_with(backend, |c| {
        c.schema_path = Some(path.clone());
        c.secrets
            .insert("CS_TEST_HEALTH_SECRET".into(), Secret::new(SECRET));
    })
    .await;
    app.load_fixture().await;
    (app, dir)
}

/// Approve and start a change over three installations; its id.
async fn start(app: &TestApp) -> i64 {
    let ids = json!({"ids": [inst(1), inst(2), inst(3)]});
    let (id, fp) = app.approved("uninstall_gated", ids).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    id
}

fn at(v: &Value) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(v.as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.f").unwrap()
}

async fn a_bake_waits_between_waves(backend: Backend) {
    let (app, _dir) = gated_app(backend, "bake = \"2s\"\n").await;
    let id = start(&app).await;
    let v = app.wait_execution(id, &["baking"]).await;
    assert_eq!(v["next_wave"], 2, "{v}");
    assert_eq!(v["waves"][0]["done"], 1, "the canary ran: {v}");
    assert_eq!(v["waves"][1]["pending"], 2, "the rest waits: {v}");
    assert_eq!(v["change_state"], "executing");
    let left = v["bake_seconds_left"].as_i64().unwrap();
    assert!((0..=2).contains(&left), "{v}");
    let until = at(&v["bake_until"]);
    // The page says so, with the time it starts.
    let b = sign_in(&app, "carla").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(page.contains("id=\"baking\""), "{page}");
    assert!(page.contains("Baking before wave 2"), "{page}");
    assert!(
        page.contains("data-live-execution"),
        "the page refreshes while baking"
    );
    // Nothing of wave 2 runs before the bake ends.
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 3, "{v}");
    assert!(at(&v["finished_at"]) >= until, "{v}");
    assert_eq!(v["bake_until"], Value::Null);
    // Each wave's timeline: wave 1 started, finished, baked until; wave 2 finished.
    let t = &v["timeline"];
    assert!(
        t[0]["started_at"].is_string() && t[0]["finished_at"].is_string(),
        "{t}"
    );
    assert_eq!(at(&t[0]["baked_until"]), until, "{t}");
    assert!(
        t[1]["finished_at"].is_string() && t[1]["baked_until"].is_null(),
        "{t}"
    );
    let (_, events) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    let baking: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "execution_baking")
        .collect();
    assert_eq!(baking.len(), 1, "one bake between two waves: {events}");
    assert_eq!(baking[0]["detail"]["wave"], 1);
}

/// What the health receiver answers.
#[derive(Clone, Copy)]
enum Health {
    Healthy,
    Unhealthy,
    Slow,
}

#[derive(Default)]
struct Asked {
    documents: Vec<Value>,
    bad_signatures: usize,
}

async fn health(
    req: HttpRequest,
    body: web::Bytes,
    mode: web::Data<Health>,
    asked: web::Data<Arc<Mutex<Asked>>>,
) -> HttpResponse {
    let sig = req
        .headers()
        .get("X-Countersign-Signature")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let expected = countersign::exec::webhook::sign(SECRET.as_bytes(), &body);
    {
        let mut a = asked.lock().unwrap();
        if sig != expected {
            a.bad_signatures += 1;
        }
        a.documents
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    }
    match **mode {
        Health::Healthy => HttpResponse::Ok().json(json!({"healthy": true})),
        Health::Unhealthy => {
            HttpResponse::Ok().json(json!({"healthy": false, "reason": "error rate 4.2% above 1%"}))
        }
        Health::Slow => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            HttpResponse::Ok().json(json!({"healthy": true}))
        }
    }
}

async fn health_receiver(mode: Health) -> (String, Arc<Mutex<Asked>>) {
    let asked = Arc::new(Mutex::new(Asked::default()));
    let a2 = asked.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(mode))
            .app_data(web::Data::new(a2.clone()))
            .route("/health", web::post().to(health))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/health"), asked)
}

fn health_lines(endpoint: &str) -> String {
    format!("health_check = {{ endpoint = \"{endpoint}\", secret_env = \"CS_TEST_HEALTH_SECRET\", timeout_ms = 500 }}\n")
}

async fn a_healthy_answer_lets_the_next_wave_run(backend: Backend) {
    let (url, asked) = health_receiver(Health::Healthy).await;
    let (app, _dir) = gated_app(backend, &health_lines(&url)).await;
    let id = start(&app).await;
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 3, "{v}");
    assert_eq!(v["health_checks"][0]["healthy"], true, "{v}");
    assert_eq!(v["health_checks"][0]["wave"], 1);
    assert_eq!(v["timeline"][0]["healthy"], true, "{v}");
    let b = sign_in(&app, "ana").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(page.contains("health check: healthy"), "{page}");
    let a = asked.lock().unwrap();
    assert_eq!(a.documents.len(), 1, "asked once, between the two waves");
    assert_eq!(
        a.bad_signatures, 0,
        "every document is signed with the secret"
    );
    let d = &a.documents[0];
    assert_eq!(d["change"], format!("CHG-{id}"));
    assert_eq!((&d["wave"], &d["waves"]), (&json!(1), &json!(2)), "{d}");
    assert_eq!(
        (&d["done"], &d["failed"], &d["total"]),
        (&json!(1), &json!(0), &json!(3))
    );
    assert_eq!(d["targets"][0]["id"], inst(1), "{d}");
    assert_eq!(d["targets"][0]["status"], "done");
    assert!(d["sent_at"].is_string(), "{d}");
}

/// The execution halts after wave 1 with `expect` in its reason; wave 2 never ran.
async fn halts_saying(app: &TestApp, id: i64, expect: &str) -> Value {
    let v = app.wait_execution(id, &["halted", "completed"]).await;
    assert_eq!(v["state"], "halted", "{v}");
    let reason = v["halt_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the health check after wave 1 of 2 did not pass"),
        "{reason}"
    );
    assert!(reason.contains(expect), "{expect:?} not in {reason:?}");
    assert_eq!(v["waves"][1]["pending"], 2, "wave 2 did not run: {v}");
    assert_eq!(v["health_checks"][0]["healthy"], false, "{v}");
    v
}

async fn an_unhealthy_answer_halts_and_can_be_resumed(backend: Backend) {
    let (url, _asked) = health_receiver(Health::Unhealthy).await;
    let (app, _dir) = gated_app(backend, &health_lines(&url)).await;
    let id = start(&app).await;
    halts_saying(&app, id, "error rate 4.2% above 1%").await;
    // Everyone involved hears of it, with the endpoint's reason.
    let c = app.change(id).await;
    assert_eq!(c["state"], "halted");
    // An implementer decides: resume runs wave 2 (the health check already spoke).
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/resume"), "carla", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 3, "{v}");
}

async fn a_receiver_that_is_down_or_slow_halts(backend: Backend) {
    // Down: a port nobody listens on.
    let port = crate::smtp::free_port();
    let down = format!("http://127.0.0.1:{port}/health");
    let (app, _dir) = gated_app(backend, &health_lines(&down)).await;
    let id = start(&app).await;
    halts_saying(&app, id, "could not be reached").await;
    drop(app);
    // Slow: answers after 1.5 s, past its 500 ms.
    let (url, _asked) = health_receiver(Health::Slow).await;
    let (app, _dir) = gated_app(backend, &health_lines(&url)).await;
    let id = start(&app).await;
    let started = Instant::now();
    halts_saying(&app, id, "did not answer within 500 ms").await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn a_manual_gate_waits_for_an_implementer(backend: Backend) {
    let (app, _dir) = gated_app(backend, "pause_after_waves = [1]\n").await;
    let id = start(&app).await;
    let v = app.wait_execution(id, &["paused"]).await;
    assert_eq!(v["next_wave"], 2, "{v}");
    assert!(
        v["pause_reason"]
            .as_str()
            .unwrap()
            .contains("paused after wave 1 of 2"),
        "{v}"
    );
    assert_eq!(v["waves"][1]["pending"], 2);
    // Nothing moves by itself.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let v = app.wait_execution(id, &["paused"]).await;
    assert_eq!(v["done"], 1, "{v}");
    // The implementers are told someone must act.
    let told: Vec<String> = {
        use countersign::db::schema::outbox;
        use diesel::prelude::*;
        let mut conn = app.conn();
        outbox::table
            .filter(outbox::change_id.eq(id))
            .filter(outbox::payload.like("%execution_paused%"))
            .select(outbox::recipient)
            .load(&mut conn)
            .unwrap()
    };
    assert!(told.iter().any(|r| r == TestApp::email("dev")), "{told:?}");
    let (_, c) = app.get(&format!("/api/v1/changes/{id}"), "carla").await;
    assert!(
        c["allowed_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "continue"),
        "{c}"
    );
    let b = sign_in(&app, "carla").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(page.contains("Continue to wave 2"), "{page}");
    // Only an implementer continues it.
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/continue"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "not_implementer", "{v}");
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/continue"),
            "carla",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 3, "{v}");
    assert!(v["timeline"][0]["continued_at"].is_string(), "{v}");
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/continue"),
            "carla",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, events) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "execution_baking",
        "execution_paused",
        "execution_continued",
    ] {
        assert!(actions.contains(&a), "{a} missing: {actions:?}");
    }
}

both_backends!(backend:
    a_bake_waits_between_waves,
    a_healthy_answer_lets_the_next_wave_run,
    an_unhealthy_answer_halts_and_can_be_resumed,
    a_receiver_that_is_down_or_slow_halts,
    a_manual_gate_waits_for_an_implementer,
);
