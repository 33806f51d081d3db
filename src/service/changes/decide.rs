//! Deciding on a change: sign-offs (and the approval the last one needed brings),
//! rejection, cancellation, and the comments beside them.

use serde::Deserialize;
use serde_json::json;

use super::permissions::{facts, records, require};
use super::shared::{change_operation, check_length, locked, policy_for, required, text_hash_of};
use crate::db::{changes as repo, write_tx, DbConn};
use crate::domain::access::{self, ChangeAction};
use crate::domain::event::Event;
use crate::domain::signoff::{self, Attempt, Side};
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::CurrentUser;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    pub side: Side,
    pub fingerprint: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub confirm_count: Option<u64>,
    /// The `text_hash` of the change as the signer read it (title and rationale); when
    /// given, a sign-off is refused if the text changed since.
    #[serde(default)]
    pub text_hash: Option<String>,
    /// Signing from the difference view: the fingerprint of the list the difference was
    /// shown against (the one this sign-off replaces). Refused (`stale_difference`) when
    /// the change's difference is now against another list; recorded on the sign-off.
    #[serde(default)]
    pub replaces: Option<String>,
}

/// Record a sign-off; approve the change in the same transaction when it is the last
/// one needed.
#[tracing::instrument(name = "changes::sign", skip_all, fields(change = id, user = user.id))]
pub fn sign(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: SignRequest,
) -> AppResult<bool> {
    check_length(&req.comment, ErrorCode::InvalidComment, "the comment")?;
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        let rows = repo::signoffs(conn, id)?;
        let existing = records(conn, schema, &c, &rows)?;
        let action = match req.side {
            Side::Requester => ChangeAction::SignRequester,
            Side::Implementer => ChangeAction::SignImplementer,
            Side::Reviewer => ChangeAction::SignReviewer,
        };
        access::decide(&facts(conn, schema, user, &c, &existing)?, action)?;
        let current = c.fingerprint.clone().unwrap_or_default();
        if c.schema_hash != schema.hash {
            return Err(AppError::new(ErrorCode::SchemaChanged, "the schema changed since this change was resolved; re-resolve it (POST …/resolve) and review the new fingerprint").with_details(json!({"current_fingerprint": current})));
        }
        let op = change_operation(schema, &c)?;
        signoff::check(&Attempt {
            side: req.side,
            given_fingerprint: req.fingerprint.trim(),
            current_fingerprint: &current,
            given_text_hash: req.text_hash.as_deref().map(str::trim),
            current_text_hash: &text_hash_of(&c),
            target_count: c.target_count as u64,
            confirm_above: op.confirm_above,
            confirm_count: req.confirm_count,
        })?;
        let difference = match req.replaces.as_deref().filter(|r| !r.trim().is_empty()) {
            Some(r) => Some(super::difference::check_replaces(conn, &c, r)?),
            None => None,
        };
        let signoff_id = repo::insert_signoff(
            conn,
            id,
            req.side.as_str(),
            user.id,
            &current,
            req.comment.trim(),
        )?;
        if let Some(d) = &difference {
            crate::db::differences::record_on_signoff(conn, signoff_id, d)?;
        }
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::Signed {
                side: req.side,
                fingerprint: current.clone(),
                comment: req.comment.trim().to_string(),
                confirm_count: req.confirm_count,
                difference,
            },
        )?;
        let rows = repo::signoffs(conn, id)?;
        let all = records(conn, schema, &c, &rows)?;
        let approved = signoff::is_approved(&all, policy_for(op, &c), &current);
        if approved {
            repo::set_state(conn, id, ChangeState::Approved)?;
            // The sign-offs that made it approved (not an expired or unearned one).
            let names = |side: Side| -> Vec<String> {
                rows.iter()
                    .filter(|(s, _, _)| {
                        s.side == side && all.iter().any(|r| r.id == s.id && r.counts_for(&current))
                    })
                    .map(|(_, e, _)| e.clone())
                    .collect()
            };
            record(
                conn,
                &user.actor(),
                Some(id),
                Event::Approved {
                    fingerprint: current.clone(),
                    requester: names(Side::Requester),
                    implementer: names(Side::Implementer),
                    reviewer: names(Side::Reviewer),
                },
            )?;
        }
        Ok(approved)
    })
}

#[tracing::instrument(name = "changes::reject", skip_all, fields(change = id, user = user.id))]
pub fn reject(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: &str,
) -> AppResult<()> {
    let reason = required(
        reason,
        ErrorCode::ReasonRequired,
        "say why the change is rejected",
    )?;
    check_length(reason, ErrorCode::InvalidReason, "the reason")?;
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Reject)?;
        repo::set_state(conn, id, ChangeState::Rejected)?;
        repo::set_reject_reason(conn, id, reason)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::Rejected {
                from: c.state,
                reason: reason.to_string(),
            },
        )?;
        Ok(())
    })
}

#[tracing::instrument(name = "changes::cancel", skip_all, fields(change = id, user = user.id))]
pub fn cancel(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: Option<&str>,
) -> AppResult<()> {
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Cancel)?;
        repo::set_state(conn, id, ChangeState::Cancelled)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::Cancelled {
                from: c.state,
                reason: reason.map(|r| r.trim().to_string()),
            },
        )?;
        Ok(())
    })
}

#[tracing::instrument(name = "changes::comment", skip_all, fields(change = id, user = user.id))]
pub fn comment(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    body: &str,
) -> AppResult<i64> {
    let body = required(body, ErrorCode::EmptyComment, "the comment is empty")?;
    check_length(body, ErrorCode::InvalidComment, "the comment")?;
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Comment)?;
        let cm = repo::insert_comment(conn, id, user.id, body)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::Commented {
                comment_id: cm.id,
                body: body.to_string(),
            },
        )?;
        Ok(cm.id)
    })
}
