//! Who may do what to a change, read from the database and decided by
//! [`access::decide`]: the sign-offs as the policy counts them, the facts about a person
//! and a change, and the one check every use case makes.

use std::collections::HashMap;

use super::shared::{effect_for, policy_for, tier_of};
use crate::db::models::{Change, Signoff};
use crate::db::{changes as repo, now, users, DbConn};
use crate::domain::access::{self, ChangeAction, Facts};
use crate::domain::signoff::{self, Side, SignoffRecord};
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult};
use crate::service::views::number;
use crate::service::CurrentUser;

/// The policy's view of a change's sign-offs: each marked `earned` only while its signer
/// is still in the side's team (on the requester side, not in the implementing team; on
/// the third side, in the team the policy names now and in neither of the change's),
/// and `expired` once its operation's `signoffs_expire_after` has passed since it was
/// given (a rollback's sign-offs expire as its operation's do). The one place records are
/// made, so approval, the execute gate, views and the queue count alike.
pub(crate) fn records(
    conn: &mut DbConn,
    schema: &Schema,
    c: &Change,
    rows: &[(Signoff, String, String)],
) -> AppResult<Vec<SignoffRecord>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // The rows are the change's sign-offs as stored (this transaction's included): the
    // signers' teams by the change, in a statement prepared once per connection.
    let teams = if rows.iter().all(|(s, _, _)| s.change_id == c.id) {
        users::counting_teams_of_signers(conn, c.id)?
    } else {
        let ids: Vec<i64> = rows.iter().map(|(s, _, _)| s.user_id).collect();
        users::counting_teams_of_users(conn, &ids)?
    };
    Ok(records_with(schema, c, rows, &teams))
}

/// [`records`] with the signers' teams already read (one query for many changes).
pub(in crate::service) fn records_with(
    schema: &Schema,
    c: &Change,
    rows: &[(Signoff, String, String)],
    teams: &HashMap<i64, Vec<String>>,
) -> Vec<SignoffRecord> {
    let mut out = Vec::with_capacity(rows.len());
    let none = Vec::new();
    let op = schema.operation(&c.operation);
    let lifetime = op.and_then(|o| o.signoffs_expire_after);
    // The third side of the policy as resolved now: a review given under another tier
    // (or by someone who left the team) does not count.
    let reviewing = op.and_then(|o| tier_of(o, c).reviewer_team());
    let t = now();
    for (s, _, _) in rows {
        let side = s.side;
        let mine = teams.get(&s.user_id).unwrap_or(&none);
        let has = |t: &str| mine.iter().any(|m| m == t);
        let earned = match side {
            Side::Requester => has(&c.requesting_team) && !has(&c.implementing_team),
            Side::Implementer => has(&c.implementing_team),
            Side::Reviewer => {
                reviewing.is_some_and(has) && !has(&c.requesting_team) && !has(&c.implementing_team)
            }
        };
        let expiry = signoff::expiry(s.created_at, lifetime, t);
        out.push(SignoffRecord {
            id: s.id,
            side,
            user_id: s.user_id,
            fingerprint: s.fingerprint.clone(),
            stale: s.stale,
            earned,
            signed_at: s.created_at,
            expires_at: expiry.map(|e| e.0),
            expired: expiry.is_some_and(|e| e.1),
        });
    }
    out
}

/// Everything [`access::decide`] needs about `user` and `c`, read in the caller's
/// transaction or snapshot.
pub(crate) fn facts<'c>(
    conn: &mut DbConn,
    schema: &'c Schema,
    user: &CurrentUser,
    c: &'c Change,
    recs: &[SignoffRecord],
) -> AppResult<Facts<'c>> {
    // Memberships as of this transaction, not as the request found them: someone taken out
    // of a team a moment ago does not act for it.
    let teams_now = users::user_teams(conn, user.id)?;
    facts_with(conn, schema, user, &teams_now, c, recs)
}

