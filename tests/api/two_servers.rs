//! Two `countersign serve` processes on one database, both running the execution worker
//! and the mailer (issue #11 goal 5): changes executed through either process each run
//! once (every target one attempt and one version row, nothing else touched), both
//! processes' workers take executions, and every mail reaches the SMTP server once
//! whichever mailer leased it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use countersign::db::audit::Actor;
use countersign::db::schema::{entities, entity_versions, execution_items, executions, outbox};
use countersign::db::{self, users, write_tx, DatabaseUrl};
use countersign::domain::{ExecState, OutboxState};
use countersign::error::AppError;
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{fresh_pg, pg_base};
use crate::smtp::{free_port, Mode, SmtpServer};

const SITES: u32 = 6;
const APPS: u32 = 60;

/// One `countersign serve` with its worker and mailer, mailing through `smtp_port`.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start(url: &str, smtp_port: u16) -> Server {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .env_remove("COUNTERSIGN_SCHEMA")
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .env("COUNTERSIGN_EXEC_BATCH", "20")
            .env("COUNTERSIGN_EXEC_THROTTLE_MS", "20")
            .env("COUNTERSIGN_LEASE_SECS", "2")
            .env("COUNTERSIGN_POLL_MS", "50")
            .env("COUNTERSIGN_MAIL_POLL_MS", "50")
            .env("COUNTERSIGN_SMTP_HOST", "127.0.0.1")
            .env("COUNTERSIGN_SMTP_PORT", smtp_port.to_string())
            .env("COUNTERSIGN_SMTP_TLS", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start countersign serve");
        Server { port, child }
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let r = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.port)).await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server on port {} did not become ready", self.port);
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let res = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1{path}", self.port))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// People with API tokens (`ana`, `ben` request, `carla` implements) and the inventory:
/// one org, `SITES` sites of `APPS` insight installations and one ledger each.
fn prepare(url: &DatabaseUrl) -> BTreeMap<&'static str, String> {
    let config = countersign::config::Config::for_database(url.clone());
    let (schema, source) = config.load_schema().unwrap();
    let pool = db::build_pool(url, 2).unwrap();
    countersign::web::prepare_database(&pool, &schema, &source).unwrap();
    let mut conn = pool.get().unwrap();
    let tokens = write_tx(&mut conn, |c| -> Result<_, AppError> {
        let mut tokens = BTreeMap::new();
        for team in ["app-owners", "platform-ops"] {
            users::create_team(c, team)?;
        }
        for (key, team) in [
            ("ana", "app-owners"),
            ("ben", "app-owners"),
            ("carla", "platform-ops"),
        ] {
            let u = users::create_user(c, &format!("{key}@two.example"), key, false)?;
            let t = users::find_team(c, team)?.unwrap();
            users::add_member(c, t.id, u.id)?;
            tokens.insert(key, users::create_token(c, u.id, "two servers")?);
        }
        Ok(tokens)
    })
    .unwrap();
    let site = |s: u32| format!("5f0c6a52-0000-4000-8000-{s:012x}");
    let mut lines = vec![json!({"kind": "org", "id": "org-00000002", "name": "Two"})];
    for s in 0..SITES {
        lines.push(json!({"kind": "site", "id": site(s), "parent": "org-00000002", "name": format!("site {s}")}));
        for a in 0..=APPS {
            let app = if a == APPS { "ledger" } else { "insight" };
            lines.push(json!({"kind": "app_install", "id": format!("0b1c2d3e-{s:04x}-4000-8000-{a:012x}"), "parent": site(s), "name": format!("{app} {a}"), "attrs": {"app": app, "version": "1.0.0"}}));
        }
    }
    let report = db::inventory::import(
        &mut conn,
        &schema,
        lines.into_iter().map(|l| Ok(l.to_string())),
        false,
        &Actor::system(),
    )
    .unwrap();
    assert!(report.committed, "{:?}", report.errors.first());
    tokens
}

