//! A person's own account in the web app: the password page (`/settings/password`) and
//! the sessions page (`/settings/sessions`), plus the two small pieces the `WebUser`
//! extractor calls on every page request: [`record_use`] (a session's last use, at most
//! once a minute) and [`must_change_gate`] (someone who signed in with a printed initial
//! password sees only the password page until they replace it).

use actix_web::http::header::{LOCATION, USER_AGENT};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use serde::Deserialize;

use super::pages::{
    csrf_error, csrf_guard, error_page, html, layout, page_try, safe_next, see_other, Layout,
};
use super::session::{self, csrf_ok, urlencode, WebUser, SESSION_COOKIE};
use super::{with_conn, State};
use crate::db::users::{self, SeenFrom};
use crate::db::DbConn;
use crate::domain::account::{new_password_problems, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
use crate::error::{AppError, ErrorCode};
use crate::service::accounts as svc;

pub const PASSWORD_PATH: &str = "/settings/password";

// ---- used by the `WebUser` extractor ---------------------------------------------------

/// The browser and network a request comes from, as the sessions list shows them: the
/// User-Agent cut to 200 characters, the peer address cut to its /24 (IPv4) or /48 (IPv6)
/// network. Nothing more is stored.
pub fn seen_from(req: &HttpRequest) -> SeenFrom {
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .filter(|s| !s.trim().is_empty());
    SeenFrom {
        user_agent,
        ip_prefix: req.peer_addr().map(|a| ip_prefix(a.ip())),
    }
}

fn ip_prefix(ip: std::net::IpAddr) -> String {
    use std::net::IpAddr;
    let v4 = |a: std::net::Ipv4Addr| {
        let o = a.octets();
        format!("{}.{}.{}.0/24", o[0], o[1], o[2])
    };
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => v4(m),
            None => {
                let s = a.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

/// Record a session's use (throttled in `users::touch_session`: usually no write at all).
/// Bookkeeping never fails a page: an error is logged and the next request tries again.
pub fn record_use(
    conn: &mut DbConn,
    token: &str,
    last_seen: Option<chrono::NaiveDateTime>,
    from: &SeenFrom,
) {
    if let Err(e) = users::touch_session(conn, token, last_seen, from) {
        tracing::warn!(error = %e, "could not record the session's use");
    }
}

/// Pages a person who must replace their initial password may still open (static assets
/// and the login page do not ask who is signed in at all).
fn allowed_before_new_password(path: &str) -> bool {
    matches!(path, PASSWORD_PATH | "/logout")
}

/// Refuse every other page while the password must be changed: to the password page,
/// which explains why, and from there back to `back`.
pub fn must_change_gate(
    must_change: bool,
    path: &str,
    back: &str,
) -> Result<(), MustChangePassword> {
    if must_change && !allowed_before_new_password(path) {
        return Err(MustChangePassword(back.to_string()));
    }
    Ok(())
}

#[derive(Debug)]
pub struct MustChangePassword(pub String);

impl std::fmt::Display for MustChangePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "choose a new password first")
    }
}

