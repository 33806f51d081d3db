//! One change as a page or the API shows it: everything about it, with the sign-offs as
//! the policy counts them and (for a viewer) the actions they may take now.

use serde_json::Value;

use super::permissions::{allowed_actions, records};
use super::shared::{text_hash_of, tier_of};
use crate::db::models::{Change, Signoff};
use crate::db::{changes as repo, users, DbConn};
use crate::domain::event::Event;
use crate::domain::resolution::short_fingerprint;
use crate::domain::signoff::{self, Side, SignoffRecord};
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult};
use crate::service::views::{
    number, selector_shape, ChangeView, ConflictView, OperationView, PersonView, SideStatus,
    SignoffView,
};
use crate::service::CurrentUser;

fn side_status(team: &str, required: u32, current: usize) -> SideStatus {
    SideStatus {
        team: team.to_string(),
        required,
        current: current as u32,
        missing: required.saturating_sub(current as u32),
    }
}

/// Everything about one change, as `viewer` sees it: with the actions they may take now,
/// decided by the same function the services enforce.
pub fn view_for(
    conn: &mut DbConn,
    schema: &Schema,
    viewer: &CurrentUser,
    id: i64,
) -> AppResult<ChangeView> {
    crate::db::snapshot(conn, |conn| {
        let mut v = view(conn, schema, id)?;
        v.allowed_actions = allowed_actions(conn, schema, viewer, id)?;
        Ok(v)
    })
}

/// Each sign-off of `c` (`rows`, counted by the policy as `recs`), saying whether it
/// counts for the current fingerprint `fp`, when it expires and, if it does not count, why.
fn signoff_views(
    schema: &Schema,
    c: &Change,
    rows: &[(Signoff, String, String)],
    recs: &[SignoffRecord],
    fp: &str,
    given: &std::collections::HashMap<i64, crate::domain::difference::DifferenceCounts>,
    deactivated: &std::collections::HashSet<i64>,
) -> Vec<SignoffView> {
    let op = schema.operation(&c.operation);
    let lifetime = op.and_then(|o| o.signoffs_expire_after);
    let reviewing = op.and_then(|o| tier_of(o, c).reviewer_team());
    rows.iter()
        .map(|(s, email, name)| {
            let rec = recs.iter().find(|r| r.id == s.id);
            let stale = s.stale || s.fingerprint != fp;
            let earned = rec.map_or(true, |r| r.earned);
            let expired = rec.is_some_and(|r| r.expired);
            let expires_at = rec.and_then(|r| r.expires_at);
            let team = match s.side {
                Side::Requester => c.requesting_team.as_str(),
                Side::Implementer => c.implementing_team.as_str(),
                Side::Reviewer => reviewing.unwrap_or_default(),
            };
            SignoffView {
                side: s.side,
                by: PersonView {
                    email: email.clone(),
                    name: name.clone(),
                },
                fingerprint: s.fingerprint.clone(),
                stale,
                counts: rec.is_some_and(|r| r.counts_for(fp)),
                why_not: if stale {
                    Some("stale: the targets or the text changed since".into())
                } else if let (true, Some(at), Some(l)) = (expired, expires_at, lifetime) {
                    Some(format!(
                        "expired at {} UTC, {l} after it was given",
                        at.format("%Y-%m-%d %H:%M")
                    ))
                } else if !earned && s.side == Side::Reviewer && reviewing.is_none() {
                    Some(
                        "not needed: the change's policy as resolved now names no third side"
                            .into(),
                    )
                } else if !earned && deactivated.contains(&s.user_id) {
                    Some(format!("no longer counts: {name} is deactivated"))
                } else if !earned {
                    Some(format!(
                        "no longer counts: {name} is not (only) in `{team}` any more"
                    ))
                } else {
                    None
                },
                comment: s.comment.clone(),
                at: s.created_at,
                expires_at,
                expired,
                difference: given.get(&s.id).cloned(),
            }
        })
        .collect()
}

/// The open changes that share targets with change `id`.
fn conflict_views(conn: &mut DbConn, id: i64) -> AppResult<Vec<ConflictView>> {
    Ok(repo::conflicts(conn, id)?
        .into_iter()
        .map(|(o, n)| ConflictView {
            id: o.id,
            number: number(o.id),
            title: o.title,
            state: o.state,
            shared_targets: n,
        })
        .collect())
}

