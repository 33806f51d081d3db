//! The web app: server-rendered askama pages over the same services as the API. Every
//! page works without JavaScript; every form carries the session's CSRF token.

use std::collections::BTreeMap;

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::session::{self, csrf_ok, WebUser, LOGIN_COOKIE, SESSION_COOKIE};
use super::{with_conn, State};
use crate::db::{audit, changes as repo, inventory, users};
use crate::domain::access::ChangeAction;
use crate::domain::account::{token_expiry, DEFAULT_TOKEN_DAYS, TOKEN_LIFETIMES};
use crate::domain::event::Event;
use crate::domain::resolution::{short_fingerprint, Resolution, ResolutionError};
use crate::domain::selector::{Scope, Selector};
use crate::domain::{Effect, ExecState, OutboxState, Side};
use crate::error::{AppError, ErrorCode, RequestId};
use crate::service::changes::{self as svc, change_id, CreateChange, SignRequest};
use crate::service::events::record;
use crate::service::execution::{self as exe, ExecuteRequest, ExecutionView, RollbackRequest};
use crate::service::views::{number, ChangeSummaryView, ChangeView};
use crate::service::{queue, CurrentUser};

// ---- layout and errors ---------------------------------------------------------------

pub struct UserBox {
    pub name: String,
    pub teams: String,
    pub admin: bool,
}

pub struct Layout {
    pub user: Option<UserBox>,
    pub csrf: String,
    pub queue_count: usize,
    pub section: &'static str,
    pub flash: Vec<String>,
}

impl Layout {
    pub fn anonymous() -> Layout {
        Layout {
            user: None,
            csrf: String::new(),
            queue_count: 0,
            section: "",
            flash: vec![],
        }
    }
}

pub(crate) async fn layout(
    state: &State,
    w: &WebUser,
    section: &'static str,
    req: &HttpRequest,
) -> Layout {
    let user = w.user.clone();
    let st = state.clone();
    let count = with_conn(state, move |conn| st.badges.count(conn, &st.schema, &user))
        .await
        .unwrap_or(0);
    let flash = req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("done="))
        .map(|m| vec![flash_text(m).to_string()])
        .unwrap_or_default();
    Layout {
        user: Some(UserBox {
            name: w.user.name.clone(),
            teams: w.user.teams.join(", "),
            admin: w.user.is_admin,
        }),
        csrf: w.csrf.clone(),
        queue_count: count,
        section,
        flash,
    }
}

fn flash_text(code: &str) -> &'static str {
    match code {
        "signed" => "Your sign-off is recorded.",
        "submitted" => "Submitted: both teams can now sign it.",
        "created" => "Change created and submitted for sign-off.",
        "rejected" => "The change is rejected.",
        "cancelled" => "The change is cancelled.",
        "commented" => "Comment added.",
        "executing" => "Execution started.",
        "resumed" => "Execution resumed.",
        "aborted" => "Execution aborted.",
        "rollback" => "Rollback created: it needs its sign-offs.",
        "resolved" => "Resolved again against today's inventory.",
        "saved" => "Saved.",
        "token" => "Token revoked.",
        "password" => {
            "Your password is changed. Your other sessions are signed out; API tokens stay valid."
        }
        "session" => "That session is signed out.",
        "sessions" => "All your other sessions are signed out.",
        _ => "Done.",
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    status: u16,
    heading: String,
    message: String,
    request_id: String,
}

fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

pub(crate) fn html(status: StatusCode, body: Result<String, askama::Error>) -> HttpResponse {
    match body {
        Ok(b) => HttpResponse::build(status)
            .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
            .body(b),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::InternalServerError().body("template error")
        }
    }
}

/// An error as a page in the layout: 4xx with the service's message, 500 with the request id.
pub fn error_page(req: &HttpRequest, l: Layout, e: &AppError) -> HttpResponse {
    let (status, heading, message) = match e {
        AppError::Client { message, .. } => {
            let status = e.status();
            let heading = match status.as_u16() {
                404 => "Not found",
                403 => "Not allowed",
                409 => "That cannot be done now",
                429 => "Too many attempts",
                _ => "That did not work",
            };
            (status, heading.to_string(), message.clone())
        }
        other => {
            tracing::error!(error = %other, "page failed");
            (
                e.status(),
                "Something went wrong on our side".into(),
                "The error is logged. Tell the countersign admins the request id below.".into(),
            )
        }
    };
    html(
        status,
        ErrorPage {
            l,
            status: status.as_u16(),
            heading,
            message,
            request_id: request_id(req),
        }
        .render(),
    )
}

/// A malformed path or query: JSON for the API, a page for the web app.
pub fn bad_request(
    req: &HttpRequest,
    code: ErrorCode,
    message: String,
    cause: impl std::fmt::Debug + std::fmt::Display + 'static,
) -> actix_web::Error {
    let e = AppError::new(code, message);
    if req.path().starts_with("/api/") {
        return e.into();
    }
    actix_web::error::InternalError::from_response(cause, error_page(req, Layout::anonymous(), &e))
        .into()
}

pub async fn not_found_page(req: HttpRequest) -> HttpResponse {
    error_page(
        &req,
        Layout::anonymous(),
        &AppError::new(
            ErrorCode::NotFound,
            format!("There is no page at {}.", req.path()),
        ),
    )
}

pub(crate) fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to.to_string()))
        .finish()
}

pub(crate) fn csrf_error() -> AppError {
    AppError::new(ErrorCode::Csrf,
        "This form is out of date or did not come from countersign (its security token is missing or wrong). Go back, reload the page and try again.",
    )
}

macro_rules! page_try {
    ($req:expr, $state:expr, $w:expr, $section:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => {
                let l = layout($state, $w, $section, $req).await;
                return error_page($req, l, &err);
            }
        }
    };
}
pub(crate) use page_try;

/// Refuse a form whose CSRF token is not the session's, with the error page.
macro_rules! csrf_guard {
    ($req:expr, $state:expr, $w:expr, $section:expr, $given:expr) => {
        if !csrf_ok(&$w.csrf, $given) {
            let l = layout($state, $w, $section, $req).await;
            return error_page($req, l, &csrf_error());
        }
    };
}
pub(crate) use csrf_guard;

// ---- static assets --------------------------------------------------------------------

pub async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(include_str!("../../static/app.css"))
}

pub async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(include_str!("../../static/app.js"))
}

// ---- login ----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    email: String,
    next: String,
    error: Option<String>,
    csrf: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
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

