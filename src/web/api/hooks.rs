//! A team's chat and event hooks: `/api/v1/teams/{team}/hooks` (list, create), one hook's
//! deletion, test message and deliveries.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::reply;
use crate::error::AppResult;
use crate::service::hooks::{self as svc, NewHookInput};
use crate::web::auth::Authed;
use crate::web::{run_as, State};

/// `GET /api/v1/teams/{team}/hooks`: the team's hooks, the formats and the events.
pub async fn list_hooks(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let team = path.into_inner();
    reply(&state, user, StatusCode::OK, move |conn, _, user| {
        svc::list(conn, user, &team)
    })
    .await
}

/// `POST /api/v1/teams/{team}/hooks` `{name, format, url, events, secret?}`: 201 with the
/// hook and, for a JSON hook, its secret (shown this once).
pub async fn create_hook(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<NewHookInput>,
) -> AppResult<HttpResponse> {
    let team = path.into_inner();
    let input = body.into_inner();
    reply(&state, user, StatusCode::CREATED, move |conn, _, user| {
        svc::create(conn, user, &team, &input)
    })
    .await
}

/// `DELETE /api/v1/teams/{team}/hooks/{id}`: its undelivered messages are given up.
pub async fn delete_hook(
    state: State,
    Authed(user): Authed,
    path: web::Path<(String, i64)>,
) -> AppResult<HttpResponse> {
    let (team, id) = path.into_inner();
    run_as(&state, user, move |conn, _, user| {
        svc::delete(conn, user, &team, id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"deleted": id})))
}

/// `POST /api/v1/teams/{team}/hooks/{id}/test`: 202 with the queued delivery.
pub async fn test_hook(
    state: State,
    Authed(user): Authed,
    path: web::Path<(String, i64)>,
) -> AppResult<HttpResponse> {
    let (team, id) = path.into_inner();
    reply(&state, user, StatusCode::ACCEPTED, move |conn, _, user| {
        svc::test(conn, user, &team, id)
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// At most this many (1 to 500; default 50).
    limit: Option<i64>,
}

/// `GET /api/v1/teams/{team}/hooks/{id}/deliveries?limit=`: newest first (at most 500).
pub async fn hook_deliveries(
    state: State,
    Authed(user): Authed,
    path: web::Path<(String, i64)>,
    q: web::Query<DeliveriesQuery>,
) -> AppResult<HttpResponse> {
    let (team, id) = path.into_inner();
    let limit = q.limit.unwrap_or(50);
    let (hook, deliveries) = run_as(&state, user, move |conn, _, user| {
        svc::deliveries(conn, user, &team, id, limit)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"hook": hook, "deliveries": deliveries})))
}
