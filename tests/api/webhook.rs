//! The external executor against a real HTTP server on loopback: a good receiver, a
//! flapping one (5xx then success), one that confirms the wrong target (halts the wave),
//! and one that stalls past the timeout. Signatures are verified by the receiver.
//! Concurrency: a slow receiver counts the calls in flight at once (never more than the
//! operation's `concurrency`, more than one when it allows), records arrival times (the
//! `max_per_second` pace) and sees nothing new soon after an abort.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use countersign::config::Secret;

use crate::both_backends;
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
    /// Answers every target after this many milliseconds.
    Slow(u64),
}

#[derive(Default)]
struct Seen {
    /// idempotency key -> attempts received
    attempts: HashMap<String, u32>,
    bodies: Vec<Value>,
    bad_signatures: u32,
    /// Requests being answered now, and the most at once.
    in_flight: u32,
    max_in_flight: u32,
    /// When each request arrived (in arrival order).
    arrivals: Vec<Instant>,
}

/// Counts a request out of `in_flight` however its handler ends.
struct InFlight(Arc<Mutex<Seen>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.in_flight -= 1;
    }
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
        s.arrivals.push(Instant::now());
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        let n = s.attempts.entry(key).or_default();
        *n += 1;
        *n
    };
    let _in_flight = InFlight(seen.get_ref().clone());
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
        Mode::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
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

async fn app_with_hook(backend: Backend, endpoint: &str) -> (TestApp, tempfile::TempDir) {
    app_with_hook_opts(
        backend,
        endpoint,
        "timeout_ms = 400\nmax_attempts = 3\nwaves = [1, \"50%\"]\n",
    )
    .await
}

/// An app whose `deprovision_app` webhook operation has these extra schema lines.
async fn app_with_hook_opts(
    backend: Backend,
    endpoint: &str,
    extra: &str,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let schema = format!(
        "{}\n\n[operations.deprovision_app]\nlabel = \"Deprovision at the app vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nsignoffs = {{ requester = 1, implementer = 1 }}\nendpoint = \"{endpoint}\"\nsecret_env = \"CS_TEST_HOOK_SECRET\"\n{extra}",
        countersign::domain::schema::EXAMPLE_SCHEMA
    );
    std::fs::write(&path, schema).unwrap();
    let app = spawn_app_with(backend, |c| {
        c.schema_path = Some(path.clone());
        c.secrets
            .insert("CS_TEST_HOOK_SECRET".into(), Secret::new(SECRET));
    })
    .await;
    app.load_fixture().await;
    (app, dir)
}

/// `n` more insight installations on site 1 (inst(1000) on); returns their IDs.
async fn more_targets(app: &TestApp, n: u32) -> Vec<String> {
    let lines: Vec<String> = (1000..1000 + n)
        .map(|a| {
            json!({"kind": "app_install", "id": inst(a), "parent": crate::helpers::site(1), "name": format!("insight {a}"), "attrs": {"app": "insight", "version": "1.0.0"}}).to_string()
        })
        .collect();
    let (s, v) = app.import("carla", &lines, false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (1000..1000 + n).map(inst).collect()
}

/// Approve and execute a change over `ids`; returns its id.
async fn start_with(app: &TestApp, ids: &[String]) -> i64 {
    let (id, fp) = app.approved("deprovision_app", json!({"ids": ids})).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    id
}

/// Every item done in one attempt, and the receiver got each key exactly once.
async fn each_target_once(app: &TestApp, id: i64, seen: &Mutex<Seen>, n: usize) {
    let (_, items) = app
        .get(
            &format!("/api/v1/changes/{id}/execution/items?limit=1000"),
            "ana",
        )
        .await;
    let items = items["items"].as_array().unwrap();
    assert_eq!(items.len(), n);
    for it in items {
        assert_eq!(it["status"], "done", "{it}");
        assert_eq!(it["attempts"], 1, "{it}");
    }
    let s = seen.lock().unwrap();
    assert_eq!(s.bad_signatures, 0);
    assert_eq!(s.attempts.len(), n, "one key per target");
    assert!(
        s.attempts.values().all(|a| *a == 1),
        "each target sent once"
    );
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
    let (app, _dir) = app_with_hook(backend, &url).await;
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
    let (app, _dir) = app_with_hook(backend, &url).await;
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
    let (app, _dir) = app_with_hook(backend, &url).await;
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
    let (app, _dir) = app_with_hook(backend, &url).await;
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
    let (app, _dir) = app_with_hook(backend, &url).await;
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
    let (app, _dir) = app_with_hook(backend, &url).await;
    let id = start(&app).await;
    let v = app.wait_execution(id, &["halted"]).await;
    let f = &v["failures"][0];
    assert_eq!(f["id"], inst(3), "{v}");
    assert_eq!(f["attempts"], 1, "not retried: {f}");
    let e = f["error"].as_str().unwrap();
    assert!(e.contains("more than 64 KiB"), "{e}");
}

/// `concurrency = 8`: the receiver sees several calls at once, never more than 8, and
/// every target is recorded exactly once.
async fn concurrent_calls(backend: Backend) {
    let (url, seen) = receiver(Mode::Slow(150)).await;
    let (app, _dir) = app_with_hook_opts(backend, &url, "concurrency = 8\nwaves = [64]\n").await;
    let ids = more_targets(&app, 64).await;
    let id = start_with(&app, &ids).await;
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 64, "{v}");
    each_target_once(&app, id, &seen, 64).await;
    let max = seen.lock().unwrap().max_in_flight;
    eprintln!("concurrency 8: at most {max} calls in flight at the receiver");
    assert!(max <= 8, "more calls in flight than `concurrency`: {max}");
    // 64 calls of 150 ms through 8 slots overlap; a generous bound, not a timing race.
    assert!(max >= 4, "calls did not overlap: at most {max} in flight");
}