impl ResponseError for MustChangePassword {
    fn status_code(&self) -> StatusCode {
        StatusCode::SEE_OTHER
    }
    fn error_response(&self) -> HttpResponse {
        let to = if self.0 == "/" || self.0.starts_with(PASSWORD_PATH) {
            PASSWORD_PATH.to_string()
        } else {
            format!("{PASSWORD_PATH}?next={}", urlencode(&self.0))
        };
        HttpResponse::SeeOther()
            .insert_header((LOCATION, to))
            .finish()
    }
}

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
    let mut r = html(
        status,
        PasswordPage {
            l: layout(state, w, "settings", req).await,
            email: w.user.email.clone(),
            forced: w.must_change_password,
            errors,
            next,
            min_chars: MIN_PASSWORD_CHARS,
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
) -> HttpResponse {
    csrf_guard!(&req, &state, &w, "settings", &form.csrf);
    let f = form.into_inner();
    let next = safe_next(Some(&f.next));
    let email = w.user.email.clone();
    let mut errors: Vec<String> = new_password_problems(&f.new, &f.repeat, &email, &f.current)
        .iter()
        .map(ToString::to_string)
        .collect();
    let id = w.user.id;
    let stored = page_try!(
        &req,
        &state,
        &w,
        "settings",
        with_conn(&state, move |conn| Ok(users::password_hash_of(conn, id)?)).await
    );
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
                return password_page(&req, &state, &w, t.code().status(), vec![msg], next).await;
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
        return password_page(
            &req,
            &state,
            &w,
            ErrorCode::FormProblems.status(),
            errors,
            next,
        )
        .await;
    };
    let new = f.new;
    let new_hash = page_try!(
        &req,
        &state,
        &w,
        "settings",
        state
            .limiter
            .check(move || users::hash_password(&new))
            .await
            .map_err(|t| AppError::new(t.code(), t.message()))
    );
    let user = w.user.clone();
    let done = with_conn(&state, move |conn| {
        svc::change_password(
            conn,
            &user,
            &old_hash,
            &new_hash,
            chrono::Duration::hours(session::SESSION_HOURS),
        )
    })
    .await;
    let s = match done {
        Ok(s) => s,
        Err(e @ AppError::Client { .. }) => {
            return password_page(&req, &state, &w, e.status(), vec![e.to_string()], next).await
        }
        Err(e) => {
            let l = layout(&state, &w, "settings", &req).await;
            return error_page(&req, l, &e);
        }
    };
    let to = if w.must_change_password {
        with_done(&next, "password")
    } else {
        format!("{PASSWORD_PATH}?done=password")
    };
    let mut r = see_other(&to);
    let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, &s.token));
    r
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

pub async fn sessions(req: HttpRequest, state: State, w: WebUser) -> HttpResponse {
    let (id, token) = (w.user.id, w.token.clone());
    let rows = page_try!(
        &req,
        &state,
        &w,
        "settings",
        with_conn(&state, move |conn| Ok(users::sessions_of(
            conn, id, &token
        )?))
        .await
    );
    let others = rows.iter().filter(|r| !r.current).count();
    let page = SessionsPage {
        l: layout(&state, &w, "settings", &req).await,
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
    html(StatusCode::OK, page.render())
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
) -> HttpResponse {
    csrf_guard!(&req, &state, &w, "settings", &form.csrf);
    let public_id = path.into_inner();
    let (user, token) = (w.user.clone(), w.token.clone());
    let was_current = page_try!(
        &req,
        &state,
        &w,
        "settings",
        with_conn(&state, move |conn| svc::revoke_session(
            conn, &user, &public_id, &token
        ))
        .await
    );
    if was_current {
        let mut r = see_other("/login");
        let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, ""));
        return r;
    }
    see_other("/settings/sessions?done=session")
}

pub async fn revoke_other_sessions(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<CsrfOnly>,
) -> HttpResponse {
    csrf_guard!(&req, &state, &w, "settings", &form.csrf);
    let (user, token) = (w.user.clone(), w.token.clone());
    page_try!(
        &req,
        &state,
        &w,
        "settings",
        with_conn(&state, move |conn| svc::revoke_other_sessions(
            conn, &user, &token
        ))
        .await
    );
    see_other("/settings/sessions?done=sessions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_not_addresses() {
        assert_eq!(ip_prefix("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            ip_prefix("2001:db8:abcd:12::1".parse().unwrap()),
            "2001:db8:abcd::/48"
        );
        assert_eq!(ip_prefix("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.0/24");
    }

    #[test]
    fn only_the_password_page_and_logout_before_a_new_password() {
        assert!(must_change_gate(true, "/settings/password", "/").is_ok());
        assert!(must_change_gate(true, "/logout", "/").is_ok());
        assert!(must_change_gate(true, "/settings", "/settings").is_err());
        assert!(must_change_gate(true, "/settings/password/x", "/").is_err());
        assert!(must_change_gate(false, "/queue", "/queue").is_ok());
        let r = MustChangePassword("/queue?x=1".into()).error_response();
        assert_eq!(
            r.headers().get(LOCATION).unwrap(),
            "/settings/password?next=/queue%3Fx%3D1"
        );
        assert_eq!(
            with_done("/queue?x=1", "password"),
            "/queue?x=1&done=password"
        );
        assert_eq!(with_done("/", "password"), "/?done=password");
    }
}
