//! `countersign demo` (demo data) and `countersign bench` (the benchmarks).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use diesel::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::config::Config;
use crate::db::audit::Actor;
use crate::db::models::{ChangeTarget, NewEntity};
use crate::db::schema::{change_targets, entities};
use crate::db::{self, users, write_tx, DatabaseUrl, DbConn};
use crate::domain::event::Event;
use crate::domain::selector::{Scope, Selector};
use crate::domain::signoff::Side;
use crate::domain::{ChangeState, EntityState, ExecState};
use crate::error::AppError;
use crate::service::changes::{self as svc, CreateChange, SignRequest};
use crate::service::events::record;
use crate::service::CurrentUser;
use crate::with_concrete;

const ADJ: [&str; 16] = [
    "Acme", "Blue", "Northern", "Bright", "Swift", "Quiet", "Golden", "Iron", "Silver", "Red",
    "Open", "Clear", "Rapid", "Vast", "Prime", "Noble",
];
const NOUN: [&str; 16] = [
    "Harbor",
    "Labs",
    "Foods",
    "Logistics",
    "Health",
    "Media",
    "Energy",
    "Systems",
    "Retail",
    "Capital",
    "Works",
    "Travel",
    "Studio",
    "Farms",
    "Robotics",
    "Bank",
];
const REGIONS: [&str; 3] = ["eu", "us", "apac"];
const APPS: [&str; 4] = ["insight", "ledger", "pulse", "beacon"];

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .to_string()
}

/// A deterministic inventory: `orgs` organisations with `sites_per_org` sites each; each
/// site has `apps_per_site` app installations (the demo varies it). Lines are NDJSON.
pub struct Generator {
    rng: StdRng,
}

pub struct GenEntity {
    pub kind: &'static str,
    pub id: String,
    pub parent: Option<String>,
    pub name: String,
    pub attrs: serde_json::Value,
}

impl GenEntity {
    pub fn line(&self) -> String {
        json!({"kind": self.kind, "id": self.id, "parent": self.parent, "name": self.name, "attrs": self.attrs}).to_string()
    }
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Calls `emit` for every entity, parents before children.
    pub fn generate(
        &mut self,
        orgs: usize,
        sites_per_org: usize,
        apps: impl Fn(usize, &mut StdRng) -> Vec<&'static str>,
        mut emit: impl FnMut(GenEntity),
    ) {
        let mut site_no = 0usize;
        for o in 0..orgs {
            let org_id = format!("org-{:08x}", self.rng.gen::<u32>());
            let org_name = format!("{} {} {}", ADJ[o % 16], NOUN[(o / 16) % 16], o / 256 + 1);
            let slug = org_name.to_lowercase().replace(' ', "-");
            emit(GenEntity {
                kind: "org",
                id: org_id.clone(),
                parent: None,
                name: org_name,
                attrs: json!({"plan": if o % 5 == 0 { "legacy" } else { "standard" }, "region": REGIONS[o % 3]}),
            });
            for s in 0..sites_per_org {
                let site_id = uuid(&mut self.rng);
                let site_name = format!("{slug}-{}.example.net", s + 1);
                emit(GenEntity {
                    kind: "site",
                    id: site_id.clone(),
                    parent: Some(org_id.clone()),
                    name: site_name.clone(),
                    attrs: json!({"url": format!("https://{site_name}"), "tier": if s == 0 { "production" } else { "staging" }}),
                });
                for app in apps(site_no, &mut self.rng) {
                    let id = uuid(&mut self.rng);
                    emit(GenEntity {
                        kind: "app_install",
                        id,
                        parent: Some(site_id.clone()),
                        name: format!("{app} on {site_name}"),
                        attrs: json!({"app": app, "version": format!("{}.{}.{}", 1 + site_no % 3, site_no % 10, site_no % 7)}),
                    });
                }
                site_no += 1;
            }
        }
    }
}

