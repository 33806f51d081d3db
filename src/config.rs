//! Configuration from environment variables, each with a documented default
//! (see README "Configuration"), validated at start-up.

use std::path::PathBuf;

use crate::db::DatabaseUrl;
use crate::domain::schema::{Schema, EXAMPLE_SCHEMA};

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseUrl,
    pub bind: String,
    /// `None`: the example schema shipped in the binary.
    pub schema_path: Option<PathBuf>,
    pub pool_size: u32,
    /// Largest JSON body accepted (bytes).
    pub max_json_bytes: usize,
    /// Largest inventory import body (bytes); imports stream, so this bounds time, not memory.
    pub max_import_bytes: usize,
    /// Run the execution worker inside `serve`.
    pub worker: bool,
    /// Targets per execution transaction.
    pub exec_batch: usize,
    /// A worker's lease on an execution; another process takes over after it expires.
    pub lease_secs: u64,
    /// Pause between execution batches (gentle rollouts; 0 = none).
    pub exec_throttle_ms: u64,
    /// How often an idle worker looks for work (it is also woken on execute).
    pub poll_ms: u64,
    /// Webhook secrets by environment-variable name (filled from the environment when
    /// absent; tests set them here).
    pub secrets: std::collections::BTreeMap<String, String>,
    /// Mail delivery (see README "Email notifications").
    pub mail: MailConfig,
    /// Password checks the server starts per second, for everyone together (bursts of
    /// twice as many); attempts beyond it get 429.
    pub login_per_second: f64,
    /// An upload that sends nothing for this long is refused (408).
    pub upload_idle_secs: u64,
}

/// How mails leave countersign.
#[derive(Clone)]
pub enum MailTransport {
    /// SMTP (`COUNTERSIGN_SMTP_HOST` set).
    Smtp {
        host: String,
        port: u16,
        tls: SmtpTls,
        username: Option<String>,
        password: Option<String>,
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
    pub poll_ms: u64,
    /// A person's digest goes out when their oldest waiting notification is this old.
    pub digest_hours: f64,
    pub lease_secs: u64,
}

impl MailConfig {
    fn from_env(bind: &str) -> anyhow::Result<MailConfig> {
        let transport = match env("COUNTERSIGN_SMTP_HOST") {
            Some(host) => {
                let tls = match env("COUNTERSIGN_SMTP_TLS").as_deref().map(str::trim) {
                    None | Some("starttls") => SmtpTls::StartTls,
                    Some("tls") => SmtpTls::Tls,
                    Some("none") => SmtpTls::None,
                    Some(other) => anyhow::bail!(
                        "COUNTERSIGN_SMTP_TLS={other:?}: use starttls (default), tls or none"
                    ),
                };
                let default_port = match tls {
                    SmtpTls::Tls => 465,
                    SmtpTls::StartTls => 587,
                    SmtpTls::None => 25,
                };
                MailTransport::Smtp {
                    host,
                    port: env_num("COUNTERSIGN_SMTP_PORT", default_port)?,
                    tls,
                    username: env("COUNTERSIGN_SMTP_USERNAME"),
                    password: env("COUNTERSIGN_SMTP_PASSWORD"),
                }
            }
            None => MailTransport::Dir(PathBuf::from(
                env("COUNTERSIGN_MAIL_DIR").unwrap_or_else(|| "countersign-mail".into()),
            )),
        };
        let from = env("COUNTERSIGN_MAIL_FROM")
            .unwrap_or_else(|| "countersign <countersign@localhost>".into());
        if from.parse::<lettre::message::Mailbox>().is_err() {
            anyhow::bail!("COUNTERSIGN_MAIL_FROM={from:?} is not a mail address");
        }
        Ok(MailConfig {
            transport,
            mailer: env("COUNTERSIGN_MAILER")
                .map_or(true, |v| !matches!(v.trim(), "0" | "false" | "off" | "no")),
            from,
            public_url: env("COUNTERSIGN_PUBLIC_URL").unwrap_or_else(|| format!("http://{bind}")),
            max_attempts: env_num("COUNTERSIGN_MAIL_MAX_ATTEMPTS", 8i64)?.max(1),
            retry_base_ms: env_num("COUNTERSIGN_MAIL_RETRY_MS", 30_000u64)?.max(10),
            timeout_secs: env_num("COUNTERSIGN_SMTP_TIMEOUT_SECS", 30u64)?.max(1),
            poll_ms: env_num("COUNTERSIGN_MAIL_POLL_MS", 1000u64)?.max(10),
            digest_hours: env_num("COUNTERSIGN_DIGEST_HOURS", 24f64)?.max(0.0),
            lease_secs: 60,
        })
    }

