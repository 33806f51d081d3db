//! The test harness. `both_backends!` runs each test on SQLite and, when
//! COUNTERSIGN_TEST_DATABASE_URL is set, on PostgreSQL (otherwise the PostgreSQL half says
//! it was skipped). `spawn_app` gives a test a real server on a random port with its own
//! [`TestDb`]: a temporary SQLite file, or a fresh PostgreSQL database that is dropped when
//! the test ends. `TEST_LOG=1` shows the servers' logs in each test's output.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use countersign::config::{Config, TEST_DATABASE_URL, TEST_LOG};
use countersign::db::{self, audit::Actor, users, write_tx, DatabaseUrl, Pool};
use countersign::domain::event::Event;
use countersign::error::AppError;
use countersign::web::Application;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// SQLite always; PostgreSQL when COUNTERSIGN_TEST_DATABASE_URL names a server.
    pub fn available(self) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Postgres => pg_base().is_some(),
        }
    }
}

/// Run one backend's half of a test (what `both_backends!` generates calls this): logs
/// when asked for, and a clear skip when the backend is not available.
pub async fn run_on<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    init_logs();
    if !backend.available() {
        eprintln!("skipped: {} is not set", TEST_DATABASE_URL.var);
        return;
    }
    test(backend).await;
}

/// With TEST_LOG set, the product's subscriber (`RUST_LOG`, `COUNTERSIGN_LOG_FORMAT`)
/// writing into the output of the test that started the server (shown when it fails, or
/// always with `--nocapture`); without it no subscriber, so logs cost nothing.
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os(TEST_LOG.var).is_some_and(|v| !v.is_empty()) {
            let _ =
                countersign::telemetry::install(tracing_subscriber::fmt::TestWriter::new(), false);
        }
    });
}

fn pg_base() -> Option<String> {
    std::env::var(TEST_DATABASE_URL.var)
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// `url` with a connect timeout, so that a server that does not answer fails a test's
/// set-up, or a clean-up, instead of hanging it.
fn with_connect_timeout(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout=10")
}

/// A database of one test's own, removed when it is dropped: a temporary SQLite file, or a
/// fresh PostgreSQL database on the server of COUNTERSIGN_TEST_DATABASE_URL.
pub struct TestDb {
    pub url: DatabaseUrl,
    place: Place,
}

enum Place {
    /// The directory is removed with it.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        admin: String,
        name: String,
    },
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                TestDb {
                    url: DatabaseUrl::Sqlite(dir.path().join("test.db")),
                    place: Place::Sqlite(dir),
                }
            }
            Backend::Postgres => {
                let admin = pg_base()
                    .unwrap_or_else(|| panic!("a PostgreSQL test needs {}", TEST_DATABASE_URL.var));
                let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = diesel::PgConnection::establish(&with_connect_timeout(&admin))
                    .unwrap_or_else(|e| panic!("connect to {}: {e}", TEST_DATABASE_URL.var));
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create test database");
                // Which test made it (the test thread's name), should one be left over.
                let test = std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .replace('\'', "");
                let _ = conn.batch_execute(&format!(
                    "COMMENT ON DATABASE {name} IS 'countersign test {test}'"
                ));
                let (prefix, rest) = admin.rsplit_once('/').expect("database URL has a path");
                let query = rest
                    .split_once('?')
                    .map(|(_, q)| format!("?{q}"))
                    .unwrap_or_default();
                TestDb {
                    url: DatabaseUrl::Postgres(format!("{prefix}/{name}{query}")),
                    place: Place::Postgres { admin, name },
                }
            }
        }
    }

    /// The database as a `DATABASE_URL` for child processes.
    pub fn database_url(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => u.clone(),
        }
    }
}

impl Drop for TestDb {
    /// Drop the PostgreSQL database. Whoever still holds a connection (a worker thread,
    /// a pool a test cloned) is disconnected by `WITH (FORCE)`. A busy server gets three
    /// tries of up to 45 s each (DROP DATABASE waits until every backend of the server has
    /// released its file handles, which took over 10 s once under two full suites); a
    /// failure is reported and never fails the test (`.ci/run` drops leftovers before a
    /// run, and the database's comment names the test that made it).
    fn drop(&mut self) {
        let Place::Postgres { admin, name } = &self.place else {
            return;
        };
        let attempt = || {
            let mut conn = diesel::PgConnection::establish(&with_connect_timeout(admin))
                .map_err(|e| e.to_string())?;
            // Two calls: DROP DATABASE cannot share a (multi-statement) query.
            conn.batch_execute("SET statement_timeout = '45s'")
                .and_then(|()| {
                    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                })
                .map_err(|e| e.to_string())
        };
        let mut errors = Vec::new();
        for pause_ms in [500, 2000, 0] {
            match attempt() {
                Ok(()) => return,
                Err(e) => errors.push(e),
            }
            std::thread::sleep(Duration::from_millis(pause_ms));
        }
        eprintln!(
            "warning: test database {name} was not dropped: {}",
            errors.join("; ")
        );
    }
}

