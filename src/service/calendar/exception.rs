//! A soft freeze's exception: one more implementer sign-off, for one freeze and the
//! change's current fingerprint, by a member of the implementing team who is not the
//! author, took no other side and is not one of the implementer signers already counted
//! (`domain::calendar::may_grant_exception`). Given under the change's row lock; the
//! execute gate counts it while the fingerprint is the same and the giver is still in the
//! implementing team.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::email_of;
use crate::db::calendar as repo;
use crate::db::models::Change;
use crate::db::{changes as change_repo, users, write_tx, DbConn};
use crate::domain::calendar::{self as cal, ExceptionFacts, ExceptionRefusal, Severity};
use crate::domain::event::Event;
use crate::domain::resolution::short_fingerprint;
use crate::domain::{ChangeState, Schema, Side};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::views::number;
use crate::service::CurrentUser;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRequest {
    pub freeze: i64,
    /// The change's current fingerprint, as the giver read it.
    pub fingerprint: String,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExceptionView {
    pub freeze: i64,
    pub by: String,
    pub fingerprint: String,
    pub comment: String,
    pub at: NaiveDateTime,
    /// For the change's current fingerprint.
    pub current: bool,
}

/// Give an exception to a soft freeze for change `id`. Answers the change's exceptions.
#[tracing::instrument(name = "calendar::exception", skip_all, fields(change = id, user = user.id))]
pub fn give_exception(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: &ExceptionRequest,
) -> AppResult<Vec<ExceptionView>> {
    let comment = req.comment.trim().to_string();
    if comment.chars().count() > 1000 {
        return Err(AppError::new(
            ErrorCode::InvalidComment,
            "the comment is longer than 1000 characters",
        ));
    }
    let _ = schema;
    write_tx(conn, |conn| -> AppResult<()> {
        let c = change_repo::lock(conn, id)?
            .ok_or_else(|| AppError::not_found("change", number(id)))?;
        let f = repo::freeze(conn, req.freeze)?
            .ok_or_else(|| AppError::not_found("freeze", req.freeze))?;
        if f.lifted_at.is_some() {
            return Err(AppError::new(
                ErrorCode::FreezeLifted,
                format!("the freeze “{}” is lifted: nothing to except", f.name),
            ));
        }
        let freeze = super::to_domain(&f);
        if freeze.severity != Severity::Soft || !freeze.applies_to(&c.operation) {
            return Err(AppError::new(
                ErrorCode::NotASoftFreeze,
                format!(
                    "the freeze “{}” is {} for {}: only a soft freeze covering `{}` takes an exception",
                    f.name,
                    f.severity.as_str(),
                    if freeze.operations.is_empty() { "every operation".to_string() } else { freeze.operations.join(", ") },
                    c.operation
                ),
            ));
        }
        let current = c.fingerprint.clone().unwrap_or_default();
        if req.fingerprint.trim() != current {
            return Err(AppError::new(
                ErrorCode::StaleFingerprint,
                format!(
                    "{} is at fingerprint {}, not {}: read it again",
                    number(c.id),
                    short_fingerprint(&current),
                    short_fingerprint(req.fingerprint.trim())
                ),
            )
            .with_details(json!({"current_fingerprint": current})));
        }
        let facts = facts(conn, user, &c)?;
        if let Err((why, message)) = cal::may_grant_exception(&facts) {
            let code = match why {
                ExceptionRefusal::NotImplementer => ErrorCode::NotImplementer,
                ExceptionRefusal::SeparationOfDuties => ErrorCode::SeparationOfDuties,
                ExceptionRefusal::NotApproved => ErrorCode::IllegalTransition,
            };
            return Err(AppError::new(code, message).with_details(json!({"state": c.state})));
        }
        repo::put_exception(conn, c.id, f.id, user.id, &current, &comment)?;
        record(
            conn,
            &user.actor(),
            Some(c.id),
            Event::FreezeExceptionGiven {
                freeze: f.id,
                freeze_name: f.name.clone(),
                fingerprint: current,
                comment,
            },
        )?;
        Ok(())
    })?;
    exceptions(conn, id)
}

/// What [`cal::may_grant_exception`] needs, read in the caller's transaction or snapshot.
fn facts(conn: &mut DbConn, user: &CurrentUser, c: &Change) -> AppResult<ExceptionFacts> {
    let current = c.fingerprint.clone().unwrap_or_default();
    let signoffs = change_repo::signoffs(conn, c.id)?;
    let mine = |pred: &dyn Fn(&crate::db::models::Signoff) -> bool| {
        signoffs
            .iter()
            .any(|(s, _, _)| s.user_id == user.id && pred(s))
    };
    Ok(ExceptionFacts {
        in_implementing_team: users::is_member(conn, user.id, &c.implementing_team)?,
        is_author: c.author_id == user.id,
        signed_other_side: mine(&|s| s.side != Side::Implementer),
        counted_implementer: mine(&|s| {
            s.side == Side::Implementer && !s.stale && s.fingerprint == current
        }),
        approved: c.state == ChangeState::Approved,
    })
}

/// The soft freeze `user` may give `c` an exception for now, if one blocks it: what the
/// change page offers (the same rule the service applies).
pub fn offer(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    c: &Change,
) -> AppResult<Option<(i64, String)>> {
    match super::blocking(conn, schema, c, crate::db::now())? {
        Some(cal::Blocker::Freeze {
            freeze,
            name,
            severity: Severity::Soft,
            ..
        }) if cal::may_grant_exception(&facts(conn, user, c)?).is_ok() => Ok(Some((freeze, name))),
        _ => Ok(None),
    }
}

/// A change's freeze exceptions.
pub fn exceptions(conn: &mut DbConn, id: i64) -> AppResult<Vec<ExceptionView>> {
    let current = change_repo::get(conn, id)?
        .ok_or_else(|| AppError::not_found("change", number(id)))?
        .fingerprint
        .unwrap_or_default();
    repo::exceptions_of(conn, id)?
        .into_iter()
        .map(|r| {
            Ok(ExceptionView {
                freeze: r.freeze_id,
                by: email_of(conn, r.user_id)?,
                current: r.fingerprint == current,
                fingerprint: r.fingerprint,
                comment: r.comment,
                at: r.created_at,
            })
        })
        .collect()
}
