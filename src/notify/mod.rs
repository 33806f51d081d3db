//! Notifications. Every audit event that people must hear about becomes outbox rows in the
//! same transaction (`dispatch`, called by `db::audit::append`): a committed event always
//! has its mails and a rolled-back one none. The mailer (`mailer.rs`) delivers them; the
//! mails are rendered from the facts stored with each row (`mail.rs`).

pub mod mail;
pub mod mailer;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::db::models::NewOutbox;
use crate::db::outbox as repo;
use crate::db::{changes as change_repo, now, DbConn};
use crate::domain::OutboxState;
use diesel::QueryResult;

/// Event kinds a person can set a preference for.
pub const KINDS: [(&str, &str); 11] = [
    ("needs_signoff", "A change needs your team's sign-off"),
    ("signed", "Someone signed a change you are part of"),
    ("approved", "A change was approved"),
    (
        "stale",
        "A sign-off of yours went stale (the target list changed)",
    ),
    ("rejected", "A change you are part of was rejected"),
    ("cancelled", "A change you are part of was cancelled"),
    ("commented", "A comment on a change you are part of"),
    ("execution_started", "Execution started"),
    ("execution_halted", "Execution halted and needs a decision"),
    (
        "execution_finished",
        "Execution finished (completed, partially failed, failed or aborted)",
    ),
    (
        "notice_drafted",
        "A customer notice waits for your team's approval",
    ),
];

/// How a person wants one kind of notification.
pub const MODES: [&str; 3] = ["immediately", "digest", "never"];

/// The rollback kind shares `execution_finished`'s audience but has its own preference key.
pub const ROLLBACK_KIND: &str = "rollback_created";

pub fn is_kind(k: &str) -> bool {
    k == ROLLBACK_KIND || KINDS.iter().any(|(n, _)| *n == k)
}

/// Whether `mode` is allowed for `kind` (a sign-off request can be digested, never muted).
pub fn mode_allowed(kind: &str, mode: &str) -> bool {
    MODES.contains(&mode) && !(kind == "needs_signoff" && mode == "never")
}

/// The notification kind of an audit action, if people are told about it.
fn kind_of(action: &str) -> Option<&'static str> {
    Some(match action {
        "submitted" => "needs_signoff",
        "signed" => "signed",
        "approved" => "approved",
        "signoffs_stale" => "stale",
        "rejected" => "rejected",
        "cancelled" => "cancelled",
        "commented" => "commented",
        "execution_started" => "execution_started",
        "execution_halted" => "execution_halted",
        "execution_finished" | "execution_aborted" => "execution_finished",
        "rollback_created" => ROLLBACK_KIND,
        "customer_notice_drafted" => "notice_drafted",
        _ => return None,
    })
}

type Person = (i64, String, String);

fn add(to: &mut BTreeMap<i64, Person>, people: Vec<Person>) {
    for p in people {
        to.entry(p.0).or_insert(p);
    }
}

/// The author, everyone who signed (any fingerprint) and everyone who commented.
fn participants(conn: &mut DbConn, c: &crate::db::models::Change) -> QueryResult<Vec<Person>> {
    let mut ids = vec![c.author_id];
    ids.extend(
        change_repo::signoffs(conn, c.id)?
            .into_iter()
            .map(|s| s.0.user_id),
    );
    ids.extend(
        change_repo::comments(conn, c.id)?
            .into_iter()
            .map(|s| s.0.user_id),
    );
    ids.sort_unstable();
    ids.dedup();
    repo::people(conn, &ids)
}

/// Write the outbox rows for audit event `event_id`. Runs inside the event's transaction.
pub fn dispatch(
    conn: &mut DbConn,
    event_id: i64,
    actor: &str,
    action: &str,
    change_id: Option<i64>,
    detail: &Value,
) -> QueryResult<()> {
    let (Some(kind), Some(cid)) = (kind_of(action), change_id) else {
        return Ok(());
    };
    let Some(c) = change_repo::get(conn, cid)? else {
        return Ok(());
    };
    let mut to: BTreeMap<i64, Person> = BTreeMap::new();
    match kind {
        "needs_signoff" | "approved" => {
            add(&mut to, repo::team_people(conn, &c.implementing_team)?);
            add(&mut to, repo::team_people(conn, &c.requesting_team)?);
        }
        "signed" => {
            add(&mut to, repo::people(conn, &[c.author_id])?);
            let other = if detail["side"] == "requester" {
                &c.implementing_team
            } else {
                &c.requesting_team
            };
            add(&mut to, repo::team_people(conn, other)?);
        }
        "stale" => {
            let previous = detail["previous_fingerprint"].as_str().unwrap_or_default();
            let ids: Vec<i64> = change_repo::signoffs(conn, cid)?
                .into_iter()
                .filter(|s| s.0.fingerprint == previous)
                .map(|s| s.0.user_id)
                .collect();
            add(&mut to, repo::people(conn, &ids)?);
        }
        "execution_halted" => {
            add(&mut to, participants(conn, &c)?);
            add(&mut to, repo::team_people(conn, &c.implementing_team)?);
        }
        // The people who can approve it: the change's other team.
        "notice_drafted" => {
            if let Some(team) = detail["approver_team"].as_str() {
                add(&mut to, repo::team_people(conn, team)?);
            }
        }
        _ => add(&mut to, participants(conn, &c)?),
    }
    // Nobody is told about what they did themselves.
    to.retain(|_, p| p.1 != actor);
    if to.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = to.keys().copied().collect();
    let prefs = repo::prefs_for(conn, &ids, kind)?;
    let summary: Value = serde_json::from_str(&c.summary).unwrap_or(Value::Null);
    // Named as it executes (a rollback as the restore it runs), like every screen.
    let executes = crate::db::schemas::by_hash(conn, &c.schema_hash)?.and_then(|s| {
        s.operation(&c.operation)
            .and_then(|o| crate::domain::presentation::executes(&s, o, c.rollback_of.is_some()))
    });
    let payload = json!({
        "operation_label": executes.as_ref().map(|e| e.label.clone()),
        "effect_text": executes.as_ref().map(|e| e.effect_text.clone()),
        "action": action,
        "kind": kind,
        "actor": actor,
        "change_id": c.id,
        "title": c.title,
        "operation": c.operation,
        "state": c.state,
        "requesting_team": c.requesting_team,
        "implementing_team": c.implementing_team,
        "summary": summary["text"],
        "targets": c.target_count,
        "fingerprint": c.fingerprint,
        "rollback_of": c.rollback_of,
        "detail": detail,
    })
    .to_string();
    let t = now();
    let rows: Vec<NewOutbox> = to
        .into_values()
        .filter_map(|(id, email, _)| {
            let mode = prefs.get(&id).map(String::as_str).unwrap_or("immediately");
            let st = match mode {
                "never" if kind != "needs_signoff" => return None,
                "digest" | "never" => OutboxState::Digest,
                _ => OutboxState::Pending,
            };
            Some(NewOutbox {
                event_key: format!("audit:{event_id}"),
                event_kind: kind.to_string(),
                change_id: Some(cid),
                user_id: Some(id),
                recipient: email,
                payload: payload.clone(),
                message_id: uuid::Uuid::new_v4().simple().to_string(),
                state: st,
                next_attempt_at: t,
                digest_id: None,
                created_at: t,
            })
        })
        .collect();
    repo::enqueue(conn, &rows)?;
    Ok(())
}
