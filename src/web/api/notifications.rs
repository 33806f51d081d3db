//! A person's notification preferences; the outbox for admins.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::reply;
use crate::domain::NotificationMode;
use crate::error::AppResult;
use crate::service::changes::change_id;
use crate::service::notifications as svc;
use crate::web::auth::Authed;
use crate::web::{run_as, State};

pub async fn get_preferences(state: State, Authed(user): Authed) -> AppResult<HttpResponse> {
    let v = run_as(&state, user, |conn, _, user| svc::preferences(conn, user)).await?;
    Ok(HttpResponse::Ok().json(json!({"preferences": v, "modes": NotificationMode::VALUES})))
}

pub async fn set_preferences(
    state: State,
    Authed(user): Authed,
    body: web::Json<BTreeMap<String, String>>,
) -> AppResult<HttpResponse> {
    let changes = body.into_inner();
    let v = run_as(&state, user, move |conn, _, user| {
        svc::set_preferences(conn, user, &changes)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"preferences": v, "modes": NotificationMode::VALUES})))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    state: Option<String>,
    change: Option<String>,
    limit: Option<i64>,
}

pub async fn list_outbox(
    state: State,
    Authed(user): Authed,
    q: web::Query<OutboxQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner();
    let change = q.change.as_deref().map(change_id).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let v = run_as(&state, user, move |conn, _, user| {
        svc::outbox(conn, user, q.state.as_deref(), change, limit)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"mails": v})))
}

pub async fn retry_mail(
    state: State,
    Authed(user): Authed,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    reply(&state, user, StatusCode::OK, move |conn, _, user| {
        svc::retry(conn, user, id)
    })
    .await
}
