//! Change use cases. Every mutation runs in one write transaction that first takes the
//! change's row lock ([`db::changes::lock`]), so edits, re-resolutions and sign-offs of
//! one change are serialised on both backends and the rules below cannot be raced:
//!
//! * a sign-off is recorded only for the change's current fingerprint;
//! * a fingerprint change marks every earlier sign-off stale and un-approves;
//! * the change becomes `approved` in the transaction that records the last sign-off
//!   needed, counting distinct people, nobody on both sides, the author never as
//!   implementer.

use crate::domain::lines::clip;
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{json, Value};

use super::events::record;
use super::views::*;
use super::CurrentUser;
use crate::db::audit::Actor;
use crate::db::models::{Change, NewChange};
use crate::db::{changes as repo, now, resolve, users, write_tx, DbConn, WriteTx};
use crate::domain::access::{self, ChangeAction, Facts};
use crate::domain::change;
use crate::domain::event::{Created, Event, SelectorShape, Stale, Staleness, WithinShape};
use crate::domain::execution::AttrChange;
use crate::domain::execution::RestoreSpec;
use crate::domain::resolution::{
    short_fingerprint, Expectation, Resolution, ResolutionError, Summary,
};
use crate::domain::schema::{Effect, Operation, SignoffPolicy};
use crate::domain::selector::Selector;
use crate::domain::signoff::{self, Attempt, Side, SignoffRecord};
use crate::domain::text::{Rationale, Title};
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult, ErrorCode};

const MAX_COMMENT: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChange {
    pub title: String,
    #[serde(default)]
    pub rationale: String,
    pub requesting_team: String,
    pub operation: String,
    #[serde(default)]
    pub params: Value,
    pub targets: Selector,
    #[serde(default)]
    pub expect: Option<Expectation>,
    /// Execution window: not before / not after this time (RFC 3339).
    #[serde(default)]
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Submit in the same transaction (see [`create`]).
    #[serde(default)]
    pub submit: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditChange {
    pub title: Option<String>,
    pub rationale: Option<String>,
    pub params: Option<Value>,
    pub targets: Option<Selector>,
    /// `null` removes the expectation.
    #[serde(default, deserialize_with = "double_option")]
    pub expect: Option<Option<Expectation>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Expectation>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[derive(Debug, Deserialize)]
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

fn operation<'s>(schema: &'s Schema, name: &str) -> AppResult<&'s Operation> {
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
fn change_operation<'s>(schema: &'s Schema, c: &Change) -> AppResult<&'s Operation> {
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

/// Why a resolved change could not be submitted, if it cannot.
fn submit_problem(
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
        return Some(AppError::new(ErrorCode::ResolutionErrors, msg).with_details(json!({"error_count": c.error_count, "errors": errors.iter().take(50).collect::<Vec<_>>()})));
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
pub(crate) fn point(
    conn: &mut DbConn,
    spec: &RestoreSpec,
) -> AppResult<crate::domain::execution::RestorePoint> {
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

/// The effect executing `c` has: the operation's, or its inverse for a rollback.
pub fn effect_for(op: &Operation, c: &Change) -> Option<Effect> {
    match c.rollback_of {
        Some(_) => crate::domain::execution::inverse(op.effect),
        None => Some(op.effect),
    }
}

/// The sign-offs `c` needs: a rollback may have a lighter policy.
pub fn policy_for(op: &Operation, c: &Change) -> SignoffPolicy {
    tier_of(op, c).signoffs
}

/// The policy a change needs as resolved now, with the risk tier that set it: computed from
/// the stored counts every time, so a re-resolution that moves the change to another tier
/// makes its sign-offs count against the new one.
pub fn tier_of<'o>(op: &'o Operation, c: &Change) -> crate::domain::schema::Policy<'o> {
    op.policy(
        c.target_count.max(0) as u64,
        c.root_count.max(0) as u64,
        c.rollback_of.is_some(),
    )
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
        stale_signoffs: 0,
        state: c.state,
    };
    if changed {
        let old: BTreeSet<String> = repo::target_ids(conn, c.id)?.into_iter().collect();
        let new: BTreeSet<&str> = r.targets.iter().map(|t| t.id.as_str()).collect();
        let added: Vec<&str> = new
            .iter()
            .filter(|id| !old.contains(**id))
            .copied()
            .collect();
        let removed: Vec<&String> = old.iter().filter(|id| !new.contains(id.as_str())).collect();
        out.added = added.len() as u64;
        out.removed = removed.len() as u64;
        out.added_sample = added.iter().take(20).map(|s| s.to_string()).collect();
        out.removed_sample = removed.iter().take(20).map(|s| s.to_string()).collect();
        repo::replace_targets(conn, c.id, &r.targets)?;
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
            record(
                conn,
                actor,
                Some(c.id),
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
                    },
                }),
            )?;
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
        repo::set_state(conn, c.id, next)?;
        let reason = match &problem {
            Some(p) => format!("it cannot be signed as it is: {p}"),
            None => "the fingerprint changed; earlier sign-offs are stale".to_string(),
        };
        record(
            conn,
            actor,
            Some(c.id),
            Event::StateChanged {
                from: state,
                to: next,
                reason,
            },
        )?;
    }
    out.state = next;
    Ok(out)
}

