//! Sign-off policy: who may sign which side, and when a change is approved. Pure
//! functions; the database layer calls them while holding the change's row lock.
//!
//! A sign-off may expire (`signoffs_expire_after` of its operation, a [`Lifetime`]): the
//! record carries its expiry, computed once from the operation and now by [`expiry`], and
//! [`SignoffRecord::counts_for`] leaves an expired one out, so every place that counts
//! sign-offs (approval, the execute gate, views, the queue) agrees.

use std::collections::BTreeSet;

use chrono::{Duration, NaiveDateTime};

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::schema::{Lifetime, SignoffPolicy};
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
    /// The third side a risk tier names (`also = { team = "security", … }`).
    Reviewer,
}

text_enum!(Side, "sign-off side", {
    Requester => "requester",
    Implementer => "implementer",
    Reviewer => "reviewer",
});

/// How many more sign-offs each side needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Missing {
    pub requester: u32,
    pub implementer: u32,
    pub reviewer: u32,
}

impl Missing {
    pub fn of(&self, side: Side) -> u32 {
        match side {
            Side::Requester => self.requester,
            Side::Implementer => self.implementer,
            Side::Reviewer => self.reviewer,
        }
    }
}

/// A recorded sign-off, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignoffRecord {
    /// The sign-off row's id.
    pub id: i64,
    pub side: Side,
    pub user_id: i64,
    pub fingerprint: String,
    pub stale: bool,
    /// The signer is still a member of the side's team (and, for the requester side, not a
    /// member of the implementing team): a signer who left no longer counts.
    pub earned: bool,
    /// When it was given.
    pub signed_at: NaiveDateTime,
    /// When it stops counting (`None`: the operation's sign-offs never expire).
    pub expires_at: Option<NaiveDateTime>,
    /// `expires_at` had passed when the records were read ([`expiry`]).
    pub expired: bool,
}

impl SignoffRecord {
    /// Does this sign-off count for `fingerprint` now?
    pub fn counts_for(&self, fingerprint: &str) -> bool {
        !self.stale && !self.expired && self.earned && self.fingerprint == fingerprint
    }

    /// It would count for `fingerprint` but for its age: what the sweep and the execute
    /// gate report as expired.
    pub fn expired_on(&self, fingerprint: &str) -> bool {
        self.expired && !self.stale && self.fingerprint == fingerprint
    }
}

/// A sign-off's expiry: `None` when its operation's sign-offs never expire; otherwise
/// when it expires and whether that moment has passed at `now` (it expires *at*
/// `expires_at`: from then on it no longer counts).
pub fn expiry(
    signed_at: NaiveDateTime,
    lifetime: Option<Lifetime>,
    now: NaiveDateTime,
) -> Option<(NaiveDateTime, bool)> {
    let expires_at = signed_at + lifetime?.duration();
    Some((expires_at, now >= expires_at))
}