/// `concurrency = 1`: one call at a time, in target order.
async fn sequential_with_concurrency_1(backend: Backend) {
    let (url, seen) = receiver(Mode::Slow(20)).await;
    let (app, _dir) = app_with_hook_opts(backend, &url, "concurrency = 1\nwaves = [12]\n").await;
    let ids = more_targets(&app, 12).await;
    let id = start_with(&app, &ids).await;
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 12, "{v}");
    each_target_once(&app, id, &seen, 12).await;
    let s = seen.lock().unwrap();
    assert_eq!(s.max_in_flight, 1);
    let order: Vec<&str> = s
        .bodies
        .iter()
        .map(|b| b["target"]["id"].as_str().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "sent one after the other, in order");
}

/// `max_per_second = 10`: 20 calls (concurrency 8, an instant receiver) spread over
/// about two seconds, never many more than 10 within one second.
async fn max_per_second_is_respected(backend: Backend) {
    let (url, seen) = receiver(Mode::Good).await;
    let (app, _dir) = app_with_hook_opts(
        backend,
        &url,
        "concurrency = 8\nmax_per_second = 10\nwaves = [20]\n",
    )
    .await;
    let ids = more_targets(&app, 20).await;
    let id = start_with(&app, &ids).await;
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 20, "{v}");
    each_target_once(&app, id, &seen, 20).await;
    let arrivals = seen.lock().unwrap().arrivals.clone();
    let span = *arrivals.last().unwrap() - arrivals[0];
    // Paced at 10/s the 20 calls take about 1.9 s; unpaced, a few milliseconds.
    assert!(
        span >= Duration::from_millis(1200),
        "20 calls within {span:?}"
    );
    for (i, t) in arrivals.iter().enumerate() {
        let within = arrivals[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_secs(1))
            .count();
        assert!(within <= 13, "{within} calls within one second");
    }
}

/// An abort while calls are in flight: the worker notices at its next lease renewal and
/// starts nothing more (at most the calls it had in flight, twice over, arrive after).
async fn abort_stops_sending(backend: Backend) {
    let (url, seen) = receiver(Mode::Slow(300)).await;
    let (app, _dir) = app_with_hook_opts(backend, &url, "concurrency = 4\nwaves = [64]\n").await;
    let ids = more_targets(&app, 64).await;
    let id = start_with(&app, &ids).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().arrivals.len() < 8 {
        assert!(Instant::now() < deadline, "the receiver saw nothing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/abort"),
            "carla",
            json!({"reason": "stop"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let at_abort = seen.lock().unwrap().arrivals.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = seen.lock().unwrap().arrivals.len();
    assert!(
        after <= at_abort + 8,
        "{} calls arrived after the abort",
        after - at_abort
    );
    let v = app.wait_execution(id, &["aborted"]).await;
    assert_eq!(
        v["done"].as_i64().unwrap() + v["skipped"].as_i64().unwrap(),
        64,
        "{v}"
    );
    assert!(seen.lock().unwrap().attempts.values().all(|a| *a == 1));
}

both_backends!(
    backend:
    good_receiver,
    flapping_receiver_is_retried,
    wrong_target_halts_then_resume,
    halted_execution_can_be_aborted,
    stalled_receiver_times_out,
    oversized_answer_fails_the_target,
    concurrent_calls,
    sequential_with_concurrency_1,
    max_per_second_is_respected,
    abort_stops_sending
);
