//! Changes: create, list, read, edit, re-resolve, and the sign-off steps (submit, sign,
//! reject, cancel); comments and the audit events of one change.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{act_on_change, change_json, ReasonBody};
use crate::db::{audit, changes as repo};
use crate::domain::ChangeState;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::{self as svc, change_id, CreateChange, EditChange, SignRequest};
use crate::service::views::{number, ChangeSummaryView, EventView};
use crate::service::CurrentUser;
use crate::web::auth::Authed;
use crate::web::{run_as, with_conn, State};

pub async fn create_change(
    state: State,
    Authed(user): Authed,
    body: web::Json<CreateChange>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let body = body.into_inner();
    let id = run_as(&state, user, move |conn, schema, user| {
        svc::create(conn, schema, user, body)
    })
    .await?;
    let v = change_json(&state, &me, id).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/changes/{id}")))
        .json(v))
}

pub async fn list_changes(
    state: State,
    _user: Authed,
    q: web::Query<repo::ListFilter>,
) -> AppResult<HttpResponse> {
    let f = q.into_inner();
    if let Some(s) = &f.state {
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if ChangeState::parse(part).is_none() {
                return Err(AppError::new(
                    ErrorCode::InvalidState,
                    format!("unknown state `{part}`"),
                ));
            }
        }
    }
    let rows = with_conn(&state, move |conn| Ok(repo::list(conn, &f)?)).await?;
    let views: Vec<ChangeSummaryView> = rows
        .iter()
        .map(|c| ChangeSummaryView::new(&state.schema, c))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"changes": views})))
}

pub async fn get_change(
    state: State,
    Authed(me): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    Ok(HttpResponse::Ok().json(change_json(&state, &me, id).await?))
}

/// The change after an edit or a re-resolution, with what the resolution did.
async fn with_outcome(
    state: &State,
    me: &CurrentUser,
    id: i64,
    outcome: impl serde::Serialize,
) -> AppResult<HttpResponse> {
    let mut v = change_json(state, me, id).await?;
    v["resolution_outcome"] = serde_json::to_value(outcome).unwrap_or_default();
    Ok(HttpResponse::Ok().json(v))
}

pub async fn edit_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<EditChange>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let body = body.into_inner();
    let outcome = run_as(&state, user, move |conn, schema, user| {
        svc::edit(conn, schema, user, id, body)
    })
    .await?;
    with_outcome(&state, &me, id, outcome).await
}

pub async fn resolve_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let outcome = run_as(&state, user, move |conn, schema, user| {
        svc::reresolve(conn, schema, user, id)
    })
    .await?;
    with_outcome(&state, &me, id, outcome).await
}

pub async fn submit_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    act_on_change(&state, user, StatusCode::OK, move |conn, schema, user| {
        svc::submit(conn, schema, user, id).map(|_| id)
    })
    .await
}

pub async fn sign_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<SignRequest>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let body = body.into_inner();
    act_on_change(
        &state,
        user,
        StatusCode::CREATED,
        move |conn, schema, user| svc::sign(conn, schema, user, id, body).map(|_| id),
    )
    .await
}

pub async fn reject_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<ReasonBody>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let reason = body.into_inner().reason.unwrap_or_default();
    act_on_change(&state, user, StatusCode::OK, move |conn, schema, user| {
        svc::reject(conn, schema, user, id, &reason).map(|_| id)
    })
    .await
}

pub async fn cancel_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let reason = body.and_then(|b| b.into_inner().reason);
    act_on_change(&state, user, StatusCode::OK, move |conn, schema, user| {
        svc::cancel(conn, schema, user, id, reason.as_deref()).map(|_| id)
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub body: String,
}

pub async fn comment_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<CommentBody>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let text = body.into_inner().body;
    let cid = run_as(&state, user, move |conn, schema, user| {
        svc::comment(conn, schema, user, id, &text)
    })
    .await?;
    Ok(HttpResponse::Created().json(json!({"id": cid, "change": number(id)})))
}

/// `f` on change `id`, which must exist.
async fn of_change<T, F>(state: &State, id: i64, f: F) -> AppResult<T>
where
    F: FnOnce(&mut crate::db::DbConn) -> AppResult<T> + Send + 'static,
    T: Send + 'static,
{
    with_conn(state, move |conn| {
        repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        f(conn)
    })
    .await
}

pub async fn list_comments(
    state: State,
    _user: Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let rows = of_change(&state, id, move |conn| Ok(repo::comments(conn, id)?)).await?;
    let list: Vec<_> = rows.into_iter().map(|(c, email, name)| json!({"id": c.id, "by": {"email": email, "name": name}, "body": c.body, "at": c.created_at})).collect();
    Ok(HttpResponse::Ok().json(json!({"comments": list})))
}

pub async fn change_events(
    state: State,
    _user: Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let rows = of_change(&state, id, move |conn| Ok(audit::for_change(conn, id)?)).await?;
    let list: Vec<EventView> = rows.into_iter().map(EventView::from).collect();
    Ok(HttpResponse::Ok().json(json!({"events": list})))
}
