//! The declarations: every environment variable with the field it fills, its type, its
//! default and what it means ([`SETTINGS`]), and the one reader of the environment
//! ([`Vars`]), which reads only through them.

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
    PASSWORD_LOGIN: "COUNTERSIGN_PASSWORD_LOGIN" => "password_login", Type::Flag, IfUnset::Value("true"),
        "`false` turns the password form off: people sign in only with single sign-on (which must then be configured); API tokens still work";
    OIDC_ISSUER: "COUNTERSIGN_OIDC_ISSUER" => "oidc.issuer", Type::Url, IfUnset::Nothing("unset: no single sign-on"),
        "single sign-on: the OpenID provider's issuer URL (its `/.well-known/openid-configuration` is read); see Single sign-on";
    OIDC_CLIENT_ID: "COUNTERSIGN_OIDC_CLIENT_ID" => "oidc.client_id", Type::Text, IfUnset::Nothing("required with the issuer"),
        "the client id registered at the provider (its redirect address is `<COUNTERSIGN_PUBLIC_URL>/login/sso/callback`)";
    OIDC_CLIENT_SECRET: "COUNTERSIGN_OIDC_CLIENT_SECRET" => "oidc.client_secret", Type::Secret, IfUnset::Nothing("required with the issuer"),
        "the client secret (never logged)";
    OIDC_SCOPES: "COUNTERSIGN_OIDC_SCOPES" => "oidc.scopes", Type::Text, IfUnset::Value("openid email profile"),
        "scopes asked for, separated by spaces (`openid` is always asked for; add `groups` if the provider needs it for the groups claim)";
    OIDC_ALLOWED_DOMAINS: "COUNTERSIGN_OIDC_ALLOWED_DOMAINS" => "oidc.allowed_domains", Type::Text, IfUnset::Nothing("unset: any verified address"),
        "comma-separated email domains that may sign in (`corp.example,ops.corp.example`); anyone else is refused and nothing is created";
    OIDC_GROUPS_CLAIM: "COUNTERSIGN_OIDC_GROUPS_CLAIM" => "oidc.groups_claim", Type::Text, IfUnset::Value("groups"),
        "the claim that lists a person's groups (read from the ID token, else from the userinfo answer)";
    OIDC_TEAMS: "COUNTERSIGN_OIDC_TEAMS" => "oidc.teams", Type::Text, IfUnset::Nothing("unset: memberships are managed in countersign only"),
        "`group=team,…`: members of the provider's group are members of the countersign team. Memberships of the teams named here follow the groups at every sign-in (leaving a group leaves the team, and the person's sign-offs stop counting); other teams are untouched";
    OIDC_ADMIN_GROUPS: "COUNTERSIGN_OIDC_ADMIN_GROUPS" => "oidc.admin_groups", Type::Text, IfUnset::Nothing("unset: admin rights are managed in countersign only"),
        "comma-separated groups whose members are admins; when set, admin rights follow the groups at every sign-in";
    OIDC_LABEL: "COUNTERSIGN_OIDC_LABEL" => "oidc.label", Type::Text, IfUnset::Value("single sign-on"),
        "the provider's name on the sign-in page's button (\"Sign in with …\")";
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
        "run the outbox deliverers (the mailer and the chat and event hooks) inside `serve`";
    SMTP_HOST: "COUNTERSIGN_SMTP_HOST" => "mail.transport", Type::Text, IfUnset::Nothing("unset"),
        "SMTP server; unset: mails are written to `COUNTERSIGN_MAIL_DIR`";
    SMTP_PORT: "COUNTERSIGN_SMTP_PORT" => "mail.transport", Type::Integer, IfUnset::Derived("587 / 465 / 25"),
        "by `COUNTERSIGN_SMTP_TLS`";
    SMTP_TLS: "COUNTERSIGN_SMTP_TLS" => "mail.transport", Type::OneOf(&["starttls", "tls", "none"]), IfUnset::Value("starttls"),
        "`starttls`, `tls` (implicit TLS) or `none` (a relay on the same machine)";
    SMTP_USERNAME: "COUNTERSIGN_SMTP_USERNAME" => "mail.transport", Type::Text, IfUnset::Nothing("unset"),
        "SMTP user name";
    METRICS_TOKEN: "COUNTERSIGN_METRICS_TOKEN" => "metrics_token", Type::Secret, IfUnset::Nothing("unset: `/metrics` is open on the listen address"),
        "the bearer token a Prometheus scrape of `/metrics` must send; never logged";
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
    HOOK_TIMEOUT_SECS: "COUNTERSIGN_HOOK_TIMEOUT_SECS" => "mail.hook_timeout_secs", Type::Seconds, IfUnset::Value("10"),
        "how long a chat or event hook's receiver may take to answer (hooks share the mail's attempts and retry delays)";
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

/// The environment as the settings see it: a blank value counts as unset. Every read
/// names its [`Setting`], so nothing undeclared is read.
pub(super) struct Vars<'a>(pub(super) &'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// The value set in the environment, if any.
    pub(super) fn set(&self, s: &Setting) -> Option<String> {
        (self.0)(s.var).filter(|v| !v.trim().is_empty())
    }

    /// The value set, or the declared default.
    pub(super) fn text(&self, s: &Setting) -> String {
        self.set(s).unwrap_or_else(|| s.default_value().to_string())
    }

    pub(super) fn num<T: std::str::FromStr>(&self, s: &Setting) -> anyhow::Result<T> {
        debug_assert!(s.ty.is_number(), "{} is not declared as a number", s.var);
        let v = self.text(s);
        v.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{}={v:?} is not a valid number", s.var))
    }

    pub(super) fn flag(&self, s: &Setting) -> bool {
        debug_assert_eq!(s.ty, Type::Flag, "{} is not declared as a flag", s.var);
        !matches!(self.text(s).trim(), "0" | "false" | "off" | "no")
    }
}
