//! Query plans of scoped resolution: "the children of these parents, of this kind" (and a
//! `where` on their attributes) must be answered from the scope index
//! (`entities_children`: parent, kind, state, …), never by walking every entity of a kind
//! or the table (issue #11: without such an index SQLite chose `entities_kind_name
//! (kind=?)` and a 48,000-target scoped change took 10 s instead of 1).
//!
//! SQLite: the statements resolution really sends (captured with diesel's
//! instrumentation), explained by the database (`EXPLAIN QUERY PLAN`; with the planner
//! stability guarantee a plan never depends on the bound values). PostgreSQL: its plans
//! come from statistics (on a table of a few rows any plan is a sequential scan), so there
//! the fixture gets a bulk inventory of 10,500 entities and `ANALYZE`, and the counters of
//! the transaction that resolves (`pg_stat_xact_user_tables`, and per index
//! `pg_stat_get_xact_numscans`, `…_tuples_returned`) say what read the entities table.
//!
//! The one read of a whole kind resolution makes is a population guard's count of the
//! active entities of the root kind (`count(*) … kind = ? AND state = ?`, an index-only
//! count on `entities_kind_state`): it is allowed, and nothing else.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use countersign::db::{self, resolve, users, DbConn};
use countersign::domain::schema::{Schema, EXAMPLE_SCHEMA};
use countersign::domain::selector::Selector;
use countersign::service::changes::{self as svc, CreateChange};
use countersign::service::CurrentUser;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{site, TestApp, ORG1, ORG2};

#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

impl Instrumentation for Statements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.lock().unwrap().push(query.to_string());
        }
    }
}

#[derive(QueryableByName, Debug)]
struct PlanRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
}

/// A population guard's count of a whole kind's active entities (allowed: see above).
fn kind_count(q: &str) -> bool {
    q.starts_with("SELECT COUNT(*) FROM `entities` WHERE ((`entities`.`kind` = ?) AND (`entities`.`state` = ?))")
}

/// What a plan step says about the entities table, when it reads it in a way that grows
/// with the size of a kind or of the table.
fn whole_kind_or_table(detail: &str) -> bool {
    let d = detail.trim();
    let on_entities = d.contains(" entities ") || d.ends_with(" entities");
    on_entities
        && (d.starts_with("SCAN ")
            || d.contains("entities_kind_name (kind=?)")
            || d.contains("entities_kind_state")
            || (d.contains("USING INDEX entities_kind_name") && !d.contains("name=?")))
}

/// The selectors resolved: `within` orgs and sites, each with and without a `where`, and
/// (with `delete_site`, whose `min_remaining` counts sites per org) the guards' descent.
fn selectors() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "uninstall_app",
            json!({"within": {"kind": "org", "ids": [ORG1, ORG2]}}),
        ),
        (
            "uninstall_app",
            json!({"within": {"kind": "org", "ids": [ORG1]}, "where": {"app": "insight"}}),
        ),
        (
            "uninstall_app",
            json!({"within": {"kind": "site", "ids": [site(1), site(4)]}}),
        ),
        (
            "uninstall_app",
            json!({"within": {"kind": "site", "ids": [site(1), site(2)]}, "where": {"app": "insight"}}),
        ),
        (
            "delete_site",
            json!({"within": {"kind": "org", "ids": [ORG1, ORG2]}}),
        ),
    ]
}

/// Resolve every selector of [`selectors`] on `conn` (nothing stored); their target counts.
fn resolve_all(conn: &mut DbConn, schema: &Schema) -> Vec<usize> {
    selectors()
        .into_iter()
        .map(|(op, targets)| {
            let op = schema.operation(op).unwrap();
            let selector: Selector = serde_json::from_value(targets).unwrap();
            let r = resolve::resolve(conn, schema, op, &json!({}), &selector).unwrap();
            r.targets.len()
        })
        .collect()
}

