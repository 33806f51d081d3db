//! Customer notices of a change: preview or draft, list, approve (sends it), discard.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{reply, run};
use crate::error::AppResult;
use crate::service::changes::change_id;
use crate::service::contacts::{self as svc, NoticeRequest};
use crate::web::auth::Authed;
use crate::web::State;

/// `POST /api/v1/changes/{id}/notices`: preview (`"preview": true`) or draft a notice.
pub async fn draft_notice(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<NoticeRequest>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let req = body.into_inner();
    let status = if req.preview {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    reply(&state, user, status, move |conn, _, user| {
        svc::draft(conn, user, id, req)
    })
    .await
}

/// `POST /api/v1/changes/{id}/notices/{nid}/approve`: sends it.
pub async fn approve_notice(
    state: State,
    Authed(user): Authed,
    path: web::Path<(String, i64)>,
) -> AppResult<HttpResponse> {
    let (raw, nid) = path.into_inner();
    let id = change_id(&raw)?;
    reply(&state, user, StatusCode::OK, move |conn, _, user| {
        svc::approve(conn, user, id, nid)
    })
    .await
}

/// `POST /api/v1/changes/{id}/notices/{nid}/discard`
pub async fn discard_notice(
    state: State,
    Authed(user): Authed,
    path: web::Path<(String, i64)>,
) -> AppResult<HttpResponse> {
    let (raw, nid) = path.into_inner();
    let id = change_id(&raw)?;
    reply(&state, user, StatusCode::OK, move |conn, _, user| {
        svc::discard(conn, user, id, nid)
    })
    .await
}

pub async fn list_notices(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let v = run(&state, user, move |conn, _, user| {
        svc::notices(conn, user, id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"notices": v})))
}
