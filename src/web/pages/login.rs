//! Signing in and out: the login form (double-submit CSRF cookie, throttled password checks) and logout.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, see_other, Layout, PageResult};
use crate::db::{audit, users};
use crate::domain::event::Event;
use crate::error::{AppError, ErrorCode};
use crate::service::events::record;
use crate::web::session::{self, csrf_ok, WebUser, LOGIN_COOKIE, SESSION_COOKIE};
use crate::web::{with_conn, State};

// ---- login ----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) l: Layout,
    pub(crate) email: String,
    pub(crate) next: String,
    pub(crate) error: Option<String>,
    pub(crate) csrf: String,
    /// The single sign-on button's provider name, when it is configured.
    pub(crate) sso_label: Option<String>,
    pub(crate) password_login: bool,
}

impl LoginPage {
    fn new(
        state: &State,
        email: String,
        next: String,
        error: Option<String>,
        csrf: String,
    ) -> Self {
        LoginPage {
            l: Layout::anonymous(),
            email,
            next,
            error,
            csrf,
            sso_label: state.sso.as_ref().map(|s| s.config.label.clone()),
            password_login: state.config.password_login,
        }
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    pub(crate) next: Option<String>,
}

/// Where to go after signing in: only a path on this site. Anything that a browser could
/// read as another host (`//x`, `/\\x`, control characters that it strips) goes home.
pub(crate) fn safe_next(n: Option<&str>) -> String {
    match n {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.len() <= 2000
                && p.chars()
                    .all(|c| !c.is_control() && !c.is_whitespace() && c != '\\') =>
        {
            p.into()
        }
        _ => "/".into(),
    }
}

pub use crate::domain::account::random_password;

pub(crate) fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub async fn login_form(req: HttpRequest, state: State, q: web::Query<NextQuery>) -> HttpResponse {
    let csrf = random_hex();
    let mut r = html(
        StatusCode::OK,
        LoginPage::new(
            &state,
            String::new(),
            safe_next(q.next.as_deref()),
            None,
            csrf.clone(),
        )
        .render(),
    );
    let _ = r.add_cookie(&session::cookie(&req, &state, LOGIN_COOKIE, &csrf));
    r
}

#[derive(Deserialize)]
pub struct LoginForm {
    pub(crate) email: String,
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) next: String,
    #[serde(default)]
    pub(crate) csrf: String,
}

pub async fn login(req: HttpRequest, state: State, form: web::Form<LoginForm>) -> PageResult {
    let f = form.into_inner();
    let email = f.email.trim().to_lowercase();
    let next = safe_next(Some(&f.next));
    let again = |error: String, code: ErrorCode| {
        let csrf = random_hex();
        let mut r = html(
            code.status(),
            LoginPage::new(
                &state,
                f.email.clone(),
                next.clone(),
                Some(error),
                csrf.clone(),
            )
            .render(),
        );
        let _ = r.add_cookie(&session::cookie(&req, &state, LOGIN_COOKIE, &csrf));
        r
    };
    if !state.config.password_login {
        return Ok(again(
            "Password sign-in is turned off here: sign in with single sign-on.".into(),
            ErrorCode::PasswordLoginOff,
        ));
    }
    let cookie_csrf = session::read_cookie(&req, &state, LOGIN_COOKIE).unwrap_or_default();
    if !csrf_ok(&cookie_csrf, &f.csrf) {
        return Ok(again(
            "The login form expired. Please sign in again.".into(),
            ErrorCode::Csrf,
        ));
    }
    if email.len() > session::MAX_EMAIL_BYTES || f.password.len() > session::MAX_PASSWORD_BYTES {
        return Ok(again(
            format!(
                "An email address has at most {} characters and a password at most {} bytes.",
                session::MAX_EMAIL_BYTES,
                session::MAX_PASSWORD_BYTES
            ),
            ErrorCode::InvalidForm,
        ));
    }
    let client = session::client_of(req.peer_addr().map(|a| a.ip()));
    if let Err(t) = state.limiter.attempt(&email, &client) {
        return Ok(again(t.message(), t.code()));
    }
    // The stored hash, then the argon2 check without holding a database connection.
    let e2 = email.clone();
    let user = with_conn(&state, move |conn| {
        Ok(users::find_user_by_email(conn, &e2)?)
    })
    .await?;
    let (hash, pw) = (
        user.as_ref().and_then(|u| u.password_hash.clone()),
        f.password.clone(),
    );
    let matches = match state
        .limiter
        .check(move || session::password_matches(hash.as_deref(), &pw))
        .await
    {
        Ok(m) => m,
        Err(t) => return Ok(again(t.message(), t.code())),
    };
    let found = match (matches, user) {
        // Said only to someone who knows the password: to anyone else this address reads
        // like every other with a wrong password. Neither a success nor a failure for the
        // throttle.
        (true, Some(u)) if u.deactivated_at.is_some() => {
            return Ok(again(
                "This account is deactivated: ask an admin to reactivate it.".into(),
                ErrorCode::AccountDeactivated,
            ));
        }
        (true, Some(u)) => {
            with_conn(&state, move |conn| {
                let token = crate::db::write_tx(conn, |tx| -> Result<String, AppError> {
                    let (token, _) = users::create_session(
                        tx,
                        u.id,
                        chrono::Duration::hours(session::SESSION_HOURS),
                    )?;
                    record(tx, &audit::Actor(u.email.clone()), None, Event::SignedIn {})?;
                    Ok(token)
                })?;
                Ok(Some(token))
            })
            .await
        }
        _ => Ok(None),
    };
    match found? {
        Some(token) => {
            state.limiter.succeeded(&email, &client);
            let mut r = see_other(&next);
            let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, &token));
            let _ = r.add_cookie(&session::cookie(&req, &state, LOGIN_COOKIE, ""));
            Ok(r)
        }
        None => {
            state.limiter.failed(&client);
            Ok(again(
                "That email and password do not match.".into(),
                ErrorCode::InvalidCredentials,
            ))
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

pub async fn logout(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<CsrfForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let token = w.token.clone();
    let (user_id, issuer) = (
        w.user.id,
        state.sso.as_ref().map(|s| s.config.issuer.clone()),
    );
    // Whether the person signed in through the provider, so its session ends there too.
    let through_sso = with_conn(&state, move |conn| {
        users::end_session(conn, &token)?;
        Ok(match issuer {
            Some(i) => crate::db::sso::has_identity(conn, user_id, &i)?,
            None => false,
        })
    })
    .await
    .unwrap_or(false);
    let to = match (&state.sso, through_sso) {
        (Some(sso), true) => sso.logout_url().await,
        _ => None,
    };
    let mut r = see_other(to.as_deref().unwrap_or("/login"));
    let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, ""));
    Ok(r)
}
