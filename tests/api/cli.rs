//! The command line, run as a real process.

use std::io::Write;
use std::process::{Command, Output};

use countersign::db::schema::audit_events;
use diesel::prelude::*;

use crate::both_backends;
use crate::helpers::{fixture_lines, Backend, TestDb};

fn bin(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(args)
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .env("COUNTERSIGN_MAILER", "false")
        .env_remove("COUNTERSIGN_SCHEMA")
        .output()
        .expect("run countersign")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_lists_the_commands() {
    let o = bin("sqlite:///dev/null", &["--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for c in [
        "serve",
        "demo",
        "migrate",
        "schema",
        "inventory",
        "team",
        "user",
        "token",
        "audit",
        "bench",
        "worker",
        "change",
        "mailer",
        "contacts",
        "backup",
        "restore",
        "config",
    ] {
        assert!(t.contains(c), "{c} missing from --help:\n{t}");
    }
}

#[test]
fn unknown_database_scheme_is_a_clear_error() {
    let o = bin("mysql://localhost/db", &["migrate"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("unknown scheme \"mysql\""),
        "{}",
        text(&o)
    );
}

#[test]
fn schema_check_reports_problems_with_places() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, countersign::domain::schema::EXAMPLE_SCHEMA).unwrap();
    let o = bin(
        "sqlite:///dev/null",
        &["schema", "check", good.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("version sha256:"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[kinds.site]\nlabel = \"Site\"\nparent = \"org\"\npattern = \"(\"\n\n[operations.x]\nlabel = \"X\"\ntarget = \"app\"\neffect = \"delete\"\n").unwrap();
    let o = bin(
        "sqlite:///dev/null",
        &["schema", "check", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    for needle in [
        "line 1: kinds.site.parent: unknown parent kind `org`",
        "kinds.site.pattern",
        "operations.x.target",
        "operations.x.effect: unknown effect `delete`",
        "operations.x.implemented_by",
    ] {
        assert!(t.contains(needle), "{needle} missing:\n{t}");
    }
}

async fn operator_workflow_and_audit_verify(backend: Backend) {
    let test_db = TestDb::new(backend);
    let db = test_db.database_url();
    let dir = tempfile::tempdir().unwrap();
    assert!(bin(&db, &["migrate"]).status.success());
    let o = bin(&db, &["team", "add", "platform-ops"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = bin(&db, &["team", "add", "Bad Name"]);
    assert!(!o.status.success());
    let o = bin(
        &db,
        &[
            "user",
            "add",
            "carla@ops.example",
            "--name",
            "Carla",
            "--team",
            "platform-ops",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("initial password (shown once): "),
        "{}",
        text(&o)
    );
    let o = bin(
        &db,
        &[
            "user",
            "add",
            "x@ops.example",
            "--name",
            "X",
            "--team",
            "nope",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("team `nope` does not exist"));
    // Taking someone out of a team (and the audit event that records it).
    let o = bin(
        &db,
        &[
            "user",
            "add",
            "x@ops.example",
            "--name",
            "X",
            "--team",
            "platform-ops",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = bin(&db, &["team", "remove", "platform-ops", "X@ops.example"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("removed x@ops.example from platform-ops"),
        "{}",
        text(&o)
    );
    let o = bin(&db, &["team", "remove", "platform-ops", "x@ops.example"]);
    assert!(text(&o).contains("was not a member"), "{}", text(&o));
    let o = bin(&db, &["team", "list"]);
    assert!(!text(&o).contains("x@ops.example"), "{}", text(&o));
    let o = bin(&db, &["token", "create", "carla@ops.example"]);
    assert!(o.status.success());
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(token.starts_with("cs_") && token.len() == 67, "{token}");

    // Import a file with one bad line: nothing written; then the good file.
    let file = dir.path().join("inv.ndjson");
    let mut lines = fixture_lines();
    lines.push(r#"{"kind":"site","id":"zzz","parent":"org-00000001"}"#.into());
    std::fs::write(&file, lines.join("\n")).unwrap();
    let o = bin(&db, &["inventory", "import", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(&format!(
            "line {}: zzz: `zzz` is not a valid Cloud site (site) ID",
            lines.len()
        )),
        "{}",
        text(&o)
    );
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "{}", fixture_lines().join("\n")).unwrap();
    let o = bin(&db, &["inventory", "import", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("15 new"), "{}", text(&o));
    assert!(text(&o).contains(" as import "), "{}", text(&o));

    // Contacts: a bad line writes nothing and is named; then the good file.
    let contacts = dir.path().join("contacts.ndjson");
    std::fs::write(
        &contacts,
        "{\"entity\":\"org-00000001\",\"name\":\"Alice\",\"email\":\"alice@acme.example\",\"role\":\"admin\"}\n{\"entity\":\"org-00000001\",\"name\":\"X\",\"email\":\"x@acme.example\",\"role\":\"boss\"}\n",
    )
    .unwrap();
    let o = bin(&db, &["contacts", "import", contacts.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("line 2: role `boss` is not one of admin, billing, technical"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("nothing written"), "{}", text(&o));
    let o = bin(
        &db,
        &[
            "contacts",
            "import",
            "--partial",
            contacts.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 new"), "{}", text(&o));

    let o = bin(&db, &["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("intact"));
    // Tamper with the import event.
    {
        let mut conn = countersign::db::establish(&test_db.url).unwrap();
        let id: i64 = audit_events::table
            .filter(audit_events::action.eq("inventory_imported"))
            .select(audit_events::id)
            .first(&mut conn)
            .unwrap();
        diesel::update(audit_events::table.find(id))
            .set(audit_events::detail.eq("{\"lines\":1}"))
            .execute(&mut conn)
            .unwrap();
        let o = bin(&db, &["audit", "verify"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            text(&o).contains(&format!("BROKEN at event {id}")),
            "{}",
            text(&o)
        );
    }
}

async fn serve_stops_gracefully_on_sigterm(backend: Backend) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", db.database_url())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("COUNTERSIGN_MAIL_DIR", dir.path().join("mail"))
        .env_remove("COUNTERSIGN_SCHEMA")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut port = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
            port = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|p| p.parse::<u16>().ok());
            break;
        }
    }
    let port = port.expect("the server logs its address");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut s, &mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed().as_secs() < 20, "no exit after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("request") && l.contains("/healthz") && l.contains("status=200")),
        "{rest:?}"
    );
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

/// Operators drive executions from a terminal: show, execute (refused for the wrong team),
/// follow with an in-process worker, roll back; and a standalone `countersign worker`
/// process runs an execution started through the API, then stops on SIGTERM.
async fn change_commands_and_standalone_worker(backend: Backend) {
    use crate::helpers::{inst, spawn_app_with};
    use reqwest::StatusCode;
    use serde_json::json;
    let app = spawn_app_with(backend, |c| c.worker = false).await;
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1), inst(3)]}))
        .await;
    let db = app.database_url.clone();
    let run = |args: Vec<String>| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            bin(&db, &a)
        })
    };
    let chg = format!("CHG-{id}");
    let o = run(vec!["change".into(), "show".into(), chg.clone()])
        .await
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("[approved]") && text(&o).contains(&fp),
        "{}",
        text(&o)
    );

    let exec = |who: &str, wait: bool| {
        let mut a: Vec<String> = ["change", "execute", &chg, "--as", who, "--fingerprint", &fp]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if wait {
            a.push("--wait".into());
        }
        a
    };
    let o = run(exec("ana@req.example", false)).await.unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("implementing team"), "{}", text(&o));
    let o = run(exec("carla@ops.example", true)).await.unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!("{chg} execution completed: 2 done, 0 failed")),
        "{t}"
    );
    assert_eq!(app.entity(&inst(3)).await["state"], "deleted");

    let o = run(vec![
        "change".into(),
        "rollback".into(),
        chg.clone(),
        "--as".into(),
        "ana@req.example".into(),
    ])
    .await
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("[awaiting_signoff]"), "{t}");
    let rb: i64 = t
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("CHG-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no change number in {t}"));

    // A standalone worker picks up the rollback's execution.
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("worker")
        .env("DATABASE_URL", &app.database_url)
        .env("COUNTERSIGN_POLL_MS", "100")
        .env("RUST_LOG", "warn")
        .env_remove("COUNTERSIGN_SCHEMA")
        .spawn()
        .unwrap();
    let rfp = app.change(rb).await["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = app.sign(rb, "ben", "requester", &rfp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(rb, "carla", "implementer", &rfp, Some(2)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.execute(rb, &rfp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(rb, &["completed"]).await;
    assert_eq!(v["done"], 2, "{v}");
    assert_eq!(app.entity(&inst(3)).await["state"], "active");
    assert!(Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "worker exit: {status}");
}

both_backends!(backend: change_commands_and_standalone_worker);

async fn demo_sets_up_every_state_and_prints_logins(backend: Backend) {
    let db = TestDb::new(backend);
    let o = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["demo", "--no-serve", "--database-url", &db.database_url()])
        .env("RUST_LOG", "warn")
        .env_remove("COUNTERSIGN_SCHEMA")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for who in ["ana@app-owners.example", "carla@platform-ops.example"] {
        assert!(t.contains(who), "{who} missing:\n{t}");
    }
    assert!(t.contains(" cs_"), "no tokens printed:\n{t}");
    assert!(t.contains("Notification mails are written to"), "{t}");
    use countersign::db::schema::changes;
    let mut conn = countersign::db::establish(&db.url).unwrap();
    let mut states: Vec<String> = changes::table
        .select(changes::state)
        .load(&mut conn)
        .unwrap();
    states.sort();
    states.dedup();
    for s in [
        "approved",
        "awaiting_signoff",
        "completed",
        "draft",
        "rejected",
    ] {
        assert!(states.iter().any(|x| x == s), "no {s} change: {states:?}");
    }
    let rollbacks: i64 = changes::table
        .filter(changes::rollback_of.is_not_null())
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(rollbacks, 1);
    // One draft shows a population guard refusing it, with its numbers.
    let guarded: Vec<String> = changes::table
        .filter(changes::errors.like("%\"code\":\"min_remaining\"%"))
        .select(changes::summary)
        .load(&mut conn)
        .unwrap();
    assert_eq!(guarded.len(), 1, "one change refused by min_remaining");
    // One awaits a re-sign from the difference: its list moved after the requester signed.
    let differences: i64 = countersign::db::schema::target_differences::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(differences, 1, "one change shows a difference to re-sign");
    // One, signed by both teams, awaits its third side (a security review) in sam's queue.
    let reviewed: Vec<(String, i64)> = changes::table
        .filter(changes::operation.eq("decommission_site"))
        .filter(changes::state.eq("awaiting_signoff"))
        .select((changes::title, changes::root_count))
        .load(&mut conn)
        .unwrap();
    assert_eq!(reviewed.len(), 1, "{reviewed:?}");
    assert_eq!(reviewed[0].1, 21, "{reviewed:?}");
    let signed: i64 = countersign::db::schema::signoffs::table
        .inner_join(changes::table)
        .filter(changes::operation.eq("decommission_site"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(signed, 3, "a requester and two implementers signed");
    assert!(t.contains("sam@security.example"), "{t}");
    // The calendar: a freeze in force (confirmed by a second admin), one awaiting its
    // confirmation, and a start scheduled for a window's opening.
    let calendar = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["freeze", "list"])
        .env("DATABASE_URL", db.database_url())
        .env("RUST_LOG", "warn")
        .env_remove("COUNTERSIGN_SCHEMA")
        .output()
        .unwrap();
    let listed = text(&calendar);
    assert!(calendar.status.success(), "{listed}");
    assert!(listed.contains("Peak season"), "{listed}");
    let scheduled: i64 = countersign::db::schema::scheduled_starts::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(scheduled, 1, "one start is scheduled");
    assert!(
        guarded[0].contains("would leave 1 Customer organisation with no active Cloud site"),
        "{}",
        guarded[0]
    );
    // Starting again keeps the data and prints fresh tokens.
    let o = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["demo", "--no-serve", "--database-url", &db.database_url()])
        .env("RUST_LOG", "warn")
        .env_remove("COUNTERSIGN_SCHEMA")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("creating demo data"));
}

both_backends!(
    backend: operator_workflow_and_audit_verify,
    serve_stops_gracefully_on_sigterm,
    demo_sets_up_every_state_and_prints_logins,
);
