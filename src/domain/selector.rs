//! How a requester names targets: explicit IDs of the operation's kind, and/or a scoped
//! query over the inventory. IDs of a parent kind are only ever a scope.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub kind: String,
    pub ids: Vec<String>,
}

/// Longest entity ID (as at import).
pub const MAX_ID_LEN: usize = 200;
/// Longest `kind:` prefix an ID line may carry.
pub const MAX_KIND_LEN: usize = 64;
/// Most `where` conditions, and the longest attribute name and value in one.
pub const MAX_FILTERS: usize = 32;
pub const MAX_FILTER_LEN: usize = 200;

/// Why a selector is refused before anything is resolved or stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorProblem {
    /// `ids`, `within` or `where`.
    pub field: &'static str,
    /// 1-based position in that list, when one entry is at fault.
    pub line: Option<usize>,
    pub message: String,
}

fn id_problem(raw: &str) -> Option<String> {
    let (kind, id) = split_claimed_kind(raw.trim());
    let id = id.trim();
    let n = id.chars().count();
    if n > MAX_ID_LEN {
        return Some(format!(
            "the ID `{}` has {n} characters; IDs have at most {MAX_ID_LEN}",
            super::lines::clip(id)
        ));
    }
    if kind.is_some_and(|k| k.len() > MAX_KIND_LEN) {
        return Some(format!(
            "the kind prefix has more than {MAX_KIND_LEN} characters"
        ));
    }
    if id.chars().any(char::is_control) {
        return Some(format!(
            "the ID `{}` contains control characters",
            super::lines::clip(id)
        ));
    }
    None
}

impl Selector {
    /// The bounds every selector must keep, whatever the inventory holds: at most
    /// `max_ids` IDs (the operation's `max_targets`) and as many scopes, IDs as long as an
    /// import allows, a few short `where` conditions.
    pub fn problem(&self, max_ids: u64) -> Option<SelectorProblem> {
        let too_many = |field: &'static str, n: usize, what: &str| {
            SelectorProblem {
            field,
            line: None,
            message: format!(
                "{n} {what} are more than the {max_ids} this operation may target (max_targets): split the change"
            ),
        }
        };
        if self.ids.len() as u64 > max_ids {
            return Some(too_many("ids", self.ids.len(), "IDs"));
        }
        for (i, raw) in self.ids.iter().enumerate() {
            if let Some(m) = id_problem(raw) {
                return Some(SelectorProblem {
                    field: "ids",
                    line: Some(i + 1),
                    message: format!("line {}: {m}", i + 1),
                });
            }
        }
        if let Some(w) = &self.within {
            if w.kind.len() > MAX_KIND_LEN {
                return Some(SelectorProblem {
                    field: "within",
                    line: None,
                    message: format!("the scope kind has more than {MAX_KIND_LEN} characters"),
                });
            }
            if w.ids.len() as u64 > max_ids {
                return Some(too_many("within", w.ids.len(), "scope IDs"));
            }
            for (i, raw) in w.ids.iter().enumerate() {
                if let Some(m) = id_problem(raw) {
                    return Some(SelectorProblem {
                        field: "within",
                        line: Some(i + 1),
                        message: format!("scope line {}: {m}", i + 1),
                    });
                }
            }
        }
        if self.filter.len() > MAX_FILTERS {
            return Some(SelectorProblem {
                field: "where",
                line: None,
                message: format!(
                    "{} conditions are more than the {MAX_FILTERS} a selector may have",
                    self.filter.len()
                ),
            });
        }
        for (k, v) in &self.filter {
            if k.chars().count() > MAX_FILTER_LEN || v.chars().count() > MAX_FILTER_LEN {
                return Some(SelectorProblem {
                    field: "where",
                    line: None,
                    message: format!(
                        "the condition on `{}` is longer than {MAX_FILTER_LEN} characters",
                        super::lines::clip(k)
                    ),
                });
            }
        }
        None
    }

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
    fn bounds() {
        let ok = Selector {
            ids: vec!["a".into(), "site:b".into()],
            ..Default::default()
        };
        assert_eq!(ok.problem(2), None);
        assert_eq!(ok.problem(1).unwrap().field, "ids");
        let long = Selector {
            ids: vec!["a".into(), "x".repeat(MAX_ID_LEN + 1)],
            ..Default::default()
        };
        let p = long.problem(10).unwrap();
        assert_eq!(p.line, Some(2));
        assert!(p.message.len() < 200, "{}", p.message);
        let ctl = Selector {
            ids: vec!["a\u{7}b".into()],
            ..Default::default()
        };
        assert!(ctl.problem(10).unwrap().message.contains("control"));
        let mut filter = BTreeMap::new();
        filter.insert("app".to_string(), "v".repeat(MAX_FILTER_LEN + 1));
        let f = Selector {
            filter,
            ..Default::default()
        };
        assert_eq!(f.problem(10).unwrap().field, "where");
    }

    #[test]
    fn claimed_kind() {
        assert_eq!(split_claimed_kind("site:abc"), (Some("site"), "abc"));
        assert_eq!(split_claimed_kind("org-1234"), (None, "org-1234"));
        assert_eq!(split_claimed_kind("Site:abc"), (None, "Site:abc"));
    }
}
