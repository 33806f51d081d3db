//! Notification preferences (per person, per event kind) and the outbox as admins see it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use super::events::record;
use super::CurrentUser;
use crate::db::models::OutboxRow;
use crate::db::{outbox as repo, write_tx, DbConn};
use crate::domain::event::Event;
use crate::domain::event::NotificationKind;
use crate::domain::{NotificationMode, OutboxState};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::notify::mode_allowed;

#[derive(Debug, Serialize)]
pub struct Preference {
    pub kind: String,
    pub description: String,
    pub mode: NotificationMode,
    pub allowed: Vec<NotificationMode>,
}

pub fn preferences(conn: &mut DbConn, user: &CurrentUser) -> AppResult<Vec<Preference>> {
    let stored = repo::prefs_of(conn, user.id)?;
    Ok(NotificationKind::VALUES
        .iter()
        .map(|&k| Preference {
            kind: k.as_str().into(),
            description: k.describe().into(),
            mode: stored
                .get(k.as_str())
                .copied()
                .unwrap_or(NotificationMode::Immediately),
            allowed: NotificationMode::VALUES
                .iter()
                .copied()
                .filter(|m| mode_allowed(k, *m))
                .collect(),
        })
        .collect())
}

/// Set some preferences: `{"commented": "digest", "signed": "never"}`. All or nothing.
pub fn set_preferences(
    conn: &mut DbConn,
    user: &CurrentUser,
    changes: &BTreeMap<String, String>,
) -> AppResult<Vec<Preference>> {
    let mut problems = Vec::new();
    let mut parsed: Vec<(&str, NotificationMode)> = Vec::new();
    for (k, m) in changes {
        let Some(kind) = NotificationKind::parse(k) else {
            problems.push(format!("`{k}` is not a notification kind"));
            continue;
        };
        let Some(mode) = NotificationMode::parse(m) else {
            let all: Vec<&str> = NotificationMode::VALUES
                .iter()
                .map(|m| m.as_str())
                .collect();
            problems.push(format!("{k}: `{m}` is not one of {}", all.join(", ")));
            continue;
        };
        parsed.push((k.as_str(), mode));
        if !mode_allowed(kind, mode) {
            problems.push(format!(
                "{k}: requests for your sign-off cannot be turned off; choose `digest` to bundle them"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(
            AppError::new(ErrorCode::InvalidPreferences, problems.join("; "))
                .with_details(json!({"problems": problems})),
        );
    }
    write_tx(conn, |conn| -> AppResult<()> {
        for (k, m) in &parsed {
            repo::set_pref(conn, user.id, k, *m)?;
        }
        record(
            conn,
            &user.actor(),
            None,
            Event::NotificationPreferencesSet(changes.clone()),
        )?;
        Ok(())
    })?;
    preferences(conn, user)
}

fn admin(user: &CurrentUser) -> AppResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Forbidden,
            "only admins can see and retry the outbox (mails and hook deliveries)",
        ))
    }
}

#[derive(Debug, Serialize)]
pub struct OutboxView {
    pub id: i64,
    pub kind: String,
    /// `mail`, or `hook` (a chat or event hook's delivery; `recipient` is `hook:<id>`).
    pub channel: crate::domain::hook::OutboxChannel,
    pub change: Option<String>,
    pub recipient: String,
    /// A hook delivery's hook: `<name> (team <team>)`.
    pub hook: Option<String>,
    pub state: OutboxState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: chrono::NaiveDateTime,
    pub created_at: chrono::NaiveDateTime,
    pub sent_at: Option<chrono::NaiveDateTime>,
}

fn view(r: OutboxRow) -> OutboxView {
    OutboxView {
        id: r.id,
        kind: r.event_kind,
        channel: r.channel,
        change: r.change_id.map(super::views::number),
        recipient: r.recipient,
        hook: None,
        state: r.state,
        attempts: r.attempts,
        last_error: r.last_error,
        next_attempt_at: r.next_attempt_at,
        created_at: r.created_at,
        sent_at: r.sent_at,
    }
}

pub fn outbox(
    conn: &mut DbConn,
    user: &CurrentUser,
    state: Option<&str>,
    change: Option<i64>,
    limit: i64,
) -> AppResult<Vec<OutboxView>> {
    admin(user)?;
    let rows = repo::list(conn, state, change, limit)?;
    let ids: Vec<i64> = rows.iter().filter_map(|r| r.hook_id).collect();
    let names = crate::db::hooks::names(conn, &ids)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let hook = r
                .hook_id
                .and_then(|id| names.get(&id))
                .map(|(team, name)| format!("{name} (team {team})"));
            OutboxView { hook, ..view(r) }
        })
        .collect())
}

/// A dead mail back to the queue, attempts reset.
pub fn retry(conn: &mut DbConn, user: &CurrentUser, id: i64) -> AppResult<OutboxView> {
    admin(user)?;
    write_tx(conn, |conn| -> AppResult<()> {
        let row = repo::get(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                format!("no message {id} in the outbox"),
            )
        })?;
        if !repo::retry(conn, id)? {
            return Err(AppError::new(
                ErrorCode::NotDead,
                format!(
                    "message {id} is {}; only dead messages can be retried",
                    row.state
                ),
            ));
        }
        record(
            conn,
            &user.actor(),
            row.change_id,
            Event::MailRetried {
                mail: id,
                recipient: row.recipient.clone(),
            },
        )?;
        Ok(())
    })?;
    Ok(view(repo::get(conn, id)?.expect("exists")))
}
