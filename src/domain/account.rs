//! Account rules: what a new password must be, how long an API token lives, when a use of
//! a token or a session is worth recording.

use chrono::{Duration, NaiveDateTime};

pub const MIN_PASSWORD_CHARS: usize = 12;

/// A random initial password: 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}
/// Longer input is refused before any hashing (argon2 would accept it, at a cost).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Lifetimes offered for a new API token on the settings page (days; `None`: never expires).
pub const TOKEN_LIFETIMES: [Option<u32>; 5] = [Some(7), Some(30), Some(90), Some(365), None];
/// Preselected on the page: a token nobody remembers should not live forever.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;
/// The longest lifetime the command line accepts.
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// A token's or session's last use is written at most this often, so a busy client does
/// not write on every request.
pub fn touch_interval() -> Duration {
    Duration::seconds(60)
}

/// Whether a use at `now` should be recorded, given the last recorded one.
pub fn touch_due(last: Option<NaiveDateTime>, now: NaiveDateTime) -> bool {
    match last {
        None => true,
        Some(t) => t <= now - touch_interval(),
    }
}

/// When a token created at `now` for `days` expires.
pub fn token_expiry(now: NaiveDateTime, days: Option<u32>) -> Option<NaiveDateTime> {
    days.map(|d| now + Duration::days(i64::from(d)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort,
    TooLong,
    Mismatch,
    SameAsEmail,
    SameAsCurrent,
}

impl std::fmt::Display for PasswordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordProblem::TooShort => write!(
                f,
                "The new password is too short: use at least {MIN_PASSWORD_CHARS} characters."
            ),
            PasswordProblem::TooLong => write!(
                f,
                "The new password is too long: at most {MAX_PASSWORD_BYTES} bytes."
            ),
            PasswordProblem::Mismatch => write!(f, "The two new passwords are not the same."),
            PasswordProblem::SameAsEmail => {
                write!(f, "The new password must not be your email address.")
            }
            PasswordProblem::SameAsCurrent => {
                write!(f, "The new password must differ from the current one.")
            }
        }
    }
}

/// Everything wrong with a new password (empty: it is acceptable).
pub fn new_password_problems(
    new: &str,
    repeat: &str,
    email: &str,
    current: &str,
) -> Vec<PasswordProblem> {
    let mut out = Vec::new();
    if new.len() > MAX_PASSWORD_BYTES {
        out.push(PasswordProblem::TooLong);
    } else if new.chars().count() < MIN_PASSWORD_CHARS {
        out.push(PasswordProblem::TooShort);
    }
    if new != repeat {
        out.push(PasswordProblem::Mismatch);
    }
    if !new.is_empty() && new.trim().eq_ignore_ascii_case(email.trim()) {
        out.push(PasswordProblem::SameAsEmail);
    }
    if !new.is_empty() && new == current {
        out.push(PasswordProblem::SameAsCurrent);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        let ok = "a sound long password";
        assert!(new_password_problems(ok, ok, "ana@x.example", "old one").is_empty());
        assert_eq!(
            new_password_problems("short", "short", "a@x", "old"),
            vec![PasswordProblem::TooShort]
        );
        // Counted in characters, not bytes.
        let eleven = "ééééééééééé";
        assert_eq!(eleven.chars().count(), 11);
        assert_eq!(
            new_password_problems(eleven, eleven, "a@x", "old"),
            vec![PasswordProblem::TooShort]
        );
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(
            new_password_problems(&long, &long, "a@x", "old"),
            vec![PasswordProblem::TooLong]
        );
        assert_eq!(
            new_password_problems(ok, "other", "a@x", "old"),
            vec![PasswordProblem::Mismatch]
        );
        let email = "Someone@Example.org";
        assert_eq!(
            new_password_problems(email, email, "someone@example.org", "old"),
            vec![PasswordProblem::SameAsEmail]
        );
        assert_eq!(
            new_password_problems(ok, ok, "a@x", ok),
            vec![PasswordProblem::SameAsCurrent]
        );
    }

    #[test]
    fn touches_are_throttled_to_one_a_minute() {
        let t = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        assert!(touch_due(None, t));
        assert!(!touch_due(Some(t), t + Duration::seconds(59)));
        assert!(touch_due(Some(t), t + Duration::seconds(60)));
        assert_eq!(token_expiry(t, None), None);
        assert_eq!(token_expiry(t, Some(7)), Some(t + Duration::days(7)));
    }
}
