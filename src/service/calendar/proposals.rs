//! Two people for every calendar act: an admin proposes creating, editing or lifting a
//! freeze, or declaring or lifting a lockdown; it takes effect only when a *different*
//! admin confirms it. The confirming transaction takes the calendar's lock, reads the
//! proposal row under its row lock, checks the confirmer (an admin now, not the proposer)
//! and that the proposal is still pending and still applies, and applies it — all or
//! nothing. Every step is an audit event.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::json;

use super::{email_of, require_admin, runner};
use crate::db::calendar::{self as repo, FreezeFields, NewProposal, ProposalRow};
use crate::db::{users, write_tx, DbConn, WriteTx};
use crate::domain::calendar::{
    self as cal, ConfirmRefusal, FreezeSpec, ProposalAction, ProposalState, MAX_REASON,
};
use crate::domain::event::Event;
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::CurrentUser;

/// What an admin proposes.
#[derive(Debug, Clone)]
pub enum ProposalRequest {
    CreateFreeze(FreezeSpec),
    EditFreeze(i64, FreezeSpec),
    LiftFreeze { freeze: i64, reason: String },
    DeclareLockdown { reason: String },
    LiftLockdown { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct ProposalView {
    pub id: i64,
    pub action: ProposalAction,
    /// In words: "create the hard freeze “Year end” (2026-12-20 00:00 to 2027-01-04 00:00 UTC)".
    pub summary: String,
    pub freeze: Option<i64>,
    pub lockdown: Option<i64>,
    pub spec: Option<FreezeSpec>,
    pub reason: String,
    pub state: ProposalState,
    pub proposed_by: String,
    pub proposed_at: NaiveDateTime,
    pub decided_by: Option<String>,
    pub decided_at: Option<NaiveDateTime>,
    pub decision_reason: Option<String>,
}

fn spec_of(p: &ProposalRow) -> Option<FreezeSpec> {
    serde_json::from_str(&p.spec).ok()
}

fn summary(action: ProposalAction, freeze: Option<i64>, spec: Option<&FreezeSpec>) -> String {
    let what = |s: &FreezeSpec| {
        let f = cal::Freeze {
            id: 0,
            name: s.name.clone(),
            severity: s.severity,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            recurrence: s
                .recurrence
                .as_deref()
                .and_then(|r| cal::Recurrence::parse(r).ok()),
            operations: s.operations.clone(),
            reason: String::new(),
        };
        let ops = if s.operations.is_empty() {
            "every operation".to_string()
        } else {
            s.operations.join(", ")
        };
        format!(
            "the {} freeze “{}” ({}; {ops})",
            s.severity.as_str(),
            s.name,
            f.when()
        )
    };
    let n = freeze.map(|f| format!("freeze {f}")).unwrap_or_default();
    match (action, spec) {
        (ProposalAction::CreateFreeze, Some(s)) => format!("create {}", what(s)),
        (ProposalAction::EditFreeze, Some(s)) => format!("change {n} to {}", what(s)),
        (ProposalAction::LiftFreeze, _) => format!("lift {n}"),
        (ProposalAction::DeclareLockdown, _) => "declare a lockdown".into(),
        (ProposalAction::LiftLockdown, _) => "lift the lockdown".into(),
        (a, None) => a.words().into(),
    }
}

pub(super) fn view(conn: &mut DbConn, p: &ProposalRow) -> AppResult<ProposalView> {
    let spec = spec_of(p);
    Ok(ProposalView {
        id: p.id,
        action: p.action,
        summary: summary(p.action, p.freeze_id, spec.as_ref()),
        freeze: p.freeze_id,
        lockdown: p.lockdown_id,
        spec,
        reason: p.reason.clone(),
        state: p.state,
        proposed_by: email_of(conn, p.proposed_by)?,
        proposed_at: p.proposed_at,
        decided_by: p.decided_by.map(|d| email_of(conn, d)).transpose()?,
        decided_at: p.decided_at,
        decision_reason: p.decision_reason.clone(),
    })
}

/// A freeze spec, checked against the schema: `invalid_freeze` / `invalid_recurrence`.
fn checked(schema: &Schema, mut spec: FreezeSpec) -> AppResult<FreezeSpec> {
    match spec.check(|o| schema.operation(o).is_some()) {
        Ok(_) => Ok(spec),
        Err(p) => Err(AppError::new(
            if p.recurrence {
                ErrorCode::InvalidRecurrence
            } else {
                ErrorCode::InvalidFreeze
            },
            p.message,
        )
        .with_details(json!({"field": p.field}))),
    }
}

/// A reason: at most 1000 characters; `required` ones not empty.
fn reason(r: &str, required: bool) -> AppResult<String> {
    let r = r.trim();
    if required && r.is_empty() {
        return Err(AppError::new(
            ErrorCode::ReasonRequired,
            "say why: a lockdown and its lift need a reason",
        ));
    }
    if r.chars().count() > MAX_REASON {
        return Err(AppError::new(
            ErrorCode::InvalidReason,
            format!("the reason is longer than {MAX_REASON} characters"),
        ));
    }
    Ok(r.to_string())
}

/// The freeze a proposal acts on: it exists and is not lifted.
fn live_freeze(conn: &mut DbConn, id: i64) -> AppResult<repo::FreezeRow> {
    let f = repo::freeze(conn, id)?.ok_or_else(|| AppError::not_found("freeze", id))?;
    if let Some(at) = f.lifted_at {
        return Err(AppError::new(
            ErrorCode::FreezeLifted,
            format!(
                "freeze {id} (“{}”) was lifted at {} UTC",
                f.name,
                at.format("%Y-%m-%d %H:%M")
            ),
        ));
    }
    Ok(f)
}

fn no_lockdown(conn: &mut DbConn) -> AppResult<()> {
    if let Some(l) = repo::active_lockdown(conn)? {
        return Err(AppError::new(
            ErrorCode::LockdownState,
            format!(
                "a lockdown is in force already (since {} UTC: {})",
                l.declared_at.format("%Y-%m-%d %H:%M"),
                l.reason
            ),
        ));
    }
    Ok(())
}

fn the_lockdown(conn: &mut DbConn) -> AppResult<repo::LockdownRow> {
    repo::active_lockdown(conn)?
        .ok_or_else(|| AppError::new(ErrorCode::LockdownState, "no lockdown is in force"))
}

/// Propose a calendar act (admins). Nothing changes until another admin confirms it.
#[tracing::instrument(name = "calendar::propose", skip_all, fields(user = user.id))]
pub fn propose(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    req: ProposalRequest,
) -> AppResult<ProposalView> {
    require_admin(user, "propose a freeze or a lockdown")?;
    let row = write_tx(conn, |conn| -> AppResult<ProposalRow> {
        let (action, freeze, lockdown, spec, why) = match req {
            ProposalRequest::CreateFreeze(s) => {
                let s = checked(schema, s)?;
                let why = s.reason.clone();
                (ProposalAction::CreateFreeze, None, None, Some(s), why)
            }
            ProposalRequest::EditFreeze(id, s) => {
                live_freeze(conn, id)?;
                let s = checked(schema, s)?;
                let why = s.reason.clone();
                (ProposalAction::EditFreeze, Some(id), None, Some(s), why)
            }
            ProposalRequest::LiftFreeze { freeze, reason: r } => {
                live_freeze(conn, freeze)?;
                let r = reason(&r, false)?;
                (ProposalAction::LiftFreeze, Some(freeze), None, None, r)
            }
            ProposalRequest::DeclareLockdown { reason: r } => {
                let r = reason(&r, true)?;
                no_lockdown(conn)?;
                (ProposalAction::DeclareLockdown, None, None, None, r)
            }
            ProposalRequest::LiftLockdown { reason: r } => {
                let r = reason(&r, true)?;
                let l = the_lockdown(conn)?;
                (ProposalAction::LiftLockdown, None, Some(l.id), None, r)
            }
        };
        let spec_text = spec
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("spec"))
            .unwrap_or_else(|| "{}".into());
        let p = repo::insert_proposal(
            conn,
            &NewProposal {
                action,
                freeze_id: freeze,
                lockdown_id: lockdown,
                spec: spec_text,
                reason: &why,
                proposed_by: user.id,
            },
        )?;
        record(
            conn,
            &user.actor(),
            None,
            Event::CalendarProposed {
                proposal: p.id,
                calendar_action: action,
                summary: summary(action, freeze, spec.as_ref()),
                reason: why,
            },
        )?;
        Ok(p)
    })?;
    view(conn, &row)
}

/// On PostgreSQL, serialise calendar confirmations (a transaction-scoped advisory lock):
/// two lockdowns confirmed at once cannot both find none in force. SQLite's
/// `BEGIN IMMEDIATE` serialises every writer already. Taken first, before any row lock.
fn calendar_lock(conn: &mut DbConn) -> AppResult<()> {
    use diesel::RunQueryDsl;
    if let DbConn::Pg(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(1313)").execute(c)?;
    }
    Ok(())
}

/// Confirm another admin's proposal: it takes effect now.
#[tracing::instrument(name = "calendar::confirm", skip_all, fields(user = user.id, proposal = id))]
pub fn confirm(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
) -> AppResult<ProposalView> {
    require_admin(user, "confirm a calendar proposal")?;
    let row = write_tx(conn, |conn| -> AppResult<ProposalRow> {
        calendar_lock(conn)?;
        let p =
            repo::lock_proposal(conn, id)?.ok_or_else(|| AppError::not_found("proposal", id))?;
        // Admin now (not as the request found it), not the proposer, still pending.
        let admin_now = |conn: &mut DbConn, id: i64| -> AppResult<bool> {
            Ok(users::find_user(conn, id)?.is_some_and(|u| u.is_admin))
        };
        let confirmer = (user.id, admin_now(conn, user.id)?);
        let proposer = (p.proposed_by, admin_now(conn, p.proposed_by)?);
        cal::may_confirm(confirmer, proposer, p.state).map_err(|r| refused(&p, r))?;
        let proposer = email_of(conn, p.proposed_by)?;
        let (freeze, lockdown) = apply(conn, schema, user, &p, &proposer)?;
        if !repo::decide_proposal(conn, p.id, ProposalState::Confirmed, user.id, None)? {
            return Err(refused(&p, ConfirmRefusal::NotPending(p.state)));
        }
        record(
            conn,
            &user.actor(),
            None,
            Event::CalendarConfirmed {
                proposal: p.id,
                calendar_action: p.action,
                proposed_by: proposer,
                summary: summary(p.action, p.freeze_id, spec_of(&p).as_ref()),
                freeze,
                lockdown,
            },
        )?;
        Ok(repo::proposal(conn, p.id)?.expect("proposal exists"))
    })?;
    view(conn, &row)
}

fn refused(p: &ProposalRow, r: ConfirmRefusal) -> AppError {
    match r {
        ConfirmRefusal::NotAdmin => AppError::new(
            ErrorCode::Forbidden,
            "only an admin can confirm a calendar proposal",
        ),
        ConfirmRefusal::ProposerNotAdmin => AppError::new(
            ErrorCode::Forbidden,
            "the admin who proposed this is no longer an admin: it needs a new proposal",
        ),
        ConfirmRefusal::OwnProposal => AppError::new(
            ErrorCode::OwnProposal,
            format!(
                "you proposed this ({}): a different admin confirms it",
                p.action.words()
            ),
        ),
        ConfirmRefusal::NotPending(s) => AppError::new(
            ErrorCode::ProposalNotPending,
            format!("proposal {} is {} already", p.id, s.as_str()),
        )
        .with_details(json!({"state": s})),
    }
}

fn fields(s: &FreezeSpec) -> FreezeFields<'_> {
    FreezeFields {
        name: &s.name,
        severity: s.severity,
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        recurrence: s.recurrence.as_deref(),
        operations: serde_json::to_string(&s.operations).expect("operations"),
        reason: &s.reason,
    }
}

