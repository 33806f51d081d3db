//! The outbox deliverers: threads (inside `serve`, or alone as `countersign mailer`) that
//! lease due outbox rows of their channel, deliver them, and record each outcome under the
//! lease. The mailer also collects digests and sends over SMTP (or writes `.eml` files);
//! the hook deliverer (`hooks.rs`) posts to chat and event hooks. Two deliverers never
//! send the same row: a row is only sent by the holder of its lease, and only a holder can
//! record it as sent.
//!
//! Delivery is at least once: a crash between the receiver accepting a message and the
//! commit that records it would send it again after the lease expires.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use serde_json::json;

use super::delivery::{Deliver, Outcome};
use super::mail::{self, MailSettings};
use crate::config::{MailConfig, MailTransport, SmtpTls};
use crate::db::models::{NewOutbox, OutboxRow};
use crate::db::outbox as repo;
use crate::db::{now, write_tx, Pool};
use crate::domain::hook::OutboxChannel;
use crate::domain::OutboxState;
use crate::error::AppError;

/// A running deliverer thread (mail or hooks).
pub struct Mailer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Mailer {
    /// The mailer: mails and digests.
    pub fn spawn(pool: Pool, config: MailConfig) -> Mailer {
        Self::start("countersign-mailer", move |flag| {
            match Sender::new(&config) {
                Ok(sender) => run(pool, &config, OutboxChannel::Mail, sender, flag),
                Err(e) => tracing::error!(error = %e, "mailer cannot start"),
            }
        })
    }

    /// The hook deliverer: chat and event hooks.
    pub fn spawn_hooks(pool: Pool, config: MailConfig) -> Mailer {
        Self::start(
            "countersign-hooks",
            move |flag| match super::hooks::HookSender::new(&config) {
                Ok(sender) => run(pool, &config, OutboxChannel::Hook, sender, flag),
                Err(e) => tracing::error!(error = %e, "hook deliverer cannot start"),
            },
        )
    }

    fn start(name: &str, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Mailer {
        crate::init_tls();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(flag))
            .expect("spawn outbox thread");
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

struct Sender {
    transport: MailTransport,
    smtp: Option<SmtpTransport>,
    settings: MailSettings,
}

impl Deliver for Sender {
    fn before_claim(&mut self, pool: &Pool, config: &MailConfig) {
        if let Err(e) = collect_digests(pool, config) {
            tracing::warn!(error = %e, "could not collect digests");
        }
    }

    fn deliver(&mut self, _pool: &Pool, row: &OutboxRow) -> Outcome {
        self.send(row)
    }
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
                    b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
                }
                Some(b.build())
            }
            _ => None,
        };
        Ok(Sender {
            transport: config.transport.clone(),
            smtp,
            settings: MailSettings::of(config),
        })
    }

    fn send(&self, row: &OutboxRow) -> Outcome {
        let settings = &self.settings;
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

fn run(
    pool: Pool,
    config: &MailConfig,
    channel: OutboxChannel,
    mut sender: impl Deliver,
    stop: Arc<AtomicBool>,
) {
    let name = match channel {
        OutboxChannel::Mail => "mailer",
        OutboxChannel::Hook => "hooks",
    };
    let owner = format!(
        "{name}:{}:{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let _span = tracing::info_span!("outbox", channel = %channel, owner = %owner).entered();
    if channel == OutboxChannel::Mail {
        tracing::info!(transport = ?config.transport, "mailer started");
    } else {
        tracing::info!("hook deliverer started");
    }
    let ttl = chrono::Duration::seconds(config.lease_secs as i64);
    while !stop.load(Ordering::SeqCst) {
        sender.before_claim(&pool, config);
        let claimed = pool
            .get()
            .map_err(AppError::from)
            .and_then(|mut c| write_tx(&mut c, |c| Ok(repo::claim(c, &owner, ttl, 20, channel)?)));
        let rows = match claimed {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for due messages");
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
            // Re-take the lease right before sending: a slow receiver may have outlasted
            // it and another deliverer may own the row by now.
            let mine = pool
                .get()
                .map_err(AppError::from)
                .and_then(|mut c| write_tx(&mut c, |c| Ok(repo::renew(c, row.id, &owner, ttl)?)));
            if !matches!(mine, Ok(true)) {
                continue;
            }
            let started = std::time::Instant::now();
            let outcome = sender.deliver(&pool, &row);
            crate::counters::delivery(
                channel.as_str(),
                match outcome {
                    Outcome::Sent => "delivered",
                    Outcome::Transient(_) => "retry",
                    Outcome::Permanent(_) => "refused",
                },
                started.elapsed(),
            );
            let recorded = pool.get().map_err(AppError::from).and_then(|mut c| {
                write_tx(&mut c, |c| {
                    Ok(match &outcome {
                        Outcome::Sent => repo::mark_sent(c, row.id, &owner)?,
                        Outcome::Transient(e) if row.attempts + 1 < config.max_attempts => {
                            let at = now() + backoff(config, row.attempts);
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
                    tracing::info!(message = row.id, kind = %row.event_kind, "delivered")
                }
                (Outcome::Transient(e), Ok(_)) => {
                    tracing::warn!(message = row.id, attempt = row.attempts + 1, error = %e, "not delivered; will retry unless out of attempts")
                }
                (Outcome::Permanent(e), Ok(_)) => {
                    tracing::warn!(message = row.id, error = %e, "refused for good: dead")
                }
                (_, Err(e)) => {
                    tracing::error!(message = row.id, error = %e, "could not record a delivery's outcome")
                }
            }
        }
    }
    tracing::info!("{name} stopped");
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
                    channel: crate::domain::hook::OutboxChannel::Mail,
                    hook_id: None,
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
