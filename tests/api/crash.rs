//! Exactly once across crashes: a 10,000-target soft delete runs in a real `countersign
//! serve` process that is killed with SIGKILL several times mid-execution and restarted.
//! At the end, the item table and the inventory must match the signed list exactly:
//! every target deleted once (one attempt, one version row), nothing else touched.
//!
//! The same for a webhook operation with `concurrency = 16` against a loopback receiver
//! in this process: every target recorded done once, and the receiver saw exactly the
//! execution's idempotency keys — a target whose answer was not recorded before a kill
//! is sent again with the same key (and the same attempt number), never under another.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign::db::audit::Actor;
use countersign::db::schema::{entities, entity_versions, execution_items, executions};
use countersign::db::{self, users, write_tx, DatabaseUrl};
use countersign::domain::selector::{Scope, Selector};
use countersign::domain::signoff::Side;
use countersign::error::AppError;
use countersign::service::changes::{self as svc, CreateChange, SignRequest};
use countersign::service::CurrentUser;
use diesel::prelude::*;
use serde_json::json;

use crate::helpers::{Backend, TestDb};

pub(crate) const SITES: u32 = 100;
const APPS_PER_SITE: u32 = 100;
pub(crate) const TARGETS: i64 = (SITES * APPS_PER_SITE) as i64;

use crate::smtp::free_port;

/// `countersign serve`, with the schema (and the webhook secret) of `hook` if given.
pub(crate) fn serve_with(url: &str, port: u16, hook: Option<&Path>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_countersign"));
    if let Some(schema) = hook {
        cmd.env("COUNTERSIGN_SCHEMA", schema)
            .env(HOOK_SECRET_ENV, HOOK_SECRET);
    } else {
        cmd.env_remove("COUNTERSIGN_SCHEMA");
    }
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env("COUNTERSIGN_EXEC_BATCH", "100")
        .env("COUNTERSIGN_EXEC_THROTTLE_MS", "15")
        .env("COUNTERSIGN_LEASE_SECS", "1")
        .env("COUNTERSIGN_POLL_MS", "100")
        // This test is about execution; its mails stay in the outbox (and out of the repo).
        .env("COUNTERSIGN_MAILER", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start countersign serve")
}

pub(crate) async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on port {port} did not become ready");
}

fn user(conn: &mut db::DbConn, email: &str) -> CurrentUser {
    let u = users::find_user_by_email(conn, email).unwrap().unwrap();
    CurrentUser::load(conn, u).unwrap()
}

