//! The schema file's shape as serde reads it (every field optional, so that a missing one
//! is a reported problem, not a parse error). Its JSON serialisation is the canonical form
//! the schema's hash is taken of.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MinRemaining, SignoffPolicy, ThirdSide};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchema {
    #[serde(default)]
    pub(super) kinds: BTreeMap<String, RawKind>,
    #[serde(default)]
    pub(super) operations: BTreeMap<String, RawOperation>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKind {
    pub(super) label: Option<String>,
    pub(super) plural: Option<String>,
    pub(super) description: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) pattern: Option<String>,
    pub(super) example: Option<String>,
    pub(super) parent: Option<String>,
    #[serde(default)]
    pub(super) attributes: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperation {
    pub(super) label: Option<String>,
    pub(super) description: Option<String>,
    pub(super) target: Option<String>,
    pub(super) effect: Option<String>,
    pub(super) implemented_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) requested_by: Option<Vec<String>>,
    pub(super) signoffs: Option<SignoffPolicy>,
    pub(super) confirm_above: Option<u64>,
    pub(super) max_targets: Option<u64>,
    #[serde(default)]
    pub(super) params: BTreeMap<String, RawParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) retention_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) cascade: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) waves: Option<Vec<RawWave>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) failure_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rollback_signoffs: Option<SignoffPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) concurrency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_fraction_per_root: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) min_remaining: Option<MinRemaining>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) allow_everything: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) tiers: Vec<RawTier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) bake: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) health_check: Option<RawHealthCheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) pause_after_waves: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) irreversible_signoffs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) signoffs_expire_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) budget: Option<RawBudget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) budget_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) undo: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) roots_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) targets_per_day: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    pub(super) endpoint: String,
    pub(super) secret_env: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    pub(super) above_targets: Option<u64>,
    pub(super) above_roots: Option<u64>,
    pub(super) signoffs: Option<SignoffPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) also: Option<ThirdSide>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(super) enum RawWave {
    Count(u64),
    Text(String),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParam {
    #[serde(rename = "type")]
    pub(super) ty: Option<String>,
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) required: bool,
    pub(super) pattern: Option<String>,
    #[serde(default)]
    pub(super) values: Vec<String>,
}
