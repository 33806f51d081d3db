//! Execution: start it, follow it (progress, items), resume, abort; undo it (rollback) and
//! bulk restores.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{act_on_change, reply, ReasonBody};
use crate::error::AppResult;
use crate::service::changes::change_id;
use crate::service::execution::{self as exe, ExecuteRequest, RollbackRequest};
use crate::service::restore::{self, RestoreRequest};
use crate::service::views::number;
use crate::web::auth::Authed;
use crate::web::{run_as, State};

/// An operator control with an optional reason (`POST …/{control}` `{"reason": …}`):
/// answers the execution, and wakes this process's worker (a retry has work for it).
async fn control(
    state: State,
    user: crate::service::CurrentUser,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
    action: exe::Control,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let reason = body.and_then(|b| b.into_inner().reason);
    let v = run_as(&state, user, move |conn, schema, user| {
        action(conn, schema, user, id, reason.as_deref())
    })
    .await?;
    state.wake.notify();
    Ok(HttpResponse::Ok().json(v))
}

pub async fn execute_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<ExecuteRequest>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let body = body.into_inner();
    let v = run_as(&state, user, move |conn, schema, user| {
        exe::execute(conn, schema, user, id, &body)
    })
    .await?;
    state.wake.notify();
    Ok(HttpResponse::Accepted().json(v))
}

pub async fn get_execution(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    reply(&state, user, StatusCode::OK, move |conn, _, _| {
        exe::progress(conn, id)
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ItemsQuery {
    status: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
}

pub async fn execution_items(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    q: web::Query<ItemsQuery>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let q = q.into_inner();
    let offset = q.offset.unwrap_or(0).clamp(0, 1_000_000_000);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let (total, items) = run_as(&state, user, move |conn, _, _| {
        exe::items(conn, id, q.status.as_deref(), offset, limit)
    })
    .await?;
    let next = (offset + (items.len() as i64) < total).then(|| offset + items.len() as i64);
    Ok(HttpResponse::Ok().json(
        json!({"change": number(id), "total": total, "offset": offset, "next_offset": next, "items": items}),
    ))
}

pub async fn resume_execution(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let v = run_as(&state, user, move |conn, schema, user| {
        exe::resume(conn, schema, user, id)
    })
    .await?;
    state.wake.notify();
    Ok(HttpResponse::Ok().json(v))
}

/// `POST /api/v1/changes/{id}/continue`: past a manual gate; wakes this process's worker.
pub async fn continue_execution(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let v = run_as(&state, user, move |conn, schema, user| {
        exe::continue_paused(conn, schema, user, id)
    })
    .await?;
    state.wake.notify();
    Ok(HttpResponse::Ok().json(v))
}

/// `POST /api/v1/changes/{id}/pause` `{"reason": …}`: stops at the next batch.
pub async fn pause_execution(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    control(state, user, path, body, exe::pause).await
}

/// `POST /api/v1/changes/{id}/skip-wave` `{"reason": …}`: the current wave's pending
/// targets are skipped (paused or halted executions).
pub async fn skip_wave(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    control(state, user, path, body, exe::skip_wave).await
}

/// `POST /api/v1/changes/{id}/skip-drifted` `{"reason": …}`: the targets the drift check
/// held back are skipped (halted executions); resume goes on.
pub async fn skip_drifted(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    control(state, user, path, body, exe::skip_drifted).await
}

/// `POST /api/v1/changes/{id}/retry-failed` `{"reason": …}`: the failed targets run
/// again (halted, partially failed or failed executions).
pub async fn retry_failed(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    control(state, user, path, body, exe::retry_failed).await
}

/// `POST /api/v1/changes/{id}/schedule` `{"fingerprint", "at", "wait_for_conflicts"}`:
/// 201 with the scheduled start.
pub async fn schedule_start(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<exe::ScheduleRequest>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let req = body.into_inner();
    reply(
        &state,
        user,
        StatusCode::CREATED,
        move |conn, schema, user| exe::schedule(conn, schema, user, id, &req),
    )
    .await
}

/// `GET /api/v1/changes/{id}/schedule`: the scheduled start (404 when there is none).
pub async fn get_schedule(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    reply(&state, user, StatusCode::OK, move |conn, _, _| {
        exe::schedule_of(conn, id)?.ok_or_else(|| {
            crate::error::AppError::new(
                crate::error::ErrorCode::NotFound,
                format!("{} has no scheduled start", number(id)),
            )
        })
    })
    .await
}

/// `DELETE /api/v1/changes/{id}/schedule` `{"reason": …}`: call the start off.
pub async fn unschedule_start(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let reason = body.and_then(|b| b.into_inner().reason);
    reply(&state, user, StatusCode::OK, move |conn, schema, user| {
        exe::unschedule(conn, schema, user, id, reason.as_deref())?;
        Ok(json!({"change": number(id), "scheduled": false}))
    })
    .await
}

/// `POST /api/v1/changes/{id}/abort` `{"reason": …}`: stops for good; pending targets
/// are skipped.
pub async fn abort_execution(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    control(state, user, path, body, exe::abort).await
}

pub async fn rollback_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<RollbackRequest>>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let req = body.map(|b| b.into_inner()).unwrap_or_default();
    act_on_change(
        &state,
        user,
        StatusCode::CREATED,
        move |conn, schema, user| exe::rollback(conn, schema, user, id, &req),
    )
    .await
}

/// `POST /api/v1/restores`: a bulk restore change (see `service::restore`).
pub async fn create_restore(
    state: State,
    Authed(user): Authed,
    body: web::Json<RestoreRequest>,
) -> AppResult<HttpResponse> {
    let req = body.into_inner();
    act_on_change(
        &state,
        user,
        StatusCode::CREATED,
        move |conn, schema, user| restore::create(conn, schema, user, req),
    )
    .await
}
