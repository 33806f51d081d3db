//! The external executor: one signed JSON document per target, POSTed to the operation's
//! endpoint. See README "External executor" for the payload and how to verify it.
//!
//! A target is done only when a 2xx answer echoes its `id` and `kind`. 4xx, a wrong echo
//! or an unparsable body fail it at once; 5xx, timeouts and connection errors are retried
//! with exponential backoff up to the operation's `max_attempts`.
//!
//! Calls run concurrently: each step claims a batch of due items (a short fenced
//! transaction), keeps up to the operation's `concurrency` calls in flight over one
//! keep-alive client per operation (kept by the worker across steps and executions),
//! paced by `max_per_second`, and records the batch's answers in one fenced transaction.
//! No transaction is open while a call is in flight. While the batch runs, the worker
//! renews its lease every [`TICK`]; when the renewal fails (the execution was aborted or
//! halted, or another worker took over) it drops the calls in flight and records nothing,
//! so whoever holds the lease re-sends those targets with the same idempotency keys.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::domain::lines::{clip, clip_to};

use super::{end_of_wave, fence, fence_batch, take_budget, Ctx, Step};
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

/// Items claimed per step: this many per call in flight…
const BATCH_PER_SLOT: usize = 16;
/// …and at most this many.
const MAX_BATCH: usize = 2048;
/// How often a running batch renews the lease (which also notices an abort or a halt).
pub const TICK: Duration = Duration::from_millis(200);
/// No new call starts in a batch after this long (nor after a third of the lease); the
/// calls in flight finish and the batch is recorded.
const MAX_WINDOW: Duration = Duration::from_secs(2);

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

/// The document sent for one target. `called` is the operation whose endpoint is called:
/// the change's own, or for a rollback the one its `undo` names; a rollback's document
/// says so (`rollback_of`, `undoes`) and its idempotency keys are `rollback-<execution>-<position>`.
pub fn payload(
    c: &Change,
    e: &Execution,
    called: &str,
    it: &ExecutionItem,
    scope_path: &str,
    attempt: i64,
) -> Value {
    let mut key = match c.rollback_of {
        Some(_) => format!("rollback-{}-{}", e.id, it.position),
        None => format!("{}-{}", e.id, it.position),
    };
    // A target an implementer retried is a new request: the receiver must not answer it
    // with the failure it remembers for the old key.
    if it.retries > 0 {
        key.push_str(&format!("-r{}", it.retries));
    }
    let mut body = json!({
        "change": number(c.id),
        "change_id": c.id,
        "execution_id": e.id,
        "fingerprint": e.fingerprint,
        "operation": called,
        "params": serde_json::from_str::<Value>(&c.params).unwrap_or(Value::Null),
        "target": {"kind": it.kind, "id": it.entity_id, "scope_path": scope_path},
        "idempotency_key": key,
        "attempt": attempt,
        "sent_at": now().and_utc().to_rfc3339(),
    });
    if let Some(orig) = c.rollback_of {
        body["rollback_of"] = json!(number(orig));
        body["rollback_of_id"] = json!(orig);
        body["undoes"] = json!(c.operation);
    }
    body
}

/// One call, timed for `/metrics` (`countersign_delivery_duration_seconds`, channel
/// `executor`).
async fn call(
    client: &reqwest::Client,
    spec: &WebhookSpec,
    secret: &str,
    body: Value,
    it: &ExecutionItem,
) -> Answer {
    let started = Instant::now();
    let answer = attempt(client, spec, secret, body, it).await;
    let outcome = match answer {
        Answer::Done => "delivered",
        Answer::Retry(_) => "retry",
        Answer::Fail(_) => "refused",
    };
    crate::counters::delivery("executor", outcome, started.elapsed());
    answer
}

