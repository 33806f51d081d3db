//! Admins: the outbox, with retry of dead mails.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde::Deserialize;

use super::{html, layout, see_other, CsrfForm, Layout, PageResult};
use crate::domain::OutboxState;
use crate::web::session::WebUser;
use crate::web::{run_as, State};

// ---- admins: the outbox ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "outbox.html")]
pub(crate) struct OutboxPage {
    pub(crate) l: Layout,
    pub(crate) state: String,
    pub(crate) states: Vec<(&'static str, bool)>,
    pub(crate) mails: Vec<crate::service::notifications::OutboxView>,
}

#[derive(Deserialize)]
pub struct OutboxQuery {
    pub(crate) state: Option<String>,
}

pub async fn outbox(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<OutboxQuery>,
) -> PageResult {
    let st = q
        .state
        .clone()
        .unwrap_or_else(|| OutboxState::Dead.to_string());
    let filter = (st != "all").then(|| st.clone());
    let mails = run_as(&state, w.user.clone(), move |conn, _, user| {
        crate::service::notifications::outbox(conn, user, filter.as_deref(), None, 200)
    })
    .await?;
    let page = OutboxPage {
        l: layout(&req, &state, &w).await,
        states: [
            OutboxState::Dead,
            OutboxState::Pending,
            OutboxState::Sent,
            OutboxState::Digest,
        ]
        .iter()
        .map(|s| s.as_str())
        .chain(["all"])
        .map(|s| (s, s == st))
        .collect(),
        state: st,
        mails,
    };
    Ok(html(StatusCode::OK, page.render()))
}

pub async fn retry_mail(
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    run_as(&state, w.user.clone(), move |conn, _, user| {
        crate::service::notifications::retry(conn, user, id)
    })
    .await?;
    Ok(see_other("/admin/outbox?state=dead&done=saved"))
}
