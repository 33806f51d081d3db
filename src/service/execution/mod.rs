//! Execution use cases: the execute gate, resume, abort, progress, and rollback.
//!
//! The gate runs in one write transaction holding the change's row lock: state, signed
//! fingerprint, window and a fresh resolution are checked, and the execution with one
//! item per signed target is created, all or nothing. Two concurrent execute calls
//! serialise on the lock; the second finds the change `executing` (409).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::changes::{
    draft_row, effect_for, locked, policy_for, records, require, reresolve_locked, ChangeHead,
    ResolveOutcome,
};
use super::events::record;
use super::views::number;
use super::CurrentUser;
use crate::db::models::Change;
use crate::db::users;
use crate::db::{changes as change_repo, exec as repo, now, resolve, write_tx, DbConn, WriteTx};
use crate::domain::access::ChangeAction;
use crate::domain::event::{Created, Event};
use crate::domain::execution::{inverse, plan_waves, ExecState, ItemStatus, RestoreSpec, Wave};
use crate::domain::resolution::short_fingerprint;
use crate::domain::text::{Rationale, Title};
use crate::domain::{signoff, ChangeState, Effect, Schema, Side};
use crate::error::{AppError, AppResult, ErrorCode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    pub fingerprint: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub rationale: Option<String>,
}

fn operation<'s>(schema: &'s Schema, c: &Change) -> AppResult<&'s crate::domain::Operation> {
    schema.operation(&c.operation).ok_or_else(|| {
        AppError::new(
            ErrorCode::OperationRemoved,
            format!(
                "operation `{}` is no longer in the schema; {} cannot run",
                c.operation,
                number(c.id)
            ),
        )
    })
}

/// Start executing an approved change.
#[tracing::instrument(name = "execution::execute", skip_all, fields(change = id, user = user.id))]
pub fn execute(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: &ExecuteRequest,
) -> AppResult<ExecutionView> {
    let started = write_tx(conn, |conn| -> AppResult<Result<i64, AppError>> {
        let c = locked(conn, id)?;
        match require(conn, schema, user, &c, ChangeAction::Execute) {
            // A signer left their team: go back for sign-off below (committed), naming them.
            Err(e) if e.code() == ErrorCode::SignoffsNoLongerCount => {}
            // The window has its own message with the times.
            Err(e) if e.code() == ErrorCode::OutsideWindow => {}
            other => other?,
        }
        let current = c.fingerprint.clone().unwrap_or_default();
        if req.fingerprint.trim() != current {
            return Err(AppError::new(
                ErrorCode::FingerprintMismatch,
                format!(
                    "{} was signed for {}, not for {}: execute exactly what was signed",
                    number(id),
                    short_fingerprint(&current),
                    short_fingerprint(req.fingerprint.trim())
                ),
            )
            .with_details(json!({"current_fingerprint": current})));
        }
        let op = operation(schema, &c)?;
        // Sign-offs stay earned until execution: each counted signer must still be in the
        // side's team. If one left, the change goes back for sign-off (committed) and the
        // execution is refused, naming who no longer counts.
        let rows = change_repo::signoffs(conn, id)?;
        let recs = records(conn, &c, &rows)?;
        if !signoff::is_approved(&recs, policy_for(op, &c), &current) {
            // Pair each record with its own row (records skip rows of an unknown side, so a
            // zip could drift).
            let mut left: Vec<String> = Vec::new();
            for r in recs
                .iter()
                .filter(|r| !r.stale && r.fingerprint == current && !r.earned)
            {
                let Some((s, email, _)) = rows.iter().find(|(s, _, _)| {
                    s.user_id == r.user_id
                        && s.side == r.side
                        && s.fingerprint == r.fingerprint
                        && !s.stale
                }) else {
                    continue;
                };
                let team = match r.side {
                    Side::Requester => &c.requesting_team,
                    Side::Implementer => &c.implementing_team,
                };
                let joined = r.side == Side::Requester
                    && users::is_member(conn, r.user_id, &c.implementing_team)?;
                left.push(format!(
                    "{email} ({} side) is no longer a member of `{team}`{}",
                    s.side,
                    if joined {
                        " or is now in the implementing team"
                    } else {
                        ""
                    }
                ));
            }
            let reason = if left.is_empty() {
                "the current fingerprint does not have every sign-off it needs".to_string()
            } else {
                format!("sign-offs no longer count: {}", left.join("; "))
            };
            change_repo::set_state(conn, id, ChangeState::AwaitingSignoff)?;
            record(
                conn,
                &user.actor(),
                Some(id),
                Event::StateChanged {
                    from: ChangeState::Approved,
                    to: ChangeState::AwaitingSignoff,
                    reason: reason.clone(),
                },
            )?;
            return Ok(Err(AppError::new(
                ErrorCode::SignoffsNoLongerCount,
                format!(
                    "{reason}; {} is back to awaiting_signoff and needs new sign-offs",
                    number(id)
                ),
            )
            .with_details(json!({"no_longer_counting": left}))));
        }
        let t = now();
        if let Some(nb) = c.not_before {
            if t < nb {
                return Err(AppError::new(
                    ErrorCode::OutsideWindow,
                    format!(
                        "{} may not run before {} UTC",
                        number(id),
                        nb.format("%Y-%m-%d %H:%M")
                    ),
                )
                .with_details(json!({"not_before": nb, "now": t})));
            }
        }
        if let Some(na) = c.not_after {
            if t > na {
                return Err(AppError::new(
                    ErrorCode::OutsideWindow,
                    format!(
                        "{}'s window closed at {} UTC; edit the window and sign again",
                        number(id),
                        na.format("%Y-%m-%d %H:%M")
                    ),
                )
                .with_details(json!({"not_after": na, "now": t})));
            }
        }
        // Resolve again against today's inventory: it must still be the signed list.
        let outcome: ResolveOutcome = reresolve_locked(
            conn,
            schema,
            &c,
            &user.actor(),
            "re-resolved before execution",
        )?;
        if outcome.fingerprint_changed {
            let msg = format!(
                "the inventory changed since {} was signed ({} target(s) added, {} removed); it is back to {} and needs new sign-offs",
                number(id),
                outcome.added,
                outcome.removed,
                outcome.state
            );
            // Commit the stale sign-offs and the state change, refuse the execution.
            return Ok(Err(AppError::new(ErrorCode::StaleFingerprint, msg)
                .with_details(serde_json::to_value(&outcome).expect("outcome"))));
        }
        if outcome.state != ChangeState::Approved {
            // The resolution or the teams no longer hold (e.g. the schema no longer lets the
            // requesting team request this operation): back to draft, committed.
            let why = change_repo::get(conn, id)?
                .and_then(|f| {
                    serde_json::from_str::<Vec<crate::domain::resolution::ResolutionError>>(
                        &f.errors,
                    )
                    .ok()
                })
                .and_then(|e| e.first().map(|e| e.message.clone()))
                .unwrap_or_else(|| "the change can no longer be signed as it is".into());
            return Ok(Err(AppError::new(
                ErrorCode::NotApproved,
                format!("{} is back to {}: {why}", number(id), outcome.state),
            )));
        }
        let effect = effect_for(op, &c).ok_or_else(|| {
            AppError::new(
                ErrorCode::NotReversible,
                format!("{} has no inverse", op.label),
            )
        })?;
        let waves = plan_waves(c.target_count as u64, &op.waves);
        let e = repo::create(conn, id, &current, effect, &waves, c.target_count, user.id)?;
        change_repo::set_state(conn, id, ChangeState::Executing)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::ExecutionStarted {
                execution_id: e.id,
                fingerprint: current.clone(),
                effect,
                targets: c.target_count as u64,
                waves: waves.iter().map(|w| w.len()).collect(),
            },
        )?;
        Ok(Ok(e.id))
    })?;
    started?;
    progress(conn, id)
}

