//! The command line, run as a real process.

use std::io::Write;
use std::process::{Command, Output};

use countersign::db::schema::audit_events;
use diesel::prelude::*;

use crate::helpers::fixture_lines;

fn bin(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(args)
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .env_remove("COUNTERSIGN_SCHEMA")
        .output()
        .expect("run countersign")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn help_lists_the_commands() {
    let o = bin("sqlite:///dev/null", &["--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for c in ["serve", "demo", "migrate", "schema", "inventory", "team", "user", "token", "audit", "bench"] {
        assert!(t.contains(c), "{c} missing from --help:\n{t}");
    }
}

#[test]
fn unknown_database_scheme_is_a_clear_error() {
    let o = bin("mysql://localhost/db", &["migrate"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown scheme \"mysql\""), "{}", text(&o));
}

#[test]
fn schema_check_reports_problems_with_places() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, countersign::domain::schema::EXAMPLE_SCHEMA).unwrap();
    let o = bin("sqlite:///dev/null", &["schema", "check", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("version sha256:"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[kinds.site]\nlabel = \"Site\"\nparent = \"org\"\npattern = \"(\"\n\n[operations.x]\nlabel = \"X\"\ntarget = \"app\"\neffect = \"delete\"\n").unwrap();
    let o = bin("sqlite:///dev/null", &["schema", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    for needle in ["line 1: kinds.site.parent: unknown parent kind `org`", "kinds.site.pattern", "operations.x.target", "operations.x.effect: unknown effect `delete`", "operations.x.implemented_by"] {
        assert!(t.contains(needle), "{needle} missing:\n{t}");
    }
}

#[test]
fn operator_workflow_and_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    assert!(bin(&db, &["migrate"]).status.success());
    let o = bin(&db, &["team", "add", "platform-ops"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = bin(&db, &["team", "add", "Bad Name"]);
    assert!(!o.status.success());
    let o = bin(&db, &["user", "add", "carla@ops.example", "--name", "Carla", "--team", "platform-ops"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = bin(&db, &["user", "add", "x@ops.example", "--name", "X", "--team", "nope"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("team `nope` does not exist"));
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
    assert!(text(&o).contains(&format!("line {}: zzz: `zzz` is not a valid Cloud site (site) ID", lines.len())), "{}", text(&o));
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "{}", fixture_lines().join("\n")).unwrap();
    let o = bin(&db, &["inventory", "import", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("15 new"), "{}", text(&o));

    let o = bin(&db, &["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("intact"));
    // Tamper with the import event.
    {
        let mut conn = diesel::SqliteConnection::establish(dir.path().join("cli.db").to_str().unwrap()).unwrap();
        let id: i64 = audit_events::table.filter(audit_events::action.eq("inventory_imported")).select(audit_events::id).first(&mut conn).unwrap();
        diesel::update(audit_events::table.find(id)).set(audit_events::detail.eq("{\"lines\":1}")).execute(&mut conn).unwrap();
        let o = bin(&db, &["audit", "verify"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o).contains(&format!("BROKEN at event {id}")), "{}", text(&o));
    }
}
