//! The append-only, hash-chained audit trail. Each event's hash covers the previous
//! event's hash and its own content, so editing or deleting a row breaks the chain.

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::models::AuditEvent;
use super::schema::{audit_events, audit_head};
use super::{DbConn, WriteTx};
use crate::domain::event::Event;

/// Who did something: a person (by email), the command line, or the system.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl Actor {
    pub fn system() -> Self {
        Actor("system".into())
    }
    pub fn cli() -> Self {
        Actor(format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        ))
    }
}

pub fn event_hash(
    prev_hash: &str,
    id: i64,
    at: &chrono::NaiveDateTime,
    actor: &str,
    action: &str,
    change_id: Option<i64>,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev_hash,
        &id.to_string(),
        &at.format(HASHED_TIME).to_string(),
        actor,
        action,
        &change_id.map(|c| c.to_string()).unwrap_or_default(),
        detail,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Store an event. It runs inside a write transaction by type ([`WriteTx`] only comes
/// from [`super::write_tx`]): updating `audit_head` first takes its row lock (PostgreSQL)
/// or is already serialised (SQLite's `BEGIN IMMEDIATE`), so concurrent writers chain one
/// after another and the event commits or rolls back with what it records.
///
/// Storage only: an event people are told about is recorded through
/// `service::events::record`, which stores it here and writes its mails in the same
/// transaction. Called directly only for events that notify nobody
/// ([`Event::notification`] is `None`), which a debug assertion checks.
pub fn append(
    tx: &mut WriteTx<'_>,
    actor: &Actor,
    change_id: Option<i64>,
    event: &Event,
) -> QueryResult<i64> {
    debug_assert!(
        event.notification().is_none() || change_id.is_none(),
        "`{}` notifies people: record it with service::events::record",
        event.action()
    );
    store(tx, actor, change_id, event)
}

/// [`append`] without the check; `service::events::record` only.
#[doc(hidden)]
pub fn store(
    tx: &mut WriteTx<'_>,
    actor: &Actor,
    change_id: Option<i64>,
    event: &Event,
) -> QueryResult<i64> {
    let conn = tx.conn();
    diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
        .set(audit_head::last_id.eq(audit_head::last_id + 1))
        .execute(conn)?;
    let (id, prev_hash): (i64, String) = audit_head::table
        .filter(audit_head::id.eq(1))
        .select((audit_head::last_id, audit_head::last_hash))
        .first(conn)?;
    let at = super::now();
    let action = event.action();
    let detail = event.detail().to_string();
    let hash = event_hash(&prev_hash, id, &at, &actor.0, action, change_id, &detail);
    diesel::insert_into(audit_events::table)
        .values(AuditEvent {
            id,
            at,
            actor: actor.0.clone(),
            action: action.to_string(),
            change_id,
            detail,
            prev_hash,
            hash: hash.clone(),
        })
        .execute(conn)?;
    diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
        .set(audit_head::last_hash.eq(hash))
        .execute(conn)?;
    Ok(id)
}

/// The id of the latest event (0 before the first): one primary-key read, which moves
/// with every audited write.
pub fn head_id(conn: &mut DbConn) -> QueryResult<i64> {
    audit_head::table
        .filter(audit_head::id.eq(1))
        .select(audit_head::last_id)
        .first(conn)
}

/// The chain's head: the latest event's id and hash (0 and `genesis` before the first).
pub fn head(conn: &mut DbConn) -> QueryResult<(i64, String)> {
    audit_head::table
        .filter(audit_head::id.eq(1))
        .select((audit_head::last_id, audit_head::last_hash))
        .first(conn)
}

/// The first and last event ids of change `change_id` (`None` without events).
pub fn span_of_change(conn: &mut DbConn, change_id: i64) -> QueryResult<Option<(i64, i64)>> {
    let (first, last): (Option<i64>, Option<i64>) = audit_events::table
        .filter(audit_events::change_id.eq(change_id))
        .select((
            diesel::dsl::min(audit_events::id),
            diesel::dsl::max(audit_events::id),
        ))
        .first(conn)?;
    Ok(first.zip(last))
}

/// Events with ids from `from` to `to` (inclusive), oldest first, `limit` at most: one page
/// of a chain segment.
pub fn range(conn: &mut DbConn, from: i64, to: i64, limit: i64) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .filter(audit_events::id.ge(from))
        .filter(audit_events::id.le(to))
        .order(audit_events::id.asc())
        .limit(limit)
        .select(AuditEvent::as_select())
        .load(conn)
}

/// How an event's time enters its hash ([`event_hash`]); an evidence bundle writes it so.
pub const HASHED_TIME: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// The latest `n` events, newest first.
pub fn recent(conn: &mut DbConn, n: i64) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .order(audit_events::id.desc())
        .limit(n)
        .select(AuditEvent::as_select())
        .load(conn)
}