/// Apply a confirmed proposal, checking that it still applies. Returns the freeze and
/// lockdown it created or acted on.
fn apply(
    conn: &mut WriteTx<'_>,
    schema: &Schema,
    user: &CurrentUser,
    p: &ProposalRow,
    proposer: &str,
) -> AppResult<(Option<i64>, Option<i64>)> {
    let spec = || -> AppResult<FreezeSpec> {
        let s = spec_of(p).ok_or_else(|| {
            AppError::Unexpected(anyhow::anyhow!("proposal {} has no readable spec", p.id))
        })?;
        // The schema may have changed since it was proposed.
        checked(schema, s)
    };
    Ok(match p.action {
        ProposalAction::CreateFreeze => {
            let s = spec()?;
            let id = repo::insert_freeze(conn, &fields(&s), p.proposed_by, user.id)?;
            (Some(id), None)
        }
        ProposalAction::EditFreeze => {
            let fid = p.freeze_id.unwrap_or_default();
            live_freeze(conn, fid)?;
            let s = spec()?;
            repo::update_freeze(conn, fid, &fields(&s), user.id)?;
            (Some(fid), None)
        }
        ProposalAction::LiftFreeze => {
            let fid = p.freeze_id.unwrap_or_default();
            live_freeze(conn, fid)?;
            repo::lift_freeze(conn, fid)?;
            (Some(fid), None)
        }
        ProposalAction::DeclareLockdown => {
            no_lockdown(conn)?;
            let l = repo::insert_lockdown(conn, &p.reason, p.proposed_by, user.id)?;
            runner::declared(conn, user, &l, proposer)?;
            (None, Some(l.id))
        }
        ProposalAction::LiftLockdown => {
            let l = the_lockdown(conn)?;
            if Some(l.id) != p.lockdown_id {
                return Err(AppError::new(
                    ErrorCode::LockdownState,
                    "the lockdown this lift was proposed for is no longer in force",
                ));
            }
            // Takes the lockdown's row lock first (the runner's pauses serialise on it).
            repo::lift_lockdown(conn, l.id, &p.reason, p.proposed_by, user.id)?;
            runner::lifted(conn, user, &l, &p.reason, proposer)?;
            (None, Some(l.id))
        }
    })
}

