//! Structured logs with `tracing`. `RUST_LOG` filters (default `info`);
//! `COUNTERSIGN_LOG_FORMAT=json` switches to one JSON object per line (both declared in
//! `config::SETTINGS`).

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LOG_FORMAT, RUST_LOG};

/// The process's subscriber: to standard error, coloured only for a person at a terminal.
pub fn init() {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = install(std::io::stderr, ansi);
}

/// Install the product's subscriber (filter and format from the environment) writing to
/// `writer`; the tests install it with a writer that prints into each test's output.
/// An error means a global subscriber was already installed.
pub fn install<W>(writer: W, ansi: bool) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env(RUST_LOG.var)
        .unwrap_or_else(|_| EnvFilter::new(RUST_LOG.default_value()));
    let json = std::env::var(LOG_FORMAT.var)
        .map(|v| v == "json")
        .unwrap_or(false);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    }
}
