//! The customer notices page of a change (`/changes/{id}/notices`): preview and draft a
//! notice, and approve (which sends) or discard drafts. The buttons shown are exactly the
//! ones `domain::notice::decide` allows; the services decide again when a form arrives.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde::Deserialize;

use super::pages::{html, layout, see_other, Layout, PageResult};
use super::session::WebUser;
use super::{run_as, State};
use crate::db::DbConn;
use crate::domain::notice::SEND_INTERVAL_MINUTES;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::change_id;
use crate::service::contacts::{self as svc, NoticeBoard, NoticeRequest, NoticeView, ROLES};
use crate::service::views::number;
use crate::service::CurrentUser;

/// One recorded notice as the page shows it.
pub struct NoticeRow {
    pub id: i64,
    pub state: String,
    pub subject: String,
    /// The first recipient's text (placeholders filled in).
    pub text: String,
    pub body_sha256: String,
    pub recipient_count: usize,
    /// (customer, person, role)
    pub recipients: Vec<(String, String, String)>,
    pub history: Vec<String>,
    pub can_approve: bool,
    pub can_discard: bool,
    pub cannot_approve: String,
}

fn when(t: Option<chrono::NaiveDateTime>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn recipients(v: &NoticeView) -> Vec<(String, String, String)> {
    v.recipients
        .iter()
        .map(|r| {
            (
                format!("{} ({})", r.root_name, r.root),
                format!("{} <{}>", r.name, r.email),
                r.role.clone(),
            )
        })
        .collect()
}

fn row(v: &NoticeView) -> NoticeRow {
    let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "—".into());
    let mut history = vec![format!(
        "Drafted by {}{} on {}",
        or_dash(&v.drafted_by),
        v.drafter_team
            .as_deref()
            .map(|t| format!(" for {t}"))
            .unwrap_or_default(),
        when(v.drafted_at)
    )];
    match v.state.as_str() {
        "sent" => history.push(format!(
            "Approved and sent by {} on {}",
            or_dash(&v.sent_by),
            when(v.sent_at)
        )),
        "discarded" => history.push(format!(
            "Discarded by {} on {}",
            or_dash(&v.discarded_by),
            when(v.discarded_at)
        )),
        _ => history.push(format!(
            "Waiting for approval by a member of {}",
            or_dash(&v.approver_team)
        )),
    }
    NoticeRow {
        id: v.id.unwrap_or_default(),
        state: v.state.clone(),
        subject: v.subject.clone(),
        text: v.sample.clone().unwrap_or_else(|| v.body.clone()),
        body_sha256: v.body_sha256.clone().unwrap_or_else(|| "—".into()),
        recipient_count: v.recipient_count,
        recipients: recipients(v),
        history,
        can_approve: v.allowed_actions.contains(&"approve"),
        can_discard: v.allowed_actions.contains(&"discard"),
        cannot_approve: v.cannot_approve.clone().unwrap_or_default(),
    }
}

pub struct PreviewBox {
    pub subject: String,
    pub text: String,
    pub recipient_count: usize,
    pub recipients: Vec<(String, String, String)>,
    pub without: Vec<String>,
}

#[derive(Template)]
#[template(path = "notices.html")]
struct NoticesPage {
    l: Layout,
    b: NoticeBoard,
    rows: Vec<NoticeRow>,
    errors: Vec<String>,
    subject: String,
    body: String,
    /// (role, ticked)
    roles: Vec<(&'static str, bool)>,
    preview: Option<PreviewBox>,
    interval: i64,
    next_send: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct NoticeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    role_admin: Option<String>,
    #[serde(default)]
    role_billing: Option<String>,
    #[serde(default)]
    role_technical: Option<String>,
    /// The button pressed: `preview` or `draft`.
    #[serde(default)]
    intent: String,
}

impl NoticeForm {
    fn roles(&self) -> Vec<(&'static str, bool)> {
        ROLES
            .iter()
            .map(|r| {
                let ticked = match *r {
                    "admin" => self.role_admin.is_some(),
                    "billing" => self.role_billing.is_some(),
                    _ => self.role_technical.is_some(),
                };
                (*r, ticked)
            })
            .collect()
    }
}

fn flash(req: &HttpRequest) -> Vec<String> {
    let done = req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("done="));
    match done {
        Some("drafted") => vec![
            "Draft saved. A member of the other team must approve it; nothing is sent until then."
                .into(),
        ],
        Some("sent") => vec!["Approved: the notice is on its way to every recipient.".into()],
        Some("discarded") => vec!["The draft is discarded; nothing was sent.".into()],
        _ => vec![],
    }
}

