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

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::db::DatabaseUrl;
use crate::domain::schema::{Schema, EXAMPLE_SCHEMA};

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub var: &'static str,
    /// The field of [`Config`] it fills (`mail.…` for [`MailConfig`]), or `telemetry` /
    /// `tests` for the ones read elsewhere.
    pub field: &'static str,
    pub ty: Type,
    pub default: IfUnset,
    /// What it means (Markdown, one line: the README's "meaning").
    pub doc: &'static str,
}

/// What a variable holds (the README's "type"; reading a setting checks its type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    /// `host:port`.
    Listen,
    Url,
    Path,
    Integer,
    Bytes,
    Seconds,
    Millis,
    Hours,
    PerSecond,
    /// `true` unless `0`, `false`, `off` or `no`.
    Flag,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// `Name <address>` or a bare address.
    Mailbox,
    /// A `tracing` filter.
    Filter,
    /// Held in a [`Secret`]; never printed.
    Secret,
    /// Secrets in the variables that webhook operations name in `secret_env`.
    NamedSecret,
}

impl Type {
    pub fn label(&self) -> String {
        match self {
            Type::Text => "text".into(),
            Type::Listen => "host:port".into(),
            Type::Url => "URL".into(),
            Type::Path => "path".into(),
            Type::Integer => "integer".into(),
            Type::Bytes => "bytes".into(),
            Type::Seconds => "seconds".into(),
            Type::Millis => "milliseconds".into(),
            Type::Hours => "hours".into(),
            Type::PerSecond => "per second".into(),
            Type::Flag => "true/false".into(),
            Type::OneOf(words) => words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(" / "),
            Type::Mailbox => "mail address".into(),
            Type::Filter => "filter".into(),
            Type::Secret | Type::NamedSecret => "secret".into(),
        }
    }

    fn is_number(&self) -> bool {
        matches!(
            self,
            Type::Integer
                | Type::Bytes
                | Type::Seconds
                | Type::Millis
                | Type::Hours
                | Type::PerSecond
        )
    }
}

