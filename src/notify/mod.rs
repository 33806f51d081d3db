//! Notifications. Every audit event that people must hear about becomes outbox rows in the
//! same transaction (`dispatch`, called by `service::events::record`): a committed event always
//! has its mails and a rolled-back one none. The mailer (`mailer.rs`) delivers them; the
//! mails are rendered from the facts stored with each row (`mail.rs`).

mod delivery;
mod hook_format;
pub mod hooks;
pub mod mail;
pub mod mailer;
mod words;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::domain::event::{Event, NotificationKind};
use crate::domain::Side;

use crate::db::models::NewOutbox;
use crate::db::outbox as repo;
use crate::db::{changes as change_repo, now, DbConn};
use crate::domain::NotificationMode;
use diesel::QueryResult;

/// Whether `mode` is allowed for `kind` (a sign-off request can be digested, never muted).
pub fn mode_allowed(kind: NotificationKind, mode: NotificationMode) -> bool {
    kind.can_mute() || mode != NotificationMode::Never
}

type Person = (i64, String, String);

fn add(to: &mut BTreeMap<i64, Person>, people: Vec<Person>) {
    for p in people {
        to.entry(p.0).or_insert(p);
    }
}

/// Who is told about `event` of change `c`, by user id.
fn recipients(
    conn: &mut DbConn,
    c: &crate::db::models::Change,
    event: &Event,
) -> QueryResult<BTreeMap<i64, Person>> {
    let cid = c.id;
    let mut to: BTreeMap<i64, Person> = BTreeMap::new();
    // The third side the change's tier names (a `security` review), if any.
    let reviewing = reviewing_team(conn, c)?;
    match event {
        Event::Submitted { .. } | Event::Approved { .. } => {
            add(&mut to, repo::team_people(conn, &c.implementing_team)?);
            add(&mut to, repo::team_people(conn, &c.requesting_team)?);
            if let Some(team) = &reviewing {
                add(&mut to, repo::team_people(conn, team)?);
            }
        }
        // The author and every other side's team: someone may be waiting on this one.
        Event::Signed { side, .. } => {
            add(&mut to, repo::active_people(conn, &[c.author_id])?);
            let sides = [
                (Side::Requester, Some(c.requesting_team.as_str())),
                (Side::Implementer, Some(c.implementing_team.as_str())),
                (Side::Reviewer, reviewing.as_deref()),
            ];
            for (s, team) in sides {
                if let (true, Some(team)) = (s != *side, team) {
                    add(&mut to, repo::team_people(conn, team)?);
                }
            }
        }
        Event::SignoffsStale(stale) => {
            let ids: Vec<i64> = change_repo::signoffs(conn, cid)?
                .into_iter()
                .filter(|s| stale.previous_fingerprint.as_deref() == Some(s.0.fingerprint.as_str()))
                .map(|s| s.0.user_id)
                .collect();
            add(&mut to, repo::active_people(conn, &ids)?);
        }
        // A reminder goes to the signer only.
        Event::SignoffExpiring(e) => {
            let ids: Vec<i64> = change_repo::signoffs(conn, cid)?
                .into_iter()
                .filter(|s| s.0.id == e.signoff)
                .map(|s| s.0.user_id)
                .collect();
            add(&mut to, repo::active_people(conn, &ids)?);
        }
        Event::ExecutionHalted { .. }
        | Event::ExecutionPaused { .. }
        | Event::ExecutionPausedByOperator { .. }
        | Event::StartUnscheduled { .. }
        | Event::LockdownDeclared { .. }
        | Event::LockdownLifted { .. } => {
            add(&mut to, participants(conn, c)?);
            add(&mut to, repo::team_people(conn, &c.implementing_team)?);
        }
        // The people who can approve it: the change's other team.
        Event::CustomerNoticeDrafted {
            approver_team: Some(team),
            ..
        } => {
            add(&mut to, repo::team_people(conn, team)?);
        }
        _ => add(&mut to, participants(conn, c)?),
    }
    // A deactivated person is told nothing (they cannot sign in to act on it): every
    // query above reads only people who are not deactivated.
    Ok(to)
}

/// Write the chat and event hook deliveries of audit event `event_id` (see `hooks.rs`).
/// Runs inside the event's transaction; called by `service::events::record` only.
pub(crate) fn dispatch_hooks(
    conn: &mut DbConn,
    event_id: i64,
    actor: &str,
    change: Option<i64>,
    event: &Event,
) -> QueryResult<()> {
    hooks::dispatch(conn, event_id, actor, change, event, |conn, c| {
        payload(conn, c, event, event.notification(), actor)
    })
}