/// A random initial password: 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub async fn login_form(req: HttpRequest, state: State, q: web::Query<NextQuery>) -> HttpResponse {
    let csrf = random_hex();
    let mut r = html(
        StatusCode::OK,
        LoginPage {
            l: Layout::anonymous(),
            email: String::new(),
            next: safe_next(q.next.as_deref()),
            error: None,
            csrf: csrf.clone(),
        }
        .render(),
    );
    let _ = r.add_cookie(&session::cookie(&req, &state, LOGIN_COOKIE, &csrf));
    r
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login(req: HttpRequest, state: State, form: web::Form<LoginForm>) -> HttpResponse {
    let f = form.into_inner();
    let email = f.email.trim().to_lowercase();
    let next = safe_next(Some(&f.next));
    let again = |error: String, code: ErrorCode| {
        let csrf = random_hex();
        let mut r = html(
            code.status(),
            LoginPage {
                l: Layout::anonymous(),
                email: f.email.clone(),
                next: next.clone(),
                error: Some(error),
                csrf: csrf.clone(),
            }
            .render(),
        );
        let _ = r.add_cookie(&session::cookie(&req, &state, LOGIN_COOKIE, &csrf));
        r
    };
    let cookie_csrf = session::read_cookie(&req, &state, LOGIN_COOKIE).unwrap_or_default();
    if !csrf_ok(&cookie_csrf, &f.csrf) {
        return again(
            "The login form expired. Please sign in again.".into(),
            ErrorCode::Csrf,
        );
    }
    if email.len() > session::MAX_EMAIL_BYTES || f.password.len() > session::MAX_PASSWORD_BYTES {
        return again(
            format!(
                "An email address has at most {} characters and a password at most {} bytes.",
                session::MAX_EMAIL_BYTES,
                session::MAX_PASSWORD_BYTES
            ),
            ErrorCode::InvalidForm,
        );
    }
    let client = session::client_of(req.peer_addr().map(|a| a.ip()));
    if let Err(t) = state.limiter.attempt(&email, &client) {
        return again(t.message(), t.code());
    }
    // The stored hash, then the argon2 check without holding a database connection.
    let e2 = email.clone();
    let found = with_conn(&state, move |conn| {
        Ok(users::find_user_by_email(conn, &e2)?)
    })
    .await;
    let user = match found {
        Ok(u) => u,
        Err(e) => return error_page(&req, Layout::anonymous(), &e),
    };
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
        Err(t) => return again(t.message(), t.code()),
    };
    let found = match (matches, user) {
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
    match found {
        Ok(Some(token)) => {
            state.limiter.succeeded(&email, &client);
            let mut r = see_other(&next);
            let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, &token));
            let _ = r.add_cookie(&session::cookie(&req, &state, LOGIN_COOKIE, ""));
            r
        }
        Ok(None) => {
            state.limiter.failed(&client);
            again(
                "That email and password do not match.".into(),
                ErrorCode::InvalidCredentials,
            )
        }
        Err(e) => error_page(&req, Layout::anonymous(), &e),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    csrf_guard!(&req, &state, &w, "", &form.csrf);
    let token = w.token.clone();
    let _ = with_conn(&state, move |conn| Ok(users::end_session(conn, &token)?)).await;
    let mut r = see_other("/login");
    let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, ""));
    r
}

// ---- lists ----------------------------------------------------------------------------

pub struct Row {
    pub number: String,
    pub title: String,
    pub state: String,
    pub operation: String,
    pub effect: String,
    pub targets: i64,
    pub roots: i64,
    pub teams: String,
    pub age: String,
    pub destructive: bool,
    pub big: bool,
    pub needs: String,
}

fn age(t: chrono::NaiveDateTime) -> String {
    let d = crate::db::now() - t;
    if d.num_days() > 0 {
        format!("{} d", d.num_days())
    } else if d.num_hours() > 0 {
        format!("{} h", d.num_hours())
    } else {
        format!("{} min", d.num_minutes().max(0))
    }
}

