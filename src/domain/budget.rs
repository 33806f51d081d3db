//! Budgets shared across changes (issue #12): `budget = { roots_per_day = 50 }` (and/or
//! `targets_per_day`) on an operation, optionally named by `budget_group` so several
//! operations draw from one budget. A budget is a rolling window of 24 hours: what the
//! group's executions took in the last 24 hours counts (each target once, each root once
//! however many of its targets were taken), and a use stops counting 24 hours after it
//! was taken.
//!
//! Enforced in three places, all from these rules: a resolution larger than the whole
//! budget is refused (it could never run: `larger_than_budget`, a guard); the execute gate
//! refuses a change larger than what is left (`budget_exceeded`); and the runner takes
//! each batch from the budget in the batch's own transaction, under the group's row lock,
//! so a running execution halts when the budget is spent mid-way, and two executions
//! drawing at once never take more than the budget together.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use serde::Serialize;

/// The window a budget counts over.
pub const WINDOW_HOURS: i64 = 24;

/// An operation's budget, as the schema declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// The budget's name: the operation's `budget_group`, else the operation's own name.
    pub group: String,
    /// Distinct roots (e.g. customer organisations) touched per 24 hours.
    pub roots_per_day: Option<u64>,
    /// Targets taken per 24 hours.
    pub targets_per_day: Option<u64>,
}

/// What a group took in the window, as the database counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub targets: u64,
    pub roots: u64,
    /// When the oldest use still counted was taken.
    pub oldest: Option<NaiveDateTime>,
}

/// What a change (or a batch) would take: its targets not yet taken, and their roots that
/// are not already counted in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Need {
    pub targets: u64,
    pub roots: u64,
}

/// One limit of a budget: how much the window allows, has used and has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Meter {
    pub limit: u64,
    pub used: u64,
    pub left: u64,
}

impl Meter {
    fn of(limit: u64, used: u64) -> Meter {
        Meter {
            limit,
            used,
            left: limit.saturating_sub(used),
        }
    }
}

