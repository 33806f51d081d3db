//! Exactly once across crashes, with waves that wait (issue #13): the crash test's
//! 10,000-target soft delete, in three waves with a bake after each and a manual gate after
//! the second, in a real `countersign serve` killed with SIGKILL mid-batch, during a bake,
//! while paused at the gate and after an operator's pause. The end state is the crash
//! test's (every target deleted once, nothing else touched, the audit chain intact), and
//! no item of a wave finished before the bake in front of it ended or before the gate in
//! front of it was continued.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use countersign::db::schema::{audit_events, execution_items, executions};
use countersign::db::{self, DatabaseUrl};
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::crash::{assert_deleted_exactly_once, prepare, progress, serve_with, wait_ready};
use crate::helpers::{Backend, TestDb};
use crate::smtp::free_port;

/// Waves of 1,000, 3,000 and the rest; a second's bake after each; a gate after wave 2.
fn gated_schema(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("schema.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n\n[operations.uninstall_baked]\nlabel = \"Uninstall apps, baked\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nrequested_by = [\"app-owners\"]\nsignoffs = {{ requester = 1, implementer = 1 }}\nwaves = [1000, 3000]\nbake = \"1s\"\npause_after_waves = [2]\n",
            countersign::domain::schema::EXAMPLE_SCHEMA
        ),
    )
    .unwrap();
    path
}

struct Server {
    url: String,
    schema: std::path::PathBuf,
    port: u16,
    child: Child,
}

impl Server {
    async fn start(url: &str, schema: &Path) -> Server {
        let port = free_port();
        let child = serve_with(url, port, Some(schema));
        wait_ready(port).await;
        Server {
            url: url.to_string(),
            schema: schema.to_path_buf(),
            port,
            child,
        }
    }

    /// SIGKILL, then a new server.
    async fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.port = free_port();
        self.child = serve_with(&self.url, self.port, Some(&self.schema));
        wait_ready(self.port).await;
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, String) {
        let res = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll until `ok(state, done)` (60 s at most).
async fn until(conn: &mut db::DbConn, what: &str, ok: impl Fn(&str, i64) -> bool) -> (String, i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (state, done) = progress(conn);
        if ok(&state, done) {
            return (state, done);
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {what}: {state} at {done}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// When each of a change's events with `action` happened, with its detail.
fn events(conn: &mut db::DbConn, change_id: i64, action: &str) -> Vec<(NaiveDateTime, Value)> {
    audit_events::table
        .filter(audit_events::change_id.eq(change_id))
        .filter(audit_events::action.eq(action))
        .order(audit_events::id.asc())
        .select((audit_events::at, audit_events::detail))
        .load::<(NaiveDateTime, String)>(conn)
        .unwrap()
        .into_iter()
        .map(|(at, d)| (at, serde_json::from_str(&d).unwrap()))
        .collect()
}

/// The earliest finish of an item of `wave`.
fn first_finish(conn: &mut db::DbConn, wave: i64) -> NaiveDateTime {
    execution_items::table
        .filter(execution_items::wave.eq(wave))
        .select(diesel::dsl::min(execution_items::finished_at))
        .first::<Option<NaiveDateTime>>(conn)
        .unwrap()
        .unwrap()
}

async fn kill_9_while_baking_paused_and_running(backend: Backend) {
    let db = TestDb::new(backend);
    let url = db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let schema = gated_schema(dir.path());
    let (id, fp, token) = prepare(&url, Some(&schema), "uninstall_baked");
    let pool = db::build_pool(&url, 2).unwrap();
    let mut conn = pool.get().unwrap();
    let db_url = match &url {
        DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        DatabaseUrl::Postgres(u) => u.clone(),
    };
    let mut server = Server::start(&db_url, &schema).await;
    let exec = |what: &str| format!("/api/v1/changes/{id}/{what}");
    let (s, t) = server
        .post(&token, &exec("execute"), json!({"fingerprint": fp}))
        .await;
    assert_eq!(s, 202, "{t}");
    let mut kills: Vec<(String, i64)> = Vec::new();

    // 1. Mid-batch in wave 1.
    until(&mut conn, "wave 1 under way", |s, d| {
        s != "running" || d >= 400
    })
    .await;
    server.kill_and_restart().await;
    kills.push(progress(&mut conn));
    // 2. During the bake after wave 1: the bake still holds after the restart.
    until(&mut conn, "the first bake", |s, _| s == "baking").await;
    server.kill_and_restart().await;
    kills.push(progress(&mut conn));
    // 3. Mid-batch in wave 2, then an operator's pause in wave 2, killed while paused.
    until(&mut conn, "wave 2 under way", |s, d| {
        s == "running" && d >= 1500
    })
    .await;
    server.kill_and_restart().await;
    kills.push(progress(&mut conn));
    until(&mut conn, "wave 2 running again", |s, d| {
        s == "running" && d >= 2000
    })
    .await;
    let (s, t) = server
        .post(&token, &exec("pause"), json!({"reason": "crash test"}))
        .await;
    assert!(s == 200 || s == 409, "{s} {t}");
    let (state, at_pause) = until(&mut conn, "the pause", |s, _| {
        s == "paused" || s == "baking"
    })
    .await;
    if state == "paused" {
        server.kill_and_restart().await;
        kills.push(progress(&mut conn));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (state, done) = progress(&mut conn);
        assert_eq!(
            (state.as_str(), done),
            ("paused", at_pause),
            "a paused execution holds"
        );
        let (s, t) = server.post(&token, &exec("continue"), json!({})).await;
        assert_eq!(s, 200, "{t}");
    }
    // 4. The manual gate after wave 2 (after its bake), killed while it waits.
    until(&mut conn, "the gate after wave 2", |s, d| {
        s == "paused" && d >= 4000
    })
    .await;
    server.kill_and_restart().await;
    kills.push(progress(&mut conn));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        progress(&mut conn),
        ("paused".to_string(), 4000),
        "the gate holds"
    );
    let (s, t) = server.post(&token, &exec("continue"), json!({})).await;
    assert_eq!(s, 200, "{t}");
    // 5. Mid-batch in wave 3.
    until(&mut conn, "wave 3 under way", |s, d| {
        s == "running" && d >= 6000
    })
    .await;
    server.kill_and_restart().await;
    kills.push(progress(&mut conn));
    until(&mut conn, "the end", |s, _| {
        !matches!(s, "running" | "baking" | "paused")
    })
    .await;
    drop(server);
    eprintln!("kills at {kills:?}");

    assert_deleted_exactly_once(&mut conn, id, &format!("kills: {kills:?}"));
    // No wave began before the bake in front of it ended; wave 3 not before the gate was
    // continued.
    let bakes = events(&mut conn, id, "execution_baking");
    assert_eq!(bakes.len(), 2, "{bakes:?}");
    for (wave, (_, detail)) in [(2i64, &bakes[0]), (3, &bakes[1])] {
        let until: NaiveDateTime = serde_json::from_value(detail["until"].clone()).unwrap();
        assert!(
            first_finish(&mut conn, wave) >= until,
            "wave {wave} ran before its bake ended at {until}"
        );
    }
    let continued = events(&mut conn, id, "execution_continued");
    let last = continued.last().unwrap().0;
    assert!(
        first_finish(&mut conn, 3) >= last,
        "wave 3 ran before the gate was continued"
    );
    let state: String = executions::table
        .select(executions::state)
        .first(&mut conn)
        .unwrap();
    assert_eq!(state, "completed");
}

crate::both_backends!(backend: kill_9_while_baking_paused_and_running);