    /// Mail off: tests turn the transport on where they need it.
    pub fn off() -> MailConfig {
        MailConfig {
            transport: MailTransport::Off,
            mailer: false,
            from: "countersign <countersign@localhost>".into(),
            public_url: "http://127.0.0.1:8080".into(),
            max_attempts: 8,
            retry_base_ms: 30_000,
            timeout_secs: 30,
            poll_ms: 1000,
            digest_hours: 24.0,
            lease_secs: 60,
        }
    }
}

impl Config {
    /// The secret held by the environment variable `name`.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.secrets.get(name).cloned().or_else(|| env(name))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match env(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number")),
    }
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://countersign.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        let url = env("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        let database = DatabaseUrl::parse(&url)?;
        let pool_size = env_num("COUNTERSIGN_POOL_SIZE", 8u32)?;
        if pool_size == 0 {
            anyhow::bail!("COUNTERSIGN_POOL_SIZE must be at least 1");
        }
        let bind = env("COUNTERSIGN_BIND").unwrap_or_else(|| DEFAULT_BIND.to_string());
        Ok(Config {
            database,
            mail: MailConfig::from_env(&bind)?,
            bind,
            schema_path: env("COUNTERSIGN_SCHEMA").map(PathBuf::from),
            pool_size,
            max_json_bytes: env_num("COUNTERSIGN_MAX_JSON_BYTES", 32 * 1024 * 1024usize)?,
            max_import_bytes: env_num("COUNTERSIGN_MAX_IMPORT_BYTES", 4 * 1024 * 1024 * 1024usize)?,
            worker: env("COUNTERSIGN_WORKER")
                .map_or(true, |v| !matches!(v.trim(), "0" | "false" | "off" | "no")),
            exec_batch: env_num("COUNTERSIGN_EXEC_BATCH", 500usize)?.max(1),
            lease_secs: env_num("COUNTERSIGN_LEASE_SECS", 30u64)?.max(1),
            exec_throttle_ms: env_num("COUNTERSIGN_EXEC_THROTTLE_MS", 0u64)?,
            poll_ms: env_num("COUNTERSIGN_POLL_MS", 1000u64)?.max(10),
            secrets: Default::default(),
            login_per_second: env_num("COUNTERSIGN_LOGIN_PER_SECOND", 20f64)?.max(0.1),
            upload_idle_secs: env_num("COUNTERSIGN_UPLOAD_IDLE_SECS", 30u64)?.max(1),
        })
    }

    /// A config for tests and tools: everything default but the database.
    pub fn for_database(database: DatabaseUrl) -> Config {
        Config {
            database,
            bind: "127.0.0.1:0".into(),
            schema_path: None,
            pool_size: 8,
            max_json_bytes: 32 * 1024 * 1024,
            max_import_bytes: 4 * 1024 * 1024 * 1024,
            worker: true,
            exec_batch: 500,
            lease_secs: 30,
            exec_throttle_ms: 0,
            poll_ms: 200,
            secrets: Default::default(),
            mail: MailConfig::off(),
            login_per_second: 20.0,
            upload_idle_secs: 30,
        }
    }

    /// Load and validate the configured schema, returning it with its source text.
    pub fn load_schema(&self) -> anyhow::Result<(Schema, String)> {
        let (source, origin) = match &self.schema_path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|e| {
                    anyhow::anyhow!("COUNTERSIGN_SCHEMA={}: cannot read: {e}", p.display())
                })?,
                p.display().to_string(),
            ),
            None => (
                EXAMPLE_SCHEMA.to_string(),
                "the built-in example schema".to_string(),
            ),
        };
        let schema = Schema::from_toml(&source).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok((schema, source))
    }
}
