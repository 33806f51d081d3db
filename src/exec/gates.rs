//! Between waves (issue #13). After a wave that is not the last, an operation with a
//! `bake`, a `health_check` or a `pause_after_waves` gate does not start the next wave at
//! once: the execution becomes `baking` until `bake_until` (holding no lease, so it ties up
//! no worker), then a worker claims it again, asks the health endpoint (no transaction
//! open during the call), and in one fenced transaction halts it on anything but
//! `{"healthy": true}`, pauses it at a manual gate, or lets the next wave run.

use std::time::Duration;

use serde_json::{json, Value};

use super::{halt, webhook, Ctx, Step};
use crate::db::audit::Actor;
use crate::db::models::{Change, Execution};
use crate::db::{changes as change_repo, exec as repo, now, write_tx, DbConn, WriteTx};
use crate::domain::event::Event;
use crate::domain::execution::ExecState;
use crate::domain::lines::clip_to as clip;
use crate::domain::schema::{HealthCheck, Operation};
use crate::error::AppResult;
use crate::service::events::record;
use crate::service::views::number;

/// Most targets of a wave listed in the health document (the counts are always whole).
pub const MAX_LISTED_TARGETS: usize = 10_000;

/// Inside the fenced transaction, after wave `wave` (1-based) of an execution with more
/// waves to go: `Some(Stop)` when the operation puts something between waves (the
/// execution is `baking` now, its lease released), `None` to go straight on.
pub(super) fn after_wave(
    conn: &mut WriteTx<'_>,
    e: &Execution,
    c: &Change,
    op: Option<&Operation>,
    wave: u32,
) -> AppResult<Option<Step>> {
    let Some(gates) = op.map(|o| &o.between_waves).filter(|g| g.any()) else {
        return Ok(None);
    };
    let until = now() + gates.bake.map(|b| b.duration()).unwrap_or_default();
    repo::set_state(conn, e.id, ExecState::Baking, None)?;
    repo::set_between_waves(conn, e.id, Some(until), None)?;
    record(
        conn,
        &Actor::system(),
        Some(c.id),
        Event::ExecutionBaking { wave, until },
    )?;
    tracing::info!(wave, %until, "baking before the next wave");
    Ok(Some(Step::Stop))
}

/// What the health endpoint said.
struct Verdict {
    healthy: bool,
    answer: String,
}

/// A claimed `baking` execution whose bake is over: the health check, then the manual
/// gate or the next wave.
pub(super) fn baked(
    ctx: &Ctx,
    conn: &mut DbConn,
    e: Execution,
    hooks: &mut webhook::Hooks,
) -> AppResult<Step> {
    let Some(c) = change_repo::get(conn, e.change_id)? else {
        return Ok(Step::Stop);
    };
    let wave = (e.current_wave - 1).max(1) as u32;
    let op = ctx.schema.operation(&c.operation);
    let check = op.and_then(|o| o.between_waves.health_check.as_ref());
    let verdict = match check {
        Some(h) => Some(ask(ctx, conn, hooks, h, &e, &c, wave)?),
        None => None,
    };
    write_tx(conn, |conn| {
        let Some((now_e, c)) = super::fence_batch(ctx, conn, e.id)? else {
            return Ok(Step::Stop);
        };
        // Someone acted meanwhile (an abort stops the fence; a second worker moved it on).
        if now_e.state != ExecState::Baking || now_e.current_wave != e.current_wave {
            return Ok(Step::Continue);
        }
        let waves = super::waves_of(&now_e).len();
        if let Some(v) = verdict {
            record(
                conn,
                &Actor::system(),
                Some(c.id),
                Event::HealthChecked {
                    wave,
                    healthy: v.healthy,
                    answer: v.answer.clone(),
                },
            )?;
            if !v.healthy {
                let reason = format!(
                    "the health check after wave {wave} of {waves} did not pass: {}; nothing more runs until someone resumes or aborts",
                    v.answer
                );
                tracing::warn!(wave, answer = %v.answer, "execution halted: unhealthy");
                repo::set_between_waves(conn, now_e.id, None, None)?;
                let counts = (now_e.done as u64, now_e.failed as u64);
                halt(conn, &now_e, &c, counts, reason, None)?;
                return Ok(Step::Stop);
            }
        }
        if op.is_some_and(|o| o.between_waves.pauses_after(wave)) {
            let reason = format!(
                "paused after wave {wave} of {waves} (pause_after_waves): an implementer continues it to wave {}",
                wave + 1
            );
            repo::set_state(conn, now_e.id, ExecState::Paused, None)?;
            repo::set_between_waves(conn, now_e.id, None, Some(&reason))?;
            record(
                conn,
                &Actor::system(),
                Some(c.id),
                Event::ExecutionPaused { wave, reason },
            )?;
            return Ok(Step::Stop);
        }
        repo::set_between_waves(conn, now_e.id, None, None)?;
        repo::set_state(conn, now_e.id, ExecState::Running, None)?;
        Ok(Step::Continue)
    })
}

