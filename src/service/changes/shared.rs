//! What the change use cases share: the bounds every input is checked against, the
//! operation a change names, its number, its lock, and what a stored change implies
//! (its effect, its sign-off policy, the hash of its text, the event of its submission).

use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::db::audit::Actor;
use crate::db::models::Change;
use crate::db::{changes as repo, DbConn, WriteTx};
use crate::domain::event::Event;
use crate::domain::lines::clip;
use crate::domain::schema::{Effect, Operation, SignoffPolicy};
use crate::domain::selector::Selector;
use crate::domain::signoff;
use crate::domain::text::{Rationale, Title};
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::views::number;
use crate::service::CurrentUser;

pub(super) const MAX_COMMENT: usize = 10_000;

/// `text` trimmed, or `code` with `message` when nothing is left.
pub(super) fn required<'t>(text: &'t str, code: ErrorCode, message: &str) -> AppResult<&'t str> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AppError::new(code, message.to_string()));
    }
    Ok(text)
}

/// Refuse `text` with `code` when it is longer than [`MAX_COMMENT`] characters (`what`
/// names it: "the comment").
pub(super) fn check_length(text: &str, code: ErrorCode, what: &str) -> AppResult<()> {
    if text.chars().count() > MAX_COMMENT {
        return Err(AppError::new(
            code,
            format!("{what} is longer than {MAX_COMMENT} characters"),
        ));
    }
    Ok(())
}

pub(crate) fn check_title(t: &str) -> AppResult<Title> {
    Ok(Title::parse(t)?)
}

pub(crate) fn check_rationale(r: &str) -> AppResult<Rationale> {
    Ok(Rationale::parse(r)?)
}

/// The bounds of a selector (ID count and length, `where` size), checked before it is
/// resolved or stored: 422 `invalid_selector` naming the field and line.
pub fn check_selector(op: &Operation, s: &Selector) -> AppResult<()> {
    match s.problem(op.max_targets) {
        None => Ok(()),
        Some(p) => Err(AppError::new(ErrorCode::InvalidSelector, p.message.clone())
            .with_details(json!({"field": p.field, "line": p.line}))),
    }
}

pub(super) fn operation<'s>(schema: &'s Schema, name: &str) -> AppResult<&'s Operation> {
    schema.operation(name).ok_or_else(|| {
        AppError::new(
            ErrorCode::UnknownOperation,
            format!(
                "unknown operation `{name}` (the schema has: {})",
                schema
                    .operations
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// The operation of a stored change: 409 `operation_removed` when a schema change took it
/// away (the change can no longer be resolved or signed; `unknown_operation` is for a
/// request that names one).
pub(super) fn change_operation<'s>(schema: &'s Schema, c: &Change) -> AppResult<&'s Operation> {
    schema.operation(&c.operation).ok_or_else(|| {
        AppError::new(
            ErrorCode::OperationRemoved,
            format!(
                "operation `{}` of {} is no longer in the schema",
                c.operation,
                number(c.id)
            ),
        )
    })
}

/// Check params against the operation's typed parameters; returns them with keys sorted.
pub fn check_params(op: &Operation, params: &Value) -> AppResult<Value> {
    let obj = match params {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) => m.clone(),
        other => {
            return Err(AppError::new(
                ErrorCode::InvalidParams,
                format!("params must be an object, got {other}"),
            ))
        }
    };
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for (k, v) in &obj {
        match op.param(k) {
            None => problems.push(json!({"param": k, "message": format!("{} takes no parameter `{k}` (parameters: {})", op.label, if op.params.is_empty() { "none".into() } else { op.params.iter().map(|p| p.name.clone()).collect::<Vec<_>>().join(", ") })})),
            Some(spec) => match spec.check(v) {
                Ok(v) => {
                    out.insert(k.clone(), v);
                }
                Err(m) => problems.push(json!({"param": k, "message": format!("parameter `{k}`: {m}")})),
            },
        }
    }
    for p in &op.params {
        if p.required && !obj.contains_key(&p.name) {
            problems.push(json!({"param": p.name, "message": format!("parameter `{}` is required ({})", p.name, p.description)}));
        }
    }
    if !problems.is_empty() {
        let msg = problems
            .iter()
            .filter_map(|p| p["message"].as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(
            AppError::new(ErrorCode::InvalidParams, msg).with_details(Value::Array(problems))
        );
    }
    Ok(serde_json::to_value(out).expect("params serialise"))
}

fn parse_id(raw: &str) -> AppResult<i64> {
    let s = raw.trim();
    let s = s
        .strip_prefix("CHG-")
        .or_else(|| s.strip_prefix("chg-"))
        .unwrap_or(s);
    s.parse::<i64>().map_err(|_| {
        AppError::new(
            ErrorCode::NotFound,
            format!(
                "`{}` is not a change number (expected CHG-<n> or <n>)",
                clip(raw)
            ),
        )
    })
}

pub fn change_id(raw: &str) -> AppResult<i64> {
    parse_id(raw)
}

pub(crate) fn locked(conn: &mut DbConn, id: i64) -> AppResult<Change> {
    repo::lock(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))
}

pub(crate) fn involved(user: &CurrentUser, c: &Change) -> bool {
    user.is_admin
        || user.id == c.author_id
        || user.in_team(&c.requesting_team)
        || user.in_team(&c.implementing_team)
}

/// The effect executing `c` has: the operation's, or for a rollback what undoes it (the
/// inverse, or a webhook operation's `undo` call).
pub fn effect_for(op: &Operation, c: &Change) -> Option<Effect> {
    match c.rollback_of {
        Some(_) => op.rollback_effect(),
        None => Some(op.effect),
    }
}

/// The sign-offs `c` needs: a rollback may have a lighter policy.
pub fn policy_for(op: &Operation, c: &Change) -> SignoffPolicy {
    tier_of(op, c).signoffs
}

pub use crate::service::views::tier_of;

/// The hash of the title and rationale a signer reads.
pub fn text_hash_of(c: &Change) -> String {
    signoff::text_hash(&c.title, &c.rationale)
}

/// Move change `id` from state `from` to `to`, recording why (`state_changed`).
pub(crate) fn move_state(
    conn: &mut WriteTx<'_>,
    actor: &Actor,
    id: i64,
    (from, to): (ChangeState, ChangeState),
    reason: String,
) -> AppResult<()> {
    repo::set_state(conn, id, to)?;
    record(
        conn,
        actor,
        Some(id),
        Event::StateChanged { from, to, reason },
    )?;
    Ok(())
}

/// The event of a change entering `awaiting_signoff` (what its signers are asked to sign).
pub(crate) fn submitted(c: &Change) -> Event {
    Event::Submitted {
        fingerprint: c.fingerprint.clone(),
        targets: c.target_count as u64,
        roots: c.root_count as u64,
    }
}