/// A budget's state now: what every screen and refusal shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetState {
    pub group: String,
    pub window_hours: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roots: Option<Meter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Meter>,
    /// When the oldest use counted leaves the window, so that part of the budget comes
    /// back (`None`: nothing is used).
    pub frees_at: Option<NaiveDateTime>,
    /// "3 of 50 roots and 120 of 1000 targets used in the last 24 hours".
    pub text: String,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl BudgetState {
    pub fn of(b: &Budget, u: &Usage) -> BudgetState {
        let roots = b.roots_per_day.map(|l| Meter::of(l, u.roots));
        let targets = b.targets_per_day.map(|l| Meter::of(l, u.targets));
        let parts: Vec<String> = [
            roots.map(|m| format!("{} of {} roots", m.used, m.limit)),
            targets.map(|m| format!("{} of {} targets", m.used, m.limit)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let frees_at = u.oldest.map(|t| t + chrono::Duration::hours(WINDOW_HOURS));
        let mut text = format!(
            "budget `{}`: {} used in the last {WINDOW_HOURS} hours",
            b.group,
            parts.join(" and ")
        );
        if let Some(t) = frees_at {
            text.push_str(&format!(
                "; the oldest use stops counting at {} UTC",
                t.format("%Y-%m-%d %H:%M")
            ));
        }
        BudgetState {
            group: b.group.clone(),
            window_hours: WINDOW_HOURS,
            roots,
            targets,
            frees_at,
            text,
        }
    }

    /// Does `need` fit in what is left?
    pub fn fits(&self, need: &Need) -> bool {
        self.roots.map_or(true, |m| need.roots <= m.left)
            && self.targets.map_or(true, |m| need.targets <= m.left)
    }

    /// Why `need` does not fit, with the numbers: "needs 12 roots, 3 of 50 are left".
    pub fn shortfall(&self, need: &Need) -> Option<String> {
        let mut short = Vec::new();
        if let Some(m) = self.roots.filter(|m| need.roots > m.left) {
            short.push(format!(
                "needs {} but {} of {} {} left",
                plural(need.roots, "root", "roots"),
                m.left,
                m.limit,
                if m.left == 1 { "is" } else { "are" }
            ));
        }
        if let Some(m) = self.targets.filter(|m| need.targets > m.left) {
            short.push(format!(
                "needs {} but {} of {} {} left",
                plural(need.targets, "target", "targets"),
                m.left,
                m.limit,
                if m.left == 1 { "is" } else { "are" }
            ));
        }
        if short.is_empty() {
            None
        } else {
            Some(short.join(", and "))
        }
    }

    /// When to try again, for a refusal: "after 2026-12-03 14:02 UTC, when the oldest use
    /// stops counting".
    pub fn retry_hint(&self) -> String {
        match self.frees_at {
            Some(t) => format!(
                "part of it comes back at {} UTC, when the oldest use stops counting",
                t.format("%Y-%m-%d %H:%M")
            ),
            None => "nothing is used: the change is larger than the whole budget".into(),
        }
    }
}

/// One item of a batch the runner wants to take from the budget.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub root: &'a str,
    /// Already taken for this change (a retried webhook call): costs nothing again.
    pub taken: bool,
}

/// How many items of `batch`, from the first, fit in what is left, and what they take.
/// A root already counted in the window (`used_roots`) or earlier in the batch costs no
/// root again.
pub fn fitting(
    state: &BudgetState,
    used_roots: &HashSet<String>,
    batch: &[Candidate<'_>],
) -> (usize, Need) {
    let mut need = Need::default();
    let mut new_roots: HashSet<&str> = HashSet::new();
    for (i, c) in batch.iter().enumerate() {
        if c.taken {
            continue;
        }
        let new_root = !used_roots.contains(c.root) && !new_roots.contains(c.root);
        let next = Need {
            targets: need.targets + 1,
            roots: need.roots + u64::from(new_root),
        };
        if !state.fits(&next) {
            return (i, need);
        }
        need = next;
        if new_root {
            new_roots.insert(c.root);
        }
    }
    (batch.len(), need)
}

/// The root of a target: the first ID of its scope path (ancestor IDs, root first, joined
/// by `/`), or the target itself when it is a root.
pub fn root_of<'a>(entity_id: &'a str, scope_path: &'a str) -> &'a str {
    scope_path
        .split('/')
        .find(|s| !s.is_empty())
        .unwrap_or(entity_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(roots: Option<u64>, targets: Option<u64>) -> Budget {
        Budget {
            group: "deletions".into(),
            roots_per_day: roots,
            targets_per_day: targets,
        }
    }

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn state_counts_left_and_when_it_frees() {
        let s = BudgetState::of(
            &budget(Some(50), Some(1000)),
            &Usage {
                targets: 120,
                roots: 3,
                oldest: Some(at("2026-12-02 14:02")),
            },
        );
        assert_eq!(
            s.roots,
            Some(Meter {
                limit: 50,
                used: 3,
                left: 47
            })
        );
        assert_eq!(s.targets.unwrap().left, 880);
        assert_eq!(s.frees_at, Some(at("2026-12-03 14:02")));
        assert_eq!(
            s.text,
            "budget `deletions`: 3 of 50 roots and 120 of 1000 targets used in the last 24 hours; the oldest use stops counting at 2026-12-03 14:02 UTC"
        );
        // More used than the limit (the schema lowered it): nothing left, never negative.
        let over = BudgetState::of(
            &budget(Some(2), None),
            &Usage {
                targets: 9,
                roots: 5,
                oldest: None,
            },
        );
        assert_eq!(over.roots.unwrap().left, 0);
        assert!(over.targets.is_none());
    }

    #[test]
    fn shortfall_names_each_limit_that_does_not_fit() {
        let s = BudgetState::of(
            &budget(Some(50), Some(100)),
            &Usage {
                targets: 99,
                roots: 47,
                oldest: None,
            },
        );
        assert!(s.fits(&Need {
            targets: 1,
            roots: 3
        }));
        assert_eq!(
            s.shortfall(&Need {
                targets: 1,
                roots: 4
            })
            .unwrap(),
            "needs 4 roots but 3 of 50 are left"
        );
        assert_eq!(
            s.shortfall(&Need {
                targets: 2,
                roots: 4
            })
            .unwrap(),
            "needs 4 roots but 3 of 50 are left, and needs 2 targets but 1 of 100 is left"
        );
        assert_eq!(
            s.shortfall(&Need {
                targets: 1,
                roots: 0
            }),
            None
        );
    }

    #[test]
    fn fitting_takes_the_prefix_that_fits_counting_each_root_once() {
        let s = BudgetState::of(
            &budget(Some(3), None),
            &Usage {
                targets: 0,
                roots: 1,
                oldest: None,
            },
        );
        let used: HashSet<String> = ["org-1".to_string()].into();
        let c = |root, taken| Candidate { root, taken };
        let batch = [
            c("org-1", false), // counted already today
            c("org-2", false), // new: 1 of 2 left
            c("org-2", false), // same root again: free
            c("org-9", true),  // taken before (a retry): free
            c("org-3", false), // new: 2 of 2
            c("org-4", false), // does not fit
            c("org-1", false),
        ];
        let (n, need) = fitting(&s, &used, &batch);
        assert_eq!(n, 5);
        assert_eq!(
            need,
            Need {
                targets: 4,
                roots: 2
            }
        );
        // A targets budget stops at the count.
        let t = BudgetState::of(&budget(None, Some(2)), &Usage::default());
        assert_eq!(fitting(&t, &HashSet::new(), &batch).0, 2);
        // Nothing left: nothing fits.
        let spent = BudgetState::of(
            &budget(None, Some(2)),
            &Usage {
                targets: 2,
                roots: 0,
                oldest: None,
            },
        );
        assert_eq!(fitting(&spent, &HashSet::new(), &batch).0, 0);
    }

    #[test]
    fn root_of_a_target() {
        assert_eq!(root_of("app-1", "org-1/site-2"), "org-1");
        assert_eq!(root_of("org-7", ""), "org-7");
    }
}
