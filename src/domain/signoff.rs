//! Sign-off policy: who may sign which side, and when a change is approved. Pure
//! functions; the database layer calls them while holding the change's row lock.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::schema::SignoffPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Requester,
    Implementer,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Requester => "requester",
            Side::Implementer => "implementer",
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "requester" => Some(Side::Requester),
            "implementer" => Some(Side::Implementer),
            _ => None,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Requester => Side::Implementer,
            Side::Implementer => Side::Requester,
        }
    }
}

/// A recorded sign-off, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignoffRecord {
    pub side: Side,
    pub user_id: i64,
    pub fingerprint: String,
    pub stale: bool,
}

/// Everything the policy needs to decide on one attempted sign-off.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub side: Side,
    pub signer_id: i64,
    pub author_id: i64,
    /// Is the signer a member of the team that owns `side`?
    pub signer_in_side_team: bool,
    pub side_team: &'a str,
    pub given_fingerprint: &'a str,
    pub current_fingerprint: &'a str,
    pub target_count: u64,
    /// `Some(n)`: the implementer must type the target count when targets > n.
    pub confirm_above: Option<u64>,
    pub confirm_count: Option<u64>,
    pub existing: &'a [SignoffRecord],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the fingerprint you signed ({given}) is not the change's current fingerprint ({current}): the resolved targets changed since you looked; review them again")]
    StaleFingerprint { given: String, current: String },
    #[error("only members of team `{team}` can sign the {} side", .side.as_str())]
    NotInTeam { team: String, side: Side },
    #[error("the author of a change cannot sign its implementer side")]
    AuthorAsImplementer,
    #[error("you already signed the {} side of this change; one person never counts on both sides", .0.as_str())]
    OtherSide(Side),
    #[error("you already signed the {} side for this fingerprint", .0.as_str())]
    AlreadySigned(Side),
    #[error("this change has {expected} targets: type that number in confirm_count to sign it")]
    ConfirmCountMissing { expected: u64 },
    #[error("confirm_count is {given}, but this change has {expected} targets")]
    ConfirmCountWrong { given: u64, expected: u64 },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::StaleFingerprint { .. } => "stale_fingerprint",
            Refusal::NotInTeam { .. } => "not_in_team",
            Refusal::AuthorAsImplementer => "separation_of_duties",
            Refusal::OtherSide(_) => "separation_of_duties",
            Refusal::AlreadySigned(_) => "already_signed",
            Refusal::ConfirmCountMissing { .. } => "confirm_count_required",
            Refusal::ConfirmCountWrong { .. } => "confirm_count_mismatch",
        }
    }
}