async fn two_servers_share_executions_and_mail(url: DatabaseUrl) {
    let tokens = prepare(&url);
    let db_url = match &url {
        DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        DatabaseUrl::Postgres(u) => u.clone(),
    };
    let smtp = SmtpServer::start(0, Mode::Normal).await;
    let servers = [
        Server::start(&db_url, smtp.port),
        Server::start(&db_url, smtp.port),
    ];
    for s in &servers {
        s.ready().await;
    }

    // One change per site, each created, signed and executed through either server.
    let mut changes = Vec::new();
    for s in 0..SITES {
        let via = &servers[s as usize % 2];
        let (st, v) = via
            .post("/changes", &tokens["ana"], json!({
                "title": format!("Uninstall insight on site {s}"),
                "requesting_team": "app-owners",
                "operation": "uninstall_app",
                "targets": {"within": {"kind": "site", "ids": [format!("5f0c6a52-0000-4000-8000-{s:012x}")]}, "where": {"app": "insight"}},
                "submit": true,
            }))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let id = v["id"].as_i64().unwrap();
        let fp = v["fingerprint"].as_str().unwrap().to_string();
        for (who, side, count) in [
            ("ben", "requester", None),
            ("carla", "implementer", Some(APPS)),
        ] {
            let (st, v) = via
                .post(
                    &format!("/changes/{id}/signoffs"),
                    &tokens[who],
                    json!({"side": side, "fingerprint": fp, "confirm_count": count}),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
        }
        changes.push((id, fp));
    }
    let started = Instant::now();
    for (i, (id, fp)) in changes.iter().enumerate() {
        let (st, v) = servers[i % 2]
            .post(
                &format!("/changes/{id}/execute"),
                &tokens["carla"],
                json!({"fingerprint": fp}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    }

    // Watch the leases while they run: which processes' workers hold executions.
    let pool = db::build_pool(&url, 1).unwrap();
    let mut conn = pool.get().unwrap();
    let mut owners: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows: Vec<(ExecState, Option<String>)> = executions::table
            .select((executions::state, executions::lease_owner))
            .load(&mut conn)
            .unwrap();
        // An owner is `host:pid:worker`: the process is the pid.
        owners.extend(rows.iter().filter_map(|(_, o)| {
            o.as_deref()
                .and_then(|o| o.split(':').nth(1))
                .map(str::to_string)
        }));
        if rows.len() == changes.len() && rows.iter().all(|(s, _)| *s != ExecState::Running) {
            assert!(
                rows.iter().all(|(s, _)| *s == ExecState::Completed),
                "{rows:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "executions did not finish: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "{} executions of {APPS} targets through two processes in {:.2}s; workers of processes {owners:?} held them",
        changes.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        owners.len(),
        2,
        "both processes' workers take executions: {owners:?}"
    );

    // Exactly once: one attempt and one version row per target; the ledgers untouched.
    let targets = (SITES * APPS) as i64;
    let attempts: Vec<i64> = execution_items::table
        .select(execution_items::attempts)
        .load(&mut conn)
        .unwrap();
    assert_eq!(attempts.len() as i64, targets);
    assert!(attempts.iter().all(|a| *a == 1), "a target ran twice");
    let versions: i64 = entity_versions::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(versions, targets, "one version row per target");
    let deleted: i64 = entities::table
        .filter(entities::state.ne(countersign::domain::EntityState::Active))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(deleted, targets);

    // Every mail once: what the SMTP server received is the outbox's sent rows, each
    // Message-ID once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let sent = loop {
        let by_state: Vec<(OutboxState, i64)> = outbox::table
            .group_by(outbox::state)
            .select((outbox::state, diesel::dsl::count_star()))
            .load(&mut conn)
            .unwrap();
        let count = |s: OutboxState| by_state.iter().find(|(x, _)| *x == s).map_or(0, |r| r.1);
        if count(OutboxState::Pending) == 0 {
            assert_eq!(count(OutboxState::Dead), 0, "{by_state:?}");
            break count(OutboxState::Sent);
        }
        assert!(
            Instant::now() < deadline,
            "mail still pending: {by_state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The last sends may still be on the wire when their rows turn `sent`.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mails = smtp.mails();
    let ids: BTreeSet<String> = mails
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert!(sent > 0);
    assert_eq!(
        mails.len() as i64,
        sent,
        "each sent row reached the server once"
    );
    assert_eq!(ids.len(), mails.len(), "a Message-ID arrived twice");
    eprintln!("{} mails, each once", mails.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    two_servers_share_executions_and_mail(DatabaseUrl::Sqlite(dir.path().join("two.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_postgres() {
    let Some(base) = pg_base() else {
        eprintln!("skipped: COUNTERSIGN_TEST_DATABASE_URL is not set");
        return;
    };
    two_servers_share_executions_and_mail(DatabaseUrl::Postgres(fresh_pg(&base))).await;
}
