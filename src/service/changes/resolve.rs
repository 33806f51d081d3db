//! Resolution: a stored change resolved against today's inventory (its selector, a
//! rollback's original targets, a restore's point), the consequences of a new fingerprint
//! (stale sign-offs, a state taken back), re-resolution on request or after a schema
//! change, and submission.

use serde_json::{json, Value};

use super::permissions::require;
use super::shared::{change_operation, effect_for, locked, move_state, submitted};
use crate::db::audit::Actor;
use crate::db::models::Change;
use crate::db::{changes as repo, differences, resolve, write_tx, DbConn, WriteTx};
use crate::domain::access::ChangeAction;
use crate::domain::change;
use crate::domain::difference::Difference;
use crate::domain::event::{Event, Stale, Staleness};
use crate::domain::execution::{RestorePoint, RestoreSpec};
use crate::domain::resolution::{Expectation, Resolution, ResolutionError, Summary};
use crate::domain::schema::Operation;
use crate::domain::selector::Selector;
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::views::number;
use crate::service::CurrentUser;

/// Why a resolved change could not be submitted, if it cannot.
pub(super) fn submit_problem(
    op: &Operation,
    c: &Change,
    summary: &Summary,
    errors: &[ResolutionError],
) -> Option<AppError> {
    if let Err(refusal) = op.may_be_requested_by(&c.requesting_team) {
        return Some(refusal.into());
    }
    if c.error_count > 0 {
        let msg = format!(
            "the targets have {} error(s); fix them before submitting: {}",
            c.error_count,
            errors
                .iter()
                .take(3)
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        );
        // A failed population guard's numbers come with it (`summary.guards` has them all).
        let refused: Vec<_> = summary.guards.iter().filter(|g| !g.passed).collect();
        let details = json!({
            "error_count": c.error_count,
            "errors": errors.iter().take(50).collect::<Vec<_>>(),
            "guards": refused,
        });
        return Some(AppError::new(ErrorCode::ResolutionErrors, msg).with_details(details));
    }
    if c.target_count == 0 {
        return Some(AppError::new(
            ErrorCode::NoTargets,
            "the change resolves to no targets",
        ));
    }
    if let Some(exp) = c
        .expect
        .as_deref()
        .and_then(|e| serde_json::from_str::<Expectation>(e).ok())
    {
        let mut wrong = Vec::new();
        if let Some(t) = exp.targets {
            if t != summary.targets {
                wrong.push(format!(
                    "expected {t} targets, resolved {}",
                    summary.targets
                ));
            }
        }
        if let Some(r) = exp.roots {
            if r != summary.roots {
                wrong.push(format!(
                    "expected {r} {} (roots), resolved {}",
                    summary.root_kind, summary.roots
                ));
            }
        }
        if !wrong.is_empty() {
            return Some(
                AppError::new(ErrorCode::ExpectationMismatch, format!("the resolution does not match the expectation: {}", wrong.join("; ")))
                    .with_details(json!({"expected": {"targets": exp.targets, "roots": exp.roots}, "actual": {"targets": summary.targets, "roots": summary.roots}})),
            );
        }
    }
    None
}

/// What a (re-)resolution did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResolveOutcome {
    pub fingerprint: Option<String>,
    pub fingerprint_changed: bool,
    pub previous_fingerprint: Option<String>,
    pub added: u64,
    pub removed: u64,
    pub added_sample: Vec<String>,
    pub removed_sample: Vec<String>,
    /// The roots the new list touches that the one it replaces did not, and the other way
    /// round (IDs).
    pub roots_added: Vec<String>,
    pub roots_removed: Vec<String>,
    pub stale_signoffs: usize,
    pub state: ChangeState,
}

fn store(
    conn: &mut DbConn,
    schema: &Schema,
    c: &Change,
    r: &Resolution,
    implementing_team: &str,
) -> AppResult<()> {
    repo::store_resolution(
        conn,
        c.id,
        &repo::ResolutionFields {
            schema_hash: &schema.hash,
            fingerprint: Some(&r.fingerprint),
            summary: serde_json::to_string(&r.summary).expect("summary"),
            errors: serde_json::to_string(&r.errors).expect("errors"),
            target_count: r.targets.len() as i64,
            root_count: r.summary.roots as i64,
            selects_everything: crate::domain::resolution::guards::selects_everything(
                &r.summary.guards,
            ),
            error_count: r.error_count as i64,
        },
    )?;
    if implementing_team != c.implementing_team {
        use crate::db::schema::changes;
        use diesel::prelude::*;
        diesel::update(changes::table.find(c.id))
            .set(changes::implementing_team.eq(implementing_team))
            .execute(conn)?;
    }
    Ok(())
}