/// Inventory, people and an approved 10,000-target change of `operation` (under the
/// schema at `schema_path`, or the built-in one); returns (change id, fingerprint,
/// implementer token).
pub(crate) fn prepare(
    url: &DatabaseUrl,
    schema_path: Option<&Path>,
    operation: &str,
) -> (i64, String, String) {
    let mut config = countersign::config::Config::for_database(url.clone());
    config.schema_path = schema_path.map(Path::to_path_buf);
    let (schema, source) = config.load_schema().unwrap();
    let pool = db::build_pool(url, 2).unwrap();
    countersign::web::prepare_database(&pool, &schema, &source).unwrap();
    let mut conn = pool.get().unwrap();
    let token = write_tx(&mut conn, |c| -> Result<String, AppError> {
        users::create_team(c, "app-owners")?;
        users::create_team(c, "platform-ops")?;
        let mut token = String::new();
        for (email, team) in [
            ("ana@req.example", "app-owners"),
            ("ben@req.example", "app-owners"),
            ("carla@ops.example", "platform-ops"),
            ("dev@ops.example", "platform-ops"),
        ] {
            let u = users::create_user(c, email, email, false)?;
            let t = users::find_team(c, team)?.unwrap();
            users::add_member(c, t.id, u.id)?;
            if email == "carla@ops.example" {
                token = users::create_token(c, u.id, "crash test")?;
            }
        }
        Ok(token)
    })
    .unwrap();
    // 1 org, 100 sites, 100 insight installations each; plus a ledger app per site
    // that must survive untouched.
    let mut lines =
        vec![json!({"kind": "org", "id": "org-0000c0de", "name": "Crash Corp"}).to_string()];
    for s in 0..SITES {
        let site = format!("5f0c6a52-0000-4000-8000-{s:012x}");
        lines.push(
            json!({"kind": "site", "id": site, "parent": "org-0000c0de", "name": format!("s{s}")})
                .to_string(),
        );
        for a in 0..=APPS_PER_SITE {
            let app = if a == APPS_PER_SITE {
                "ledger"
            } else {
                "insight"
            };
            lines.push(json!({"kind": "app_install", "id": format!("0b1c2d3e-{s:04x}-4000-8000-{a:012x}"), "parent": site, "name": format!("{app} {s}/{a}"), "attrs": {"app": app, "version": "1.0.0"}}).to_string());
        }
    }
    let report = db::inventory::import(
        &mut conn,
        &schema,
        lines.into_iter().map(Ok),
        false,
        &Actor::system(),
    )
    .unwrap();
    assert!(report.committed);
    let ana = user(&mut conn, "ana@req.example");
    let ben = user(&mut conn, "ben@req.example");
    let carla = user(&mut conn, "carla@ops.example");
    let dev = user(&mut conn, "dev@ops.example");
    let id = svc::create(
        &mut conn,
        &schema,
        &ana,
        CreateChange {
            title: "Uninstall insight everywhere".into(),
            rationale: "crash test".into(),
            requesting_team: "app-owners".into(),
            operation: operation.into(),
            params: json!({}),
            targets: Selector {
                ids: vec![],
                within: Some(Scope {
                    kind: "org".into(),
                    ids: vec!["org-0000c0de".into()],
                }),
                filter: [("app".to_string(), "insight".to_string())].into(),
            },
            expect: None,
            not_before: None,
            not_after: None,
            submit: false,
        },
    )
    .unwrap();
    svc::submit(&mut conn, &schema, &ana, id).unwrap();
    let fp = svc::view(&mut conn, &schema, id)
        .unwrap()
        .fingerprint
        .unwrap();
    // A webhook cannot be rolled back: one more implementer signs it.
    let needed = svc::view(&mut conn, &schema, id)
        .unwrap()
        .policy
        .implementer;
    let implementers = [&carla, &dev].into_iter().take(needed as usize);
    let signers = std::iter::once((&ben, Side::Requester, None))
        .chain(implementers.map(|who| (who, Side::Implementer, Some(TARGETS as u64))));
    for (who, side, count) in signers {
        svc::sign(
            &mut conn,
            &schema,
            who,
            id,
            SignRequest {
                side,
                fingerprint: fp.clone(),
                comment: String::new(),
                confirm_count: count,
                text_hash: None,
                replaces: None,
            },
        )
        .unwrap();
    }
    (id, fp, token)
}

pub(crate) fn progress(conn: &mut db::DbConn) -> (String, i64) {
    executions::table
        .select((executions::state, executions::done))
        .first(conn)
        .unwrap_or(("none".into(), 0))
}

