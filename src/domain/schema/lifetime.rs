//! How long a sign-off counts (`signoffs_expire_after = "72h"`): parsed and checked when
//! the schema loads; the rule that applies it is `domain::signoff::expiry`.

use std::fmt;

use chrono::Duration;
use serde::Serialize;

/// How long a sign-off counts (`signoffs_expire_after = "72h"`): a whole number of
/// minutes, hours or days, at least an hour and at most a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    count: u32,
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Minutes,
    Hours,
    Days,
}

impl Unit {
    fn minutes(self) -> i64 {
        match self {
            Unit::Minutes => 1,
            Unit::Hours => 60,
            Unit::Days => 24 * 60,
        }
    }
}

/// The shortest lifetime: a sign-off that expires sooner leaves no time to execute.
pub const MIN_LIFETIME_MINUTES: i64 = 60;
/// The longest lifetime (a year).
pub const MAX_LIFETIME_MINUTES: i64 = 366 * 24 * 60;

impl Lifetime {
    /// `"90m"`, `"72h"`, `"7d"`; anything else is refused with a message that says what
    /// is expected.
    pub fn parse(text: &str) -> Result<Lifetime, String> {
        let t = text.trim();
        let expected =
            "expected a whole number of minutes, hours or days such as \"90m\", \"72h\" or \"7d\"";
        let (digits, unit) = match t.char_indices().last() {
            Some((i, 'm')) => (&t[..i], Unit::Minutes),
            Some((i, 'h')) => (&t[..i], Unit::Hours),
            Some((i, 'd')) => (&t[..i], Unit::Days),
            _ => return Err(format!("`{t}` is not a duration: {expected}")),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("`{t}` is not a duration: {expected}"));
        }
        let count: u32 = digits
            .parse()
            .map_err(|_| format!("`{t}` is longer than a year"))?;
        let l = Lifetime { count, unit };
        if l.minutes() < MIN_LIFETIME_MINUTES {
            return Err(format!(
                "`{t}` is too short: a sign-off must count for at least 1 hour (\"1h\"), or nobody could execute in time"
            ));
        }
        if l.minutes() > MAX_LIFETIME_MINUTES {
            return Err(format!(
                "`{t}` is longer than a year: leave `signoffs_expire_after` out for sign-offs that never expire"
            ));
        }
        Ok(l)
    }

    fn minutes(self) -> i64 {
        i64::from(self.count) * self.unit.minutes()
    }

    pub fn duration(self) -> Duration {
        Duration::minutes(self.minutes())
    }

    /// When the signer is reminded, measured from the sign-off: a day before it expires,
    /// or at half of its lifetime when that is shorter than 2 days.
    pub fn reminder_after(self) -> Duration {
        let life = self.duration();
        if life >= Duration::days(2) {
            life - Duration::days(1)
        } else {
            Duration::minutes(self.minutes() / 2)
        }
    }

    /// What every description of the operation says: "sign-offs expire 72 hours after
    /// they are given".
    pub fn note(self) -> String {
        format!("sign-offs expire {self} after they are given")
    }

    /// How the schema spells it: `72h`.
    pub fn spelling(self) -> String {
        let u = match self.unit {
            Unit::Minutes => "m",
            Unit::Hours => "h",
            Unit::Days => "d",
        };
        format!("{}{u}", self.count)
    }
}

/// "72 hours", "1 day", "90 minutes".
impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.unit {
            Unit::Minutes => "minute",
            Unit::Hours => "hour",
            Unit::Days => "day",
        };
        let s = if self.count == 1 { "" } else { "s" };
        write!(f, "{} {word}{s}", self.count)
    }
}

impl Serialize for Lifetime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spelling())
    }
}
