//! Admins: people and teams (create a team, add and remove members, create a person with
//! an initial password, reset a password, deactivate and reactivate) and the audit chain's
//! check. The same services
//! as the command line; a refused form is shown again with the reason and what was typed.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde::Deserialize;

use super::{html, layout, Layout, PageResult};
use crate::error::AppError;
use crate::service::admin::{self as svc, Directory};
use crate::service::people::{self, Acting};
use crate::web::session::WebUser;
use crate::web::{run_as, with_conn, State};

#[derive(Template)]
#[template(path = "admin_people.html")]
pub(crate) struct PeoplePage {
    pub(crate) l: Layout,
    pub(crate) d: Directory,
    /// What was done, in words.
    pub(crate) done: Option<String>,
    /// A password to hand over, shown once: (email, password).
    pub(crate) password: Option<(String, String)>,
    pub(crate) problem: Option<String>,
    /// What the new-person form held when it was refused.
    pub(crate) typed: PersonForm,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PersonForm {
    #[serde(default)]
    pub(crate) email: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) admin: Option<String>,
    /// Comma-separated team names.
    #[serde(default)]
    pub(crate) teams: String,
}

struct Outcome {
    done: Option<String>,
    password: Option<(String, String)>,
    problem: Option<String>,
    typed: PersonForm,
}

async fn render(req: &HttpRequest, state: &State, w: &WebUser, o: Outcome) -> PageResult {
    let d = run_as(state, w.user.clone(), |conn, _, user| {
        svc::directory(conn, user)
    })
    .await?;
    let status = if o.problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = PeoplePage {
        l: layout(req, state, w).await,
        d,
        done: o.done,
        password: o.password,
        problem: o.problem,
        typed: o.typed,
    };
    Ok(html(status, page.render()))
}

