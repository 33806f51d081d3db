//! A person's own account in the web app: the password page (`/settings/password`) and
//! the sessions page (`/settings/sessions`). What the `WebUser` extractor does on every
//! page request (recording a session's use, the must-change-password gate) is
//! `session_use`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::pages::{html, layout, safe_next, see_other, Layout, PageResult};
use super::session::{self, WebUser, SESSION_COOKIE};
use super::session_use::PASSWORD_PATH;
use super::{run_as, with_conn, State};
use crate::db::users;
use crate::domain::account::{new_password_problems, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
use crate::error::{AppError, ErrorCode};
use crate::service::accounts as svc;

// ---- the password page -----------------------------------------------------------------

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    l: Layout,
    email: String,
    forced: bool,
    errors: Vec<String>,
    next: String,
    min_chars: usize,
    /// Why there is no password to change here (single sign-on), if so.
    no_password: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

async fn password_page(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    status: StatusCode,
    errors: Vec<String>,
    next: String,
) -> HttpResponse {
    let id = w.user.id;
    let has_password = with_conn(state, move |conn| Ok(users::password_hash_of(conn, id)?))
        .await
        .map(|h| h.is_some())
        .unwrap_or(true);
    let no_password = if !has_password {
        Some(
            "You sign in with single sign-on: your account has no countersign password to change."
                .to_string(),
        )
    } else if !state.config.password_login {
        Some("Password sign-in is turned off here: you sign in with single sign-on.".to_string())
    } else {
        None
    };
    let mut r = html(
        status,
        PasswordPage {
            l: layout(req, state, w).await,
            email: w.user.email.clone(),
            forced: w.must_change_password,
            errors,
            next,
            min_chars: MIN_PASSWORD_CHARS,
            no_password,
        }
        .render(),
    );
    no_store(&mut r);
    r
}

fn no_store(r: &mut HttpResponse) {
    r.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
}

pub async fn password_form(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<NextQuery>,
) -> HttpResponse {
    let next = safe_next(q.next.as_deref());
    password_page(&req, &state, &w, StatusCode::OK, vec![], next).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    repeat: String,
    #[serde(default)]
    next: String,
}

/// Check the current password and the rules, hash the new one (both without holding a
/// database connection), then change it in one transaction that signs out every other
/// session and re-issues this one.
pub async fn change_password(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<PasswordForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let f = form.into_inner();
    let next = safe_next(Some(&f.next));
    let email = w.user.email.clone();
    let mut errors: Vec<String> = new_password_problems(&f.new, &f.repeat, &email, &f.current)
        .iter()
        .map(ToString::to_string)
        .collect();
    let id = w.user.id;
    let stored = with_conn(&state, move |conn| Ok(users::password_hash_of(conn, id)?)).await?;
    if stored.is_none() || !state.config.password_login {
        // The page says why there is nothing to change; the form is not offered.
        return Ok(password_page(&req, &state, &w, StatusCode::FORBIDDEN, vec![], next).await);
    }
    let current_ok = match stored.clone() {
        _ if f.current.is_empty() => {
            errors.insert(0, "Enter your current password.".into());
            false
        }
        Some(hash) if f.current.len() <= MAX_PASSWORD_BYTES => {
            // A guess at the current password counts like a failed login for this address.
            let client = super::session::client_of(req.peer_addr().map(|a| a.ip()));
            if let Err(t) = state.limiter.attempt(&email, &client) {
                let msg = t.message();
                return Ok(
                    password_page(&req, &state, &w, t.code().status(), vec![msg], next).await,
                );
            }
            let given = f.current.clone();
            let ok = state
                .limiter
                .check(move || users::verify_password(&hash, &given))
                .await
                .unwrap_or(false);
            if ok {
                state.limiter.succeeded(&email, &client);
            } else {
                state.limiter.failed(&client);
            }
            ok
        }
        _ => false,
    };
    if !current_ok && !f.current.is_empty() {
        errors.insert(0, "The current password is not right.".into());
    }
    let (true, Some(old_hash)) = (errors.is_empty(), stored) else {
        return Ok(password_page(
            &req,
            &state,
            &w,
            ErrorCode::FormProblems.status(),
            errors,
            next,
        )
        .await);
    };
    let new = f.new;
    let new_hash = state
        .limiter
        .check(move || users::hash_password(&new))
        .await
        .map_err(|t| AppError::new(t.code(), t.message()))?;
    let done = run_as(&state, w.user.clone(), move |conn, _, user| {
        svc::change_password(
            conn,
            user,
            &old_hash,
            &new_hash,
            chrono::Duration::hours(session::SESSION_HOURS),
        )
    })
    .await;
    let s = match done {
        Ok(s) => s,
        Err(e @ AppError::Client { .. }) => {
            return Ok(password_page(&req, &state, &w, e.status(), vec![e.to_string()], next).await)
        }
        Err(e) => return Err(e.into()),
    };
    let to = if w.must_change_password {
        with_done(&next, "password")
    } else {
        format!("{PASSWORD_PATH}?done=password")
    };
    let mut r = see_other(&to);
    let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, &s.token));
    Ok(r)
}