/// A server started by a test, stopped (with its worker and mailer) when the test ends.
struct RunningServer {
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// How long a test's end waits for its server, worker and mailer to stop.
const STOP_WAIT: Duration = Duration::from_secs(30);

impl RunningServer {
    fn start(app: Application) -> (RunningServer, String) {
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        let task = tokio::spawn(app.run_until_stopped());
        (RunningServer { handle, task }, address)
    }

    /// Stop the server and wait until `run_until_stopped` has stopped the worker and the
    /// mailer, so that nothing writes to the database after the test (a few seconds at
    /// most; a test's pending webhook call or SMTP command ends at its timeout).
    fn stop(self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if rt.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            // Cannot wait on a current-thread runtime from inside it; the database's drop
            // disconnects whatever is left.
            self.task.abort();
            return;
        }
        let RunningServer { handle, task } = self;
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let stopped = async {
                    handle.stop(false).await;
                    let _ = task.await;
                };
                if tokio::time::timeout(STOP_WAIT, stopped).await.is_err() {
                    eprintln!("warning: the test's server did not stop within {STOP_WAIT:?}");
                }
            })
        });
    }
}

pub struct TestApp {
    pub address: String,
    /// The database as a `DATABASE_URL` for child processes.
    pub database_url: String,
    pub pool: Pool,
    pub tokens: HashMap<&'static str, String>,
    pub client: reqwest::Client,
    server: Option<RunningServer>,
    /// Last: dropped after the server is stopped and the pool closed.
    _db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

/// Test people: (key, email, name, team, admin).
pub const PEOPLE: [(&str, &str, &str, Option<&str>, bool); 8] = [
    ("ana", "ana@req.example", "Ana", Some("app-owners"), false),
    ("ben", "ben@req.example", "Ben", Some("app-owners"), false),
    (
        "carla",
        "carla@ops.example",
        "Carla",
        Some("platform-ops"),
        false,
    ),
    ("dev", "dev@ops.example", "Dev", Some("platform-ops"), false),
    ("eli", "eli@ops.example", "Eli", Some("platform-ops"), false),
    ("olga", "olga@elsewhere.example", "Olga", None, false),
    (
        "otto",
        "otto@outsiders.example",
        "Otto",
        Some("outsiders"),
        false,
    ),
    ("root", "root@admin.example", "Root", None, true),
];

// Fixture IDs (valid syntax per the example schema).
pub const ORG1: &str = "org-00000001";
pub const ORG2: &str = "org-00000002";
pub fn site(n: u32) -> String {
    format!("5f0c6a52-0000-4000-8000-{n:012x}")
}
pub fn inst(n: u32) -> String {
    format!("0b1c2d3e-0000-4000-8000-{n:012x}")
}

/// Two orgs; org1 has sites 1-3, org2 has site 4 (+ empty site 5); apps 1-8.
/// insight on apps 1, 3, 5, 7; ledger on 2, 4, 6, 8.
pub fn fixture_lines() -> Vec<String> {
    let mut v = vec![
        json!({"kind": "org", "id": ORG1, "name": "Acme Corp", "attrs": {"plan": "legacy"}}),
        json!({"kind": "org", "id": ORG2, "name": "Globex", "attrs": {"plan": "standard"}}),
    ];
    for (s, org) in [(1, ORG1), (2, ORG1), (3, ORG1), (4, ORG2), (5, ORG2)] {
        v.push(json!({"kind": "site", "id": site(s), "parent": org, "name": format!("site{s}.example.net")}));
    }
    for a in 1..=8u32 {
        let s = match a {
            1 | 2 => 1,
            3 | 4 => 2,
            5 | 6 => 3,
            _ => 4,
        };
        let appname = if a % 2 == 1 { "insight" } else { "ledger" };
        v.push(json!({"kind": "app_install", "id": inst(a), "parent": site(s), "name": format!("{appname} on site{s}"), "attrs": {"app": appname, "version": "1.0.0"}}));
    }
    v.into_iter().map(|j| j.to_string()).collect()
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// A server on a fresh database with the test defaults (`Config::for_database`: the
/// declared defaults, port 0, no mail delivery) changed by `tweak`, and the test people.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let db = TestDb::new(backend);
    let mut config = Config::for_database(db.url.clone());
    config.pool_size = 6;
    tweak(&mut config);
    let (schema, source) = config.load_schema().expect("schema");
    let app = Application::build(config, schema, &source).expect("build app");
    let (server, address) = RunningServer::start(app);
    let pool = db::build_pool(&db.url, 4).expect("pool");
    let tokens = {
        let mut conn = pool.get().expect("conn");
        write_tx(&mut conn, |conn| -> Result<_, AppError> {
            users::create_team(conn, "app-owners")?;
            users::create_team(conn, "platform-ops")?;
            // A team unrelated to every change in the tests.
            users::create_team(conn, "outsiders")?;
            let mut tokens = HashMap::new();
            for (key, email, name, team, admin) in PEOPLE {
                let u = users::create_user(conn, email, name, admin)?;
                if let Some(t) = team {
                    let t = users::find_team(conn, t)?.expect("team");
                    users::add_member(conn, t.id, u.id)?;
                }
                tokens.insert(key, users::create_token(conn, u.id, "test")?);
            }
            Ok(tokens)
        })
        .expect("seed people")
    };
    let _ = Actor::system();
    TestApp {
        address,
        database_url: db.database_url(),
        pool,
        tokens,
        client: reqwest::Client::new(),
        server: Some(server),
        _db: db,
    }
}

impl TestApp {
    pub fn token(&self, who: &str) -> &str {
        self.tokens.get(who).map(String::as_str).unwrap_or("nope")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        who: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(self.token(who));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, path: &str, who: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, who, None).await
    }

