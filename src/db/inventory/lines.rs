//! One line of an inventory import: parsed, then checked against the schema (the
//! checks that need neither the inventory nor the other lines).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::lines::{clip, clip_to};
use crate::domain::selector::MAX_ID_LEN;
use crate::domain::{Kind, Schema};

/// One NDJSON line of an inventory import, as parsed (not yet checked).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportLine {
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub attrs: BTreeMap<String, serde_json::Value>,
}

/// A line's problem: its code and message.
pub type LineProblem = (&'static str, String);

/// Parse one line of the NDJSON body: `Ok(None)` for a blank line, `Err` with the message
/// reported for it (code `invalid_json`).
pub fn parse_line(line: &str) -> Result<Option<ImportLine>, String> {
    let text = line.trim();
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<ImportLine>(text)
        .map(Some)
        .map_err(|e| {
            // serde quotes the offending value whole: keep its start and the position.
            let full = e.to_string();
            let at = format!(" at line {} column {}", e.line(), e.column());
            let what = full.strip_suffix(at.as_str()).unwrap_or(&full);
            let at = if what.len() < full.len() {
                at.as_str()
            } else {
                ""
            };
            format!(
                "not a valid entity line: {}{at}",
                clip_to(what, 2 * crate::domain::lines::ECHO_CHARS)
            )
        })
}

/// The first checks of a parsed line, which need neither the inventory nor the other
/// lines: its kind exists and its ID is usable and has the kind's syntax.
pub fn check_identity<'s>(schema: &'s Schema, l: &ImportLine) -> Result<&'s Kind, LineProblem> {
    let Some(kind) = schema.kind(&l.kind) else {
        let known = schema.kinds.keys().cloned().collect::<Vec<_>>().join(", ");
        return Err((
            "unknown_kind",
            format!("unknown kind `{}` (the schema has: {known})", clip(&l.kind)),
        ));
    };
    if l.id.is_empty()
        || l.id.len() > MAX_ID_LEN
        || l.id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err((
            "invalid_id",
            format!(
                "`{}` is not a usable ID: IDs are 1–{MAX_ID_LEN} characters without spaces",
                clip(&l.id)
            ),
        ));
    }
    if !kind.matches(&l.id) {
        return Err((
            "pattern_mismatch",
            format!(
                "`{}` is not a valid {} ID: expected {}",
                l.id,
                kind.describe(),
                kind.syntax_hint()
            ),
        ));
    }
    Ok(kind)
}

/// The line's attributes, checked against its kind (the last check of a line): every
/// attribute is one of the kind's and a string.
pub fn check_attrs(kind: &Kind, l: &ImportLine) -> Result<BTreeMap<String, String>, LineProblem> {
    let mut attrs = BTreeMap::new();
    for (k, v) in &l.attrs {
        if !kind.attributes.contains(k) {
            return Err((
                "unknown_attribute",
                format!(
                    "unknown attribute `{}` for {} (its attributes: {})",
                    clip(k),
                    kind.describe(),
                    if kind.attributes.is_empty() {
                        "none".to_string()
                    } else {
                        kind.attributes.join(", ")
                    }
                ),
            ));
        }
        match v {
            serde_json::Value::String(s) => {
                attrs.insert(k.clone(), s.clone());
            }
            other => {
                return Err((
                    "invalid_attribute",
                    format!(
                        "attribute `{}` must be a string, got {}",
                        clip(k),
                        clip(&other.to_string())
                    ),
                ));
            }
        }
    }
    Ok(attrs)
}
