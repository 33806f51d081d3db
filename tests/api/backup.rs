//! Backups taken while the server writes, restored into a fresh place, served again:
//! `countersign backup`/`restore` on SQLite, `pg_dump`/`pg_restore` (as the README says) on
//! PostgreSQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use countersign::db::schema::{
    audit_events, audit_head, change_targets, changes, comments, execution_items, executions,
    signoffs,
};
use countersign::db::{DatabaseUrl, DbConn};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, serve_existing, Backend, TestApp, TestDb};

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

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Rows of the tables the writers touch.
fn counts(conn: &mut DbConn) -> BTreeMap<&'static str, i64> {
    let mut m = BTreeMap::new();
    m.insert(
        "audit_events",
        audit_events::table.count().get_result(conn).unwrap(),
    );
    m.insert("changes", changes::table.count().get_result(conn).unwrap());
    m.insert(
        "comments",
        comments::table.count().get_result(conn).unwrap(),
    );
    m.insert(
        "signoffs",
        signoffs::table.count().get_result(conn).unwrap(),
    );
    m
}

/// What a copy of one moment must satisfy: the audit chain is as long as its head says,
/// every comment and sign-off has the event committed with it, every resolved change has
/// its whole target list, every execution its items and counts that match them.
fn assert_consistent(conn: &mut DbConn) {
    let events: i64 = audit_events::table.count().get_result(conn).unwrap();
    let head: i64 = audit_head::table
        .select(audit_head::last_id)
        .first(conn)
        .unwrap();
    assert_eq!(events, head, "audit events = chain length");
    let events_of = |conn: &mut DbConn, action: &str| -> i64 {
        audit_events::table
            .filter(audit_events::action.eq(action))
            .count()
            .get_result(conn)
            .unwrap()
    };
    let n: i64 = comments::table.count().get_result(conn).unwrap();
    assert_eq!(n, events_of(conn, "commented"), "comments = their events");
    let n: i64 = signoffs::table.count().get_result(conn).unwrap();
    assert_eq!(n, events_of(conn, "signed"), "sign-offs = their events");
    let all: Vec<(i64, i64, Option<String>)> = changes::table
        .select((changes::id, changes::target_count, changes::fingerprint))
        .load(conn)
        .unwrap();
    for (id, target_count, fingerprint) in all {
        if fingerprint.is_some() {
            let n: i64 = change_targets::table
                .filter(change_targets::change_id.eq(id))
                .count()
                .get_result(conn)
                .unwrap();
            assert_eq!(n, target_count, "CHG-{id} has all its targets");
        }
    }
    let runs: Vec<(i64, i64, i64, i64, i64)> = executions::table
        .select((
            executions::id,
            executions::total,
            executions::done,
            executions::failed,
            executions::skipped,
        ))
        .load(conn)
        .unwrap();
    for (id, total, done, failed, skipped) in runs {
        let items = |conn: &mut DbConn, status: Option<&str>| -> i64 {
            let mut q = execution_items::table
                .filter(execution_items::execution_id.eq(id))
                .into_boxed();
            if let Some(s) = status {
                q = q.filter(execution_items::status.eq(s.to_string()));
            }
            q.count().get_result(conn).unwrap()
        };
        assert_eq!(items(conn, None), total, "execution {id}: items");
        assert_eq!(items(conn, Some("done")), done, "execution {id}: done");
        assert_eq!(
            items(conn, Some("failed")),
            failed,
            "execution {id}: failed"
        );
        assert_eq!(
            items(conn, Some("skipped")),
            skipped,
            "execution {id}: skipped"
        );
    }
}

/// Take the backup of the app's database (while it is written to) into `dir`.
fn take_backup(database_url: &str, dir: &Path) -> std::path::PathBuf {
    if database_url.starts_with("postgres") {
        let file = dir.join("countersign.pgdump");
        let o = run(
            "pg_dump",
            &[
                "--format=custom",
                "--file",
                file.to_str().unwrap(),
                database_url,
            ],
        );
        assert!(o.status.success(), "pg_dump: {}", text(&o));
        file
    } else {
        let file = dir.join("countersign.backup");
        let o = bin(database_url, &["backup", file.to_str().unwrap()]);
        assert!(o.status.success(), "backup: {}", text(&o));
        let t = text(&o);
        for needle in [
            "integrity_check: ok",
            "audit trail: intact",
            "migrations: ",
            "audit_events",
        ] {
            assert!(t.contains(needle), "{needle} missing: {t}");
        }
        file
    }
}

