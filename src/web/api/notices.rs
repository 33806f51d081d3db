//! Customer notices of a change: preview or draft, list, approve (sends it), discard.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::reply;
use crate::db::DbConn;
use crate::error::AppResult;
use crate::service::changes::change_id;
use crate::service::contacts::{self as svc, NoticeRequest, NoticeView};
use crate::service::CurrentUser;
use crate::web::auth::Authed;
use crate::web::{run_as, State};

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

/// A decision on notice `nid` of change `raw`: `f` (approve or discard), answered with the
/// notice.
async fn decide<F>(
    state: &State,
    user: CurrentUser,
    (raw, nid): (String, i64),
    f: F,
) -> AppResult<HttpResponse>
where
    F: FnOnce(&mut DbConn, &CurrentUser, i64, i64) -> AppResult<NoticeView> + Send + 'static,
{
    let id = change_id(&raw)?;
    reply(state, user, StatusCode::OK, move |conn, _, user| {
        f(conn, user, id, nid)
    })
    .await
}

/// `POST /api/v1/changes/{id}/notices/{nid}/approve`: sends it.
pub async fn approve_notice(
    state: State,
    Authed(user): Authed,
    path: web::Path<(String, i64)>,
) -> AppResult<HttpResponse> {
    decide(&state, user, path.into_inner(), svc::approve).await
}

/// `POST /api/v1/changes/{id}/notices/{nid}/discard`
pub async fn discard_notice(
    state: State,
    Authed(user): Authed,
    path: web::Path<(String, i64)>,
) -> AppResult<HttpResponse> {
    decide(&state, user, path.into_inner(), svc::discard).await
}

pub async fn list_notices(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let v = run_as(&state, user, move |conn, _, user| {
        svc::notices(conn, user, id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"notices": v})))
}
