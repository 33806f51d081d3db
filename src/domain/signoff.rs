//! Sign-off policy: who may sign which side, and when a change is approved. Pure
//! functions; the database layer calls them while holding the change's row lock.

use std::collections::BTreeSet;

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::schema::SignoffPolicy;
use super::text_enum::text_enum;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Side {
    Requester,
    Implementer,
}

text_enum!(Side, "sign-off side", {
    Requester => "requester",
    Implementer => "implementer",
});

impl Side {
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
    /// The signer is still a member of the side's team (and, for the requester side, not a
    /// member of the implementing team): a signer who left no longer counts.
    pub earned: bool,
}

impl SignoffRecord {
    /// Does this sign-off count for `fingerprint` now?
    pub fn counts_for(&self, fingerprint: &str) -> bool {
        !self.stale && self.earned && self.fingerprint == fingerprint
    }
}

/// The input of one attempted sign-off. Who may sign which side, and in which state, is
/// decided by [`super::access::decide`]; this checks what the signer sends.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub side: Side,
    pub given_fingerprint: &'a str,
    pub current_fingerprint: &'a str,
    /// `Some(h)`: the hash of the title and rationale the signer read.
    pub given_text_hash: Option<&'a str>,
    pub current_text_hash: &'a str,
    pub target_count: u64,
    /// `Some(n)`: the implementer must type the target count when targets > n.
    pub confirm_above: Option<u64>,
    pub confirm_count: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the fingerprint you signed ({given}) is not the change's current fingerprint ({current}): the resolved targets changed since you looked; review them again")]
    StaleFingerprint { given: String, current: String },
    #[error(
        "the title or rationale changed since you read them: read the change again before you sign"
    )]
    StaleText { given: String, current: String },
    #[error("this change has {expected} targets: type that number in confirm_count to sign it")]
    ConfirmCountMissing { expected: u64 },
    #[error("confirm_count is {given}, but this change has {expected} targets")]
    ConfirmCountWrong { given: u64, expected: u64 },
}

/// The hash of the text a signer reads (title and rationale), bound into each sign-off.
pub fn text_hash(title: &str, rationale: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [title, rationale] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Check what a signer sends: a stale fingerprint first (nothing else is meaningful then),
/// then the text, then the typed count.
pub fn check(a: &Attempt<'_>) -> Result<(), Refusal> {
    if a.given_fingerprint != a.current_fingerprint {
        return Err(Refusal::StaleFingerprint {
            given: a.given_fingerprint.to_string(),
            current: a.current_fingerprint.to_string(),
        });
    }
    if let Some(given) = a.given_text_hash {
        if given != a.current_text_hash {
            return Err(Refusal::StaleText {
                given: given.to_string(),
                current: a.current_text_hash.to_string(),
            });
        }
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
        .filter(|s| s.side == side && s.counts_for(fingerprint))
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

    #[test]
    fn side_text_round_trips() {
        crate::domain::text_enum::assert_round_trip(Side::VALUES);
        assert_eq!(Side::VALUES.len(), 2);
    }

    fn rec(side: Side, user: i64, fp: &str, stale: bool) -> SignoffRecord {
        SignoffRecord {
            side,
            user_id: user,
            fingerprint: fp.into(),
            stale,
            earned: true,
        }
    }

    fn attempt(side: Side) -> Attempt<'static> {
        Attempt {
            side,
            given_fingerprint: "F",
            current_fingerprint: "F",
            given_text_hash: None,
            current_text_hash: "T",
            target_count: 30,
            confirm_above: Some(20),
            confirm_count: Some(30),
        }
    }

    #[test]
    fn refusals() {
        assert!(check(&attempt(Side::Requester)).is_ok());
        let mut a = attempt(Side::Implementer);
        a.given_fingerprint = "G";
        assert!(matches!(check(&a), Err(Refusal::StaleFingerprint { .. })));
        let mut a = attempt(Side::Implementer);
        a.given_text_hash = Some("OLD");
        assert!(matches!(check(&a), Err(Refusal::StaleText { .. })));
        a.given_text_hash = Some("T");
        assert!(check(&a).is_ok());
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
        let mut a = attempt(Side::Requester);
        a.confirm_count = None;
        assert!(check(&a).is_ok());
    }

    #[test]
    fn a_signer_who_left_the_team_no_longer_counts() {
        let p = SignoffPolicy {
            requester: 1,
            implementer: 1,
        };
        let mut ex = vec![
            rec(Side::Requester, 1, "F", false),
            rec(Side::Implementer, 2, "F", false),
        ];
        assert!(is_approved(&ex, p, "F"));
        ex[1].earned = false;
        assert!(!is_approved(&ex, p, "F"));
        assert_eq!(missing(&ex, p, "F"), (0, 1));
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