/// The demo's apps per site: every 50th site is empty; `insight` on about 1 site in 7.
fn demo_apps(site: usize, rng: &mut StdRng) -> Vec<&'static str> {
    if site % 50 == 49 {
        return vec![];
    }
    let mut v = vec![APPS[1 + site % 3]];
    if site % 7 == 0 {
        v.push("insight");
    }
    if rng.gen_bool(0.3) {
        let extra = APPS[1 + (site + 1) % 3];
        if !v.contains(&extra) {
            v.push(extra);
        }
    }
    v
}

struct DemoUser {
    email: &'static str,
    name: &'static str,
    team: Option<&'static str>,
    admin: bool,
}

const DEMO_USERS: [DemoUser; 6] = [
    DemoUser {
        email: "ana@app-owners.example",
        name: "Ana Ortiz",
        team: Some("app-owners"),
        admin: false,
    },
    DemoUser {
        email: "ben@app-owners.example",
        name: "Ben Okafor",
        team: Some("app-owners"),
        admin: false,
    },
    DemoUser {
        email: "carla@platform-ops.example",
        name: "Carla Nguyen",
        team: Some("platform-ops"),
        admin: false,
    },
    DemoUser {
        email: "dev@platform-ops.example",
        name: "Dev Patel",
        team: Some("platform-ops"),
        admin: false,
    },
    DemoUser {
        email: "eli@platform-ops.example",
        name: "Eli Schmidt",
        team: Some("platform-ops"),
        admin: false,
    },
    DemoUser {
        email: "admin@countersign.example",
        name: "Admin",
        team: None,
        admin: true,
    },
];

fn user(conn: &mut DbConn, email: &str) -> anyhow::Result<CurrentUser> {
    let u = users::find_user_by_email(conn, email)?
        .ok_or_else(|| anyhow::anyhow!("demo user {email} missing"))?;
    Ok(CurrentUser::load(conn, u)?)
}

fn e(err: AppError) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}

/// Create the demo database if it has no data yet; print fresh API tokens either way.
/// Every demo person signs in to the web app with this password.
pub const DEMO_PASSWORD: &str = "countersign-demo";

pub fn setup(config: &Config) -> anyhow::Result<()> {
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 2)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    let mut conn = pool.get()?;
    if users::find_team(&mut conn, "platform-ops")?.is_none() {
        let started = Instant::now();
        eprintln!("creating demo data in {} …", config.database.redacted());
        write_tx(&mut conn, |conn| -> Result<(), AppError> {
            for t in ["app-owners", "platform-ops"] {
                users::create_team(conn, t)?;
                record(
                    conn,
                    &Actor::system(),
                    None,
                    Event::TeamCreated {
                        team: t.to_string(),
                    },
                )?;
            }
            for d in &DEMO_USERS {
                let u = users::create_user(conn, d.email, d.name, d.admin)?;
                users::set_password(conn, u.id, DEMO_PASSWORD)?;
                if let Some(t) = d.team {
                    let team = users::find_team(conn, t)?.expect("created");
                    users::add_member(conn, team.id, u.id)?;
                }
                record(
                    conn,
                    &Actor::system(),
                    None,
                    Event::UserSaved {
                        email: d.email.to_string(),
                        name: Some(d.name.to_string()),
                        teams: d.team.iter().map(|t| t.to_string()).collect(),
                        admin: d.admin,
                    },
                )?;
            }
            Ok(())
        })
        .map_err(e)?;
        let mut lines = Vec::new();
        Generator::new(2022).generate(300, 10, demo_apps, |g| lines.push(g.line()));
        let report = db::inventory::import(
            &mut conn,
            &schema,
            lines.into_iter().map(Ok),
            false,
            &Actor::system(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            report.committed,
            "demo inventory rejected: {:?}",
            report.errors.first()
        );
        seed_changes(&pool, &mut conn, &schema)?;
        eprintln!(
            "demo data ready in {:.1}s ({} entities)",
            started.elapsed().as_secs_f64(),
            report.inserted
        );
    }
    println!(
        "\ncountersign demo — database {}",
        config.database.redacted()
    );
    println!(
        "Web app: http://{}/ — sign in as any person below with the password `{DEMO_PASSWORD}`.",
        config.bind
    );
    println!("API tokens (new ones each start; use as `Authorization: Bearer <token>`):");
    for d in &DEMO_USERS {
        let u = users::find_user_by_email(&mut conn, d.email)?
            .ok_or_else(|| anyhow::anyhow!("demo user missing"))?;
        let token = users::create_token(&mut conn, u.id, "demo")?;
        println!(
            "  {:<28} {:<13} {token}",
            d.email,
            d.team.unwrap_or(if d.admin { "(admin)" } else { "" })
        );
    }
    println!(
        "Try: curl -H 'Authorization: Bearer <token>' http://{}/api/v1/queue",
        config.bind
    );
    match &config.mail.transport {
        crate::config::MailTransport::Dir(d) => println!(
            "Notification mails are written to {}/ as .eml files (set COUNTERSIGN_SMTP_HOST to send them).\n",
            d.display()
        ),
        crate::config::MailTransport::Smtp { host, port, .. } => {
            println!("Notification mails go out through SMTP at {host}:{port}.\n")
        }
        crate::config::MailTransport::Off => println!(),
    }
    Ok(())
}

