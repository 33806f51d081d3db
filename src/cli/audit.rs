//! The database's integrity and copies: `audit verify`, `backup`, `restore`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::config::Config;
use crate::db::{self, audit, DatabaseUrl};

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain and name the first broken event; with `--bundle FILE`, check
    /// an evidence bundle offline instead (no database).
    Verify {
        /// An evidence bundle (`GET /api/v1/changes/{id}/evidence`, a `.tar.gz`).
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
    },
}

/// What `backup` and `restore` say on PostgreSQL, where pg_dump and pg_restore do the job.
const PG_BACKUP_HINT: &str = "countersign backup and restore work on the SQLite database; on PostgreSQL use its own tools, which take a consistent snapshot while the server runs:
  pg_dump --format=custom --file FILE \"$DATABASE_URL\"
and, into a new empty database (the server stopped, DATABASE_URL pointing at it):
  pg_restore --no-owner --exit-on-error --dbname \"$DATABASE_URL\" FILE
  countersign audit verify
(README, Backups)";

/// `countersign audit verify`: 1 when the chain is broken.
pub(super) fn verify() -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let pool = db::build_pool(&config.database, 1)?;
    let mut conn = pool.get()?;
    db::run_migrations(&mut conn)?;
    match audit::verify(&mut conn)? {
        audit::Verdict::Intact { events } => {
            println!("audit trail intact: {events} events");
            Ok(0)
        }
        audit::Verdict::Broken { id, reason } => {
            eprintln!("audit trail BROKEN at event {id}: {reason}");
            Ok(1)
        }
    }
}

/// `countersign audit verify --bundle FILE`: every check, one line each; 1 when any failed.
pub(super) fn verify_bundle(file: &Path) -> i32 {
    let report = crate::service::evidence::verify(file);
    let of = report.change.as_deref().unwrap_or("an unknown change");
    for c in &report.checks {
        let mark = if c.ok { "ok    " } else { "FAILED" };
        println!("{mark} {}", c.what);
    }
    if report.ok() {
        println!(
            "evidence bundle of {of} intact: {} checks passed",
            report.checks.len()
        );
        0
    } else {
        let n = report.failures().count();
        eprintln!("evidence bundle of {of} BROKEN: {n} check(s) failed:");
        for c in report.failures() {
            eprintln!("  {}", c.what);
        }
        1
    }
}

/// The configured SQLite database file; `None` on PostgreSQL.
fn sqlite_file() -> anyhow::Result<Option<PathBuf>> {
    Ok(match Config::from_env()?.database {
        DatabaseUrl::Sqlite(db) => Some(db),
        DatabaseUrl::Postgres(_) => None,
    })
}

/// `countersign backup FILE`: 2 on PostgreSQL (use pg_dump).
pub(super) fn backup(file: &Path, force: bool) -> anyhow::Result<i32> {
    let Some(db) = sqlite_file()? else {
        eprintln!("{PG_BACKUP_HINT}");
        return Ok(2);
    };
    let summary = db::backup::backup(&db, file, force)?;
    println!(
        "backup of {} written (a consistent copy as of its last commit before the backup began)",
        db.display()
    );
    print!("{summary}");
    Ok(0)
}

/// `countersign restore FILE`: 2 on PostgreSQL (use pg_restore).
pub(super) fn restore(file: &Path, force: bool) -> anyhow::Result<i32> {
    let Some(db) = sqlite_file()? else {
        eprintln!("{PG_BACKUP_HINT}");
        return Ok(2);
    };
    let summary = db::backup::restore(file, &db, force)?;
    println!("restored {} from {}", db.display(), file.display());
    print!("{summary}");
    println!("start the server on it (it applies any migrations newer than the backup)");
    Ok(0)
}
