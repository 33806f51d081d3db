//! The shared schema: identifier kinds (with their syntax and scope), and the operation
//! catalogue. Loaded from TOML, validated as a whole (every problem reported with its
//! place), and versioned by a hash of its canonical form.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::waves::{default_waves, WaveSize};

/// One identifier kind, e.g. `site`.
#[derive(Debug, Clone, Serialize)]
pub struct Kind {
    pub name: String,
    pub label: String,
    pub plural: String,
    pub description: String,
    pub prefix: Option<String>,
    pub pattern: Option<String>,
    pub example: Option<String>,
    pub parent: Option<String>,
    pub attributes: Vec<String>,
    #[serde(skip)]
    regex: Option<Regex>,
}

impl Kind {
    /// Does `id` have this kind's syntax (prefix and full-match pattern)?
    pub fn matches(&self, id: &str) -> bool {
        if let Some(p) = &self.prefix {
            if !id.starts_with(p.as_str()) || id.len() == p.len() {
                return false;
            }
        }
        match &self.regex {
            Some(re) => re.is_match(id),
            None => true,
        }
    }

    /// "Cloud site (site)"
    pub fn describe(&self) -> String {
        format!("{} ({})", self.label, self.name)
    }

    /// "an App installation (app_install)", "a Cloud site (site)"
    pub fn a_describe(&self) -> String {
        format!("{} {}", article(&self.label), self.describe())
    }

    /// What the syntax is, for error messages: "`[0-9a-f]{8}-…`, e.g. `0b1c…`".
    pub fn syntax_hint(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.prefix {
            s.push_str(&format!("prefix `{p}`"));
        }
        if let Some(p) = &self.pattern {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&format!("pattern `{p}`"));
        }
        if let Some(e) = &self.example {
            s.push_str(&format!(", e.g. `{e}`"));
        }
        if s.is_empty() {
            s.push_str("any non-empty ID");
        }
        s
    }
}

/// What executing an operation does to each target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Effect {
    SoftDelete,
    Restore,
    SetAttributes,
    Purge,
    Webhook,
}

super::text_enum::text_enum!(Effect, "effect", {
    SoftDelete => "soft_delete",
    Restore => "restore",
    SetAttributes => "set_attributes",
    Purge => "purge",
    Webhook => "webhook",
});

impl Effect {
    pub const ALL: [&'static str; 5] = [
        "soft_delete",
        "restore",
        "set_attributes",
        "purge",
        "webhook",
    ];

    /// Targets of restore and purge are deleted entities; every other effect acts on
    /// active ones.
    pub fn acts_on_deleted(self) -> bool {
        matches!(self, Effect::Restore | Effect::Purge)
    }

    /// Effects that remove an entity from service.
    pub fn is_destructive(self) -> bool {
        matches!(self, Effect::SoftDelete | Effect::Purge)
    }