    pub async fn post(&self, path: &str, who: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, who, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, who: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, who, Some(body))
            .await
    }

    pub async fn import(&self, who: &str, lines: &[String], partial: bool) -> (StatusCode, Value) {
        let body = lines.join("\n");
        let res = self
            .client
            .post(format!(
                "{}/api/v1/inventory{}",
                self.address,
                if partial { "?partial=true" } else { "" }
            ))
            .bearer_auth(self.token(who))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("import");
        let status = res.status();
        (status, res.json().await.expect("json"))
    }

    pub async fn load_fixture(&self) {
        let (s, v) = self.import("carla", &fixture_lines(), false).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// Create a change as `who` (draft); returns its JSON.
    pub async fn create(&self, who: &str, op: &str, targets: Value) -> Value {
        let (s, v) = self.post("/api/v1/changes", who, json!({"title": "t", "rationale": "r", "requesting_team": "app-owners", "operation": op, "targets": targets})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Create and submit; returns (id, fingerprint).
    /// Add a test person to a team, audited as the product's own membership changes are
    /// (what a page shows is keyed on the audit head).
    pub fn join(&self, who: &str, team: &str) {
        self.membership(who, team, true);
    }

    /// Remove a test person from a team, audited (see [`TestApp::join`]).
    pub fn leave(&self, who: &str, team: &str) {
        self.membership(who, team, false);
    }

    fn membership(&self, who: &str, team: &str, member: bool) {
        let mut conn = self.conn();
        write_tx(&mut conn, |tx| -> Result<(), AppError> {
            let t = users::find_team(tx, team)?.unwrap();
            let u = users::find_user_by_email(tx, TestApp::email(who))?.unwrap();
            let (team, email) = (team.to_string(), u.email.clone());
            let event = if member {
                users::add_member(tx, t.id, u.id)?;
                Event::TeamMemberAdded { team, email }
            } else {
                users::remove_member(tx, t.id, u.id)?;
                Event::TeamMemberRemoved { team, email }
            };
            countersign::service::events::record(tx, &Actor::cli(), None, event)?;
            Ok(())
        })
        .unwrap();
    }

    pub async fn submitted(&self, who: &str, op: &str, targets: Value) -> (i64, String) {
        let v = self.create(who, op, targets).await;
        let id = v["id"].as_i64().unwrap();
        let (s, v) = self
            .post(&format!("/api/v1/changes/{id}/submit"), who, json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        (id, v["fingerprint"].as_str().unwrap().to_string())
    }

    pub async fn sign(
        &self,
        id: i64,
        who: &str,
        side: &str,
        fp: &str,
        confirm: Option<u64>,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/api/v1/changes/{id}/signoffs"),
            who,
            json!({"side": side, "fingerprint": fp, "comment": "ok", "confirm_count": confirm}),
        )
        .await
    }

    pub async fn change(&self, id: i64) -> Value {
        let (s, v) = self.get(&format!("/api/v1/changes/{id}"), "ana").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Create, submit and approve (requester ben, implementer carla); returns (id, fp).
    pub async fn approved(&self, op: &str, targets: Value) -> (i64, String) {
        let (id, fp) = self.submitted("ana", op, targets).await;
        self.approve(id, &fp).await;
        (id, fp)
    }

    /// Sign both sides of a submitted change (ben, then carla with the typed count, and dev
    /// and eli while the policy needs more implementers).
    pub async fn approve(&self, id: i64, fp: &str) {
        let n = self.change(id).await["summary"]["targets"].as_u64();
        let (s, v) = self.sign(id, "ben", "requester", fp, None).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = self.sign(id, "carla", "implementer", fp, n).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        // Stricter policies (two implementers, one more for an irreversible effect).
        let mut state = v["state"].clone();
        for who in ["dev", "eli"] {
            if state == "approved" {
                break;
            }
            let (s, v) = self.sign(id, who, "implementer", fp, n).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            state = v["state"].clone();
        }
        assert_eq!(state, "approved");
    }

    /// Execute as carla; returns the execution JSON.
    pub async fn execute(&self, id: i64, fp: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/api/v1/changes/{id}/execute"),
            "carla",
            json!({"fingerprint": fp}),
        )
        .await
    }

    /// Poll the execution until its state is one of `states` (30 s at most).
    pub async fn wait_execution(&self, id: i64, states: &[&str]) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (s, v) = self
                .get(&format!("/api/v1/changes/{id}/execution"), "ana")
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            if states.iter().any(|st| v["state"] == *st) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "execution did not reach {states:?}: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn entity(&self, id: &str) -> Value {
        let (s, v) = self.get(&format!("/api/v1/inventory/{id}"), "ana").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    pub fn conn(&self) -> db::PooledConn {
        self.pool.get().expect("conn")
    }
}

/// Generate `mod name { sqlite, postgres }` tests, the PostgreSQL one skipped (with a
/// message) unless COUNTERSIGN_TEST_DATABASE_URL is set:
///
/// - `both_backends!(a, b)` for `async fn a(app: TestApp)`: a server from `spawn_app`;
/// - `both_backends!(backend: c, d)` for `async fn c(backend: Backend)`: tests that start
///   their own (`spawn_app_with` a config of their own, `TestDb` for child processes).
#[macro_export]
macro_rules! both_backends {
    (backend: $($name:ident),* $(,)?) => {
        $( $crate::both_backends!(@mod $name, super::$name); )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            $crate::both_backends!(@mod $name, |backend| async move {
                super::$name($crate::helpers::spawn_app(backend).await).await
            });
        )*
    };
    (@mod $name:ident, $run:expr) => {
        mod $name {
            use $crate::helpers::{run_on, Backend};
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run_on(Backend::Sqlite, $run).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                run_on(Backend::Postgres, $run).await;
            }
        }
    };
}

