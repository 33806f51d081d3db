//! The shared schema: identifier kinds (with their syntax and scope), and the operation
//! catalogue. Loaded from TOML, validated as a whole (every problem reported with its
//! place), and versioned by a hash of its canonical form.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

pub use super::budget::Budget;
use super::waves::WaveSize;

mod gates;
pub mod history;
mod lifetime;
mod load;
mod policy;
mod raw;

pub use gates::{BakeTime, HealthCheck, WaveGates, DEFAULT_HEALTH_TIMEOUT_MS};
pub use lifetime::Lifetime;
pub use policy::{Policy, SignoffPolicy, ThirdSide, Tier};

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

    /// Effects one more change can undo by itself (a rollback runs the inverse); a purge
    /// erases, and a webhook's external effect is undone only by the operation its `undo`
    /// names (see [`Operation::rollback_effect`], the one place that decides).
    pub fn is_reversible(self) -> bool {
        self.inverse().is_some()
    }

    /// The built-in effect that undoes this one, if there is one.
    pub fn inverse(self) -> Option<Effect> {
        match self {
            Effect::SoftDelete => Some(Effect::Restore),
            Effect::Restore => Some(Effect::SoftDelete),
            Effect::SetAttributes => Some(Effect::SetAttributes),
            Effect::Purge | Effect::Webhook => None,
        }
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
    /// How much of the inventory one change may touch (checked at every resolution).
    pub guards: Guards,
    /// Stricter sign-off policies for larger changes (`[[operations.NAME.tiers]]`).
    pub tiers: Vec<Tier>,
    /// Extra implementer sign-offs an irreversible operation (purge, webhook) needs
    /// (`irreversible_signoffs`, default 1).
    pub irreversible_signoffs: u32,
    /// How long a sign-off counts (`signoffs_expire_after`; `None`: until execution).
    pub signoffs_expire_after: Option<Lifetime>,
    /// A budget shared across changes (`budget`, `budget_group`): how much the operation's
    /// executions may take per 24 hours.
    pub budget: Option<Budget>,
    /// What stands between two waves: a bake time, a health check, manual gates.
    pub between_waves: WaveGates,
    /// A webhook operation's inverse external call (`undo = "OTHER_OPERATION"`: a webhook
    /// operation on the same kind, implemented by the same team): what its rollback calls.
    pub undo: Option<String>,
}

/// Population guards: limits on how much of the inventory one change may touch, checked at
/// every resolution (creation, submit, the execute gate), so two tired signers cannot
/// approve a mistyped selector that reaches far more than meant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Guards {
    /// The targets may not exceed this share of all active entities of the target kind.
    pub max_fraction: Option<f64>,
    /// Nor this share of the active entities of the target kind under any one root.
    pub max_fraction_per_root: Option<f64>,
    /// After the change, every touched entity of kind `per` keeps at least `count` active
    /// entities of the target kind.
    pub min_remaining: Option<MinRemaining>,
    /// A destructive change may select every root, or the whole kind (refused otherwise:
    /// `selects_everything`).
    pub allow_everything: bool,
}

impl Guards {
    /// Whether any guard needs counts of the inventory beyond the targets themselves.
    pub fn any(&self, effect: Effect) -> bool {
        self.max_fraction.is_some()
            || self.max_fraction_per_root.is_some()
            || self.min_remaining.is_some()
            || effect.is_destructive()
    }
}

/// `min_remaining = { per = "org", count = 1 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinRemaining {
    pub per: String,
    pub count: u64,
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
    #[error("`{team}` signs larger changes of {label} as a third side, so it cannot also request them: a third side is independent of both teams")]
    ReviewingTeam { team: String, label: String },
    #[error("{label} may be requested only by {allowed}; `{team}` is not one of them")]
    NotRequesterTeam {
        team: String,
        label: String,
        allowed: String,
    },
}

impl Operation {
    /// May `team` be the requesting team of a change of this operation? Never the
    /// implementing team, nor a team a tier names as a third side; one of `requested_by`
    /// when the schema lists them.
    pub fn may_be_requested_by(&self, team: &str) -> Result<(), RequestRefusal> {
        if team == self.implemented_by {
            return Err(RequestRefusal::SameTeam {
                team: team.to_string(),
                label: self.label.clone(),
            });
        }
        if self.third_side_teams().any(|t| t == team) {
            return Err(RequestRefusal::ReviewingTeam {
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

    /// The effect a rollback of this operation runs: the built-in inverse, or for a webhook
    /// operation with an `undo`, another webhook call (to the undo operation's endpoint).
    /// `None`: nothing can undo it. The one place that decides reversibility.
    pub fn rollback_effect(&self) -> Option<Effect> {
        match (self.effect, &self.undo) {
            (Effect::Webhook, Some(_)) => Some(Effect::Webhook),
            (e, _) => e.inverse(),
        }
    }

    /// Can one more change undo this operation (a rollback)? No extra irreversible
    /// sign-offs, no irreversible label, a rollback allowed.
    pub fn is_reversible(&self) -> bool {
        self.rollback_effect().is_some()
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Does a sign-off on the implementer side need the typed target count?
    pub fn needs_confirm_count(&self, target_count: u64) -> bool {
        self.confirm_above.is_some_and(|n| target_count > n)
    }

    /// The budget a change draws from: the operation's, when the change runs the
    /// operation's own effect (a rollback runs the inverse and takes nothing from it).
    pub fn budget_for(&self, rollback: bool) -> Option<&Budget> {
        self.budget.as_ref().filter(|_| !rollback)
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

/// "a" or "an" for a label.
pub fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// Team names: lowercase letters, digits, `-`, `_`, `.`; 1–64 characters.
pub fn team_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

impl Schema {
    /// Parse and validate a schema; every problem is reported at once (see [`load`]).
    pub fn from_toml(source: &str) -> Result<Schema, SchemaErrors> {
        load::from_toml(source)
    }

    pub fn kind(&self, name: &str) -> Option<&Kind> {
        self.kinds.get(name)
    }

    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    /// The webhook operation a change of `op` calls: `op` itself, or for a rollback the
    /// operation its `undo` names. `None` when neither is a webhook operation.
    pub fn webhook_called<'s>(
        &'s self,
        op: &'s Operation,
        rollback: bool,
    ) -> Option<&'s Operation> {
        let called = match (rollback, &op.undo) {
            (false, _) => op,
            (true, Some(undo)) => self.operation(undo)?,
            (true, None) => return None,
        };
        called.webhook.as_ref().map(|_| called)
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
pub const EXAMPLE_SCHEMA: &str = include_str!("../../../config/schema.example.toml");

#[cfg(test)]
mod tests;