/// Resolve a stored change against today's inventory: its selector, or for a rollback
/// the targets the original execution changed.
pub(crate) fn resolve_change(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    c: &Change,
) -> AppResult<Resolution> {
    if let Some(orig) = c.rollback_of {
        let inverse = effect_for(op, c).ok_or_else(|| {
            AppError::new(
                ErrorCode::NotReversible,
                format!("{} cannot be rolled back", op.label),
            )
        })?;
        let exec = crate::db::exec::for_change(conn, orig)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotExecuted,
                format!("{} was never executed", number(orig)),
            )
        })?;
        return Ok(resolve::resolve_rollback(
            conn, schema, op, orig, exec.id, inverse,
        )?);
    }
    if let Some(spec) = RestoreSpec::of_selector(&c.selector) {
        let point = point(conn, &spec)?;
        return Ok(resolve::resolve_restore(conn, schema, op, &spec, &point)?);
    }
    let selector: Selector = serde_json::from_str(&c.selector)
        .map_err(|e| anyhow::anyhow!("stored selector of {} is unreadable: {e}", number(c.id)))?;
    let params: Value = serde_json::from_str(&c.params)
        .map_err(|e| anyhow::anyhow!("stored params of {} are unreadable: {e}", number(c.id)))?;
    Ok(resolve::resolve(conn, schema, op, &params, &selector)?)
}

/// The point a stored restore goes back to.
pub(crate) fn point(conn: &mut DbConn, spec: &RestoreSpec) -> AppResult<RestorePoint> {
    crate::db::exec::restore_point(conn, spec)?.ok_or_else(|| {
        AppError::new(
            ErrorCode::NotExecuted,
            format!(
                "{} never ran, so there is no state before it",
                spec.before_change.map(number).unwrap_or_default()
            ),
        )
    })
}

/// Store the new target list of `c` and say in `out` what was added and removed.
fn store_targets(
    conn: &mut WriteTx<'_>,
    c: &Change,
    r: &Resolution,
    out: &mut ResolveOutcome,
) -> AppResult<()> {
    let old = differences::stored_targets(conn, c.id)?;
    let step = Difference::between(&old, &r.targets);
    out.added = step.added.len() as u64;
    out.removed = step.removed.len() as u64;
    out.added_sample = step.added.keys().take(20).cloned().collect();
    out.removed_sample = step.removed.keys().take(20).cloned().collect();
    let mut per_root: std::collections::BTreeMap<String, u64> = Default::default();
    for t in &r.targets {
        *per_root
            .entry(crate::domain::budget::root_of(&t.id, &t.scope_path).to_string())
            .or_default() += 1;
    }
    (out.roots_added, out.roots_removed) = step.roots(&per_root);
    store_difference(conn, c, &r.fingerprint, step)?;
    repo::replace_targets(conn, c.id, &r.targets)?;
    Ok(())
}

/// Keep the difference signers re-sign from: against the last list that had sign-offs.
/// When the list it replaces was signed, that list is the base; when it was itself a
/// changed list nobody signed yet, the stored difference is composed with this step; with
/// no sign-offs anywhere there is nothing to re-sign, so nothing is kept.
fn store_difference(
    conn: &mut WriteTx<'_>,
    c: &Change,
    fingerprint: &str,
    step: Difference,
) -> AppResult<()> {
    let Some(previous) = c.fingerprint.as_deref() else {
        return Ok(());
    };
    let base = if differences::signed_for(conn, c.id, previous)? {
        Some((previous.to_string(), step))
    } else {
        match differences::get(conn, c.id)? {
            Some((base, to, d)) if to == previous => Some((base, d.then(step))),
            _ => None,
        }
    };
    match base {
        Some((base, d)) if !d.is_empty() && base != fingerprint => {
            differences::put(conn, c.id, &base, fingerprint, &d)?
        }
        _ => differences::clear(conn, c.id)?,
    }
    Ok(())
}

/// The event of `out.stale_signoffs` sign-offs of `c` going stale because its targets
/// changed.
fn targets_stale(c: &Change, r: &Resolution, reason: &str, out: &ResolveOutcome) -> Event {
    Event::SignoffsStale(Stale {
        count: out.stale_signoffs as u64,
        previous_fingerprint: c.fingerprint.clone(),
        fingerprint: Some(r.fingerprint.clone()),
        reason: reason.to_string(),
        why: Staleness::Targets {
            added: out.added,
            removed: out.removed,
            added_sample: out.added_sample.clone(),
            removed_sample: out.removed_sample.clone(),
            roots_added: out.roots_added.iter().take(20).cloned().collect(),
            roots_removed: out.roots_removed.iter().take(20).cloned().collect(),
        },
    })
}