/// Execute the change in a `countersign serve` that is killed with SIGKILL several times
/// mid-execution and restarted, until the execution ends; returns each kill's (state,
/// done) as the database saw it right after.
async fn execute_with_kills(
    url: &DatabaseUrl,
    conn: &mut db::DbConn,
    (change_id, fp, token): (i64, &str, &str),
    hook: Option<&Path>,
    kill_delay: Duration,
) -> Vec<(String, i64)> {
    let db_url = match url {
        DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        DatabaseUrl::Postgres(u) => u.clone(),
    };
    let mut port = free_port();
    let mut child = serve_with(&db_url, port, hook);
    wait_ready(port).await;
    let res = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/changes/{change_id}/execute"
        ))
        .bearer_auth(token)
        .json(&json!({"fingerprint": fp}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        reqwest::StatusCode::ACCEPTED,
        "{}",
        res.text().await.unwrap()
    );

    // Kill -9 as soon as the execution has passed each mark, then restart: 4 kills in CI,
    // COUNTERSIGN_CRASH_KILLS of them from scripts/crash-run.
    let n: i64 = std::env::var("COUNTERSIGN_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .clamp(1, 50);
    let marks: Vec<i64> = (1..=n).map(|i| TARGETS * i / (n + 1)).collect();
    let mut kills = Vec::new();
    for mark in marks {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (state, done) = progress(conn);
            if done >= mark || state != "running" {
                break;
            }
            assert!(Instant::now() < deadline, "no progress past {done}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A mark is passed right after a batch commits; the delay lands the kill inside
        // the next batch (a webhook batch's calls take at least 16 × 10 ms).
        tokio::time::sleep(kill_delay).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (state, done) = progress(conn);
        kills.push((state.clone(), done));
        port = free_port();
        child = serve_with(&db_url, port, hook);
        wait_ready(port).await;
    }
    let mid_run = kills
        .iter()
        .filter(|(s, d)| s == "running" && *d > 0 && *d < TARGETS)
        .count();
    assert!(
        mid_run as i64 >= (n * 3 / 4).max(1),
        "the kills must land mid-execution: {kills:?}"
    );
    eprintln!("{} kills, {mid_run} mid-execution: {kills:?}", kills.len());

    // The restarted server takes over once the dead worker's lease expires.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (state, done) = progress(conn);
        if state != "running" {
            break;
        }
        assert!(Instant::now() < deadline, "stuck at {done}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    kills
}

async fn kill_9_during_execution(backend: Backend) {
    let db = TestDb::new(backend);
    let url = db.url.clone();
    let (change_id, fp, token) = prepare(&url, None, "uninstall_app");
    let pool = db::build_pool(&url, 2).unwrap();
    let mut conn = pool.get().unwrap();
    let kills = execute_with_kills(
        &url,
        &mut conn,
        (change_id, &fp, &token),
        None,
        Duration::ZERO,
    )
    .await;

    assert_deleted_exactly_once(&mut conn, change_id, &format!("kills: {kills:?}"));
}

/// The end state after crashes: completed, each signed target done in one attempt and
/// deleted once by this change (one version row), nothing else touched, the audit chain
/// intact.
pub(crate) fn assert_deleted_exactly_once(conn: &mut db::DbConn, change_id: i64, context: &str) {
    // The execution and every item: completed, each target done exactly once.
    let (state, done, failed, skipped): (String, i64, i64, i64) = executions::table
        .select((
            executions::state,
            executions::done,
            executions::failed,
            executions::skipped,
        ))
        .first(conn)
        .unwrap();
    assert_eq!(
        (state.as_str(), done, failed, skipped),
        ("completed", TARGETS, 0, 0),
        "{context}"
    );
    let items: Vec<(String, String, i64)> = execution_items::table
        .select((
            execution_items::entity_id,
            execution_items::status,
            execution_items::attempts,
        ))
        .load(conn)
        .unwrap();
    assert_eq!(items.len() as i64, TARGETS);
    assert!(
        items.iter().all(|(_, s, a)| s == "done" && *a == 1),
        "every item done in one attempt"
    );
    let signed: BTreeSet<String> = countersign::db::changes::target_ids(conn, change_id)
        .unwrap()
        .into_iter()
        .collect();
    let item_ids: BTreeSet<String> = items.into_iter().map(|i| i.0).collect();
    assert_eq!(item_ids, signed);
    // The inventory: exactly the signed list is deleted, by this change, once.
    let deleted: BTreeSet<String> = entities::table
        .filter(entities::state.eq("deleted"))
        .select(entities::id)
        .load::<String>(conn)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(deleted, signed);
    let by_other: i64 = entities::table
        .filter(entities::state.eq("deleted"))
        .filter(entities::deleted_by.ne(change_id))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(by_other, 0);
    let versions: Vec<(String, i64)> = entity_versions::table
        .filter(entity_versions::change_id.eq(change_id))
        .select((entity_versions::entity_id, entity_versions::version))
        .load(conn)
        .unwrap();
    assert_eq!(versions.len() as i64, TARGETS, "one version row per target");
    assert!(versions.iter().all(|(_, v)| *v == 2));
    let untouched: i64 = entities::table
        .filter(entities::state.eq("active"))
        .filter(entities::version.eq(1))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(
        untouched,
        1 + SITES as i64 * 2,
        "the org, the sites and the ledger apps"
    );
    // And the audit chain survived the kills.
    assert!(matches!(
        countersign::db::audit::verify(conn).unwrap(),
        countersign::db::audit::Verdict::Intact { .. }
    ));
}

const HOOK_SECRET_ENV: &str = "CS_CRASH_HOOK_SECRET";
const HOOK_SECRET: &str = "crash-hook-secret";

/// What the loopback receiver saw: per idempotency key, the `attempt` of each call.
type Calls = Arc<Mutex<HashMap<String, Vec<i64>>>>;

async fn crash_hook(
    req: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
    calls: actix_web::web::Data<Calls>,
) -> actix_web::HttpResponse {
    let sig = countersign::exec::webhook::sign(HOOK_SECRET.as_bytes(), &body);
    let got = req
        .headers()
        .get(countersign::exec::webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if got != Some(sig.as_str()) {
        return actix_web::HttpResponse::Unauthorized().finish();
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    calls
        .lock()
        .unwrap()
        .entry(v["idempotency_key"].as_str().unwrap().to_string())
        .or_default()
        .push(v["attempt"].as_i64().unwrap());
    tokio::time::sleep(Duration::from_millis(10)).await;
    actix_web::HttpResponse::Ok()
        .json(json!({"id": v["target"]["id"], "kind": v["target"]["kind"]}))
}

/// A receiver on loopback (answers after 10 ms) and a schema whose `deprovision_app`
/// calls it with `concurrency = 16`; returns (schema path, what the receiver saw).
fn hook_schema(dir: &Path) -> (PathBuf, Calls) {
    let calls: Calls = Arc::default();
    let c2 = calls.clone();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(actix_web::web::Data::new(c2.clone()))
            .route("/hook", actix_web::web::post().to(crash_hook))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    let path = dir.join("schema.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n\n[operations.deprovision_app]\nlabel = \"Deprovision at the app vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"http://127.0.0.1:{port}/hook\"\nsecret_env = \"{HOOK_SECRET_ENV}\"\nconcurrency = 16\nconfirm_above = 0\n",
            countersign::domain::schema::EXAMPLE_SCHEMA
        ),
    )
    .unwrap();
    (path, calls)
}

async fn kill_9_during_webhook_execution(backend: Backend) {
    let db = TestDb::new(backend);
    let url = db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let (schema, calls) = hook_schema(dir.path());
    let (change_id, fp, token) = prepare(&url, Some(&schema), "deprovision_app");
    let pool = db::build_pool(&url, 2).unwrap();
    let mut conn = pool.get().unwrap();
    let kills = execute_with_kills(
        &url,
        &mut conn,
        (change_id, &fp, &token),
        Some(&schema),
        Duration::from_millis(40),
    )
    .await;

    let (exec_id, state, done, failed): (i64, String, i64, i64) = executions::table
        .select((
            executions::id,
            executions::state,
            executions::done,
            executions::failed,
        ))
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        (state.as_str(), done, failed),
        ("completed", TARGETS, 0),
        "kills: {kills:?}"
    );
    // Every item recorded once: done in its first recorded attempt.
    let items: Vec<(i64, String, i64)> = execution_items::table
        .select((
            execution_items::position,
            execution_items::status,
            execution_items::attempts,
        ))
        .load(&mut conn)
        .unwrap();
    assert_eq!(items.len() as i64, TARGETS);
    assert!(
        items.iter().all(|(_, s, a)| s == "done" && *a == 1),
        "every item done in one recorded attempt"
    );
    // The receiver saw exactly the execution's keys; a call repeated after a kill had the
    // same key and the same attempt number.
    let calls = calls.lock().unwrap();
    let want: BTreeSet<String> = items
        .iter()
        .map(|(p, _, _)| format!("{exec_id}-{p}"))
        .collect();
    let got: BTreeSet<String> = calls.keys().cloned().collect();
    assert_eq!(got, want, "one idempotency key per target, no other");
    assert!(
        calls.values().flatten().all(|a| *a == 1),
        "attempt 1 each time"
    );
    let resent = calls.values().filter(|a| a.len() > 1).count();
    let sent: usize = calls.values().map(Vec::len).sum();
    eprintln!("webhook: {sent} calls for {TARGETS} targets; {resent} targets re-sent after a kill");
    assert!(
        resent > 0,
        "no kill landed while calls were in flight: {kills:?}"
    );
    // A kill loses at most the batch in flight: 16 calls per slot, 16 slots.
    assert!(
        resent <= kills.len() * 16 * 16,
        "{resent} re-sent after {} kills",
        kills.len()
    );
    // Webhooks never touch the inventory.
    let deleted: i64 = entities::table
        .filter(entities::state.ne("active"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(deleted, 0);
    assert!(matches!(
        countersign::db::audit::verify(&mut conn).unwrap(),
        countersign::db::audit::Verdict::Intact { .. }
    ));
}

crate::both_backends!(backend: kill_9_during_execution, kill_9_during_webhook_execution);
