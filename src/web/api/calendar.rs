//! The change calendar: its state (freezes, lockdown, proposals), proposals by one admin
//! confirmed by another, the calendar over a range, a change's freeze exceptions, and the
//! iCalendar feed (read with a feed token, not a bearer token: calendar clients cannot send
//! headers).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{reply, ReasonBody};
use crate::domain::calendar::FreezeSpec;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::calendar::{self as svc, ExceptionRequest, ProposalRequest, Range};
use crate::service::changes::change_id;
use crate::web::auth::Authed;
use crate::web::{with_conn, State};

/// `GET /api/v1/calendar?from=&to=`: freezes (each occurrence in the range), change
/// windows and the lockdown.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

pub async fn calendar(
    state: State,
    Authed(user): Authed,
    q: web::Query<RangeQuery>,
) -> AppResult<HttpResponse> {
    let range = Range::parse(q.from.as_deref(), q.to.as_deref())?;
    reply(&state, user, StatusCode::OK, move |conn, _, _| {
        svc::calendar(conn, range)
    })
    .await
}

/// `GET /api/v1/calendar/state`: freezes in force, the lockdown, pending and recent proposals.
pub async fn calendar_state(state: State, Authed(user): Authed) -> AppResult<HttpResponse> {
    reply(&state, user, StatusCode::OK, |conn, _, _| svc::state(conn)).await
}

/// `GET /api/v1/calendar/freezes/{id}`.
pub async fn get_freeze(
    state: State,
    Authed(user): Authed,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    reply(&state, user, StatusCode::OK, move |conn, _, _| {
        svc::freeze(conn, id)
    })
    .await
}

async fn propose(
    state: &State,
    user: crate::service::CurrentUser,
    req: ProposalRequest,
) -> AppResult<HttpResponse> {
    reply(
        state,
        user,
        StatusCode::CREATED,
        move |conn, schema, user| svc::propose(conn, schema, user, req),
    )
    .await
}

/// `POST /api/v1/calendar/freezes`: propose a freeze (201 with the pending proposal).
pub async fn propose_freeze(
    state: State,
    Authed(user): Authed,
    body: web::Json<FreezeSpec>,
) -> AppResult<HttpResponse> {
    propose(
        &state,
        user,
        ProposalRequest::CreateFreeze(body.into_inner()),
    )
    .await
}

/// `PATCH /api/v1/calendar/freezes/{id}`: propose new fields for a freeze (all of them).
pub async fn propose_freeze_edit(
    state: State,
    Authed(user): Authed,
    path: web::Path<i64>,
    body: web::Json<FreezeSpec>,
) -> AppResult<HttpResponse> {
    let req = ProposalRequest::EditFreeze(path.into_inner(), body.into_inner());
    propose(&state, user, req).await
}

/// `POST /api/v1/calendar/freezes/{id}/lift` `{"reason": …}`.
pub async fn propose_freeze_lift(
    state: State,
    Authed(user): Authed,
    path: web::Path<i64>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    let reason = body.and_then(|b| b.into_inner().reason).unwrap_or_default();
    let req = ProposalRequest::LiftFreeze {
        freeze: path.into_inner(),
        reason,
    };
    propose(&state, user, req).await
}

/// `POST /api/v1/calendar/lockdown` `{"reason": …}` (required).
pub async fn propose_lockdown(
    state: State,
    Authed(user): Authed,
    body: web::Json<ReasonBody>,
) -> AppResult<HttpResponse> {
    let reason = body.into_inner().reason.unwrap_or_default();
    propose(&state, user, ProposalRequest::DeclareLockdown { reason }).await
}

/// `POST /api/v1/calendar/lockdown/lift` `{"reason": …}` (required).
pub async fn propose_lockdown_lift(
    state: State,
    Authed(user): Authed,
    body: web::Json<ReasonBody>,
) -> AppResult<HttpResponse> {
    let reason = body.into_inner().reason.unwrap_or_default();
    propose(&state, user, ProposalRequest::LiftLockdown { reason }).await
}

/// `POST /api/v1/calendar/proposals/{id}/confirm`: a second admin; it takes effect now.
pub async fn confirm_proposal(
    state: State,
    Authed(user): Authed,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let r = reply(&state, user, StatusCode::OK, move |conn, schema, user| {
        svc::confirm(conn, schema, user, id)
    })
    .await;
    // A lift may have resumed executions.
    state.wake.notify();
    r
}

/// `POST /api/v1/calendar/proposals/{id}/decline` `{"reason": …}`: withdraw one's own,
/// or decline another admin's.
pub async fn decline_proposal(
    state: State,
    Authed(user): Authed,
    path: web::Path<i64>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let reason = body.and_then(|b| b.into_inner().reason);
    reply(&state, user, StatusCode::OK, move |conn, _, user| {
        svc::decline(conn, user, id, reason.as_deref())
    })
    .await
}

/// `POST /api/v1/changes/{id}/freeze-exceptions` `{"freeze", "fingerprint", "comment"}`.
pub async fn give_exception(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<ExceptionRequest>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let req = body.into_inner();
    reply(
        &state,
        user,
        StatusCode::CREATED,
        move |conn, schema, user| {
            svc::give_exception(conn, schema, user, id, &req).map(|e| json!({"exceptions": e}))
        },
    )
    .await
}

/// `GET /api/v1/changes/{id}/freeze-exceptions`.
pub async fn list_exceptions(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    reply(&state, user, StatusCode::OK, move |conn, _, _| {
        svc::exceptions(conn, id).map(|e| json!({"exceptions": e}))
    })
    .await
}

/// `POST /api/v1/me/calendar-token`: a new feed token (shown once; the old one stops working).
pub async fn create_feed_token(state: State, Authed(user): Authed) -> AppResult<HttpResponse> {
    let base = state.config.mail.public_url.clone();
    reply(&state, user, StatusCode::CREATED, move |conn, _, user| {
        let token = svc::feed_token(conn, user)?;
        let url = format!("{}/calendar.ics?token={token}", base.trim_end_matches('/'));
        Ok(json!({"token": token, "url": url}))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    token: Option<String>,
}

/// `GET /calendar.ics?token=csf_…`: the iCalendar feed (a feed token, see above).
pub async fn ics_feed(state: State, q: web::Query<FeedQuery>) -> AppResult<HttpResponse> {
    let token = q.into_inner().token.unwrap_or_default();
    let base = state.config.mail.public_url.clone();
    let body = with_conn(&state, move |conn| {
        if svc::user_for_feed(conn, &token)?.is_none() {
            return Err(AppError::new(
                ErrorCode::Unauthenticated,
                "the calendar feed needs `?token=` with your feed token (POST /api/v1/me/calendar-token, or the calendar page)",
            ));
        }
        svc::ics(conn, &base)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/calendar; charset=utf-8")
        .insert_header(("Cache-Control", "private, max-age=300"))
        .body(body))
}