/// Create a change as a draft, resolved against today's inventory.
/// What a new change says besides its resolution.
pub(crate) struct ChangeHead {
    pub title: Title,
    pub rationale: Rationale,
    pub requesting_team: String,
    pub implementing_team: String,
    pub operation: String,
    pub params: String,
    pub selector: String,
    pub expect: Option<String>,
    pub not_before: Option<chrono::NaiveDateTime>,
    pub not_after: Option<chrono::NaiveDateTime>,
    pub rollback_of: Option<i64>,
}

/// The draft row of a change described by `head` and resolved as `r`.
pub(crate) fn draft_row(
    schema: &Schema,
    author_id: i64,
    head: ChangeHead,
    r: &crate::domain::resolution::Resolution,
) -> NewChange {
    let t = now();
    NewChange {
        title: head.title.into_string(),
        rationale: head.rationale.into_string(),
        requesting_team: head.requesting_team,
        implementing_team: head.implementing_team,
        operation: head.operation,
        params: head.params,
        selector: head.selector,
        expect: head.expect,
        state: ChangeState::Draft,
        author_id,
        schema_hash: schema.hash.clone(),
        fingerprint: Some(r.fingerprint.clone()),
        summary: serde_json::to_string(&r.summary).expect("summary"),
        errors: serde_json::to_string(&r.errors).expect("errors"),
        target_count: r.targets.len() as i64,
        root_count: r.summary.roots as i64,
        error_count: r.error_count as i64,
        lock_version: 0,
        created_at: t,
        updated_at: t,
        resolved_at: t,
        not_before: head.not_before,
        not_after: head.not_after,
        rollback_of: head.rollback_of,
    }
}

/// The requesting team exists and `user` is in it; the operation's implementing team exists.
pub(crate) fn check_teams(
    conn: &mut DbConn,
    user: &CurrentUser,
    requesting_team: &str,
    op: &Operation,
) -> AppResult<()> {
    if users::find_team(conn, requesting_team)?.is_none() {
        return Err(AppError::new(
            ErrorCode::UnknownTeam,
            format!("team `{requesting_team}` does not exist"),
        ));
    }
    op.may_be_requested_by(requesting_team)?;
    if !user.in_team(requesting_team) {
        return Err(AppError::new(ErrorCode::NotInTeam, format!("you are not a member of `{requesting_team}`; a change is requested on behalf of one of your teams ({})", user.teams.join(", "))));
    }
    if users::find_team(conn, &op.implemented_by)?.is_none() {
        return Err(AppError::new(ErrorCode::UnknownTeam, format!("{} is implemented by team `{}`, which does not exist yet (countersign team add {})", op.label, op.implemented_by, op.implemented_by)));
    }
    Ok(())
}