/// POST the document for `it`, read at most [`MAX_ANSWER_BYTES`] + 1 of the answer, and
/// judge it with [`parse_answer`].
async fn attempt(
    client: &reqwest::Client,
    spec: &WebhookSpec,
    secret: &str,
    body: Value,
    it: &ExecutionItem,
) -> Answer {
    let bytes = serde_json::to_vec(&body).expect("payload serialises");
    let res = client
        .post(&spec.endpoint)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sign(secret.as_bytes(), &bytes))
        .header(
            IDEMPOTENCY_HEADER,
            body["idempotency_key"].as_str().unwrap_or_default(),
        )
        .body(bytes)
        .send()
        .await;
    let mut res = match res {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Answer::Retry(format!("no answer within {} ms", spec.timeout_ms))
        }
        Err(e) => return Answer::Retry(format!("could not reach the executor: {e}")),
    };
    let status = res.status();
    // Read at most MAX_ANSWER_BYTES + 1: a receiver cannot make the worker hold more.
    let mut body = Vec::new();
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ANSWER_BYTES + 1 - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() > MAX_ANSWER_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Answer::Retry(format!("the executor's answer could not be read: {e}"))
            }
        }
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

/// What the worker keeps between steps and executions: the runtime the calls run on and
/// one keep-alive client per webhook operation (its connections are pooled and reused),
/// and the pace of the execution being run.
#[derive(Default)]
pub struct Hooks {
    rt: Option<tokio::runtime::Runtime>,
    clients: HashMap<String, reqwest::Client>,
    pace: Option<(i64, Pace)>,
}

impl Hooks {
    fn client(&mut self, operation: &str, spec: &WebhookSpec) -> AppResult<reqwest::Client> {
        if let Some(c) = self.clients.get(operation) {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .timeout(Duration::from_millis(spec.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(spec.concurrency as usize)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("HTTP client: {e}")))?;
        self.clients.insert(operation.to_string(), c.clone());
        Ok(c)
    }

    pub(super) fn runtime(&mut self) -> AppResult<&tokio::runtime::Runtime> {
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| AppError::Unexpected(anyhow::anyhow!("webhook runtime: {e}")))?;
            self.rt = Some(rt);
        }
        Ok(self.rt.as_ref().expect("just built"))
    }

    /// The pace of execution `exec_id` (a new one for another execution).
    fn pace(&mut self, exec_id: i64, spec: &WebhookSpec) -> Option<Pace> {
        let rate = spec.max_per_second?;
        match self.pace {
            Some((id, p)) if id == exec_id => Some(p),
            _ => Some(Pace::new(rate)),
        }
    }
}

/// `max_per_second`: calls start at least `every` apart on average; after an idle spell
/// at most one extra call starts at once (no bursts).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    every: Duration,
    next: Instant,
}

impl Pace {
    pub fn new(per_second: f64) -> Pace {
        Pace {
            every: Duration::from_secs_f64(1.0 / per_second),
            next: Instant::now(),
        }
    }

    /// May a call start at `now`? If so, it is counted.
    pub fn take(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        let floor = now.checked_sub(self.every).unwrap_or(now);
        self.next = self.next.max(floor) + self.every;
        true
    }
}

/// Items claimed per step: enough to keep `concurrency` calls busy for several rounds,
/// or about two seconds' worth under a rate limit.
pub fn batch_size(spec: &WebhookSpec) -> usize {
    let mut n = (spec.concurrency as usize * BATCH_PER_SLOT).clamp(1, MAX_BATCH);
    if let Some(rate) = spec.max_per_second {
        n = n.min(((rate * 2.0).ceil() as usize).max(1));
    }
    n
}

/// The webhook operation a step calls (the change's own, or the `undo` of a rollback).
struct Called {
    name: String,
    spec: WebhookSpec,
}