/// What the page shows besides the board: the form as given, messages, a preview.
#[derive(Default)]
struct Shown {
    form: NoticeForm,
    errors: Vec<String>,
    preview: Option<PreviewBox>,
}

async fn render(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    id: i64,
    shown: Shown,
    status: StatusCode,
) -> PageResult {
    let Shown {
        form,
        errors,
        preview,
    } = shown;
    let b = run_as(state, w.user.clone(), move |conn, _, viewer| {
        svc::board(conn, viewer, id)
    })
    .await?;
    let mut l = layout(req, state, w).await;
    l.flash = flash(req);
    let page = NoticesPage {
        l,
        rows: b.notices.iter().map(row).collect(),
        next_send: when(b.next_send_at),
        b,
        errors,
        roles: form.roles(),
        subject: form.subject,
        body: form.body,
        preview,
        interval: SEND_INTERVAL_MINUTES,
    };
    Ok(html(status, page.render()))
}

/// `GET /changes/{id}/notices`
pub async fn notices(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> PageResult {
    let id = change_id(&path)?;
    render(&req, &state, &w, id, Shown::default(), StatusCode::OK).await
}

/// A client error re-renders the page with its message (and the form as it was); anything
/// else is the error page.
async fn refused(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    id: i64,
    form: NoticeForm,
    e: AppError,
) -> PageResult {
    match &e {
        AppError::Client { code, message, .. } if *code != ErrorCode::NotFound => {
            let shown = Shown {
                form,
                errors: vec![message.clone()],
                preview: None,
            };
            render(req, state, w, id, shown, e.status()).await
        }
        _ => Err(e.into()),
    }
}

/// `POST /changes/{id}/notices`: preview (`intent=preview`) or save a draft.
pub async fn draft(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<NoticeForm>,
) -> PageResult {
    let f = form.into_inner();
    w.check_csrf(&f.csrf)?;
    let id = change_id(&path)?;
    let preview = f.intent != "draft";
    let request = NoticeRequest {
        subject: f.subject.clone(),
        body: f.body.clone(),
        roles: f
            .roles()
            .into_iter()
            .filter(|r| r.1)
            .map(|r| r.0.to_string())
            .collect(),
        preview,
    };
    let result = run_as(&state, w.user.clone(), move |conn, _, user| {
        svc::draft(conn, user, id, request)
    })
    .await;
    match result {
        Ok(v) if preview => {
            let p = PreviewBox {
                subject: v.subject.clone(),
                text: v.sample.clone().unwrap_or_default(),
                recipient_count: v.recipient_count,
                recipients: recipients(&v),
                without: v.roots_without_contacts.clone(),
            };
            let shown = Shown {
                form: f,
                errors: vec![],
                preview: Some(p),
            };
            render(&req, &state, &w, id, shown, StatusCode::OK).await
        }
        Ok(v) => Ok(see_other(&format!(
            "/changes/{}/notices?done=drafted#notice-{}",
            number(id),
            v.id.unwrap_or_default()
        ))),
        Err(e) => refused(&req, &state, &w, id, f, e).await,
    }
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
}

/// A decision on notice `nid` of the change `raw` names: `f` (approve or discard), then
/// back to the notices page with the message `done`.
async fn decide<F>(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    (raw, nid): (String, i64),
    csrf: &str,
    done: &str,
    f: F,
) -> PageResult
where
    F: FnOnce(&mut DbConn, &CurrentUser, i64, i64) -> AppResult<NoticeView> + Send + 'static,
{
    w.check_csrf(csrf)?;
    let id = change_id(&raw)?;
    match run_as(state, w.user.clone(), move |conn, _, user| {
        f(conn, user, id, nid)
    })
    .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/changes/{}/notices?done={done}#notice-{nid}",
            number(id)
        ))),
        Err(e) => refused(req, state, w, id, NoticeForm::default(), e).await,
    }
}

/// `POST /changes/{id}/notices/{nid}/approve`: sends it.
pub async fn approve(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<(String, i64)>,
    form: web::Form<DecisionForm>,
) -> PageResult {
    let path = path.into_inner();
    decide(&req, &state, &w, path, &form.csrf, "sent", svc::approve).await
}

/// `POST /changes/{id}/notices/{nid}/discard`
pub async fn discard(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<(String, i64)>,
    form: web::Form<DecisionForm>,
) -> PageResult {
    let path = path.into_inner();
    decide(
        &req,
        &state,
        &w,
        path,
        &form.csrf,
        "discarded",
        svc::discard,
    )
    .await
}