/// Is the signer's reminder due at `now`: past the reminder time
/// ([`Lifetime::reminder_after`]) and not yet expired?
pub fn reminder_due(
    signed_at: NaiveDateTime,
    lifetime: Option<Lifetime>,
    now: NaiveDateTime,
) -> bool {
    match lifetime {
        Some(l) => now >= signed_at + l.reminder_after() && now < signed_at + l.duration(),
        None => false,
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

/// The earliest expiry among the sign-offs counting for `fingerprint`, if it comes before
/// `now + within` (the queue marks approvals that expire within a day).
pub fn expiring_within(
    existing: &[SignoffRecord],
    fingerprint: &str,
    now: NaiveDateTime,
    within: Duration,
) -> Option<NaiveDateTime> {
    existing
        .iter()
        .filter(|s| s.counts_for(fingerprint))
        .filter_map(|s| s.expires_at)
        .filter(|at| *at <= now + within)
        .min()
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
pub fn missing(existing: &[SignoffRecord], policy: SignoffPolicy, fingerprint: &str) -> Missing {
    let left = |side: Side, needed: u32| {
        needed.saturating_sub(current_signers(existing, side, fingerprint).len() as u32)
    };
    Missing {
        requester: left(Side::Requester, policy.requester),
        implementer: left(Side::Implementer, policy.implementer),
        reviewer: left(Side::Reviewer, policy.reviewer),
    }
}

/// Approved when every side the policy names has enough distinct current signers and
/// nobody counts on two sides.
pub fn is_approved(existing: &[SignoffRecord], policy: SignoffPolicy, fingerprint: &str) -> bool {
    let r = current_signers(existing, Side::Requester, fingerprint);
    let i = current_signers(existing, Side::Implementer, fingerprint);
    let v = current_signers(existing, Side::Reviewer, fingerprint);
    r.is_disjoint(&i)
        && r.is_disjoint(&v)
        && i.is_disjoint(&v)
        && missing(existing, policy, fingerprint) == Missing::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_text_round_trips() {
        crate::domain::text_enum::assert_round_trip(Side::VALUES);
        assert_eq!(Side::VALUES.len(), 3);
    }

    fn need(requester: u32, implementer: u32, reviewer: u32) -> Missing {
        Missing {
            requester,
            implementer,
            reviewer,
        }
    }

    #[test]
    fn a_third_side_must_sign_too_and_by_other_people() {
        let p = SignoffPolicy {
            requester: 1,
            implementer: 1,
            reviewer: 2,
        };
        let mut ex = vec![
            rec(Side::Requester, 1, "F", false),
            rec(Side::Implementer, 2, "F", false),
        ];
        assert!(!is_approved(&ex, p, "F"), "the reviewers have not signed");
        assert_eq!(missing(&ex, p, "F"), need(0, 0, 2));
        ex.push(rec(Side::Reviewer, 3, "F", false));
        assert_eq!(missing(&ex, p, "F"), need(0, 0, 1));
        ex.push(rec(Side::Reviewer, 4, "OLD", true));
        assert!(!is_approved(&ex, p, "F"), "a stale review does not count");
        // Someone who signed another side never makes up a third side's count.
        ex.push(rec(Side::Reviewer, 2, "F", false));
        assert_eq!(missing(&ex, p, "F"), need(0, 0, 0));
        assert!(!is_approved(&ex, p, "F"), "person 2 is on two sides");
        ex.pop();
        ex.push(rec(Side::Reviewer, 4, "F", false));
        assert!(is_approved(&ex, p, "F"));
        // Without a third side in the policy, reviews are not needed.
        let two = SignoffPolicy { reviewer: 0, ..p };
        assert!(is_approved(&ex[..2], two, "F"));
        assert_eq!(need(1, 2, 3).of(Side::Reviewer), 3);
    }

    fn rec(side: Side, user: i64, fp: &str, stale: bool) -> SignoffRecord {
        SignoffRecord {
            id: user,
            side,
            user_id: user,
            fingerprint: fp.into(),
            stale,
            earned: true,
            signed_at: at(0),
            expires_at: None,
            expired: false,
        }
    }

    /// `hours` after a fixed moment.
    fn at(hours: i64) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            + Duration::hours(hours)
    }

    #[test]
    fn lifetimes_parse_and_refuse() {
        let l = Lifetime::parse("72h").unwrap();
        assert_eq!(l.duration(), Duration::hours(72));
        assert_eq!(l.to_string(), "72 hours");
        assert_eq!(l.spelling(), "72h");
        assert_eq!(Lifetime::parse(" 90m ").unwrap().to_string(), "90 minutes");
        assert_eq!(Lifetime::parse("1d").unwrap().to_string(), "1 day");
        assert_eq!(Lifetime::parse("7d").unwrap().duration(), Duration::days(7));
        for bad in [
            "",
            "72",
            "h",
            "-1h",
            "1.5h",
            "72 h",
            "72x",
            "0h",
            "3d2h",
            "99999999999d",
        ] {
            assert!(Lifetime::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Lifetime::parse("59m")
            .unwrap_err()
            .contains("at least 1 hour"));
        assert!(Lifetime::parse("60m").is_ok());
        assert!(Lifetime::parse("400d")
            .unwrap_err()
            .contains("longer than a year"));
    }

    #[test]
    fn a_sign_off_expires_at_its_lifetime() {
        let l = Lifetime::parse("72h").ok();
        assert_eq!(expiry(at(0), None, at(10_000)), None, "no lifetime: never");
        assert_eq!(expiry(at(0), l, at(71)), Some((at(72), false)));
        assert_eq!(
            expiry(at(0), l, at(72)),
            Some((at(72), true)),
            "expired at the moment"
        );
        assert_eq!(expiry(at(0), l, at(100)), Some((at(72), true)));
    }

    #[test]
    fn an_expired_sign_off_stops_counting_and_unapproves() {
        let p = SignoffPolicy {
            requester: 1,
            implementer: 1,
            reviewer: 0,
        };
        let mut ex = vec![
            rec(Side::Requester, 1, "F", false),
            rec(Side::Implementer, 2, "F", false),
        ];
        assert!(is_approved(&ex, p, "F"));
        ex[0].expired = true;
        assert!(!ex[0].counts_for("F"));
        assert!(ex[0].expired_on("F"));
        assert!(!ex[1].expired_on("F"));
        assert!(!is_approved(&ex, p, "F"));
        assert_eq!(missing(&ex, p, "F"), need(1, 0, 0));
        // A new sign-off by the same person counts again.
        ex.push(rec(Side::Requester, 1, "F", false));
        assert!(is_approved(&ex, p, "F"));
        // A stale expired one is stale, not "expired on" the current fingerprint.
        let mut old = rec(Side::Requester, 3, "OLD", true);
        old.expired = true;
        assert!(!old.expired_on("F"));
    }

    #[test]
    fn the_queue_marks_what_expires_within_a_day() {
        let mut ex = vec![
            rec(Side::Requester, 1, "F", false),
            rec(Side::Implementer, 2, "F", false),
        ];
        assert_eq!(expiring_within(&ex, "F", at(0), Duration::days(1)), None);
        ex[0].expires_at = Some(at(30));
        ex[1].expires_at = Some(at(20));
        assert_eq!(
            expiring_within(&ex, "F", at(0), Duration::days(1)),
            Some(at(20))
        );
        assert_eq!(expiring_within(&ex, "F", at(0), Duration::hours(10)), None);
        ex[1].expired = true;
        assert_eq!(
            expiring_within(&ex, "F", at(10), Duration::days(1)),
            Some(at(30))
        );
    }

    #[test]
    fn the_reminder_comes_a_day_before_or_at_half_the_lifetime() {
        let three_days = Lifetime::parse("72h").ok();
        assert!(!reminder_due(at(0), three_days, at(47)));
        assert!(reminder_due(at(0), three_days, at(48)));
        assert!(reminder_due(at(0), three_days, at(71)));
        assert!(
            !reminder_due(at(0), three_days, at(72)),
            "expired: no reminder"
        );
        let two_days = Lifetime::parse("2d").ok();
        assert!(reminder_due(at(0), two_days, at(24)));
        assert!(!reminder_due(at(0), two_days, at(23)));
        // Shorter than 2 days: at half of the lifetime.
        let ten_hours = Lifetime::parse("10h").ok();
        assert!(!reminder_due(at(0), ten_hours, at(4)));
        assert!(reminder_due(at(0), ten_hours, at(5)));
        assert!(!reminder_due(at(0), None, at(5)));
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
            reviewer: 0,
        };
        let mut ex = vec![
            rec(Side::Requester, 1, "F", false),
            rec(Side::Implementer, 2, "F", false),
        ];
        assert!(is_approved(&ex, p, "F"));
        ex[1].earned = false;
        assert!(!is_approved(&ex, p, "F"));
        assert_eq!(missing(&ex, p, "F"), need(0, 1, 0));
    }

    #[test]
    fn approval_counts_distinct_current_signers() {
        let p = SignoffPolicy {
            requester: 1,
            implementer: 2,
            reviewer: 0,
        };
        let mut ex = vec![
            rec(Side::Requester, 1, "F", false),
            rec(Side::Implementer, 2, "F", false),
        ];
        assert!(!is_approved(&ex, p, "F"));
        assert_eq!(missing(&ex, p, "F"), need(0, 1, 0));
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