fn pick(
    conn: &mut DbConn,
    kind: &str,
    app: Option<&str>,
    n: i64,
    skip: i64,
) -> anyhow::Result<Vec<String>> {
    let mut q = entities::table.filter(entities::kind.eq(kind)).into_boxed();
    if let Some(app) = app {
        q = q.filter(entities::attrs.like(format!("%\"app\":\"{app}\"%")));
    }
    Ok(q.order(entities::id.asc())
        .offset(skip)
        .limit(n)
        .select(entities::id)
        .load(conn)?)
}

fn empty_sites(conn: &mut DbConn, n: usize) -> anyhow::Result<Vec<String>> {
    let sites: Vec<String> = entities::table
        .filter(entities::kind.eq("site"))
        .order(entities::id.asc())
        .select(entities::id)
        .load(conn)?;
    let mut out = Vec::new();
    for s in sites {
        let kids: i64 = entities::table
            .filter(entities::parent_id.eq(&s))
            .count()
            .get_result(conn)?;
        if kids == 0 {
            out.push(s);
            if out.len() == n {
                break;
            }
        }
    }
    Ok(out)
}

fn seed_changes(
    pool: &db::Pool,
    conn: &mut DbConn,
    schema: &crate::domain::Schema,
) -> anyhow::Result<()> {
    let ana = user(conn, "ana@app-owners.example")?;
    let ben = user(conn, "ben@app-owners.example")?;
    let carla = user(conn, "carla@platform-ops.example")?;
    let create = |conn: &mut DbConn,
                  who: &CurrentUser,
                  title: &str,
                  rationale: &str,
                  op: &str,
                  params: serde_json::Value,
                  targets: Selector| {
        svc::create(
            conn,
            schema,
            who,
            CreateChange {
                title: title.into(),
                rationale: rationale.into(),
                requesting_team: "app-owners".into(),
                operation: op.into(),
                params,
                targets,
                expect: None,
                not_before: None,
                not_after: None,
                submit: false,
            },
        )
        .map_err(e)
    };
    let fp = |conn: &mut DbConn, id: i64| -> anyhow::Result<String> {
        Ok(svc::view(conn, schema, id)
            .map_err(e)?
            .fingerprint
            .unwrap_or_default())
    };

    // 1. Awaiting the implementers: uninstall Insight from 40 sites (requester signed).
    let sites = pick(conn, "site", None, 280, 0)?;
    let id = create(
        conn,
        &ana,
        "Uninstall Insight from the first wave of sites",
        "Insight is retired. This removes the app installations only; the sites and their data stay.",
        "uninstall_app",
        json!({}),
        Selector { ids: vec![], within: Some(Scope { kind: "site".into(), ids: sites }), filter: [("app".to_string(), "insight".to_string())].into() },
    )?;
    svc::submit(conn, schema, &ana, id).map_err(e)?;
    let f = fp(conn, id)?;
    svc::sign(
        conn,
        schema,
        &ana,
        id,
        SignRequest {
            side: Side::Requester,
            fingerprint: f,
            comment: "Checked with the Insight product owner.".into(),
            confirm_count: None,
            text_hash: None,
        },
    )
    .map_err(e)?;

    // 2. A draft with the outage's mistake: site IDs pasted where app installations belong.
    let mut ids = pick(conn, "app_install", Some("insight"), 3, 60)?;
    ids.extend(pick(conn, "site", None, 2, 500)?);
    ids.push("0b1c2d3e-typo".into());
    create(
        conn,
        &ben,
        "Remove Insight from two more customers",
        "Follow-up to the first wave.",
        "uninstall_app",
        json!({}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;

    // 3. Approved: record a new ledger version on five installations.
    let ids = pick(conn, "app_install", Some("ledger"), 5, 0)?;
    let id = create(
        conn,
        &ben,
        "Record ledger 2.4.1 on the pilot installations",
        "The pilot sites were upgraded by the vendor.",
        "set_app_version",
        json!({"version": "2.4.1"}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;
    svc::submit(conn, schema, &ben, id).map_err(e)?;
    let f = fp(conn, id)?;
    svc::sign(
        conn,
        schema,
        &ben,
        id,
        SignRequest {
            side: Side::Requester,
            fingerprint: f.clone(),
            comment: String::new(),
            confirm_count: None,
            text_hash: None,
        },
    )
    .map_err(e)?;
    svc::sign(
        conn,
        schema,
        &carla,
        id,
        SignRequest {
            side: Side::Implementer,
            fingerprint: f,
            comment: "Matches the vendor's list.".into(),
            confirm_count: None,
            text_hash: None,
        },
    )
    .map_err(e)?;

    // 4. Rejected: delete two empty sites.
    let ids = empty_sites(conn, 2)?;
    let id = create(
        conn,
        &ana,
        "Delete two unused staging sites",
        "Nobody has logged in for a year.",
        "delete_site",
        json!({}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;
    svc::submit(conn, schema, &ana, id).map_err(e)?;
    svc::comment(
        conn,
        schema,
        &carla,
        id,
        "Backups for these sites are still under legal hold.",
    )
    .map_err(e)?;
    svc::reject(
        conn,
        schema,
        &carla,
        id,
        "Legal hold on the backups: ask again in Q3.",
    )
    .map_err(e)?;

    // 5. Awaiting both sides: uninstall pulse from three installations.
    let ids = pick(conn, "app_install", Some("pulse"), 3, 10)?;
    let id = create(
        conn,
        &ben,
        "Uninstall pulse from three trial sites",
        "The trial ended.",
        "uninstall_app",
        json!({}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;
    svc::submit(conn, schema, &ben, id).map_err(e)?;

    // 6. Executed, then rolled back on request: the rollback awaits its sign-offs.
    let ids = pick(conn, "app_install", Some("pulse"), 4, 20)?;
    let id = create(
        conn,
        &ben,
        "Uninstall pulse from the ended trials",
        "These trials ended last month.",
        "uninstall_app",
        json!({}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;
    svc::submit(conn, schema, &ben, id).map_err(e)?;
    run_change(pool, conn, schema, id, &ana, &carla)?;
    crate::service::execution::rollback(
        conn,
        schema,
        &ana,
        id,
        &crate::service::execution::RollbackRequest {
            title: Some("Bring pulse back on the ended trials".into()),
            rationale: Some("Two of these customers extended their trial after all.".into()),
        },
    )
    .map_err(e)?;
    Ok(())
}

// ---- benchmarks -----------------------------------------------------------------------

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
    /// Import and measure the changes (or, with --webhook, run the webhook benchmark) on
    /// this PostgreSQL database (it must be empty; the raw baselines stay on SQLite).
    /// Default: a SQLite file in the scratch directory.
    #[arg(long, conflicts_with = "change_only")]
    pub database_url: Option<String>,
    /// Benchmark the webhook executor instead: `--targets` targets against a loopback
    /// receiver (see src/bench_webhook.rs).
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

fn fresh_db(dir: &std::path::Path, name: &str) -> anyhow::Result<(db::Pool, DatabaseUrl)> {
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let url = DatabaseUrl::Sqlite(path);
    let pool = db::build_pool(&url, 2)?;
    Ok((pool, url))
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = std::env::temp_dir().join(format!("countersign-bench-{}", std::process::id()));
            std::fs::create_dir_all(&tmp)?;
            tmp.clone()
        }
    };
    if args.webhook {
        let r = crate::bench_webhook::run(&args, &dir);
        if args.dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return r;
    }
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

    let t = Instant::now();
    let file = dir.join("inventory.ndjson");
    let mut rows: Vec<NewEntity> = Vec::new();
    let mut app_ids: Vec<String> = Vec::new();
    let mut org_ids: Vec<String> = Vec::new();
    {
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
                if g.kind == "app_install" && app_ids.len() < args.targets {
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
    }
    let n = rows.len();
    println!(
        "generated {n} NDJSON lines in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    if args.change_only {
        drop(rows);
        let pool = db::build_pool(&DatabaseUrl::Sqlite(dir.join("bench.db")), 2)?;
        let mut conn = pool.get()?;
        db::run_migrations(&mut conn)?;
        reset_bench_changes(&mut conn)?;
        drop(conn);
        return bench_change(&dir, &pool, &schema, &app_ids, &org_ids);
    }

    // Baseline: plain multi-row inserts of the same rows, one transaction, no validation.
    let (pool, _) = fresh_db(&dir, "baseline.db")?;
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
    let base_import = t.elapsed().as_secs_f64();
    drop(rows);
    println!(
        "baseline  raw SQLite insert of {n} rows:        {base_import:>7.2}s  ({:>9.0} rows/s)",
        n as f64 / base_import
    );

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
        None => fresh_db(&dir, "bench.db")?.0,
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
    let r = bench_change(&dir, &pool, &schema, &app_ids, &org_ids);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
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

fn bench_change(
    dir: &std::path::Path,
    pool: &db::Pool,
    schema: &crate::domain::Schema,
    app_ids: &[String],
    org_ids: &[String],
) -> anyhow::Result<()> {
    let mut pooled = pool.get()?;
    let conn: &mut DbConn = &mut pooled;
    // Baseline for the change: plain insert of as many target rows.
    let (pool_b, _) = fresh_db(dir, "baseline-targets.db")?;
    let mut cb = pool_b.get()?;
    db::run_migrations(&mut cb)?;
    cb.batch_execute_plain("PRAGMA foreign_keys = OFF")?;
    let target_rows: Vec<ChangeTarget> = app_ids
        .iter()
        .enumerate()
        .map(|(i, id)| ChangeTarget {
            change_id: 1,
            position: i as i64,
            kind: "app_install".into(),
            entity_id: id.clone(),
            scope_path: "org-00000000/00000000-0000-0000-0000-000000000000".into(),
            name: format!("app {i}"),
        })
        .collect();
    let t = Instant::now();
    write_tx(&mut cb, |conn| -> QueryResult<()> {
        for chunk in target_rows.chunks(db::CHUNK) {
            with_concrete!(&mut *conn, |c| diesel::insert_into(change_targets::table)
                .values(chunk)
                .execute(c))?;
        }
        Ok(())
    })?;
    let base_targets = t.elapsed().as_secs_f64();
    println!(
        "baseline  raw SQLite insert of {} target rows:  {base_targets:>7.2}s",
        target_rows.len()
    );

    // The change: resolve 100k explicit IDs against the 1M inventory, store, audit.
    bench_people(conn)?;
    let who = user(conn, "bench@example.com")?;
    let body = serde_json::to_vec(
        &json!({"title": "bench", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": app_ids}}),
    )?;
    let t = Instant::now();
    let req: CreateChange = serde_json::from_slice(&body)?;
    let parse = t.elapsed().as_secs_f64();
    let id = svc::create(conn, schema, &who, req).map_err(e)?;
    let create = t.elapsed().as_secs_f64();
    let create_explicit = create;
    let v = svc::view(conn, schema, id).map_err(e)?;
    anyhow::ensure!(
        v.error_count == 0 && v.summary.targets as usize == app_ids.len(),
        "bench change has errors: {:?}",
        v.errors.first()
    );
    println!(
        "countersign change of {} targets (parse {:.3}s + resolve + store): {create:>7.2}s  ({:.1}x the raw target insert)  → {}",
        app_ids.len(),
        parse,
        create / base_targets,
        v.summary.text
    );
    let t = Instant::now();
    let out = svc::reresolve(conn, schema, &who, id).map_err(e)?;
    println!(
        "countersign re-resolution, unchanged fingerprint:        {:>7.2}s  (changed: {})",
        t.elapsed().as_secs_f64(),
        out.fingerprint_changed
    );

    // Execution: sign both sides, execute, let a worker run all waves to the end.
    let req = user(conn, "bench-req@example.com")?;
    let req_user = req.clone();
    let ops = user(conn, "bench-ops@example.com")?;
    svc::submit(conn, schema, &who, id).map_err(e)?;
    let rss_before = peak_rss_mib();
    reset_peak_rss();
    let exec_time = run_change(pool, conn, schema, id, &req, &ops)?;
    let rss_exec = peak_rss_mib();
    let (anon_exec, file_exec) = (status_mib("RssAnon:"), status_mib("RssFile:"));
    let base_update = baseline_soft_delete(dir, app_ids)?;
    println!("baseline  raw SQLite UPDATE of the same {} rows (one statement per 2000): {base_update:>7.2}s", app_ids.len());
    println!(
        "countersign execution, soft delete of {} targets (gate + waves + versions): {exec_time:>7.2}s  ({:.1}x the raw update)",
        app_ids.len(),
        exec_time / base_update
    );
    // Rollback: one request, two sign-offs, one execution.
    reset_peak_rss();
    let t = Instant::now();
    let rb = crate::service::execution::rollback(conn, schema, &who, id, &Default::default())
        .map_err(e)?;
    let create_rb = t.elapsed().as_secs_f64();
    let rb_time = run_change(pool, conn, schema, rb, &req, &ops)?;
    println!(
        "countersign rollback: create {create_rb:.2}s, execute (restore {} targets) {rb_time:>7.2}s",
        app_ids.len()
    );
    println!(
        "peak RSS: {rss_before:.0} MiB before execution (the bench holds the generated inventory); \
         during execution {rss_exec:.0} MiB, during rollback {:.0} MiB\n\
         (RSS counts the memory-mapped SQLite file, capped by mmap_size = 1 GiB; after execution \
         heap {anon_exec:.0} MiB + mapped {file_exec:.0} MiB, after rollback heap {:.0} MiB + mapped {:.0} MiB)",
        peak_rss_mib(),
        status_mib("RssAnon:"),
        status_mib("RssFile:")
    );

    // Scoped selectors: as many targets chosen by `within` (and `where`) as the explicit-ID
    // change above, which is the baseline. 16 app installations per org, 4 of them insight.
    let per_org = app_ids.len().div_ceil(16);
    let scoped = [
        (
            "within orgs",
            Selector {
                ids: vec![],
                within: Some(Scope {
                    kind: "org".into(),
                    ids: org_ids[..per_org.min(org_ids.len())].to_vec(),
                }),
                filter: Default::default(),
            },
        ),
        (
            "within orgs where app=insight",
            Selector {
                ids: vec![],
                within: Some(Scope {
                    kind: "org".into(),
                    ids: org_ids[..(per_org * 4).min(org_ids.len())].to_vec(),
                }),
                filter: [("app".to_string(), "insight".to_string())].into(),
            },
        ),
    ];
    for (label, selector) in scoped {
        let scopes = selector.within.as_ref().map_or(0, |w| w.ids.len());
        let req = CreateChange {
            title: format!("bench {label}"),
            rationale: String::new(),
            requesting_team: "app-owners".into(),
            operation: "uninstall_app".into(),
            targets: selector,
            params: Default::default(),
            not_before: None,
            not_after: None,
            expect: None,
            submit: false,
        };
        let t = Instant::now();
        let id = svc::create(conn, schema, &who, req).map_err(e)?;
        let create = t.elapsed().as_secs_f64();
        let v = svc::view(conn, schema, id).map_err(e)?;
        anyhow::ensure!(
            v.error_count == 0,
            "scoped bench change has errors: {:?}",
            v.errors.first()
        );
        let t = Instant::now();
        svc::submit(conn, schema, &who, id).map_err(e)?;
        let submit = t.elapsed().as_secs_f64();
        let fp = sign_both(conn, schema, id, &req_user, &ops)?;
        let t = Instant::now();
        crate::service::execution::execute(
            conn,
            schema,
            &ops,
            id,
            &crate::service::execution::ExecuteRequest { fingerprint: fp },
        )
        .map_err(e)?;
        let gate = t.elapsed().as_secs_f64();
        crate::service::execution::abort(conn, schema, &ops, id, Some("bench")).map_err(e)?;
        println!(
            "countersign scoped change `{label}` ({scopes} orgs → {} targets): create {create:.2}s, submit {submit:.2}s, execute gate {gate:.2}s  (baseline: {} explicit IDs created in {:.2}s)",
            v.summary.targets,
            app_ids.len(),
            create_explicit,
        );
    }
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

/// Sign a submitted change on both sides (confirming its count); its fingerprint.
pub(crate) fn sign_both(
    conn: &mut DbConn,
    schema: &crate::domain::Schema,
    id: i64,
    req: &CurrentUser,
    ops: &CurrentUser,
) -> anyhow::Result<String> {
    let v = svc::view(conn, schema, id).map_err(e)?;
    let fp = v.fingerprint.clone().unwrap_or_default();
    for (who, side) in [(req, Side::Requester), (ops, Side::Implementer)] {
        svc::sign(
            conn,
            schema,
            who,
            id,
            SignRequest {
                side,
                fingerprint: fp.clone(),
                comment: String::new(),
                confirm_count: Some(v.summary.targets),
                text_hash: None,
            },
        )
        .map_err(e)?;
    }
    Ok(fp)
}

/// Sign a submitted change on both sides, execute it with a worker, and return the time
/// from the execute call to the final state.
fn run_change(
    pool: &db::Pool,
    conn: &mut DbConn,
    schema: &crate::domain::Schema,
    id: i64,
    req: &CurrentUser,
    ops: &CurrentUser,
) -> anyhow::Result<f64> {
    let fp = sign_both(conn, schema, id, req, ops)?;
    let wake = std::sync::Arc::new(crate::exec::Wake::default());
    // The worker gets the pool; the URL in its config is not used.
    let mut config = Config::for_database(DatabaseUrl::Sqlite(PathBuf::from("bench.db")));
    config.exec_batch = 2000;
    let worker = crate::exec::Worker::spawn(
        pool.clone(),
        std::sync::Arc::new(schema.clone()),
        config,
        wake.clone(),
    );
    let t = Instant::now();
    crate::service::execution::execute(
        conn,
        schema,
        ops,
        id,
        &crate::service::execution::ExecuteRequest { fingerprint: fp },
    )
    .map_err(e)?;
    wake.notify();
    // Poll the cheap execution row (not the per-wave progress, which scans the items and
    // would compete with the worker for the two cores).
    loop {
        let x = db::exec::for_change(conn, id)?;
        if x.is_some_and(|x| x.state != ExecState::Running) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let took = t.elapsed().as_secs_f64();
    let progress = crate::service::execution::progress(conn, id).map_err(e)?;
    worker.stop();
    anyhow::ensure!(
        progress.state == ExecState::Completed && progress.done == progress.total,
        "bench execution ended {}: {:?}",
        progress.state,
        progress.failures.first()
    );
    Ok(took)
}

/// Baseline: the same rows soft-deleted by plain UPDATEs in the raw-insert database.
fn baseline_soft_delete(dir: &std::path::Path, ids: &[String]) -> anyhow::Result<f64> {
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
