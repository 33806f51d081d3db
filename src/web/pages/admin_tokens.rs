//! Admins: a person's API tokens (`/admin/people/tokens?email=…`): list them, create one
//! for the person (its secret shown once) and revoke one. The same services as
//! `countersign token create|list|revoke` (`service::people`), each act audited.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde::Deserialize;

use super::settings::{lifetime_of, lifetimes};
use super::{html, layout, Layout, PageResult};
use crate::error::AppError;
use crate::service::people::{self, Acting, PersonTokens, MAX_LABEL_CHARS};
use crate::web::session::WebUser;
use crate::web::{run_as, State};

/// One token as the page lists it.
pub(crate) struct TokenLine {
    pub(crate) id: i64,
    pub(crate) label: String,
    pub(crate) created: String,
    pub(crate) last_used: String,
    pub(crate) expires: String,
    /// `active`, `expired` or `revoked …`.
    pub(crate) status: String,
    pub(crate) active: bool,
}

#[derive(Template)]
#[template(path = "admin_tokens.html")]
pub(crate) struct TokensPage {
    pub(crate) l: Layout,
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) deactivated: bool,
    pub(crate) tokens: Vec<TokenLine>,
    pub(crate) done: Option<String>,
    /// The new token's secret, shown once.
    pub(crate) secret: Option<String>,
    pub(crate) problem: Option<String>,
    /// What the new-token form held when it was refused.
    pub(crate) label: String,
    /// (value, label, selected).
    pub(crate) lifetimes: Vec<(String, String, bool)>,
    pub(crate) max_label: usize,
}

fn when(t: Option<chrono::NaiveDateTime>, none: &str) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| none.to_string())
}

fn lines(p: &PersonTokens) -> Vec<TokenLine> {
    let now = crate::db::now();
    p.tokens
        .iter()
        .map(|t| {
            let (status, active) = match (t.revoked_at, t.expires_at) {
                (Some(r), _) => (format!("revoked {}", when(Some(r), "")), false),
                (None, Some(e)) if e <= now => ("expired".to_string(), false),
                _ => ("active".to_string(), true),
            };
            TokenLine {
                id: t.id,
                label: t.label.clone(),
                created: when(Some(t.created_at), ""),
                last_used: when(t.last_used_at, "never"),
                expires: when(t.expires_at, "never"),
                status,
                active,
            }
        })
        .collect()
}

/// What the page says besides the list.
#[derive(Default)]
struct Outcome {
    done: Option<String>,
    secret: Option<String>,
    problem: Option<String>,
    label: String,
    expires: String,
}

async fn render(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    email: String,
    o: Outcome,
) -> PageResult {
    let p = run_as(state, w.user.clone(), move |conn, _, user| {
        people::tokens(conn, Acting::Admin(user), &email)
    })
    .await?;
    let status = if o.problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut offered = lifetimes();
    if !o.expires.is_empty() {
        for x in offered.iter_mut() {
            x.2 = x.0 == o.expires;
        }
    }
    let page = TokensPage {
        l: layout(req, state, w).await,
        tokens: lines(&p),
        email: p.email,
        name: p.name,
        deactivated: p.deactivated,
        done: o.done,
        problem: o.problem,
        label: o.label,
        lifetimes: offered,
        max_label: MAX_LABEL_CHARS,
        secret: o.secret,
    };
    let secret = page.secret.is_some();
    let mut r = html(status, page.render());
    if secret {
        // The page shows a secret once: keep it out of caches and history.
        r.headers_mut().insert(
            actix_web::http::header::CACHE_CONTROL,
            actix_web::http::header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(r)
}

/// A refusal is shown on the page with what was typed (never a dead end); not being an
/// admin is the error page.
fn refused(e: AppError, label: String, expires: String) -> Result<Outcome, AppError> {
    if e.status().is_client_error() && e.status() != StatusCode::FORBIDDEN {
        Ok(Outcome {
            problem: Some(e.to_string()),
            label,
            expires,
            ..Outcome::default()
        })
    } else {
        Err(e)
    }
}

#[derive(Deserialize)]
pub struct Who {
    #[serde(default)]
    email: String,
}

/// `GET /admin/people/tokens?email=…`
pub async fn tokens(req: HttpRequest, state: State, w: WebUser, q: web::Query<Who>) -> PageResult {
    let email = q.into_inner().email;
    render(&req, &state, &w, email, Outcome::default()).await
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    label: String,
    /// Days (one of `TOKEN_LIFETIMES`) or `never`.
    #[serde(default)]
    expires: String,
}

/// `POST /admin/people/tokens`: a token for the person, its secret shown once.
pub async fn create(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<NewTokenForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let f = form.into_inner();
    let (email, label, expires) = (f.email.clone(), f.label.clone(), f.expires.clone());
    let r = match lifetime_of(&f.expires) {
        Err(e) => Err(e),
        Ok(days) => {
            run_as(&state, w.user.clone(), move |conn, _, user| {
                people::create_token(conn, Acting::Admin(user), &f.email, &f.label, days)
            })
            .await
        }
    };
    let o = match r {
        Ok((secret, expires_at)) => Outcome {
            done: Some(format!(
                "A token for {} was created; it {}.",
                email.trim().to_lowercase(),
                match expires_at {
                    Some(at) => format!("expires {}", when(Some(at), "")),
                    None => "never expires".to_string(),
                }
            )),
            secret: Some(secret),
            ..Outcome::default()
        },
        Err(e) => refused(e, label, expires)?,
    };
    render(&req, &state, &w, email, o).await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// `POST /admin/people/tokens/{id}/revoke`
pub async fn revoke(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<RevokeForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let email = form.email.clone();
    let e2 = email.clone();
    let r = run_as(&state, w.user.clone(), move |conn, _, user| {
        people::revoke_token(conn, Acting::Admin(user), &e2, id)
    })
    .await;
    let o = match r {
        Ok(()) => Outcome {
            done: Some(format!("Token {id} is revoked: it stops working at once.")),
            ..Outcome::default()
        },
        Err(e) => refused(e, String::new(), String::new())?,
    };
    render(&req, &state, &w, email, o).await
}