impl TestApp {
    /// Give `who` a web password (argon2 is slow in debug builds, so only web tests do).
    pub fn set_password(&self, who: &str, password: &str) {
        let email = PEOPLE
            .iter()
            .find(|p| p.0 == who)
            .map(|p| p.1)
            .expect("known person");
        let mut conn = self.conn();
        let u = users::find_user_by_email(&mut conn, email)
            .unwrap()
            .expect("user");
        users::set_password(&mut conn, u.id, password).unwrap();
    }

    pub fn email(who: &str) -> &'static str {
        PEOPLE
            .iter()
            .find(|p| p.0 == who)
            .map(|p| p.1)
            .expect("known person")
    }
}

/// A server on an existing database (a restored backup), signed into with the tokens of
/// the app it was copied from; the database lives (and is dropped) with it.
pub async fn serve_existing(db: TestDb, tokens: HashMap<&'static str, String>) -> TestApp {
    let mut config = Config::for_database(db.url.clone());
    config.pool_size = 6;
    let (schema, source) = config.load_schema().expect("schema");
    let app = Application::build(config, schema, &source).expect("build app");
    let (server, address) = RunningServer::start(app);
    TestApp {
        address,
        database_url: db.database_url(),
        pool: db::build_pool(&db.url, 4).expect("pool"),
        tokens,
        client: reqwest::Client::new(),
        server: Some(server),
        _db: db,
    }
}
