//! Loading a schema from TOML: the raw shape serde reads, then one function per section
//! (kinds, the parent chain, operations and their parts: teams, policy, parameters, waves,
//! webhook) over one shared problem list, so every problem is reported at once, each with
//! its place and the line of its table.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use sha2::{Digest, Sha256};

use super::raw::{RawKind, RawOperation, RawSchema, RawWave};

use super::{
    team_name_ok, Effect, Kind, Operation, ParamSpec, ParamType, Schema, SchemaErrors,
    SchemaProblem, SignoffPolicy, WebhookSpec, DEFAULT_MAX_TARGETS, DEFAULT_RETENTION_DAYS,
    DEFAULT_WEBHOOK_CONCURRENCY, MAX_WEBHOOK_CONCURRENCY, MAX_WEBHOOK_PER_SECOND,
};
use crate::domain::waves::{default_waves, WaveSize};

mod gates;
mod rails;
mod undo;
use gates::between_waves;
use rails::{budget, budget_groups, guards, irreversible_signoffs, signoff_lifetime, tiers};
use undo::{undo_of, undos};

// ---- the shared problem list ----------------------------------------------------------

/// Every problem found so far, in the order found.
struct Problems(Vec<SchemaProblem>);

impl Problems {
    fn push(&mut self, place: String, line: Option<usize>, message: String) {
        self.0.push(SchemaProblem {
            place,
            line,
            message,
        })
    }
}

/// One table of the file (`[kinds.site]`): its dotted place and its header's line.
struct Table {
    base: String,
    line: Option<usize>,
}

impl Table {
    fn new(source: &str, section: &str, name: &str) -> Table {
        Table {
            base: format!("{section}.{name}"),
            line: header_line(source, section, name),
        }
    }

    /// The place of field `f` of the table (`kinds.site.parent`); `""`: the table itself.
    fn at(&self, f: &str) -> String {
        if f.is_empty() {
            self.base.clone()
        } else {
            format!("{}.{f}", self.base)
        }
    }

    fn push(&self, p: &mut Problems, field: &str, message: impl Into<String>) {
        p.push(self.at(field), self.line, message.into());
    }
}

fn name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
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

/// A pattern that must match whole IDs or values. Compiled on its own first: a fragment
/// such as `a)|(b` would escape `^(?:…)$`.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(pattern).and_then(|_| Regex::new(&format!("^(?:{pattern})$")))
}

/// A table's `label`: required, trimmed (the name stands in when it is missing).
fn label(t: &Table, name: &str, label: &Option<String>, p: &mut Problems) -> String {
    match label {
        Some(l) if !l.trim().is_empty() => l.trim().to_string(),
        _ => {
            t.push(p, "label", "a label is required");
            name.to_string()
        }
    }
}

// ---- the file -------------------------------------------------------------------------

