//! The mailer: a thread (inside `serve`, or alone as `countersign mailer`) that collects
//! digests, leases due outbox rows, sends them over SMTP (or writes `.eml` files), and
//! records each outcome under its lease. Two mailers never send the same row: a row is
//! only sent by the holder of its lease, and only a holder can record it as sent.
//!
//! Delivery is at least once: a crash between the SMTP server accepting a mail and the
//! commit that records it would send it again after the lease expires.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use serde_json::json;

use super::mail::{self, MailSettings};
use crate::config::{MailConfig, MailTransport, SmtpTls};
use crate::db::models::{NewOutbox, OutboxRow};
use crate::db::outbox as repo;
use crate::db::{now, write_tx, Pool};
use crate::domain::OutboxState;
use crate::error::AppError;

/// A running mailer thread.
pub struct Mailer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Mailer {
    pub fn spawn(pool: Pool, config: MailConfig) -> Mailer {
        crate::init_tls();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("countersign-mailer".into())
            .spawn(move || run(pool, config, flag))
            .expect("spawn mailer thread");
        Mailer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop after the mail being sent, and wait for the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Mailer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

enum Outcome {
    Sent,
    /// Retry later (connection refused, timeout, 4xx).
    Transient(String),
    /// Never retry (5xx for this recipient, an unusable address).
    Permanent(String),
}

struct Sender {
    transport: MailTransport,
    smtp: Option<SmtpTransport>,
}

impl Sender {
    fn new(config: &MailConfig) -> Result<Sender, String> {
        let smtp = match &config.transport {
            MailTransport::Smtp {
                host,
                port,
                tls,
                username,
                password,
            } => {
                let params =
                    || TlsParameters::new(host.clone()).map_err(|e| format!("TLS for {host}: {e}"));
                let tls = match tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::StartTls => Tls::Required(params()?),
                    SmtpTls::Tls => Tls::Wrapper(params()?),
                };
                let mut b = SmtpTransport::builder_dangerous(host.as_str())
                    .port(*port)
                    .tls(tls)
                    .timeout(Some(Duration::from_secs(config.timeout_secs)));
                if let (Some(u), Some(p)) = (username, password) {
                    b = b.credentials(Credentials::new(u.clone(), p.clone()));
                }
                Some(b.build())
            }
            _ => None,
        };
        Ok(Sender {
            transport: config.transport.clone(),
            smtp,
        })
    }

    fn send(&self, row: &OutboxRow, settings: &MailSettings) -> Outcome {
        let rendered = match mail::render(row, settings) {
            Ok(r) => r,
            Err(e) => return Outcome::Permanent(format!("cannot render: {e}")),
        };
        let msg = match mail::message(row, &rendered, settings) {
            Ok(m) => m,
            Err(e) => return Outcome::Permanent(e),
        };
        match (&self.transport, &self.smtp) {
            (MailTransport::Smtp { .. }, Some(smtp)) => match smtp.send(&msg) {
                Ok(_) => Outcome::Sent,
                Err(e) if e.is_permanent() => Outcome::Permanent(format!("rejected: {e}")),
                Err(e) => Outcome::Transient(format!("{e}")),
            },
            (MailTransport::Dir(dir), _) => {
                let path = dir.join(format!("{:06}-{}.eml", row.id, row.event_kind));
                match std::fs::create_dir_all(dir)
                    .and_then(|_| std::fs::write(&path, msg.formatted()))
                {
                    Ok(()) => Outcome::Sent,
                    Err(e) => Outcome::Transient(format!("cannot write {}: {e}", path.display())),
                }
            }
            _ => Outcome::Transient("mail delivery is off".into()),
        }
    }
}

fn backoff(config: &MailConfig, attempts: i64) -> chrono::Duration {
    let ms = config
        .retry_base_ms
        .saturating_mul(1u64 << attempts.clamp(0, 16))
        .min(3_600_000);
    chrono::Duration::milliseconds(ms as i64)
}

fn run(pool: Pool, config: MailConfig, stop: Arc<AtomicBool>) {
    let owner = format!(
        "mailer:{}:{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let _mailer = tracing::info_span!("mailer", owner = %owner).entered();
    let sender = match Sender::new(&config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "mailer cannot start");
            return;
        }
    };
    let settings = MailSettings::of(&config);
    tracing::info!(transport = ?config.transport, "mailer started");
    let ttl = chrono::Duration::seconds(config.lease_secs as i64);
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = collect_digests(&pool, &config) {
            tracing::warn!(error = %e, "could not collect digests");
        }
        let claimed = pool
            .get()
            .map_err(AppError::from)
            .and_then(|mut c| write_tx(&mut c, |c| Ok(repo::claim(c, &owner, ttl, 20)?)));
        let rows = match claimed {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "mailer could not look for mail");
                std::thread::sleep(Duration::from_millis(config.poll_ms.max(500)));
                continue;
            }
        };
        if rows.is_empty() {
            sleep_unless_stopped(&stop, Duration::from_millis(config.poll_ms));
            continue;
        }
        for row in rows {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            // Re-take the lease right before sending: a slow server may have outlasted it
            // and another mailer may own the row by now.
            let mine = pool
                .get()
                .map_err(AppError::from)
                .and_then(|mut c| write_tx(&mut c, |c| Ok(repo::renew(c, row.id, &owner, ttl)?)));
            if !matches!(mine, Ok(true)) {
                continue;
            }
            let outcome = sender.send(&row, &settings);
            let recorded = pool.get().map_err(AppError::from).and_then(|mut c| {
                write_tx(&mut c, |c| {
                    Ok(match &outcome {
                        Outcome::Sent => repo::mark_sent(c, row.id, &owner)?,
                        Outcome::Transient(e) if row.attempts + 1 < config.max_attempts => {
                            let at = now() + backoff(&config, row.attempts);
                            repo::mark_failed(c, row.id, &owner, e, Some(at))?
                        }
                        Outcome::Transient(e) | Outcome::Permanent(e) => {
                            repo::mark_failed(c, row.id, &owner, e, None)?
                        }
                    })
                })
            });
            match (&outcome, recorded) {
                (Outcome::Sent, Ok(_)) => {
                    tracing::info!(mail = row.id, kind = %row.event_kind, "mail sent")
                }
                (Outcome::Transient(e), Ok(_)) => {
                    tracing::warn!(mail = row.id, attempt = row.attempts + 1, error = %e, "mail not delivered; will retry unless out of attempts")
                }
                (Outcome::Permanent(e), Ok(_)) => {
                    tracing::warn!(mail = row.id, error = %e, "mail rejected for good: dead")
                }
                (_, Err(e)) => {
                    tracing::error!(mail = row.id, error = %e, "could not record a mail's outcome")
                }
            }
        }
    }
    tracing::info!("mailer stopped");
}

fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !stop.load(Ordering::SeqCst) && !left.is_zero() {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

/// One digest mail per person whose oldest waiting notification is old enough; the
/// notifications it lists are marked `digested` in the same transaction.
fn collect_digests(pool: &Pool, config: &MailConfig) -> Result<(), AppError> {
    let mut conn = pool.get()?;
    let before = now() - chrono::Duration::milliseconds((config.digest_hours * 3_600_000.0) as i64);
    let users = repo::digest_due(&mut conn, before)?;
    for user in users {
        write_tx(&mut conn, |c| -> Result<(), AppError> {
            let rows = repo::waiting_for_digest(c, user)?;
            let Some(first) = rows.first() else {
                return Ok(());
            };
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let p: serde_json::Value =
                        serde_json::from_str(&r.payload).unwrap_or_default();
                    json!({"change_id": r.change_id, "kind": r.event_kind, "headline": mail::headline(&p), "at": r.created_at})
                })
                .collect();
            let t = now();
            let key = format!("digest:{user}:{}", first.id);
            let added = repo::enqueue(
                c,
                &[NewOutbox {
                    event_key: key.clone(),
                    event_kind: "digest".into(),
                    change_id: None,
                    user_id: Some(user),
                    recipient: first.recipient.clone(),
                    payload: json!({"items": items}).to_string(),
                    message_id: uuid::Uuid::new_v4().simple().to_string(),
                    state: OutboxState::Pending,
                    next_attempt_at: t,
                    digest_id: None,
                    created_at: t,
                }],
            )?;
            if added == 0 {
                // Another mailer made this digest; it marks the rows it listed.
                return Ok(());
            }
            let Some(digest) = repo::find_by_key(c, &key, &first.recipient)?.map(|d| d.id) else {
                return Ok(());
            };
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            repo::mark_digested(c, &ids, digest)?;
            Ok(())
        })?;
    }
    Ok(())
}
