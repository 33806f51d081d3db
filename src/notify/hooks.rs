//! Chat and event hooks: the outbox rows an event causes (written in its transaction, by
//! `dispatch`) and their delivery (`HookSender`, run by the hook deliverer thread of
//! `mailer.rs` under the same leases, retries and dead letters as mail).
//!
//! A JSON hook's request carries `X-Countersign-Delivery` (the delivery id, the same on
//! every retry), `X-Countersign-Event`, `X-Countersign-Timestamp` (Unix seconds, when
//! it was sent) and `X-Countersign-Signature: sha256=<hex HMAC-SHA256 of
//! "<timestamp>.<body>" under the hook's secret>`.

use std::time::Duration;

use diesel::QueryResult;
use serde_json::{json, Value};

use super::delivery::{Deliver, Outcome};
use super::hook_format::{body, message};
use crate::config::MailConfig;
use crate::db::models::{Change, NewOutbox, OutboxRow};
use crate::db::{changes as change_repo, hooks as repo, now, outbox, DbConn, Pool};
use crate::domain::event::Event;
use crate::domain::hook::{HookFormat, HookKind, OutboxChannel};
use crate::domain::{ChangeState, OutboxState, Side};

pub const DELIVERY_HEADER: &str = "X-Countersign-Delivery";
pub const EVENT_HEADER: &str = "X-Countersign-Event";
pub const TIMESTAMP_HEADER: &str = "X-Countersign-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Countersign-Signature";

/// The signature of a JSON hook's request: over the timestamp and the body, so a
/// receiver that checks the timestamp's age refuses a replay.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Write the hook deliveries of audit event `event_id` (of change `change`, if any).
/// Runs inside the event's transaction; called by `service::events::record` only.
pub(crate) fn dispatch(
    conn: &mut DbConn,
    event_id: i64,
    actor: &str,
    change: Option<i64>,
    event: &Event,
    mail_payload: impl FnOnce(&mut DbConn, &Change) -> QueryResult<String>,
) -> QueryResult<()> {
    let Some(kind) = event.hook_kind() else {
        return Ok(());
    };
    let (hooks, payload) = if kind.is_calendar() {
        let hooks = repo::subscribed(conn, None)?;
        let payload = json!({
            "action": event.action(), "kind": kind, "actor": actor, "detail": event.detail(),
        });
        (hooks, payload)
    } else {
        let Some(c) = change
            .map(|id| change_repo::get(conn, id))
            .transpose()?
            .flatten()
        else {
            return Ok(());
        };
        let mut teams = vec![c.requesting_team.clone(), c.implementing_team.clone()];
        if let Some(t) = super::reviewing_team(conn, &c)? {
            teams.push(t);
        }
        let hooks = repo::subscribed(conn, Some(&teams))?;
        if !hooks.iter().any(|(h, _)| h.kinds().contains(&kind)) {
            return Ok(());
        }
        let mut payload: Value =
            serde_json::from_str(&mail_payload(conn, &c)?).unwrap_or_else(|_| json!({}));
        payload["must_act"] = json!(must_act(conn, &c, kind)?);
        (hooks, payload)
    };
    let payload = payload.to_string();
    let t = now();
    let rows: Vec<NewOutbox> = hooks
        .into_iter()
        .filter(|(h, _)| h.kinds().contains(&kind))
        .map(|(h, _)| NewOutbox {
            event_key: format!("audit:{event_id}"),
            event_kind: kind.as_str().to_string(),
            change_id: change,
            user_id: None,
            recipient: format!("hook:{}", h.id),
            payload: payload.clone(),
            message_id: uuid::Uuid::new_v4().simple().to_string(),
            state: OutboxState::Pending,
            next_attempt_at: t,
            digest_id: None,
            created_at: t,
            channel: OutboxChannel::Hook,
            hook_id: Some(h.id),
        })
        .collect();
    outbox::enqueue(conn, &rows)?;
    Ok(())
}

/// A test delivery to hook `hook` (its team's page and API offer it).
pub(crate) fn enqueue_test(
    conn: &mut DbConn,
    hook: i64,
    name: &str,
    team: &str,
    actor: &str,
) -> QueryResult<String> {
    let t = now();
    let id = uuid::Uuid::new_v4().simple().to_string();
    outbox::enqueue(
        conn,
        &[NewOutbox {
            event_key: format!("hook-test:{id}"),
            event_kind: "test".into(),
            change_id: None,
            user_id: None,
            recipient: format!("hook:{hook}"),
            payload: json!({"actor": actor, "hook": name, "team": team}).to_string(),
            message_id: id.clone(),
            state: OutboxState::Pending,
            next_attempt_at: t,
            digest_id: None,
            created_at: t,
            channel: OutboxChannel::Hook,
            hook_id: Some(hook),
        }],
    )?;
    Ok(id)
}

