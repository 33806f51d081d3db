//! The external executor against a real HTTP server on loopback: a good receiver, a
//! flapping one (5xx then success), one that confirms the wrong target (halts the wave),
//! and one that stalls past the timeout. Signatures are verified by the receiver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{inst, spawn_app_with, Backend, TestApp};

const SECRET: &str = "loopback-test-secret";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Good,
    /// 503 on the first attempt of every key, then success.
    Flapping,
    /// Confirms another target for inst(3).
    WrongTarget,
    /// Never answers in time for inst(5).
    Stall,
    /// Answers inst(3) with 8 MiB of JSON (the right target, padded).
    Huge,
}

#[derive(Default)]
struct Seen {
    /// idempotency key -> attempts received
    attempts: HashMap<String, u32>,
    bodies: Vec<Value>,
    bad_signatures: u32,
}

async fn hook(
    req: HttpRequest,
    body: web::Bytes,
    mode: web::Data<Mode>,
    seen: web::Data<Arc<Mutex<Seen>>>,
) -> HttpResponse {
    let sig = req
        .headers()
        .get("x-countersign-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let key = v["idempotency_key"].as_str().unwrap().to_string();
    let id = v["target"]["id"].as_str().unwrap().to_string();
    let kind = v["target"]["kind"].as_str().unwrap().to_string();
    let attempt = {
        let mut s = seen.lock().unwrap();
        if sig != want {
            s.bad_signatures += 1;
        }
        s.bodies.push(v.clone());
        let n = s.attempts.entry(key).or_default();
        *n += 1;
        *n
    };
    if sig != want {
        return HttpResponse::Unauthorized().finish();
    }
    match **mode {
        Mode::Flapping if attempt == 1 => HttpResponse::ServiceUnavailable().body("busy"),
        Mode::WrongTarget if id == inst(3) => {
            HttpResponse::Ok().json(json!({"id": inst(4), "kind": kind}))
        }
        Mode::Huge if id == inst(3) => {
            static HUGE: std::sync::OnceLock<web::Bytes> = std::sync::OnceLock::new();
            let body = HUGE.get_or_init(|| {
                let mut b = format!("{{\"id\": \"{id}\", \"kind\": \"{kind}\", \"padding\": \"")
                    .into_bytes();
                b.resize(b.len() + (8 << 20), b'p');
                b.extend_from_slice(b"\"}");
                web::Bytes::from(b)
            });
            HttpResponse::Ok()
                .content_type("application/json")
                .body(body.clone())
        }
        Mode::Stall if id == inst(5) => {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            HttpResponse::Ok().json(json!({"id": id, "kind": kind}))
        }
        _ => HttpResponse::Ok().json(json!({"id": id, "kind": kind, "status": "deprovisioned"})),
    }
}

/// Start a receiver; returns its URL and what it saw.
async fn receiver(mode: Mode) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(mode))
            .app_data(web::Data::new(s2.clone()))
            .route("/hook", web::post().to(hook))
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), seen)
}

async fn app_with_hook(backend: Backend, endpoint: &str) -> Option<(TestApp, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let schema = format!(
        "{}\n\n[operations.deprovision_app]\nlabel = \"Deprovision at the app vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nsignoffs = {{ requester = 1, implementer = 1 }}\nendpoint = \"{endpoint}\"\nsecret_env = \"CS_TEST_HOOK_SECRET\"\ntimeout_ms = 400\nmax_attempts = 3\nwaves = [1, \"50%\"]\n",
        countersign::domain::schema::EXAMPLE_SCHEMA
    );
    std::fs::write(&path, schema).unwrap();
    let app = spawn_app_with(backend, |c| {
        c.schema_path = Some(path.clone());
        c.secrets
            .insert("CS_TEST_HOOK_SECRET".into(), SECRET.into());
    })
    .await?;
    app.load_fixture().await;
    Some((app, dir))
}

const INSIGHT: [u32; 4] = [1, 3, 5, 7];

async fn start(app: &TestApp) -> i64 {
    let ids: Vec<String> = INSIGHT.iter().map(|n| inst(*n)).collect();
    let (id, fp) = app.approved("deprovision_app", json!({"ids": ids})).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    id
}

