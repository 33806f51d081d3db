//! `countersign bench --webhook`: the external executor against a real HTTP receiver on
//! 127.0.0.1 (in this process, its own thread and runtime) that verifies each signature
//! and answers after a fixed latency. It measures, in one run:
//!
//! - the receiver's own round trip (sequential calls over one keep-alive connection), from
//!   which the latency floor `concurrency × 1000 / latency_ms` follows;
//! - a raw HTTP client alone (no database) at the same concurrency: the ceiling of this
//!   machine's loopback, client and receiver;
//! - the baseline: a change of `--webhook-baseline` targets run at `concurrency = 1`
//!   (one call at a time, as the executor did before);
//! - the benchmarked change: `--targets` targets at `--webhook-concurrency`.
//!
//! Each change goes the product's way: created from explicit IDs, signed on both sides,
//! executed by a worker thread (waves, leases, fenced batches), checked complete, and the
//! receiver must have seen every idempotency key.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::BenchArgs;
use crate::config::Config;
use crate::db::audit::Actor;
use crate::db::{self, users, DatabaseUrl, DbConn};
use crate::demo::Generator;
use crate::domain::{ExecState, Schema};
use crate::error::AppError;
use crate::exec::webhook::sign;
use crate::service::changes::{self as svc, CreateChange};
use crate::service::CurrentUser;

const SECRET_ENV: &str = "COUNTERSIGN_BENCH_HOOK_SECRET";
const SECRET: &str = "bench-secret";

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    calls: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    bad_signatures: AtomicU64,
    keys: Mutex<HashSet<String>>,
}

struct Receiver {
    url: String,
    seen: Arc<Seen>,
}

async fn hook(
    req: HttpRequest,
    body: web::Bytes,
    latency: web::Data<Duration>,
    seen: web::Data<Arc<Seen>>,
) -> HttpResponse {
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
    seen.calls.fetch_add(1, Ordering::Relaxed);
    let sig = req
        .headers()
        .get(crate::exec::webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ok = sign(SECRET.as_bytes(), &body) == sig;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(k) = v["idempotency_key"].as_str() {
        seen.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k.to_string());
    }
    actix_rt::time::sleep(**latency).await;
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    if !ok {
        seen.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok().json(json!({"id": v["target"]["id"], "kind": v["target"]["kind"]}))
}

/// Start the receiver on its own thread; it lives until the process ends.
fn start_receiver(latency: Duration) -> anyhow::Result<Receiver> {
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bench-receiver".into())
        .spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(latency))
                        .app_data(web::Data::new(s2.clone()))
                        .route("/hook", web::post().to(hook))
                })
                .workers(1)
                .backlog(4096)
                .max_connections(100_000)
                .bind(("127.0.0.1", 0));
                match server {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.addrs()[0].port()));
                        let _ = server.run().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    let port = rx.recv()??;
    Ok(Receiver {
        url: format!("http://127.0.0.1:{port}/hook"),
        seen,
    })
}

/// Mean round trip of sequential calls over one keep-alive connection, and what a bare
/// client reaches at `concurrency` (calls per second), with no database.
/// Runs on its own thread: `countersign bench` itself runs inside the CLI's runtime.
fn raw_client(url: &str, concurrency: usize, calls: usize) -> anyhow::Result<(f64, f64)> {
    std::thread::scope(|s| {
        s.spawn(|| raw_client_here(url, concurrency, calls))
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the raw client panicked")))
    })
}

fn raw_client_here(url: &str, concurrency: usize, calls: usize) -> anyhow::Result<(f64, f64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
        let body = |i: usize| {
            let b = serde_json::to_vec(&json!({"idempotency_key": format!("raw-{i}"), "target": {"kind": "app_install", "id": format!("raw-{i}")}})).expect("json");
            (sign(SECRET.as_bytes(), &b), b)
        };
        let post = |i: usize| {
            let (sig, b) = body(i);
            let req = client
                .post(url)
                .header("content-type", "application/json")
                .header(crate::exec::webhook::SIGNATURE_HEADER, sig)
                .body(b);
            async move {
                let r = req.send().await?;
                r.bytes().await
            }
        };
        post(0).await?; // connect
        let n = 25;
        let t = Instant::now();
        for i in 0..n {
            post(i).await?;
        }
        let rtt_ms = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let t = Instant::now();
        let ok = stream::iter(0..calls)
            .map(post)
            .buffer_unordered(concurrency)
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await;
        anyhow::ensure!(ok == calls, "raw client: {} of {calls} calls failed", calls - ok);
        Ok((rtt_ms, calls as f64 / t.elapsed().as_secs_f64()))
    })
}