/// `path` with `done=<code>` added to its query (the layout shows that code's message).
fn with_done(path: &str, code: &str) -> String {
    let (p, frag) = path.split_once('#').unwrap_or((path, ""));
    let sep = if p.contains('?') { '&' } else { '?' };
    let frag = if frag.is_empty() {
        String::new()
    } else {
        format!("#{frag}")
    };
    format!("{p}{sep}done={code}{frag}")
}

// ---- the sessions page -----------------------------------------------------------------

pub struct SessionItem {
    pub id: String,
    pub current: bool,
    pub created: String,
    pub expires: String,
    pub last_seen: String,
    pub browser: String,
    pub network: String,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    l: Layout,
    sessions: Vec<SessionItem>,
    others: usize,
}

fn when(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub async fn sessions(req: HttpRequest, state: State, w: WebUser) -> PageResult {
    let (id, token) = (w.user.id, w.token.clone());
    let rows = with_conn(&state, move |conn| {
        Ok(users::sessions_of(conn, id, &token)?)
    })
    .await?;
    let others = rows.iter().filter(|r| !r.current).count();
    let page = SessionsPage {
        l: layout(&req, &state, &w).await,
        sessions: rows
            .into_iter()
            .map(|r| SessionItem {
                id: r.public_id,
                current: r.current,
                created: when(r.created_at),
                expires: when(r.expires_at),
                last_seen: r.last_seen_at.map(when).unwrap_or_else(|| "—".into()),
                browser: r.user_agent.unwrap_or_else(|| "unknown".into()),
                network: r.ip_prefix.unwrap_or_else(|| "unknown".into()),
            })
            .collect(),
        others,
    };
    Ok(html(StatusCode::OK, page.render()))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn revoke_session(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let public_id = path.into_inner();
    let (user, token) = (w.user.clone(), w.token.clone());
    let was_current = with_conn(&state, move |conn| {
        svc::revoke_session(conn, &user, &public_id, &token)
    })
    .await?;
    if was_current {
        let mut r = see_other("/login");
        let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, ""));
        return Ok(r);
    }
    Ok(see_other("/settings/sessions?done=session"))
}

pub async fn revoke_other_sessions(
    state: State,
    w: WebUser,
    form: web::Form<CsrfOnly>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let (user, token) = (w.user.clone(), w.token.clone());
    with_conn(&state, move |conn| {
        svc::revoke_other_sessions(conn, &user, &token)
    })
    .await?;
    Ok(see_other("/settings/sessions?done=sessions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_where_one_was_after_a_new_password() {
        assert_eq!(
            with_done("/queue?x=1", "password"),
            "/queue?x=1&done=password"
        );
        assert_eq!(with_done("/", "password"), "/?done=password");
    }
}