/// The team a tier of `c`'s policy names as its third side, under the schema `c` was
/// resolved with.
fn reviewing_team(conn: &mut DbConn, c: &crate::db::models::Change) -> QueryResult<Option<String>> {
    let Some(schema) = crate::db::schemas::by_hash(conn, &c.schema_hash)? else {
        return Ok(None);
    };
    Ok(schema
        .operation(&c.operation)
        .and_then(|o| c.policy(o).reviewer_team())
        .map(str::to_string))
}

/// What every mail of `event` carries: the change as every screen names it (a rollback as
/// the restore it runs, its tier, undo plan and sign-off lifetime) and the event.
fn payload(
    conn: &mut DbConn,
    c: &crate::db::models::Change,
    event: &Event,
    kind: Option<NotificationKind>,
    actor: &str,
) -> QueryResult<String> {
    let summary: Value = serde_json::from_str(&c.summary).unwrap_or(Value::Null);
    let schema = crate::db::schemas::by_hash(conn, &c.schema_hash)?;
    let op = schema.as_ref().and_then(|s| s.operation(&c.operation));
    let executes = schema
        .as_ref()
        .zip(op)
        .and_then(|(s, o)| crate::domain::presentation::executes(s, o, c.rollback_of.is_some()));
    let tier = op.and_then(|o| c.policy(o).describe());
    Ok(json!({
        "operation_label": executes.as_ref().map(|e| e.label.clone()),
        "effect_text": executes.as_ref().map(|e| e.effect_text.clone()),
        "action": event.action(),
        "kind": kind,
        "actor": actor,
        "change_id": c.id,
        "title": c.title,
        "operation": c.operation,
        "state": c.state,
        "requesting_team": c.requesting_team,
        "implementing_team": c.implementing_team,
        "summary": summary["text"],
        "tier": tier,
        "signoffs_expire_after": op.and_then(|o| o.signoffs_expire_after).map(|l| l.to_string()),
        "undo": summary["undo"]["text"],
        "targets": c.target_count,
        "fingerprint": c.fingerprint,
        "rollback_of": c.rollback_of,
        "detail": event.detail(),
    })
    .to_string())
}

/// The author, everyone who signed (any fingerprint) and everyone who commented: one
/// statement of fixed text (prepared once per connection), for every event of a change.
fn participants(conn: &mut DbConn, c: &crate::db::models::Change) -> QueryResult<Vec<Person>> {
    repo::participants(conn, c.id, c.author_id)
}

/// Write the outbox rows for audit event `event_id` (`kind` is its notification). Runs
/// inside the event's transaction; called by `service::events::record` only.
pub(crate) fn dispatch(
    conn: &mut DbConn,
    event_id: i64,
    actor: &str,
    kind: NotificationKind,
    cid: i64,
    event: &Event,
) -> QueryResult<()> {
    let Some(c) = change_repo::get(conn, cid)? else {
        return Ok(());
    };
    let mut to = recipients(conn, &c, event)?;
    // Nobody is told about what they did themselves.
    to.retain(|_, p| p.1 != actor);
    if to.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = to.keys().copied().collect();
    let prefs = repo::prefs_for(conn, &ids, kind.as_str())?;
    let payload = payload(conn, &c, event, Some(kind), actor)?;
    let t = now();
    let rows: Vec<NewOutbox> = to
        .into_values()
        .filter_map(|(id, email, _)| {
            let mode = prefs
                .get(&id)
                .copied()
                .unwrap_or(NotificationMode::Immediately);
            let st = mode.outbox_state(kind.can_mute())?;
            Some(NewOutbox {
                event_key: format!("audit:{event_id}"),
                event_kind: kind.as_str().to_string(),
                change_id: Some(cid),
                user_id: Some(id),
                recipient: email,
                payload: payload.clone(),
                message_id: uuid::Uuid::new_v4().simple().to_string(),
                state: st,
                next_attempt_at: t,
                digest_id: None,
                created_at: t,
                channel: crate::domain::hook::OutboxChannel::Mail,
                hook_id: None,
            })
        })
        .collect();
    repo::enqueue(conn, &rows)?;
    Ok(())
}