/// Continue a halted execution (implementing team).
#[tracing::instrument(name = "execution::resume", skip_all, fields(change = id, user = user.id))]
pub fn resume(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Resume)?;
        let e = repo::for_change(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                format!("{} has no execution", number(id)),
            )
        })?;
        repo::set_state(conn, e.id, ExecState::Running, None)?;
        change_repo::set_state(conn, id, ChangeState::Executing)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::ExecutionResumed {
                execution_id: e.id,
                halt_reason: e.halt_reason.clone(),
                next_wave: e.current_wave as u32,
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}

/// Stop an executing or halted change for good; pending targets are skipped.
#[tracing::instrument(name = "execution::abort", skip_all, fields(change = id, user = user.id))]
pub fn abort(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    reason: Option<&str>,
) -> AppResult<ExecutionView> {
    write_tx(conn, |conn| -> AppResult<()> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Abort)?;
        let e = repo::for_change(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                format!("{} has no execution", number(id)),
            )
        })?;
        let why = format!(
            "aborted by {}{}",
            user.email,
            reason
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        let skipped = repo::skip_pending(conn, e.id, &why)?;
        repo::add_counts(conn, e.id, 0, 0, skipped as i64)?;
        repo::set_state(conn, e.id, ExecState::Aborted, Some(&why))?;
        change_repo::set_state(conn, id, ChangeState::Aborted)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::ExecutionAborted {
                execution_id: e.id,
                skipped: skipped as u64,
                reason: why,
            },
        )?;
        Ok(())
    })?;
    progress(conn, id)
}

#[derive(Debug, Serialize)]
pub struct WaveView {
    pub number: u32,
    pub size: u64,
    pub done: u64,
    pub failed: u64,
    pub skipped: u64,
    pub pending: u64,
}

