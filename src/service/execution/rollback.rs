//! Undoing an executed change: its rollback, and the derived changes (rollbacks and bulk
//! restores) stored and submitted at once.

use serde::Deserialize;
use serde_json::json;

use super::operation;
use crate::db::models::Change;
use crate::db::{changes as change_repo, exec as repo, resolve, write_tx, DbConn, WriteTx};
use crate::domain::access::ChangeAction;
use crate::domain::event::{Created, Event};
use crate::domain::execution::RestoreSpec;
use crate::domain::presentation::executes;
use crate::domain::resolution::Resolution;
use crate::domain::text::{Rationale, Title};
use crate::domain::{ChangeState, Effect, Schema};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::{draft_row, locked, require, submitted, ChangeHead};
use crate::service::events::record;
use crate::service::views::number;
use crate::service::CurrentUser;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub rationale: Option<String>,
}

/// Create the change that undoes an executed one: the inverse effect over exactly the
/// targets its execution changed. It is submitted at once and needs sign-offs (the
/// operation's `rollback_signoffs`, or its usual policy).
#[tracing::instrument(name = "execution::rollback", skip_all, fields(change = id, user = user.id))]
pub fn rollback(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: &RollbackRequest,
) -> AppResult<i64> {
    write_tx(conn, |conn| {
        let orig = locked(conn, id)?;
        require(conn, schema, user, &orig, ChangeAction::Rollback)?;
        if let Some(existing) = orig.rolled_back_by {
            let still_open = change_repo::get(conn, existing)?
                .map(|r| !matches!(r.state, ChangeState::Cancelled | ChangeState::Rejected))
                .unwrap_or(false);
            if still_open {
                return Err(AppError::new(
                    ErrorCode::AlreadyRolledBack,
                    format!(
                        "{} already has a rollback: {}",
                        number(id),
                        number(existing)
                    ),
                )
                .with_details(json!({"rollback": number(existing), "rollback_id": existing})));
            }
        }
        let op = operation(schema, &orig)?;
        // The rollback is requested by the original's requesting team: it must still be
        // allowed to request the operation under today's schema.
        op.may_be_requested_by(&orig.requesting_team)?;
        let (inv, runs) = op
            .rollback_effect()
            .zip(executes(schema, op, true))
            .ok_or_else(|| {
                let why = match op.effect {
                    Effect::Webhook => "the schema gives it no `undo` operation",
                    _ => "it has no inverse",
                };
                AppError::new(
                    ErrorCode::NotReversible,
                    format!(
                        "{} ({}) cannot be rolled back: {why}",
                        op.label,
                        op.effect.as_str()
                    ),
                )
            })?;
        let exec = repo::for_change(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotExecuted,
                format!("{} was never executed", number(id)),
            )
        })?;
        let r = resolve::resolve_rollback(conn, schema, op, id, exec.id, inv)?;
        if r.targets.is_empty() {
            return Err(AppError::new(
                ErrorCode::NothingToRollBack,
                format!(
                    "every target {} changed is already back or gone",
                    number(id)
                ),
            ));
        }
        let title = match req.title.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(t) => Title::parse(t)?,
            None => Title::generated(&format!("Roll back {}: {}", number(id), orig.title)),
        };
        let rationale = match req.rationale.as_deref() {
            Some(r) => Rationale::parse(r)?,
            None => Rationale::generated(&format!(
                "Undo {} ({}): {} over the {} targets its execution changed.",
                number(id),
                op.label,
                runs.effect_text,
                r.targets.len()
            )),
        };
        let c = insert_submitted(
            conn,
            schema,
            user,
            ChangeHead {
                title,
                rationale,
                requesting_team: orig.requesting_team.clone(),
                implementing_team: orig.implementing_team.clone(),
                operation: orig.operation.clone(),
                params: orig.params.clone(),
                selector: json!({"rollback_of": id}).to_string(),
                expect: None,
                not_before: None,
                not_after: None,
                rollback_of: Some(id),
            },
            &r,
            Derived::Rollback {
                of: id,
                effect: inv,
            },
        )?;
        change_repo::set_rolled_back_by(conn, id, c.id)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::RollbackCreated {
                rollback: number(c.id),
                targets: r.targets.len() as u64,
            },
        )?;
        Ok(c.id)
    })
}

/// What a derived change was derived from.
pub(crate) enum Derived {
    /// The rollback of change `of`, running `effect` (the inverse of its effect).
    Rollback { of: i64, effect: Effect },
    /// A bulk restore to the point `spec` names.
    Restore(RestoreSpec),
}

/// Store a derived change with its resolution and submit it, auditing both steps.
pub(crate) fn insert_submitted(
    conn: &mut WriteTx<'_>,
    schema: &Schema,
    user: &CurrentUser,
    d: ChangeHead,
    r: &Resolution,
    from: Derived,
) -> AppResult<Change> {
    let operation = d.operation.clone();
    let c = change_repo::insert(conn, &draft_row(schema, user.id, d, r))?;
    change_repo::replace_targets(conn, c.id, &r.targets)?;
    change_repo::set_state(conn, c.id, ChangeState::AwaitingSignoff)?;
    let (fingerprint, target_count, warnings) = (
        r.fingerprint.clone(),
        r.targets.len() as u64,
        r.summary.warnings.clone(),
    );
    let created = match from {
        Derived::Rollback { of, effect } => Created::Rollback {
            rollback_of: number(of),
            operation,
            effect,
            fingerprint,
            target_count,
            warnings,
        },
        Derived::Restore(restore) => Created::Restore {
            restore,
            operation,
            effect: Effect::Restore,
            fingerprint,
            target_count,
            warnings,
        },
    };
    record(conn, &user.actor(), Some(c.id), Event::Created(created))?;
    record(conn, &user.actor(), Some(c.id), submitted(&c))?;
    Ok(c)
}