/// The latest `state_changed` event of a change (why it is in its state, when the system
/// or an edit moved it back).
pub fn last_state_change(conn: &mut DbConn, change_id: i64) -> QueryResult<Option<AuditEvent>> {
    audit_events::table
        .filter(audit_events::change_id.eq(change_id))
        .filter(audit_events::action.eq("state_changed"))
        .order(audit_events::id.desc())
        .select(AuditEvent::as_select())
        .first(conn)
        .optional()
}

pub fn for_change(conn: &mut DbConn, change_id: i64) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .filter(audit_events::change_id.eq(change_id))
        .order(audit_events::id.asc())
        .select(AuditEvent::as_select())
        .load(conn)
}

/// The events of change `change_id` with action `action`, oldest first.
pub fn for_change_action(
    conn: &mut DbConn,
    change_id: i64,
    action: &str,
) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .filter(audit_events::change_id.eq(change_id))
        .filter(audit_events::action.eq(action))
        .order(audit_events::id.asc())
        .select(AuditEvent::as_select())
        .load(conn)
}

/// The events of change `change_id` with any of `actions`, oldest first.
pub fn for_change_actions(
    conn: &mut DbConn,
    change_id: i64,
    actions: &[&str],
) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .filter(audit_events::change_id.eq(change_id))
        .filter(audit_events::action.eq_any(actions))
        .order(audit_events::id.asc())
        .select(AuditEvent::as_select())
        .load(conn)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { events: u64 },
    Broken { id: i64, reason: String },
}

/// Walk the chain in pages (bounded memory) and report the first broken event.
pub fn verify(conn: &mut DbConn) -> QueryResult<Verdict> {
    let mut prev = "genesis".to_string();
    let mut expected_id = 1i64;
    let mut count = 0u64;
    loop {
        let page: Vec<AuditEvent> = audit_events::table
            .filter(audit_events::id.ge(expected_id))
            .order(audit_events::id.asc())
            .limit(5000)
            .select(AuditEvent::as_select())
            .load(conn)?;
        if page.is_empty() {
            break;
        }
        for e in page {
            if e.id != expected_id {
                return Ok(Verdict::Broken {
                    id: expected_id,
                    reason: format!("event {expected_id} is missing (next is {})", e.id),
                });
            }
            if e.prev_hash != prev {
                return Ok(Verdict::Broken {
                    id: e.id,
                    reason: "its prev_hash does not match the previous event's hash".into(),
                });
            }
            let h = event_hash(
                &e.prev_hash,
                e.id,
                &e.at,
                &e.actor,
                &e.action,
                e.change_id,
                &e.detail,
            );
            if h != e.hash {
                return Ok(Verdict::Broken {
                    id: e.id,
                    reason: "its content does not match its hash (the row was altered)".into(),
                });
            }
            prev = e.hash;
            expected_id += 1;
            count += 1;
        }
    }
    let (last_id, last_hash): (i64, String) = audit_head::table
        .select((audit_head::last_id, audit_head::last_hash))
        .first(conn)?;
    if last_id != expected_id - 1 || last_hash != prev {
        return Ok(Verdict::Broken { id: last_id, reason: format!("the chain ends at event {} but the head records event {last_id} (events were deleted from the end)", expected_id - 1) });
    }
    Ok(Verdict::Intact { events: count })
}

impl AuditEvent {
    /// The typed event this row holds (`None` for an action this build does not know).
    pub fn event(&self) -> Option<Event> {
        let detail: serde_json::Value = serde_json::from_str(&self.detail).ok()?;
        Event::from_stored(&self.action, &detail)
    }
}