/// [`facts`] with the person's current teams already read (a list of many changes).
pub(in crate::service) fn facts_with<'c>(
    conn: &mut DbConn,
    schema: &'c Schema,
    user: &CurrentUser,
    teams_now: &[String],
    c: &'c Change,
    recs: &[SignoffRecord],
) -> AppResult<Facts<'c>> {
    let fp = c.fingerprint.as_deref().unwrap_or_default();
    let op = schema.operation(&c.operation);
    let mine = |side: Side, current: bool| {
        recs.iter()
            .any(|r| r.user_id == user.id && r.side == side && (!current || r.counts_for(fp)))
    };
    // One read of the execution for every fact about it.
    let run = if c.state.has_executed()
        || matches!(c.state, ChangeState::Executing | ChangeState::Halted)
    {
        crate::db::exec::for_change(conn, c.id)?
    } else {
        None
    };
    let executed_targets = match &run {
        Some(e) if c.state.has_executed() => e.done.max(0) as u64,
        _ => 0,
    };
    let failed_targets = run.as_ref().map(|e| e.failed.max(0) as u64).unwrap_or(0);
    let drifted_targets = match &run {
        Some(e) if c.state == ChangeState::Halted => {
            crate::db::exec::drifted_count(conn, e.id)? as u64
        }
        _ => 0,
    };
    let execution = run
        .as_ref()
        .filter(|_| matches!(c.state, ChangeState::Executing | ChangeState::Halted))
        .map(|e| e.state);
    let scheduled =
        c.state == ChangeState::Approved && crate::db::exec::scheduled_start(conn, c.id)?.is_some();
    let has_open_rollback = match c.rolled_back_by {
        Some(rb) => repo::get(conn, rb)?
            .is_some_and(|r| !matches!(r.state, ChangeState::Cancelled | ChangeState::Rejected)),
        None => false,
    };
    let in_team = |t: &str| teams_now.iter().any(|m| m == t);
    let reviewing_team = op.and_then(|o| tier_of(o, c).reviewer_team());
    let now = now();
    // The change calendar, only where it can refuse something (execute, and a retry of an
    // ended execution, which starts it again; resume, continue and a retry while halted).
    let blocked_by = match c.state {
        ChangeState::Approved | ChangeState::PartiallyFailed | ChangeState::Failed => {
            crate::service::calendar::blocking(conn, schema, c, now)?.map(|b| b.kind())
        }
        ChangeState::Executing | ChangeState::Halted => crate::db::calendar::active_lockdown(conn)?
            .map(|_| crate::domain::calendar::BlockKind::Lockdown),
        _ => None,
    };
    Ok(Facts {
        blocked_by,
        state: Some(c.state),
        requesting_team: &c.requesting_team,
        implementing_team: &c.implementing_team,
        is_admin: user.is_admin,
        is_author: user.id == c.author_id,
        in_requesting_team: in_team(&c.requesting_team),
        in_implementing_team: in_team(&c.implementing_team),
        reviewing_team,
        in_reviewing_team: reviewing_team.is_some_and(in_team),
        in_window: !matches!(c.not_before, Some(nb) if now < nb)
            && !matches!(c.not_after, Some(na) if now > na),
        approval_holds: op.is_some_and(|o| signoff::is_approved(recs, policy_for(o, c), fp)),
        signed_requester: mine(Side::Requester, true),
        signed_implementer: mine(Side::Implementer, true),
        signed_reviewer: mine(Side::Reviewer, true),
        ever_signed_requester: mine(Side::Requester, false),
        ever_signed_implementer: mine(Side::Implementer, false),
        ever_signed_reviewer: mine(Side::Reviewer, false),
        is_rollback: c.rollback_of.is_some(),
        operation_known: op.is_some(),
        reversible: op.is_some_and(|o| effect_for(o, c).is_some() && o.is_reversible()),
        executed_targets,
        failed_targets,
        drifted_targets,
        scheduled,
        execution,
        has_open_rollback,
    })
}

/// Refuse unless `user` may take `action` on `c` now (the one decision pages and the API
/// also render).
pub(crate) fn require(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    c: &Change,
    action: ChangeAction,
) -> AppResult<()> {
    let rows = repo::signoffs(conn, c.id)?;
    let recs = records(conn, schema, c, &rows)?;
    access::decide(&facts(conn, schema, user, c, &recs)?, action)?;
    Ok(())
}

/// The actions `user` may take on change `id` now.
pub fn allowed_actions(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
) -> AppResult<Vec<ChangeAction>> {
    crate::db::snapshot(conn, |conn| {
        let c = repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let rows = repo::signoffs(conn, c.id)?;
        let recs = records(conn, schema, &c, &rows)?;
        Ok(access::allowed(&facts(conn, schema, user, &c, &recs)?)
            .into_iter()
            .collect())
    })
}
