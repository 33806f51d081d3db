//! `/metrics` (issue #14): Prometheus text after a known sequence — a change created,
//! approved and executed over the API — and the optional bearer token.

use reqwest::StatusCode;
use serde_json::json;

use countersign::config::Secret;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};

pub(crate) async fn scrape(app: &TestApp, token: Option<&str>) -> (StatusCode, String) {
    let mut req = app.client.get(format!("{}/metrics", app.address));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// The value of the first sample of `name` whose labels contain each of `labels`.
pub(crate) fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next().is_some_and(|n| n == name))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn a_scrape_counts_what_happened(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1), inst(2)]}))
        .await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["completed"]).await;
    let (s, text) = scrape(&app, None).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    // Requests by route pattern (never the raw path), method and status.
    let executes = sample(
        &text,
        "countersign_http_requests_total",
        &[
            "route=\"/api/v1/changes/{id}/execute\"",
            "method=\"POST\"",
            "status=\"202\"",
        ],
    );
    assert_eq!(executes, Some(1.0), "{text}");
    assert!(
        !text.contains(&format!("/api/v1/changes/{id}/")),
        "raw paths leak: {text}"
    );
    assert!(
        sample(
            &text,
            "countersign_http_requests_total",
            &["route=\"/api/v1/inventory\"", "status=\"200\""]
        ) >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "countersign_http_request_duration_seconds_count",
            &["route=\"/api/v1/changes\""]
        ) >= Some(1.0),
        "{text}"
    );
    // What the database holds.
    assert_eq!(
        sample(&text, "countersign_executions", &["state=\"completed\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "countersign_execution_items", &["status=\"done\""]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "countersign_execution_halts_total", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "countersign_outbox_dead", &["channel=\"mail\""]),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "countersign_outbox_messages", &["state=\"pending\""]) >= Some(1.0),
        "mails were queued: {text}"
    );
    assert!(
        sample(&text, "countersign_audit_chain_length", &[]) > Some(5.0),
        "{text}"
    );
    assert!(
        sample(&text, "countersign_db_pool_connections", &["use=\"idle\""]).is_some(),
        "{text}"
    );
    // The scrape itself is counted by the next one.
    let (_, again) = scrape(&app, None).await;
    assert_eq!(
        sample(
            &again,
            "countersign_http_requests_total",
            &["route=\"/metrics\"", "status=\"200\""]
        ),
        Some(1.0),
        "{again}"
    );
}

async fn a_token_guards_the_scrape(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.metrics_token = Some(Secret::new("scrape-me"))
    })
    .await;
    let (s, body) = scrape(&app, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("\"unauthenticated\""), "{body}");
    let (s, _) = scrape(&app, Some("scrape-mf")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = scrape(&app, Some(app.token("carla"))).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an API token is not the scrape token"
    );
    let (s, text) = scrape(&app, Some("scrape-me")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        text.contains("countersign_executions") || text.contains("countersign_audit_chain_length"),
        "{text}"
    );
}

/// A worker that takes over an execution whose lease another worker let expire is
/// counted (`countersign_lease_takeovers_total`); renewing one's own lease is not.
async fn a_lease_takeover_is_counted(backend: Backend) {
    use countersign::db::schema::executions::dsl as e;
    use diesel::prelude::*;
    let app = spawn_app_with(backend, |c| c.worker = false).await;
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let before = |text: &str| sample(text, "countersign_lease_takeovers_total", &[]).unwrap_or(0.0);
    let (_, text) = scrape(&app, None).await;
    let n0 = before(&text);
    let mut conn = app.conn();
    let past = countersign::db::now() - chrono::Duration::minutes(1);
    diesel::update(e::executions)
        .set((
            e::lease_owner.eq(Some("crashed-worker")),
            e::lease_expires_at.eq(Some(past)),
        ))
        .execute(&mut *conn)
        .unwrap();
    let claim = |conn: &mut countersign::db::DbConn, owner: &str| {
        countersign::db::write_tx(conn, |c| {
            countersign::db::exec::claim(c, owner, chrono::Duration::seconds(30))
        })
        .unwrap()
    };
    assert!(
        claim(&mut conn, "next-worker").is_some(),
        "the expired lease is taken"
    );
    let (_, text) = scrape(&app, None).await;
    assert!(before(&text) >= n0 + 1.0, "{text}");
    assert!(
        text.contains("# TYPE countersign_lease_takeovers_total counter"),
        "{text}"
    );
}

both_backends!(backend: a_scrape_counts_what_happened, a_token_guards_the_scrape, a_lease_takeover_is_counted);