/// The page again after an act: its message, or its refusal (kept on the page, never a
/// dead end); a refusal for not being an admin is the error page.
async fn after(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    r: Result<(String, Option<(String, String)>), AppError>,
    typed: PersonForm,
) -> PageResult {
    match r {
        Ok((done, password)) => {
            let o = Outcome {
                done: Some(done),
                password,
                problem: None,
                typed: PersonForm::default(),
            };
            render(req, state, w, o).await
        }
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::FORBIDDEN => {
            let o = Outcome {
                done: None,
                password: None,
                problem: Some(e.to_string()),
                typed,
            };
            render(req, state, w, o).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /admin/people`
pub async fn people(req: HttpRequest, state: State, w: WebUser) -> PageResult {
    let o = Outcome {
        done: None,
        password: None,
        problem: None,
        typed: PersonForm::default(),
    };
    render(&req, &state, &w, o).await
}

#[derive(Deserialize)]
pub struct TeamForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /admin/teams`
pub async fn create_team(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<TeamForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let name = form.name.trim().to_string();
    let r = run_as(&state, w.user.clone(), move |conn, _, user| {
        svc::create_team(conn, user, &name)?;
        Ok((format!("Team {name} created."), None))
    })
    .await;
    after(&req, &state, &w, r, PersonForm::default()).await
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// `POST /admin/teams/{team}/members`
pub async fn add_member(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<MemberForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let team = path.into_inner();
    let email = form.email.trim().to_lowercase();
    let r = run_as(&state, w.user.clone(), move |conn, _, user| {
        svc::add_member(conn, user, &team, &email)?;
        Ok((format!("{email} is a member of {team}."), None))
    })
    .await;
    after(&req, &state, &w, r, PersonForm::default()).await
}

/// `POST /admin/teams/{team}/members/remove`
pub async fn remove_member(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<MemberForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let team = path.into_inner();
    let email = form.email.trim().to_lowercase();
    let r = run_as(&state, w.user.clone(), move |conn, schema, user| {
        let done = match svc::remove_member(conn, schema, user, &team, &email)? {
            None => format!("{email} was not a member of {team}."),
            Some(back) if back.is_empty() => format!("{email} is no longer in {team}."),
            Some(back) => format!(
                "{email} is no longer in {team}. Back to awaiting sign-off (their approval rested on {email}'s sign-off): {}.",
                back.iter().map(|id| crate::service::views::number(*id)).collect::<Vec<_>>().join(", ")
            ),
        };
        Ok((done, None))
    })
    .await;
    after(&req, &state, &w, r, PersonForm::default()).await
}

#[derive(Deserialize)]
pub struct NewPersonForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    person: PersonForm,
}

/// `POST /admin/people`: a new person, their initial password shown once.
pub async fn create_person(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<NewPersonForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let p = form.into_inner().person;
    let typed = p.clone();
    let r = run_as(&state, w.user.clone(), move |conn, _, user| {
        let teams: Vec<String> = p
            .teams
            .split([',', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .take(50)
            .map(str::to_string)
            .collect();
        let email = p.email.trim().to_lowercase();
        let pw = svc::create_person(conn, user, &email, &p.name, &teams, p.admin.is_some())?;
        Ok((
            format!(
                "{email} can sign in now; they choose their own password at the first sign-in."
            ),
            Some((email, pw)),
        ))
    })
    .await;
    after(&req, &state, &w, r, typed).await
}

/// `POST /admin/people/reset`: a new password shown once; their sessions end.
pub async fn reset_password(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<MemberForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let email = form.email.trim().to_lowercase();
    let r = run_as(&state, w.user.clone(), move |conn, _, user| {
        let pw = svc::reset_password(conn, user, &email)?;
        Ok((format!("The password of {email} is reset and their sessions are signed out; they choose a new one at the next sign-in (API tokens stay valid)."), Some((email, pw))))
    })
    .await;
    after(&req, &state, &w, r, PersonForm::default()).await
}

/// `POST /admin/people/deactivate`: they sign in no more, their sessions end, their
/// tokens and sign-offs stop counting (`service::people::deactivate`).
pub async fn deactivate(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<MemberForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let email = form.email.trim().to_lowercase();
    let r = run_as(&state, w.user.clone(), move |conn, schema, user| {
        let done = match people::deactivate(conn, schema, Acting::Admin(user), &email)? {
            None => format!("{email} was deactivated already."),
            Some(d) => {
                let mut m = format!(
                    "{email} is deactivated: they cannot sign in, {} session(s) ended, {} API token(s) refused, their sign-offs no longer count.",
                    d.sessions_ended, d.tokens_suspended
                );
                if !d.sent_back.is_empty() {
                    m.push_str(&format!(
                        " Back to awaiting sign-off (their approval rested on {email}'s sign-off): {}.",
                        d.sent_back.iter().map(|id| crate::service::views::number(*id)).collect::<Vec<_>>().join(", ")
                    ));
                }
                m
            }
        };
        Ok((done, None))
    })
    .await;
    after(&req, &state, &w, r, PersonForm::default()).await
}

/// `POST /admin/people/reactivate`.
pub async fn reactivate(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<MemberForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let email = form.email.trim().to_lowercase();
    let r = run_as(&state, w.user.clone(), move |conn, _, user| {
        let done = if people::reactivate(conn, Acting::Admin(user), &email)? {
            format!("{email} is active again: they can sign in, and their API tokens that are not revoked or expired work again.")
        } else {
            format!("{email} was not deactivated.")
        };
        Ok((done, None))
    })
    .await;
    after(&req, &state, &w, r, PersonForm::default()).await
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub(crate) struct AuditPage {
    pub(crate) l: Layout,
    pub(crate) intact: bool,
    pub(crate) events: u64,
    pub(crate) broken_at: Option<i64>,
    pub(crate) reason: String,
}

/// `GET /admin/audit`: `audit verify` and its result.
pub async fn audit(req: HttpRequest, state: State, w: WebUser) -> PageResult {
    if !w.user.is_admin {
        return Err(AppError::new(
            crate::error::ErrorCode::Forbidden,
            "only admins verify the audit trail",
        )
        .into());
    }
    let v = with_conn(&state, |conn| Ok(crate::db::audit::verify(conn)?)).await?;
    let (intact, events, broken_at, reason) = match v {
        crate::db::audit::Verdict::Intact { events } => (true, events, None, String::new()),
        crate::db::audit::Verdict::Broken { id, reason } => (false, 0, Some(id), reason),
    };
    let page = AuditPage {
        l: layout(&req, &state, &w).await,
        intact,
        events,
        broken_at,
        reason,
    };
    Ok(html(StatusCode::OK, page.render()))
}
