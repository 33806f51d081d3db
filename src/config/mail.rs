//! How mails leave countersign, read from the `mail.…` settings.

use std::path::PathBuf;

use super::settings::*;
use super::{Config, Secret};

/// How mails leave countersign.
#[derive(Clone)]
pub enum MailTransport {
    /// SMTP (`COUNTERSIGN_SMTP_HOST` set).
    Smtp {
        host: String,
        port: u16,
        tls: SmtpTls,
        username: Option<String>,
        password: Option<Secret>,
    },
    /// `.eml` files in a directory (no SMTP configured).
    Dir(PathBuf),
    /// No delivery (tests); the outbox is still written.
    Off,
}

impl std::fmt::Debug for MailTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailTransport::Smtp {
                host,
                port,
                tls,
                username,
                ..
            } => write!(
                f,
                "smtp://{}{host}:{port} ({tls:?})",
                username
                    .as_deref()
                    .map(|u| format!("{u}:***@"))
                    .unwrap_or_default()
            ),
            MailTransport::Dir(d) => write!(f, "directory {}", d.display()),
            MailTransport::Off => write!(f, "off"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (only for a relay on the same machine or in tests).
    None,
    /// STARTTLS required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpTls {
    /// The port used when `COUNTERSIGN_SMTP_PORT` is unset.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Tls => 465,
            SmtpTls::StartTls => 587,
            SmtpTls::None => 25,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// Run the mailer inside `serve`.
    pub mailer: bool,
    pub from: String,
    /// The address people open countersign at; links in mails start with it.
    pub public_url: String,
    /// Attempts before a mail is `dead`.
    pub max_attempts: i64,
    /// First retry delay; doubles with every attempt (capped at one hour).
    pub retry_base_ms: u64,
    pub timeout_secs: u64,
    /// How long a hook's receiver may take to answer.
    pub hook_timeout_secs: u64,
    pub poll_ms: u64,
    /// A person's digest goes out when their oldest waiting notification is this old.
    pub digest_hours: f64,
    pub lease_secs: u64,
}

/// A mailer's lease on the mails it claimed (not configurable).
const MAIL_LEASE_SECS: u64 = 60;

impl MailConfig {
    pub(super) fn from_vars(vars: &Vars, bind: &str) -> anyhow::Result<MailConfig> {
        let transport = match vars.set(&SMTP_HOST) {
            Some(host) => {
                let tls = match vars.text(&SMTP_TLS).trim() {
                    "starttls" => SmtpTls::StartTls,
                    "tls" => SmtpTls::Tls,
                    "none" => SmtpTls::None,
                    other => anyhow::bail!(
                        "{}={other:?}: use starttls (default), tls or none",
                        SMTP_TLS.var
                    ),
                };
                let port = match vars.set(&SMTP_PORT) {
                    None => tls.default_port(),
                    Some(_) => vars.num(&SMTP_PORT)?,
                };
                MailTransport::Smtp {
                    host,
                    port,
                    tls,
                    username: vars.set(&SMTP_USERNAME),
                    password: vars.set(&SMTP_PASSWORD).map(Secret),
                }
            }
            None => MailTransport::Dir(PathBuf::from(vars.text(&MAIL_DIR))),
        };
        let from = vars.text(&MAIL_FROM);
        if from.parse::<lettre::message::Mailbox>().is_err() {
            anyhow::bail!("{}={from:?} is not a mail address", MAIL_FROM.var);
        }
        Ok(MailConfig {
            transport,
            mailer: vars.flag(&MAILER),
            from,
            public_url: vars
                .set(&PUBLIC_URL)
                .unwrap_or_else(|| format!("http://{bind}")),
            max_attempts: vars.num::<i64>(&MAIL_MAX_ATTEMPTS)?.max(1),
            retry_base_ms: vars.num::<u64>(&MAIL_RETRY_MS)?.max(10),
            timeout_secs: vars.num::<u64>(&SMTP_TIMEOUT_SECS)?.max(1),
            hook_timeout_secs: vars.num::<u64>(&HOOK_TIMEOUT_SECS)?.max(1),
            poll_ms: vars.num::<u64>(&MAIL_POLL_MS)?.max(10),
            digest_hours: vars.num::<f64>(&DIGEST_HOURS)?.max(0.0),
            lease_secs: MAIL_LEASE_SECS,
        })
    }

    /// The defaults with mail off: tests turn the transport on where they need it.
    pub fn off() -> MailConfig {
        MailConfig {
            transport: MailTransport::Off,
            mailer: false,
            ..Config::defaults().mail
        }
    }
}