/// Decide one sign-off. The order matters for the answer a person gets: a stale
/// fingerprint first (nothing else is meaningful then), then who they are, then the count.
pub fn check(a: &Attempt<'_>) -> Result<(), Refusal> {
    if a.given_fingerprint != a.current_fingerprint {
        return Err(Refusal::StaleFingerprint {
            given: a.given_fingerprint.to_string(),
            current: a.current_fingerprint.to_string(),
        });
    }
    if !a.signer_in_side_team {
        return Err(Refusal::NotInTeam {
            team: a.side_team.to_string(),
            side: a.side,
        });
    }
    if a.side == Side::Implementer && a.signer_id == a.author_id {
        return Err(Refusal::AuthorAsImplementer);
    }
    // Separation of duties: any sign-off on the other side, even a stale one, means this
    // person took part for the other team.
    if a.existing
        .iter()
        .any(|s| s.user_id == a.signer_id && s.side == a.side.other())
    {
        return Err(Refusal::OtherSide(a.side.other()));
    }
    if a.existing.iter().any(|s| {
        s.user_id == a.signer_id
            && s.side == a.side
            && !s.stale
            && s.fingerprint == a.current_fingerprint
    }) {
        return Err(Refusal::AlreadySigned(a.side));
    }
    if a.side == Side::Implementer {
        if let Some(limit) = a.confirm_above {
            if a.target_count > limit {
                match a.confirm_count {
                    None => {
                        return Err(Refusal::ConfirmCountMissing {
                            expected: a.target_count,
                        })
                    }
                    Some(n) if n != a.target_count => {
                        return Err(Refusal::ConfirmCountWrong {
                            given: n,
                            expected: a.target_count,
                        })
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Distinct people with a current sign-off on `side`.
pub fn current_signers(existing: &[SignoffRecord], side: Side, fingerprint: &str) -> BTreeSet<i64> {
    existing
        .iter()
        .filter(|s| s.side == side && !s.stale && s.fingerprint == fingerprint)
        .map(|s| s.user_id)
        .collect()
}

/// How many more sign-offs each side needs.
pub fn missing(existing: &[SignoffRecord], policy: SignoffPolicy, fingerprint: &str) -> (u32, u32) {
    let r = current_signers(existing, Side::Requester, fingerprint).len() as u32;
    let i = current_signers(existing, Side::Implementer, fingerprint).len() as u32;
    (
        policy.requester.saturating_sub(r),
        policy.implementer.saturating_sub(i),
    )
}

/// Approved when both sides have enough distinct current signers and nobody is on both.
pub fn is_approved(existing: &[SignoffRecord], policy: SignoffPolicy, fingerprint: &str) -> bool {
    let r = current_signers(existing, Side::Requester, fingerprint);
    let i = current_signers(existing, Side::Implementer, fingerprint);
    r.is_disjoint(&i) && r.len() as u32 >= policy.requester && i.len() as u32 >= policy.implementer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(side: Side, user: i64, fp: &str, stale: bool) -> SignoffRecord {
        SignoffRecord {
            side,
            user_id: user,
            fingerprint: fp.into(),
            stale,
        }
    }

    fn attempt<'a>(side: Side, signer: i64, existing: &'a [SignoffRecord]) -> Attempt<'a> {
        Attempt {
            side,
            signer_id: signer,
            author_id: 1,
            signer_in_side_team: true,
            side_team: "ops",
            given_fingerprint: "F",
            current_fingerprint: "F",
            target_count: 30,
            confirm_above: Some(20),
            confirm_count: Some(30),
            existing,
        }
    }

    #[test]
    fn refusals() {
        let none = [];
        assert!(check(&attempt(Side::Requester, 1, &none)).is_ok());
        assert_eq!(
            check(&attempt(Side::Implementer, 1, &none)),
            Err(Refusal::AuthorAsImplementer)
        );
        let mut a = attempt(Side::Implementer, 2, &none);
        a.given_fingerprint = "G";
        assert!(matches!(check(&a), Err(Refusal::StaleFingerprint { .. })));
        let mut a = attempt(Side::Implementer, 2, &none);
        a.signer_in_side_team = false;
        assert!(matches!(check(&a), Err(Refusal::NotInTeam { .. })));
        let mut a = attempt(Side::Implementer, 2, &none);
        a.confirm_count = None;
        assert_eq!(
            check(&a),
            Err(Refusal::ConfirmCountMissing { expected: 30 })
        );
        a.confirm_count = Some(29);
        assert_eq!(
            check(&a),
            Err(Refusal::ConfirmCountWrong {
                given: 29,
                expected: 30
            })
        );
        // Requester side never needs the count.
        let mut a = attempt(Side::Requester, 2, &none);
        a.confirm_count = None;
        assert!(check(&a).is_ok());
        let ex = [rec(Side::Requester, 2, "OLD", true)];
        assert_eq!(
            check(&attempt(Side::Implementer, 2, &ex)),
            Err(Refusal::OtherSide(Side::Requester))
        );
        let ex = [rec(Side::Implementer, 2, "F", false)];
        assert_eq!(
            check(&attempt(Side::Implementer, 2, &ex)),
            Err(Refusal::AlreadySigned(Side::Implementer))
        );
        // A stale sign-off on the same side does not block signing again.
        let ex = [rec(Side::Implementer, 2, "OLD", true)];
        assert!(check(&attempt(Side::Implementer, 2, &ex)).is_ok());
    }

    #[test]
    fn approval_counts_distinct_current_signers() {
        let p = SignoffPolicy {
            requester: 1,
            implementer: 2,
        };
        let mut ex = vec![
            rec(Side::Requester, 1, "F", false),
            rec(Side::Implementer, 2, "F", false),
        ];
        assert!(!is_approved(&ex, p, "F"));
        assert_eq!(missing(&ex, p, "F"), (0, 1));
        ex.push(rec(Side::Implementer, 3, "OLD", true));
        assert!(!is_approved(&ex, p, "F"));
        ex.push(rec(Side::Implementer, 2, "F", false));
        assert!(
            !is_approved(&ex, p, "F"),
            "the same person twice is one signer"
        );
        ex.push(rec(Side::Implementer, 3, "F", false));
        assert!(is_approved(&ex, p, "F"));
        assert!(!is_approved(&ex, p, "G"));
    }
}
