//! The external executor: one signed JSON document per target, POSTed to the operation's
//! endpoint. See README "External executor" for the payload and how to verify it.
//!
//! A target is done only when a 2xx answer echoes its `id` and `kind`. 4xx, a wrong echo
//! or an unparsable body fail it at once; 5xx, timeouts and connection errors are retried
//! with exponential backoff up to the operation's `max_attempts`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::domain::lines::{clip, clip_to};

use super::{end_of_wave, fence, Ctx, Step};
use crate::db::models::{Change, Execution, ExecutionItem};
use crate::db::{exec as repo, now, write_tx, DbConn};
use crate::domain::execution::ItemStatus;
use crate::domain::schema::WebhookSpec;
use crate::error::{AppError, AppResult};
use crate::service::views::number;

/// Header that carries `sha256=<hex HMAC-SHA256 of the raw body>`.
pub const SIGNATURE_HEADER: &str = "X-Countersign-Signature";
/// Header that carries the idempotency key (also in the body).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Targets sent per step (each step re-checks the lease).
const PER_STEP: i64 = 20;

pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Largest answer read from a receiver.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What the executor's answer means for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Done,
    Fail(String),
    Retry(String),
}

/// The document sent for one target.
pub fn payload(
    c: &Change,
    e: &Execution,
    it: &ExecutionItem,
    scope_path: &str,
    attempt: i64,
) -> Value {
    json!({
        "change": number(c.id),
        "change_id": c.id,
        "execution_id": e.id,
        "fingerprint": e.fingerprint,
        "operation": c.operation,
        "params": serde_json::from_str::<Value>(&c.params).unwrap_or(Value::Null),
        "target": {"kind": it.kind, "id": it.entity_id, "scope_path": scope_path},
        "idempotency_key": format!("{}-{}", e.id, it.position),
        "attempt": attempt,
        "sent_at": now().and_utc().to_rfc3339(),
    })
}

fn call(
    client: &reqwest::blocking::Client,
    spec: &WebhookSpec,
    secret: &str,
    body: &Value,
    it: &ExecutionItem,
) -> Answer {
    let bytes = serde_json::to_vec(body).expect("payload serialises");
    let res = client
        .post(&spec.endpoint)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sign(secret.as_bytes(), &bytes))
        .header(
            IDEMPOTENCY_HEADER,
            body["idempotency_key"].as_str().unwrap_or_default(),
        )
        .body(bytes)
        .send();
    let res = match res {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Answer::Retry(format!("no answer within {} ms", spec.timeout_ms))
        }
        Err(e) => return Answer::Retry(format!("could not reach the executor: {e}")),
    };
    let status = res.status();
    // Read at most MAX_ANSWER_BYTES: a receiver cannot make the worker hold more.
    let mut body = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(
        &mut std::io::Read::take(res, MAX_ANSWER_BYTES as u64 + 1),
        &mut body,
    ) {
        return Answer::Retry(format!("the executor's answer could not be read: {e}"));
    }
    parse_answer(status, &body, &it.kind, &it.entity_id)
}

/// Read the executor's answer to the call for target `kind` `id`: larger than
/// [`MAX_ANSWER_BYTES`] fails, 5xx is retried, any other non-2xx fails, and a 2xx counts
/// only when its JSON body echoes that exact `id` and `kind`. Pure (no I/O), so the
/// fuzzer exercises exactly what the executor runs.
pub fn parse_answer(status: reqwest::StatusCode, body: &[u8], kind: &str, id: &str) -> Answer {
    if body.len() > MAX_ANSWER_BYTES {
        return Answer::Fail(format!(
            "the executor answered {status} with more than {} KiB; answers are at most that large",
            MAX_ANSWER_BYTES / 1024
        ));
    }
    let text = String::from_utf8_lossy(body);
    let excerpt = clip_to(&text, 200);
    if status.is_server_error() {
        return Answer::Retry(format!("the executor answered {status}: {excerpt}"));
    }
    if !status.is_success() {
        return Answer::Fail(format!(
            "the executor refused the target with {status}: {excerpt}"
        ));
    }
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => {
            return Answer::Fail(format!(
                "the executor answered {status} with a body that is not JSON: {excerpt}"
            ))
        }
    };
    let (got_id, got_kind) = (v["id"].as_str(), v["kind"].as_str());
    if got_id == Some(id) && got_kind == Some(kind) {
        Answer::Done
    } else {
        Answer::Fail(format!(
            "the executor confirmed {} {} instead of {kind} {id}: treated as a failure",
            clip(got_kind.unwrap_or("(no kind)")),
            clip(got_id.unwrap_or("(no id)")),
        ))
    }
}

