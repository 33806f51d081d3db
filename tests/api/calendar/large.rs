//! The lockdown test at size: a running 10,000-target execution pauses within one
//! batch of the lockdown's confirmation, stays paused, resumes by itself after the lift, and
//! every target ran exactly once (one version row each, nothing beside the signed list).

use reqwest::StatusCode;
use serde_json::json;

use super::{agreed, app};
use crate::both_backends;
use crate::helpers::Backend;

const SITES: u32 = 100;
const PER_SITE: u32 = 100;
const BATCH: u64 = 250;

async fn a_lockdown_pauses_a_10k_execution_within_one_batch(backend: Backend) {
    let app = app(backend, BATCH, 40).await;
    let mut lines =
        vec![json!({"kind": "org", "id": "org-0000beef", "name": "Big Corp"}).to_string()];
    for s in 0..SITES {
        let site = format!("5f0c6a52-0000-4000-9000-{s:012x}");
        lines.push(json!({"kind": "site", "id": site, "parent": "org-0000beef", "name": format!("big{s}")}).to_string());
        for a in 0..=PER_SITE {
            let app = if a == PER_SITE { "ledger" } else { "insight" };
            lines.push(json!({"kind": "app_install", "id": format!("0b1c2d3e-{s:04x}-4000-9000-{a:012x}"), "parent": site, "name": format!("{app} {s}/{a}"), "attrs": {"app": app, "version": "1.0.0"}}).to_string());
        }
    }
    let (s, v) = app.import("carla", &lines, false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (c, fp) = app
        .approved(
            "uninstall_app",
            json!({"within": {"kind": "org", "ids": ["org-0000beef"]}, "where": {"app": "insight"}}),
        )
        .await;
    let (s, v) = app.execute(c, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["total"], 10_000, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, e) = app
            .get(&format!("/api/v1/changes/{c}/execution"), "ana")
            .await;
        if e["done"].as_u64().unwrap_or(0) >= 2 * BATCH {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    agreed(
        &app,
        "/api/v1/calendar/lockdown",
        json!({"reason": "big incident"}),
    )
    .await;
    let (_, e) = app
        .get(&format!("/api/v1/changes/{c}/execution"), "ana")
        .await;
    let seen = e["done"].as_u64().unwrap();
    let e = app.wait_execution(c, &["paused"]).await;
    let paused_at = e["done"].as_u64().unwrap();
    assert!(
        paused_at <= seen + BATCH,
        "paused at {paused_at}, {seen} done at the lockdown"
    );
    assert!(paused_at < 10_000, "{e}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, e) = app
        .get(&format!("/api/v1/changes/{c}/execution"), "ana")
        .await;
    assert_eq!(
        (&e["state"], e["done"].as_u64()),
        (&json!("paused"), Some(paused_at)),
        "{e}"
    );
    agreed(
        &app,
        "/api/v1/calendar/lockdown/lift",
        json!({"reason": "over"}),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let e = loop {
        let (_, e) = app
            .get(&format!("/api/v1/changes/{c}/execution"), "ana")
            .await;
        if e["state"] == "completed" {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        (
            e["done"].as_u64(),
            e["failed"].as_u64(),
            e["skipped"].as_u64()
        ),
        (Some(10_000), Some(0), Some(0)),
        "{e}"
    );
    // Exactly once: one version row per target, and the ledger apps untouched.
    let conn = &mut app.conn();
    assert_eq!(
        countersign::db::exec::version_count_for_change(conn, c).unwrap(),
        10_000
    );
    let ledger = app
        .entity(&format!("0b1c2d3e-{:04x}-4000-9000-{PER_SITE:012x}", 7))
        .await;
    assert_eq!(ledger["state"], "active", "{ledger}");
}

both_backends!(backend: a_lockdown_pauses_a_10k_execution_within_one_batch);
