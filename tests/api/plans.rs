//! Query plans of scoped resolution: "the children of these parents, of this kind" must be
//! answered from an index on (parent_id, kind), never by walking every entity of the kind
//! (issue #11: without it SQLite chose `entities_kind_name (kind=?)` and a 48,000-target
//! scoped change took 10 s instead of 1).
//!
//! The statements are the ones resolution really sends (captured with diesel's
//! instrumentation), explained by the database. SQLite only: its planner has no statistics
//! on a fresh database, which is what made the wrong choice possible; PostgreSQL plans
//! from statistics, and on a test-sized table any plan is a sequential scan, so there the
//! test checks that the same resolution gives the same targets, and the benchmark
//! (`countersign bench --scoped`) measures the plans at scale.

use std::sync::{Arc, Mutex};

use countersign::db::{self, users};
use countersign::domain::schema::{Schema, EXAMPLE_SCHEMA};
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

/// What a plan step says about the entities table, when it reads it in a way that grows
/// with the size of a kind or of the table.
fn whole_kind_or_table(detail: &str) -> bool {
    let d = detail.trim();
    let on_entities = d.contains(" entities ") || d.ends_with(" entities");
    on_entities
        && (d.starts_with("SCAN ")
            || d.contains("entities_kind_name (kind=?)")
            || (d.contains("USING INDEX entities_kind_name") && !d.contains("name=?")))
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

    let DbConn::Sqlite(_) = &*conn else {
        return;
    };
    let statements: Vec<String> = std::mem::take(&mut *seen.0.lock().unwrap())
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
    assert!(
        statements.iter().any(|q| q.contains("`parent_id` IN")),
        "resolution asked for children by parent: {statements:#?}"
    );
    let mut bad = Vec::new();
    for q in &statements {
        let plan: Vec<PlanRow> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {q}"))
            .load(&mut *conn)
            .unwrap();
        for step in &plan {
            if whole_kind_or_table(&step.detail) {
                bad.push(format!("{}\n    → {}", q, step.detail));
            }
            if q.contains("`parent_id` IN") && step.detail.contains(" entities ") {
                assert!(
                    step.detail
                        .contains("entities_parent_kind_state (parent_id=? AND kind=?")
                        || !q.contains("`kind` ="),
                    "children of a kind by parent use (parent_id, kind, state): {q}\n    → {}",
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

use db::DbConn;

both_backends!(scoped_resolution_uses_the_scope_index);

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
