//! A webhook operation's undo (issue #12): `deprovision_app` declares
//! `undo = "reprovision_app"`, so it is reversible — not labelled irreversible, no extra
//! implementer sign-off — and its rollback calls the undo's endpoint, signed with the
//! undo's secret, for exactly the targets the execution did (a receiver on loopback
//! refuses one of them). A webhook without an undo (`notify_vendor`) still refuses a
//! rollback.

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use countersign::config::Secret;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};
use crate::web::sign_in;

const HOOK_SECRET: &str = "loopback-hook-secret";
const UNDO_SECRET: &str = "loopback-undo-secret";
const INSIGHT: [u32; 4] = [1, 3, 5, 7];

/// One request the receiver got: its path, its body, whether its signature is valid for
/// that path's secret.
#[derive(Clone)]
struct Call {
    path: String,
    body: Value,
    signed: bool,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// `/hook` refuses inst(3) (422, not retried); everything else is confirmed.
async fn hook(req: HttpRequest, body: web::Bytes, calls: web::Data<Calls>) -> HttpResponse {
    let path = req.path().to_string();
    let secret = if path == "/undo" {
        UNDO_SECRET
    } else {
        HOOK_SECRET
    };
    let sig = req
        .headers()
        .get("x-countersign-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let signed = sig == format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let (id, kind) = (v["target"]["id"].clone(), v["target"]["kind"].clone());
    calls.lock().unwrap().push(Call {
        path: path.clone(),
        body: v,
        signed,
    });
    if !signed {
        return HttpResponse::Unauthorized().finish();
    }
    if path == "/hook" && id == inst(3) {
        return HttpResponse::UnprocessableEntity().body("not installed at the vendor");
    }
    HttpResponse::Ok().json(json!({"id": id, "kind": kind}))
}

/// Start the receiver; returns its base URL and what it got.
async fn receiver() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let c2 = calls.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(c2.clone()))
            .route("/hook", web::post().to(hook))
            .route("/undo", web::post().to(hook))
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), calls)
}

/// An app with `deprovision_app` (undone by `reprovision_app`, its own endpoint and
/// secret) and `notify_vendor` (no undo), all on one wave that tolerates a failure.
async fn app_with_undo(backend: Backend, base: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let hook = |name: &str, label: &str, endpoint: &str, secret: &str, extra: &str| {
        format!("\n[operations.{name}]\nlabel = \"{label}\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nsignoffs = {{ requester = 1, implementer = 1 }}\nendpoint = \"{base}{endpoint}\"\nsecret_env = \"{secret}\"\ntimeout_ms = 2000\nmax_attempts = 2\nwaves = [4]\nfailure_threshold = 0.5\n{extra}")
    };
    let schema = format!(
        "{}\n{}{}{}",
        countersign::domain::schema::EXAMPLE_SCHEMA,
        hook(
            "deprovision_app",
            "Deprovision at the app vendor",
            "/hook",
            "CS_TEST_HOOK_SECRET",
            "undo = \"reprovision_app\"\n"
        ),
        hook(
            "reprovision_app",
            "Reprovision at the app vendor",
            "/undo",
            "CS_TEST_UNDO_SECRET",
            ""
        ),
        hook(
            "notify_vendor",
            "Notify the app vendor",
            "/hook",
            "CS_TEST_HOOK_SECRET",
            ""
        ),
    );
    std::fs::write(&path, schema).unwrap();
    let app = spawn_app_with(backend, |c| {
        c.schema_path = Some(path.clone());
        c.secrets
            .insert("CS_TEST_HOOK_SECRET".into(), Secret::new(HOOK_SECRET));
        c.secrets
            .insert("CS_TEST_UNDO_SECRET".into(), Secret::new(UNDO_SECRET));
    })
    .await;
    app.load_fixture().await;
    (app, dir)
}

fn insight() -> Vec<String> {
    INSIGHT.iter().map(|n| inst(*n)).collect()
}