    pub fn plain_words(self) -> &'static str {
        match self {
            Effect::SoftDelete => "soft delete (restorable until purged)",
            Effect::Restore => "restore deleted entities",
            Effect::SetAttributes => "set attributes (previous values kept)",
            Effect::Purge => "purge: permanent, irreversible",
            Effect::Webhook => "call an external executor",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SignoffPolicy {
    pub requester: u32,
    pub implementer: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Boolean,
    Enum,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub description: String,
    pub required: bool,
    pub pattern: Option<String>,
    pub values: Vec<String>,
    #[serde(skip)]
    regex: Option<Regex>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub name: String,
    pub label: String,
    pub description: String,
    pub target: String,
    pub effect: Effect,
    pub implemented_by: String,
    /// The teams that may request it (`None`: every team but the implementing one).
    pub requested_by: Option<Vec<String>>,
    pub signoffs: SignoffPolicy,
    /// The implementer must type the target count when there are more targets than this.
    pub confirm_above: Option<u64>,
    /// A larger resolution is refused.
    pub max_targets: u64,
    pub params: Vec<ParamSpec>,
    /// Soft deletes: days before a deleted target may be purged.
    pub retention_days: u32,
    /// Soft deletes of a kind with children: also delete the active descendants (they
    /// join the resolved list, so both teams see and sign them).
    pub cascade: bool,
    /// Execution waves; the last one takes the rest.
    pub waves: Vec<WaveSize>,
    /// Largest tolerated failure rate of a wave before the execution halts (0: any).
    pub failure_threshold: f64,
    /// Sign-offs a rollback of this operation needs (default: `signoffs`).
    pub rollback_signoffs: Option<SignoffPolicy>,
    /// `effect = "webhook"`: where and how to call the external executor.
    pub webhook: Option<WebhookSpec>,
}

/// An external executor endpoint. The secret is never in the schema: `secret_env` names
/// the environment variable that holds it.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookSpec {
    pub endpoint: String,
    pub secret_env: String,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    /// Calls in flight at once for one execution (`concurrency`, 1..=256, default 16).
    pub concurrency: u32,
    /// Most calls started per second by one execution (`max_per_second`); none: no limit.
    pub max_per_second: Option<f64>,
}

/// Default calls in flight at once for a webhook operation.
pub const DEFAULT_WEBHOOK_CONCURRENCY: u32 = 16;
/// Largest `concurrency` a webhook operation may ask for.
pub const MAX_WEBHOOK_CONCURRENCY: u32 = 256;
/// Largest `max_per_second` a webhook operation may ask for.
pub const MAX_WEBHOOK_PER_SECOND: f64 = 100_000.0;

pub const DEFAULT_RETENTION_DAYS: u32 = 30;

pub const DEFAULT_MAX_TARGETS: u64 = 100_000;

/// Why a team may not request an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    #[error("`{team}` implements {label}, so it cannot also request it: a change is requested by another team than the one that carries it out")]
    SameTeam { team: String, label: String },
    #[error("{label} may be requested only by {allowed}; `{team}` is not one of them")]
    NotRequesterTeam {
        team: String,
        label: String,
        allowed: String,
    },
}