/// Who must act on `c` now that `kind` happened, in words.
fn must_act(conn: &mut DbConn, c: &Change, kind: HookKind) -> QueryResult<Option<String>> {
    Ok(match (kind, c.state) {
        (_, ChangeState::AwaitingSignoff) => Some(missing_signoffs(conn, c)?),
        (HookKind::Approved, _) | (_, ChangeState::Approved) => Some(format!(
            "{}: an implementer can execute it (on the change page)",
            c.implementing_team
        )),
        (HookKind::ExecutionHalted, _) => Some(format!(
            "{}: decide on the change page (resume, retry, skip or abort)",
            c.implementing_team
        )),
        (HookKind::Rejected, _) => {
            Some("the author: edit it and submit it again, or cancel it".into())
        }
        _ => None,
    })
}

/// The sign-offs `c` still needs, per side and team: distinct signers of the current
/// fingerprint whose sign-off has not gone stale or expired.
fn missing_signoffs(conn: &mut DbConn, c: &Change) -> QueryResult<String> {
    let Some(schema) = crate::db::schemas::by_hash(conn, &c.schema_hash)? else {
        return Ok("sign-offs from both teams".into());
    };
    let Some(op) = schema.operation(&c.operation) else {
        return Ok("sign-offs from both teams".into());
    };
    let policy = c.policy(op);
    let fp = c.fingerprint.clone().unwrap_or_default();
    let signoffs = change_repo::signoffs(conn, c.id)?;
    let have = |side: Side| {
        let mut who: Vec<i64> = signoffs
            .iter()
            .filter(|(s, _, _)| {
                s.side == side && !s.stale && s.fingerprint == fp && s.expiry_recorded_at.is_none()
            })
            .map(|(s, _, _)| s.user_id)
            .collect();
        who.sort_unstable();
        who.dedup();
        who.len() as u32
    };
    let sides = [
        (
            Side::Requester,
            policy.signoffs.requester,
            Some(c.requesting_team.clone()),
        ),
        (
            Side::Implementer,
            policy.signoffs.implementer,
            Some(c.implementing_team.clone()),
        ),
        (
            Side::Reviewer,
            policy.signoffs.reviewer,
            policy.reviewer_team().map(str::to_string),
        ),
    ];
    let parts: Vec<String> = sides
        .into_iter()
        .filter_map(|(side, needed, team)| {
            let left = needed.saturating_sub(have(side));
            (left > 0).then(|| {
                format!(
                    "{}: {left} more {side} sign-off{}",
                    team.unwrap_or_default(),
                    if left == 1 { "" } else { "s" }
                )
            })
        })
        .collect();
    Ok(if parts.is_empty() {
        "nobody: every side has signed".into()
    } else {
        parts.join("; ")
    })
}

/// Posts hook deliveries over one keep-alive client.
pub(super) struct HookSender {
    client: reqwest::blocking::Client,
    public_url: String,
}

impl HookSender {
    pub(super) fn new(config: &MailConfig) -> Result<HookSender, String> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(config.hook_timeout_secs))
            .connect_timeout(Duration::from_secs(config.hook_timeout_secs.min(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(HookSender {
            client,
            public_url: config.public_url.clone(),
        })
    }

    fn post(&self, row: &OutboxRow, hook: &crate::db::models::Hook) -> Outcome {
        let p: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
        let m = message(&row.event_kind, &p, &self.public_url);
        let at = chrono::Utc::now();
        let doc = body(hook.format, &m, &row.message_id, &at.to_rfc3339());
        let bytes = doc.to_string().into_bytes();
        let mut req = self
            .client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, &row.message_id)
            .header(EVENT_HEADER, &row.event_kind);
        if hook.format == HookFormat::Json {
            let ts = at.timestamp();
            let secret = hook.secret.as_deref().unwrap_or_default();
            req = req
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, signature(secret.as_bytes(), ts, &bytes));
        }
        match req.body(bytes).send() {
            Ok(r) if r.status().is_success() => Outcome::Sent,
            Ok(r) => {
                let status = r.status();
                let said: String = r.text().unwrap_or_default().chars().take(200).collect();
                let e = format!("the receiver answered {status}: {}", said.trim());
                if status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                {
                    Outcome::Transient(e)
                } else {
                    Outcome::Permanent(e)
                }
            }
            // The address is never in the message: Slack's and Teams' carry a credential.
            Err(e) if e.is_timeout() => {
                Outcome::Transient("the receiver did not answer in time".into())
            }
            Err(e) if e.is_connect() => Outcome::Transient("cannot connect to the receiver".into()),
            Err(e) => Outcome::Transient(format!("delivery failed: {}", e.without_url())),
        }
    }
}

impl Deliver for HookSender {
    fn deliver(&mut self, pool: &Pool, row: &OutboxRow) -> Outcome {
        let Some(id) = row.hook_id else {
            return Outcome::Permanent("a hook delivery without its hook".into());
        };
        let hook = match pool.get().map(|mut c| repo::get(&mut c, id)) {
            Ok(Ok(Some((h, _)))) => h,
            Ok(Ok(None)) => return Outcome::Permanent(format!("hook {id} does not exist")),
            Ok(Err(e)) => return Outcome::Transient(format!("cannot read hook {id}: {e}")),
            Err(e) => return Outcome::Transient(format!("no database connection: {e}")),
        };
        if hook.deleted_at.is_some() {
            return Outcome::Permanent("the hook was deleted".into());
        }
        self.post(row, &hook)
    }
}