/// What a variable's absence means.
#[derive(Debug, Clone, Copy)]
pub enum IfUnset {
    /// This value, parsed like one from the environment.
    Value(&'static str),
    /// The same, with a gloss for people: `33554432` (32 MiB).
    Glossed(&'static str, &'static str),
    /// No value; what happens then.
    Nothing(&'static str),
    /// Computed from other settings, as described.
    Derived(&'static str),
}

impl IfUnset {
    /// The default value as text, when there is one.
    pub const fn value(&self) -> Option<&'static str> {
        match self {
            IfUnset::Value(v) | IfUnset::Glossed(v, _) => Some(v),
            IfUnset::Nothing(_) | IfUnset::Derived(_) => None,
        }
    }
}

impl Setting {
    pub fn secret(&self) -> bool {
        matches!(self.ty, Type::Secret | Type::NamedSecret)
    }

    /// The default value (panics for a setting declared without one: a programming error).
    pub const fn default_value(&self) -> &'static str {
        match self.default.value() {
            Some(v) => v,
            None => panic!("setting declared without a default value"),
        }
    }
}

macro_rules! settings {
    ($($name:ident: $var:literal => $field:literal, $ty:expr, $default:expr, $doc:literal;)*) => {
        $(
            #[doc = concat!("`", $var, "`: ", $doc)]
            pub const $name: Setting = Setting {
                var: $var,
                field: $field,
                ty: $ty,
                default: $default,
                doc: $doc,
            };
        )*
        /// Every setting, in the README's order.
        pub const SETTINGS: &[Setting] = &[$($name),*];
    };
}

// The one declaration of each setting: name => field, type, default, meaning.
settings! {
    DATABASE_URL: "DATABASE_URL" => "database", Type::Url, IfUnset::Value("sqlite://countersign.db"),
        "`sqlite://PATH` (or a plain path) for the embedded SQLite; `postgres://…` / `postgresql://…` for PostgreSQL. Any other scheme is a start-up error.";
    BIND: "COUNTERSIGN_BIND" => "bind", Type::Listen, IfUnset::Value("127.0.0.1:8080"),
        "listen address (`--bind` overrides)";
    SCHEMA: "COUNTERSIGN_SCHEMA" => "schema_path", Type::Path, IfUnset::Nothing("the built-in example"),
        "path to the schema TOML";
    POOL_SIZE: "COUNTERSIGN_POOL_SIZE" => "pool_size", Type::Integer, IfUnset::Value("8"),
        "database connections (at least 1)";
    MAX_JSON_BYTES: "COUNTERSIGN_MAX_JSON_BYTES" => "max_json_bytes", Type::Bytes, IfUnset::Glossed("33554432", "32 MiB"),
        "largest JSON body (a 100k-ID change is ≈ 4 MiB)";
    MAX_IMPORT_BYTES: "COUNTERSIGN_MAX_IMPORT_BYTES" => "max_import_bytes", Type::Bytes, IfUnset::Glossed("4294967296", "4 GiB"),
        "largest inventory import body; it is spooled to a temporary file (in `TMPDIR`) before the import, so this bounds disk, not memory";
    UPLOAD_IDLE_SECS: "COUNTERSIGN_UPLOAD_IDLE_SECS" => "upload_idle_secs", Type::Seconds, IfUnset::Value("30"),
        "an upload (inventory, contacts) that sends nothing for this long is refused with 408 `upload_stalled`; nothing is written";
    LOGIN_PER_SECOND: "COUNTERSIGN_LOGIN_PER_SECOND" => "login_per_second", Type::PerSecond, IfUnset::Value("20"),
        "password checks the whole server starts per second (bursts of twice as many); more sign-ins get 429";
    WORKER: "COUNTERSIGN_WORKER" => "worker", Type::Flag, IfUnset::Value("true"),
        "run the execution worker inside `serve` (`false` when separate `countersign worker` processes do it)";
    EXEC_BATCH: "COUNTERSIGN_EXEC_BATCH" => "exec_batch", Type::Integer, IfUnset::Value("500"),
        "targets per transaction of the built-in executor";
    LEASE_SECS: "COUNTERSIGN_LEASE_SECS" => "lease_secs", Type::Seconds, IfUnset::Value("30"),
        "how long a worker's lease on an execution lasts without a heartbeat; another worker takes over after it";
    EXEC_THROTTLE_MS: "COUNTERSIGN_EXEC_THROTTLE_MS" => "exec_throttle_ms", Type::Millis, IfUnset::Value("0"),
        "pause between batches (to spread load)";
    POLL_MS: "COUNTERSIGN_POLL_MS" => "poll_ms", Type::Millis, IfUnset::Value("1000"),
        "how often an idle worker looks for work (executions started in the same process wake it at once)";
    WEBHOOK_SECRETS: "secret_env" => "secrets", Type::NamedSecret, IfUnset::Nothing("unset"),
        "a webhook operation's HMAC key, in the variable its `secret_env` names; never logged";
    MAILER: "COUNTERSIGN_MAILER" => "mail.mailer", Type::Flag, IfUnset::Value("true"),
        "run the mailer inside `serve`";
    SMTP_HOST: "COUNTERSIGN_SMTP_HOST" => "mail.transport", Type::Text, IfUnset::Nothing("unset"),
        "SMTP server; unset: mails are written to `COUNTERSIGN_MAIL_DIR`";
    SMTP_PORT: "COUNTERSIGN_SMTP_PORT" => "mail.transport", Type::Integer, IfUnset::Derived("587 / 465 / 25"),
        "by `COUNTERSIGN_SMTP_TLS`";
    SMTP_TLS: "COUNTERSIGN_SMTP_TLS" => "mail.transport", Type::OneOf(&["starttls", "tls", "none"]), IfUnset::Value("starttls"),
        "`starttls`, `tls` (implicit TLS) or `none` (a relay on the same machine)";
    SMTP_USERNAME: "COUNTERSIGN_SMTP_USERNAME" => "mail.transport", Type::Text, IfUnset::Nothing("unset"),
        "SMTP user name";
    SMTP_PASSWORD: "COUNTERSIGN_SMTP_PASSWORD" => "mail.transport", Type::Secret, IfUnset::Nothing("unset"),
        "SMTP password (never logged)";
    SMTP_TIMEOUT_SECS: "COUNTERSIGN_SMTP_TIMEOUT_SECS" => "mail.timeout_secs", Type::Seconds, IfUnset::Value("30"),
        "per SMTP command";
    MAIL_FROM: "COUNTERSIGN_MAIL_FROM" => "mail.from", Type::Mailbox, IfUnset::Value("countersign <countersign@localhost>"),
        "sender; its domain is used in Message-IDs";
    MAIL_DIR: "COUNTERSIGN_MAIL_DIR" => "mail.transport", Type::Path, IfUnset::Value("countersign-mail"),
        "where `.eml` files go without SMTP";
    PUBLIC_URL: "COUNTERSIGN_PUBLIC_URL" => "mail.public_url", Type::Url, IfUnset::Derived("`http://<bind>`"),
        "the address people open countersign at (links in mails); `https://…` also turns on HSTS and `__Host-` cookies (see Headers and cookies)";
    MAIL_MAX_ATTEMPTS: "COUNTERSIGN_MAIL_MAX_ATTEMPTS" => "mail.max_attempts", Type::Integer, IfUnset::Value("8"),
        "attempts before a mail is dead";
    MAIL_RETRY_MS: "COUNTERSIGN_MAIL_RETRY_MS" => "mail.retry_base_ms", Type::Millis, IfUnset::Value("30000"),
        "first retry delay (doubles each time, at most an hour)";
    MAIL_POLL_MS: "COUNTERSIGN_MAIL_POLL_MS" => "mail.poll_ms", Type::Millis, IfUnset::Value("1000"),
        "how often the mailer looks for due mail";
    DIGEST_HOURS: "COUNTERSIGN_DIGEST_HOURS" => "mail.digest_hours", Type::Hours, IfUnset::Value("24"),
        "age of a person's oldest waiting notification that triggers their digest";
    RUST_LOG: "RUST_LOG" => "telemetry", Type::Filter, IfUnset::Value("info"),
        "log filter (`tracing`); one line per request with id, status, duration";
    LOG_FORMAT: "COUNTERSIGN_LOG_FORMAT" => "telemetry", Type::OneOf(&["text", "json"]), IfUnset::Value("text"),
        "`json` for one JSON object per line";
    TEST_DATABASE_URL: "COUNTERSIGN_TEST_DATABASE_URL" => "tests", Type::Url, IfUnset::Nothing("unset"),
        "tests only: a PostgreSQL URL whose role may `CREATE DATABASE`; every integration test then also runs on PostgreSQL in a fresh database (dropped when the test ends)";
    TEST_LOG: "TEST_LOG" => "tests", Type::Text, IfUnset::Nothing("unset"),
        "tests only: set (to anything) to see the logs of the servers the tests start, with each test's output (filtered by `RUST_LOG`)";
}

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
    pub poll_ms: u64,
    /// A person's digest goes out when their oldest waiting notification is this old.
    pub digest_hours: f64,
    pub lease_secs: u64,
}

