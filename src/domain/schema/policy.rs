//! Who must sign a change of an operation: the sign-off counts per side, the risk tiers
//! that raise them for larger changes (with an optional third side), and the policy the
//! resolved counts select.

use serde::{Deserialize, Serialize};

use super::Operation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SignoffPolicy {
    pub requester: u32,
    pub implementer: u32,
    /// Sign-offs of the third side a risk tier names (`also = { team, signoffs }`): never
    /// read from a `signoffs = { … }` table (a third side always names its team), set by
    /// [`Operation::policy`] from the tier that applies.
    #[serde(skip_deserializing, default, skip_serializing_if = "is_zero")]
    pub reviewer: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SignoffPolicy {
    /// Sign-offs from every side together (how tiers are ranked).
    pub fn total(&self) -> u32 {
        self.requester + self.implementer + self.reviewer
    }
}

/// A risk tier: a change above `above_targets` targets or `above_roots` roots needs
/// `signoffs` instead of the operation's own policy, and, with `also`, sign-offs from a
/// third named team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub above_targets: Option<u64>,
    pub above_roots: Option<u64>,
    pub signoffs: SignoffPolicy,
    /// `also = { team = "security", signoffs = 1 }`: a third side.
    pub also: Option<ThirdSide>,
}

/// A third side of a tier: a team that is neither the requesting nor the implementing
/// one (a `security` review), with the distinct sign-offs it must give. Its members sign
/// as `reviewer`; nobody in the change's two teams counts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThirdSide {
    pub team: String,
    pub signoffs: u32,
}

impl Tier {
    pub fn applies(&self, targets: u64, roots: u64) -> bool {
        self.above_targets.is_some_and(|t| targets > t)
            || self.above_roots.is_some_and(|r| roots > r)
    }

    /// "above 1000 targets or 100 roots".
    pub fn condition(&self) -> String {
        let parts: Vec<String> = [
            self.above_targets.map(|t| format!("{t} targets")),
            self.above_roots.map(|r| format!("{r} roots")),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!("above {}", parts.join(" or "))
    }
}

/// The sign-offs a change needs, and the tier that set them (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<'a> {
    pub signoffs: SignoffPolicy,
    /// The tier that applies, with its position in the schema (1-based).
    pub tier: Option<(usize, &'a Tier)>,
    /// Implementer sign-offs added because no rollback can undo the effect.
    pub irreversible_extra: u32,
    /// The tier is the strictest because the change selects everything.
    pub everything: bool,
}

impl<'a> Policy<'a> {
    /// "Tier 2 (above 1000 targets): 2 requester and 2 implementer sign-offs", and "and 1
    /// from `security` as a third side" when the tier names one.
    pub fn describe(&self) -> Option<String> {
        let (n, t) = self.tier?;
        let why = if self.everything {
            "the strictest, because the change selects everything".to_string()
        } else {
            t.condition()
        };
        let third = match self.reviewer() {
            Some(r) => format!(", and {} from `{}` as a third side", r.signoffs, r.team),
            None => String::new(),
        };
        Some(format!(
            "tier {n} ({why}): {} requester and {} implementer sign-offs{third}",
            self.signoffs.requester, self.signoffs.implementer
        ))
    }

    /// The third side the applying tier names, if any.
    pub fn reviewer(&self) -> Option<&'a ThirdSide> {
        self.tier.and_then(|(_, t)| t.also.as_ref())
    }

    /// The third side's team, if the applying tier names one.
    pub fn reviewer_team(&self) -> Option<&'a str> {
        self.reviewer().map(|r| r.team.as_str())
    }

    /// "1 more implementer sign-off because no rollback can undo it", when one is added.
    pub fn irreversible_note(&self) -> Option<String> {
        match self.irreversible_extra {
            0 => None,
            1 => Some("1 more implementer sign-off because no rollback can undo it".into()),
            n => Some(format!(
                "{n} more implementer sign-offs because no rollback can undo it"
            )),
        }
    }
}

impl Operation {
    /// The sign-off policy for a change of `targets` targets under `roots` roots: of the
    /// tiers that apply, the one that needs the most sign-offs (a later one on a tie), else
    /// the operation's own. A change that selects everything (`everything`, allowed by
    /// `allow_everything`) needs the strictest tier whatever its size. A rollback needs
    /// `rollback_signoffs` when the schema sets it.
    pub fn policy(&self, targets: u64, roots: u64, rollback: bool, everything: bool) -> Policy<'_> {
        if let (true, Some(p)) = (rollback, self.rollback_signoffs) {
            return Policy {
                signoffs: p,
                tier: None,
                irreversible_extra: 0,
                everything: false,
            };
        }
        let everything = everything && !rollback;
        let tier = self
            .tiers
            .iter()
            .enumerate()
            .filter(|(_, t)| everything || t.applies(targets, roots))
            .max_by_key(|(i, t)| {
                (
                    t.signoffs.total() + t.also.as_ref().map_or(0, |a| a.signoffs),
                    *i,
                )
            })
            .map(|(i, t)| (i + 1, t));
        let mut signoffs = tier.map_or(self.signoffs, |(_, t)| t.signoffs);
        signoffs.reviewer = tier
            .and_then(|(_, t)| t.also.as_ref())
            .map_or(0, |a| a.signoffs);
        let extra = if self.is_reversible() {
            0
        } else {
            self.irreversible_signoffs
        };
        signoffs.implementer += extra;
        Policy {
            signoffs,
            tier,
            irreversible_extra: extra,
            everything: everything && tier.is_some(),
        }
    }

    /// The teams its tiers name as a third side.
    pub fn third_side_teams(&self) -> impl Iterator<Item = &str> {
        self.tiers
            .iter()
            .filter_map(|t| t.also.as_ref())
            .map(|a| a.team.as_str())
    }
}