/// Create a change (a draft), resolved in its transaction. With `submit` (the new-change
/// form, the API's `"submit": true`) it is submitted in the same transaction from the same
/// resolution, so nothing can change between the two and the list is resolved once; when
/// it cannot be submitted nothing is stored and the reason is the error (no draft is left
/// behind).
#[tracing::instrument(name = "changes::create", skip_all, fields(user = user.id))]
pub fn create(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    req: CreateChange,
) -> AppResult<i64> {
    let submit = req.submit;
    let title = check_title(&req.title)?;
    let rationale = check_rationale(&req.rationale)?;
    let op = operation(schema, &req.operation)?;
    let params = check_params(op, &req.params)?;
    check_selector(op, &req.targets)?;
    check_teams(conn, user, &req.requesting_team, op)?;
    if let (Some(a), Some(b)) = (req.not_before, req.not_after) {
        if b <= a {
            return Err(AppError::new(
                ErrorCode::InvalidWindow,
                format!("the window ends ({b}) before it starts ({a})"),
            ));
        }
    }
    let selector_json = serde_json::to_string(&req.targets).expect("selector");
    let expect_json = req
        .expect
        .as_ref()
        .map(|e| serde_json::to_string(e).expect("expect"));
    let t_tx = std::time::Instant::now();
    let out = write_tx(conn, |conn| {
        let r = resolve::resolve(conn, schema, op, &params, &req.targets)?;
        let c = repo::insert(
            conn,
            &draft_row(
                schema,
                user.id,
                ChangeHead {
                    title: title.clone(),
                    rationale: rationale.clone(),
                    requesting_team: req.requesting_team.clone(),
                    implementing_team: op.implemented_by.clone(),
                    operation: op.name.clone(),
                    params: params.to_string(),
                    selector: selector_json.clone(),
                    expect: expect_json.clone(),
                    not_before: req.not_before.map(|t| t.naive_utc()),
                    not_after: req.not_after.map(|t| t.naive_utc()),
                    rollback_of: None,
                },
                &r,
            ),
        )?;
        let t0 = std::time::Instant::now();
        repo::replace_targets(conn, c.id, &r.targets)?;
        tracing::debug!(
            ms = t0.elapsed().as_secs_f64() * 1000.0,
            targets = r.targets.len(),
            "stored targets"
        );
        record(
            conn,
            &user.actor(),
            Some(c.id),
            Event::Created(Created::Requested {
                title: title.as_str().to_string(),
                operation: op.name.clone(),
                requesting_team: req.requesting_team.clone(),
                implementing_team: op.implemented_by.clone(),
                params: params.clone(),
                selector: SelectorShape {
                    ids: req.targets.ids.len() as u64,
                    within: req.targets.within.as_ref().map(|w| WithinShape {
                        kind: w.kind.clone(),
                        ids: w.ids.len() as u64,
                    }),
                    filter: json!(req.targets.filter),
                },
                fingerprint: r.fingerprint.clone(),
                target_count: r.targets.len() as u64,
                roots: r.summary.roots,
                errors: r.error_count as u64,
                schema: schema.hash.clone(),
            }),
        )?;
        if submit {
            let fresh = repo::get(conn, c.id)?.expect("just inserted");
            if let Some(problem) = submit_problem(op, &fresh, &r.summary, &r.errors) {
                return Err(problem);
            }
            repo::set_state(conn, c.id, ChangeState::AwaitingSignoff)?;
            record(conn, &user.actor(), Some(c.id), submitted(&fresh))?;
        }
        tracing::debug!(
            ms = t_tx.elapsed().as_secs_f64() * 1000.0,
            "create: before commit"
        );
        Ok(c.id)
    });
    tracing::debug!(
        ms = t_tx.elapsed().as_secs_f64() * 1000.0,
        "create: committed"
    );
    out
}