/// A mailer's lease on the mails it claimed (not configurable).
const MAIL_LEASE_SECS: u64 = 60;

/// The environment as the settings see it: a blank value counts as unset. Every read
/// names its [`Setting`], so nothing undeclared is read.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// The value set in the environment, if any.
    fn set(&self, s: &Setting) -> Option<String> {
        (self.0)(s.var).filter(|v| !v.trim().is_empty())
    }

    /// The value set, or the declared default.
    fn text(&self, s: &Setting) -> String {
        self.set(s).unwrap_or_else(|| s.default_value().to_string())
    }

    fn num<T: std::str::FromStr>(&self, s: &Setting) -> anyhow::Result<T> {
        debug_assert!(s.ty.is_number(), "{} is not declared as a number", s.var);
        let v = self.text(s);
        v.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{}={v:?} is not a valid number", s.var))
    }

    fn flag(&self, s: &Setting) -> bool {
        debug_assert_eq!(s.ty, Type::Flag, "{} is not declared as a flag", s.var);
        !matches!(self.text(s).trim(), "0" | "false" | "off" | "no")
    }
}

impl MailConfig {
    fn from_vars(vars: &Vars, bind: &str) -> anyhow::Result<MailConfig> {
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
        Ok(Config {
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

/// The README's configuration table (between its `config:begin`/`config:end` markers).
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | type | default | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let var = match s.ty {
            Type::NamedSecret => format!("*(the operation's `{}`)*", s.var),
            _ => format!("`{}`", s.var),
        };
        let default = match s.default {
            IfUnset::Value(v) => format!("`{v}`"),
            IfUnset::Glossed(v, gloss) => format!("`{v}` ({gloss})"),
            IfUnset::Nothing(what) | IfUnset::Derived(what) => what.to_string(),
        };
        out.push_str(&format!(
            "| {var} | {} | {default} | {} |\n",
            s.ty.label(),
            s.doc
        ));
    }
    out
}

/// `.env.example`: every setting a deployment may set, commented out at its default.
pub fn env_example() -> String {
    let mut out = String::from(
        "# countersign's environment variables, each commented out at its default.\n\
         # Generated from src/config.rs by `countersign config --env-example`: edit the\n\
         # declarations there, not this file. countersign reads only its environment: load\n\
         # this file with your service manager (systemd EnvironmentFile=) or `set -a; . ./.env`.\n",
    );
    for s in SETTINGS.iter().filter(|s| s.field != "tests") {
        out.push('\n');
        let unset = match s.default {
            IfUnset::Value(_) => String::new(),
            IfUnset::Glossed(_, gloss) => format!(" Default: {gloss}."),
            IfUnset::Nothing("unset") => String::new(),
            IfUnset::Nothing(what) => format!(" Unset: {what}."),
            IfUnset::Derived(what) => format!(" Default: {what}."),
        };
        let doc = s.doc.trim_end_matches('.');
        let text = format!("{}. Type: {}.{unset}", capitalised(doc), s.ty.label()).replace('`', "");
        for line in wrap(&text, 86) {
            out.push_str(&format!("# {line}\n"));
        }
        let var = match s.ty {
            Type::NamedSecret => "CS_EXAMPLE_HOOK_SECRET",
            _ => s.var,
        };
        let value = s.default.value().unwrap_or_default();
        let value = if value.contains([' ', '<', '>']) {
            format!("\"{value}\"")
        } else {
            value.to_string()
        };
        out.push_str(&format!("#{var}={value}\n"));
    }
    out
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Words into lines of at most `width` characters (a longer word gets its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |name| vars.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        format!("{:#}", parse(vars).expect_err("a start-up error"))
    }

    #[test]
    fn the_defaults_are_the_documented_values() {
        let c = Config::defaults();
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite(PathBuf::from("countersign.db"))
        );
        assert_eq!(c.bind, "127.0.0.1:8080");
        assert_eq!(c.schema_path, None);
        assert_eq!(c.pool_size, 8);
        assert_eq!(c.max_json_bytes, 32 * 1024 * 1024);
        assert_eq!(c.max_import_bytes, 4 * 1024 * 1024 * 1024);
        assert!(c.worker);
        assert_eq!(
            (c.exec_batch, c.lease_secs, c.exec_throttle_ms, c.poll_ms),
            (500, 30, 0, 1000)
        );
        assert_eq!((c.login_per_second, c.upload_idle_secs), (20.0, 30));
        let m = &c.mail;
        assert!(
            matches!(&m.transport, MailTransport::Dir(d) if d == &PathBuf::from("countersign-mail"))
        );
        assert!(m.mailer);
        assert_eq!(m.from, "countersign <countersign@localhost>");
        assert_eq!(m.public_url, "http://127.0.0.1:8080");
        assert_eq!(
            (m.max_attempts, m.retry_base_ms, m.timeout_secs, m.poll_ms),
            (8, 30_000, 30, 1000)
        );
        assert_eq!((m.digest_hours, m.lease_secs), (24.0, 60));
    }

    #[test]
    fn the_environment_overrides_and_is_clamped_as_before() {
        let c = parse(&[
            ("DATABASE_URL", "postgres://u:p@db/cs"),
            ("COUNTERSIGN_BIND", "0.0.0.0:9000"),
            ("COUNTERSIGN_WORKER", " off "),
            ("COUNTERSIGN_EXEC_BATCH", "0"),
            ("COUNTERSIGN_POLL_MS", "1"),
            ("COUNTERSIGN_LOGIN_PER_SECOND", "0"),
            ("COUNTERSIGN_SCHEMA", "/etc/cs.toml"),
            ("COUNTERSIGN_MAX_JSON_BYTES", " 1024 "),
            ("COUNTERSIGN_SMTP_HOST", "mail.example"),
            ("COUNTERSIGN_SMTP_TLS", "tls"),
            ("COUNTERSIGN_MAIL_MAX_ATTEMPTS", "0"),
            ("COUNTERSIGN_MAILER", "no"),
            // Blank counts as unset.
            ("COUNTERSIGN_POOL_SIZE", "  "),
        ])
        .unwrap();
        assert_eq!(
            c.database,
            DatabaseUrl::Postgres("postgres://u:p@db/cs".into())
        );
        assert_eq!(c.mail.public_url, "http://0.0.0.0:9000");
        assert!(!c.worker && !c.mail.mailer);
        assert_eq!((c.exec_batch, c.poll_ms, c.pool_size), (1, 10, 8));
        assert_eq!((c.login_per_second, c.max_json_bytes), (0.1, 1024));
        assert_eq!(c.schema_path, Some(PathBuf::from("/etc/cs.toml")));
        assert_eq!(c.mail.max_attempts, 1);
        assert!(matches!(
            c.mail.transport,
            MailTransport::Smtp {
                port: 465,
                tls: SmtpTls::Tls,
                ..
            }
        ));
        let c = parse(&[
            ("COUNTERSIGN_SMTP_HOST", "h"),
            ("COUNTERSIGN_SMTP_PORT", "2525"),
        ])
        .unwrap();
        assert!(matches!(
            c.mail.transport,
            MailTransport::Smtp {
                port: 2525,
                tls: SmtpTls::StartTls,
                ..
            }
        ));
    }

    #[test]
    fn start_up_errors_name_the_variable_the_value_and_what_is_expected() {
        assert_eq!(
            error(&[("COUNTERSIGN_POOL_SIZE", "eight")]),
            r#"COUNTERSIGN_POOL_SIZE="eight" is not a valid number"#
        );
        assert_eq!(
            error(&[("COUNTERSIGN_POOL_SIZE", "0")]),
            "COUNTERSIGN_POOL_SIZE must be at least 1"
        );
        assert_eq!(
            error(&[("COUNTERSIGN_DIGEST_HOURS", "a day")]),
            r#"COUNTERSIGN_DIGEST_HOURS="a day" is not a valid number"#
        );
        assert_eq!(
            error(&[
                ("COUNTERSIGN_SMTP_HOST", "h"),
                ("COUNTERSIGN_SMTP_TLS", "ssl")
            ]),
            r#"COUNTERSIGN_SMTP_TLS="ssl": use starttls (default), tls or none"#
        );
        assert_eq!(
            error(&[
                ("COUNTERSIGN_SMTP_HOST", "h"),
                ("COUNTERSIGN_SMTP_PORT", "99999")
            ]),
            r#"COUNTERSIGN_SMTP_PORT="99999" is not a valid number"#
        );
        assert_eq!(
            error(&[("COUNTERSIGN_MAIL_FROM", "nobody")]),
            r#"COUNTERSIGN_MAIL_FROM="nobody" is not a mail address"#
        );
        assert!(error(&[("DATABASE_URL", "mysql://x")]).contains("unknown scheme \"mysql\""));
    }

    #[test]
    fn every_declared_setting_is_read_and_every_default_is_valid() {
        // Read with and without SMTP (the transport reads one set of variables or the other).
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        for smtp in [false, true] {
            Config::from_lookup(&|name| {
                asked.borrow_mut().insert(name.to_string());
                (smtp && name == SMTP_HOST.var).then(|| "mail.example".to_string())
            })
            .unwrap();
        }
        let asked = asked.into_inner();
        for s in SETTINGS {
            let read_here = !matches!(s.field, "telemetry" | "tests") && s.ty != Type::NamedSecret;
            assert_eq!(
                asked.contains(s.var),
                read_here,
                "{}: declared for {:?} but {} by Config",
                s.var,
                s.field,
                if read_here { "not read" } else { "read" }
            );
            if let (Type::OneOf(words), Some(v)) = (s.ty, s.default.value()) {
                assert!(
                    words.contains(&v),
                    "{}: default {v:?} not in {words:?}",
                    s.var
                );
            }
        }
    }

    #[test]
    fn secrets_never_print() {
        let mut c = parse(&[
            ("DATABASE_URL", "postgres://cs:pw-in-the-url@db.example/cs"),
            ("COUNTERSIGN_SMTP_HOST", "mail.example"),
            ("COUNTERSIGN_SMTP_USERNAME", "mailer"),
            ("COUNTERSIGN_SMTP_PASSWORD", "smtp-password-value"),
        ])
        .unwrap();
        c.secrets
            .insert("CS_HOOK".into(), Secret::new("webhook-secret-value"));
        for shown in [format!("{c:?}"), format!("{c:#?}"), format!("{:?}", c.mail)] {
            for secret in [
                "pw-in-the-url",
                "smtp-password-value",
                "webhook-secret-value",
            ] {
                assert!(!shown.contains(secret), "{secret} printed: {shown}");
            }
            assert!(shown.contains("***"), "{shown}");
        }
        let s = c.secret("CS_HOOK").unwrap();
        assert_eq!(
            (s.to_string(), format!("{s:?}")),
            ("***".into(), "***".into())
        );
        assert_eq!(s.expose(), "webhook-secret-value");
        match &c.mail.transport {
            MailTransport::Smtp { password, .. } => assert_eq!(
                password.as_ref().map(Secret::expose),
                Some("smtp-password-value")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_looks_secret_is_declared_secret() {
        for s in SETTINGS {
            let looks_secret = ["PASSWORD", "SECRET", "TOKEN", "KEY"]
                .iter()
                .any(|w| s.var.to_ascii_uppercase().contains(w));
            assert_eq!(looks_secret, s.secret(), "{}", s.var);
        }
    }
}
