//! A person's settings: notification preferences and API tokens.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, layout, see_other, CsrfForm, Layout, PageResult};
use crate::db::users;
use crate::domain::account::{token_expiry, DEFAULT_TOKEN_DAYS, TOKEN_LIFETIMES};
use crate::domain::event::Event;
use crate::error::{AppError, ErrorCode};
use crate::service::events::record;
use crate::web::session::WebUser;
use crate::web::{run_as, State};

// ---- settings: notifications and API tokens -------------------------------------------

pub struct PrefRow {
    pub kind: String,
    pub description: String,
    pub options: Vec<(String, bool)>,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub(crate) struct SettingsPage {
    pub(crate) l: Layout,
    pub(crate) prefs: Vec<PrefRow>,
    pub(crate) tokens: Vec<TokenItem>,
    pub(crate) new_token: Option<String>,
    pub(crate) email: String,
    /// (team, its hooks page).
    pub(crate) teams: Vec<(String, String)>,
    /// (value, label, selected) for the new token's lifetime.
    pub(crate) lifetimes: Vec<(String, String, bool)>,
}

pub struct TokenItem {
    pub id: i64,
    pub label: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
}

pub(crate) async fn settings_page(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    new_token: Option<String>,
) -> PageResult {
    let data = run_as(state, w.user.clone(), move |conn, _, user| {
        let prefs = crate::service::notifications::preferences(conn, user)?;
        let tokens = users::tokens_of(conn, user.id)?;
        Ok((prefs, tokens))
    })
    .await;
    let (prefs, tokens) = data?;
    let page = SettingsPage {
        l: layout(req, state, w).await,
        prefs: prefs
            .into_iter()
            .map(|p| PrefRow {
                options: p
                    .allowed
                    .iter()
                    .map(|m| (m.to_string(), *m == p.mode))
                    .collect(),
                kind: p.kind,
                description: p.description,
            })
            .collect(),
        tokens: {
            let t = crate::db::now();
            tokens
                .into_iter()
                .map(|r| TokenItem {
                    status: if r.revoked_at.is_some() {
                        "revoked"
                    } else if r.expires_at.is_some_and(|e| e <= t) {
                        "expired"
                    } else {
                        "active"
                    },
                    id: r.id,
                    label: r.label,
                    created: r.created_at.format("%Y-%m-%d").to_string(),
                    expires: r
                        .expires_at
                        .map(|e| e.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_else(|| "never".into()),
                    last_used: r
                        .last_used_at
                        .map(|u| u.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_else(|| "never".into()),
                })
                .collect()
        },
        email: w.user.email.clone(),
        teams: w
            .user
            .teams
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    format!("/teams/{}/hooks", super::hooks::segment(t)),
                )
            })
            .collect(),
        new_token,
        lifetimes: lifetimes(),
    };
    let secret = page.new_token.is_some();
    let mut r = html(StatusCode::OK, page.render());
    if secret {
        // The page shows a secret once: keep it out of caches and history.
        r.headers_mut().insert(
            actix_web::http::header::CACHE_CONTROL,
            actix_web::http::header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(r)
}

pub async fn settings(req: HttpRequest, state: State, w: WebUser) -> PageResult {
    settings_page(&req, &state, &w, None).await
}

pub async fn notification_settings() -> HttpResponse {
    see_other("/settings#notifications")
}

pub async fn save_notifications(
    state: State,
    w: WebUser,
    form: web::Form<BTreeMap<String, String>>,
) -> PageResult {
    let mut f = form.into_inner();
    let given = f.remove("csrf").unwrap_or_default();
    w.check_csrf(&given)?;
    run_as(&state, w.user.clone(), move |conn, _, user| {
        crate::service::notifications::set_preferences(conn, user, &f)
    })
    .await?;
    Ok(see_other("/settings?done=saved#notifications"))
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub(crate) csrf: String,
    #[serde(default)]
    pub(crate) label: String,
    /// Days until it expires (one of `TOKEN_LIFETIMES`) or `never`.
    #[serde(default)]
    pub(crate) expires: String,
}

/// The lifetime a token form chose: days (one of `TOKEN_LIFETIMES`; `DEFAULT_TOKEN_DAYS`
/// when none was sent) or `never` (`None`).
pub(crate) fn lifetime_of(given: &str) -> Result<Option<u32>, AppError> {
    match given.trim() {
        "" => Ok(Some(DEFAULT_TOKEN_DAYS)),
        "never" => Ok(None),
        d => d
            .parse::<u32>()
            .ok()
            .filter(|n| TOKEN_LIFETIMES.contains(&Some(*n)))
            .map(Some)
            .ok_or_else(|| {
                AppError::new(
                    ErrorCode::InvalidLifetime,
                    format!(
                        "`{}` is not a token lifetime: choose 7, 30, 90 or 365 days, or never.",
                        d.chars().take(20).collect::<String>()
                    ),
                )
            }),
    }
}

/// The lifetimes a token form offers: (value, label, preselected).
pub(crate) fn lifetimes() -> Vec<(String, String, bool)> {
    TOKEN_LIFETIMES
        .iter()
        .map(|d| match d {
            Some(n) => (n.to_string(), format!("{n} days"), *n == DEFAULT_TOKEN_DAYS),
            None => ("never".into(), "never".into(), false),
        })
        .collect()
}

pub async fn create_token(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<TokenForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let label = form.label.trim().chars().take(80).collect::<String>();
    let label = if label.is_empty() {
        "web".to_string()
    } else {
        label
    };
    let days = lifetime_of(&form.expires)?;
    let token = run_as(&state, w.user.clone(), move |conn, _, user| {
        crate::db::write_tx(conn, |conn| {
            let expires_at = token_expiry(crate::db::now(), days);
            let t = users::create_token_expiring(conn, user.id, &label, expires_at)?;
            record(
                conn,
                &user.actor(),
                None,
                Event::TokenCreated {
                    email: None,
                    label: label.clone(),
                    expires_at,
                },
            )?;
            Ok(t)
        })
    })
    .await?;
    settings_page(&req, &state, &w, Some(token)).await
}

pub async fn revoke_token(
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    run_as(&state, w.user.clone(), move |conn, _, user| {
        crate::db::write_tx(conn, |tx| {
            crate::service::accounts::revoke_token(tx, &user.actor(), user.id, id, None)
        })
    })
    .await?;
    Ok(see_other("/settings?done=token#tokens"))
}