async fn scoped_resolution_uses_the_scope_index(app: TestApp) {
    app.load_fixture().await;
    let schema = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    let mut conn = app.conn();
    let ana = {
        let u = users::find_user_by_email(&mut conn, TestApp::email("ana"))
            .unwrap()
            .unwrap();
        CurrentUser::load(&mut conn, u).unwrap()
    };
    let seen = Statements::default();
    conn.set_instrumentation(seen.clone());
    let mut ids = Vec::new();
    for targets in [
        json!({"within": {"kind": "org", "ids": [ORG1, ORG2]}}),
        json!({"within": {"kind": "org", "ids": [ORG1]}, "where": {"app": "insight"}}),
        json!({"within": {"kind": "site", "ids": [site(1), site(4)]}}),
    ] {
        let req: CreateChange = serde_json::from_value(json!({
            "title": "scoped", "requesting_team": "app-owners",
            "operation": "uninstall_app", "targets": targets,
        }))
        .unwrap();
        ids.push(svc::create(&mut conn, &schema, &ana, req).unwrap());
    }
    let counts: Vec<u64> = ids
        .iter()
        .map(|id| svc::view(&mut conn, &schema, *id).unwrap().summary.targets)
        .collect();
    // The fixture: 8 app installations under the two orgs; insight on 1, 3, 5 in org 1;
    // sites 1 and 4 hold apps 1, 2, 7, 8.
    assert_eq!(counts, [8, 3, 4]);

    match &mut *conn {
        DbConn::Sqlite(_) => {
            let resolved = resolve_all(&mut conn, &schema);
            assert!(
                resolved.iter().all(|n| *n > 0),
                "every selector finds targets: {resolved:?}"
            );
            let statements = std::mem::take(&mut *seen.0.lock().unwrap());
            sqlite_plans(&mut conn, statements);
        }
        DbConn::Pg(_) => pg_scans(&mut conn, &schema),
    }
}

