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
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use super::session_use;
use super::{with_conn, AppState};
use crate::db::users;
use crate::error::{AppError, ErrorCode};
use crate::service::CurrentUser;

pub const SESSION_COOKIE: &str = "cs_session";
pub const LOGIN_COOKIE: &str = "cs_login";
pub const SESSION_HOURS: i64 = 12;

/// The signed-in person of a page request. The extractor also keeps a copy in the
/// request's extensions, so that a page's error is shown in this person's layout
/// (`pages::render_errors`).
#[derive(Clone)]
pub struct WebUser {
    pub user: CurrentUser,
    pub csrf: String,
    pub token: String,
    /// Signed in with a printed initial password (see `session_use::must_change_gate`).
    pub must_change_password: bool,
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

pub use super::session_use::urlencode;

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
        // Accounts: where the session is used from, and the page asked for.
        let seen = session_use::seen_from(req);
        let path = req.path().to_string();
        let req = req.clone();
        Box::pin(async move {
            let (Some(state), Some(token)) = (state, token) else {
                return Err(LoginRedirect(back).into());
            };
            let t2 = token.clone();
            let found = with_conn(&state, move |conn| {
                Ok(match users::session(conn, &t2)? {
                    Some((u, csrf, last_seen)) => {
                        session_use::record_use(conn, &t2, last_seen, &seen);
                        let must_change = u.must_change_password;
                        Some((CurrentUser::load(conn, u)?, csrf, must_change))
                    }
                    None => None,
                })
            })
            .await
            .map_err(actix_web::Error::from)?;
            match found {
                Some((user, csrf, must_change_password)) => {
                    session_use::must_change_gate(must_change_password, &path, &back)?;
                    let w = WebUser {
                        user,
                        csrf,
                        token,
                        must_change_password,
                    };
                    req.extensions_mut().insert(w.clone());
                    Ok(w)
                }
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

impl WebUser {
    /// Refuse a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, given: &str) -> Result<(), AppError> {
        if csrf_ok(&self.csrf, given) {
            Ok(())
        } else {
            Err(AppError::new(ErrorCode::Csrf,
                "This form is out of date or did not come from countersign (its security token is missing or wrong). Go back, reload the page and try again.",
            ))
        }
    }
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

// ---- login throttling ------------------------------------------------------------------

/// Longest accepted email address (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest accepted password.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Largest `/login` form body.
pub const MAX_LOGIN_FORM_BYTES: usize = 8 * 1024;
/// Failed attempts for one address from one client before delays start.
pub const FREE_FAILURES: u32 = 3;
/// Failed attempts from one client (any address) before delays start.
pub const FREE_CLIENT_FAILURES: u32 = 20;
/// The longest delay between two attempts of one (address, client).
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// A record of failures is forgotten this long after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Most records kept per table; the stalest go first when it is full.
pub const MAX_ENTRIES: usize = 50_000;
/// Password checks the whole server starts per second (sustained; bursts up to twice).
pub const GLOBAL_PER_SECOND: f64 = 20.0;
/// Password checks that may wait for an argon2 slot before new ones are refused.
pub const MAX_WAITING_CHECKS: usize = 64;

/// Why an attempt was refused before its password was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttled {
    /// This address from this client failed too often: wait this long.
    Address(Duration),
    /// This client failed too often across addresses.
    Client(Duration),
    /// The server as a whole is at its ceiling of sign-in attempts.
    Busy,
}

impl Throttled {
    /// `too_many_attempts` for this address or client, `busy` for the whole server.
    pub fn code(&self) -> ErrorCode {
        match self {
            Throttled::Address(_) | Throttled::Client(_) => ErrorCode::TooManyAttempts,
            Throttled::Busy => ErrorCode::Busy,
        }
    }

    pub fn message(&self) -> String {
        fn words(d: &Duration) -> String {
            let s = (d.as_millis().div_ceil(1000) as u64).max(1);
            if s == 1 {
                "1 second".into()
            } else if s < 90 {
                format!("{s} seconds")
            } else {
                format!("{} minutes", s.div_ceil(60))
            }
        }
        match self {
            Throttled::Address(d) => format!(
                "Too many failed attempts for this address from your network. Try again in {}.",
                words(d)
            ),
            Throttled::Client(d) => format!(
                "Too many failed sign-ins from your network. Try again in {}.",
                words(d)
            ),
            Throttled::Busy => {
                "The server is receiving too many sign-in attempts. Try again in a few seconds."
                    .into()
            }
        }
    }
}

type Key = [u8; 16];

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failure records keyed by a hash (never the raw input), at most [`MAX_ENTRIES`].
#[derive(Default)]
struct Table(HashMap<Key, Failures>);

impl Table {
    fn get(&self, k: &Key, now: Instant) -> Option<Failures> {
        self.0
            .get(k)
            .copied()
            .filter(|f| now.duration_since(f.last) < FORGET_AFTER)
    }

    fn bump(&mut self, k: Key, now: Instant) {
        if !self.0.contains_key(&k) && self.0.len() >= MAX_ENTRIES {
            self.0
                .retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if self.0.len() >= MAX_ENTRIES {
                // Still full of fresh records: drop the stalest tenth in one pass.
                let mut ages: Vec<Instant> = self.0.values().map(|f| f.last).collect();
                let cut = ages.len() / 10;
                let (_, nth, _) = ages.select_nth_unstable(cut);
                let nth = *nth;
                self.0.retain(|_, f| f.last > nth);
            }
        }
        let e = self.0.entry(k).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(e.last) >= FORGET_AFTER {
            e.count = 0;
        }
        e.count = e.count.saturating_add(1);
        e.last = now;
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// How long after its last failure the next attempt may run, given `count` failures
/// of which `free` cost nothing: 1 s, 2 s, 4 s, … up to [`MAX_DELAY`].
fn delay(count: u32, free: u32) -> Duration {
    if count < free {
        return Duration::ZERO;
    }
    let exp = (count - free).min(20);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Limits {
    pairs: Table,
    clients: Table,
    bucket: Bucket,
}

/// Sign-in throttling: growing delays per (address, client) and per client instead of a
/// lockout that anyone could trigger for someone else's address; a ceiling for the whole
/// server; and a bounded number of argon2 checks at once, run off the database pool.
pub struct LoginLimiter {
    limits: Mutex<Limits>,
    per_second: f64,
    checks: Checkers,
}

type Job = Box<dyn FnOnce() + Send>;

/// A few threads of their own for argon2 (not the shared blocking pool): each check takes
/// ~19 MiB, and the allocator keeps it per thread, so few threads keep the memory small
/// (see scripts/login-flood). A bounded queue in front; a full queue is `Busy`.
struct Checkers {
    tx: std::sync::mpsc::SyncSender<Job>,
}

impl Checkers {
    fn new(threads: usize) -> Checkers {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(MAX_WAITING_CHECKS);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    job();
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        Checkers { tx }
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(GLOBAL_PER_SECOND)
    }
}

fn key(parts: &[&[u8]]) -> Key {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.finalize()[..16]);
    k
}

/// The client part of a limiter key: the peer's IPv4 address, or its IPv6 /64.
pub fn client_of(ip: Option<std::net::IpAddr>) -> Vec<u8> {
    match ip {
        Some(std::net::IpAddr::V4(a)) => a.octets().to_vec(),
        Some(std::net::IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => a.octets()[..8].to_vec(),
        },
        None => Vec::new(),
    }
}

impl LoginLimiter {
    pub fn new(per_second: f64) -> LoginLimiter {
        let checks = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 4);
        LoginLimiter {
            limits: Mutex::new(Limits {
                pairs: Table::default(),
                clients: Table::default(),
                bucket: Bucket {
                    tokens: per_second * 2.0,
                    at: Instant::now(),
                },
            }),
            per_second,
            checks: Checkers::new(checks),
        }
    }

    /// Count one attempt of `email` from `client`, before the (slow) password check so
    /// that parallel guesses are limited too; refused attempts are not counted.
    pub fn attempt(&self, email: &str, client: &[u8]) -> Result<(), Throttled> {
        self.attempt_at(email, client, Instant::now())
    }

    fn attempt_at(&self, email: &str, client: &[u8], now: Instant) -> Result<(), Throttled> {
        let pair = key(&[email.as_bytes(), client]);
        let who = key(&[b"client", client]);
        let mut l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let wait = |f: Option<Failures>, free: u32| {
            f.map(|f| delay(f.count, free).saturating_sub(now.duration_since(f.last)))
                .unwrap_or_default()
        };
        let w = wait(l.pairs.get(&pair, now), FREE_FAILURES);
        if !w.is_zero() {
            return Err(Throttled::Address(w));
        }
        let w = wait(l.clients.get(&who, now), FREE_CLIENT_FAILURES);
        if !w.is_zero() {
            return Err(Throttled::Client(w));
        }
        let b = &mut l.bucket;
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second)
            .min(self.per_second * 2.0);
        b.at = now;
        if b.tokens < 1.0 {
            return Err(Throttled::Busy);
        }
        b.tokens -= 1.0;
        l.pairs.bump(pair, now);
        Ok(())
    }

    /// A successful sign-in forgets the failures of its (address, client).
    pub fn succeeded(&self, email: &str, client: &[u8]) {
        let mut l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        l.pairs.0.remove(&key(&[email.as_bytes(), client]));
    }

    /// A wrong password: the client's count of failures across addresses grows (the
    /// address's own count grew when the attempt started, so parallel guesses count).
    pub fn failed(&self, client: &[u8]) {
        let mut l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        l.clients.bump(key(&[b"client", client]), Instant::now());
    }

    /// Records held (address-client pairs, clients).
    pub fn entries(&self) -> (usize, usize) {
        let l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        (l.pairs.len(), l.clients.len())
    }

    /// Run the argon2 check `f` on the password-check threads, never more than a few at
    /// once and without a database connection; `Busy` when too many are already waiting.
    pub async fn check<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Throttled> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        match self.checks.tx.try_send(job) {
            Ok(()) => result.await.map_err(|_| Throttled::Busy),
            Err(_) => Err(Throttled::Busy),
        }
    }
}

/// The password check of a sign-in, without the database: `hash` is the stored hash of
/// the person with that address (`None`: no such person or no web password), checked
/// with the same work either way so timing does not reveal who exists.
pub fn password_matches(hash: Option<&str>, password: &str) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match hash {
        Some(h) => users::verify_password(h, password),
        None => {
            let dummy = DUMMY.get_or_init(|| users::hash_password("no such person"));
            let _ = users::verify_password(dummy, password);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_address_and_client_and_others_are_not_locked_out() {
        let l = LoginLimiter::new(1000.0);
        let t0 = Instant::now();
        let (me, attacker) = (&[127, 0, 0, 1][..], &[10, 0, 0, 9][..]);
        for i in 0..FREE_FAILURES {
            assert_eq!(
                l.attempt_at("ana@x", attacker, t0),
                Ok(()),
                "free attempt {i}"
            );
        }
        assert_eq!(
            l.attempt_at("ana@x", attacker, t0),
            Err(Throttled::Address(Duration::from_secs(1)))
        );
        assert_eq!(
            l.attempt_at("ana@x", me, t0),
            Ok(()),
            "the owner still signs in"
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.attempt_at("ana@x", attacker, t1), Ok(()));
        assert_eq!(
            l.attempt_at("ana@x", attacker, t1),
            Err(Throttled::Address(Duration::from_secs(2)))
        );
        // Capped, and forgotten after an hour of quiet.
        assert_eq!(delay(200, FREE_FAILURES), MAX_DELAY);
        let later = t1 + FORGET_AFTER;
        assert_eq!(l.attempt_at("ana@x", attacker, later), Ok(()));
        l.succeeded("ana@x", attacker);
        assert_eq!(l.attempt_at("ana@x", attacker, later), Ok(()));
    }

    #[test]
    fn one_client_spraying_addresses_is_slowed_down() {
        let l = LoginLimiter::new(1000.0);
        let t0 = Instant::now();
        for i in 0..FREE_CLIENT_FAILURES {
            assert_eq!(l.attempt_at(&format!("u{i}@x"), b"c", t0), Ok(()));
            l.failed(b"c");
        }
        assert!(matches!(
            l.attempt_at("another@x", b"c", t0),
            Err(Throttled::Client(_))
        ));
        assert_eq!(l.attempt_at("another@x", b"d", t0), Ok(()));
    }

    #[test]
    fn the_server_has_a_ceiling() {
        let l = LoginLimiter::new(5.0);
        let t0 = Instant::now();
        let ok = (0..100)
            .filter(|i| l.attempt_at(&format!("u{i}@x"), &[*i as u8], t0).is_ok())
            .count();
        assert_eq!(ok, 10, "a burst of twice the rate");
        let t1 = t0 + Duration::from_secs(1);
        let ok = (0..100)
            .filter(|i| l.attempt_at(&format!("v{i}@x"), &[*i as u8], t1).is_ok())
            .count();
        assert_eq!(ok, 5, "then the rate");
    }

    #[test]
    fn records_are_hashed_and_capped() {
        let l = LoginLimiter::new(1e12);
        let t0 = Instant::now();
        let long = "x".repeat(10_000);
        for i in 0..(MAX_ENTRIES + 5_000) {
            let _ = l.attempt_at(&format!("{long}{i}"), &(i as u32).to_le_bytes(), t0);
            l.failed(&(i as u32).to_le_bytes());
        }
        let (pairs, clients) = l.entries();
        assert!(
            pairs <= MAX_ENTRIES && clients <= MAX_ENTRIES,
            "{pairs} {clients}"
        );
        let mem: usize = l.limits.lock().unwrap().pairs.0.capacity()
            * (std::mem::size_of::<Key>() + std::mem::size_of::<Failures>());
        assert!(mem < 8 << 20, "{mem} bytes for the table, not the inputs");
    }
}
