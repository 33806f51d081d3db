//! The 100,000-target change against the 1M-entity inventory: created from explicit IDs
//! (beside a raw insert of as many target rows), re-resolved, executed by a worker and
//! rolled back (beside a raw UPDATE of the same rows), then as many targets chosen by
//! scoped selectors (beside the explicit-ID change).

use std::path::Path;
use std::time::Instant;

use diesel::prelude::*;
use serde_json::json;

use super::{
    baseline_soft_delete, bench_people, fresh_db, peak_rss_mib, reset_peak_rss, run_change,
    sign_both, status_mib, PlainExec,
};
use crate::db::models::ChangeTarget;
use crate::db::schema::change_targets;
use crate::db::{self, write_tx, DbConn};
use crate::demo::{e, user};
use crate::domain::selector::{Scope, Selector};
use crate::domain::Schema;
use crate::service::changes::{self as svc, CreateChange};
use crate::service::execution::{self as exec_svc, ExecuteRequest};
use crate::service::CurrentUser;
use crate::with_concrete;

pub(super) fn run(
    dir: &Path,
    pool: &db::Pool,
    schema: &Schema,
    app_ids: &[String],
    org_ids: &[String],
    execute: bool,
) -> anyhow::Result<()> {
    let mut pooled = pool.get()?;
    let conn: &mut DbConn = &mut pooled;
    let base_targets = baseline_targets(dir, app_ids)?;
    bench_people(conn)?;
    let people = People {
        author: user(conn, "bench@example.com")?,
        requester: user(conn, "bench-req@example.com")?,
        implementer: user(conn, "bench-ops@example.com")?,
    };
    let (id, create_explicit) = explicit(conn, schema, &people.author, app_ids, base_targets)?;
    if execute {
        execute_and_roll_back(dir, pool, conn, schema, &people, id, app_ids)?;
    }
    scoped(conn, schema, &people, app_ids, org_ids, create_explicit)
}

/// Who creates (`author`) and signs the bench changes.
struct People {
    author: CurrentUser,
    requester: CurrentUser,
    implementer: CurrentUser,
}

/// Baseline for the change: plain insert of as many target rows.
fn baseline_targets(dir: &Path, app_ids: &[String]) -> anyhow::Result<f64> {
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
    let took = t.elapsed().as_secs_f64();
    println!(
        "baseline  raw SQLite insert of {} target rows:  {took:>7.2}s",
        target_rows.len()
    );
    Ok(took)
}

/// The change: resolve 100k explicit IDs against the 1M inventory, store, audit; then
/// re-resolve it unchanged. Its id and creation time.
fn explicit(
    conn: &mut DbConn,
    schema: &Schema,
    who: &CurrentUser,
    app_ids: &[String],
    base_targets: f64,
) -> anyhow::Result<(i64, f64)> {
    let body = serde_json::to_vec(
        &json!({"title": "bench", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": app_ids}}),
    )?;
    let t = Instant::now();
    let req: CreateChange = serde_json::from_slice(&body)?;
    let parse = t.elapsed().as_secs_f64();
    let id = svc::create(conn, schema, who, req).map_err(e)?;
    let create = t.elapsed().as_secs_f64();
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
    let out = svc::reresolve(conn, schema, who, id).map_err(e)?;
    println!(
        "countersign re-resolution, unchanged fingerprint:        {:>7.2}s  (changed: {})",
        t.elapsed().as_secs_f64(),
        out.fingerprint_changed
    );
    Ok((id, create))
}

/// Execution: sign both sides, execute, let a worker run all waves to the end; then the
/// rollback: one request, two sign-offs, one execution. With peak memory.
fn execute_and_roll_back(
    dir: &Path,
    pool: &db::Pool,
    conn: &mut DbConn,
    schema: &Schema,
    people: &People,
    id: i64,
    app_ids: &[String],
) -> anyhow::Result<()> {
    let (req, ops) = (&people.requester, &people.implementer);
    svc::submit(conn, schema, &people.author, id).map_err(e)?;
    let rss_before = peak_rss_mib();
    reset_peak_rss();
    let exec_time = run_change(pool, conn, schema, id, req, ops)?;
    let rss_exec = peak_rss_mib();
    let (anon_exec, file_exec) = (status_mib("RssAnon:"), status_mib("RssFile:"));
    let base_update = baseline_soft_delete(dir, app_ids)?;
    println!("baseline  raw SQLite UPDATE of the same {} rows (one statement per 2000): {base_update:>7.2}s", app_ids.len());
    println!(
        "countersign execution, soft delete of {} targets (gate + waves + versions): {exec_time:>7.2}s  ({:.1}x the raw update)",
        app_ids.len(),
        exec_time / base_update
    );
    reset_peak_rss();
    let t = Instant::now();
    let rb =
        exec_svc::rollback(conn, schema, &people.author, id, &Default::default()).map_err(e)?;
    let create_rb = t.elapsed().as_secs_f64();
    let rb_time = run_change(pool, conn, schema, rb, req, ops)?;
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
    Ok(())
}

/// Scoped selectors: as many targets chosen by `within` (and `where`) as the explicit-ID
/// change, which is the baseline. 16 app installations per org, 4 of them insight.
fn scoped(
    conn: &mut DbConn,
    schema: &Schema,
    people: &People,
    app_ids: &[String],
    org_ids: &[String],
    create_explicit: f64,
) -> anyhow::Result<()> {
    let per_org = app_ids.len().div_ceil(16);
    let within = |orgs: usize, filter: &[(&str, &str)]| Selector {
        ids: vec![],
        within: Some(Scope {
            kind: "org".into(),
            ids: org_ids[..orgs.min(org_ids.len())].to_vec(),
        }),
        filter: filter
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let scoped = [
        ("within orgs", within(per_org, &[])),
        (
            "within orgs where app=insight",
            within(per_org * 4, &[("app", "insight")]),
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
        let id = svc::create(conn, schema, &people.author, req).map_err(e)?;
        let create = t.elapsed().as_secs_f64();
        let v = svc::view(conn, schema, id).map_err(e)?;
        anyhow::ensure!(
            v.error_count == 0,
            "scoped bench change has errors: {:?}",
            v.errors.first()
        );
        let t = Instant::now();
        svc::submit(conn, schema, &people.author, id).map_err(e)?;
        let submit = t.elapsed().as_secs_f64();
        let ops = &people.implementer;
        let fp = sign_both(conn, schema, id, &people.requester, ops)?;
        let t = Instant::now();
        exec_svc::execute(conn, schema, ops, id, &ExecuteRequest { fingerprint: fp }).map_err(e)?;
        let gate = t.elapsed().as_secs_f64();
        exec_svc::abort(conn, schema, ops, id, Some("bench")).map_err(e)?;
        println!(
            "countersign scoped change `{label}` ({scopes} orgs → {} targets): create {create:.2}s, submit {submit:.2}s, execute gate {gate:.2}s  (baseline: {} explicit IDs created in {:.2}s)",
            v.summary.targets,
            app_ids.len(),
            create_explicit,
        );
    }
    Ok(())
}