fn row(c: &ChangeSummaryView, needs: String) -> Row {
    Row {
        number: c.number.clone(),
        title: c.title.clone(),
        state: c.state.to_string(),
        operation: c.operation_label.clone(),
        effect: c.effect.map(|e| e.as_str().to_string()).unwrap_or_default(),
        targets: c.target_count,
        roots: c.root_count,
        teams: format!("{} → {}", c.requesting_team, c.implementing_team),
        age: age(c.submitted_at.unwrap_or(c.created_at)),
        destructive: c.destructive,
        big: c.target_count > 100,
        needs,
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    l: Layout,
    mine: Vec<Row>,
    waiting: Vec<Row>,
    activity: Vec<Activity>,
}

pub struct Activity {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub change: String,
}

pub async fn home(req: HttpRequest, state: State, w: WebUser) -> HttpResponse {
    let user = w.user.clone();
    let schema = state.schema.clone();
    let data = with_conn(&state, move |conn| {
        let queue = queue::queue(conn, &schema, &user)?;
        let mine: Vec<ChangeSummaryView> = repo::list(
            conn,
            &repo::ListFilter {
                state: Some("draft,awaiting_signoff,approved,executing,halted".into()),
                limit: Some(200),
                author: Some(user.id),
                ..Default::default()
            },
        )?
        .iter()
        .map(|c| ChangeSummaryView::new(&schema, c))
        .collect();
        let events = audit::recent(conn, 15)?;
        Ok((queue, mine, events))
    })
    .await;
    let (queue, mine, events) = page_try!(&req, &state, &w, "home", data);
    let page = HomePage {
        l: layout(&state, &w, "home", &req).await,
        mine: mine.iter().map(|c| row(c, String::new())).collect(),
        waiting: queue
            .iter()
            .map(|q| row(&q.change, q.needs.join(" + ")))
            .collect(),
        activity: events
            .into_iter()
            .map(|e| Activity {
                at: e.at.format("%Y-%m-%d %H:%M").to_string(),
                actor: e.actor,
                action: e.action.replace('_', " "),
                change: e.change_id.map(number).unwrap_or_default(),
            })
            .collect(),
    };
    html(StatusCode::OK, page.render())
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    l: Layout,
    rows: Vec<Row>,
    effects: Vec<(&'static str, bool)>,
}

#[derive(Deserialize)]
pub struct QueueQuery {
    effect: Option<String>,
}

pub async fn queue(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<QueueQuery>,
) -> HttpResponse {
    let user = w.user.clone();
    let schema = state.schema.clone();
    let items = page_try!(
        &req,
        &state,
        &w,
        "queue",
        with_conn(&state, move |conn| queue::queue(conn, &schema, &user)).await
    );
    let effect = q.effect.clone().unwrap_or_default();
    let rows = items
        .iter()
        .filter(|i| {
            effect.is_empty() || i.change.effect.map(Effect::as_str) == Some(effect.as_str())
        })
        .map(|i| row(&i.change, i.needs.join(" + ")))
        .collect();
    let page = QueuePage {
        l: layout(&state, &w, "queue", &req).await,
        rows,
        effects: Effect::VALUES
            .iter()
            .map(|e| (e.as_str(), e.as_str() == effect))
            .collect(),
    };
    html(StatusCode::OK, page.render())
}

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    l: Layout,
    rows: Vec<Row>,
    states: Vec<(&'static str, bool)>,
}

#[derive(Deserialize)]
pub struct ChangesQuery {
    state: Option<String>,
}

pub async fn changes(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<ChangesQuery>,
) -> HttpResponse {
    let st = q
        .state
        .clone()
        .filter(|s| crate::domain::ChangeState::parse(s).is_some());
    let schema = state.schema.clone();
    let st2 = st.clone();
    let list = page_try!(
        &req,
        &state,
        &w,
        "changes",
        with_conn(&state, move |conn| Ok(repo::list(
            conn,
            &repo::ListFilter {
                state: st2,
                limit: Some(200),
                ..Default::default()
            }
        )?))
        .await
    );
    let rows = list
        .iter()
        .map(|c| row(&ChangeSummaryView::new(&schema, c), String::new()))
        .collect();
    let page = ChangesPage {
        l: layout(&state, &w, "changes", &req).await,
        rows,
        states: crate::domain::ChangeState::VALUES
            .iter()
            .map(|s| (s.as_str(), st.as_deref() == Some(s.as_str())))
            .collect(),
    };
    html(StatusCode::OK, page.render())
}

// ---- new change -----------------------------------------------------------------------

pub struct OpChoice {
    pub name: String,
    pub label: String,
    pub explain: String,
    pub selected: bool,
    /// For the live check in app.js: the target kind's label and full-match ID syntax.
    pub kind_label: String,
    pub pattern: String,
}

#[derive(Template)]
#[template(path = "new_change.html")]
struct NewChangePage {
    l: Layout,
    ops: Vec<OpChoice>,
    teams: Vec<(String, bool)>,
    f: ChangeForm,
    scope_kinds: Vec<(String, String, bool)>,
    errors: Vec<ResolutionError>,
    /// All problems (`errors` holds the first ones).
    error_count: u64,
    truncated: bool,
    /// Editing this change (`CHG-n`) instead of requesting a new one.
    editing: Option<String>,
    problems: Vec<String>,
    preview: Option<Preview>,
}

pub struct Preview {
    pub text: String,
    pub targets: u64,
    pub roots: u64,
    pub per_kind: Vec<(String, u64)>,
    pub sample_roots: Vec<(String, String)>,
    /// kind, id, name, scope, and for set_attributes "key: now → after".
    pub first: Vec<(String, String, String, String, String)>,
    pub sets_attributes: bool,
    pub warnings: Vec<String>,
    pub fingerprint: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct ChangeForm {
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub requesting_team: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub rationale: String,
    #[serde(default)]
    pub ids: String,
    #[serde(default)]
    pub scope_kind: String,
    #[serde(default)]
    pub scope_ids: String,
    #[serde(default, rename = "where")]
    pub filter: String,
    #[serde(default)]
    pub params: String,
    #[serde(default)]
    pub not_before: String,
    #[serde(default)]
    pub not_after: String,
    #[serde(default)]
    pub expect_targets: String,
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub action: String,
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(|l| l.trim().to_string()).collect::<Vec<_>>()
}

/// The form's fields as a service request; problems are messages for the form. Public for
/// the fuzz target (`countersign::fuzzing::new_change_form`), which decodes the body as
/// `web::Form` does and then runs this.
pub fn to_request(f: &ChangeForm) -> Result<CreateChange, Vec<String>> {
    let mut problems = Vec::new();
    // Keep blank lines out but line numbers right: the resolver counts lines of `ids`.
    let mut ids = lines(&f.ids);
    while ids.last().is_some_and(String::is_empty) {
        ids.pop();
    }
    let scope_ids: Vec<String> = lines(&f.scope_ids)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    let mut filter = BTreeMap::new();
    for (i, l) in f.filter.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        match l.split_once('=') {
            Some((k, v)) => {
                filter.insert(k.trim().to_string(), v.trim().to_string());
            }
            None => problems.push(format!(
                "Attribute filter line {}: `{l}` is not `name = value`",
                i + 1
            )),
        }
    }
    let mut params = serde_json::Map::new();
    for (i, l) in f.params.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        match l.split_once('=') {
            Some((k, v)) => {
                params.insert(k.trim().into(), serde_json::Value::String(v.trim().into()));
            }
            None => problems.push(format!(
                "Parameter line {}: `{l}` is not `name = value`",
                i + 1
            )),
        }
    }
    let time = |label: &str, s: &str, problems: &mut Vec<String>| {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        match chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
            Ok(t) => Some(t.and_utc()),
            Err(_) => {
                problems.push(format!("{label}: `{s}` is not a date and time"));
                None
            }
        }
    };
    let not_before = time("Not before", &f.not_before, &mut problems);
    let not_after = time("Not after", &f.not_after, &mut problems);
    let expect = match f.expect_targets.trim() {
        "" => None,
        n => match n.parse::<u64>() {
            Ok(n) => Some(crate::domain::resolution::Expectation {
                targets: Some(n),
                roots: None,
            }),
            Err(_) => {
                problems.push(format!("Expected target count: `{n}` is not a number"));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(CreateChange {
        title: f.title.clone(),
        rationale: f.rationale.clone(),
        requesting_team: f.requesting_team.clone(),
        operation: f.operation.clone(),
        params: serde_json::Value::Object(params),
        targets: Selector {
            ids,
            within: (!scope_ids.is_empty()).then(|| Scope {
                kind: f.scope_kind.clone(),
                ids: scope_ids,
            }),
            filter,
        },
        expect,
        not_before,
        not_after,
        submit: false,
    })
}

fn preview_of(
    schema: &crate::domain::Schema,
    r: &Resolution,
    sets: &std::collections::HashMap<String, Vec<crate::domain::execution::AttrChange>>,
) -> Preview {
    let mut per_kind: BTreeMap<String, u64> = BTreeMap::new();
    for t in &r.targets {
        *per_kind.entry(t.kind.clone()).or_default() += 1;
    }
    Preview {
        text: r.summary.text.clone(),
        targets: r.summary.targets,
        roots: r.summary.roots,
        per_kind: per_kind
            .into_iter()
            .map(|(k, n)| (schema.kind(&k).map(|k| k.plural.clone()).unwrap_or(k), n))
            .collect(),
        sample_roots: r
            .summary
            .sample_roots
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect(),
        first: r
            .targets
            .iter()
            .take(20)
            .map(|t| {
                (
                    t.kind.clone(),
                    t.id.clone(),
                    t.name.clone(),
                    t.scope_path.clone(),
                    sets.get(&t.id)
                        .map(|c| crate::domain::execution::AttrChange::describe(c))
                        .unwrap_or_default(),
                )
            })
            .collect(),
        sets_attributes: !sets.is_empty(),
        warnings: r.summary.warnings.clone(),
        fingerprint: short_fingerprint(&r.fingerprint),
    }
}

#[allow(clippy::too_many_arguments)]
fn new_change_page(
    state: &State,
    l: Layout,
    user: &CurrentUser,
    f: ChangeForm,
    errors: Vec<ResolutionError>,
    error_count: u64,
    problems: Vec<String>,
    preview: Option<Preview>,
) -> NewChangePage {
    let ops =
        state
            .schema
            .operations
            .values()
            .map(|o| {
                let kind = state.schema.kind(&o.target);
                OpChoice {
                    name: o.name.clone(),
                    label: o.label.clone(),
                    explain: format!(
                    "Acts on {} — {}. Needs {} requester and {} implementer sign-off(s) from {}{}.",
                    kind.map(|k| k.plural.clone()).unwrap_or_else(|| o.target.clone()),
                    o.effect.plain_words(),
                    o.signoffs.requester,
                    o.signoffs.implementer,
                    o.implemented_by,
                    if o.cascade { "; takes everything below its targets with it" } else { "" }
                ),
                    selected: o.name == f.operation,
                    kind_label: kind.map(|k| k.label.clone()).unwrap_or_default(),
                    pattern: kind
                        .map(|k| {
                            let prefix = k.prefix.as_deref().map(regex::escape).unwrap_or_default();
                            let body = k.pattern.clone().unwrap_or_else(|| ".+".into());
                            format!("^{prefix}(?:{body})$")
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
    let teams = user
        .teams
        .iter()
        .map(|t| (t.clone(), *t == f.requesting_team))
        .collect();
    let scope_kinds = state
        .schema
        .kinds
        .values()
        .filter(|k| !state.schema.children_of(&k.name).is_empty())
        .map(|k| (k.name.clone(), k.label.clone(), k.name == f.scope_kind))
        .collect();
    NewChangePage {
        l,
        ops,
        teams,
        f,
        scope_kinds,
        error_count: error_count.max(errors.len() as u64),
        truncated: error_count > errors.len() as u64,
        editing: None,
        errors,
        problems,
        preview,
    }
}

#[derive(Deserialize)]
pub struct NewQuery {
    operation: Option<String>,
}

pub async fn new_change(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<NewQuery>,
) -> HttpResponse {
    let f = ChangeForm {
        operation: q.operation.clone().unwrap_or_default(),
        requesting_team: w.user.teams.first().cloned().unwrap_or_default(),
        ..Default::default()
    };
    let l = layout(&state, &w, "new", &req).await;
    html(
        StatusCode::OK,
        new_change_page(&state, l, &w.user, f, vec![], 0, vec![], None).render(),
    )
}

pub async fn create_change(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<ChangeForm>,
) -> HttpResponse {
    let f = form.into_inner();
    csrf_guard!(&req, &state, &w, "new", &f.csrf);
    let again = |l: Layout, errors: Vec<ResolutionError>, count: u64, problems, preview| {
        html(
            ErrorCode::FormProblems.status(),
            new_change_page(
                &state,
                l,
                &w.user,
                f.clone(),
                errors,
                count,
                problems,
                preview,
            )
            .render(),
        )
    };
    let request = match to_request(&f) {
        Ok(r) => r,
        Err(problems) => {
            let l = layout(&state, &w, "new", &req).await;
            return again(l, vec![], 0, problems, None);
        }
    };
    // "Create": one transaction resolves, stores and submits. Only when that is refused is
    // the list resolved again, for the preview that shows why.
    let mut refused = None;
    if f.action == "create" {
        let (user, schema) = (w.user.clone(), state.schema.clone());
        let attempt = CreateChange {
            submit: true,
            ..request.clone()
        };
        match with_conn(&state, move |conn| {
            svc::create(conn, &schema, &user, attempt)
        })
        .await
        {
            Ok(id) => return see_other(&format!("/changes/{}?done=created", number(id))),
            Err(AppError::Client { message, .. }) => refused = Some(message),
            Err(e) => {
                let l = layout(&state, &w, "new", &req).await;
                return error_page(&req, l, &e);
            }
        }
    }
    // The preview (nothing stored), or the reasons it cannot be created.
    let schema = state.schema.clone();
    let targets = request.targets.clone();
    let (op_name, params) = (request.operation.clone(), request.params.clone());
    let resolved = with_conn(&state, move |conn| {
        let op = schema
            .operation(&op_name)
            .ok_or_else(|| AppError::new(ErrorCode::UnknownOperation, "Choose an operation."))?;
        let params = svc::check_params(op, &params)?;
        svc::check_selector(op, &targets)?;
        crate::db::snapshot(conn, |conn| {
            let r = crate::db::resolve::resolve(conn, &schema, op, &params, &targets)?;
            let first: Vec<&str> = r.targets.iter().take(20).map(|t| t.id.as_str()).collect();
            let sets = svc::planned_attribute_changes(conn, op, &params, &first)?;
            Ok((r, sets))
        })
    })
    .await;
    let (r, sets) = match resolved {
        Ok(r) => r,
        Err(AppError::Client { message, .. }) => {
            let l = layout(&state, &w, "new", &req).await;
            return again(l, vec![], 0, vec![message], None);
        }
        Err(e) => {
            let l = layout(&state, &w, "new", &req).await;
            return error_page(&req, l, &e);
        }
    };
    let preview = preview_of(&state.schema, &r, &sets);
    // Submission would refuse a failed expectation: say so here instead of storing a draft.
    if let Some(e) = &request.expect {
        let mut problems = Vec::new();
        if let Some(t) = e.targets.filter(|t| *t != r.summary.targets) {
            problems.push(format!(
                "You expected {t} targets; the list resolves to {}.",
                r.summary.targets
            ));
        }
        if let Some(n) = e.roots.filter(|n| *n != r.summary.roots) {
            problems.push(format!(
                "You expected {n} roots; the list resolves to {}.",
                r.summary.roots
            ));
        }
        if !problems.is_empty() && r.error_count == 0 {
            let l = layout(&state, &w, "new", &req).await;
            return again(l, vec![], 0, problems, Some(preview));
        }
    }
    let l = layout(&state, &w, "new", &req).await;
    let problems: Vec<String> = refused.into_iter().filter(|_| r.error_count == 0).collect();
    let mut resp = again(
        l,
        r.errors.clone(),
        r.error_count,
        problems.clone(),
        Some(preview),
    );
    if r.error_count == 0 && problems.is_empty() {
        *resp.status_mut() = StatusCode::OK;
    }
    resp
}

// ---- the change page ------------------------------------------------------------------

pub struct SignoffLine {
    pub who: String,
    pub fp: String,
    pub stale: bool,
    /// Why it does not count (stale list or text, signer left the team).
    pub why: String,
    pub comment: String,
    pub at: String,
}

pub struct SidePanel {
    pub side: &'static str,
    pub label: &'static str,
    pub team: String,
    pub required: u32,
    pub current: u32,
    pub missing: u32,
    pub signoffs: Vec<SignoffLine>,
    pub can_sign: bool,
}

pub struct WaveRow {
    pub n: usize,
    pub size: u64,
    pub done: u64,
    pub failed: u64,
    pub skipped: u64,
    pub pct_done: i64,
    pub pct_failed: i64,
    pub pct_skipped: i64,
}

#[derive(Template)]
#[template(path = "change.html")]
struct ChangePage {
    l: Layout,
    v: ChangeView,
    effect_words: String,
    destructive: bool,
    fp_short: String,
    fp_full: String,
    sides: Vec<SidePanel>,
    /// kind, id, name, scope, and for set_attributes "key: now → after".
    targets: Vec<(String, String, String, String, String)>,
    sets_attributes: bool,
    target_total: i64,
    q: String,
    shown_from: i64,
    shown_to: i64,
    next_offset: Option<i64>,
    prev_offset: Option<i64>,
    comments: Vec<(String, String, String)>,
    events: Vec<Activity>,
    exec: Option<ExecutionView>,
    waves: Vec<WaveRow>,
    running: bool,
    /// Exactly the actions the service allows this person now (`domain::access`).
    can: Allowed,
    /// Targets fixed by what it undoes or restores: the browser edits only its text.
    fixed_targets: bool,
    params: String,
}

/// The allowed actions of a change page, for the template.
pub struct Allowed(Vec<ChangeAction>);

impl Allowed {
    pub fn has(&self, action: &str) -> bool {
        self.0.iter().any(|a| a.as_str() == action)
    }
}

#[derive(Deserialize)]
pub struct ChangeQuery {
    q: Option<String>,
    offset: Option<i64>,
}

fn pct(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        0
    } else {
        (part * 100 + whole / 2) / whole
    }
}

pub async fn change(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    q: web::Query<ChangeQuery>,
) -> HttpResponse {
    let id = page_try!(&req, &state, &w, "changes", change_id(&path));
    let schema = state.schema.clone();
    let search = q.q.clone().filter(|s| !s.trim().is_empty());
    let offset = q.offset.unwrap_or(0).clamp(0, 1_000_000_000);
    let s2 = search.clone();
    let viewer = w.user.clone();
    let data = with_conn(&state, move |conn| {
        crate::db::snapshot(conn, |conn| {
            let v = svc::view_for(conn, &schema, &viewer, id)?;
            let (total, rows) = repo::targets_page(conn, id, s2.as_deref(), offset, 50)?;
            let c =
                repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
            let ids: Vec<&str> = rows.iter().map(|t| t.entity_id.as_str()).collect();
            let sets = svc::attribute_changes(conn, &schema, &c, &ids)?;
            let comments = repo::comments(conn, id)?;
            let events = audit::for_change(conn, id)?;
            let exec = crate::db::exec::for_change(conn, id)?
                .map(|_| exe::progress(conn, id))
                .transpose()?;
            Ok((v, total, rows, sets, comments, events, exec))
        })
    })
    .await;
    let (v, total, rows, sets, comments, events, exec) =
        page_try!(&req, &state, &w, "changes", data);
    let can = Allowed(v.allowed_actions.clone());
    let current = v.fingerprint.clone().unwrap_or_default();
    let side_panel =
        |side: Side, label: &'static str, st: &crate::service::views::SideStatus| SidePanel {
            side: side.as_str(),
            label,
            team: st.team.clone(),
            required: st.required,
            current: st.current,
            missing: st.missing,
            signoffs: v
                .signoffs
                .iter()
                .filter(|s| s.side == side)
                .map(|s| SignoffLine {
                    who: s.by.name.clone(),
                    fp: short_fingerprint(&s.fingerprint),
                    stale: !s.counts,
                    why: s.why_not.clone().unwrap_or_default(),
                    comment: s.comment.clone(),
                    at: s.at.format("%Y-%m-%d %H:%M").to_string(),
                })
                .collect(),
            can_sign: can.has(&format!("sign_{side}")),
        };
    let sides = vec![
        side_panel(Side::Requester, "Requesting team", &v.requester_side),
        side_panel(Side::Implementer, "Implementing team", &v.implementer_side),
    ];
    let exec_state = exec.as_ref().map(|e| e.state);
    let waves = exec
        .as_ref()
        .map(|e| {
            e.waves
                .iter()
                .enumerate()
                .map(|(i, wv)| WaveRow {
                    n: i + 1,
                    size: wv.size,
                    done: wv.done,
                    failed: wv.failed,
                    skipped: wv.skipped,
                    pct_done: pct(wv.done as i64, wv.size as i64),
                    pct_failed: pct(wv.failed as i64, wv.size as i64),
                    pct_skipped: pct(wv.skipped as i64, wv.size as i64),
                })
                .collect()
        })
        .unwrap_or_default();
    let page = ChangePage {
        l: layout(&state, &w, "changes", &req).await,
        effect_words: v.operation.effect_text.clone(),
        destructive: v.operation.destructive,
        fp_short: v
            .fingerprint
            .as_deref()
            .map(short_fingerprint)
            .unwrap_or_default(),
        fp_full: current.clone(),
        sides,
        sets_attributes: v.operation.effect == Some(Effect::SetAttributes),
        targets: rows
            .into_iter()
            .map(|t| {
                let change = sets
                    .get(&t.entity_id)
                    .map(|c| crate::domain::execution::AttrChange::describe(c))
                    .unwrap_or_default();
                (t.kind, t.entity_id, t.name, t.scope_path, change)
            })
            .collect(),
        shown_from: if total == 0 { 0 } else { offset + 1 },
        shown_to: (offset + 50).min(total),
        target_total: total,
        q: search.unwrap_or_default(),
        next_offset: (offset + 50 < total).then_some(offset + 50),
        prev_offset: (offset > 0).then(|| (offset - 50).max(0)),
        comments: comments
            .into_iter()
            .map(|(c, _email, name)| {
                (
                    name,
                    c.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    c.body,
                )
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e| Activity {
                at: e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                actor: e.actor,
                action: e.action.replace('_', " "),
                change: String::new(),
            })
            .collect(),
        running: exec_state == Some(ExecState::Running),
        can,
        fixed_targets: v.rollback_of.is_some() || v.targets.get("restore").is_some(),
        params: if v.params.as_object().is_some_and(|o| !o.is_empty()) {
            v.params.to_string()
        } else {
            String::new()
        },
        waves,
        exec,
        v,
    };
    html(StatusCode::OK, page.render())
}

pub async fn change_targets_csv(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> HttpResponse {
    let id = page_try!(&req, &state, &w, "changes", change_id(&path));
    let schema = state.schema.clone();
    let rows = page_try!(
        &req,
        &state,
        &w,
        "changes",
        with_conn(&state, move |conn| crate::service::changes::targets_csv(
            conn, &schema, id, None, 0
        ))
        .await
    );
    let out = rows.1;
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}-targets.csv\"", number(id)),
        ))
        .body(out)
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    side: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    confirm_count: String,
    #[serde(default)]
    text_hash: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    rationale: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    body: String,
}

/// `POST /changes/{id}/{action}`: one form per action, then back to the change page.
pub async fn change_action(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<(String, String)>,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    let (raw, action) = path.into_inner();
    let f = form.into_inner();
    csrf_guard!(&req, &state, &w, "changes", &f.csrf);
    let id = page_try!(&req, &state, &w, "changes", change_id(&raw));
    let user = w.user.clone();
    let schema = state.schema.clone();
    let act = action.clone();
    let result = with_conn(&state, move |conn| -> Result<(String, i64), AppError> {
        let done = match act.as_str() {
            "sign" => {
                let Some(side) = Side::parse(&f.side) else {
                    return Err(AppError::new(ErrorCode::InvalidSide, "Choose a side."));
                };
                let confirm = match f.confirm_count.trim() {
                    "" => None,
                    n => Some(n.parse::<u64>().map_err(|_| {
                        AppError::new(
                            ErrorCode::ConfirmCountMismatch,
                            format!("`{n}` is not a number: type the number of targets"),
                        )
                    })?),
                };
                svc::sign(
                    conn,
                    &schema,
                    &user,
                    id,
                    SignRequest {
                        side,
                        fingerprint: f.fingerprint.clone(),
                        comment: f.comment.clone(),
                        confirm_count: confirm,
                        text_hash: Some(f.text_hash.clone()).filter(|h| !h.trim().is_empty()),
                    },
                )?;
                "signed"
            }
            "submit" => {
                svc::submit(conn, &schema, &user, id)?;
                "submitted"
            }
            "edit_text" => {
                svc::edit(
                    conn,
                    &schema,
                    &user,
                    id,
                    svc::EditChange {
                        title: Some(f.title.clone()),
                        rationale: Some(f.rationale.clone()),
                        ..Default::default()
                    },
                )?;
                "saved"
            }
            "resolve" => {
                svc::reresolve(conn, &schema, &user, id)?;
                "resolved"
            }
            "reject" => {
                svc::reject(conn, &schema, &user, id, &f.reason)?;
                "rejected"
            }
            "cancel" => {
                svc::cancel(
                    conn,
                    &schema,
                    &user,
                    id,
                    Some(f.reason.as_str()).filter(|r| !r.trim().is_empty()),
                )?;
                "cancelled"
            }
            "comment" => {
                svc::comment(conn, &schema, &user, id, &f.body)?;
                "commented"
            }
            "execute" => {
                exe::execute(
                    conn,
                    &schema,
                    &user,
                    id,
                    &ExecuteRequest {
                        fingerprint: f.fingerprint.clone(),
                    },
                )?;
                "executing"
            }
            "resume" => {
                exe::resume(conn, &schema, &user, id)?;
                "resumed"
            }
            "abort" => {
                exe::abort(
                    conn,
                    &schema,
                    &user,
                    id,
                    Some(f.reason.as_str()).filter(|r| !r.trim().is_empty()),
                )?;
                "aborted"
            }
            "rollback" => {
                let rb = exe::rollback(conn, &schema, &user, id, &RollbackRequest::default())?;
                return Ok(("rollback".into(), rb));
            }
            _ => return Err(AppError::new(ErrorCode::NotFound, "no such action")),
        };
        Ok((done.to_string(), id))
    })
    .await;
    match result {
        Ok((done, target)) => {
            if matches!(done.as_str(), "executing" | "resumed") {
                state.wake.notify();
            }
            see_other(&format!("/changes/{}?done={done}", number(target)))
        }
        Err(e) => {
            let l = layout(&state, &w, "changes", &req).await;
            error_page(&req, l, &e)
        }
    }
}

// ---- glossary, inventory --------------------------------------------------------------

pub struct KindView {
    pub name: String,
    pub label: String,
    pub description: String,
    pub pattern: String,
    pub example: String,
    pub parent: String,
    pub attributes: String,
    pub operations: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "glossary.html")]
struct GlossaryPage {
    l: Layout,
    kinds: Vec<KindView>,
    version: String,
}

pub async fn glossary(req: HttpRequest, state: State, w: WebUser) -> HttpResponse {
    let s = &state.schema;
    let kinds = s
        .kinds
        .values()
        .map(|k| KindView {
            name: k.name.clone(),
            label: k.label.clone(),
            description: k.description.clone(),
            pattern: [
                k.prefix.as_deref().map(|p| format!("starts with {p}")),
                k.pattern.clone(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
            example: k.example.clone().unwrap_or_default(),
            parent: k
                .parent
                .as_deref()
                .and_then(|p| s.kind(p))
                .map(|p| format!("{} ({})", p.label, p.name))
                .unwrap_or_default(),
            attributes: k.attributes.join(", "),
            operations: s
                .operations
                .values()
                .filter(|o| o.target == k.name)
                .map(|o| {
                    (
                        o.name.clone(),
                        o.label.clone(),
                        o.effect.plain_words().to_string(),
                    )
                })
                .collect(),
        })
        .collect();
    let page = GlossaryPage {
        l: layout(&state, &w, "glossary", &req).await,
        kinds,
        version: short_fingerprint(&s.hash),
    };
    html(StatusCode::OK, page.render())
}

#[derive(Template)]
#[template(path = "inventory.html")]
struct InventoryPage {
    l: Layout,
    q: String,
    rows: Vec<(String, String, String, String)>,
}

#[derive(Deserialize)]
pub struct InventoryQuery {
    q: Option<String>,
}

pub async fn inventory_page(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<InventoryQuery>,
) -> HttpResponse {
    let text = q.q.clone().unwrap_or_default();
    let t2 = text.trim().to_string();
    let rows = page_try!(
        &req,
        &state,
        &w,
        "inventory",
        with_conn(&state, move |conn| {
            if t2.is_empty() {
                return Ok(vec![]);
            }
            Ok(inventory::list(
                conn,
                &inventory::ListFilter {
                    q: Some(t2),
                    limit: Some(100),
                    ..Default::default()
                },
            )?)
        })
        .await
    );
    let page = InventoryPage {
        l: layout(&state, &w, "inventory", &req).await,
        q: text,
        rows: rows
            .into_iter()
            .map(|e| (e.kind, e.id, e.name, e.state.to_string()))
            .collect(),
    };
    html(StatusCode::OK, page.render())
}

#[derive(Template)]
#[template(path = "entity.html")]
struct EntityPage {
    l: Layout,
    e: crate::service::inventory::EntityDetail,
    attrs: Vec<(String, String)>,
    changes: Vec<(String, String, String)>,
    /// `None`: the viewer may not see this entity's contacts.
    contacts: Option<Vec<crate::db::models::Contact>>,
}

pub async fn entity_page(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    let schema = state.schema.clone();
    let viewer = w.user.clone();
    let data = with_conn(&state, move |conn| {
        crate::db::snapshot(conn, |conn| {
            let e = crate::service::inventory::detail(conn, &schema, &id)?;
            let changes = repo::changes_touching(conn, &id, 50)?;
            let contacts = crate::service::contacts::of_entity(conn, &viewer, &id)?;
            Ok((e, changes, contacts))
        })
    })
    .await;
    let (e, changes, contacts) = page_try!(&req, &state, &w, "inventory", data);
    let attrs = e
        .entity
        .attrs
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let page = EntityPage {
        l: layout(&state, &w, "inventory", &req).await,
        attrs,
        changes: changes
            .into_iter()
            .map(|c| (number(c.id), c.title, c.state.to_string()))
            .collect(),
        contacts,
        e,
    };
    html(StatusCode::OK, page.render())
}

// ---- settings: notifications and API tokens -------------------------------------------

pub struct PrefRow {
    pub kind: String,
    pub description: String,
    pub options: Vec<(String, bool)>,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    l: Layout,
    prefs: Vec<PrefRow>,
    tokens: Vec<TokenItem>,
    new_token: Option<String>,
    email: String,
    /// (value, label, selected) for the new token's lifetime.
    lifetimes: Vec<(String, String, bool)>,
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

async fn settings_page(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    new_token: Option<String>,
) -> HttpResponse {
    let user = w.user.clone();
    let data = with_conn(state, move |conn| {
        let prefs = crate::service::notifications::preferences(conn, &user)?;
        let tokens = users::tokens_of(conn, user.id)?;
        Ok((prefs, tokens))
    })
    .await;
    let (prefs, tokens) = page_try!(req, state, w, "settings", data);
    let page = SettingsPage {
        l: layout(state, w, "settings", req).await,
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
        new_token,
        lifetimes: TOKEN_LIFETIMES
            .iter()
            .map(|d| match d {
                Some(n) => (n.to_string(), format!("{n} days"), *n == DEFAULT_TOKEN_DAYS),
                None => ("never".into(), "never".into(), false),
            })
            .collect(),
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
    r
}

pub async fn settings(req: HttpRequest, state: State, w: WebUser) -> HttpResponse {
    settings_page(&req, &state, &w, None).await
}

pub async fn notification_settings() -> HttpResponse {
    see_other("/settings#notifications")
}

pub async fn save_notifications(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<BTreeMap<String, String>>,
) -> HttpResponse {
    let mut f = form.into_inner();
    let given = f.remove("csrf").unwrap_or_default();
    csrf_guard!(&req, &state, &w, "settings", &given);
    let user = w.user.clone();
    page_try!(
        &req,
        &state,
        &w,
        "settings",
        with_conn(&state, move |conn| {
            crate::service::notifications::set_preferences(conn, &user, &f)
        })
        .await
    );
    see_other("/settings?done=saved#notifications")
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
    /// Days until it expires (one of `TOKEN_LIFETIMES`) or `never`.
    #[serde(default)]
    expires: String,
}

pub async fn create_token(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    csrf_guard!(&req, &state, &w, "settings", &form.csrf);
    let label = form.label.trim().chars().take(80).collect::<String>();
    let label = if label.is_empty() {
        "web".to_string()
    } else {
        label
    };
    let days = match form.expires.trim() {
        "" => Some(DEFAULT_TOKEN_DAYS),
        "never" => None,
        d => match d
            .parse::<u32>()
            .ok()
            .filter(|n| TOKEN_LIFETIMES.contains(&Some(*n)))
        {
            Some(n) => Some(n),
            None => {
                let l = layout(&state, &w, "settings", &req).await;
                return error_page(
                    &req,
                    l,
                    &AppError::new(ErrorCode::InvalidLifetime,
                        format!("`{d}` is not a token lifetime: choose 7, 30, 90 or 365 days, or never."),
                    ),
                );
            }
        },
    };
    let user = w.user.clone();
    let token = page_try!(
        &req,
        &state,
        &w,
        "settings",
        with_conn(&state, move |conn| crate::db::write_tx(conn, |conn| {
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
        }))
        .await
    );
    settings_page(&req, &state, &w, Some(token)).await
}

pub async fn revoke_token(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    csrf_guard!(&req, &state, &w, "settings", &form.csrf);
    let id = path.into_inner();
    let user = w.user.clone();
    page_try!(
        &req,
        &state,
        &w,
        "settings",
        with_conn(&state, move |conn| crate::db::write_tx(conn, |conn| {
            if !users::revoke_token(conn, user.id, id)? {
                return Err(AppError::new(ErrorCode::NotFound, "no such token of yours"));
            }
            record(conn, &user.actor(), None, Event::TokenRevoked { token: id })?;
            Ok(())
        }))
        .await
    );
    see_other("/settings?done=token#tokens")
}

// ---- admins: the outbox ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    l: Layout,
    state: String,
    states: Vec<(&'static str, bool)>,
    mails: Vec<crate::service::notifications::OutboxView>,
}

#[derive(Deserialize)]
pub struct OutboxQuery {
    state: Option<String>,
}

pub async fn outbox(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<OutboxQuery>,
) -> HttpResponse {
    let st = q
        .state
        .clone()
        .unwrap_or_else(|| OutboxState::Dead.to_string());
    let filter = (st != "all").then(|| st.clone());
    let user = w.user.clone();
    let mails = page_try!(
        &req,
        &state,
        &w,
        "outbox",
        with_conn(&state, move |conn| {
            crate::service::notifications::outbox(conn, &user, filter.as_deref(), None, 200)
        })
        .await
    );
    let page = OutboxPage {
        l: layout(&state, &w, "outbox", &req).await,
        states: [
            OutboxState::Dead,
            OutboxState::Pending,
            OutboxState::Sent,
            OutboxState::Digest,
        ]
        .iter()
        .map(|s| s.as_str())
        .chain(["all"])
        .map(|s| (s, s == st))
        .collect(),
        state: st,
        mails,
    };
    html(StatusCode::OK, page.render())
}

pub async fn retry_mail(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    csrf_guard!(&req, &state, &w, "outbox", &form.csrf);
    let id = path.into_inner();
    let user = w.user.clone();
    page_try!(
        &req,
        &state,
        &w,
        "outbox",
        with_conn(&state, move |conn| crate::service::notifications::retry(
            conn, &user, id
        ))
        .await
    );
    see_other("/admin/outbox?state=dead&done=saved")
}

// ---- editing a change -----------------------------------------------------------------

/// The full edit form (targets included) is for changes whose targets are chosen: the
/// service decides who may edit (`allowed_actions`); a rollback or bulk restore has fixed
/// targets, so its text is edited on the change page instead.
fn editable(v: &ChangeView) -> Result<(), AppError> {
    if !v.allowed_actions.contains(&ChangeAction::Edit) {
        return Err(AppError::new(ErrorCode::NotAllowed,
            format!(
                "Only the author of a change edits it, while it is a draft, awaiting sign-off or approved ({} is {}); comment instead.",
                v.number, v.state
            ),
        ));
    }
    if v.rollback_of.is_some() || v.targets.get("restore").is_some() {
        return Err(AppError::new(ErrorCode::FixedTargets,
            "A rollback or bulk restore has fixed targets: edit its title and rationale on its page, or cancel it and request a new one.",
        ));
    }
    Ok(())
}

fn form_of(v: &ChangeView) -> ChangeForm {
    let t = &v.targets;
    let strings = |x: &serde_json::Value| -> Vec<String> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let pairs = |x: &serde_json::Value| -> String {
        x.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        format!(
                            "{k} = {}",
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    ChangeForm {
        operation: v.operation.name.clone(),
        requesting_team: v.requesting_team.clone(),
        title: v.title.clone(),
        rationale: v.rationale.clone(),
        ids: strings(&t["ids"]).join("\n"),
        scope_kind: t["within"]["kind"].as_str().unwrap_or_default().to_string(),
        scope_ids: strings(&t["within"]["ids"]).join("\n"),
        filter: pairs(&t["where"]),
        params: pairs(&v.params),
        expect_targets: v
            .expect
            .as_ref()
            .and_then(|e| e["targets"].as_u64())
            .map(|n| n.to_string())
            .unwrap_or_default(),
        ..Default::default()
    }
}

pub async fn edit_form(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> HttpResponse {
    let id = page_try!(&req, &state, &w, "changes", change_id(&path));
    let schema = state.schema.clone();
    let viewer = w.user.clone();
    let v = page_try!(
        &req,
        &state,
        &w,
        "changes",
        with_conn(&state, move |conn| svc::view_for(
            conn, &schema, &viewer, id
        ))
        .await
    );
    page_try!(&req, &state, &w, "changes", editable(&v));
    let l = layout(&state, &w, "changes", &req).await;
    let mut page = new_change_page(
        &state,
        l,
        &w.user,
        form_of(&v),
        v.errors.clone(),
        v.error_count as u64,
        vec![],
        None,
    );
    page.editing = Some(v.number.clone());
    html(StatusCode::OK, page.render())
}

pub async fn save_edit(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ChangeForm>,
) -> HttpResponse {
    let f = form.into_inner();
    csrf_guard!(&req, &state, &w, "changes", &f.csrf);
    let id = page_try!(&req, &state, &w, "changes", change_id(&path));
    let again = |l: Layout, problems: Vec<String>| {
        let mut page = new_change_page(&state, l, &w.user, f.clone(), vec![], 0, problems, None);
        page.editing = Some(number(id));
        html(ErrorCode::FormProblems.status(), page.render())
    };
    let cr = match to_request(&f) {
        Ok(r) => r,
        Err(problems) => {
            let l = layout(&state, &w, "changes", &req).await;
            return again(l, problems);
        }
    };
    let user = w.user.clone();
    let schema = state.schema.clone();
    let saved = with_conn(&state, move |conn| {
        let v = svc::view_for(conn, &schema, &user, id)?;
        editable(&v)?;
        // The form edits the expected target count; an expected root count set through the
        // API is kept.
        let roots = v.expect.as_ref().and_then(|e| e["roots"].as_u64());
        let expect = match (cr.expect.and_then(|e| e.targets), roots) {
            (None, None) => None,
            (targets, roots) => Some(crate::domain::resolution::Expectation { targets, roots }),
        };
        svc::edit(
            conn,
            &schema,
            &user,
            id,
            svc::EditChange {
                title: Some(cr.title),
                rationale: Some(cr.rationale),
                params: Some(cr.params),
                targets: Some(cr.targets),
                expect: Some(expect),
            },
        )
    })
    .await;
    match saved {
        Ok(_) => see_other(&format!("/changes/{}?done=saved", number(id))),
        Err(AppError::Client { message, code, .. }) if code != ErrorCode::NotFound => {
            let l = layout(&state, &w, "changes", &req).await;
            again(l, vec![message])
        }
        Err(e) => {
            let l = layout(&state, &w, "changes", &req).await;
            error_page(&req, l, &e)
        }
    }
}