/// One step: claim due items (short fenced transaction), call the endpoint for them with
/// bounded concurrency (no transaction open), record the answers (one fenced transaction).
pub(super) fn step(
    ctx: &Ctx,
    conn: &mut DbConn,
    exec_id: i64,
    hooks: &mut Hooks,
) -> AppResult<Step> {
    let t0 = Instant::now();
    let picked = write_tx(conn, |conn| -> AppResult<Result<_, Step>> {
        let Some((e, c)) = fence_batch(ctx, conn, exec_id)? else {
            return Ok(Err(Step::Stop));
        };
        // A rollback calls the operation the original's `undo` names.
        let called = ctx
            .schema
            .operation(&c.operation)
            .and_then(|o| ctx.schema.webhook_called(o, c.rollback_of.is_some()))
            .and_then(|o| {
                Some(Called {
                    name: o.name.clone(),
                    spec: o.webhook.clone()?,
                })
            })
            .ok_or_else(|| {
                AppError::Unexpected(anyhow::anyhow!(
                    "operation `{}` has no webhook endpoint{} in the current schema",
                    c.operation,
                    if c.rollback_of.is_some() {
                        " to undo it"
                    } else {
                        ""
                    }
                ))
            })?;
        let mut items = repo::pending(conn, e.id, e.current_wave, batch_size(&called.spec) as i64)?;
        if items.is_empty() {
            return Ok(Err(end_of_wave(ctx, conn, &e, &c)?));
        }
        // Taken from the budget before the calls: a call once sent cannot be taken back.
        match take_budget(ctx, conn, &e, &c, &items)? {
            Ok(fit) => items.truncate(fit),
            Err(step) => return Ok(Err(step)),
        }
        let positions: Vec<i64> = items.iter().map(|i| i.position).collect();
        let scopes = repo::targets_at(conn, c.id, &positions)?;
        Ok(Ok((e, c, called, items, scopes)))
    })?;
    let (e, c, called, items, scopes) = match picked {
        Ok(v) => v,
        Err(step) => return Ok(step),
    };
    let spec = &called.spec;
    let t_sent = Instant::now();
    let answers: Vec<(usize, Answer)> = match ctx.config.secret(&spec.secret_env) {
        None => {
            let why = format!(
                "the executor's secret is not configured: set the environment variable {}",
                spec.secret_env
            );
            (0..items.len())
                .map(|i| (i, Answer::Fail(why.clone())))
                .collect()
        }
        Some(secret) => {
            let scope: HashMap<i64, &str> = scopes.iter().map(|s| (s.0, s.3.as_str())).collect();
            match send(
                ctx,
                conn,
                hooks,
                &called,
                secret.expose(),
                &c,
                &e,
                &items,
                &scope,
            )? {
                Some(a) => a,
                // Lost the lease: whoever holds it repeats these calls with the same keys.
                None => return Ok(Step::Stop),
            }
        }
    };
    let t1 = Instant::now();
    let out = write_tx(conn, |conn| {
        if fence(ctx, conn, exec_id)?.is_none() {
            // Lost the lease: whoever holds it repeats these calls with the same keys.
            return Ok(Step::Stop);
        }
        let (mut done, mut failed) = (Vec::new(), 0usize);
        for (i, answer) in &answers {
            let it = &items[*i];
            match answer {
                Answer::Done => done.push(it.position),
                Answer::Fail(why) => {
                    failed += repo::finish_items(
                        conn,
                        e.id,
                        &[it.position],
                        ItemStatus::Failed,
                        Some(why),
                    )?;
                }
                Answer::Retry(why) if it.attempts + 1 >= i64::from(spec.max_attempts) => {
                    let why = format!("gave up after {} attempts: {why}", it.attempts + 1);
                    failed += repo::finish_items(
                        conn,
                        e.id,
                        &[it.position],
                        ItemStatus::Failed,
                        Some(&why),
                    )?;
                }
                Answer::Retry(why) => {
                    let backoff = 200u64.saturating_mul(1 << it.attempts.clamp(0, 8));
                    let at = now() + chrono::Duration::milliseconds(backoff as i64);
                    repo::retry_item(conn, e.id, it.position, why, at)?;
                }
            }
        }
        let done = repo::finish_items(conn, e.id, &done, ItemStatus::Done, None)?;
        repo::add_counts(conn, e.id, done as i64, failed as i64, 0)?;
        Ok(Step::Continue)
    });
    tracing::debug!(
        execution = exec_id,
        items = items.len(),
        sent = answers.len(),
        claim_ms = (t_sent - t0).as_millis() as u64,
        send_ms = (t1 - t_sent).as_millis() as u64,
        record_ms = t1.elapsed().as_millis() as u64,
        "webhook batch"
    );
    out
}