fn e(err: AppError) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}

fn user(conn: &mut DbConn, email: &str) -> anyhow::Result<CurrentUser> {
    let u = users::find_user_by_email(conn, email)?
        .ok_or_else(|| anyhow::anyhow!("no user {email}"))?;
    Ok(CurrentUser::load(conn, u)?)
}

/// The example schema plus the two bench operations; (schema, its TOML).
fn schema_for(url: &str, concurrency: u32, max_targets: usize) -> anyhow::Result<(Schema, String)> {
    let mut src = crate::domain::schema::EXAMPLE_SCHEMA.to_string();
    for (name, c) in [("bench_hook_sequential", 1), ("bench_hook", concurrency)] {
        src.push_str(&format!(
            "\n[operations.{name}]\nlabel = \"Bench webhook ({c} at once)\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"{url}\"\nsecret_env = \"{SECRET_ENV}\"\ntimeout_ms = 10000\nmax_attempts = 5\nconcurrency = {c}\nmax_targets = {max_targets}\n# The bench measures the executor, not approvals: one implementer signs.\nirreversible_signoffs = 0\n"
        ));
    }
    let schema = Schema::from_toml(&src).map_err(|p| anyhow::anyhow!("bench schema: {p}"))?;
    Ok((schema, src))
}

pub fn run(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let latency = Duration::from_millis(args.webhook_latency_ms);
    let concurrency = args.webhook_concurrency.clamp(1, 256);
    let (n, base_n) = (args.targets.max(1), args.webhook_baseline.max(1));
    let url = match &args.database_url {
        Some(u) => DatabaseUrl::parse(u).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => {
            let path = dir.join("webhook-bench.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            DatabaseUrl::Sqlite(path)
        }
    };
    let backend = match &url {
        DatabaseUrl::Sqlite(p) => format!("SQLite in {}", p.display()),
        DatabaseUrl::Postgres(_) => "PostgreSQL".to_string(),
    };
    let receiver = start_receiver(latency)?;
    println!(
        "countersign bench --webhook — receiver on 127.0.0.1 answering after {} ms, {backend}",
        latency.as_millis()
    );
    let (rtt, raw) = raw_client(&receiver.url, concurrency as usize, 10_000)?;
    let floor = |c: u32| c as f64 * 1000.0 / rtt;
    println!(
        "receiver round trip (sequential, keep-alive):       {rtt:>7.2} ms → floor {:.0} targets/s at concurrency {concurrency} ({:.0}/s nominal: {concurrency} × 1000 / {} ms)",
        floor(concurrency),
        concurrency as f64 * 1000.0 / latency.as_millis().max(1) as f64,
        latency.as_millis()
    );
    println!(
        "raw HTTP client, no database, concurrency {concurrency}, 10000 calls: {raw:>7.0} calls/s ({:.0}% of the floor)",
        raw * 100.0 / floor(concurrency)
    );

    let (schema, source) = schema_for(&receiver.url, concurrency, n.max(base_n))?;
    let pool = db::build_pool(&url, 4)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    let mut pooled = pool.get()?;
    let conn: &mut DbConn = &mut pooled;
    let t = Instant::now();
    let app_ids = inventory(conn, &schema, n + base_n)?;
    println!(
        "inventory of {} app installations imported in {:.2}s",
        app_ids.len(),
        t.elapsed().as_secs_f64()
    );
    super::bench_people(conn)?;

    let (base_ids, ids) = app_ids.split_at(base_n);
    let (took, seen) = run_hook(
        &pool,
        conn,
        &schema,
        "bench_hook_sequential",
        base_ids,
        &receiver,
    )?;
    let base_rate = base_n as f64 / took;
    println!(
        "baseline  {base_n} targets at concurrency 1:            {took:>7.2}s  ({base_rate:>7.0} targets/s; floor {:.0}/s; {} calls, at most {seen} in flight)",
        floor(1),
        base_n
    );
    let (took, seen) = run_hook(&pool, conn, &schema, "bench_hook", ids, &receiver)?;
    let rate = n as f64 / took;
    println!(
        "countersign {n} targets at concurrency {concurrency}:     {took:>7.2}s  ({rate:>7.0} targets/s; floor {:.0}/s = {:.0}% of it; {:.1}x the baseline; at most {seen} in flight)",
        floor(concurrency),
        rate * 100.0 / floor(concurrency),
        rate / base_rate
    );
    Ok(())
}

/// `count` app installations (16 per org, 4 per site); returns their IDs.
fn inventory(conn: &mut DbConn, schema: &Schema, count: usize) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut ids = Vec::with_capacity(count);
    Generator::new(11).generate(
        count.div_ceil(16),
        4,
        |_, _| vec!["insight", "ledger", "pulse", "beacon"],
        |g| {
            if g.kind == "app_install" {
                if ids.len() >= count {
                    return;
                }
                ids.push(g.id.clone());
            }
            lines.push(g.line());
        },
    );
    let report = db::inventory::import(
        conn,
        schema,
        lines.into_iter().map(Ok),
        false,
        &Actor::system(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        report.committed,
        "bench import failed: {:?}",
        report.errors.first()
    );
    Ok(ids)
}

/// Create, sign and execute a change of `operation` over `ids`; wait for it with a
/// worker thread. Returns the seconds from the execute call to the final state and the
/// most calls the receiver had in flight at once.
fn run_hook(
    pool: &db::Pool,
    conn: &mut DbConn,
    schema: &Schema,
    operation: &str,
    ids: &[String],
    receiver: &Receiver,
) -> anyhow::Result<(f64, u64)> {
    let who = user(conn, "bench@example.com")?;
    let req = user(conn, "bench-req@example.com")?;
    let ops = user(conn, "bench-ops@example.com")?;
    let create: CreateChange = serde_json::from_value(json!({
        "title": format!("bench {operation}"),
        "requesting_team": "app-owners",
        "operation": operation,
        "targets": {"ids": ids},
    }))?;
    let id = svc::create(conn, schema, &who, create).map_err(e)?;
    svc::submit(conn, schema, &who, id).map_err(e)?;
    let v = svc::view(conn, schema, id).map_err(e)?;
    anyhow::ensure!(
        v.error_count == 0 && v.summary.targets as usize == ids.len(),
        "bench change has errors: {:?}",
        v.errors.first()
    );
    let fp = super::sign_both(conn, schema, id, &req, &ops)?;
    receiver.seen.max_in_flight.store(0, Ordering::SeqCst);
    let calls_before = receiver.seen.calls.load(Ordering::SeqCst);
    receiver
        .seen
        .keys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let wake = Arc::new(crate::exec::Wake::default());
    let mut config = Config::for_database(DatabaseUrl::Sqlite("unused.db".into()));
    config
        .secrets
        .insert(SECRET_ENV.into(), crate::config::Secret::new(SECRET));
    let worker =
        crate::exec::Worker::spawn(pool.clone(), Arc::new(schema.clone()), config, wake.clone());
    let t = Instant::now();
    crate::service::execution::execute(
        conn,
        schema,
        &ops,
        id,
        &crate::service::execution::ExecuteRequest {
            fingerprint: fp.clone(),
        },
    )
    .map_err(e)?;
    wake.notify();
    loop {
        let x = db::exec::for_change(conn, id)?;
        if x.is_some_and(|x| x.state != ExecState::Running) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t.elapsed().as_secs_f64();
    worker.stop();
    let progress = crate::service::execution::progress(conn, id).map_err(e)?;
    anyhow::ensure!(
        progress.state == ExecState::Completed && progress.done as usize == ids.len(),
        "bench execution ended {}: {:?}",
        progress.state,
        progress.failures.first()
    );
    let seen = &receiver.seen;
    let keys = seen.keys.lock().unwrap_or_else(|e| e.into_inner()).len();
    anyhow::ensure!(
        keys == ids.len() && seen.bad_signatures.load(Ordering::SeqCst) == 0,
        "the receiver saw {keys} keys for {} targets",
        ids.len()
    );
    let calls = seen.calls.load(Ordering::SeqCst) - calls_before;
    if calls as usize != ids.len() {
        println!("  ({calls} calls for {} targets: retries)", ids.len());
    }
    Ok((took, seen.max_in_flight.load(Ordering::SeqCst)))
}
