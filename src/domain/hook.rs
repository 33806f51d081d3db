//! Chat and event hooks: what a team can subscribe to, in which format it is delivered,
//! and which event causes which hook delivery. Pure: storage is `db::hooks`, delivery
//! `notify::hooks`.

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;

/// How a hook's messages are shaped.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum HookFormat {
    /// A Slack incoming webhook: a Block Kit message.
    Slack,
    /// A Microsoft Teams workflow webhook: an Adaptive Card.
    Teams,
    /// Any receiver: a JSON document signed with HMAC-SHA256 over a timestamp and the body.
    Json,
}

text_enum!(HookFormat, "hook format", {
    Slack => "slack",
    Teams => "teams",
    Json => "json",
});

impl HookFormat {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Slack => "Slack incoming webhook (Block Kit)",
            Self::Teams => "Microsoft Teams workflow webhook (Adaptive Card)",
            Self::Json => "JSON webhook, signed (HMAC-SHA256)",
        }
    }
}

/// Which worker delivers an outbox row.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum OutboxChannel {
    Mail,
    Hook,
}

text_enum!(OutboxChannel, "outbox channel", {
    Mail => "mail",
    Hook => "hook",
});

/// The events a hook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    NeedsSignoff,
    Signed,
    Approved,
    Stale,
    Rejected,
    Cancelled,
    ExecutionStarted,
    ExecutionHalted,
    ExecutionFinished,
    RollbackCreated,
    Freeze,
    Lockdown,
}

text_enum!(HookKind, "hook event", {
    NeedsSignoff => "needs_signoff",
    Signed => "signed",
    Approved => "approved",
    Stale => "stale",
    Rejected => "rejected",
    Cancelled => "cancelled",
    ExecutionStarted => "execution_started",
    ExecutionHalted => "execution_halted",
    ExecutionFinished => "execution_finished",
    RollbackCreated => "rollback_created",
    Freeze => "freeze",
    Lockdown => "lockdown",
});

impl HookKind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::NeedsSignoff => "A change was submitted and needs sign-off",
            Self::Signed => "Someone signed a change",
            Self::Approved => "A change was approved",
            Self::Stale => {
                "Sign-offs stopped counting (the targets or text changed, or they expired)"
            }
            Self::Rejected => "A change was rejected",
            Self::Cancelled => "A change was cancelled",
            Self::ExecutionStarted => "Execution started",
            Self::ExecutionHalted => {
                "Execution halted, paused at a gate, or a scheduled start was refused"
            }
            Self::ExecutionFinished => "Execution finished (or was aborted)",
            Self::RollbackCreated => "A rollback was created",
            Self::Freeze => "A freeze was confirmed, changed or lifted (every team's hooks)",
            Self::Lockdown => "A lockdown was declared or lifted (every team's hooks)",
        }
    }

    /// Calendar events concern everyone: they go to the hooks of every team. Events of a
    /// change go to the hooks of the change's teams.
    pub fn is_calendar(self) -> bool {
        matches!(self, Self::Freeze | Self::Lockdown)
    }
}

/// Largest number of hooks one team may have (each event is one delivery per hook).
pub const MAX_HOOKS_PER_TEAM: usize = 20;
/// Longest receiver address accepted.
pub const MAX_URL_LEN: usize = 2000;
/// Longest hook name.
pub const MAX_NAME_LEN: usize = 80;

/// Check a hook's name, address and events; every problem, each in words.
pub fn check(name: &str, url: &str, events: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let name = name.trim();
    if name.is_empty() {
        problems.push("name: give the hook a name (say, the channel it posts to)".to_string());
    } else if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        problems.push(format!(
            "name: one line of at most {MAX_NAME_LEN} characters"
        ));
    }
    problems.extend(check_url(url));
    if events.is_empty() {
        problems.push("events: choose at least one event".to_string());
    }
    for e in events {
        if HookKind::parse(e).is_none() {
            let known: Vec<&str> = HookKind::VALUES.iter().map(|k| k.as_str()).collect();
            problems.push(format!(
                "events: `{}` is not an event a hook can subscribe to (one of: {})",
                clip(e, 60),
                known.join(", ")
            ));
        }
    }
    problems
}

/// `s` cut to `n` characters for a message.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n).collect();
        c.push('…');
        c
    }
}

fn check_url(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty() {
        return Some("url: the receiver's address is missing".into());
    }
    if url.len() > MAX_URL_LEN {
        return Some(format!("url: longer than {MAX_URL_LEN} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("url: an address has no spaces or control characters".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Some(format!(
            "url: `{}` is not an http:// or https:// address",
            clip(url, 60)
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Some("url: the address names no host (or carries a user name)".into());
    }
    None
}

/// The address as screens show it once stored: scheme, host and the first path segment;
/// Slack's and Teams' addresses carry their credential further on.
pub fn masked_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let mut parts = rest.splitn(3, '/');
    let host = parts.next().unwrap_or_default();
    match (parts.next(), parts.next()) {
        (Some(first), Some(_)) => format!("{scheme}://{host}/{first}/…"),
        (Some(first), None) if !first.is_empty() => format!("{scheme}://{host}/…"),
        _ => format!("{scheme}://{host}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        crate::domain::text_enum::assert_round_trip(HookFormat::VALUES);
        crate::domain::text_enum::assert_round_trip(HookKind::VALUES);
        crate::domain::text_enum::assert_round_trip(OutboxChannel::VALUES);
    }

    #[test]
    fn bad_hooks_are_refused_with_every_reason() {
        assert!(check(
            "ops",
            "https://hooks.slack.com/services/T/B/x",
            &["approved".into()]
        )
        .is_empty());
        let p = check("", "ftp://x", &["approve".into()]);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("name:"));
        assert!(p[1].contains("not an http"));
        assert!(p[2].contains("`approve` is not an event"));
        assert!(check("a", "https://", &["freeze".into()])[0].contains("no host"));
        assert!(check("a", "https://u:p@x/", &["freeze".into()])[0].contains("user name"));
        assert!(check("a", "https://x/", &[])[0].contains("at least one"));
        assert!(check(
            "a",
            &format!("https://x/{}", "a".repeat(2001)),
            &["freeze".into()]
        )[0]
        .contains("longer"));
    }

    #[test]
    fn addresses_are_masked_past_their_first_segment() {
        assert_eq!(
            masked_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/services/…"
        );
        assert_eq!(
            masked_url("http://127.0.0.1:9/hook"),
            "http://127.0.0.1:9/…"
        );
        assert_eq!(masked_url("http://127.0.0.1:9"), "http://127.0.0.1:9/");
    }
}
