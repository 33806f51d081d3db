//! JSON API handlers by resource: parse, call one service function, serialise. This
//! module: the call shape the handlers share ([`reply`], [`act_on_change`] over `web::run_as`),
//! body errors, health, the caller, the queue and the audit check.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::{audit, DbConn};
use crate::domain::lines::Lines;
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::{self, changes as svc, CurrentUser};
use crate::web::auth::Authed;
use crate::web::upload::{self, Spooled};
use crate::web::{run_as, with_conn, State};

mod calendar;
mod changes;
mod contacts;
mod execution;
mod hooks;
mod inventory;
mod notices;
mod notifications;
mod targets;

pub use calendar::RangeQuery;
pub use calendar::{
    calendar, calendar_state, confirm_proposal, create_feed_token, decline_proposal, get_freeze,
    give_exception, ics_feed, list_exceptions, propose_freeze, propose_freeze_edit,
    propose_freeze_lift, propose_lockdown, propose_lockdown_lift,
};
pub use changes::CommentBody;
pub use changes::{
    cancel_change, change_events, comment_change, create_change, edit_change, get_change,
    list_changes, list_comments, reject_change, resolve_change, sign_change, submit_change,
};
pub use contacts::FormatQuery;
pub use contacts::{change_contacts, entity_contacts, import_contacts};
pub use execution::ItemsQuery;
pub use execution::{
    abort_execution, continue_execution, create_restore, execute_change, execution_items,
    get_execution, get_schedule, pause_execution, resume_execution, retry_failed, rollback_change,
    schedule_start, skip_drifted, skip_wave, unschedule_start,
};
pub use hooks::DeliveriesQuery;
pub use hooks::{create_hook, delete_hook, hook_deliveries, list_hooks, test_hook};
pub use inventory::{get_entity, get_import, import_inventory, list_inventory};
pub use notices::{approve_notice, discard_notice, draft_notice, list_notices};
pub use notifications::OutboxQuery;
pub use notifications::{get_preferences, list_outbox, retry_mail, set_preferences};
pub use targets::{
    change_difference, change_evidence, change_selector, change_targets, DifferenceQuery,
    SelectorQuery, TargetsQuery,
};

// ---- the call shape ------------------------------------------------------------------

/// [`run_as`], its value answered as JSON with `status`.
async fn reply<T, F>(
    state: &State,
    user: CurrentUser,
    status: StatusCode,
    f: F,
) -> AppResult<HttpResponse>
where
    F: FnOnce(&mut DbConn, &Schema, &CurrentUser) -> AppResult<T> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let v = run_as(state, user, f).await?;
    Ok(HttpResponse::build(status).json(v))
}

/// [`run_as`] an action that names a change (the one acted on, or the rollback or restore it
/// created), then answer that change as the caller now sees it.
async fn act_on_change<F>(
    state: &State,
    user: CurrentUser,
    status: StatusCode,
    f: F,
) -> AppResult<HttpResponse>
where
    F: FnOnce(&mut DbConn, &Schema, &CurrentUser) -> AppResult<i64> + Send + 'static,
{
    let me = user.clone();
    let id = run_as(state, user, f).await?;
    Ok(HttpResponse::build(status).json(change_json(state, &me, id).await?))
}

/// A change as `me` sees it: with the actions they may take (`allowed_actions`).
async fn change_json(state: &State, me: &CurrentUser, id: i64) -> AppResult<serde_json::Value> {
    let v = run_as(state, me.clone(), move |conn, schema, me| {
        svc::view_for(conn, schema, me, id)
    })
    .await?;
    Ok(serde_json::to_value(v).unwrap_or_default())
}

/// `?format=`: `json` (the default) or `csv`; whether it is CSV.
fn wants_csv(format: Option<&str>) -> AppResult<bool> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(AppError::new(
            ErrorCode::InvalidFormat,
            format!("format must be `json` or `csv`, not `{other}`"),
        )),
    }
}