impl Operation {
    /// May `team` be the requesting team of a change of this operation? Never the
    /// implementing team; one of `requested_by` when the schema lists them.
    pub fn may_be_requested_by(&self, team: &str) -> Result<(), RequestRefusal> {
        if team == self.implemented_by {
            return Err(RequestRefusal::SameTeam {
                team: team.to_string(),
                label: self.label.clone(),
            });
        }
        if let Some(list) = &self.requested_by {
            if !list.iter().any(|t| t == team) {
                return Err(RequestRefusal::NotRequesterTeam {
                    team: team.to_string(),
                    label: self.label.clone(),
                    allowed: list
                        .iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(())
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Does a sign-off on the implementer side need the typed target count?
    pub fn needs_confirm_count(&self, target_count: u64) -> bool {
        self.confirm_above.is_some_and(|n| target_count > n)
    }
}

/// A loaded, validated schema.
#[derive(Debug, Clone, Serialize)]
pub struct Schema {
    pub hash: String,
    pub kinds: BTreeMap<String, Kind>,
    pub operations: BTreeMap<String, Operation>,
}

/// One problem found while loading a schema, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaProblem {
    /// Dotted path, e.g. `kinds.site.parent`.
    pub place: String,
    /// 1-based line of the table that holds it, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.place, self.message),
            None => write!(f, "{}: {}", self.place, self.message),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the schema has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct SchemaErrors(pub Vec<SchemaProblem>);

// ---- raw TOML shape -------------------------------------------------------------------

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    #[serde(default)]
    kinds: BTreeMap<String, RawKind>,
    #[serde(default)]
    operations: BTreeMap<String, RawOperation>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    label: Option<String>,
    plural: Option<String>,
    description: Option<String>,
    prefix: Option<String>,
    pattern: Option<String>,
    example: Option<String>,
    parent: Option<String>,
    #[serde(default)]
    attributes: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawOperation {
    label: Option<String>,
    description: Option<String>,
    target: Option<String>,
    effect: Option<String>,
    implemented_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_by: Option<Vec<String>>,
    signoffs: Option<SignoffPolicy>,
    confirm_above: Option<u64>,
    max_targets: Option<u64>,
    #[serde(default)]
    params: BTreeMap<String, RawParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cascade: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    waves: Option<Vec<RawWave>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollback_signoffs: Option<SignoffPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    concurrency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_per_second: Option<f64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum RawWave {
    Count(u64),
    Text(String),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    ty: Option<String>,
    description: Option<String>,
    #[serde(default)]
    required: bool,
    pattern: Option<String>,
    #[serde(default)]
    values: Vec<String>,
}

/// "a" or "an" for a label.
pub fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

fn name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Team names: lowercase letters, digits, `-`, `_`, `.`; 1–64 characters.
pub fn team_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn header_line(source: &str, section: &str, name: &str) -> Option<usize> {
    let want = [
        format!("[{section}.{name}]"),
        format!("[{section}.\"{name}\"]"),
    ];
    source
        .lines()
        .position(|l| want.iter().any(|w| l.trim() == w))
        .map(|i| i + 1)
}

impl Schema {
    /// Parse and validate a schema; every problem is reported at once.
    pub fn from_toml(source: &str) -> Result<Schema, SchemaErrors> {
        let raw: RawSchema = toml::from_str(source).map_err(|e| {
            let line = e
                .span()
                .map(|s| source[..s.start.min(source.len())].matches('\n').count() + 1);
            // Some syntax errors (a control character in a comment) carry no message.
            let message = match e.message() {
                "" => "not valid TOML: a character TOML does not allow here (such as a control character)".to_string(),
                m => m.to_string(),
            };
            SchemaErrors(vec![SchemaProblem {
                place: "file".into(),
                line,
                message,
            }])
        })?;
        let mut problems = Vec::new();
        let mut push = |place: String, line: Option<usize>, message: String| {
            problems.push(SchemaProblem {
                place,
                line,
                message,
            })
        };

        if raw.kinds.is_empty() {
            push("kinds".into(), None, "no kinds are defined".into());
        }
        let mut kinds = BTreeMap::new();
        for (name, k) in &raw.kinds {
            let line = header_line(source, "kinds", name);
            let place = |f: &str| format!("kinds.{name}{}{f}", if f.is_empty() { "" } else { "." });
            if !name_ok(name) {
                push(
                    place(""),
                    line,
                    "a kind name must be lowercase letters, digits and `_`, starting with a letter"
                        .into(),
                );
            }
            let label = match &k.label {
                Some(l) if !l.trim().is_empty() => l.trim().to_string(),
                _ => {
                    push(place("label"), line, "a label is required".into());
                    name.clone()
                }
            };
            let regex = match &k.pattern {
                // On its own first: a fragment such as `a)|(b` would escape `^(?:…)$`.
                Some(p) => match Regex::new(p).and_then(|_| Regex::new(&format!("^(?:{p})$"))) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        let msg = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim()
                            .to_string();
                        push(
                            place("pattern"),
                            line,
                            format!("not a valid regular expression: {msg}"),
                        );
                        None
                    }
                },
                None => None,
            };
            if k.pattern.is_none() && k.prefix.is_none() {
                push(
                    place("pattern"),
                    line,
                    "a kind needs a `pattern` and/or a `prefix` so its IDs can be checked".into(),
                );
            }
            if let Some(parent) = &k.parent {
                if !raw.kinds.contains_key(parent) {
                    push(
                        place("parent"),
                        line,
                        format!(
                            "unknown parent kind `{parent}` (known: {})",
                            raw.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
            let mut seen = BTreeSet::new();
            for a in &k.attributes {
                if !name_ok(a) {
                    push(
                        place("attributes"),
                        line,
                        format!("attribute `{a}` must be lowercase letters, digits and `_`"),
                    );
                }
                if !seen.insert(a) {
                    push(
                        place("attributes"),
                        line,
                        format!("attribute `{a}` is listed twice"),
                    );
                }
            }
            let kind = Kind {
                name: name.clone(),
                plural: k.plural.clone().unwrap_or_else(|| format!("{label}s")),
                label,
                description: k.description.clone().unwrap_or_default(),
                prefix: k.prefix.clone(),
                pattern: k.pattern.clone(),
                example: k.example.clone(),
                parent: k.parent.clone(),
                attributes: k.attributes.clone(),
                regex,
            };
            if let Some(ex) = &k.example {
                if (kind.regex.is_some() || kind.pattern.is_none()) && !kind.matches(ex) {
                    push(
                        place("example"),
                        line,
                        format!("the example `{ex}` does not match the kind's own syntax"),
                    );
                }
            }
            kinds.insert(name.clone(), kind);
        }
        // Cycles in the parent chain.
        for name in raw.kinds.keys() {
            let mut seen = vec![name.clone()];
            let mut cur = raw.kinds.get(name).and_then(|k| k.parent.clone());
            while let Some(p) = cur {
                if seen.contains(&p) {
                    if &p == name {
                        seen.push(p);
                        push(
                            format!("kinds.{name}.parent"),
                            header_line(source, "kinds", name),
                            format!("parent chain is a cycle: {}", seen.join(" → ")),
                        );
                    }
                    break;
                }
                seen.push(p.clone());
                cur = raw.kinds.get(&p).and_then(|k| k.parent.clone());
            }
        }

        let mut operations = BTreeMap::new();
        for (name, o) in &raw.operations {
            let line = header_line(source, "operations", name);
            let place = |f: &str| {
                format!(
                    "operations.{name}{}{f}",
                    if f.is_empty() { "" } else { "." }
                )
            };
            if !name_ok(name) {
                push(place(""), line, "an operation name must be lowercase letters, digits and `_`, starting with a letter".into());
            }
            let label = match &o.label {
                Some(l) if !l.trim().is_empty() => l.trim().to_string(),
                _ => {
                    push(place("label"), line, "a label is required".into());
                    name.clone()
                }
            };
            let target = match &o.target {
                Some(t) if kinds.contains_key(t) => t.clone(),
                Some(t) => {
                    push(
                        place("target"),
                        line,
                        format!(
                            "target kind `{t}` does not exist (known: {})",
                            kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                    t.clone()
                }
                None => {
                    push(
                        place("target"),
                        line,
                        "the target kind is required (an operation acts on exactly one kind)"
                            .into(),
                    );
                    String::new()
                }
            };
            let effect = match &o.effect {
                Some(e) => match Effect::parse(e) {
                    Some(e) => Some(e),
                    None => {
                        push(
                            place("effect"),
                            line,
                            format!("unknown effect `{e}` (one of: {})", Effect::ALL.join(", ")),
                        );
                        None
                    }
                },
                None => {
                    push(
                        place("effect"),
                        line,
                        format!(
                            "the effect is required (one of: {})",
                            Effect::ALL.join(", ")
                        ),
                    );
                    None
                }
            };
            let implemented_by = match &o.implemented_by {
                Some(t) if team_name_ok(t) => t.clone(),
                Some(t) => {
                    push(place("implemented_by"), line, format!("`{t}` is not a valid team name (lowercase letters, digits, `-`, `_`, `.`)"));
                    t.clone()
                }
                None => {
                    push(
                        place("implemented_by"),
                        line,
                        "the implementing team is missing".into(),
                    );
                    String::new()
                }
            };
            let requested_by = o.requested_by.clone().inspect(|teams| {
                for t in teams {
                    if !team_name_ok(t) {
                        push(place("requested_by"), line, format!("`{t}` is not a valid team name (lowercase letters, digits, `-`, `_`, `.`)"));
                    } else if *t == implemented_by {
                        push(place("requested_by"), line, format!("`{t}` implements this operation, so it cannot also request it: the requesting team is never the implementing team"));
                    }
                }
                if teams.is_empty() {
                    push(place("requested_by"), line, "the list is empty: leave it out to let every team but the implementing one request the operation".into());
                }
            });
            let signoffs = o.signoffs.unwrap_or(SignoffPolicy {
                requester: 1,
                implementer: 1,
            });
            if signoffs.implementer == 0 {
                push(
                    place("signoffs.implementer"),
                    line,
                    "at least one implementer sign-off is required".into(),
                );
            }
            let max_targets = o.max_targets.unwrap_or(DEFAULT_MAX_TARGETS);
            if max_targets == 0 {
                push(place("max_targets"), line, "must be at least 1".into());
            }
            let mut params = Vec::new();
            for (pname, p) in &o.params {
                let pplace = format!("operations.{name}.params.{pname}");
                let ty = match p.ty.as_deref() {
                    Some("string") | None => ParamType::String,
                    Some("integer") => ParamType::Integer,
                    Some("boolean") => ParamType::Boolean,
                    Some("enum") => ParamType::Enum,
                    Some(other) => {
                        push(
                            format!("{pplace}.type"),
                            line,
                            format!(
                                "unknown parameter type `{other}` (string, integer, boolean, enum)"
                            ),
                        );
                        ParamType::String
                    }
                };
                if ty == ParamType::Enum && p.values.is_empty() {
                    push(
                        format!("{pplace}.values"),
                        line,
                        "an enum parameter needs `values`".into(),
                    );
                }
                let regex = match &p.pattern {
                    Some(pat) => {
                        match Regex::new(pat).and_then(|_| Regex::new(&format!("^(?:{pat})$"))) {
                            Ok(r) => Some(r),
                            Err(_) => {
                                push(
                                    format!("{pplace}.pattern"),
                                    line,
                                    "not a valid regular expression".into(),
                                );
                                None
                            }
                        }
                    }
                    None => None,
                };
                if effect == Some(Effect::SetAttributes) {
                    if let Some(k) = kinds.get(&target) {
                        if !k.attributes.contains(pname) {
                            push(pplace.clone(), line, format!("set_attributes parameter `{pname}` is not an attribute of {} (attributes: {})", k.describe(), k.attributes.join(", ")));
                        }
                    }
                }
                params.push(ParamSpec {
                    name: pname.clone(),
                    ty,
                    description: p.description.clone().unwrap_or_default(),
                    required: p.required,
                    pattern: p.pattern.clone(),
                    values: p.values.clone(),
                    regex,
                });
            }
            if effect == Some(Effect::SetAttributes) && params.is_empty() {
                push(place("params"), line, "a set_attributes operation needs at least one parameter (the attributes it sets)".into());
            }
            let mut waves = Vec::new();
            match &o.waves {
                None => waves = default_waves(),
                Some(list) if list.is_empty() => push(
                    place("waves"),
                    line,
                    "list at least one wave, e.g. [1, \"10%\"] (the last wave takes the rest)"
                        .into(),
                ),
                Some(list) => {
                    for w in list {
                        let text = match w {
                            RawWave::Count(n) => n.to_string(),
                            RawWave::Text(t) => t.clone(),
                        };
                        match WaveSize::parse(&text) {
                            Ok(w) => waves.push(w),
                            Err(m) => push(place("waves"), line, m),
                        }
                    }
                }
            }
            let failure_threshold = o.failure_threshold.unwrap_or(0.0);
            if !(0.0..1.0).contains(&failure_threshold) {
                push(
                    place("failure_threshold"),
                    line,
                    "must be at least 0 (any failure halts) and below 1".into(),
                );
            }
            if o.cascade == Some(true) && effect != Some(Effect::SoftDelete) {
                push(
                    place("cascade"),
                    line,
                    "only a soft_delete operation can cascade".into(),
                );
            }
            if let Some(rs) = o.rollback_signoffs {
                if rs.implementer == 0 {
                    push(
                        place("rollback_signoffs.implementer"),
                        line,
                        "a rollback needs at least one implementer sign-off".into(),
                    );
                }
            }
            let webhook = if effect == Some(Effect::Webhook) {
                let endpoint = match &o.endpoint {
                    Some(e) if e.starts_with("http://") || e.starts_with("https://") => e.clone(),
                    Some(e) => {
                        push(
                            place("endpoint"),
                            line,
                            format!("`{e}` is not an http:// or https:// URL"),
                        );
                        e.clone()
                    }
                    None => {
                        push(
                            place("endpoint"),
                            line,
                            "a webhook operation needs an `endpoint` URL".into(),
                        );
                        String::new()
                    }
                };
                let secret_env = match &o.secret_env {
                    Some(v)
                        if !v.is_empty()
                            && v.chars().all(|c| {
                                c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
                            }) =>
                    {
                        v.clone()
                    }
                    Some(v) => {
                        push(
                            place("secret_env"),
                            line,
                            format!("`{v}` is not an environment variable name (A-Z, 0-9, _)"),
                        );
                        v.clone()
                    }
                    None => {
                        push(place("secret_env"), line, "a webhook operation needs `secret_env`, the environment variable that holds its HMAC secret (never the secret itself)".into());
                        String::new()
                    }
                };
                let concurrency = match o.concurrency {
                    None => DEFAULT_WEBHOOK_CONCURRENCY,
                    Some(n) if (1..=i64::from(MAX_WEBHOOK_CONCURRENCY)).contains(&n) => n as u32,
                    Some(n) => {
                        push(
                            place("concurrency"),
                            line,
                            format!("`concurrency = {n}`: calls in flight at once must be between 1 and {MAX_WEBHOOK_CONCURRENCY} (default {DEFAULT_WEBHOOK_CONCURRENCY})"),
                        );
                        DEFAULT_WEBHOOK_CONCURRENCY
                    }
                };
                let max_per_second = match o.max_per_second {
                    None => None,
                    Some(r) if r.is_finite() && r > 0.0 && r <= MAX_WEBHOOK_PER_SECOND => Some(r),
                    Some(r) => {
                        push(
                            place("max_per_second"),
                            line,
                            format!("`max_per_second = {r}`: the rate limit must be a number of calls per second above 0 and at most {MAX_WEBHOOK_PER_SECOND} (leave it out for no limit)"),
                        );
                        None
                    }
                };
                Some(WebhookSpec {
                    endpoint,
                    secret_env,
                    timeout_ms: o.timeout_ms.unwrap_or(10_000).max(1),
                    max_attempts: o.max_attempts.unwrap_or(5).max(1),
                    concurrency,
                    max_per_second,
                })
            } else {
                for (f, present) in [
                    ("endpoint", o.endpoint.is_some()),
                    ("secret_env", o.secret_env.is_some()),
                    ("concurrency", o.concurrency.is_some()),
                    ("max_per_second", o.max_per_second.is_some()),
                ] {
                    if present {
                        push(
                            place(f),
                            line,
                            "only a webhook operation calls an endpoint".into(),
                        );
                    }
                }
                None
            };
            if let Some(effect) = effect {
                operations.insert(
                    name.clone(),
                    Operation {
                        name: name.clone(),
                        label,
                        description: o.description.clone().unwrap_or_default(),
                        target,
                        effect,
                        implemented_by,
                        requested_by,
                        signoffs,
                        confirm_above: o.confirm_above,
                        max_targets,
                        params,
                        retention_days: o.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
                        cascade: o.cascade.unwrap_or(false),
                        waves,
                        failure_threshold,
                        rollback_signoffs: o.rollback_signoffs,
                        webhook,
                    },
                );
            }
        }
        if !problems.is_empty() {
            return Err(SchemaErrors(problems));
        }
        // Version = hash of the canonical form (sorted keys, comments and layout ignored).
        let canonical = serde_json::to_string(&raw).expect("schema serialises");
        let hash = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        Ok(Schema {
            hash,
            kinds,
            operations,
        })
    }

    pub fn kind(&self, name: &str) -> Option<&Kind> {
        self.kinds.get(name)
    }

    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    /// The chain of kinds from `kind` up to its root, `kind` first.
    pub fn ancestry(&self, kind: &str) -> Vec<&Kind> {
        let mut out = Vec::new();
        let mut cur = self.kinds.get(kind);
        while let Some(k) = cur {
            out.push(k);
            cur = k.parent.as_deref().and_then(|p| self.kinds.get(p));
        }
        out
    }

    /// The kinds strictly between `scope` (exclusive) and `target` (inclusive), top-down;
    /// `None` when `scope` is not an ancestor kind of `target`.
    pub fn descent(&self, scope: &str, target: &str) -> Option<Vec<String>> {
        let chain = self.ancestry(target);
        let pos = chain.iter().position(|k| k.name == scope)?;
        if pos == 0 {
            return None;
        }
        Some(chain[..pos].iter().rev().map(|k| k.name.clone()).collect())
    }

    /// Kinds whose syntax accepts `id`.
    pub fn kinds_matching(&self, id: &str) -> Vec<&Kind> {
        self.kinds.values().filter(|k| k.matches(id)).collect()
    }

    /// Kinds whose parent is `kind`.
    pub fn children_of(&self, kind: &str) -> Vec<&Kind> {
        self.kinds
            .values()
            .filter(|k| k.parent.as_deref() == Some(kind))
            .collect()
    }

    /// The teams the schema refers to.
    pub fn teams(&self) -> BTreeSet<&str> {
        self.operations
            .values()
            .map(|o| o.implemented_by.as_str())
            .collect()
    }
}

impl ParamSpec {
    /// Check one parameter value; returns the normalised JSON value.
    pub fn check(&self, v: &serde_json::Value) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        match self.ty {
            ParamType::String => match v {
                Value::String(s) => {
                    if let Some(re) = &self.regex {
                        if !re.is_match(s) {
                            return Err(format!(
                                "`{s}` does not match the pattern `{}`",
                                self.pattern.as_deref().unwrap_or_default()
                            ));
                        }
                    }
                    Ok(v.clone())
                }
                _ => Err(format!("expected a string, got {v}")),
            },
            ParamType::Integer => match v.as_i64() {
                Some(_) => Ok(v.clone()),
                None => Err(format!("expected an integer, got {v}")),
            },
            ParamType::Boolean => match v {
                Value::Bool(_) => Ok(v.clone()),
                _ => Err(format!("expected true or false, got {v}")),
            },
            ParamType::Enum => match v.as_str() {
                Some(s) if self.values.iter().any(|x| x == s) => Ok(v.clone()),
                _ => Err(format!(
                    "expected one of {}, got {v}",
                    self.values.join(", ")
                )),
            },
        }
    }
}

/// The schema shipped with countersign: it models the outage in DESIGN.md.
pub const EXAMPLE_SCHEMA: &str = include_str!("../../config/schema.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_schema_loads() {
        let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
        assert!(s.hash.starts_with("sha256:"));
        assert_eq!(
            s.kind("app_install").unwrap().parent.as_deref(),
            Some("site")
        );
        assert_eq!(
            s.descent("org", "app_install").unwrap(),
            vec!["site", "app_install"]
        );
        assert_eq!(
            s.descent("site", "app_install").unwrap(),
            vec!["app_install"]
        );
        assert!(s.descent("app_install", "site").is_none());
        assert!(s.descent("site", "site").is_none());
        assert_eq!(s.operation("delete_site").unwrap().signoffs.implementer, 2);
    }

    #[test]
    fn hash_ignores_layout_and_comments() {
        let a = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
        let b = Schema::from_toml(&format!("# a comment\n\n{EXAMPLE_SCHEMA}\n")).unwrap();
        assert_eq!(a.hash, b.hash);
        let c =
            Schema::from_toml(&EXAMPLE_SCHEMA.replace("confirm_above = 20", "confirm_above = 21"))
                .unwrap();
        assert_ne!(a.hash, c.hash);
    }

    #[test]
    fn reports_every_problem_with_its_place() {
        let src = r#"
[kinds.org]
label = "Org"
pattern = "org-[0-9a-f]{8}"
example = "nope"

[kinds.site]
label = "Site"
parent = "galaxy"
pattern = "[0-9a-f"

[kinds.a]
label = "A"
prefix = "a-"
parent = "b"
[kinds.b]
label = "B"
prefix = "b-"
parent = "a"

[operations.zap]
label = "Zap"
target = "planet"
effect = "vaporise"

[operations.ok]
label = "Ok"
target = "org"
effect = "soft_delete"
implemented_by = "ops"
"#;
        let err = Schema::from_toml(src).unwrap_err();
        let text = err.to_string();
        for needle in [
            "kinds.org.example",
            "kinds.site.parent: unknown parent kind `galaxy`",
            "kinds.site.pattern: not a valid regular expression",
            "parent chain is a cycle",
            "operations.zap.target: target kind `planet` does not exist",
            "operations.zap.effect: unknown effect `vaporise`",
            "operations.zap.implemented_by: the implementing team is missing",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let site = err
            .0
            .iter()
            .find(|p| p.place == "kinds.site.parent")
            .unwrap();
        assert_eq!(site.line, Some(7));
    }

    #[test]
    fn webhook_concurrency_and_rate() {
        let op = |extra: &str| {
            format!(
                "{EXAMPLE_SCHEMA}\n[operations.hook]\nlabel = \"Hook\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"http://127.0.0.1:9/h\"\nsecret_env = \"HOOK_SECRET\"\n{extra}"
            )
        };
        let spec = |extra: &str| {
            Schema::from_toml(&op(extra))
                .unwrap()
                .operation("hook")
                .unwrap()
                .webhook
                .clone()
                .unwrap()
        };
        let d = spec("");
        assert_eq!(d.concurrency, DEFAULT_WEBHOOK_CONCURRENCY);
        assert_eq!(d.max_per_second, None);
        let s = spec("concurrency = 64\nmax_per_second = 2.5\n");
        assert_eq!((s.concurrency, s.max_per_second), (64, Some(2.5)));
        assert_eq!(
            spec("concurrency = 256\nmax_per_second = 50\n").max_per_second,
            Some(50.0)
        );
        for (extra, place, needle) in [
            (
                "concurrency = 0",
                "operations.hook.concurrency",
                "between 1 and 256",
            ),
            (
                "concurrency = 257",
                "operations.hook.concurrency",
                "between 1 and 256",
            ),
            (
                "concurrency = -3",
                "operations.hook.concurrency",
                "between 1 and 256",
            ),
            (
                "max_per_second = 0",
                "operations.hook.max_per_second",
                "above 0",
            ),
            (
                "max_per_second = -1.5",
                "operations.hook.max_per_second",
                "above 0",
            ),
            (
                "max_per_second = nan",
                "operations.hook.max_per_second",
                "above 0",
            ),
        ] {
            let err = Schema::from_toml(&op(extra)).unwrap_err();
            assert!(
                err.0
                    .iter()
                    .any(|p| p.place == place && p.message.contains(needle)),
                "{extra}: {err}"
            );
        }
        // Only a webhook operation has them.
        let src = EXAMPLE_SCHEMA.replace(
            "[operations.delete_site]\n",
            "[operations.delete_site]\nconcurrency = 4\n",
        );
        assert_ne!(src, EXAMPLE_SCHEMA);
        let err = Schema::from_toml(&src).unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|p| p.place == "operations.delete_site.concurrency"),
            "{err}"
        );
    }

    #[test]
    fn a_pattern_cannot_escape_its_anchors() {
        let src = "[kinds.org]\nlabel = \"Org\"\npattern = \"org-1)|(.*\"\nexample = \"x\"\n";
        let err = Schema::from_toml(src).unwrap_err();
        assert!(
            err.0.iter().any(|p| p.place == "kinds.org.pattern"),
            "{err}"
        );
    }

    #[test]
    fn toml_syntax_error_without_a_message_gets_one() {
        // Found by fuzzing (fuzz/regressions/schema_toml): toml gives no message here.
        let err = Schema::from_toml("# a\0b\n[kinds.x]\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(1), "{err}");
        assert!(err.0[0].message.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let err = Schema::from_toml("[kinds.org]\nlabel = \"x\"\nlabel = 3\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(3), "{err}");
        let err = Schema::from_toml("[kinds.org]\nlabl = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("labl"), "{err}");
    }

    #[test]
    fn param_checks() {
        let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
        let op = s.operation("set_app_version").unwrap();
        let p = op.param("version").unwrap();
        assert!(p.check(&serde_json::json!("2.4.1")).is_ok());
        assert!(p.check(&serde_json::json!("latest!")).is_err());
        assert!(p.check(&serde_json::json!(3)).is_err());
    }

    #[test]
    fn kind_syntax() {
        let s = Schema::from_toml(EXAMPLE_SCHEMA).unwrap();
        let org = s.kind("org").unwrap();
        assert!(org.matches("org-1a2b3c4d"));
        assert!(!org.matches("org-1a2b3c4d5"));
        assert!(!org.matches("xorg-1a2b3c4d"));
        let uuid = "0b1c2d3e-0000-4000-8000-000000000001";
        let names: Vec<_> = s
            .kinds_matching(uuid)
            .iter()
            .map(|k| k.name.clone())
            .collect();
        assert_eq!(names, vec!["app_install", "site"]);
    }
}
