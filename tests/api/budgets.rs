//! Budgets shared across changes (issue #12), on both backends: a change larger than the
//! whole budget is refused at resolution, the execute gate refuses one larger than what is
//! left (shared by the operations of one `budget_group`), a running execution halts when
//! the budget is spent mid-way, a root counted today costs nothing again, the window
//! frees after 24 hours, and two workers drawing at once never take more than the budget.
//! The fixture: org 1 holds apps 1–6, org 2 apps 7 and 8.

use std::sync::Arc;

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use countersign::config::Config;
use countersign::db::schema::budget_uses;
use countersign::db::DatabaseUrl;
use countersign::domain::schema::EXAMPLE_SCHEMA;
use countersign::domain::Schema;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};
use crate::web::sign_in;

/// Two operations drawing from one budget of 3 targets a day, one with 1 root a day.
const BUDGETED: &str = r#"

[operations.uninstall_counted]
label = "Uninstall apps (counted)"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
requested_by = ["app-owners"]
signoffs = { requester = 1, implementer = 1 }
budget = { targets_per_day = 3 }
budget_group = "uninstalls"

[operations.uninstall_counted_too]
label = "Uninstall apps (counted too)"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
requested_by = ["app-owners"]
signoffs = { requester = 1, implementer = 1 }
budget = { targets_per_day = 3 }
budget_group = "uninstalls"

[operations.uninstall_per_customer]
label = "Uninstall apps (one customer a day)"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
requested_by = ["app-owners"]
signoffs = { requester = 1, implementer = 1 }
budget = { roots_per_day = 1 }

[operations.uninstall_twenty]
label = "Uninstall apps (twenty a day)"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
requested_by = ["app-owners"]
signoffs = { requester = 1, implementer = 1 }
budget = { targets_per_day = 20 }
"#;

fn schema_text() -> String {
    format!("{EXAMPLE_SCHEMA}{BUDGETED}")
}

async fn app_with(backend: Backend, worker: bool) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    std::fs::write(&path, schema_text()).unwrap();
    let app = spawn_app_with(backend, |c| {
        c.schema_path = Some(path.clone());
        c.worker = worker;
    })
    .await;
    app.load_fixture().await;
    (app, dir)
}

fn ids(ns: &[u32]) -> Value {
    json!({"ids": ns.iter().map(|n| inst(*n)).collect::<Vec<_>>()})
}

/// Move every use of the budget 25 hours into the past: the window frees.
fn age_uses(app: &TestApp) {
    let mut conn = app.conn();
    let past = countersign::db::now() - chrono::Duration::hours(25);
    diesel::update(budget_uses::table)
        .set(budget_uses::used_at.eq(past))
        .execute(&mut *conn)
        .unwrap();
}

fn uses(app: &TestApp) -> i64 {
    let mut conn = app.conn();
    budget_uses::table.count().get_result(&mut *conn).unwrap()
}

/// Run an in-test worker until every change of `ids` reached one of `states`.
async fn run_worker(app: &TestApp, workers: usize, changes: &[i64], states: &[&str]) {
    run_workers(app, workers, 500, changes, states).await
}

/// [`run_worker`] with `batch` targets per batch.
async fn run_workers(
    app: &TestApp,
    workers: usize,
    batch: usize,
    changes: &[i64],
    states: &[&str],
) {
    let schema = Arc::new(Schema::from_toml(&schema_text()).unwrap());
    let mut config = Config::for_database(DatabaseUrl::parse(&app.database_url).unwrap());
    config.exec_batch = batch;
    config.poll_ms = 5;
    let ws: Vec<_> = (0..workers)
        .map(|_| {
            countersign::exec::Worker::spawn(
                app.pool.clone(),
                schema.clone(),
                config.clone(),
                Arc::new(countersign::exec::Wake::default()),
            )
        })
        .collect();
    for id in changes {
        app.wait_execution(*id, states).await;
    }
    tokio::task::spawn_blocking(move || ws.into_iter().for_each(|w| w.stop()))
        .await
        .unwrap();
}

fn guard<'v>(change: &'v Value, name: &str) -> &'v Value {
    change["summary"]["guards"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["guard"] == name))
        .unwrap_or_else(|| panic!("no {name} guard in {}", change["summary"]))
}

