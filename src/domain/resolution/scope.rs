//! Scope paths: the ancestors of an entity, root first, joined by `/` (`org-1/5f0c…`). One
//! walker builds them from the ancestors the loader read (resolve and restore); the summary
//! reads them back ([`super::summary`]), also from the paths a rollback stored.

use std::collections::HashMap;

/// The deepest chain of ancestors followed (the schema forbids cycles; this guards the
/// walk against an inventory that has one anyway).
pub const MAX_DEPTH: usize = 64;

/// One ancestor as the loader read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestor {
    pub kind: String,
    pub parent_id: Option<String>,
    pub name: String,
}

/// Every ancestor of the entities being resolved, by ID.
pub type Ancestors = HashMap<String, Ancestor>;

/// The scope path of the children of each of `parents` (the parent itself last), once per
/// distinct parent: thousands of walks for 100,000 targets, not 100,000. A parent missing
/// from `ancestors` has no entry (its children's scope path is empty).
pub fn paths<'m, 'p>(
    ancestors: &'m Ancestors,
    parents: impl IntoIterator<Item = &'p str>,
) -> HashMap<&'m str, String> {
    let mut out: HashMap<&'m str, String> = HashMap::new();
    for parent in parents {
        let Some((key, _)) = ancestors.get_key_value(parent) else {
            continue;
        };
        if out.contains_key(key.as_str()) {
            continue;
        }
        let mut chain: Vec<&str> = Vec::new();
        let mut cur = Some(key.as_str());
        while let Some(id) = cur {
            let Some((id, a)) = ancestors.get_key_value(id) else {
                break;
            };
            chain.push(id.as_str());
            cur = a.parent_id.as_deref();
            if chain.len() > MAX_DEPTH {
                break;
            }
        }
        chain.reverse();
        out.insert(key.as_str(), chain.join("/"));
    }
    out
}

/// The scope path of the children of an entity at `scope_path` with ID `id`.
pub fn below(scope_path: &str, id: &str) -> String {
    if scope_path.is_empty() {
        id.to_string()
    } else {
        format!("{scope_path}/{id}")
    }
}

/// The IDs of a scope path, root first.
pub fn segments(scope_path: &str) -> impl Iterator<Item = &str> {
    scope_path.split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anc(entries: &[(&str, &str, Option<&str>)]) -> Ancestors {
        entries
            .iter()
            .map(|(id, kind, parent)| {
                (
                    id.to_string(),
                    Ancestor {
                        kind: kind.to_string(),
                        parent_id: parent.map(str::to_string),
                        name: format!("{id} name"),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn paths_are_root_first_once_per_parent() {
        let a = anc(&[
            ("o", "org", None),
            ("s1", "site", Some("o")),
            ("s2", "site", Some("o")),
        ]);
        let p = paths(&a, ["s1", "s1", "s2", "o", "missing"]);
        assert_eq!(p.len(), 3);
        assert_eq!(p["s1"], "o/s1");
        assert_eq!(p["s2"], "o/s2");
        assert_eq!(p["o"], "o");
        assert!(!p.contains_key("missing"));
    }

    #[test]
    fn a_missing_grandparent_cuts_the_path_and_a_cycle_ends() {
        let a = anc(&[("s", "site", Some("gone"))]);
        assert_eq!(paths(&a, ["s"])["s"], "s");
        let a = anc(&[("x", "k", Some("y")), ("y", "k", Some("x"))]);
        assert_eq!(segments(&paths(&a, ["x"])["x"]).count(), MAX_DEPTH + 1);
    }

    #[test]
    fn below_and_segments() {
        assert_eq!(below("", "o"), "o");
        assert_eq!(below("o", "s"), "o/s");
        assert_eq!(segments("o/s").collect::<Vec<_>>(), ["o", "s"]);
        assert_eq!(segments("").count(), 0);
    }
}