/// Withdraw one's own proposal, or decline another admin's.
#[tracing::instrument(name = "calendar::decline", skip_all, fields(user = user.id, proposal = id))]
pub fn decline(
    conn: &mut DbConn,
    user: &CurrentUser,
    id: i64,
    why: Option<&str>,
) -> AppResult<ProposalView> {
    require_admin(user, "decline a calendar proposal")?;
    let why = reason(why.unwrap_or_default(), false)?;
    let row = write_tx(conn, |conn| -> AppResult<ProposalRow> {
        let p =
            repo::lock_proposal(conn, id)?.ok_or_else(|| AppError::not_found("proposal", id))?;
        let withdrawn = p.proposed_by == user.id;
        let state = if withdrawn {
            ProposalState::Withdrawn
        } else {
            ProposalState::Declined
        };
        let why = (!why.is_empty()).then_some(why);
        if !repo::decide_proposal(conn, p.id, state, user.id, why.as_deref())? {
            return Err(refused(&p, ConfirmRefusal::NotPending(p.state)));
        }
        record(
            conn,
            &user.actor(),
            None,
            Event::CalendarDeclined {
                proposal: p.id,
                calendar_action: p.action,
                withdrawn,
                reason: why,
            },
        )?;
        Ok(repo::proposal(conn, p.id)?.expect("proposal exists"))
    })?;
    view(conn, &row)
}
