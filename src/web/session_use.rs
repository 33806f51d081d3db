//! What the `WebUser` extractor does on every page request besides finding the session:
//! [`record_use`] (a session's last use, at most once a minute, with [`seen_from`]) and
//! [`must_change_gate`] (someone who signed in with a printed initial password sees only
//! the password page until they replace it). Below `session` and `account_pages`, which
//! both use it.

use actix_web::http::header::{LOCATION, USER_AGENT};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::db::users::{self, SeenFrom};
use crate::db::DbConn;

/// Percent-encode `s` for a query value (keeping `/`, as `next=` paths read better).
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

pub const PASSWORD_PATH: &str = "/settings/password";

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
    }
}