/// Author edits a draft, awaiting or approved change; it is resolved again.
#[tracing::instrument(name = "changes::edit", skip_all, fields(change = id, user = user.id))]
pub fn edit(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    patch: EditChange,
) -> AppResult<ResolveOutcome> {
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Edit)?;
        let op = change_operation(schema, &c)?;
        if c.rollback_of.is_some() && (patch.targets.is_some() || patch.params.is_some()) {
            return Err(AppError::new(ErrorCode::RollbackFixed,
                "a rollback's targets and parameters are fixed: they are what the original execution changed",
            ));
        }
        if RestoreSpec::of_selector(&c.selector).is_some()
            && (patch.targets.is_some() || patch.params.is_some())
        {
            return Err(AppError::new(ErrorCode::RestoreFixed,
                "a bulk restore's targets are fixed by what it restores: cancel it and request a new one",
            ));
        }
        let mut fields = Vec::new();
        let title = match &patch.title {
            Some(t) => {
                fields.push("title");
                check_title(t)?.into_string()
            }
            None => c.title.clone(),
        };
        let rationale = match &patch.rationale {
            Some(r) => {
                fields.push("rationale");
                check_rationale(r)?.into_string()
            }
            None => c.rationale.clone(),
        };
        let params = match &patch.params {
            Some(p) => {
                fields.push("params");
                check_params(op, p)?.to_string()
            }
            None => c.params.clone(),
        };
        let selector = match &patch.targets {
            Some(s) => {
                fields.push("targets");
                check_selector(op, s)?;
                serde_json::to_string(s).expect("selector")
            }
            None => c.selector.clone(),
        };
        let expect = match &patch.expect {
            Some(e) => {
                fields.push("expect");
                e.as_ref()
                    .map(|e| serde_json::to_string(e).expect("expect"))
            }
            None => c.expect.clone(),
        };
        repo::update_text(
            conn,
            id,
            &title,
            &rationale,
            &params,
            &selector,
            expect.as_deref(),
        )?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::Edited {
                fields: fields.iter().map(|f| f.to_string()).collect(),
            },
        )?;
        // Resolve first: a target change marks its own sign-offs stale (and says what was
        // added and removed). Then a sign-off covers the text its signer read: new words make
        // the sign-offs that are still current stale too.
        let text_changed = title != c.title || rationale != c.rationale;
        let edited = repo::get(conn, id)?.expect("exists");
        let mut out = reresolve_locked(conn, schema, &edited, &user.actor(), "edited")?;
        let text_stale = if text_changed {
            repo::mark_stale(conn, id, None)?
        } else {
            0
        };
        if text_stale > 0 {
            record(
                conn,
                &user.actor(),
                Some(id),
                Event::SignoffsStale(Stale {
                    count: text_stale as u64,
                    previous_fingerprint: out.fingerprint.clone(),
                    fingerprint: out.fingerprint.clone(),
                    reason: "the title or rationale was edited after it was signed".into(),
                    why: Staleness::Text {
                        text_changed: true,
                        fields: fields.iter().map(|f| f.to_string()).collect(),
                    },
                }),
            )?;
            out.stale_signoffs += text_stale;
            if out.state == ChangeState::Approved {
                repo::set_state(conn, id, ChangeState::AwaitingSignoff)?;
                record(
                    conn,
                    &user.actor(),
                    Some(id),
                    Event::StateChanged {
                        from: ChangeState::Approved,
                        to: ChangeState::AwaitingSignoff,
                        reason: "the title or rationale changed after it was signed; earlier sign-offs are stale".into(),
                    },
                )?;
                out.state = ChangeState::AwaitingSignoff;
            }
        }
        Ok(out)
    })
}

pub(crate) fn involved(user: &CurrentUser, c: &Change) -> bool {
    user.is_admin
        || user.id == c.author_id
        || user.in_team(&c.requesting_team)
        || user.in_team(&c.implementing_team)
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
                        repo::set_state(conn, c.id, ChangeState::Draft)?;
                        record(
                            conn,
                            &Actor::system(),
                            Some(c.id),
                            Event::StateChanged {
                                from: c.state,
                                to: ChangeState::Draft,
                                reason: e.to_string(),
                            },
                        )?;
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

/// The policy's view of a change's sign-offs: each marked `earned` only while its signer
/// is still in the side's team (and, on the requester side, not in the implementing team).
pub(crate) fn records(
    conn: &mut DbConn,
    c: &Change,
    rows: &[(crate::db::models::Signoff, String, String)],
) -> AppResult<Vec<SignoffRecord>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|(s, _, _)| s.user_id).collect();
    let teams = users::teams_of_users(conn, &ids)?;
    Ok(records_with(c, rows, &teams))
}

