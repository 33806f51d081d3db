//! Creating a change: the request, the checks it passes before anything is stored, the
//! draft row, and (with `submit`) its submission in the same transaction.

use serde::Deserialize;
use serde_json::{json, Value};

use super::resolve::submit_problem;
use super::shared::{
    check_params, check_rationale, check_selector, check_title, operation, submitted,
};
use crate::db::models::NewChange;
use crate::db::{changes as repo, now, resolve, users, write_tx, DbConn};
use crate::domain::event::{Created, Event, SelectorShape, WithinShape};
use crate::domain::resolution::{Expectation, Resolution};
use crate::domain::schema::Operation;
use crate::domain::selector::Selector;
use crate::domain::text::{Rationale, Title};
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::CurrentUser;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
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
    r: &Resolution,
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
        selects_everything: crate::domain::resolution::guards::selects_everything(
            &r.summary.guards,
        ),
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

/// A window that ends before it starts, or lies outside the years 2000 to 9999 (as a
/// freeze's times do: no calendar arithmetic near chrono's limits), is refused
/// (`invalid_window`).
fn check_window(
    not_before: Option<chrono::DateTime<chrono::Utc>>,
    not_after: Option<chrono::DateTime<chrono::Utc>>,
) -> AppResult<()> {
    use chrono::Datelike;
    for t in [not_before, not_after].into_iter().flatten() {
        if !(2000..=9999).contains(&t.year()) {
            return Err(AppError::new(
                ErrorCode::InvalidWindow,
                format!("the window's times lie between the years 2000 and 9999, not at {t}"),
            ));
        }
    }
    if let (Some(a), Some(b)) = (not_before, not_after) {
        if b <= a {
            return Err(AppError::new(
                ErrorCode::InvalidWindow,
                format!("the window ends ({b}) before it starts ({a})"),
            ));
        }
    }
    Ok(())
}

/// The head of the change `req` asks for, its text and params checked.
fn head_of(
    req: &CreateChange,
    title: Title,
    rationale: Rationale,
    op: &Operation,
    params: &Value,
) -> ChangeHead {
    ChangeHead {
        title,
        rationale,
        requesting_team: req.requesting_team.clone(),
        implementing_team: op.implemented_by.clone(),
        operation: op.name.clone(),
        params: params.to_string(),
        selector: serde_json::to_string(&req.targets).expect("selector"),
        expect: req
            .expect
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("expect")),
        not_before: req.not_before.map(|t| t.naive_utc()),
        not_after: req.not_after.map(|t| t.naive_utc()),
        rollback_of: None,
    }
}

/// The event of a change requested by `req` and resolved as `r`.
fn requested(
    schema: &Schema,
    req: &CreateChange,
    title: &Title,
    op: &Operation,
    params: &Value,
    r: &Resolution,
) -> Event {
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
        errors: r.error_count,
        schema: schema.hash.clone(),
    })
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
    let title = check_title(&req.title)?;
    let rationale = check_rationale(&req.rationale)?;
    let op = operation(schema, &req.operation)?;
    let params = check_params(op, &req.params)?;
    check_selector(op, &req.targets)?;
    check_teams(conn, user, &req.requesting_team, op)?;
    check_window(req.not_before, req.not_after)?;
    let head = head_of(&req, title.clone(), rationale, op, &params);
    let t_tx = std::time::Instant::now();
    let out = write_tx(conn, |conn| {
        let r = resolve::resolve(conn, schema, op, &params, &req.targets)?;
        let c = repo::insert(conn, &draft_row(schema, user.id, head, &r))?;
        let t0 = std::time::Instant::now();
        repo::replace_targets(conn, c.id, &r.targets)?;
        tracing::debug!(
            ms = t0.elapsed().as_secs_f64() * 1000.0,
            targets = r.targets.len(),
            "stored targets"
        );
        let event = requested(schema, &req, &title, op, &params, &r);
        record(conn, &user.actor(), Some(c.id), event)?;
        if req.submit {
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
