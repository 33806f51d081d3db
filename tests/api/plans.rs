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
                        .contains("entities_parent_kind (parent_id=? AND kind=?)")
                        || !q.contains("`kind` ="),
                    "children of a kind by parent use (parent_id, kind): {q}\n    → {}",
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