async fn a_change_larger_than_the_whole_budget_is_refused(backend: Backend) {
    let (app, _dir) = app_with(backend, true).await;
    let c = app
        .create("ana", "uninstall_counted", ids(&[1, 2, 3, 4]))
        .await;
    let g = guard(&c, "larger_than_budget");
    assert_eq!(g["passed"], false, "{g}");
    assert_eq!((&g["measured"], &g["limit"]), (&json!(4), &json!(3.0)));
    assert_eq!(
        g["text"],
        "touches 4 targets, more than the budget `uninstalls` allows in 24 hours (3): it could never run; split it into smaller changes: refused"
    );
    assert!(
        c["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "larger_than_budget"),
        "{c}"
    );
    let id = c["id"].as_i64().unwrap();
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(
        v["error"]["details"]["guards"][0]["guard"],
        "larger_than_budget"
    );
    // Roots count too: two customers for a budget of one a day.
    let c = app
        .create("ana", "uninstall_per_customer", ids(&[1, 7]))
        .await;
    let g = guard(&c, "larger_than_budget");
    assert_eq!(g["passed"], false, "{g}");
    assert!(g["text"].as_str().unwrap().starts_with(
        "touches 2 Customer organisations, more than the budget `uninstall_per_customer` allows"
    ));
    // Within the budget: the guard holds and says how much it takes.
    let c = app
        .create("ana", "uninstall_counted", ids(&[1, 2, 3]))
        .await;
    let g = guard(&c, "larger_than_budget");
    assert_eq!(g["passed"], true, "{g}");
    assert_eq!(
        g["text"],
        "touches 3 targets of the 3 the budget `uninstalls` allows in 24 hours"
    );
    assert!(c["errors"].as_array().unwrap().is_empty(), "{c}");
}

async fn the_gate_refuses_more_than_is_left_of_a_shared_budget(backend: Backend) {
    let (app, _dir) = app_with(backend, true).await;
    let (a, fa) = app.approved("uninstall_counted", ids(&[1, 2])).await;
    let c = app.change(a).await;
    assert_eq!(c["budget"]["group"], "uninstalls", "{c}");
    assert_eq!(c["budget"]["needs"]["targets"], 2);
    assert_eq!(c["budget"]["fits"], true);
    let (s, v) = app.execute(a, &fa).await;
    assert!(s.is_success(), "{v}");
    app.wait_execution(a, &["completed"]).await;
    let c = app.change(a).await;
    assert_eq!(c["budget"]["needs"]["targets"], 0, "{c}");
    assert!(c["budget"]["summary"]
        .as_str()
        .unwrap()
        .ends_with("This change needs nothing more from it."));

    // Another operation of the same group: 2 of 3 are used, so 2 more do not fit.
    let (b, fb) = app.approved("uninstall_counted_too", ids(&[3, 4])).await;
    let c = app.change(b).await;
    let budget = &c["budget"];
    assert_eq!(
        budget["targets"],
        json!({"limit": 3, "used": 2, "left": 1}),
        "{c}"
    );
    assert_eq!(budget["fits"], false);
    assert_eq!(budget["shortfall"], "needs 2 targets but 1 of 3 is left");
    assert!(budget["frees_at"].is_string(), "{budget}");
    // A change waiting for sign-off shows it in the queue (1 target fits).
    let (q, _) = app.submitted("ana", "uninstall_counted", ids(&[5])).await;
    let (_, queue) = app.get("/api/v1/queue", "carla").await;
    let item = queue["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == q)
        .unwrap_or_else(|| panic!("not queued: {queue}"))
        .clone();
    assert_eq!(item["budget"]["fits"], true, "{item}");
    assert_eq!(item["budget"]["targets"]["left"], 1);
    let browser = sign_in(&app, "carla").await;
    let (_, page) = browser.get("/queue").await;
    assert!(
        page.contains(r#"data-budget-fits="true">budget uninstalls: 1 of 3 targets left</span>"#),
        "{page}"
    );

    // The new-change preview says what is left and whether a change of this size fits.
    let b_ana = sign_in(&app, "ana").await;
    let preview = |n: &str| {
        vec![
            ("csrf", b_ana.csrf.clone()),
            ("operation", "uninstall_counted".to_string()),
            ("requesting_team", "app-owners".to_string()),
            ("title", "t".to_string()),
            ("rationale", "r".to_string()),
            ("ids", n.to_string()),
            ("action", "preview".to_string()),
        ]
    };
    let two = format!("{}\n{}", inst(6), inst(7));
    for (ids, fits, says) in [
        (inst(6), true, "This change fits in what is left."),
        (two, false, "This change needs 2 targets but 1 of 3 is left"),
    ] {
        let f = preview(&ids);
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, _, body) = b_ana.post("/changes/new", &pairs).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let class = if fits { "budget-ok" } else { "budget-short" };
        assert!(
            body.contains(&format!(r#"<p class="{class}" id="preview-budget">budget `uninstalls`: 2 of 3 targets used in the last 24 hours"#))
                && body.contains(says),
            "{body}"
        );
    }

    // The gate refuses, with the numbers; nothing changes.
    let (s, v) = app.execute(b, &fb).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "CHG-{b} needs 2 targets but 1 of 3 is left in the budget `uninstalls` (2 of 3 targets used in the last 24 hours); part of it comes back at "
        )),
        "{msg}"
    );
    assert_eq!(v["error"]["details"]["budget"]["targets"]["used"], 2);
    assert_eq!(app.change(b).await["state"], "approved");
    assert_eq!(app.entity(&inst(3)).await["state"], "active");
    let (_, page) = browser.get(&format!("/changes/CHG-{b}")).await;
    assert!(
        page.contains(r#"class="budget-short" id="budget" data-fits="false">budget `uninstalls`: 2 of 3 targets used in the last 24 hours"#),
        "{page}"
    );
    assert!(page.contains("This change needs 2 targets but 1 of 3 is left: the execute gate refuses it until the budget has room"));

    // A day later the uses no longer count: it runs.
    age_uses(&app);
    let (s, v) = app.execute(b, &fb).await;
    assert!(s.is_success(), "{v}");
    app.wait_execution(b, &["completed"]).await;
    assert_eq!(app.entity(&inst(4)).await["state"], "deleted");
    assert_eq!(uses(&app), 4);
}

async fn a_running_execution_halts_when_the_budget_is_spent(backend: Backend) {
    // No worker in the server: both changes pass the gate before either takes anything.
    let (app, _dir) = app_with(backend, false).await;
    let (a, fa) = app.approved("uninstall_counted", ids(&[1, 2])).await;
    let (b, fb) = app.approved("uninstall_counted_too", ids(&[3, 4])).await;
    for (id, fp) in [(a, &fa), (b, &fb)] {
        let (s, v) = app.execute(id, fp).await;
        assert!(s.is_success(), "{v}");
    }
    run_worker(&app, 1, &[a, b], &["completed", "halted"]).await;
    let ea = app.wait_execution(a, &["completed", "halted"]).await;
    let eb = app.wait_execution(b, &["completed", "halted"]).await;
    // Whichever ran first completed; the other took the 1 target left, then halted.
    let (done, halted, hid) = if ea["state"] == "completed" {
        (ea, eb, b)
    } else {
        (eb, ea, a)
    };
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(halted["state"], "halted", "{halted}");
    assert_eq!(halted["done"], 1, "{halted}");
    let reason = halted["halt_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "the budget `uninstalls` is spent: 3 of 3 targets used in the last 24 hours"
        ),
        "{reason}"
    );
    assert_eq!(uses(&app), 3);
    let (_, ev) = app
        .get(&format!("/api/v1/changes/{hid}/events"), "ana")
        .await;
    let halt = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "execution_halted")
        .unwrap_or_else(|| panic!("no halt event: {ev}"))
        .clone();
    assert_eq!(halt["detail"]["budget"], "uninstalls", "{halt}");
    // Resuming while the budget is spent is refused, with when it frees.
    let (s, v) = app
        .post(&format!("/api/v1/changes/{hid}/resume"), "carla", json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot resume yet: the budget `uninstalls` is spent"));
    // Once it frees, a resume finishes the rest.
    age_uses(&app);
    let (s, v) = app
        .post(&format!("/api/v1/changes/{hid}/resume"), "carla", json!({}))
        .await;
    assert!(s.is_success(), "{v}");
    run_worker(&app, 1, &[hid], &["completed"]).await;
    assert_eq!(uses(&app), 4);
}

async fn a_root_counted_today_costs_nothing_again(backend: Backend) {
    let (app, _dir) = app_with(backend, true).await;
    let (a, fa) = app.approved("uninstall_per_customer", ids(&[1])).await;
    let (s, v) = app.execute(a, &fa).await;
    assert!(s.is_success(), "{v}");
    app.wait_execution(a, &["completed"]).await;
    // Another app of the same customer: its root is already counted.
    let (b, fb) = app.approved("uninstall_per_customer", ids(&[2, 3])).await;
    let c = app.change(b).await;
    assert_eq!(
        c["budget"]["needs"],
        json!({"targets": 2, "roots": 0}),
        "{c}"
    );
    assert_eq!(
        c["budget"]["roots"],
        json!({"limit": 1, "used": 1, "left": 0})
    );
    assert_eq!(c["budget"]["fits"], true);
    let (s, v) = app.execute(b, &fb).await;
    assert!(s.is_success(), "{v}");
    app.wait_execution(b, &["completed"]).await;
    // Another customer does not fit today.
    let (d, fd) = app.approved("uninstall_per_customer", ids(&[7])).await;
    let (s, v) = app.execute(d, &fd).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("needs 1 root but 0 of 1 are left in the budget `uninstall_per_customer`"));
    // A rollback runs the inverse and takes nothing from the budget.
    let (s, v) = app
        .post(&format!("/api/v1/changes/{b}/rollback"), "carla", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = v["id"].as_i64().unwrap();
    assert!(app.change(r).await["budget"].is_null());
}

async fn two_workers_never_take_more_than_the_budget(backend: Backend) {
    // Four changes of 10 targets pass the gate with nothing used; two workers then draw at
    // once, one target per batch, from the 20 targets a day: every batch counts what is
    // left under the group's lock, so exactly 20 run, however the batches interleave.
    let (app, _dir) = app_with(backend, false).await;
    let extra: Vec<String> = (0..40)
        .map(|n| json!({"kind": "app_install", "id": inst(100 + n), "parent": crate::helpers::site(1 + n % 3), "name": format!("extra {n}"), "attrs": {"app": "insight", "version": "1.0.0"}}).to_string())
        .collect();
    let (s, v) = app.import("carla", &extra, false).await;
    assert!(s.is_success(), "{v}");
    let mut changes = Vec::new();
    for k in 0..4u32 {
        let ns: Vec<u32> = (0..10).map(|i| 100 + k * 10 + i).collect();
        let (id, fp) = app.approved("uninstall_twenty", ids(&ns)).await;
        let (s, v) = app.execute(id, &fp).await;
        assert!(s.is_success(), "{v}");
        changes.push(id);
    }
    run_workers(&app, 2, 1, &changes, &["completed", "halted"]).await;
    let mut done = 0;
    for id in &changes {
        let e = app.wait_execution(*id, &["completed", "halted"]).await;
        done += e["done"].as_i64().unwrap();
    }
    assert_eq!(done, 20, "exactly the budget ran");
    assert_eq!(uses(&app), 20);
    let deleted = {
        let mut conn = app.conn();
        use countersign::db::schema::entities;
        entities::table
            .filter(entities::state.eq("deleted"))
            .count()
            .get_result::<i64>(&mut *conn)
            .unwrap()
    };
    assert_eq!(deleted, 20);
}

both_backends!(backend:
    a_change_larger_than_the_whole_budget_is_refused,
    the_gate_refuses_more_than_is_left_of_a_shared_budget,
    a_running_execution_halts_when_the_budget_is_spent,
    a_root_counted_today_costs_nothing_again,
    two_workers_never_take_more_than_the_budget,
);

/// The group's lock is what makes the count and the take one step: a second taker waits
/// for the first to commit, then counts what it took. (Without the lock, PostgreSQL's
/// second transaction would count 0 under READ COMMITTED and take the same room again.)
async fn a_second_taker_counts_what_the_first_took(backend: Backend) {
    use countersign::db::{budgets, write_tx};
    use countersign::error::AppError;
    let (app, _dir) = app_with(backend, true).await;
    let change = app.create("ana", "uninstall_counted", ids(&[1])).await["id"]
        .as_i64()
        .unwrap();
    // The group's row exists already (a first insert of it would serialise by itself).
    write_tx(&mut app.conn(), |tx| budgets::lock_group(tx, "uninstalls")).unwrap();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let pool = app.pool.clone();
    let first = std::thread::spawn(move || {
        let mut conn = pool.get().unwrap();
        write_tx(&mut conn, |tx| -> Result<(), AppError> {
            budgets::lock_group(tx, "uninstalls")?;
            let now = countersign::db::now();
            assert_eq!(budgets::usage(tx, "uninstalls", now)?.targets, 0);
            locked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            budgets::take(tx, "uninstalls", change, &[(inst(1).as_str(), "org")], now)?;
            Ok(())
        })
        .unwrap();
    });
    locked_rx.recv().unwrap();
    let pool = app.pool.clone();
    let seen = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().unwrap();
        write_tx(&mut conn, |tx| -> Result<u64, AppError> {
            budgets::lock_group(tx, "uninstalls")?;
            Ok(budgets::usage(tx, "uninstalls", countersign::db::now())?.targets)
        })
        .unwrap()
    })
    .await
    .unwrap();
    first.join().unwrap();
    assert_eq!(
        seen, 1,
        "the second taker counted before the first committed"
    );
}

both_backends!(backend: a_second_taker_counts_what_the_first_took);