/// Resolve a locked change again and apply the consequences (stale sign-offs, state).
/// Must run inside the write transaction that holds the change's lock.
pub(crate) fn reresolve_locked(
    conn: &mut WriteTx<'_>,
    schema: &Schema,
    c: &Change,
    actor: &Actor,
    reason: &str,
) -> AppResult<ResolveOutcome> {
    let op = change_operation(schema, c)?;
    let r = resolve_change(conn, schema, op, c)?;
    let changed = c.fingerprint.as_deref() != Some(r.fingerprint.as_str());
    let mut out = ResolveOutcome {
        fingerprint: Some(r.fingerprint.clone()),
        fingerprint_changed: changed,
        previous_fingerprint: c.fingerprint.clone(),
        added: 0,
        removed: 0,
        added_sample: vec![],
        removed_sample: vec![],
        roots_added: vec![],
        roots_removed: vec![],
        stale_signoffs: 0,
        state: c.state,
    };
    if changed {
        store_targets(conn, c, &r, &mut out)?;
    }
    store(conn, schema, c, &r, &op.implemented_by)?;
    let fresh = repo::get(conn, c.id)?.expect("locked change exists");
    let state = c.state;
    let problem = submit_problem(op, &fresh, &r.summary, &r.errors);
    let submittable = problem.is_none();
    let next = match state {
        ChangeState::AwaitingSignoff | ChangeState::Approved if !submittable => ChangeState::Draft,
        s => change::after_resolution(s, changed, false),
    };
    if changed {
        out.stale_signoffs = repo::mark_stale(conn, c.id, Some(&r.fingerprint))?;
        if out.stale_signoffs > 0 {
            record(conn, actor, Some(c.id), targets_stale(c, &r, reason, &out))?;
        }
    }
    record(
        conn,
        actor,
        Some(c.id),
        Event::Resolved {
            reason: reason.to_string(),
            fingerprint: r.fingerprint.clone(),
            changed,
            targets: r.targets.len() as u64,
            roots: r.summary.roots,
            errors: r.error_count as u64,
            schema: schema.hash.clone(),
        },
    )?;
    if next != state {
        let reason = match &problem {
            Some(p) => format!("it cannot be signed as it is: {p}"),
            None => "the fingerprint changed; earlier sign-offs are stale".to_string(),
        };
        move_state(conn, actor, c.id, (state, next), reason)?;
    }
    out.state = next;
    Ok(out)
}

/// Re-resolve against today's inventory (anyone involved in the change).
pub fn reresolve(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
) -> AppResult<ResolveOutcome> {
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Resolve)?;
        reresolve_locked(conn, schema, &c, &user.actor(), "re-resolved on request")
    })
}

/// Re-resolve every open change resolved under another schema version (at start-up).
pub fn reresolve_for_schema(conn: &mut DbConn, schema: &Schema) -> AppResult<usize> {
    let ids = repo::open_with_other_schema(conn, &schema.hash)?;
    for id in &ids {
        write_tx(conn, |conn| -> AppResult<()> {
            let c = locked(conn, *id)?;
            if c.schema_hash != schema.hash && c.state.is_open() {
                match reresolve_locked(conn, schema, &c, &Actor::system(), "the schema changed") {
                    Ok(_) => {}
                    Err(e) if e.is_client() => {
                        // The operation left the schema: the change can no longer be signed.
                        repo::mark_stale(conn, c.id, None)?;
                        let draft = (c.state, ChangeState::Draft);
                        move_state(conn, &Actor::system(), c.id, draft, e.to_string())?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
    }
    Ok(ids.len())
}

/// Submit a draft: resolve it fresh; refuse with every reason when it cannot be signed.
#[tracing::instrument(name = "changes::submit", skip_all, fields(change = id, user = user.id))]
pub fn submit(conn: &mut DbConn, schema: &Schema, user: &CurrentUser, id: i64) -> AppResult<()> {
    let refused = write_tx(conn, |conn| -> AppResult<Option<AppError>> {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Submit)?;
        reresolve_locked(conn, schema, &c, &user.actor(), "submitted")?;
        let fresh = repo::get(conn, id)?.expect("exists");
        let summary: Summary = serde_json::from_str(&fresh.summary).unwrap_or_default();
        let errors: Vec<ResolutionError> = serde_json::from_str(&fresh.errors).unwrap_or_default();
        let op = change_operation(schema, &fresh)?;
        if let Some(problem) = submit_problem(op, &fresh, &summary, &errors) {
            // Keep the fresh resolution (committed), but refuse the submission.
            return Ok(Some(problem));
        }
        repo::set_state(conn, id, ChangeState::AwaitingSignoff)?;
        record(conn, &user.actor(), Some(id), submitted(&fresh))?;
        Ok(None)
    })?;
    match refused {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