/// One step: pick due items (short transaction), call the endpoint for each (no
/// transaction open), record the answers (a transaction that re-checks the lease).
pub(super) fn step(ctx: &Ctx, conn: &mut DbConn, exec_id: i64) -> AppResult<Step> {
    let picked = write_tx(conn, |conn| -> AppResult<Result<_, Step>> {
        let Some((e, c)) = fence(ctx, conn, exec_id)? else {
            return Ok(Err(Step::Stop));
        };
        let items = repo::pending(conn, e.id, e.current_wave, PER_STEP)?;
        if items.is_empty() {
            return Ok(Err(end_of_wave(ctx, conn, &e, &c)?));
        }
        let positions: Vec<i64> = items.iter().map(|i| i.position).collect();
        let scopes = repo::targets_at(conn, c.id, &positions)?;
        Ok(Ok((e, c, items, scopes)))
    })?;
    let (e, c, items, scopes) = match picked {
        Ok(v) => v,
        Err(step) => return Ok(step),
    };
    let spec = ctx
        .schema
        .operation(&c.operation)
        .and_then(|o| o.webhook.clone())
        .ok_or_else(|| {
            AppError::Unexpected(anyhow::anyhow!(
                "operation `{}` has no webhook endpoint in the current schema",
                c.operation
            ))
        })?;
    let secret = ctx.config.secret(&spec.secret_env);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(spec.timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("HTTP client: {e}")))?;
    let mut answers = Vec::with_capacity(items.len());
    for it in &items {
        if ctx.stopping() {
            break;
        }
        let answer = match &secret {
            None => Answer::Fail(format!(
                "the executor's secret is not configured: set the environment variable {}",
                spec.secret_env
            )),
            Some(secret) => {
                let scope = scopes
                    .iter()
                    .find(|s| s.0 == it.position)
                    .map(|s| s.3.as_str())
                    .unwrap_or_default();
                call(
                    &client,
                    &spec,
                    secret,
                    &payload(&c, &e, it, scope, it.attempts + 1),
                    it,
                )
            }
        };
        answers.push((it, answer));
    }
    write_tx(conn, |conn| {
        if fence(ctx, conn, exec_id)?.is_none() {
            // Lost the lease: whoever holds it repeats these calls with the same keys.
            return Ok(Step::Stop);
        }
        let (mut done, mut failed) = (0, 0);
        for (it, answer) in &answers {
            match answer {
                Answer::Done => {
                    repo::finish_items(conn, e.id, &[it.position], ItemStatus::Done, None)?;
                    done += 1;
                }
                Answer::Fail(why) => {
                    repo::finish_items(conn, e.id, &[it.position], ItemStatus::Failed, Some(why))?;
                    failed += 1;
                }
                Answer::Retry(why) if it.attempts + 1 >= i64::from(spec.max_attempts) => {
                    let why = format!("gave up after {} attempts: {why}", it.attempts + 1);
                    repo::finish_items(conn, e.id, &[it.position], ItemStatus::Failed, Some(&why))?;
                    failed += 1;
                }
                Answer::Retry(why) => {
                    let backoff = 200u64.saturating_mul(1 << it.attempts.clamp(0, 8));
                    let at = now() + chrono::Duration::milliseconds(backoff as i64);
                    repo::retry_item(conn, e.id, it.position, why, at)?;
                }
            }
        }
        repo::add_counts(conn, e.id, done, failed, 0)?;
        Ok(Step::Continue)
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_answer, Answer};
    use reqwest::StatusCode;

    #[test]
    fn answers() {
        let (k, id) = ("site", "s-1");
        let ok = br#"{"kind":"site","id":"s-1"}"#;
        assert_eq!(parse_answer(StatusCode::OK, ok, k, id), Answer::Done);
        assert!(matches!(
            parse_answer(StatusCode::BAD_GATEWAY, ok, k, id),
            Answer::Retry(_)
        ));
        assert!(matches!(
            parse_answer(StatusCode::NOT_FOUND, ok, k, id),
            Answer::Fail(_)
        ));
        assert!(matches!(
            parse_answer(StatusCode::OK, b"ok", k, id),
            Answer::Fail(_)
        ));
        // A wrong echo is quoted, but only its start (fuzz/regressions/webhook_answer).
        let long = format!(r#"{{"kind":"site","id":"{}"}}"#, "x".repeat(100_000));
        match parse_answer(StatusCode::OK, long.as_bytes(), k, id) {
            Answer::Fail(why) => assert!(why.len() < 400, "{}", why.len()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