/// [`records`] with the signers' teams already read (one query for many changes).
pub(super) fn records_with(
    c: &Change,
    rows: &[(crate::db::models::Signoff, String, String)],
    teams: &std::collections::HashMap<i64, Vec<String>>,
) -> Vec<SignoffRecord> {
    let mut out = Vec::with_capacity(rows.len());
    let none = Vec::new();
    for (s, _, _) in rows {
        let side = s.side;
        let mine = teams.get(&s.user_id).unwrap_or(&none);
        let has = |t: &str| mine.iter().any(|m| m == t);
        let earned = match side {
            Side::Requester => has(&c.requesting_team) && !has(&c.implementing_team),
            Side::Implementer => has(&c.implementing_team),
        };
        out.push(SignoffRecord {
            side,
            user_id: s.user_id,
            fingerprint: s.fingerprint.clone(),
            stale: s.stale,
            earned,
        });
    }
    out
}

/// The hash of the title and rationale a signer reads.
pub fn text_hash_of(c: &Change) -> String {
    signoff::text_hash(&c.title, &c.rationale)
}

/// Everything [`access::decide`] needs about `user` and `c`, read in the caller's
/// transaction or snapshot.
pub(crate) fn facts<'c>(
    conn: &mut DbConn,
    schema: &Schema,
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
pub(super) fn facts_with<'c>(
    conn: &mut DbConn,
    schema: &Schema,
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
    let executed_targets = if c.state.has_executed() {
        crate::db::exec::for_change(conn, c.id)?
            .map(|e| e.done.max(0) as u64)
            .unwrap_or(0)
    } else {
        0
    };
    let has_open_rollback = match c.rolled_back_by {
        Some(rb) => repo::get(conn, rb)?
            .is_some_and(|r| !matches!(r.state, ChangeState::Cancelled | ChangeState::Rejected)),
        None => false,
    };
    let in_team = |t: &str| teams_now.iter().any(|m| m == t);
    let now = now();
    Ok(Facts {
        state: Some(c.state),
        requesting_team: &c.requesting_team,
        implementing_team: &c.implementing_team,
        is_admin: user.is_admin,
        is_author: user.id == c.author_id,
        in_requesting_team: in_team(&c.requesting_team),
        in_implementing_team: in_team(&c.implementing_team),
        in_window: !matches!(c.not_before, Some(nb) if now < nb)
            && !matches!(c.not_after, Some(na) if now > na),
        approval_holds: op.is_some_and(|o| signoff::is_approved(recs, policy_for(o, c), fp)),
        signed_requester: mine(Side::Requester, true),
        signed_implementer: mine(Side::Implementer, true),
        ever_signed_requester: mine(Side::Requester, false),
        ever_signed_implementer: mine(Side::Implementer, false),
        is_rollback: c.rollback_of.is_some(),
        operation_known: op.is_some(),
        reversible: op.is_some_and(|o| {
            effect_for(o, c)
                .and_then(crate::domain::execution::inverse)
                .is_some()
        }),
        executed_targets,
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
    let recs = records(conn, c, &rows)?;
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
        let recs = records(conn, &c, &rows)?;
        Ok(access::allowed(&facts(conn, schema, user, &c, &recs)?)
            .into_iter()
            .collect())
    })
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
    if req.comment.chars().count() > MAX_COMMENT {
        return Err(AppError::new(
            ErrorCode::InvalidComment,
            format!("the comment is longer than {MAX_COMMENT} characters"),
        ));
    }
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        let rows = repo::signoffs(conn, id)?;
        let existing = records(conn, &c, &rows)?;
        let action = match req.side {
            Side::Requester => ChangeAction::SignRequester,
            Side::Implementer => ChangeAction::SignImplementer,
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
        repo::insert_signoff(
            conn,
            id,
            req.side.as_str(),
            user.id,
            &current,
            req.comment.trim(),
        )?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::Signed {
                side: req.side,
                fingerprint: current.clone(),
                comment: req.comment.trim().to_string(),
                confirm_count: req.confirm_count,
            },
        )?;
        let rows = repo::signoffs(conn, id)?;
        let all = records(conn, &c, &rows)?;
        let approved = signoff::is_approved(&all, policy_for(op, &c), &current);
        if approved {
            repo::set_state(conn, id, ChangeState::Approved)?;
            let names = |side: Side| -> Vec<String> {
                rows.iter()
                    .filter(|(s, _, _)| s.side == side && !s.stale && s.fingerprint == current)
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
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::new(
            ErrorCode::ReasonRequired,
            "say why the change is rejected",
        ));
    }
    if reason.chars().count() > MAX_COMMENT {
        return Err(AppError::new(
            ErrorCode::InvalidReason,
            format!("the reason is longer than {MAX_COMMENT} characters"),
        ));
    }
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
    let body = body.trim();
    if body.is_empty() {
        return Err(AppError::new(
            ErrorCode::EmptyComment,
            "the comment is empty",
        ));
    }
    if body.chars().count() > MAX_COMMENT {
        return Err(AppError::new(
            ErrorCode::InvalidComment,
            format!("the comment is longer than {MAX_COMMENT} characters"),
        ));
    }
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

