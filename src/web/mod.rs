//! HTTP: one route table, the JSON API over the services, request logging.

pub mod account_pages;
pub mod api;
pub mod auth;
pub mod download;
pub mod metrics;
pub mod middleware;
pub mod notice_pages;
pub mod openapi;
pub mod pages;
pub mod session;
pub mod session_use;
pub mod sso;
pub mod upload;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use crate::config::Config;
use crate::db::{self, Pool};
use crate::domain::Schema;
use crate::error::{AppError, ErrorCode};
use crate::service::CurrentUser;

/// Shared by every request.
pub struct AppState {
    pub pool: Pool,
    pub schema: Arc<Schema>,
    pub config: Config,
    /// Wakes this process's execution worker.
    pub wake: Arc<crate::exec::Wake>,
    /// Sign-in throttling and the bounded argon2 checks.
    pub limiter: session::LoginLimiter,
    /// Each person's approval-queue count, kept while nothing audited happened.
    pub badges: crate::service::queue::Badges,
    /// What this process counts for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Single sign-on, when configured.
    pub sso: Option<Arc<sso::Sso>>,
}

pub type State = web::Data<AppState>;

/// Run blocking database work on the blocking pool with a pooled connection.
pub async fn with_conn<T, F>(state: &State, f: F) -> Result<T, AppError>
where
    F: FnOnce(&mut db::DbConn) -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    let pool = state.pool.clone();
    blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await
}

/// What nearly every handler (API and pages) does once it has parsed its request: run `f`
/// on the blocking pool with a pooled connection, the running schema and `user`.
pub async fn run_as<T, F>(state: &State, user: CurrentUser, f: F) -> Result<T, AppError>
where
    F: FnOnce(&mut db::DbConn, &Schema, &CurrentUser) -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    let schema = state.schema.clone();
    with_conn(state, move |conn| f(conn, &schema, &user)).await
}

/// Run `f` on the blocking thread pool inside the caller's tracing span (the request's),
/// so what it logs carries the request id.
pub async fn blocking<T, F>(f: F) -> Result<T, AppError>
where
    F: FnOnce() -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    web::block(move || span.in_scope(f))
        .await
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("blocking task failed: {e}")))?
}

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    worker: Option<crate::exec::Worker>,
    mailer: Option<crate::notify::mailer::Mailer>,
    hooks: Option<crate::notify::mailer::Mailer>,
}