/// SQLite: explain every statement resolution sent that reads the entities table.
fn sqlite_plans(conn: &mut DbConn, statements: Vec<String>) {
    let statements: Vec<String> = statements
        .into_iter()
        .map(|q| {
            q.split(" -- binds:")
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .filter(|q| q.starts_with("SELECT") && q.contains("`entities`"))
        .collect();
    let by_parent = |q: &str| q.contains("`entities`.`parent_id` IN");
    assert!(
        statements
            .iter()
            .any(|q| by_parent(q) && q.contains("json_extract")),
        "resolution asked for children by parent, with the `where` in SQL: {statements:#?}"
    );
    let mut bad = Vec::new();
    for q in &statements {
        let plan: Vec<PlanRow> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {q}"))
            .load(&mut *conn)
            .unwrap();
        for step in &plan {
            if whole_kind_or_table(&step.detail) && !kind_count(q) {
                bad.push(format!("{q}\n    → {}", step.detail));
            }
            let on_entities = step.detail.contains(" entities ");
            if by_parent(q) && q.contains("`entities`.`kind` =") && on_entities {
                assert!(
                    step.detail
                        .contains("entities_children (parent_id=? AND kind=?"),
                    "children of a kind by parent use (parent_id, kind, …): {q}\n    → {}",
                    step.detail
                );
            }
            // A child level without `where` reads the index alone, and so does a `where`
            // (the attributes are in it).
            if by_parent(q) && step.detail.contains("entities_children") {
                assert!(
                    step.detail.contains("COVERING INDEX") || q.contains("COUNT("),
                    "children are read from the index alone: {q}\n    → {}",
                    step.detail
                );
            }
        }
    }
    assert!(
        bad.is_empty(),
        "plans that walk a kind or the table:\n{}",
        bad.join("\n")
    );
}

#[derive(QueryableByName, Debug)]
struct Scans {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    scans: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    read: i64,
}

/// Organisations of the bulk inventory added for PostgreSQL's planner, each with 4 sites
/// of 4 app installations.
const BULK_ORGS: i64 = 500;

/// PostgreSQL: beside the fixture, an inventory large enough that walking a kind costs
/// what it does at scale (500 orgs, 2,000 sites, 8,000 app installations), with statistics;
/// then every selector resolved in one transaction whose own scan counters say what read
/// the entities table.
fn pg_scans(conn: &mut DbConn, schema: &Schema) {
    let bulk = format!(
        "INSERT INTO entities (id, kind, parent_id, name, attrs, state, version, created_at, updated_at) \
         SELECT 'org-9' || lpad(o::text, 7, '0'), 'org', NULL, 'bulk org ' || o, '{{}}', 'active', 1, now(), now() \
           FROM generate_series(1, {BULK_ORGS}) o \
         UNION ALL SELECT 'bulk-site-' || o || '-' || s, 'site', 'org-9' || lpad(o::text, 7, '0'), \
           'bulk site ' || o || '-' || s, '{{}}', 'active', 1, now(), now() \
           FROM generate_series(1, {BULK_ORGS}) o, generate_series(1, 4) s \
         UNION ALL SELECT 'bulk-app-' || o || '-' || s || '-' || a, 'app_install', 'bulk-site-' || o || '-' || s, \
           'bulk app ' || o || '-' || s || '-' || a, \
           CASE WHEN a = 1 THEN '{{\"app\": \"insight\"}}' ELSE '{{\"app\": \"ledger\"}}' END, \
           'active', 1, now(), now() \
           FROM generate_series(1, {BULK_ORGS}) o, generate_series(1, 4) s, generate_series(1, 4) a \
         ORDER BY 1"
    );
    diesel::sql_query(bulk).execute(&mut *conn).unwrap();
    diesel::sql_query("ANALYZE entities")
        .execute(&mut *conn)
        .unwrap();
    // A backend's counters are pending until it flushes them, between transactions: within
    // one transaction they only grow, so the difference is what the resolutions read.
    let counters = |c: &mut DbConn| -> diesel::QueryResult<Vec<Scans>> {
        diesel::sql_query(
            "SELECT 'table' AS name, seq_scan AS scans, seq_tup_read AS read \
             FROM pg_stat_xact_user_tables WHERE relname = 'entities' \
             UNION ALL SELECT i.relname::text, pg_stat_get_xact_numscans(i.oid), \
             pg_stat_get_xact_tuples_returned(i.oid) \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             WHERE x.indrelid = 'entities'::regclass ORDER BY 1",
        )
        .load(c)
    };
    let (resolved, stats) = conn
        .transaction(|c| {
            let before = counters(c)?;
            let resolved = resolve_all(c, schema);
            let mut stats = counters(c)?;
            for (s, b) in stats.iter_mut().zip(before) {
                assert_eq!(s.name, b.name);
                (s.scans, s.read) = (s.scans - b.scans, s.read - b.read);
            }
            diesel::QueryResult::Ok((resolved, stats))
        })
        .unwrap();
    assert!(
        resolved.iter().all(|n| *n > 0),
        "every selector finds targets: {resolved:?}"
    );
    let by_name: BTreeMap<&str, (i64, i64)> = stats
        .iter()
        .map(|s| (s.name.as_str(), (s.scans, s.read)))
        .collect();
    assert_eq!(
        by_name.get("table").map(|s| s.0),
        Some(0),
        "no sequential scan of entities: {stats:#?}"
    );
    assert_eq!(
        by_name.get("entities_kind_name").map_or(0, |s| s.0),
        0,
        "resolution never walks a kind by name: {stats:#?}"
    );
    assert!(
        by_name.get("entities_children").is_some_and(|s| s.0 > 0),
        "children were read through the scope index: {stats:#?}"
    );
    // The root kind's count (destructive operations, every selector) is the only read of
    // entities_kind_state: at most one count per resolution, each reading the orgs only
    // (a walk of the sites or app installations would read thousands).
    let (scans, read) = by_name
        .get("entities_kind_state")
        .copied()
        .unwrap_or_default();
    let orgs = BULK_ORGS + 2;
    assert!(
        scans <= selectors().len() as i64 && read <= scans * orgs,
        "entities_kind_state only counts the root kind: {stats:#?}"
    );
}

both_backends!(scoped_resolution_uses_the_scope_index);

/// Submitting a draft resolves it once (issue #11: "submitting must not resolve twice when
/// nothing changed in between"): a `within` of orgs descends two levels, so one resolution
/// sends two statements for children by parent, and the submission sends no more.
async fn submit_resolves_once(app: TestApp) {
    app.load_fixture().await;
    let schema = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
    let mut conn = app.conn();
    let ana = {
        let u = users::find_user_by_email(&mut conn, TestApp::email("ana"))
            .unwrap()
            .unwrap();
        CurrentUser::load(&mut conn, u).unwrap()
    };
    let req: CreateChange = serde_json::from_value(json!({
        "title": "scoped", "requesting_team": "app-owners", "operation": "uninstall_app",
        "targets": {"within": {"kind": "org", "ids": [ORG1]}},
    }))
    .unwrap();
    let id = svc::create(&mut conn, &schema, &ana, req).unwrap();
    let seen = Statements::default();
    conn.set_instrumentation(seen.clone());
    svc::submit(&mut conn, &schema, &ana, id).unwrap();
    let by_parent: Vec<String> = std::mem::take(&mut *seen.0.lock().unwrap())
        .into_iter()
        .filter(|q| {
            q.starts_with("SELECT")
                && !q.contains("COUNT(")
                && (q.contains("`entities`.`kind` =") || q.contains("\"entities\".\"kind\" ="))
                && (q.contains("`entities`.`parent_id` IN (SELECT value FROM json_each(")
                    || q.contains("\"entities\".\"parent_id\" = ANY("))
        })
        .collect();
    assert_eq!(
        by_parent.len(),
        2,
        "one resolution (two levels) at submit: {by_parent:#?}"
    );
    let v = svc::view(&mut conn, &schema, id).unwrap();
    assert_eq!(v.summary.targets, 6);
}

both_backends!(submit_resolves_once);

#[derive(QueryableByName, Debug)]
struct StmtRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    sql: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    run: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    reprep: i64,
}

#[derive(QueryableByName, Debug)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(conn: &mut DbConn, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// Diesel keeps each statement prepared and binds new values on every call. The bundled
/// SQLite has STAT4; once the statistics hold samples (`PRAGMA optimize` at start-up and
/// after imports), SQLite re-prepares a statement at its next step whenever a bound value
/// compared with an indexed column changed, unless the planner stability guarantee is
/// compiled in (`.cargo/config.toml`). Issue #11 measured that re-preparation at a third of
/// the server's CPU per request. This reads SQLite's own count of re-preparations of the
/// cached statements after many lookups with different values. SQLite only: PostgreSQL
/// prepares on the server, where a changed value never discards the statement.
async fn cached_statements_stay_prepared(app: TestApp) {
    app.load_fixture().await;
    let mut conn = app.conn();
    assert_eq!(
        count(
            &mut conn,
            "SELECT sqlite_compileoption_used('ENABLE_QPSG') + \
             sqlite_compileoption_used('ENABLE_STMTVTAB') AS n"
        ),
        2,
        "the bundled SQLite is built with LIBSQLITE3_FLAGS from .cargo/config.toml"
    );
    diesel::sql_query("ANALYZE").execute(&mut *conn).unwrap();
    assert!(
        count(&mut conn, "SELECT count(*) AS n FROM sqlite_stat4") > 0,
        "ANALYZE gathered STAT4 samples, the condition under which values re-prepare"
    );
    db::refresh_statistics(&mut conn);

    for _ in 0..5 {
        for (_, email, ..) in crate::helpers::PEOPLE {
            users::find_user_by_email(&mut conn, email).unwrap();
        }
        for i in 1..=8 {
            db::inventory::get(&mut conn, &site(i)).unwrap();
        }
    }
    let stmts: Vec<StmtRow> =
        diesel::sql_query("SELECT sql, run, reprep FROM sqlite_stmt WHERE run > 1")
            .load(&mut *conn)
            .unwrap();
    assert!(
        stmts
            .iter()
            .any(|s| s.sql.contains("`email`") && s.run >= 40),
        "the lookups ran as cached statements: {stmts:#?}"
    );
    let reprepared: Vec<_> = stmts.iter().filter(|s| s.reprep > 0).collect();
    assert!(
        reprepared.is_empty(),
        "cached statements re-prepared on a new value: {reprepared:#?}"
    );
}

/// SQLite only (see above): no PostgreSQL twin that would pass without checking anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_statements_stay_prepared_sqlite() {
    use crate::helpers::{run_on, spawn_app, Backend};
    run_on(Backend::Sqlite, |backend| async move {
        cached_statements_stay_prepared(spawn_app(backend).await).await
    })
    .await;
}
