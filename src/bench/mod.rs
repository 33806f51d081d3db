//! `countersign bench`: the benchmarks, each figure printed beside a baseline measured in
//! the same run. This module: the 1M-entity inventory (generated, imported raw and through
//! validation) and what the benchmarks share; `change` the 100k-target change (explicit
//! and scoped selectors, execution, rollback); `webhook` the external executor.

mod change;
pub mod webhook;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use diesel::prelude::*;

use crate::config::Config;
use crate::db::audit::Actor;
use crate::db::models::NewEntity;
use crate::db::schema::{change_targets, entities};
use crate::db::{self, users, write_tx, DatabaseUrl, DbConn};
use crate::demo::{e, Generator};
pub(crate) use crate::demo::{run_change, sign_both};
use crate::domain::{ChangeState, EntityState};
use crate::error::AppError;
use crate::with_concrete;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Entities in the generated inventory.
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: usize,
    /// Targets in the benchmarked change.
    #[arg(long, default_value_t = 100_000)]
    pub targets: usize,
    /// Scratch directory (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Reuse the imported inventory in --dir and only measure the change.
    #[arg(long, requires = "dir")]
    pub change_only: bool,
    /// Leave out the execution and the rollback of the explicit-ID change: only its
    /// creation (the baseline) and the scoped changes are measured.
    #[arg(long)]
    pub no_execution: bool,
    /// Import and measure the changes (or, with --webhook, run the webhook benchmark) on
    /// this PostgreSQL database (it must be empty; the raw baselines stay on SQLite).
    /// Default: a SQLite file in the scratch directory.
    #[arg(long, conflicts_with = "change_only")]
    pub database_url: Option<String>,
    /// Benchmark the webhook executor instead: `--targets` targets against a loopback
    /// receiver (see src/bench/webhook.rs).
    #[arg(long)]
    pub webhook: bool,
    /// --webhook: the receiver's answer latency.
    #[arg(long, default_value_t = 20)]
    pub webhook_latency_ms: u64,
    /// --webhook: calls in flight at once (the operation's `concurrency`).
    #[arg(long, default_value_t = 64)]
    pub webhook_concurrency: u32,
    /// --webhook: targets of the sequential baseline (concurrency 1).
    #[arg(long, default_value_t = 500)]
    pub webhook_baseline: usize,
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A memory figure of this process from /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn fresh_db(dir: &Path, name: &str) -> anyhow::Result<(db::Pool, DatabaseUrl)> {
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let url = DatabaseUrl::Sqlite(path);
    let pool = db::build_pool(&url, 2)?;
    Ok((pool, url))
}

/// `countersign bench`: the webhook benchmark with `--webhook`, otherwise the inventory
/// and change benchmarks.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let tmp = args.dir.is_none();
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("countersign-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let r = if args.webhook {
        webhook::run(&args, &dir)
    } else {
        inventory_and_change(&args, &dir)
    };
    if tmp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

/// The generated inventory: its NDJSON file, the same rows for the raw baseline, and the
/// IDs the changes select (the first `--targets` app installations, every org).
struct Generated {
    file: PathBuf,
    rows: Vec<NewEntity>,
    app_ids: Vec<String>,
    org_ids: Vec<String>,
}

