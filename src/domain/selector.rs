//! How a requester names targets: explicit IDs of the operation's kind, and/or a scoped
//! query over the inventory. IDs of a parent kind are only ever a scope.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Explicit IDs of the operation's target kind. A line may be `kind:id` to say what
    /// the requester believes it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// All entities of the operation's kind below these scopes…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Scope>,
    /// …whose attributes equal these values. Without `within` it queries the whole inventory.
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub kind: String,
    pub ids: Vec<String>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.within.is_none() && self.filter.is_empty()
    }

    /// Does the selector ask for a query (as opposed to explicit IDs only)?
    pub fn has_query(&self) -> bool {
        self.within.is_some() || !self.filter.is_empty()
    }

    /// Parse pasted text: one ID a line, `kind:id` allowed, blank lines and `#` comments
    /// ignored. Returns the IDs in order (line numbers are positions + 1 after filtering
    /// are *not* preserved; use [`Selector::from_lines`] when they matter).
    pub fn ids_from_text(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }
}

/// Split `kind:id` into its parts when the prefix is a plausible kind name.
pub fn split_claimed_kind(input: &str) -> (Option<&str>, &str) {
    if let Some((k, id)) = input.split_once(':') {
        if !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !id.is_empty()
        {
            return (Some(k), id.trim());
        }
    }
    (None, input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_shape() {
        let s: Selector = serde_json::from_str(
            r#"{"ids":["a"],"within":{"kind":"site","ids":["s1"]},"where":{"app":"insight"}}"#,
        )
        .unwrap();
        assert_eq!(s.ids, vec!["a"]);
        assert_eq!(s.within.as_ref().unwrap().kind, "site");
        assert_eq!(s.filter.get("app").unwrap(), "insight");
        assert!(serde_json::from_str::<Selector>(r#"{"idz":[]}"#).is_err());
    }

    #[test]
    fn claimed_kind() {
        assert_eq!(split_claimed_kind("site:abc"), (Some("site"), "abc"));
        assert_eq!(split_claimed_kind("org-1234"), (None, "org-1234"));
        assert_eq!(split_claimed_kind("Site:abc"), (None, "Site:abc"));
    }
}
