//! The difference a re-resolution makes to a signed target list (issue #12): which targets
//! and which roots were added and removed since the list the signers last saw. Signers
//! re-sign from this view, and their new sign-off records the difference it was given.
//!
//! The difference is always against the *base*: the last list that had sign-offs. When the
//! list changes again before anyone re-signs, the stored difference is composed with the
//! new step, so it still says what changed since the signers saw it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::budget::root_of;
use super::resolution::ResolvedTarget;

/// Added and removed targets, by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    pub added: BTreeMap<String, ResolvedTarget>,
    pub removed: BTreeMap<String, ResolvedTarget>,
}

impl Difference {
    /// From list `old` to list `new`.
    pub fn between(old: &[ResolvedTarget], new: &[ResolvedTarget]) -> Difference {
        let old_ids: HashSet<&str> = old.iter().map(|t| t.id.as_str()).collect();
        let new_ids: HashSet<&str> = new.iter().map(|t| t.id.as_str()).collect();
        Difference {
            added: new
                .iter()
                .filter(|t| !old_ids.contains(t.id.as_str()))
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
            removed: old
                .iter()
                .filter(|t| !new_ids.contains(t.id.as_str()))
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
        }
    }

    /// `self` (base → middle) followed by `next` (middle → new): base → new. A target added
    /// then removed again is in neither; one removed then added back is in neither.
    pub fn then(self, next: Difference) -> Difference {
        let mut added = self.added;
        let mut removed = self.removed;
        for (id, t) in next.removed {
            if added.remove(&id).is_none() {
                removed.insert(id, t);
            }
        }
        for (id, t) in next.added {
            if removed.remove(&id).is_none() {
                added.insert(id, t);
            }
        }
        Difference { added, removed }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// The roots the new list touches that the base did not, and the other way round.
    /// `current`: how many targets of the new (current) list are under each root.
    pub fn roots(&self, current: &BTreeMap<String, u64>) -> (Vec<String>, Vec<String>) {
        let mut added_under: BTreeMap<&str, u64> = BTreeMap::new();
        for t in self.added.values() {
            *added_under
                .entry(root_of(&t.id, &t.scope_path))
                .or_default() += 1;
        }
        let removed_roots: BTreeSet<&str> = self
            .removed
            .values()
            .map(|t| root_of(&t.id, &t.scope_path))
            .collect();
        // New: every target of the new list under it was added, and none was removed (the
        // base had nothing there). Gone: a removed target's root with nothing left under it.
        let roots_added = added_under
            .iter()
            .filter(|(r, n)| current.get(**r) == Some(*n) && !removed_roots.contains(**r))
            .map(|(r, _)| r.to_string())
            .collect();
        let roots_removed = removed_roots
            .iter()
            .filter(|r| current.get(**r).map_or(true, |n| *n == 0))
            .map(|r| r.to_string())
            .collect();
        (roots_added, roots_removed)
    }
}

/// What a difference amounts to, as stored on a sign-off given from it and shown beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DifferenceCounts {
    /// The fingerprint of the list the difference is against (the one the re-sign replaces).
    pub previous_fingerprint: String,
    pub added: u64,
    pub removed: u64,
    pub roots_added: u64,
    pub roots_removed: u64,
}

impl DifferenceCounts {
    /// "3 targets added, 1 removed; 1 root added".
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} target{} added, {} removed",
            self.added,
            if self.added == 1 { "" } else { "s" },
            self.removed
        );
        if self.roots_added + self.roots_removed > 0 {
            s.push_str(&format!(
                "; {} root{} added, {} removed",
                self.roots_added,
                if self.roots_added == 1 { "" } else { "s" },
                self.roots_removed
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, scope: &str) -> ResolvedTarget {
        ResolvedTarget {
            kind: "app".into(),
            id: id.into(),
            scope_path: scope.into(),
            name: id.into(),
        }
    }

    fn ids(m: &BTreeMap<String, ResolvedTarget>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn between_two_lists() {
        let old = [t("a", "o1/s1"), t("b", "o1/s1"), t("c", "o2/s2")];
        let new = [t("a", "o1/s1"), t("d", "o3/s3"), t("e", "o1/s1")];
        let d = Difference::between(&old, &new);
        assert_eq!(ids(&d.added), ["d", "e"]);
        assert_eq!(ids(&d.removed), ["b", "c"]);
        let current: BTreeMap<String, u64> = [("o1".to_string(), 2), ("o3".to_string(), 1)].into();
        let (added, removed) = d.roots(&current);
        // o3 is new; o1 keeps targets (a) so is neither; o2 is gone.
        assert_eq!(added, ["o3"]);
        assert_eq!(removed, ["o2"]);
    }

    #[test]
    fn composing_steps_gives_the_difference_from_the_base() {
        let s1 = [t("a", "o1"), t("b", "o1"), t("c", "o2")];
        let s2 = [t("a", "o1"), t("c", "o2"), t("d", "o3")];
        let s3 = [t("a", "o1"), t("b", "o1"), t("e", "o4")];
        let composed = Difference::between(&s1, &s2).then(Difference::between(&s2, &s3));
        assert_eq!(composed, Difference::between(&s1, &s3));
        // b went and came back, d came and went: neither is in the difference.
        assert_eq!(ids(&composed.added), ["e"]);
        assert_eq!(ids(&composed.removed), ["c"]);
        assert!(Difference::between(&s1, &s2)
            .then(Difference::between(&s2, &s1))
            .is_empty());
    }

    #[test]
    fn counts_in_words() {
        let c = DifferenceCounts {
            previous_fingerprint: "f".into(),
            added: 3,
            removed: 1,
            roots_added: 1,
            roots_removed: 0,
        };
        assert_eq!(
            c.text(),
            "3 targets added, 1 removed; 1 root added, 0 removed"
        );
        let c = DifferenceCounts {
            added: 1,
            ..Default::default()
        };
        assert_eq!(c.text(), "1 target added, 0 removed");
    }
}
