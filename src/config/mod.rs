//! Configuration from environment variables, declared once and validated at start-up.
//!
//! [`SETTINGS`] lists every variable with the field it fills, its type, its default and
//! what it means. Parsing reads the environment only through these declarations (a
//! [`Setting`] in hand), a default is the declared text parsed like a value from the
//! environment, tests and tools start from the same defaults ([`Config::defaults`],
//! [`Config::for_database`]), and the README's table and `.env.example` are rendered from
//! the list ([`markdown_table`], [`env_example`]: `countersign config --markdown` and
//! `--env-example`); a test fails when either file is stale. Secrets are [`Secret`]s,
//! which print as `***`.
//!
//! Here: [`Config`] and how it is read, and [`Secret`]. `settings` holds the
//! declarations (and the reader of the environment they go through), `mail` the mail
//! part of the configuration, `docs` the README table and `.env.example`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::db::DatabaseUrl;
use crate::domain::schema::{Schema, EXAMPLE_SCHEMA};

mod docs;
mod mail;
mod oidc;
mod settings;
#[cfg(test)]
mod tests;

pub use docs::{env_example, markdown_table};
pub use mail::{MailConfig, MailTransport, SmtpTls};
pub use oidc::OidcConfig;
pub use settings::*;

/// A value that must not be printed: `Debug` and `Display` show `***`; [`Secret::expose`]
/// is the only way to the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that uses it (an HMAC key, SMTP credentials).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

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
    pub secrets: BTreeMap<String, Secret>,
    /// Mail delivery (see README "Email notifications").
    pub mail: MailConfig,
    /// Password checks the server starts per second, for everyone together (bursts of
    /// twice as many); attempts beyond it get 429.
    pub login_per_second: f64,
    /// An upload that sends nothing for this long is refused (408).
    pub upload_idle_secs: u64,
    /// `Authorization: Bearer` token `/metrics` needs; `None`: open.
    pub metrics_token: Option<Secret>,
    /// Single sign-on; `None`: off.
    pub oidc: Option<OidcConfig>,
    /// The password form is on (it may be off only with single sign-on).
    pub password_login: bool,
}

impl Config {
    /// The secret held by the environment variable `name`.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets.get(name).cloned().or_else(|| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(Secret)
        })
    }

    /// The configuration of this process's environment.
    pub fn from_env() -> anyhow::Result<Config> {
        Config::from_lookup(&|name| std::env::var(name).ok())
    }

    /// The configuration of an environment given as a lookup (variable → value).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let vars = Vars(lookup);
        let database = DatabaseUrl::parse(&vars.text(&DATABASE_URL))?;
        let pool_size: u32 = vars.num(&POOL_SIZE)?;
        if pool_size == 0 {
            anyhow::bail!("{} must be at least 1", POOL_SIZE.var);
        }
        let bind = vars.text(&BIND);
        let oidc = OidcConfig::from_vars(&vars)?;
        let password_login = vars.flag(&PASSWORD_LOGIN);
        if !password_login && oidc.is_none() {
            anyhow::bail!(
                "{}=false needs single sign-on ({}): nobody could sign in to the web app",
                PASSWORD_LOGIN.var,
                OIDC_ISSUER.var
            );
        }
        Ok(Config {
            oidc,
            password_login,
            database,
            mail: MailConfig::from_vars(&vars, &bind)?,
            bind,
            schema_path: vars.set(&SCHEMA).map(PathBuf::from),
            pool_size,
            max_json_bytes: vars.num(&MAX_JSON_BYTES)?,
            max_import_bytes: vars.num(&MAX_IMPORT_BYTES)?,
            worker: vars.flag(&WORKER),
            exec_batch: vars.num::<usize>(&EXEC_BATCH)?.max(1),
            lease_secs: vars.num::<u64>(&LEASE_SECS)?.max(1),
            exec_throttle_ms: vars.num(&EXEC_THROTTLE_MS)?,
            poll_ms: vars.num::<u64>(&POLL_MS)?.max(10),
            secrets: BTreeMap::new(),
            login_per_second: vars.num::<f64>(&LOGIN_PER_SECOND)?.max(0.1),
            upload_idle_secs: vars.num::<u64>(&UPLOAD_IDLE_SECS)?.max(1),
            metrics_token: vars.set(&METRICS_TOKEN).map(Secret),
        })
    }

    /// Every setting at its declared default (nothing read from the environment).
    pub fn defaults() -> Config {
        Config::from_lookup(&|_| None).expect("the declared defaults are valid")
    }

    /// A config for tests and tools: the defaults, this database, any free port, no mail
    /// delivery and a quicker worker poll.
    pub fn for_database(database: DatabaseUrl) -> Config {
        let defaults = Config::defaults();
        Config {
            database,
            bind: "127.0.0.1:0".into(),
            poll_ms: 200,
            mail: MailConfig {
                transport: MailTransport::Off,
                mailer: false,
                ..defaults.mail.clone()
            },
            ..defaults
        }
    }

    /// Load and validate the configured schema, returning it with its source text.
    pub fn load_schema(&self) -> anyhow::Result<(Schema, String)> {
        let (source, origin) = match &self.schema_path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|e| {
                    anyhow::anyhow!("{}={}: cannot read: {e}", SCHEMA.var, p.display())
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
