//! Operator controls on a running execution (issue #13), on both backends: pause (at the
//! next batch; continue picks it up, bake included), skip the rest of a wave, from the
//! API, the change page and the command line, each an audit event with its reason.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use countersign::domain::schema::EXAMPLE_SCHEMA;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};
use crate::web::sign_in;

/// An app whose `uninstall_gated` runs three installations in waves of 1 and the rest,
/// with these extra lines; the schema file's path for the command line.
async fn app(backend: Backend, extra: &str) -> (TestApp, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let schema = format!(
        "{EXAMPLE_SCHEMA}\n\n[operations.uninstall_gated]\nlabel = \"Uninstall apps, wave by wave\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nrequested_by = [\"app-owners\"]\nsignoffs = {{ requester = 1, implementer = 1 }}\nwaves = [1]\n{extra}"
    );
    std::fs::write(&path, schema).unwrap();
    let app = spawn_app_with(backend, |c| c.schema_path = Some(path.clone())).await;
    app.load_fixture().await;
    let p = path.to_string_lossy().into_owned();
    (app, dir, p)
}

async fn start(app: &TestApp) -> i64 {
    let ids = json!({"ids": [inst(1), inst(2), inst(3)]});
    let (id, fp) = app.approved("uninstall_gated", ids).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    id
}

async fn actions(app: &TestApp, id: i64) -> Vec<String> {
    let (_, events) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn post(app: &TestApp, id: i64, what: &str, who: &str, reason: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/changes/{id}/{what}"),
        who,
        json!({ "reason": reason }),
    )
    .await
}

async fn a_pause_holds_even_past_the_bake_and_continue_resumes_it(backend: Backend) {
    let (app, _dir, _) = app(backend, "bake = \"2s\"\n").await;
    let id = start(&app).await;
    app.wait_execution(id, &["baking"]).await;
    // Only the implementing team (or an admin) pauses.
    let (s, v) = post(&app, id, "pause", "ana", "no").await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("not_implementer")),
        "{v}"
    );
    let (s, v) = post(&app, id, "pause", "carla", "error budget looks odd").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "paused", "{v}");
    assert_eq!(
        v["pause_reason"],
        "paused by carla@ops.example: error budget looks odd"
    );
    let (s, v) = post(&app, id, "pause", "carla", "again").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "execution_state", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(it is paused)"),
        "{v}"
    );
    // The bake ends; a paused execution still does nothing.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let v = app.wait_execution(id, &["paused"]).await;
    assert_eq!(v["done"], 1, "{v}");
    let b = sign_in(&app, "carla").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(
        page.contains("Execution paused by carla@ops.example"),
        "{page}"
    );
    assert!(page.contains("Continue to wave 2"), "{page}");
    assert!(
        !page.contains("id=\"pause\""),
        "a paused execution offers no pause: {page}"
    );
    // Continue: back to the bake it was in (over now), then the next wave.
    let (s, v) = post(&app, id, "continue", "carla", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 3, "{v}");
    let a = actions(&app, id).await;
    for want in [
        "execution_baking",
        "execution_paused_by_operator",
        "execution_continued",
    ] {
        assert!(a.iter().any(|x| x == want), "{want} missing: {a:?}");
    }
}

async fn the_rest_of_a_wave_is_skipped_with_its_reason(backend: Backend) {
    let (app, _dir, _) = app(backend, "pause_after_waves = [1]\n").await;
    let id = start(&app).await;
    app.wait_execution(id, &["paused"]).await;
    let (s, v) = post(&app, id, "skip-wave", "ana", "").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = post(&app, id, "skip-wave", "carla", "the vendor asked to wait").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["waves"][1]["skipped"], 2, "{v}");
    assert_eq!(v["waves"][1]["pending"], 0, "{v}");
    let reason = v["skipped_items"][0]["error"].as_str().unwrap();
    assert_eq!(
        reason,
        "skipped by carla@ops.example: the vendor asked to wait"
    );
    let (s, v) = post(&app, id, "continue", "carla", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!((&v["done"], &v["skipped"]), (&json!(1), &json!(2)), "{v}");
    // The skipped installations are untouched.
    assert_eq!(app.entity(&inst(2)).await["state"], "active");
    assert!(actions(&app, id).await.iter().any(|a| a == "wave_skipped"));
    // The per-target results filter by status: in the API, on the page and in the CSV.
    let (s, v) = app
        .get(
            &format!("/api/v1/changes/{id}/targets?status=skipped"),
            "ana",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    let ids: Vec<&str> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [inst(2), inst(3)]);
    assert!(
        v["targets"][0]["effect"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("the vendor asked to wait"),
        "{v}"
    );
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/targets?status=gone"), "ana")
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_status")),
        "{v}"
    );
    let b = sign_in(&app, "ana").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}?status=done")).await;
    assert!(
        page.contains(&inst(1)) && !page.contains(&format!(">{}<", inst(2))),
        "{page}"
    );
    assert!(page.contains("<option value=\"done\" selected>"), "{page}");
    let (_, csv) = b
        .get(&format!("/changes/CHG-{id}/targets.csv?q=&status=skipped"))
        .await;
    assert_eq!(
        csv.lines().count(),
        3,
        "a header and two skipped targets: {csv}"
    );
    assert!(csv.contains(&inst(3)) && !csv.contains(&inst(1)), "{csv}");
}

async fn the_command_line_pauses_and_continues(backend: Backend) {
    let (app, _dir, schema) = app(backend, "bake = \"30s\"\n").await;
    let id = start(&app).await;
    app.wait_execution(id, &["baking"]).await;
    let db = app.database_url.clone();
    let run = move |args: Vec<String>| {
        let (db, schema) = (db.clone(), schema.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_countersign"))
                .args(&args)
                .env("DATABASE_URL", db)
                .env("COUNTERSIGN_SCHEMA", schema)
                .env("RUST_LOG", "warn")
                .env("COUNTERSIGN_MAILER", "false")
                .output()
                .unwrap()
        })
    };
    let chg = format!("CHG-{id}");
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let o = run(args(&[
        "change",
        "pause",
        &chg,
        "--as",
        "carla@ops.example",
        "--reason",
        "from a terminal",
    ]))
    .await
    .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    let v = app.wait_execution(id, &["paused"]).await;
    assert_eq!(
        v["pause_reason"],
        "paused by carla@ops.example: from a terminal"
    );
    let o = run(args(&[
        "change",
        "continue",
        &chg,
        "--as",
        "ana@req.example",
    ]))
    .await
    .unwrap();
    assert!(!o.status.success(), "a requester cannot continue it");
    let o = run(args(&[
        "change",
        "continue",
        &chg,
        "--as",
        "carla@ops.example",
    ]))
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = app.wait_execution(id, &["baking"]).await;
    assert_eq!(v["next_wave"], 2, "back to its bake: {v}");
}

both_backends!(backend:
    a_pause_holds_even_past_the_bake_and_continue_resumes_it,
    the_rest_of_a_wave_is_skipped_with_its_reason,
    the_command_line_pauses_and_continues,
);