/// Send the batch: at most `spec.concurrency` calls in flight, started no faster than
/// `spec.max_per_second`, no new call after the batch's window or once the worker stops.
/// Renews the lease every [`TICK`]; `None` when that fails (aborted, halted, taken over):
/// the calls in flight are dropped and nothing is to be recorded. The answers are
/// (index into `items`, answer) for the items that were sent; the others stay pending.
#[allow(clippy::too_many_arguments)]
fn send(
    ctx: &Ctx,
    conn: &mut DbConn,
    hooks: &mut Hooks,
    called: &Called,
    secret: &str,
    c: &Change,
    e: &Execution,
    items: &[ExecutionItem],
    scope: &HashMap<i64, &str>,
) -> AppResult<Option<Vec<(usize, Answer)>>> {
    let spec = &called.spec;
    let client = hooks.client(&called.name, spec)?;
    let mut pace = hooks.pace(e.id, spec);
    let window = MAX_WINDOW.min(Duration::from_millis(ctx.config.lease_secs * 1000 / 3));
    let concurrency = spec.concurrency.max(1) as usize;
    let started = Instant::now();
    let mut queue: VecDeque<usize> = (0..items.len()).collect();
    let mut answers = Vec::with_capacity(items.len());
    let mut inflight = FuturesUnordered::new();
    let rt = hooks.runtime()?;
    let (client, pace_ref) = (&client, &mut pace);
    loop {
        if ctx.stopping() || started.elapsed() >= window {
            // Not sent: still pending, sent later (by this worker or the next).
            queue.clear();
        }
        if queue.is_empty() && inflight.is_empty() {
            break;
        }
        let until = Instant::now() + TICK;
        rt.block_on(async {
            loop {
                while inflight.len() < concurrency && !queue.is_empty() {
                    if let Some(p) = pace_ref.as_mut() {
                        if !p.take(Instant::now()) {
                            break;
                        }
                    }
                    let i = queue.pop_front().expect("not empty");
                    let it = &items[i];
                    let s = scope.get(&it.position).copied().unwrap_or_default();
                    let body = payload(c, e, &called.name, it, s, it.attempts + 1);
                    inflight.push(async move { (i, call(client, spec, secret, body, it).await) });
                }
                if inflight.is_empty() && queue.is_empty() {
                    return;
                }
                let mut wake = until;
                if !queue.is_empty() && inflight.len() < concurrency {
                    if let Some(p) = pace_ref.as_ref() {
                        wake = wake.min(p.next);
                    }
                }
                if inflight.is_empty() {
                    tokio::time::sleep_until(wake.into()).await;
                } else if let Ok(Some(answer)) =
                    tokio::time::timeout_at(wake.into(), inflight.next()).await
                {
                    answers.push(answer);
                }
                if Instant::now() >= until {
                    return;
                }
            }
        });
        if queue.is_empty() && inflight.is_empty() {
            break;
        }
        // Between ticks, no call is polled and none is inside a transaction: renew the
        // lease, which fails once the execution is no longer running under this worker.
        let held = write_tx(conn, |c| repo::heartbeat(c, e.id, &ctx.owner, ctx.ttl()))?;
        if !held {
            return Ok(None);
        }
    }
    if let Some(p) = pace {
        hooks.pace = Some((e.id, p));
    }
    Ok(Some(answers))
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