fn generate(dir: &Path, orgs: usize, targets: usize) -> anyhow::Result<Generated> {
    let t = Instant::now();
    let file = dir.join("inventory.ndjson");
    let mut rows: Vec<NewEntity> = Vec::new();
    let mut app_ids: Vec<String> = Vec::new();
    let mut org_ids: Vec<String> = Vec::new();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let now = db::now();
    Generator::new(7).generate(
        orgs,
        4,
        |_, _| {
            vec!["insight", "ledger", "pulse", "beacon"]
                .into_iter()
                .cycle()
                .take(4)
                .collect()
        },
        |g| {
            let _ = writeln!(out, "{}", g.line());
            if g.kind == "org" {
                org_ids.push(g.id.clone());
            }
            if g.kind == "app_install" && app_ids.len() < targets {
                app_ids.push(g.id.clone());
            }
            rows.push(NewEntity {
                id: g.id,
                kind: g.kind.into(),
                parent_id: g.parent,
                name: g.name,
                attrs: g.attrs.to_string(),
                state: EntityState::Active,
                version: 1,
                created_at: now,
                updated_at: now,
            });
        },
    );
    out.flush()?;
    println!(
        "generated {} NDJSON lines in {:.2}s",
        rows.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(Generated {
        file,
        rows,
        app_ids,
        org_ids,
    })
}

fn inventory_and_change(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (schema, source) =
        Config::for_database(DatabaseUrl::Sqlite(dir.join("x.db"))).load_schema()?;
    // 1 org : 4 sites : 16 app installations = 21 entities per org.
    let orgs = (args.entities / 21).max(1);
    println!(
        "countersign bench — {} entities ({orgs} orgs), a {}-target change, scratch SQLite files in {}",
        orgs * 21,
        args.targets,
        dir.display()
    );
    let Generated {
        file,
        rows,
        app_ids,
        org_ids,
    } = generate(dir, orgs, args.targets)?;
    let n = rows.len();
    if args.change_only {
        drop(rows);
        let pool = db::build_pool(&DatabaseUrl::Sqlite(dir.join("bench.db")), 2)?;
        let mut conn = pool.get()?;
        db::run_migrations(&mut conn)?;
        reset_bench_changes(&mut conn)?;
        drop(conn);
        return change::run(dir, &pool, &schema, &app_ids, &org_ids, !args.no_execution);
    }
    let base_import = baseline_import(dir, rows)?;

    // countersign import: stream the file through validation into a fresh database.
    let pool = match &args.database_url {
        Some(u) => {
            let url = DatabaseUrl::parse(u)?;
            anyhow::ensure!(
                matches!(url, DatabaseUrl::Postgres(_)),
                "--database-url is for PostgreSQL (SQLite is the default)"
            );
            println!("changes on PostgreSQL {}", url.redacted());
            db::build_pool(&url, 2)?
        }
        None => fresh_db(dir, "bench.db")?.0,
    };
    crate::web::prepare_database(&pool, &schema, &source)?;
    let mut conn = pool.get()?;
    let t = Instant::now();
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?);
    let report = db::inventory::import(
        &mut conn,
        &schema,
        std::io::BufRead::lines(reader).map(|l| l.map_err(|e| e.to_string())),
        false,
        &Actor::system(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let imp = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.committed && report.inserted as usize == n,
        "bench import failed: {:?}",
        report.errors.first()
    );
    println!("countersign inventory import (validated):     {imp:>7.2}s  ({:>9.0} lines/s, {:.1}x baseline)", n as f64 / imp, imp / base_import);
    drop(conn);
    change::run(dir, &pool, &schema, &app_ids, &org_ids, !args.no_execution)
}

/// Baseline: plain multi-row inserts of the same rows, one transaction, no validation.
fn baseline_import(dir: &Path, rows: Vec<NewEntity>) -> anyhow::Result<f64> {
    let n = rows.len();
    let (pool, _) = fresh_db(dir, "baseline.db")?;
    let mut conn = pool.get()?;
    db::run_migrations(&mut conn)?;
    let t = Instant::now();
    write_tx(&mut conn, |conn| -> QueryResult<()> {
        for chunk in rows.chunks(db::CHUNK / 2) {
            with_concrete!(&mut *conn, |c| diesel::insert_into(entities::table)
                .values(chunk)
                .execute(c))?;
        }
        Ok(())
    })?;
    let took = t.elapsed().as_secs_f64();
    println!(
        "baseline  raw SQLite insert of {n} rows:        {took:>7.2}s  ({:>9.0} rows/s)",
        n as f64 / took
    );
    Ok(took)
}

/// Undo earlier bench runs in a reused database (`--change-only`).
fn reset_bench_changes(conn: &mut DbConn) -> anyhow::Result<()> {
    use crate::db::schema::{changes, entity_versions, execution_items, executions, signoffs};
    conn.batch_execute_plain("PRAGMA foreign_keys = OFF")?;
    diesel::delete(execution_items::table).execute(conn)?;
    diesel::delete(executions::table).execute(conn)?;
    diesel::delete(entity_versions::table).execute(conn)?;
    diesel::delete(signoffs::table).execute(conn)?;
    diesel::delete(change_targets::table).execute(conn)?;
    diesel::update(changes::table)
        .set(changes::state.eq(ChangeState::Cancelled))
        .execute(conn)?;
    diesel::update(entities::table.filter(entities::state.ne(EntityState::Active)))
        .set((
            entities::state.eq(EntityState::Active),
            entities::deleted_by.eq(None::<i64>),
            entities::deleted_at.eq(None::<chrono::NaiveDateTime>),
            entities::purge_after.eq(None::<chrono::NaiveDateTime>),
        ))
        .execute(conn)?;
    conn.batch_execute_plain("PRAGMA foreign_keys = ON")?;
    Ok(())
}

/// The bench's teams and people (bench@ and bench-req@ request, bench-ops@ implements),
/// once per database.
pub(crate) fn bench_people(conn: &mut DbConn) -> anyhow::Result<()> {
    write_tx(conn, |conn| -> Result<(), AppError> {
        if users::find_team(conn, "app-owners")?.is_some() {
            return Ok(());
        }
        users::create_team(conn, "app-owners")?;
        users::create_team(conn, "platform-ops")?;
        for (email, team) in [
            ("bench@example.com", "app-owners"),
            ("bench-req@example.com", "app-owners"),
            ("bench-ops@example.com", "platform-ops"),
        ] {
            let u = users::create_user(conn, email, "Bench", false)?;
            let t = users::find_team(conn, team)?.expect("team");
            users::add_member(conn, t.id, u.id)?;
        }
        Ok(())
    })
    .map_err(e)
}

/// Baseline: the same rows soft-deleted by plain UPDATEs in the raw-insert database.
fn baseline_soft_delete(dir: &Path, ids: &[String]) -> anyhow::Result<f64> {
    let pool = db::build_pool(&DatabaseUrl::Sqlite(dir.join("baseline.db")), 1)?;
    let mut conn = pool.get()?;
    let t = Instant::now();
    write_tx(&mut conn, |conn| -> QueryResult<()> {
        for chunk in ids.chunks(db::CHUNK) {
            diesel::update(entities::table.filter(entities::id.eq_any(chunk)))
                .set(entities::state.eq(EntityState::Deleted))
                .execute(conn.conn())?;
        }
        Ok(())
    })?;
    let took = t.elapsed().as_secs_f64();
    for chunk in ids.chunks(db::CHUNK) {
        diesel::update(entities::table.filter(entities::id.eq_any(chunk)))
            .set(entities::state.eq(EntityState::Active))
            .execute(&mut conn)?;
    }
    Ok(took)
}

trait PlainExec {
    fn batch_execute_plain(&mut self, sql: &str) -> QueryResult<()>;
}

impl PlainExec for DbConn {
    fn batch_execute_plain(&mut self, sql: &str) -> QueryResult<()> {
        use diesel::connection::SimpleConnection;
        self.batch_execute(sql)
    }
}
