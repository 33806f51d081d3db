//! A team's chat and event hooks page: the hooks with their latest deliveries, a form to
//! add one (re-shown with its problems and what was typed), delete and test buttons.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;

use super::{html, layout, see_other, CsrfForm, Layout, PageResult};
use crate::error::ErrorCode;
use crate::service::hooks::{self as svc, CreatedHook, DeliveryView, HookView, NewHookInput};
use crate::web::session::WebUser;
use crate::web::{run_as, State};

/// One hook with its recent deliveries.
pub(crate) struct HookRow {
    pub(crate) hook: HookView,
    pub(crate) events: String,
    pub(crate) deliveries: Vec<DeliveryView>,
}

#[derive(Template)]
#[template(path = "hooks.html")]
pub(crate) struct HooksPage {
    pub(crate) l: Layout,
    pub(crate) team: String,
    /// `team` as a URL path segment.
    pub(crate) team_path: String,
    pub(crate) hooks: Vec<HookRow>,
    /// (value, label, selected).
    pub(crate) formats: Vec<(String, &'static str, bool)>,
    /// (value, label, checked).
    pub(crate) events: Vec<(String, &'static str, bool)>,
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) problems: Vec<String>,
    /// A JSON hook just created: its secret, shown this once.
    pub(crate) created: Option<(String, String)>,
}

/// `s` as one URL path segment (team names are free text).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn render(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    team: String,
    typed: Option<&NewHookInput>,
    problems: Vec<String>,
    created: Option<CreatedHook>,
) -> PageResult {
    let (list, deliveries) = run_as(state, w.user.clone(), move |conn, _, user| {
        svc::page(conn, user, &team, 10)
    })
    .await?;
    let rows: Vec<HookRow> = list
        .hooks
        .iter()
        .zip(deliveries)
        .map(|(h, d)| HookRow {
            events: h
                .events
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            hook: h.clone(),
            deliveries: d,
        })
        .collect();
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        ErrorCode::InvalidHook.status()
    };
    let format = typed.map(|t| t.format.as_str()).unwrap_or("slack");
    let checked = |k: &str| typed.is_some_and(|t| t.events.iter().any(|e| e == k));
    let page = HooksPage {
        l: layout(req, state, w).await,
        formats: list
            .formats
            .iter()
            .map(|(f, label)| (f.to_string(), *label, f.as_str() == format))
            .collect(),
        events: list
            .events
            .iter()
            .map(|(k, label)| (k.to_string(), *label, checked(k.as_str())))
            .collect(),
        name: typed.map(|t| t.name.clone()).unwrap_or_default(),
        url: typed.map(|t| t.url.clone()).unwrap_or_default(),
        team_path: segment(&list.team),
        team: list.team,
        hooks: rows,
        problems,
        created: created.and_then(|c| c.secret.map(|s| (c.hook.name, s))),
    };
    Ok(html(status, page.render()))
}

/// `GET /teams/{team}/hooks`
pub async fn hooks_page(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> PageResult {
    render(&req, &state, &w, path.into_inner(), None, vec![], None).await
}

/// `POST /teams/{team}/hooks`: `csrf`, `name`, `format`, `url`, `secret` and one
/// `events` pair per box ticked.
pub async fn create_hook(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let team = path.into_inner();
    let mut csrf = String::new();
    let mut input = NewHookInput::default();
    for (k, v) in form.into_inner() {
        match k.as_str() {
            "csrf" => csrf = v,
            "name" => input.name = v,
            "format" => input.format = v,
            "url" => input.url = v,
            "secret" => input.secret = Some(v).filter(|s| !s.is_empty()),
            "events" if input.events.len() < 64 => input.events.push(v),
            _ => {}
        }
    }
    w.check_csrf(&csrf)?;
    let typed = input.clone();
    let t = team.clone();
    let made = run_as(&state, w.user.clone(), move |conn, _, user| {
        svc::create(conn, user, &t, &input)
    })
    .await;
    match made {
        Ok(created) if created.secret.is_some() => {
            render(&req, &state, &w, team, None, vec![], Some(created)).await
        }
        Ok(_) => Ok(see_other(&format!(
            "/teams/{}/hooks?done=hook_saved",
            segment(&team)
        ))),
        Err(e) if e.code() == ErrorCode::InvalidHook => {
            let problems = e.details()["problems"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_else(|| vec![e.to_string()]);
            render(&req, &state, &w, team, Some(&typed), problems, None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /teams/{team}/hooks/{id}/delete`
pub async fn delete_hook(
    state: State,
    w: WebUser,
    path: web::Path<(String, i64)>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let (team, id) = path.into_inner();
    let t = team.clone();
    run_as(&state, w.user.clone(), move |conn, _, user| {
        svc::delete(conn, user, &t, id)
    })
    .await?;
    Ok(see_other(&format!(
        "/teams/{}/hooks?done=hook_deleted",
        segment(&team)
    )))
}

/// `POST /teams/{team}/hooks/{id}/test`
pub async fn test_hook(
    state: State,
    w: WebUser,
    path: web::Path<(String, i64)>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let (team, id) = path.into_inner();
    let t = team.clone();
    run_as(&state, w.user.clone(), move |conn, _, user| {
        svc::test(conn, user, &t, id)
    })
    .await?;
    Ok(see_other(&format!(
        "/teams/{}/hooks?done=hook_tested",
        segment(&team)
    )))
}