async fn good_receiver(backend: Backend) {
    let (url, seen) = receiver(Mode::Good).await;
    let Some((app, _dir)) = app_with_hook(backend, &url).await else {
        return;
    };
    let id = start(&app).await;
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 4, "{v}");
    let b = {
        let s = seen.lock().unwrap();
        assert_eq!(s.bad_signatures, 0);
        assert_eq!(s.attempts.len(), 4, "one key per target");
        assert!(
            s.attempts.values().all(|n| *n == 1),
            "each target sent once"
        );
        s.bodies[0].clone()
    };
    assert_eq!(b["change"], format!("CHG-{id}"));
    assert_eq!(b["operation"], "deprovision_app");
    assert_eq!(b["target"]["kind"], "app_install");
    assert_eq!(b["target"]["id"], inst(1));
    assert_eq!(
        b["target"]["scope_path"],
        format!("org-00000001/{}", crate::helpers::site(1))
    );
    assert!(b["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    // Webhooks do not touch the inventory.
    assert_eq!(app.entity(&inst(1)).await["state"], "active");
}

async fn flapping_receiver_is_retried(backend: Backend) {
    let (url, seen) = receiver(Mode::Flapping).await;
    let Some((app, _dir)) = app_with_hook(backend, &url).await else {
        return;
    };
    let id = start(&app).await;
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 4, "{v}");
    let (_, items) = app
        .get(&format!("/api/v1/changes/{id}/execution/items"), "ana")
        .await;
    for it in items["items"].as_array().unwrap() {
        assert_eq!(it["status"], "done");
        assert_eq!(it["attempts"], 2, "{it}");
    }
    assert!(seen.lock().unwrap().attempts.values().all(|n| *n == 2));
}

async fn wrong_target_halts_then_resume(backend: Backend) {
    let (url, _seen) = receiver(Mode::WrongTarget).await;
    let Some((app, _dir)) = app_with_hook(backend, &url).await else {
        return;
    };
    let id = start(&app).await;
    // Wave 2 (inst 3 and 5) has a failure: halted, wave 3 (inst 7) not run.
    let v = app.wait_execution(id, &["halted"]).await;
    assert_eq!(v["change_state"], "halted");
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["done"], 2, "{v}");
    assert_eq!(v["pending"], 1, "{v}");
    assert!(v["halt_reason"].as_str().unwrap().contains("wave 2"), "{v}");
    let f = &v["failures"][0];
    assert_eq!(f["id"], inst(3));
    assert!(f["error"].as_str().unwrap().contains("instead of"), "{f}");
    // Only the implementing team resumes.
    let (s, _) = app
        .post(&format!("/api/v1/changes/{id}/resume"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/resume"), "carla", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = app.wait_execution(id, &["partially_failed"]).await;
    assert_eq!(v["done"], 3);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["change_state"], "partially_failed");
}

async fn halted_execution_can_be_aborted(backend: Backend) {
    let (url, seen) = receiver(Mode::WrongTarget).await;
    let Some((app, _dir)) = app_with_hook(backend, &url).await else {
        return;
    };
    let id = start(&app).await;
    app.wait_execution(id, &["halted"]).await;
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/abort"),
            "carla",
            json!({"reason": "vendor confused"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "aborted");
    assert_eq!(v["skipped"], 1);
    assert_eq!(v["pending"], 0);
    assert!(v["skipped_items"][0]["error"]
        .as_str()
        .unwrap()
        .contains("vendor confused"));
    // Nothing more is sent.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!seen
        .lock()
        .unwrap()
        .bodies
        .iter()
        .any(|b| b["target"]["id"] == inst(7)));
    let (s, _) = app
        .post(&format!("/api/v1/changes/{id}/resume"), "carla", json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

async fn stalled_receiver_times_out(backend: Backend) {
    let (url, seen) = receiver(Mode::Stall).await;
    let Some((app, _dir)) = app_with_hook(backend, &url).await else {
        return;
    };
    let id = start(&app).await;
    let v = app.wait_execution(id, &["halted"]).await;
    let f = &v["failures"][0];
    assert_eq!(f["id"], inst(5), "{v}");
    assert_eq!(f["attempts"], 3, "{f}");
    assert!(
        f["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{f}"
    );
    let n = seen
        .lock()
        .unwrap()
        .attempts
        .values()
        .filter(|n| **n == 3)
        .count();
    assert_eq!(n, 1);
}

/// An answer larger than 64 KiB fails its target (it is not read further), the others
/// are done.
async fn oversized_answer_fails_the_target(backend: Backend) {
    let (url, _seen) = receiver(Mode::Huge).await;
    let Some((app, _dir)) = app_with_hook(backend, &url).await else {
        return;
    };
    let id = start(&app).await;
    let v = app.wait_execution(id, &["halted"]).await;
    let f = &v["failures"][0];
    assert_eq!(f["id"], inst(3), "{v}");
    assert_eq!(f["attempts"], 1, "not retried: {f}");
    let e = f["error"].as_str().unwrap();
    assert!(e.contains("more than 64 KiB"), "{e}");
}

macro_rules! webhook_tests {
    ($($name:ident),*) => {$(
        mod $name {
            use crate::helpers::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() { super::$name(Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() { super::$name(Backend::Postgres).await }
        }
    )*};
}

webhook_tests!(
    good_receiver,
    flapping_receiver_is_retried,
    wrong_target_halts_then_resume,
    halted_execution_can_be_aborted,
    stalled_receiver_times_out,
    oversized_answer_fails_the_target
);