#[derive(Debug, Serialize)]
pub struct ItemView {
    pub position: i64,
    pub wave: i64,
    pub kind: String,
    pub id: String,
    pub status: ItemStatus,
    pub attempts: i64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ExecutionView {
    pub change: String,
    pub change_id: i64,
    pub change_state: ChangeState,
    pub execution_id: i64,
    pub state: ExecState,
    pub effect: Effect,
    pub fingerprint: String,
    pub total: i64,
    pub done: i64,
    pub failed: i64,
    pub skipped: i64,
    pub pending: i64,
    pub current_wave: i64,
    pub waves: Vec<WaveView>,
    pub halt_reason: Option<String>,
    /// The first failed items, with their errors.
    pub failures: Vec<ItemView>,
    pub skipped_items: Vec<ItemView>,
    pub started_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    pub finished_at: Option<chrono::NaiveDateTime>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<chrono::NaiveDateTime>,
    pub rolled_back_by: Option<String>,
}

fn item_view(i: crate::db::models::ExecutionItem) -> ItemView {
    ItemView {
        position: i.position,
        wave: i.wave,
        kind: i.kind,
        id: i.entity_id,
        status: i.status,
        attempts: i.attempts,
        error: i.error,
    }
}

/// Progress of a change's execution.
pub fn progress(conn: &mut DbConn, id: i64) -> AppResult<ExecutionView> {
    crate::db::snapshot(conn, |conn| {
        let c =
            change_repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let e = repo::for_change(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                format!("{} has not been executed", number(id)),
            )
        })?;
        let waves: Vec<Wave> = serde_json::from_str(&e.waves).unwrap_or_default();
        let counts = repo::wave_counts(conn, e.id)?;
        let of = |w: u32, status: ItemStatus| {
            counts
                .iter()
                .filter(|(cw, s, _)| *cw == i64::from(w) && *s == status)
                .map(|(_, _, n)| *n as u64)
                .sum::<u64>()
        };
        let wave_views: Vec<WaveView> = waves
            .iter()
            .map(|w| WaveView {
                number: w.number,
                size: w.len(),
                done: of(w.number, ItemStatus::Done),
                failed: of(w.number, ItemStatus::Failed),
                skipped: of(w.number, ItemStatus::Skipped),
                pending: of(w.number, ItemStatus::Pending),
            })
            .collect();
        let pending = wave_views.iter().map(|w| w.pending as i64).sum();
        Ok(ExecutionView {
            change: number(id),
            change_id: id,
            change_state: c.state,
            execution_id: e.id,
            state: e.state,
            effect: e.effect,
            fingerprint: e.fingerprint.clone(),
            total: e.total,
            done: e.done,
            failed: e.failed,
            skipped: e.skipped,
            pending,
            current_wave: e.current_wave.min(waves.len() as i64),
            waves: wave_views,
            halt_reason: e.halt_reason.clone(),
            failures: repo::items_with_status(conn, e.id, ItemStatus::Failed, 100)?
                .into_iter()
                .map(item_view)
                .collect(),
            skipped_items: repo::items_with_status(conn, e.id, ItemStatus::Skipped, 100)?
                .into_iter()
                .map(item_view)
                .collect(),
            started_at: e.started_at,
            updated_at: e.updated_at,
            finished_at: e.finished_at,
            lease_owner: e.lease_owner.clone(),
            lease_expires_at: e.lease_expires_at,
            rolled_back_by: c.rolled_back_by.map(number),
        })
    })
}

/// Every item of a change's execution (for exports and tests).
/// A page of a change's execution items (by position), optionally of one status; with the
/// number of items that match.
pub fn items(
    conn: &mut DbConn,
    id: i64,
    status: Option<&str>,
    offset: i64,
    limit: i64,
) -> AppResult<(i64, Vec<ItemView>)> {
    let status = status
        .map(|s| {
            ItemStatus::parse(s).ok_or_else(|| {
                AppError::new(
                    ErrorCode::InvalidStatus,
                    format!("status must be pending, done, failed or skipped, not `{s}`"),
                )
            })
        })
        .transpose()?;
    let e = repo::for_change(conn, id)?.ok_or_else(|| {
        AppError::new(
            ErrorCode::NotFound,
            format!("{} has not been executed", number(id)),
        )
    })?;
    let (total, rows) = repo::items(conn, e.id, status, offset, limit)?;
    Ok((total, rows.into_iter().map(item_view).collect()))
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
        let inv = inverse(op.effect).ok_or_else(|| {
            AppError::new(
                ErrorCode::NotReversible,
                format!(
                    "{} ({}) has no inverse and cannot be rolled back",
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
                inv.plain_words(),
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
    r: &crate::domain::resolution::Resolution,
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
    record(
        conn,
        &user.actor(),
        Some(c.id),
        super::changes::submitted(&c),
    )?;
    Ok(c)
}