/// The signed document the health endpoint receives.
fn document(
    conn: &mut DbConn,
    e: &Execution,
    c: &Change,
    wave: u32,
    waves: usize,
) -> AppResult<Value> {
    let items = repo::wave_items(conn, e.id, i64::from(wave))?;
    let listed: Vec<Value> = items
        .iter()
        .take(MAX_LISTED_TARGETS)
        .map(|(kind, id, status)| json!({"kind": kind, "id": id, "status": status}))
        .collect();
    Ok(json!({
        "change": number(c.id),
        "change_id": c.id,
        "operation": c.operation,
        "fingerprint": e.fingerprint,
        "execution_id": e.id,
        "wave": wave,
        "waves": waves,
        "done": e.done,
        "failed": e.failed,
        "skipped": e.skipped,
        "total": e.total,
        "wave_targets": items.len(),
        "targets": listed,
        "sent_at": now().and_utc().to_rfc3339(),
    }))
}

/// POST the document to the health endpoint and read its verdict. No transaction is open.
fn ask(
    ctx: &Ctx,
    conn: &mut DbConn,
    hooks: &mut webhook::Hooks,
    h: &HealthCheck,
    e: &Execution,
    c: &Change,
    wave: u32,
) -> AppResult<Verdict> {
    let Some(secret) = ctx.config.secret(&h.secret_env) else {
        return Ok(Verdict {
            healthy: false,
            answer: format!(
                "its signing secret is not configured: set the environment variable {}",
                h.secret_env
            ),
        });
    };
    let body = document(conn, e, c, wave, super::waves_of(e).len())?.to_string();
    let signature = webhook::sign(secret.expose().as_bytes(), body.as_bytes());
    let timeout = Duration::from_millis(h.timeout_ms);
    let endpoint = h.endpoint.clone();
    let rt = hooks.runtime()?;
    let verdict = rt.block_on(async move {
        let client = match reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(err) => return unhealthy(format!("no HTTP client: {err}")),
        };
        let sent = client
            .post(&endpoint)
            .header("content-type", "application/json")
            .header(webhook::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(err) if err.is_timeout() => {
                return unhealthy(format!(
                    "{endpoint} did not answer within {} ms",
                    timeout.as_millis()
                ))
            }
            Err(err) => return unhealthy(format!("{endpoint} could not be reached: {err}")),
        };
        let status = r.status();
        let text = match r.text().await {
            Ok(t) => t,
            Err(err) if err.is_timeout() => {
                return unhealthy(format!(
                    "{endpoint} did not finish its answer within {} ms",
                    timeout.as_millis()
                ))
            }
            Err(err) => return unhealthy(format!("{endpoint}'s answer could not be read: {err}")),
        };
        verdict_of(status, &text)
    });
    Ok(verdict)
}

fn unhealthy(answer: String) -> Verdict {
    Verdict {
        healthy: false,
        answer,
    }
}

/// `{"healthy": true}` with a 2xx status passes; `{"healthy": false, "reason": …}` fails
/// with its reason; anything else fails saying what came back.
fn verdict_of(status: reqwest::StatusCode, text: &str) -> Verdict {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let healthy = parsed.as_ref().and_then(|v| v["healthy"].as_bool());
    let reason = parsed
        .as_ref()
        .and_then(|v| v["reason"].as_str())
        .map(|r| clip(r, 300));
    match (status.is_success(), healthy) {
        (true, Some(true)) => Verdict {
            healthy: true,
            answer: match reason {
                Some(r) => format!("healthy: {r}"),
                None => "healthy".into(),
            },
        },
        (true, Some(false)) => unhealthy(match reason {
            Some(r) => format!("the health endpoint says unhealthy: {r}"),
            None => "the health endpoint says unhealthy".into(),
        }),
        (true, None) => unhealthy(format!(
            "the health endpoint answered {} without {{\"healthy\": true}}: {}",
            status.as_u16(),
            clip(text, 200)
        )),
        (false, _) => unhealthy(format!(
            "the health endpoint answered HTTP {}{}",
            status.as_u16(),
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn only_a_2xx_healthy_true_passes() {
        let ok = verdict_of(StatusCode::OK, r#"{"healthy": true}"#);
        assert!(ok.healthy);
        let no = verdict_of(
            StatusCode::OK,
            r#"{"healthy": false, "reason": "error rate 4%"}"#,
        );
        assert!(!no.healthy);
        assert!(no.answer.contains("error rate 4%"), "{}", no.answer);
        let odd = verdict_of(StatusCode::OK, "yes");
        assert!(
            !odd.healthy && odd.answer.contains("without"),
            "{}",
            odd.answer
        );
        let down = verdict_of(StatusCode::SERVICE_UNAVAILABLE, r#"{"healthy": true}"#);
        assert!(
            !down.healthy && down.answer.contains("503"),
            "{}",
            down.answer
        );
    }
}