fn side_status(team: &str, required: u32, current: usize) -> SideStatus {
    SideStatus {
        team: team.to_string(),
        required,
        current: current as u32,
        missing: required.saturating_sub(current as u32),
    }
}

/// For a `set_attributes` change (or its rollback): what each of `ids` gets, computed by
/// the same function the executor applies. Empty for other effects.
pub fn attribute_changes(
    conn: &mut DbConn,
    schema: &Schema,
    c: &Change,
    ids: &[&str],
) -> AppResult<std::collections::HashMap<String, Vec<AttrChange>>> {
    use crate::domain::execution::{attribute_changes as diff, attributes_after, Attrs};
    let mut out = std::collections::HashMap::new();
    let Some(op) = schema.operation(&c.operation) else {
        return Ok(out);
    };
    if effect_for(op, c) != Some(Effect::SetAttributes) || ids.is_empty() {
        return Ok(out);
    }
    let attrs = |s: &str| -> Attrs { serde_json::from_str(s).unwrap_or_default() };
    let params = attrs(&c.params);
    let (keys, prior) = match c.rollback_of {
        Some(orig) => {
            let o = repo::get(conn, orig)?;
            let keys: Vec<String> = o
                .map(|o| attrs(&o.params).into_keys().collect())
                .unwrap_or_default();
            (
                keys,
                Some(crate::db::exec::versions_by_change(conn, orig, ids)?),
            )
        }
        None => (params.keys().cloned().collect(), None),
    };
    for e in crate::db::inventory::fetch_lite(conn, ids)? {
        let current = attrs(&e.attrs);
        let after = match &prior {
            Some(p) => match p.get(&e.id) {
                Some(v) => {
                    attributes_after(&current, &params, Some((&attrs(&v.before_attrs), &keys)))
                }
                None => continue,
            },
            None => attributes_after(&current, &params, None),
        };
        out.insert(e.id.clone(), diff(&current, &after, &keys));
    }
    Ok(out)
}

/// What a new `set_attributes` change with `params` would do to `ids` (the form's preview).
pub fn planned_attribute_changes(
    conn: &mut DbConn,
    op: &Operation,
    params: &Value,
    ids: &[&str],
) -> AppResult<std::collections::HashMap<String, Vec<AttrChange>>> {
    use crate::domain::execution::{attribute_changes as diff, attributes_after, Attrs};
    let mut out = std::collections::HashMap::new();
    if op.effect != Effect::SetAttributes {
        return Ok(out);
    }
    let params: Attrs = serde_json::from_value(params.clone()).unwrap_or_default();
    let keys: Vec<String> = params.keys().cloned().collect();
    for e in crate::db::inventory::fetch_lite(conn, ids)? {
        let current: Attrs = serde_json::from_str(&e.attrs).unwrap_or_default();
        let after = attributes_after(&current, &params, None);
        out.insert(e.id.clone(), diff(&current, &after, &keys));
    }
    Ok(out)
}

