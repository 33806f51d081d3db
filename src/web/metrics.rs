//! `GET /metrics`: Prometheus text format (issue #14). Two kinds of figures:
//!
//! - counted by this process as requests pass (`countersign_http_requests_total` by route
//!   pattern, method and status; `countersign_http_request_duration_seconds` by route),
//!   held in the process's [`Metrics`] (one registry per server);
//! - read from the database at each scrape, so every process and the mailer agree
//!   (executions by state, items by status, halts from the audit trail, the outbox by state and channel, the audit chain's length), plus this
//!   process's connection pool.
//!
//! With `COUNTERSIGN_METRICS_TOKEN` set, a scrape needs `Authorization: Bearer <token>`
//! (compared in constant time); otherwise `/metrics` is open on the listen address.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse};
use diesel::dsl::count_star;
use diesel::prelude::*;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::{with_conn, State};
use crate::db::schema::{audit_events, execution_items, executions, outbox};
use crate::db::DbConn;
use crate::error::{AppError, AppResult, ErrorCode};

/// What this process counts as requests pass.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "countersign_http_requests_total",
                "HTTP requests answered, by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "countersign_http_request_duration_seconds",
                "Time to answer an HTTP request, by route pattern",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        Metrics {
            registry,
            requests,
            latency,
        }
    }
}

impl Metrics {
    /// One answered request. `route`: the matched pattern (`/api/v1/changes/{id}`), never
    /// the raw path, so IDs do not become label values.
    pub fn observe(&self, route: &str, method: &str, status: u16, started: Instant) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The figures read from the database at a scrape.
#[derive(Debug, Default)]
struct Stored {
    executions: Vec<(String, i64)>,
    items: Vec<(String, i64)>,
    outbox: Vec<(String, String, String, i64)>,
    halts: i64,
    audit_events: i64,
}

fn stored(conn: &mut DbConn) -> AppResult<Stored> {
    crate::db::snapshot(conn, |conn| {
        let executions = executions::table
            .group_by(executions::state)
            .select((executions::state, count_star()))
            .load(conn)?;
        let items = execution_items::table
            .group_by(execution_items::status)
            .select((execution_items::status, count_star()))
            .load(conn)?;
        let outbox = outbox::table
            .group_by((outbox::state, outbox::channel, outbox::event_kind))
            .select((
                outbox::state,
                outbox::channel,
                outbox::event_kind,
                count_star(),
            ))
            .load(conn)?;
        let count_action = |conn: &mut DbConn, action: &str| -> QueryResult<i64> {
            audit_events::table
                .filter(audit_events::action.eq(action))
                .select(count_star())
                .first(conn)
        };
        let halts = count_action(conn, "execution_halted")?;
        let audit_events = audit_events::table.select(count_star()).first(conn)?;
        Ok(Stored {
            executions,
            items,
            outbox,
            halts,
            audit_events,
        })
    })
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

/// The stored figures and the pool as Prometheus metrics.
fn snapshot_registry(s: &Stored, pool: &crate::db::Pool) -> Registry {
    let r = Registry::new();
    let ex = gauge(
        &r,
        "countersign_executions",
        "Executions by state",
        &["state"],
    );
    for (state, n) in &s.executions {
        ex.with_label_values(&[state]).set(*n);
    }
    let items = gauge(
        &r,
        "countersign_execution_items",
        "Execution items (targets) by status: done, failed, skipped, pending, drifted",
        &["status"],
    );
    for (status, n) in &s.items {
        items.with_label_values(&[status]).set(*n);
    }
    let ob = gauge(
        &r,
        "countersign_outbox_messages",
        "Outbox messages by state (pending, sent, dead, digest, digested), channel (mail, hook) and kind",
        &["state", "channel", "kind"],
    );
    for (state, channel, kind, n) in &s.outbox {
        ob.with_label_values(&[state, channel, kind]).set(*n);
    }
    let dead = gauge(
        &r,
        "countersign_outbox_dead",
        "Outbox messages given up on (dead letters), by channel",
        &["channel"],
    );
    for channel in crate::domain::hook::OutboxChannel::VALUES {
        let channel = channel.as_str();
        dead.with_label_values(&[channel]).set(
            s.outbox
                .iter()
                .filter(|(st, ch, _, _)| st == "dead" && ch == channel)
                .map(|(_, _, _, n)| n)
                .sum(),
        );
    }
    for (name, help, v) in [
        (
            "countersign_execution_halts_total",
            "Executions halted so far (audit trail)",
            s.halts,
        ),
        (
            "countersign_audit_chain_length",
            "Events in the audit hash chain",
            s.audit_events,
        ),
    ] {
        gauge(&r, name, help, &[])
            .with_label_values::<&str>(&[])
            .set(v);
    }
    let st = pool.state();
    let p = gauge(
        &r,
        "countersign_db_pool_connections",
        "This process's database connections by use",
        &["use"],
    );
    p.with_label_values(&["in_use"])
        .set(i64::from(st.connections - st.idle_connections));
    p.with_label_values(&["idle"])
        .set(i64::from(st.idle_connections));
    r
}

/// Is the scrape allowed? Constant-time comparison with the configured token.
fn allowed(req: &HttpRequest, token: Option<&crate::config::Secret>) -> bool {
    let Some(want) = token else { return true };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let (a, b) = (given.as_bytes(), want.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`
pub async fn metrics(state: State, req: HttpRequest) -> Result<HttpResponse, AppError> {
    if !allowed(&req, state.config.metrics_token.as_ref()) {
        return Err(AppError::new(
            ErrorCode::Unauthenticated,
            "/metrics needs `Authorization: Bearer <COUNTERSIGN_METRICS_TOKEN>`",
        ));
    }
    let s = with_conn(&state, stored).await?;
    let mut families = state.metrics.registry.gather();
    families.extend(snapshot_registry(&s, &state.pool).gather());
    families.extend(crate::counters::gather());
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("metrics encoding: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}
