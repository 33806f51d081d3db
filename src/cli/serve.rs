//! Long-running commands: `serve`, `demo` (which serves the demo data), and the worker
//! and the mailer on their own.

use std::path::PathBuf;

use clap::Args;

use crate::config::{self, Config};
use crate::db::{self, DatabaseUrl};
use crate::web::Application;

#[derive(Debug, Args)]
pub struct BindArgs {
    /// Address to listen on.
    #[arg(long, env = config::BIND.var, default_value = config::BIND.default_value())]
    pub bind: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = config::BIND.var, default_value = config::BIND.default_value())]
    pub bind: String,
    /// The demo database file.
    #[arg(long, default_value = "countersign-demo.db")]
    pub db: PathBuf,
    /// Put the demo in this database instead (`postgres://…` or `sqlite://…`), e.g. for
    /// scripts/load on PostgreSQL.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Set up the demo data and exit without serving.
    #[arg(long)]
    pub no_serve: bool,
}

/// `countersign serve`.
pub(super) async fn serve_cmd(args: BindArgs) -> anyhow::Result<i32> {
    let mut config = Config::from_env()?;
    config.bind = args.bind;
    serve(config).await?;
    Ok(0)
}

/// `countersign demo`: the demo data in its own database (created if absent), served.
pub(super) async fn demo(args: DemoArgs) -> anyhow::Result<i32> {
    let mut config = Config::from_env()?;
    config.database = match &args.database_url {
        Some(u) => DatabaseUrl::parse(u)?,
        None => DatabaseUrl::Sqlite(args.db.clone()),
    };
    config.bind = args.bind;
    crate::demo::setup(&config)?;
    if !args.no_serve {
        serve(config).await?;
    }
    Ok(0)
}

/// The execution worker alone: leases executions from the shared database, like the one
/// inside `serve`; any number may run against one database.
pub(super) async fn worker() -> anyhow::Result<i32> {
    let mut config = Config::from_env()?;
    config.worker = true;
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 4)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    tracing::info!(database = %config.database.redacted(), poll_ms = config.poll_ms, "worker started");
    let w = crate::exec::Worker::spawn(
        pool,
        std::sync::Arc::new(schema),
        config,
        std::sync::Arc::new(crate::exec::Wake::default()),
    );
    shutdown_signal().await;
    tracing::info!("stopping: finishing the current batch");
    tokio::task::spawn_blocking(move || w.stop()).await?;
    tracing::info!("worker stopped");
    Ok(0)
}

/// The outbox deliverers alone (mail and hooks): deliver the outbox shared through the
/// database.
pub(super) async fn mailer() -> anyhow::Result<i32> {
    let mut config = Config::from_env()?;
    config.mail.mailer = true;
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 2)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    if let crate::config::MailTransport::Dir(d) = &config.mail.transport {
        println!(
            "no COUNTERSIGN_SMTP_HOST: mails are written to {}",
            d.display()
        );
    }
    let m = crate::notify::mailer::Mailer::spawn(pool.clone(), config.mail.clone());
    let h = crate::notify::mailer::Mailer::spawn_hooks(pool, config.mail.clone());
    shutdown_signal().await;
    tokio::task::spawn_blocking(move || {
        m.stop();
        h.stop();
    })
    .await?;
    Ok(0)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let (schema, source) = config.load_schema()?;
    tracing::info!(database = %config.database.redacted(), schema = %schema.hash, "starting countersign");
    let app = Application::build(config.clone(), schema, &source)?;
    tracing::info!(address = %format!("http://{}", display_addr(&config.bind, app.port())), "listening");
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

fn display_addr(bind: &str, port: u16) -> String {
    match bind.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{bind}:{port}"),
    }
}
