//! A resolution: the selector evaluated against the inventory. The resolved target list,
//! its blast-radius summary, the errors line by line, and the fingerprint that sign-offs
//! are bound to.
//!
//! The rules are pure: `db::resolve` loads what a [`Plan`] names into [`Loaded`] (or what
//! a rollback or restore needs), and [`evaluate`] (or [`evaluate_rollback`],
//! [`evaluate_restore`]) decides targets, errors, cascade, retention, limits, the summary
//! ([`summary::summarize`], one builder for all three) and the fingerprint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod evaluate;
pub mod guards;
mod plan;
mod problems;
pub mod reversibility;
pub mod scope;
pub mod summary;
mod undo;

pub use evaluate::{evaluate, within_retention, Loaded};
pub use guards::{GuardCheck, Population};
pub use plan::{state_problem, usable_states, EntityFacts, IdLine, Plan, ScopePlan};
pub use reversibility::{undo_plan, UndoPlan};
pub use scope::{Ancestor, Ancestors};
pub use undo::{
    evaluate_restore, evaluate_rollback, left_as_it_was, restore_candidates, restore_operation,
    rollback_operation, rollback_params, RestoreLoaded, Rollback, Standing,
};

#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct ResolvedTarget {
    pub kind: String,
    pub id: String,
    /// Ancestor IDs, root first, joined by `/` (empty for a root kind).
    pub scope_path: String,
    pub name: String,
}

/// One bad input. `line` is 1-based within `field` (e.g. the 3rd entry of `targets.ids`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResolutionError {
    pub field: String,
    pub line: Option<usize>,
    pub input: String,
    pub code: String,
    pub message: String,
    /// For `wrong_kind`: the kind the ID really is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_kind: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RootRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    /// Number of targets.
    pub targets: u64,
    pub target_kind: String,
    /// Distinct scope entities touched, per ancestor kind (e.g. `site: 883, org: 775`).
    pub scopes: BTreeMap<String, u64>,
    /// The root kind (e.g. `org`) and how many distinct roots are affected.
    pub root_kind: String,
    pub roots: u64,
    /// The first few affected roots, with names, for display.
    pub sample_roots: Vec<RootRef>,
    /// One sentence: "883 App installations on 883 Cloud sites of 775 Customer organisations".
    pub text: String,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Descendants included by a cascading operation, per kind (`app_install: 12`); they are
    /// part of `targets` and of the fingerprint, so both teams see and sign them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cascaded: BTreeMap<String, u64>,
    /// The operation's population guards, each with its numbers (a failed one is also an
    /// error on the change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub guards: Vec<GuardCheck>,
    /// What one more change could undo, shown beside the blast radius (`None` for rollbacks
    /// and restores, which are themselves the undo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub undo: Option<UndoPlan>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Expectation {
    #[serde(default)]
    pub targets: Option<u64>,
    #[serde(default)]
    pub roots: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Resolution {
    /// Sorted by (kind, id).
    pub targets: Vec<ResolvedTarget>,
    pub summary: Summary,
    pub errors: Vec<ResolutionError>,
    pub error_count: u64,
    pub fingerprint: String,
}

/// Errors kept on a change; the total is kept separately.
pub const MAX_STORED_ERRORS: usize = 1000;

/// The fingerprint encoding, version 1 (documented in README "Fingerprint"):
///
/// ```text
/// countersign-fingerprint-v1\n
/// schema <schema hash>\n
/// operation <operation name>\n
/// params <params as compact JSON with keys sorted>\n
/// targets <count>\n
/// <kind> <id> <scope_path>\n      one line per target, sorted by kind then id (bytewise)
/// ```
///
/// The fingerprint is `sha256:` + the lowercase hex SHA-256 of those bytes.
pub fn fingerprint(
    schema_hash: &str,
    operation: &str,
    params: &serde_json::Value,
    targets: &[ResolvedTarget],
) -> String {
    let mut h = Sha256::new();
    h.update(b"countersign-fingerprint-v1\n");
    h.update(
        format!(
            "schema {schema_hash}\noperation {operation}\nparams {}\ntargets {}\n",
            canonical_json(params),
            targets.len()
        )
        .as_bytes(),
    );
    let sorted = is_sorted(targets);
    let mut owned;
    let list = if sorted {
        targets
    } else {
        owned = targets.to_vec();
        owned.sort();
        &owned[..]
    };
    for t in list {
        h.update(t.kind.as_bytes());
        h.update(b" ");
        h.update(t.id.as_bytes());
        h.update(b" ");
        h.update(t.scope_path.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn is_sorted(t: &[ResolvedTarget]) -> bool {
    t.windows(2)
        .all(|w| (&w[0].kind, &w[0].id) <= (&w[1].kind, &w[1].id))
}

/// Compact JSON with object keys sorted (serde_json's default map is a BTreeMap, so
/// re-serialising a parsed value sorts keys).
pub fn canonical_json(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The short form shown in the UI: the first 12 hex digits.
pub fn short_fingerprint(fp: &str) -> String {
    let hex = fp.strip_prefix("sha256:").unwrap_or(fp);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    fn t(kind: &str, id: &str) -> ResolvedTarget {
        ResolvedTarget {
            kind: kind.into(),
            id: id.into(),
            scope_path: "org-1/s".into(),
            name: "n".into(),
        }
    }

    #[test]
    fn fingerprint_is_order_independent_and_sensitive() {
        let p = serde_json::json!({"b": 1, "a": 2});
        let a = fingerprint("h", "op", &p, &[t("k", "1"), t("k", "2")]);
        let b = fingerprint("h", "op", &p, &[t("k", "2"), t("k", "1")]);
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        assert_ne!(a, fingerprint("h2", "op", &p, &[t("k", "1"), t("k", "2")]));
        assert_ne!(a, fingerprint("h", "op2", &p, &[t("k", "1"), t("k", "2")]));
        assert_ne!(
            a,
            fingerprint(
                "h",
                "op",
                &serde_json::json!({}),
                &[t("k", "1"), t("k", "2")]
            )
        );
        assert_ne!(a, fingerprint("h", "op", &p, &[t("k", "1")]));
        // Names are not part of it: renaming an entity does not invalidate sign-offs.
        let mut renamed = t("k", "1");
        renamed.name = "other".into();
        assert_eq!(a, fingerprint("h", "op", &p, &[renamed, t("k", "2")]));
    }

    #[test]
    fn fingerprint_matches_documented_encoding() {
        let p = serde_json::json!({"version": "1.2.3"});
        let targets = [t("app_install", "x")];
        let doc = "countersign-fingerprint-v1\nschema h\noperation op\nparams {\"version\":\"1.2.3\"}\ntargets 1\napp_install x org-1/s\n";
        let want = format!("sha256:{}", hex::encode(Sha256::digest(doc.as_bytes())));
        assert_eq!(fingerprint("h", "op", &p, &targets), want);
    }

    #[test]
    fn short() {
        assert_eq!(short_fingerprint("sha256:0123456789abcdef"), "0123456789ab");
    }
}