/// The change page as ana sees it.
async fn page(app: &TestApp, id: i64) -> String {
    let b = sign_in(app, "ana").await;
    let (s, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert_eq!(s, StatusCode::OK);
    page
}

async fn a_webhook_with_an_undo_is_rolled_back_by_calling_it(backend: Backend) {
    let (base, calls) = receiver().await;
    let (app, _dir) = app_with_undo(backend, &base).await;
    // Reversible: no irreversible label, no extra implementer sign-off.
    let (id, fp) = app
        .submitted("ana", "deprovision_app", json!({"ids": insight()}))
        .await;
    let c = app.change(id).await;
    assert!(c["irreversible"].is_null(), "{c}");
    assert_eq!(c["policy"]["implementer"], 1, "{c}");
    let undo = &c["summary"]["undo"];
    assert_eq!(undo["reversible"], true, "{undo}");
    assert_eq!(
        undo["text"],
        "Reversible: one rollback calls Reprovision at the app vendor for the 4 App installations that were done"
    );
    let b = sign_in(&app, "ana").await;
    let (_, glossary) = b.get("/glossary").await;
    assert!(
        glossary.contains("call an external executor, undone by Reprovision at the app vendor"),
        "{glossary}"
    );
    let html = page(&app, id).await;
    assert!(!html.contains(r#"id="irreversible""#), "{html}");
    assert!(!html.contains("undo-irreversible"), "{html}");
    // One requester, one implementer: approved.
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(id, "carla", "implementer", &fp, Some(4)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // The receiver refuses inst(3): three done, one failed.
    let v = app.wait_execution(id, &["partially_failed"]).await;
    assert_eq!(
        (v["done"].as_i64(), v["failed"].as_i64()),
        (Some(3), Some(1)),
        "{v}"
    );

    // The rollback: the undo over exactly the three done targets.
    let (s, rb) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb_id = rb["id"].as_i64().unwrap();
    let rfp = rb["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(rb["rollback_of"], format!("CHG-{id}"));
    assert_eq!(
        rb["operation"]["label"], "Reprovision at the app vendor",
        "{rb}"
    );
    assert_eq!(rb["operation"]["effect"], "webhook");
    assert_eq!(
        rb["operation"]["effect_text"],
        "calls Reprovision at the app vendor"
    );
    assert_eq!(rb["operation"]["undoes"], "Deprovision at the app vendor");
    assert_eq!(rb["summary"]["targets"], 3, "{rb}");
    assert!(rb["irreversible"].is_null(), "{rb}");
    assert_eq!(rb["policy"]["implementer"], 1, "{rb}");
    // Its targets name the undo's endpoint.
    let (s, list) = app
        .get(&format!("/api/v1/changes/{rb_id}/targets"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let mut want = vec![inst(1), inst(5), inst(7)];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(list["targets"][0]["effect"]["type"], "webhook");
    assert_eq!(
        list["targets"][0]["effect"]["endpoint_host"],
        base.trim_start_matches("http://")
    );
    assert!(page(&app, rb_id)
        .await
        .contains("calls Reprovision at the app vendor"));
    // ana wrote it: ben and carla sign; no extra implementer.
    let (s, v) = app.sign(rb_id, "ben", "requester", &rfp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(rb_id, "carla", "implementer", &rfp, Some(3)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    let (s, v) = app.execute(rb_id, &rfp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(rb_id, &["completed"]).await;
    assert_eq!(v["done"], 3, "{v}");

    let calls = calls.lock().unwrap().clone();
    assert!(calls.iter().all(|c| c.signed), "a call was signed wrongly");
    let hooked = calls.iter().filter(|c| c.path == "/hook").count();
    assert_eq!(
        hooked, 4,
        "the original endpoint got its four calls and no more"
    );
    let undone: Vec<&Call> = calls.iter().filter(|c| c.path == "/undo").collect();
    let mut got: Vec<String> = undone
        .iter()
        .map(|c| c.body["target"]["id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, want, "the undo is called for exactly the done targets");
    for c in &undone {
        let b = &c.body;
        assert_eq!(b["change"], format!("CHG-{rb_id}"), "{b}");
        assert_eq!(b["rollback_of"], format!("CHG-{id}"), "{b}");
        assert_eq!(b["rollback_of_id"], id, "{b}");
        assert_eq!(b["operation"], "reprovision_app", "{b}");
        assert_eq!(b["undoes"], "deprovision_app", "{b}");
        assert_eq!(b["fingerprint"], rfp.as_str(), "{b}");
        let key = b["idempotency_key"].as_str().unwrap();
        assert!(key.starts_with("rollback-"), "{key}");
    }
    // The original calls say nothing of a rollback, and their keys differ.
    for c in calls.iter().filter(|c| c.path == "/hook") {
        assert!(c.body.get("rollback_of").is_none(), "{}", c.body);
        assert_eq!(c.body["operation"], "deprovision_app");
        assert!(!c.body["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("rollback-"));
    }
    // A rollback is not rolled back.
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{rb_id}/rollback"),
            "ana",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "not_reversible");
}

async fn a_webhook_without_an_undo_stays_irreversible(backend: Backend) {
    let (base, calls) = receiver().await;
    let (app, _dir) = app_with_undo(backend, &base).await;
    let ids = vec![inst(1), inst(5)];
    let (id, fp) = app
        .submitted("ana", "notify_vendor", json!({"ids": ids}))
        .await;
    let c = app.change(id).await;
    assert_eq!(
        c["irreversible"],
        "1 more implementer sign-off because no rollback can undo it"
    );
    assert_eq!(c["policy"]["implementer"], 2, "{c}");
    assert_eq!(c["summary"]["undo"]["reversible"], false);
    assert!(page(&app, id).await.contains(r#"id="irreversible""#));
    app.approve(id, &fp).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["completed"]).await;
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "not_reversible", "{v}");
    assert!(app.change(id).await["rolled_back_by"].is_null());
    assert!(calls.lock().unwrap().iter().all(|c| c.path == "/hook"));
}

both_backends!(
    backend:
    a_webhook_with_an_undo_is_rolled_back_by_calling_it,
    a_webhook_without_an_undo_stays_irreversible
);
