//! countersign: a change-request workflow engine shared by the team that requests a
//! change and the team that implements it. See docs/ARCHITECTURE.md.

pub mod bench;
pub mod cli;
pub mod config;
pub mod counters;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
mod module_graph;
pub mod notify;
pub mod service;
pub mod telemetry;
pub mod web;

/// Choose the TLS crypto provider once per process (ring), so TLS clients (SMTP, webhooks)
/// work whatever other crates enable.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
