//! Browser sessions: a random token in an HttpOnly, SameSite=Lax cookie (Secure and
//! `__Host-` prefixed over HTTPS), its hash in `web_sessions` with the session's CSRF
//! token. Every form carries that CSRF token; the login form uses a double-submit cookie
//! instead (no session yet).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::LOCATION;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};

use super::{with_conn, AppState};
use crate::db::users;
use crate::error::AppError;
use crate::service::CurrentUser;

pub const SESSION_COOKIE: &str = "cs_session";
pub const LOGIN_COOKIE: &str = "cs_login";
pub const SESSION_HOURS: i64 = 12;

/// The signed-in person of a page request.
pub struct WebUser {
    pub user: CurrentUser,
    pub csrf: String,
    pub token: String,
}

/// Not signed in: to the login page, then back.
#[derive(Debug)]
pub struct LoginRedirect(pub String);

impl std::fmt::Display for LoginRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sign in first")
    }
}

impl ResponseError for LoginRedirect {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::SEE_OTHER
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::SeeOther()
            .insert_header((LOCATION, format!("/login?next={}", urlencode(&self.0))))
            .finish()
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl FromRequest for WebUser {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = state
            .as_ref()
            .and_then(|s| read_cookie(req, s, SESSION_COOKIE));
        let back = if req.method() == actix_web::http::Method::GET {
            req.uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into())
        } else {
            "/".into()
        };
        Box::pin(async move {
            let (Some(state), Some(token)) = (state, token) else {
                return Err(LoginRedirect(back).into());
            };
            let t2 = token.clone();
            let found = with_conn(&state, move |conn| {
                Ok(match users::session(conn, &t2)? {
                    Some((u, csrf)) => Some((CurrentUser::load(conn, u)?, csrf)),
                    None => None,
                })
            })
            .await
            .map_err(actix_web::Error::from)?;
            match found {
                Some((user, csrf)) => Ok(WebUser { user, csrf, token }),
                None => Err(LoginRedirect(back).into()),
            }
        })
    }
}

/// Whether cookies are set for HTTPS: the public URL is https, or the request came in
/// over https (directly or as a proxy's `Forwarded`/`X-Forwarded-Proto` says).
pub fn https(req: &HttpRequest, state: &AppState) -> bool {
    req.connection_info().scheme() == "https"
        || state.config.mail.public_url.starts_with("https://")
}

/// The name cookie `base` (`SESSION_COOKIE`, `LOGIN_COOKIE`) has in this mode: over HTTPS
/// `__Host-<base>`, which browsers accept only when Secure, for `Path=/` and without a
/// `Domain` (so no other host and no plain-HTTP page can set or shadow it); else `base`.
pub fn cookie_name(req: &HttpRequest, state: &AppState, base: &str) -> String {
    if https(req, state) {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// The value of cookie `base`, read only under its name in this mode (a plain
/// `cs_session` sent to an HTTPS deployment is ignored).
pub fn read_cookie(req: &HttpRequest, state: &AppState, base: &str) -> Option<String> {
    req.cookie(&cookie_name(req, state, base))
        .map(|c| c.value().to_string())
}

/// Cookie `name` (`SESSION_COOKIE`, `LOGIN_COOKIE`) under its name in this mode (see
/// [`cookie_name`]), or its removal when `value` is empty.
pub fn cookie(req: &HttpRequest, state: &AppState, name: &str, value: &str) -> Cookie<'static> {
    let secure = https(req, state);
    // The `__Host-` rules: Secure, Path=/, no Domain.
    let mut c = Cookie::build(cookie_name(req, state, name), value.to_string())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .finish();
    if value.is_empty() {
        c.make_removal();
    } else if name == SESSION_COOKIE {
        c.set_max_age(actix_web::cookie::time::Duration::hours(SESSION_HOURS));
    }
    c
}

/// Whether a form's CSRF token is the expected one (compared in constant time).
pub fn csrf_ok(expected: &str, given: &str) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given.as_bytes());
    !expected.is_empty()
        && a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Failed logins per email: at most `MAX_FAILURES` within `WINDOW`.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

impl LoginLimiter {
    /// Count one attempt for `email`; `Some(wait)` when it is locked out (the attempt is
    /// then refused without checking the password). A success clears the count.
    pub fn attempt(&self, email: &str) -> Option<Duration> {
        let mut map = self.failures.lock().expect("limiter");
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let e = map.entry(email.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= WINDOW {
            *e = (0, Instant::now());
        }
        if e.0 >= MAX_FAILURES {
            return Some(WINDOW.saturating_sub(e.1.elapsed()));
        }
        e.0 += 1;
        None
    }

    pub fn succeeded(&self, email: &str) {
        self.failures.lock().expect("limiter").remove(email);
    }
}

/// Check a login attempt: the user and their CSRF token for a new session.
pub fn authenticate(
    conn: &mut crate::db::DbConn,
    email: &str,
    password: &str,
) -> Result<Option<crate::db::models::User>, AppError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let Some(u) = users::find_user_by_email(conn, email)? else {
        // Same work as a real check, so timing does not reveal who exists.
        let dummy = DUMMY.get_or_init(|| users::hash_password("no such person"));
        let _ = users::verify_password(dummy, password);
        return Ok(None);
    };
    Ok(match &u.password_hash {
        Some(h) if users::verify_password(h, password) => Some(u),
        Some(_) => None,
        None => {
            // No web password (an API-only account): the same work, the same answer.
            let dummy = DUMMY.get_or_init(|| users::hash_password("no such person"));
            let _ = users::verify_password(dummy, password);
            None
        }
    })
}