impl Application {
    /// Prepare the database (migrations, schema record, re-resolution of changes resolved
    /// under an older schema) and bind. `bind` may use port 0; see [`Application::port`].
    pub fn build(
        mut config: Config,
        schema: Schema,
        schema_source: &str,
    ) -> anyhow::Result<Application> {
        crate::init_tls();
        let pool = db::build_pool(&config.database, config.pool_size)?;
        prepare_database(&pool, &schema, schema_source)?;
        let listener = TcpListener::bind(&config.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
        let port = listener.local_addr()?.port();
        // A public URL with port 0 (as derived from `--bind 127.0.0.1:0`) means the port the
        // kernel chose: links in mails and the single sign-on redirect need the real one.
        if let Some(base) = config
            .mail
            .public_url
            .trim_end_matches('/')
            .strip_suffix(":0")
        {
            config.mail.public_url = format!("{base}:{port}");
        }
        let sso = match &config.oidc {
            Some(o) => Some(Arc::new(sso::Sso::new(o.clone(), &config.mail.public_url)?)),
            None => None,
        };
        let schema = Arc::new(schema);
        let wake = Arc::new(crate::exec::Wake::default());
        let worker = config.worker.then(|| {
            crate::exec::Worker::spawn(pool.clone(), schema.clone(), config.clone(), wake.clone())
        });
        let mailer = (config.mail.mailer
            && !matches!(config.mail.transport, crate::config::MailTransport::Off))
        .then(|| crate::notify::mailer::Mailer::spawn(pool.clone(), config.mail.clone()));
        // Hook deliveries go out whatever the mail transport (mail may be off).
        let hooks = config
            .mail
            .mailer
            .then(|| crate::notify::mailer::Mailer::spawn_hooks(pool.clone(), config.mail.clone()));
        let state = web::Data::new(AppState {
            pool,
            schema,
            limiter: session::LoginLimiter::new(config.login_per_second),
            badges: Default::default(),
            metrics: Default::default(),
            sso,
            config,
            wake,
        });
        let server =
            HttpServer::new(move || App::new().configure(|cfg| routes(cfg, state.clone())))
                .listen(listener)?
                .shutdown_timeout(30)
                .run();
        Ok(Application {
            port,
            server,
            worker,
            mailer,
            hooks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until SIGINT/SIGTERM (graceful: in-flight requests finish) or the handle stops it.
    /// The execution worker finishes its current batch and frees its lease.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(w) = self.worker {
            let _ = actix_web::rt::task::spawn_blocking(move || w.stop()).await;
        }
        for m in [self.mailer, self.hooks].into_iter().flatten() {
            let _ = actix_web::rt::task::spawn_blocking(move || m.stop()).await;
        }
        result
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// Migrate, record the schema version, and re-resolve open changes resolved under an
/// older schema (their sign-offs become stale).
pub fn prepare_database(pool: &Pool, schema: &Schema, schema_source: &str) -> anyhow::Result<()> {
    let mut conn = pool
        .get()
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
    let applied = db::run_migrations(&mut conn)?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    let new = crate::service::record_schema(
        &mut conn,
        schema,
        schema_source,
        &crate::db::audit::Actor::system(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if new {
        tracing::info!(hash = %schema.hash, "recorded a new schema version");
    }
    db::refresh_statistics(&mut conn);
    let n = crate::service::changes::reresolve_for_schema(&mut conn, schema)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if n > 0 {
        tracing::warn!(
            changes = n,
            "re-resolved open changes under the new schema; their sign-offs are stale"
        );
    }
    Ok(())
}

/// Form bodies up to `limit` bytes; a bad or oversized form is answered with a page.
fn form_config(limit: usize) -> web::FormConfig {
    web::FormConfig::default().limit(limit).error_handler(|err, req| {
        let code = match &err {
            actix_web::error::UrlencodedError::Overflow { .. } => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::InvalidForm,
        };
        let message = match code {
            ErrorCode::PayloadTooLarge if req.path() == "/login" => "The sign-in form is larger than any email address and password can be.".to_string(),
            ErrorCode::PayloadTooLarge => "The form is larger than this server accepts (COUNTERSIGN_MAX_JSON_BYTES). Split the list into several changes.".to_string(),
            _ => format!("The form could not be read: {err}"),
        };
        let page = pages::error_page(
            req,
            pages::Layout::anonymous(),
            &AppError::new(code, message),
        );
        actix_web::error::InternalError::from_response(err, page).into()
    })
}

/// Headers on every response (a handler's own value wins: the static assets set a public
/// `Cache-Control`). `Cache-Control: no-store` covers everything else — pages, redirects,
/// CSV exports, API answers, error pages — since all of it is for one signed-in person (or
/// carries a fresh CSRF token). HSTS only when the public URL is https: a plain-HTTP
/// deployment must not tell browsers to insist on HTTPS.
fn security_headers(config: &Config) -> actix_web::middleware::DefaultHeaders {
    // Logout is a form whose answer may redirect to the single sign-on provider's logout,
    // which `form-action` must allow (browsers check it for the redirects of a form too).
    let form_action = match &config.oidc {
        Some(o) => format!("'self' {}", sso::Sso::origin(&o.issuer)),
        None => "'self'".to_string(),
    };
    let h = actix_web::middleware::DefaultHeaders::new()
        .add(("Content-Security-Policy", format!("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'")))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("Cache-Control", "no-store"));
    if config.mail.public_url.starts_with("https://") {
        h.add((
            "Strict-Transport-Security",
            "max-age=31536000; includeSubDomains",
        ))
    } else {
        h
    }
}

/// The one route table.
pub fn routes(cfg: &mut web::ServiceConfig, state: State) {
    let json_limit = state.config.max_json_bytes;
    let headers = security_headers(&state.config);
    cfg.app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(json_limit)
                .content_type_required(false)
                .error_handler(|err, _| api::json_error(err).into()),
        )
        .app_data(form_config(json_limit))
        .app_data(web::QueryConfig::default().error_handler(|err, req| {
            pages::bad_request(req, ErrorCode::InvalidQuery, err.to_string(), err)
        }))
        .app_data(web::PathConfig::default().error_handler(|err, req| {
            pages::bad_request(req, ErrorCode::InvalidPath, err.to_string(), err)
        }))
        .service(
            web::scope("")
                .wrap(actix_web::middleware::from_fn(pages::render_errors))
                .wrap(headers)
                .wrap(actix_web::middleware::from_fn(middleware::request_log))
                .route("/healthz", web::get().to(api::healthz))
                .route("/readyz", web::get().to(api::readyz))
                .route("/metrics", web::get().to(metrics::metrics))
                .route("/calendar.ics", web::get().to(api::ics_feed))
                .route("/api/docs", web::get().to(openapi::docs_page))
                .service(api_routes())
                .configure(page_routes)
                .default_service(web::to(pages::not_found_page)),
        );
}

/// The JSON API, under `/api/v1`.
fn api_routes() -> actix_web::Scope {
    web::scope("/api/v1")
        .route("/openapi.json", web::get().to(openapi::openapi_json))
        .route("/schema", web::get().to(api::get_schema))
        .route("/me", web::get().to(api::me))
        .route("/inventory", web::post().to(api::import_inventory))
        .route("/inventory", web::get().to(api::list_inventory))
        .route("/inventory/{id}", web::get().to(api::get_entity))
        .route("/imports/{id}", web::get().to(api::get_import))
        .route("/changes", web::post().to(api::create_change))
        .route("/changes", web::get().to(api::list_changes))
        .route("/changes/{id}", web::get().to(api::get_change))
        .route("/changes/{id}", web::patch().to(api::edit_change))
        .route("/changes/{id}/targets", web::get().to(api::change_targets))
        .route(
            "/changes/{id}/evidence",
            web::get().to(api::change_evidence),
        )
        .route(
            "/changes/{id}/difference",
            web::get().to(api::change_difference),
        )
        .route(
            "/changes/{id}/selector",
            web::get().to(api::change_selector),
        )
        .route("/changes/{id}/resolve", web::post().to(api::resolve_change))
        .route("/changes/{id}/submit", web::post().to(api::submit_change))
        .route("/changes/{id}/signoffs", web::post().to(api::sign_change))
        .route("/changes/{id}/reject", web::post().to(api::reject_change))
        .route("/changes/{id}/cancel", web::post().to(api::cancel_change))
        .route(
            "/changes/{id}/comments",
            web::post().to(api::comment_change),
        )
        .route("/changes/{id}/comments", web::get().to(api::list_comments))
        .route("/changes/{id}/events", web::get().to(api::change_events))
        .route("/changes/{id}/execute", web::post().to(api::execute_change))
        .route("/changes/{id}/execution", web::get().to(api::get_execution))
        .route(
            "/changes/{id}/execution/items",
            web::get().to(api::execution_items),
        )
        .route(
            "/changes/{id}/resume",
            web::post().to(api::resume_execution),
        )
        .route(
            "/changes/{id}/continue",
            web::post().to(api::continue_execution),
        )
        .route("/changes/{id}/pause", web::post().to(api::pause_execution))
        .route("/changes/{id}/skip-wave", web::post().to(api::skip_wave))
        .route(
            "/changes/{id}/skip-drifted",
            web::post().to(api::skip_drifted),
        )
        .route(
            "/changes/{id}/retry-failed",
            web::post().to(api::retry_failed),
        )
        .route(
            "/changes/{id}/schedule",
            web::post().to(api::schedule_start),
        )
        .route("/changes/{id}/schedule", web::get().to(api::get_schedule))
        .route(
            "/changes/{id}/schedule",
            web::delete().to(api::unschedule_start),
        )
        .route("/changes/{id}/abort", web::post().to(api::abort_execution))
        .route(
            "/changes/{id}/rollback",
            web::post().to(api::rollback_change),
        )
        .route("/restores", web::post().to(api::create_restore))
        .route(
            "/changes/{id}/contacts",
            web::get().to(api::change_contacts),
        )
        .route("/changes/{id}/notices", web::post().to(api::draft_notice))
        .route("/changes/{id}/notices", web::get().to(api::list_notices))
        .route(
            "/changes/{id}/notices/{nid}/approve",
            web::post().to(api::approve_notice),
        )
        .route(
            "/changes/{id}/notices/{nid}/discard",
            web::post().to(api::discard_notice),
        )
        .route("/contacts", web::post().to(api::import_contacts))
        .route(
            "/inventory/{id}/contacts",
            web::get().to(api::entity_contacts),
        )
        .route("/me/notifications", web::get().to(api::get_preferences))
        .route("/me/notifications", web::put().to(api::set_preferences))
        .route("/outbox", web::get().to(api::list_outbox))
        .route("/outbox/{id}/retry", web::post().to(api::retry_mail))
        .route("/queue", web::get().to(api::queue))
        .route("/audit/verify", web::get().to(api::audit_verify))
        .route("/calendar", web::get().to(api::calendar))
        .route("/calendar/state", web::get().to(api::calendar_state))
        .route("/calendar/freezes", web::post().to(api::propose_freeze))
        .route("/calendar/freezes/{id}", web::get().to(api::get_freeze))
        .route(
            "/calendar/freezes/{id}",
            web::patch().to(api::propose_freeze_edit),
        )
        .route(
            "/calendar/freezes/{id}/lift",
            web::post().to(api::propose_freeze_lift),
        )
        .route("/calendar/lockdown", web::post().to(api::propose_lockdown))
        .route(
            "/calendar/lockdown/lift",
            web::post().to(api::propose_lockdown_lift),
        )
        .route(
            "/calendar/proposals/{id}/confirm",
            web::post().to(api::confirm_proposal),
        )
        .route(
            "/calendar/proposals/{id}/decline",
            web::post().to(api::decline_proposal),
        )
        .route(
            "/changes/{id}/freeze-exceptions",
            web::post().to(api::give_exception),
        )
        .route(
            "/changes/{id}/freeze-exceptions",
            web::get().to(api::list_exceptions),
        )
        .route("/me/calendar-token", web::post().to(api::create_feed_token))
        .route("/teams/{team}/hooks", web::get().to(api::list_hooks))
        .route("/teams/{team}/hooks", web::post().to(api::create_hook))
        .route(
            "/teams/{team}/hooks/{id}",
            web::delete().to(api::delete_hook),
        )
        .route(
            "/teams/{team}/hooks/{id}/test",
            web::post().to(api::test_hook),
        )
        .route(
            "/teams/{team}/hooks/{id}/deliveries",
            web::get().to(api::hook_deliveries),
        )
        .default_service(web::to(api::not_found))
}

/// The web app's pages and forms.
fn page_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/app.css", web::get().to(pages::css))
        .route("/static/app.js", web::get().to(pages::js))
        .service(
            web::resource("/login")
                .app_data(form_config(session::MAX_LOGIN_FORM_BYTES))
                .route(web::get().to(pages::login_form))
                .route(web::post().to(pages::login)),
        )
        .route("/logout", web::post().to(pages::logout))
        .route("/login/sso", web::get().to(sso::start))
        .route("/login/sso/callback", web::get().to(sso::callback))
        .route("/", web::get().to(pages::home))
        .route("/queue", web::get().to(pages::queue))
        .route("/changes", web::get().to(pages::changes))
        .route("/changes/new", web::get().to(pages::new_change))
        .route("/changes/new", web::post().to(pages::create_change))
        .route("/changes/{id}", web::get().to(pages::change))
        .route(
            "/changes/{id}/targets.csv",
            web::get().to(pages::change_targets_csv),
        )
        .route(
            "/changes/{id}/evidence.tar.gz",
            web::get().to(pages::change_evidence),
        )
        .route(
            "/changes/{id}/difference.csv",
            web::get().to(pages::change_difference_csv),
        )
        .route("/changes/{id}/edit", web::get().to(pages::edit_form))
        .route("/changes/{id}/edit", web::post().to(pages::save_edit))
        // The change page's forms.
        .route("/changes/{id}/submit", web::post().to(pages::submit_change))
        .route("/changes/{id}/sign", web::post().to(pages::sign_change))
        .route("/changes/{id}/edit_text", web::post().to(pages::edit_text))
        .route(
            "/changes/{id}/resolve",
            web::post().to(pages::resolve_change),
        )
        .route("/changes/{id}/reject", web::post().to(pages::reject_change))
        .route("/changes/{id}/cancel", web::post().to(pages::cancel_change))
        .route(
            "/changes/{id}/comment",
            web::post().to(pages::comment_change),
        )
        .route(
            "/changes/{id}/execute",
            web::post().to(pages::execute_change),
        )
        .route(
            "/changes/{id}/resume",
            web::post().to(pages::resume_execution),
        )
        .route(
            "/changes/{id}/continue",
            web::post().to(pages::continue_execution),
        )
        .route(
            "/changes/{id}/pause",
            web::post().to(pages::pause_execution),
        )
        .route("/changes/{id}/skip-wave", web::post().to(pages::skip_wave))
        .route(
            "/changes/{id}/skip-drifted",
            web::post().to(pages::skip_drifted),
        )
        .route(
            "/changes/{id}/retry-failed",
            web::post().to(pages::retry_failed),
        )
        .route(
            "/changes/{id}/schedule",
            web::post().to(pages::schedule_start),
        )
        .route(
            "/changes/{id}/unschedule",
            web::post().to(pages::unschedule_start),
        )
        .route(
            "/changes/{id}/freeze-exception",
            web::post().to(pages::freeze_exception),
        )
        .route(
            "/changes/{id}/abort",
            web::post().to(pages::abort_execution),
        )
        .route(
            "/changes/{id}/rollback",
            web::post().to(pages::rollback_change),
        )
        .route(
            "/changes/{id}/notices",
            web::get().to(notice_pages::notices),
        )
        .route("/changes/{id}/notices", web::post().to(notice_pages::draft))
        .route(
            "/changes/{id}/notices/{nid}/approve",
            web::post().to(notice_pages::approve),
        )
        .route(
            "/changes/{id}/notices/{nid}/discard",
            web::post().to(notice_pages::discard),
        )
        .route("/glossary", web::get().to(pages::glossary))
        .route("/calendar", web::get().to(pages::calendar_page))
        .route("/calendar/freezes", web::post().to(pages::propose_freeze))
        .route(
            "/calendar/freezes/{id}/lift",
            web::post().to(pages::propose_lift),
        )
        .route(
            "/calendar/freezes/{id}/edit",
            web::post().to(pages::propose_edit),
        )
        .route(
            "/calendar/lockdown",
            web::post().to(pages::propose_lockdown),
        )
        .route(
            "/calendar/lockdown/lift",
            web::post().to(pages::propose_lockdown_lift),
        )
        .route(
            "/calendar/proposals/{id}/confirm",
            web::post().to(pages::confirm_proposal),
        )
        .route(
            "/calendar/proposals/{id}/decline",
            web::post().to(pages::decline_proposal),
        )
        .route(
            "/calendar/feed-token",
            web::post().to(pages::new_feed_token),
        )
        .route("/inventory", web::get().to(pages::inventory_page))
        .route("/inventory/{id}", web::get().to(pages::entity_page))
        .route("/settings", web::get().to(pages::settings))
        .route(
            "/settings/notifications",
            web::get().to(pages::notification_settings),
        )
        .route(
            "/settings/notifications",
            web::post().to(pages::save_notifications),
        )
        .route("/settings/tokens", web::post().to(pages::create_token))
        .route(
            "/settings/password",
            web::get().to(account_pages::password_form),
        )
        .route(
            "/settings/password",
            web::post().to(account_pages::change_password),
        )
        .route("/settings/sessions", web::get().to(account_pages::sessions))
        .route(
            "/settings/sessions/others/revoke",
            web::post().to(account_pages::revoke_other_sessions),
        )
        .route(
            "/settings/sessions/{id}/revoke",
            web::post().to(account_pages::revoke_session),
        )
        .route(
            "/settings/tokens/{id}/revoke",
            web::post().to(pages::revoke_token),
        )
        .route("/teams/{team}/hooks", web::get().to(pages::hooks_page))
        .route(
            "/teams/{team}/hooks",
            web::post().to(pages::create_team_hook),
        )
        .route(
            "/teams/{team}/hooks/{id}/delete",
            web::post().to(pages::delete_team_hook),
        )
        .route(
            "/teams/{team}/hooks/{id}/test",
            web::post().to(pages::test_team_hook),
        )
        .route("/admin/people", web::get().to(pages::admin_people))
        .route("/admin/people", web::post().to(pages::admin_create_person))
        .route(
            "/admin/people/reset",
            web::post().to(pages::admin_reset_password),
        )
        .route(
            "/admin/people/deactivate",
            web::post().to(pages::admin_deactivate),
        )
        .route(
            "/admin/people/reactivate",
            web::post().to(pages::admin_reactivate),
        )
        .route("/admin/people/tokens", web::get().to(pages::admin_tokens))
        .route(
            "/admin/people/tokens",
            web::post().to(pages::admin_create_token),
        )
        .route(
            "/admin/people/tokens/{id}/revoke",
            web::post().to(pages::admin_revoke_token),
        )
        .route("/admin/teams", web::post().to(pages::admin_create_team))
        .route(
            "/admin/teams/{team}/members",
            web::post().to(pages::admin_add_member),
        )
        .route(
            "/admin/teams/{team}/members/remove",
            web::post().to(pages::admin_remove_member),
        )
        .route("/admin/audit", web::get().to(pages::admin_audit))
        .route("/admin/schema", web::get().to(pages::admin_schema))
        .route(
            "/admin/schema/{hash}",
            web::get().to(pages::admin_schema_version),
        )
        .route("/admin/outbox", web::get().to(pages::outbox))
        .route(
            "/admin/outbox/{id}/retry",
            web::post().to(pages::retry_mail),
        );
}