/// Restore the backup into a fresh database of the same backend.
fn restore(database_url: &str, file: &Path) -> TestDb {
    if database_url.starts_with("postgres") {
        let db = TestDb::new(Backend::Postgres);
        let o = run(
            "pg_restore",
            &[
                "--no-owner",
                "--exit-on-error",
                "--dbname",
                &db.database_url(),
                file.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "pg_restore: {}", text(&o));
        db
    } else {
        let db = TestDb::new(Backend::Sqlite);
        let o = bin(&db.database_url(), &["restore", file.to_str().unwrap()]);
        assert!(o.status.success(), "restore: {}", text(&o));
        assert!(text(&o).contains("audit trail: intact"), "{}", text(&o));
        // Only the database: no leftovers of the copy beside it.
        let DatabaseUrl::Sqlite(path) = &db.url else {
            unreachable!()
        };
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            [path.file_name().unwrap().to_string_lossy().to_string()]
        );
        db
    }
}

fn audit_verify(database_url: &str) -> u64 {
    let o = bin(database_url, &["audit", "verify"]);
    assert!(o.status.success(), "audit verify: {}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    t.trim()
        .strip_prefix("audit trail intact: ")
        .and_then(|r| r.strip_suffix(" events"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected audit verify answer: {t}"))
}

async fn backup_during_writes_restores_a_working_copy(app: TestApp) {
    let app = Arc::new(app);
    app.load_fixture().await;
    // An executed change, to roll back in the copy.
    let (done, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1), inst(3)]}))
        .await;
    let (s, v) = app.execute(done, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(done, &["completed"]).await;
    // Another one, executed while the backup runs.
    let (running, fp2) = app
        .approved(
            "uninstall_app",
            json!({"ids": [inst(5), inst(6), inst(7), inst(8)]}),
        )
        .await;
    if app.database_url.starts_with("postgres") {
        let o = bin(&app.database_url, &["backup", "/nonexistent/x"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("pg_dump --format=custom"), "{}", text(&o));
    }

    // Writers: comments by two people, new changes submitted, the execution.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for who in ["ana", "carla"] {
        let (app, stop) = (app.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let (s, v) = app
                    .post(
                        &format!("/api/v1/changes/{done}/comments"),
                        who,
                        json!({"body": format!("{who} {n}")}),
                    )
                    .await;
                assert!(s.is_success(), "{v}");
                n += 1;
            }
            n
        }));
    }
    {
        let (app, stop) = (app.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                app.submitted("ben", "uninstall_app", json!({"ids": [inst(2)]}))
                    .await;
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, v) = app.execute(running, &fp2).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");

    let dir = tempfile::tempdir().unwrap();
    let before = counts(&mut app.conn());
    let (url, path) = (app.database_url.clone(), dir.path().to_path_buf());
    let file = tokio::task::spawn_blocking(move || take_backup(&url, &path))
        .await
        .unwrap();
    let after = counts(&mut app.conn());
    assert!(
        after["audit_events"] > before["audit_events"],
        "writes went on during the backup"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        assert!(w.await.unwrap() > 0, "every writer wrote");
    }
    app.wait_execution(running, &["completed"]).await;
    let end = counts(&mut app.conn());
    assert!(
        end["comments"] > after["comments"],
        "the server kept writing"
    );

    // Restored into a fresh place: one consistent moment between `before` and `after`.
    let restored = tokio::task::spawn_blocking({
        let (url, file) = (app.database_url.clone(), file.clone());
        move || restore(&url, &file)
    })
    .await
    .unwrap();
    let events = audit_verify(&restored.database_url());
    let copy = serve_existing(restored, app.tokens.clone()).await;
    let mut conn = copy.conn();
    let rows = counts(&mut conn);
    for (table, n) in &rows {
        assert!(
            before[table] <= *n && *n <= after[table],
            "{table}: {} <= {n} <= {}",
            before[table],
            after[table]
        );
    }
    assert_eq!(rows["audit_events"] as u64, events);
    assert_consistent(&mut conn);
    drop(conn);

    // The executed change can still be rolled back in the copy.
    let (s, rb) = copy
        .post(
            &format!("/api/v1/changes/{done}/rollback"),
            "ana",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb_id = rb["id"].as_i64().unwrap();
    assert_eq!(rb["summary"]["targets"], 2, "{rb}");
    let rfp = rb["fingerprint"].as_str().unwrap().to_string();
    copy.approve(rb_id, &rfp).await;
    let (s, v) = copy.execute(rb_id, &rfp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = copy.wait_execution(rb_id, &["completed"]).await;
    assert_eq!(v["done"], 2, "{v}");
    for n in [1, 3] {
        assert_eq!(copy.entity(&inst(n)).await["state"], "active");
    }
    assert!(audit_verify(&copy.database_url) > events);
    assert_consistent(&mut copy.conn());
}

both_backends!(backup_during_writes_restores_a_working_copy);

/// The refusals of `backup` and `restore`, and that none leaves a partial file behind.
#[test]
fn backup_and_restore_refuse_what_they_must() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = format!("sqlite://{}", d.join("live.db").display());
    assert!(bin(&db, &["migrate"]).status.success());
    assert!(bin(&db, &["team", "add", "ops"]).status.success());
    let backup = d.join("b.db");
    let b = backup.to_str().unwrap();
    let o = bin(&db, &["backup", b]);
    assert!(o.status.success(), "{}", text(&o));
    // An existing file is kept unless --force.
    let o = bin(&db, &["backup", b]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    let o = bin(&db, &["backup", "--force", b]);
    assert!(o.status.success(), "{}", text(&o));
    // No database there: nothing to back up.
    let o = bin(
        &format!("sqlite://{}", d.join("none.db").display()),
        &["backup", d.join("x.db").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("there is no database"), "{}", text(&o));

    // Restore: an existing database is kept unless --force, and never while in use.
    let o = bin(&db, &["restore", b]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("already holds a database"),
        "{}",
        text(&o)
    );
    {
        let url = countersign::db::DatabaseUrl::parse(&db).unwrap();
        let mut open = countersign::db::establish(&url).unwrap();
        let _: i64 = audit_events::table.count().get_result(&mut open).unwrap();
        let o = bin(&db, &["restore", "--force", b]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            text(&o).contains("is open in another process"),
            "{}",
            text(&o)
        );
    }
    let o = bin(&db, &["restore", "--force", b]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(bin(&db, &["audit", "verify"]).status.success());

    let target = format!("sqlite://{}", d.join("new").join("t.db").display());
    // Not a database, not a countersign database, a broken audit trail: not restored.
    let junk = d.join("junk.db");
    std::fs::write(&junk, "not a database").unwrap();
    let o = bin(&target, &["restore", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("junk.db is not a readable SQLite database"),
        "{}",
        text(&o)
    );
    let other = d.join("other.db");
    let mut c = diesel::SqliteConnection::establish(other.to_str().unwrap()).unwrap();
    diesel::connection::SimpleConnection::batch_execute(&mut c, "CREATE TABLE t (x INTEGER)")
        .unwrap();
    drop(c);
    let o = bin(&target, &["restore", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("is not a countersign database"),
        "{}",
        text(&o)
    );
    let tampered = d.join("tampered.db");
    std::fs::copy(&backup, &tampered).unwrap();
    let mut c = diesel::SqliteConnection::establish(tampered.to_str().unwrap()).unwrap();
    diesel::connection::SimpleConnection::batch_execute(
        &mut c,
        "UPDATE audit_events SET actor = 'someone else' WHERE id = 1",
    )
    .unwrap();
    drop(c);
    let o = bin(&target, &["restore", tampered.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("audit trail is broken at event 1"),
        "{}",
        text(&o)
    );
    // Nothing half-done was left anywhere.
    for dir in [d.to_path_buf(), d.join("new")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(
                !name.contains(".partial-"),
                "{name} left in {}",
                dir.display()
            );
            assert_ne!(name, "t.db", "a refused restore wrote the target");
        }
    }
}