/// Why `c` is in its state, when the last state change said so.
fn state_reason(conn: &mut DbConn, c: &Change) -> AppResult<Option<String>> {
    Ok(
        match crate::db::audit::last_state_change(conn, c.id)?.and_then(|e| e.event()) {
            Some(Event::StateChanged { to, reason, .. }) if to == c.state => Some(reason),
            _ => None,
        },
    )
}

/// Everything about one change (`allowed_actions` empty: see [`view_for`]).
pub fn view(conn: &mut DbConn, schema: &Schema, id: i64) -> AppResult<ChangeView> {
    crate::db::snapshot(conn, |conn| {
        let c = repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let author = users::find_user(conn, c.author_id)?
            .map(|u| PersonView {
                email: u.email,
                name: u.name,
            })
            .unwrap_or(PersonView {
                email: String::new(),
                name: String::new(),
            });
        let op = schema.operation(&c.operation);
        let rows = repo::signoffs(conn, id)?;
        let recs = records(conn, schema, &c, &rows)?;
        let fp = c.fingerprint.clone().unwrap_or_default();
        let tiered = op.map(|o| tier_of(o, &c));
        let policy = tiered.map(|t| t.signoffs).unwrap_or_default();
        let tier = tiered.and_then(|t| t.describe());
        let irreversible = tiered.and_then(|t| t.irreversible_note());
        let req_now = signoff::current_signers(&recs, Side::Requester, &fp).len();
        let imp_now = signoff::current_signers(&recs, Side::Implementer, &fp).len();
        let rev_now = signoff::current_signers(&recs, Side::Reviewer, &fp).len();
        let reviewer_side = tiered
            .and_then(|t| t.reviewer())
            .map(|r| side_status(&r.team, r.signoffs, rev_now));
        let conflicts = conflict_views(conn, id)?;
        let stored: Value = serde_json::from_str(&c.selector).unwrap_or(Value::Null);
        Ok(ChangeView {
            id: c.id,
            number: number(c.id),
            title: c.title.clone(),
            rationale: c.rationale.clone(),
            state: c.state,
            requesting_team: c.requesting_team.clone(),
            implementing_team: c.implementing_team.clone(),
            author,
            operation: OperationView::of(schema, &c),
            text_hash: text_hash_of(&c),
            allowed_actions: vec![],
            params: serde_json::from_str(&c.params).unwrap_or(Value::Null),
            selector: selector_shape(&stored),
            targets: stored,
            expect: c
                .expect
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            schema_current: c.schema_hash == schema.hash,
            schema_hash: c.schema_hash.clone(),
            fingerprint_short: c.fingerprint.as_deref().map(short_fingerprint),
            fingerprint: c.fingerprint.clone(),
            summary: serde_json::from_str(&c.summary).unwrap_or_default(),
            errors: serde_json::from_str(&c.errors).unwrap_or_default(),
            error_count: c.error_count,
            signoffs: signoff_views(
                schema,
                &c,
                &rows,
                &recs,
                &fp,
                &crate::db::differences::signoff_differences(conn, id)?
                    .into_iter()
                    .collect(),
                &crate::db::users::deactivated_signers(conn, id)?,
            ),
            difference: super::difference::summary(conn, &c)?,
            signoffs_expire_after: op
                .and_then(|o| o.signoffs_expire_after)
                .map(|l| l.to_string()),
            policy,
            tier,
            irreversible,
            requester_side: side_status(&c.requesting_team, policy.requester, req_now),
            implementer_side: side_status(&c.implementing_team, policy.implementer, imp_now),
            reviewer_side,
            confirm_count_required: op
                .is_some_and(|o| o.needs_confirm_count(c.target_count as u64)),
            conflicts,
            scheduled_start: if c.state == ChangeState::Approved {
                crate::service::views::schedule_view(conn, id)?
            } else {
                None
            },
            reject_reason: c.reject_reason.clone(),
            state_reason: state_reason(conn, &c)?,
            approval_expired: c.state == ChangeState::Approved
                && recs.iter().any(|r| r.expired_on(&fp))
                && !signoff::is_approved(&recs, policy, &fp),
            created_at: c.created_at,
            updated_at: c.updated_at,
            resolved_at: c.resolved_at,
            submitted_at: c.submitted_at,
            approved_at: c.approved_at,
            not_before: c.not_before,
            not_after: c.not_after,
            rollback_of: c.rollback_of.map(number),
            rolled_back_by: c.rolled_back_by.map(number),
            budget: crate::service::budget::for_change(conn, schema, &c)?,
        })
    })
}