/// Parse and validate a schema; every problem is reported at once.
pub(super) fn from_toml(source: &str) -> Result<Schema, SchemaErrors> {
    let raw = parse(source)?;
    let mut p = Problems(Vec::new());
    let kinds = kinds(source, &raw.kinds, &mut p);
    parent_cycles(source, &raw.kinds, &mut p);
    let operations = raw
        .operations
        .iter()
        .filter_map(|(name, o)| {
            let t = Table::new(source, "operations", name);
            Some((name.clone(), operation(&t, name, o, &kinds, &mut p)?))
        })
        .collect();
    budget_groups(source, &raw.operations, &mut p);
    undos(source, &raw.operations, &mut p);
    if !p.0.is_empty() {
        return Err(SchemaErrors(p.0));
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

fn parse(source: &str) -> Result<RawSchema, SchemaErrors> {
    toml::from_str(source).map_err(|e| {
        let line = e
            .span()
            .map(|s| source[..s.start.min(source.len())].matches('\n').count() + 1);
        // Some syntax errors (a control character in a comment) carry no message.
        let message = match e.message() {
            "" => {
                "not valid TOML: a character TOML does not allow here (such as a control character)"
                    .to_string()
            }
            m => m.to_string(),
        };
        SchemaErrors(vec![SchemaProblem {
            place: "file".into(),
            line,
            message,
        }])
    })
}

// ---- kinds ----------------------------------------------------------------------------

fn kinds(
    source: &str,
    raw: &BTreeMap<String, RawKind>,
    p: &mut Problems,
) -> BTreeMap<String, Kind> {
    if raw.is_empty() {
        p.push("kinds".into(), None, "no kinds are defined".into());
    }
    raw.iter()
        .map(|(name, k)| {
            let t = Table::new(source, "kinds", name);
            (name.clone(), kind(&t, name, k, raw, p))
        })
        .collect()
}

fn kind(
    t: &Table,
    name: &str,
    k: &RawKind,
    all: &BTreeMap<String, RawKind>,
    p: &mut Problems,
) -> Kind {
    if !name_ok(name) {
        t.push(
            p,
            "",
            "a kind name must be lowercase letters, digits and `_`, starting with a letter",
        );
    }
    let label = label(t, name, &k.label, p);
    let regex = k
        .pattern
        .as_deref()
        .and_then(|pattern| match anchored(pattern) {
            Ok(re) => Some(re),
            Err(e) => {
                let msg = e.to_string();
                let msg = msg.lines().last().unwrap_or("invalid").trim();
                t.push(
                    p,
                    "pattern",
                    format!("not a valid regular expression: {msg}"),
                );
                None
            }
        });
    if k.pattern.is_none() && k.prefix.is_none() {
        t.push(
            p,
            "pattern",
            "a kind needs a `pattern` and/or a `prefix` so its IDs can be checked",
        );
    }
    if let Some(parent) = &k.parent {
        if !all.contains_key(parent) {
            let known = all.keys().cloned().collect::<Vec<_>>().join(", ");
            t.push(
                p,
                "parent",
                format!("unknown parent kind `{parent}` (known: {known})"),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for a in &k.attributes {
        if !name_ok(a) {
            let msg = format!("attribute `{a}` must be lowercase letters, digits and `_`");
            t.push(p, "attributes", msg);
        }
        if !seen.insert(a) {
            t.push(p, "attributes", format!("attribute `{a}` is listed twice"));
        }
    }
    let kind = Kind {
        name: name.to_string(),
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
            let msg = format!("the example `{ex}` does not match the kind's own syntax");
            t.push(p, "example", msg);
        }
    }
    kind
}

/// A kind may not be its own ancestor (reported on each kind of the cycle).
fn parent_cycles(source: &str, raw: &BTreeMap<String, RawKind>, p: &mut Problems) {
    for name in raw.keys() {
        let mut seen = vec![name.clone()];
        let mut cur = raw.get(name).and_then(|k| k.parent.clone());
        while let Some(parent) = cur {
            if seen.contains(&parent) {
                if &parent == name {
                    seen.push(parent);
                    p.push(
                        format!("kinds.{name}.parent"),
                        header_line(source, "kinds", name),
                        format!("parent chain is a cycle: {}", seen.join(" → ")),
                    );
                }
                break;
            }
            seen.push(parent.clone());
            cur = raw.get(&parent).and_then(|k| k.parent.clone());
        }
    }
}

// ---- operations -----------------------------------------------------------------------

/// One operation; `None` when it has no usable effect (its other problems are reported).
fn operation(
    t: &Table,
    name: &str,
    o: &RawOperation,
    kinds: &BTreeMap<String, Kind>,
    p: &mut Problems,
) -> Option<Operation> {
    if !name_ok(name) {
        t.push(
            p,
            "",
            "an operation name must be lowercase letters, digits and `_`, starting with a letter",
        );
    }
    let label = label(t, name, &o.label, p);
    let target = target(t, o, kinds, p);
    let effect = effect(t, o, p);
    let (implemented_by, requested_by) = teams(t, o, p);
    let signoffs = o.signoffs.unwrap_or(SignoffPolicy {
        requester: 1,
        implementer: 1,
        reviewer: 0,
    });
    if signoffs.implementer == 0 {
        t.push(
            p,
            "signoffs.implementer",
            "at least one implementer sign-off is required",
        );
    }
    let max_targets = o.max_targets.unwrap_or(DEFAULT_MAX_TARGETS);
    if max_targets == 0 {
        t.push(p, "max_targets", "must be at least 1");
    }
    let params = params(t, name, o, effect, kinds.get(&target), p);
    let waves = waves(t, o, p);
    let failure_threshold = o.failure_threshold.unwrap_or(0.0);
    if !(0.0..1.0).contains(&failure_threshold) {
        t.push(
            p,
            "failure_threshold",
            "must be at least 0 (any failure halts) and below 1",
        );
    }
    if o.cascade == Some(true) && effect != Some(Effect::SoftDelete) {
        t.push(p, "cascade", "only a soft_delete operation can cascade");
    }
    if o.rollback_signoffs.is_some_and(|rs| rs.implementer == 0) {
        t.push(
            p,
            "rollback_signoffs.implementer",
            "a rollback needs at least one implementer sign-off",
        );
    }
    let webhook = webhook(t, o, effect, p);
    let guards = guards(t, o, effect, kinds, &target, p);
    let tiers = tiers(
        t,
        o,
        signoffs,
        (&implemented_by, requested_by.as_deref()),
        p,
    );
    Some(Operation {
        name: name.to_string(),
        label,
        description: o.description.clone().unwrap_or_default(),
        target,
        effect: effect?,
        implemented_by,
        requested_by,
        signoffs,
        confirm_above: o.confirm_above,
        max_targets,
        params,
        retention_days: o.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
        cascade: o.cascade.unwrap_or(false),
        failure_threshold,
        rollback_signoffs: o.rollback_signoffs,
        webhook,
        guards,
        tiers,
        irreversible_signoffs: irreversible_signoffs(t, o, effect, p),
        signoffs_expire_after: signoff_lifetime(t, o, p),
        budget: budget(t, name, o, p),
        undo: undo_of(o, effect),
        between_waves: between_waves(t, o, &waves, p),
        waves,
    })
}

/// The one kind an operation acts on.
fn target(t: &Table, o: &RawOperation, kinds: &BTreeMap<String, Kind>, p: &mut Problems) -> String {
    match &o.target {
        Some(k) if kinds.contains_key(k) => k.clone(),
        Some(k) => {
            let known = kinds.keys().cloned().collect::<Vec<_>>().join(", ");
            t.push(
                p,
                "target",
                format!("target kind `{k}` does not exist (known: {known})"),
            );
            k.clone()
        }
        None => {
            t.push(
                p,
                "target",
                "the target kind is required (an operation acts on exactly one kind)",
            );
            String::new()
        }
    }
}

fn effect(t: &Table, o: &RawOperation, p: &mut Problems) -> Option<Effect> {
    let all = Effect::ALL.join(", ");
    match &o.effect {
        Some(e) => {
            let effect = Effect::parse(e);
            if effect.is_none() {
                t.push(p, "effect", format!("unknown effect `{e}` (one of: {all})"));
            }
            effect
        }
        None => {
            t.push(
                p,
                "effect",
                format!("the effect is required (one of: {all})"),
            );
            None
        }
    }
}

/// The implementing team, and the teams that may request the operation (never the
/// implementing one).
fn teams(t: &Table, o: &RawOperation, p: &mut Problems) -> (String, Option<Vec<String>>) {
    let bad_name = |team: &str| {
        format!("`{team}` is not a valid team name (lowercase letters, digits, `-`, `_`, `.`)")
    };
    let implemented_by = match &o.implemented_by {
        Some(team) if team_name_ok(team) => team.clone(),
        Some(team) => {
            t.push(p, "implemented_by", bad_name(team));
            team.clone()
        }
        None => {
            t.push(p, "implemented_by", "the implementing team is missing");
            String::new()
        }
    };
    if let Some(teams) = &o.requested_by {
        for team in teams {
            if !team_name_ok(team) {
                t.push(p, "requested_by", bad_name(team));
            } else if *team == implemented_by {
                t.push(p, "requested_by", format!("`{team}` implements this operation, so it cannot also request it: the requesting team is never the implementing team"));
            }
        }
        if teams.is_empty() {
            t.push(p, "requested_by", "the list is empty: leave it out to let every team but the implementing one request the operation");
        }
    }
    (implemented_by, o.requested_by.clone())
}

/// The typed parameters; a `set_attributes` operation's are attributes of its kind.
fn params(
    t: &Table,
    op: &str,
    o: &RawOperation,
    effect: Option<Effect>,
    target: Option<&Kind>,
    p: &mut Problems,
) -> Vec<ParamSpec> {
    let sets = effect == Some(Effect::SetAttributes);
    let mut out = Vec::new();
    for (name, raw) in &o.params {
        let place = format!("operations.{op}.params.{name}");
        let ty = match raw.ty.as_deref() {
            Some("string") | None => ParamType::String,
            Some("integer") => ParamType::Integer,
            Some("boolean") => ParamType::Boolean,
            Some("enum") => ParamType::Enum,
            Some(other) => {
                let msg =
                    format!("unknown parameter type `{other}` (string, integer, boolean, enum)");
                p.push(format!("{place}.type"), t.line, msg);
                ParamType::String
            }
        };
        if ty == ParamType::Enum && raw.values.is_empty() {
            let msg = "an enum parameter needs `values`".into();
            p.push(format!("{place}.values"), t.line, msg);
        }
        let regex = raw
            .pattern
            .as_deref()
            .and_then(|pattern| match anchored(pattern) {
                Ok(r) => Some(r),
                Err(_) => {
                    let msg = "not a valid regular expression".into();
                    p.push(format!("{place}.pattern"), t.line, msg);
                    None
                }
            });
        if let Some(k) = target.filter(|k| sets && !k.attributes.contains(name)) {
            p.push(
                place.clone(),
                t.line,
                format!(
                    "set_attributes parameter `{name}` is not an attribute of {} (attributes: {})",
                    k.describe(),
                    k.attributes.join(", ")
                ),
            );
        }
        out.push(ParamSpec {
            name: name.clone(),
            ty,
            description: raw.description.clone().unwrap_or_default(),
            required: raw.required,
            pattern: raw.pattern.clone(),
            values: raw.values.clone(),
            regex,
        });
    }
    if sets && out.is_empty() {
        t.push(
            p,
            "params",
            "a set_attributes operation needs at least one parameter (the attributes it sets)",
        );
    }
    out
}

fn waves(t: &Table, o: &RawOperation, p: &mut Problems) -> Vec<WaveSize> {
    let Some(list) = &o.waves else {
        return default_waves();
    };
    if list.is_empty() {
        t.push(
            p,
            "waves",
            "list at least one wave, e.g. [1, \"10%\"] (the last wave takes the rest)",
        );
    }
    let mut out = Vec::new();
    for w in list {
        let text = match w {
            RawWave::Count(n) => n.to_string(),
            RawWave::Text(t) => t.clone(),
        };
        match WaveSize::parse(&text) {
            Ok(w) => out.push(w),
            Err(m) => t.push(p, "waves", m),
        }
    }
    out
}

/// A webhook operation's endpoint and limits; any other operation must have none.
fn webhook(
    t: &Table,
    o: &RawOperation,
    effect: Option<Effect>,
    p: &mut Problems,
) -> Option<WebhookSpec> {
    if effect != Some(Effect::Webhook) {
        for (f, present) in [
            ("endpoint", o.endpoint.is_some()),
            ("secret_env", o.secret_env.is_some()),
            ("concurrency", o.concurrency.is_some()),
            ("max_per_second", o.max_per_second.is_some()),
        ] {
            if present {
                t.push(p, f, "only a webhook operation calls an endpoint");
            }
        }
        return None;
    }
    let endpoint = match &o.endpoint {
        Some(e) if e.starts_with("http://") || e.starts_with("https://") => e.clone(),
        Some(e) => {
            t.push(
                p,
                "endpoint",
                format!("`{e}` is not an http:// or https:// URL"),
            );
            e.clone()
        }
        None => {
            t.push(p, "endpoint", "a webhook operation needs an `endpoint` URL");
            String::new()
        }
    };
    let env_name = |v: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let secret_env = match &o.secret_env {
        Some(v) if env_name(v) => v.clone(),
        Some(v) => {
            t.push(
                p,
                "secret_env",
                format!("`{v}` is not an environment variable name (A-Z, 0-9, _)"),
            );
            v.clone()
        }
        None => {
            t.push(p, "secret_env", "a webhook operation needs `secret_env`, the environment variable that holds its HMAC secret (never the secret itself)");
            String::new()
        }
    };
    let concurrency = match o.concurrency {
        None => DEFAULT_WEBHOOK_CONCURRENCY,
        Some(n) if (1..=i64::from(MAX_WEBHOOK_CONCURRENCY)).contains(&n) => n as u32,
        Some(n) => {
            t.push(p, "concurrency", format!("`concurrency = {n}`: calls in flight at once must be between 1 and {MAX_WEBHOOK_CONCURRENCY} (default {DEFAULT_WEBHOOK_CONCURRENCY})"));
            DEFAULT_WEBHOOK_CONCURRENCY
        }
    };
    let max_per_second = match o.max_per_second {
        None => None,
        Some(r) if r.is_finite() && r > 0.0 && r <= MAX_WEBHOOK_PER_SECOND => Some(r),
        Some(r) => {
            t.push(p, "max_per_second", format!("`max_per_second = {r}`: the rate limit must be a number of calls per second above 0 and at most {MAX_WEBHOOK_PER_SECOND} (leave it out for no limit)"));
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
}