/// Every target of change `id` as CSV, one snapshot: kind, id, scope path, name, and for a
/// `set_attributes` change the value of each attribute now and after (what will run).
pub fn targets_csv(
    conn: &mut DbConn,
    schema: &Schema,
    id: i64,
    search: Option<&str>,
    offset: i64,
) -> AppResult<(Change, String)> {
    crate::db::snapshot(conn, |conn| {
        let c = repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let (_, rows) = repo::targets_page(conn, id, search, offset, i64::MAX)?;
        let sets = {
            let ids: Vec<&str> = rows.iter().map(|t| t.entity_id.as_str()).collect();
            attribute_changes(conn, schema, &c, &ids)?
        };
        let cell = csv_field;
        // One row per target; a set_attributes change adds "<key> now" and "<key> after"
        // for each attribute it sets (the same keys for every target).
        let mut keys: Vec<String> = Vec::new();
        for changes in sets.values() {
            for a in changes {
                if !keys.contains(&a.key) {
                    keys.push(a.key.clone());
                }
            }
        }
        keys.sort();
        let mut out = String::with_capacity(rows.len() * 96 + 64);
        // One format for the page's and the API's CSV (the API's column order).
        out.push_str("kind,id,scope_path,name");
        for k in &keys {
            out.push_str(&format!(
                ",{},{}",
                cell(&format!("{k} now")),
                cell(&format!("{k} after"))
            ));
        }
        out.push('\n');
        for t in rows {
            out.push_str(&format!(
                "{},{},{},{}",
                cell(&t.kind),
                cell(&t.entity_id),
                cell(&t.scope_path),
                cell(&t.name)
            ));
            let changes = sets.get(&t.entity_id);
            for k in &keys {
                let a = changes.and_then(|c| c.iter().find(|a| &a.key == k));
                let now = a.and_then(|a| a.now.as_deref()).unwrap_or("");
                let after = a.and_then(|a| a.after.as_deref()).unwrap_or("");
                out.push_str(&format!(",{},{}", cell(now), cell(after)));
            }
            out.push('\n');
        }
        Ok((c, out))
    })
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
        let recs = records(conn, &c, &rows)?;
        let fp = c.fingerprint.clone().unwrap_or_default();
        let policy = op.map(|o| policy_for(o, &c)).unwrap_or_default();
        let req_now = signoff::current_signers(&recs, Side::Requester, &fp).len();
        let imp_now = signoff::current_signers(&recs, Side::Implementer, &fp).len();
        let conflicts = repo::conflicts(conn, id)?
            .into_iter()
            .map(|(o, n)| ConflictView {
                id: o.id,
                number: number(o.id),
                title: o.title,
                state: o.state,
                shared_targets: n,
            })
            .collect();
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
            signoffs: rows
                .iter()
                .map(|(s, email, name)| {
                    let rec = recs.iter().find(|r| {
                        r.user_id == s.user_id
                            && r.side == s.side
                            && r.fingerprint == s.fingerprint
                            && r.stale == s.stale
                    });
                    let stale = s.stale || s.fingerprint != fp;
                    let earned = rec.map_or(true, |r| r.earned);
                    let team = if s.side == Side::Requester {
                        &c.requesting_team
                    } else {
                        &c.implementing_team
                    };
                    SignoffView {
                        side: s.side,
                        by: PersonView {
                            email: email.clone(),
                            name: name.clone(),
                        },
                        fingerprint: s.fingerprint.clone(),
                        stale,
                        counts: !stale && earned,
                        why_not: if stale {
                            Some("stale: the targets or the text changed since".into())
                        } else if !earned {
                            Some(format!(
                                "no longer counts: {name} is not (only) in `{team}` any more"
                            ))
                        } else {
                            None
                        },
                        comment: s.comment.clone(),
                        at: s.created_at,
                    }
                })
                .collect(),
            policy,
            requester_side: side_status(&c.requesting_team, policy.requester, req_now),
            implementer_side: side_status(&c.implementing_team, policy.implementer, imp_now),
            confirm_count_required: op
                .is_some_and(|o| o.needs_confirm_count(c.target_count as u64)),
            conflicts,
            reject_reason: c.reject_reason.clone(),
            state_reason: match crate::db::audit::last_state_change(conn, id)?
                .and_then(|e| e.event())
            {
                Some(Event::StateChanged { to, reason, .. }) if to == c.state => Some(reason),
                _ => None,
            },
            created_at: c.created_at,
            updated_at: c.updated_at,
            resolved_at: c.resolved_at,
            submitted_at: c.submitted_at,
            approved_at: c.approved_at,
            not_before: c.not_before,
            not_after: c.not_after,
            rollback_of: c.rollback_of.map(number),
            rolled_back_by: c.rolled_back_by.map(number),
        })
    })
}

/// The event of a change entering `awaiting_signoff` (what its signers are asked to sign).
pub(crate) fn submitted(c: &Change) -> Event {
    Event::Submitted {
        fingerprint: c.fingerprint.clone(),
        targets: c.target_count as u64,
        roots: c.root_count as u64,
    }
}