/// A CSV download named `file`.
fn csv_attachment(file: &str) -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::Ok();
    r.content_type("text/csv; charset=utf-8").insert_header((
        "Content-Disposition",
        format!("attachment; filename=\"{file}\""),
    ));
    r
}

// ---- request bodies ------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    #[serde(default)]
    pub partial: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// An NDJSON upload, spooled to disk within `limit` bytes (named by `setting`) before any
/// database work (see `web::upload`).
async fn spool(
    state: &State,
    payload: &mut web::Payload,
    limit: usize,
    setting: &str,
) -> AppResult<Spooled> {
    upload::spool(
        payload,
        limit,
        setting,
        std::time::Duration::from_secs(state.config.upload_idle_secs),
    )
    .await
}

/// The lines of a spooled upload.
fn lines_of(body: Spooled) -> AppResult<Lines<std::io::BufReader<std::fs::File>>> {
    body.lines()
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("cannot read the spooled upload: {e}")))
}

/// An import's answer: its report, or when nothing was written a 422 `invalid_lines` with
/// `message` and the report as details.
fn import_answer<R: Serialize>(
    committed: bool,
    report: R,
    message: String,
) -> AppResult<HttpResponse> {
    if committed {
        return Ok(HttpResponse::Ok().json(report));
    }
    Err(AppError::new(ErrorCode::InvalidLines, message)
        .with_details(serde_json::to_value(&report).unwrap_or_default()))
}

pub fn json_error(err: JsonPayloadError) -> AppError {
    match &err {
        JsonPayloadError::OverflowKnownLength { length, limit } => AppError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the body is {length} bytes; the limit is {limit} (COUNTERSIGN_MAX_JSON_BYTES)"
            ),
        ),
        JsonPayloadError::Overflow { limit } => AppError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the body is larger than the limit of {limit} bytes (COUNTERSIGN_MAX_JSON_BYTES)"
            ),
        ),
        JsonPayloadError::Deserialize(e) => AppError::new(
            ErrorCode::InvalidJson,
            format!("the body is not a valid request: {e}"),
        ),
        JsonPayloadError::ContentType => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "send JSON (Content-Type: application/json)",
        ),
        other => AppError::new(ErrorCode::InvalidJson, other.to_string()),
    }
}

// ---- health, the caller, the queue, the audit trail ----------------------------------

pub async fn not_found() -> AppResult<HttpResponse> {
    Err(AppError::new(
        ErrorCode::NotFound,
        "no such API endpoint (see README \"API\")",
    ))
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: State) -> HttpResponse {
    let backend = state.config.database.backend_name();
    let r = with_conn(&state, |conn| {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("SELECT 1")?;
        Ok(())
    })
    .await;
    match r {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready", "database": backend})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let code = ErrorCode::DatabaseUnavailable;
            HttpResponse::build(code.status()).json(json!({"status": "unavailable", "database": backend, "error": {"code": code, "message": "the database does not answer"}}))
        }
    }
}

pub async fn get_schema(state: State, _user: Authed) -> HttpResponse {
    HttpResponse::Ok().json(&*state.schema)
}

pub async fn me(Authed(user): Authed) -> HttpResponse {
    HttpResponse::Ok().json(json!({"email": user.email, "name": user.name, "teams": user.teams, "is_admin": user.is_admin}))
}

pub async fn queue(state: State, Authed(user): Authed) -> AppResult<HttpResponse> {
    let items = run_as(&state, user, |conn, schema, user| {
        service::queue::queue(conn, schema, user)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"changes": items})))
}

pub async fn audit_verify(state: State, Authed(user): Authed) -> AppResult<HttpResponse> {
    if !user.is_admin {
        return Err(AppError::new(
            ErrorCode::Forbidden,
            "only admins can verify the audit trail over the API",
        ));
    }
    let v = with_conn(&state, |conn| Ok(audit::verify(conn)?)).await?;
    Ok(HttpResponse::Ok().json(service::views::verdict_json(&v)))
}
