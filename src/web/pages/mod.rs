//! The web app: server-rendered askama pages over the same services as the API. Every
//! page works without JavaScript; every form carries the session's CSRF token. This
//! module: the layout, page errors and static assets; one module per use case below.

use std::collections::BTreeMap;

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::db::{audit, changes as repo, inventory, users};
use crate::domain::access::ChangeAction;
use crate::domain::account::{token_expiry, DEFAULT_TOKEN_DAYS, TOKEN_LIFETIMES};
use crate::domain::event::Event;
use crate::domain::resolution::{short_fingerprint, Resolution, ResolutionError};
use crate::domain::selector::{Scope, Selector};
use crate::domain::{Effect, ExecState, OutboxState, Side};
use crate::error::{AppError, ErrorCode, RequestId};
use crate::service::changes::{self as svc, change_id, CreateChange, SignRequest};
use crate::service::events::record;
use crate::service::execution::{self as exe, ExecuteRequest, ExecutionView, RollbackRequest};
use crate::service::views::{number, ChangeSummaryView, ChangeView};
use crate::service::{queue, CurrentUser};
use crate::web::session::{self, csrf_ok, WebUser, LOGIN_COOKIE, SESSION_COOKIE};
use crate::web::{with_conn, State};

mod change;
mod edit;
mod entities;
mod lists;
mod login;
mod new_change;
mod outbox;
mod settings;

pub use change::*;
pub use edit::*;
pub use entities::*;
pub use lists::*;
pub use login::*;
pub use new_change::*;
pub use outbox::*;
pub use settings::*;

// ---- layout and errors ---------------------------------------------------------------

pub struct UserBox {
    pub name: String,
    pub teams: String,
    pub admin: bool,
}

pub struct Layout {
    pub user: Option<UserBox>,
    pub csrf: String,
    pub queue_count: usize,
    pub section: &'static str,
    pub flash: Vec<String>,
}

impl Layout {
    pub fn anonymous() -> Layout {
        Layout {
            user: None,
            csrf: String::new(),
            queue_count: 0,
            section: "",
            flash: vec![],
        }
    }
}

pub(crate) async fn layout(
    state: &State,
    w: &WebUser,
    section: &'static str,
    req: &HttpRequest,
) -> Layout {
    let user = w.user.clone();
    let st = state.clone();
    let count = with_conn(state, move |conn| st.badges.count(conn, &st.schema, &user))
        .await
        .unwrap_or(0);
    let flash = req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("done="))
        .map(|m| vec![flash_text(m).to_string()])
        .unwrap_or_default();
    Layout {
        user: Some(UserBox {
            name: w.user.name.clone(),
            teams: w.user.teams.join(", "),
            admin: w.user.is_admin,
        }),
        csrf: w.csrf.clone(),
        queue_count: count,
        section,
        flash,
    }
}

pub(crate) fn flash_text(code: &str) -> &'static str {
    match code {
        "signed" => "Your sign-off is recorded.",
        "submitted" => "Submitted: both teams can now sign it.",
        "created" => "Change created and submitted for sign-off.",
        "rejected" => "The change is rejected.",
        "cancelled" => "The change is cancelled.",
        "commented" => "Comment added.",
        "executing" => "Execution started.",
        "resumed" => "Execution resumed.",
        "aborted" => "Execution aborted.",
        "rollback" => "Rollback created: it needs its sign-offs.",
        "resolved" => "Resolved again against today's inventory.",
        "saved" => "Saved.",
        "token" => "Token revoked.",
        "password" => {
            "Your password is changed. Your other sessions are signed out; API tokens stay valid."
        }
        "session" => "That session is signed out.",
        "sessions" => "All your other sessions are signed out.",
        _ => "Done.",
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) l: Layout,
    pub(crate) status: u16,
    pub(crate) heading: String,
    pub(crate) message: String,
    pub(crate) request_id: String,
}

pub(crate) fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

pub(crate) fn html(status: StatusCode, body: Result<String, askama::Error>) -> HttpResponse {
    match body {
        Ok(b) => HttpResponse::build(status)
            .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
            .body(b),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::InternalServerError().body("template error")
        }
    }
}

/// An error as a page in the layout: 4xx with the service's message, 500 with the request id.
pub fn error_page(req: &HttpRequest, l: Layout, e: &AppError) -> HttpResponse {
    let (status, heading, message) = match e {
        AppError::Client { message, .. } => {
            let status = e.status();
            let heading = match status.as_u16() {
                404 => "Not found",
                403 => "Not allowed",
                409 => "That cannot be done now",
                429 => "Too many attempts",
                _ => "That did not work",
            };
            (status, heading.to_string(), message.clone())
        }
        other => {
            tracing::error!(error = %other, "page failed");
            (
                e.status(),
                "Something went wrong on our side".into(),
                "The error is logged. Tell the countersign admins the request id below.".into(),
            )
        }
    };
    html(
        status,
        ErrorPage {
            l,
            status: status.as_u16(),
            heading,
            message,
            request_id: request_id(req),
        }
        .render(),
    )
}

/// A malformed path or query: JSON for the API, a page for the web app.
pub fn bad_request(
    req: &HttpRequest,
    code: ErrorCode,
    message: String,
    cause: impl std::fmt::Debug + std::fmt::Display + 'static,
) -> actix_web::Error {
    let e = AppError::new(code, message);
    if req.path().starts_with("/api/") {
        return e.into();
    }
    actix_web::error::InternalError::from_response(cause, error_page(req, Layout::anonymous(), &e))
        .into()
}

pub async fn not_found_page(req: HttpRequest) -> HttpResponse {
    error_page(
        &req,
        Layout::anonymous(),
        &AppError::new(
            ErrorCode::NotFound,
            format!("There is no page at {}.", req.path()),
        ),
    )
}

pub(crate) fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to.to_string()))
        .finish()
}

pub(crate) fn csrf_error() -> AppError {
    AppError::new(ErrorCode::Csrf,
        "This form is out of date or did not come from countersign (its security token is missing or wrong). Go back, reload the page and try again.",
    )
}

macro_rules! page_try {
    ($req:expr, $state:expr, $w:expr, $section:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => {
                let l = layout($state, $w, $section, $req).await;
                return error_page($req, l, &err);
            }
        }
    };
}
pub(crate) use page_try;

/// Refuse a form whose CSRF token is not the session's, with the error page.
macro_rules! csrf_guard {
    ($req:expr, $state:expr, $w:expr, $section:expr, $given:expr) => {
        if !csrf_ok(&$w.csrf, $given) {
            let l = layout($state, $w, $section, $req).await;
            return error_page($req, l, &csrf_error());
        }
    };
}
pub(crate) use csrf_guard;

// ---- static assets --------------------------------------------------------------------

pub async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(include_str!("../../../static/app.css"))
}

pub async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(include_str!("../../../static/app.js"))
}
