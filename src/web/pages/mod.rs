//! The web app: server-rendered askama pages over the same services as the API. Every
//! page works without JavaScript; every form carries the session's CSRF token. This
//! module: the layout, page errors and static assets; one module per use case below.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use askama::Template;

use crate::error::{AppError, ErrorCode, RequestId};
use crate::web::session::WebUser;
use crate::web::{with_conn, State};

mod actions;
mod admin;
mod admin_schema;
mod admin_tokens;
mod calendar;
mod change;
mod edit;
mod entities;
mod hooks;
mod lists;
mod login;
mod new_change;
mod outbox;
mod settings;

pub use actions::{
    abort_execution, cancel_change, comment_change, continue_execution, edit_text, execute_change,
    freeze_exception, pause_execution, reject_change, resolve_change, resume_execution,
    retry_failed, rollback_change, schedule_start, sign_change, skip_drifted, skip_wave,
    submit_change, unschedule_start,
};
pub use admin::{
    add_member as admin_add_member, audit as admin_audit, create_person as admin_create_person,
    create_team as admin_create_team, deactivate as admin_deactivate, people as admin_people,
    reactivate as admin_reactivate, remove_member as admin_remove_member,
    reset_password as admin_reset_password,
};
pub use admin_schema::{history as admin_schema, version as admin_schema_version};
pub use admin_tokens::{
    create as admin_create_token, revoke as admin_revoke_token, tokens as admin_tokens,
};
pub use calendar::{
    calendar_page, confirm as confirm_proposal, decline as decline_proposal, new_feed_token,
    propose_edit, propose_freeze, propose_lift, propose_lockdown, propose_lockdown_lift,
};
pub use change::{change, change_difference_csv, change_evidence, change_targets_csv};
pub use edit::{edit_form, save_edit};
pub use entities::{entity_page, glossary, inventory_page};
pub use hooks::{
    create_hook as create_team_hook, delete_hook as delete_team_hook, hooks_page,
    test_hook as test_team_hook,
};
pub use lists::{changes, home, queue};
pub use login::{login, login_form, logout, random_password, CsrfForm};
pub(crate) use login::{random_hex, safe_next};
pub use new_change::{create_change, new_change, to_request, ChangeForm};
pub use outbox::{outbox, retry_mail};
pub use settings::{
    create_token, notification_settings, revoke_token, save_notifications, settings,
};

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
    /// The lockdown in force, in words: the banner on every page.
    pub lockdown: Option<String>,
}

impl Layout {
    pub fn anonymous() -> Layout {
        Layout {
            user: None,
            csrf: String::new(),
            queue_count: 0,
            section: "",
            flash: vec![],
            lockdown: None,
        }
    }
}

/// The layout of a page for `w`: the navigation (its section from the path), the queue
/// count, the `done=` message.
pub(crate) async fn layout(req: &HttpRequest, state: &State, w: &WebUser) -> Layout {
    let user = w.user.clone();
    let st = state.clone();
    let (count, lockdown) = with_conn(state, move |conn| {
        let count = st.badges.count(conn, &st.schema, &user)?;
        Ok((count, crate::service::calendar::lockdown_banner(conn)?))
    })
    .await
    .unwrap_or((0, None));
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
        section: section_of(req.path()),
        flash,
        lockdown,
    }
}

/// The navigation entry a page under `path` belongs to (`""`: none).
pub(crate) fn section_of(path: &str) -> &'static str {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    match path {
        "/" => "home",
        "/changes/new" => "new",
        _ if under("/changes") => "changes",
        _ if under("/queue") => "queue",
        _ if under("/inventory") => "inventory",
        _ if under("/glossary") => "glossary",
        _ if under("/settings") || under("/teams") => "settings",
        _ if under("/admin/outbox") => "outbox",
        _ if under("/admin/people") || under("/admin/teams") => "admin",
        _ if under("/admin/audit") => "audit",
        _ if under("/admin/schema") => "schema",
        _ if under("/calendar") => "calendar",
        _ => "",
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
        "continued" => "Execution continued.",
        "paused" => "Execution paused: it stops at its next batch.",
        "wave_skipped" => "The rest of the wave is skipped: continue or resume to go on.",
        "drifted_skipped" => {
            "The drifted targets are skipped: resume to go on with the rest of the wave."
        }
        "retried" => "The failed targets run again.",
        "scheduled" => {
            "The start is scheduled: the execute gate checks everything again when it is due."
        }
        "unscheduled" => "The scheduled start is called off.",
        "aborted" => "Execution aborted.",
        "rollback" => "Rollback created: it needs its sign-offs.",
        "resolved" => "Resolved again against today's inventory.",
        "saved" => "Saved.",
        "proposed" => "Proposed: it takes effect when another admin confirms it.",
        "confirmed" => "Confirmed: it is in effect now.",
        "declined" => "The proposal is withdrawn or declined.",
        "token" => "Token revoked.",
        "password" => {
            "Your password is changed. Your other sessions are signed out; API tokens stay valid."
        }
        "session" => "That session is signed out.",
        "hook_saved" => "The hook is added: events are posted to it from now on.",
        "hook_deleted" => "The hook is deleted; its undelivered messages are given up.",
        "hook_tested" => "A test message is on its way: its delivery shows below.",
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

/// A page handler's error, shown as the error page (status and message as
/// [`error_page`] gives them) in the layout of the person the handler served: see
/// [`render_errors`].
#[derive(Debug)]
pub struct PageError(pub AppError);

/// What a page handler answers.
pub type PageResult = Result<HttpResponse, PageError>;

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        PageError(e)
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status()
    }

    /// Only the status: [`render_errors`] replaces it with the page.
    fn error_response(&self) -> HttpResponse {
        HttpResponse::new(self.status_code())
    }
}

/// Middleware: a response that carries a [`PageError`] becomes the error page, in the
/// layout of the signed-in person the handler was given (the `WebUser` kept in the
/// request's extensions), or the anonymous one (`/login`).
pub async fn render_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let Some(PageError(e)) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<PageError>())
    else {
        return Ok(res.map_into_boxed_body());
    };
    let r = res.request();
    let viewer = r.extensions().get::<WebUser>().cloned();
    let state = r.app_data::<State>().cloned();
    let l = match (viewer, state) {
        (Some(w), Some(state)) => layout(r, &state, &w).await,
        _ => Layout::anonymous(),
    };
    let page = error_page(r, l, e);
    Ok(res.into_response(page))
}

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

#[cfg(test)]
mod tests {
    use super::section_of;

    #[test]
    fn each_page_is_under_its_navigation_entry() {
        for (path, section) in [
            ("/", "home"),
            ("/changes/new", "new"),
            ("/changes", "changes"),
            ("/changes/CHG-3/notices", "changes"),
            ("/queue", "queue"),
            ("/inventory/org-1", "inventory"),
            ("/glossary", "glossary"),
            ("/settings/password", "settings"),
            ("/admin/outbox/4/retry", "outbox"),
            ("/logout", ""),
            ("/changesets", ""),
        ] {
            assert_eq!(section_of(path), section, "{path}");
        }
    }
}
