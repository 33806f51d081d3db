//! A recurring freeze's rule: an RRULE-like subset, `FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h`
//! ("every Friday 16:00 UTC for 64 hours", i.e. to Monday 08:00). `FREQ` is `WEEKLY` (needs
//! `BYDAY`) or `DAILY` (`BYDAY` optional, restricting the days); `START` is `HH:MM` UTC;
//! `DURATION` is `<n>d`, `<n>h`, `<n>m` or a sum of them (`2d16h`), at least a minute and at
//! most 7 days (a day for `DAILY`). Every bad part is refused with its own message.

use std::fmt;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};

/// The longest rule text accepted.
pub const MAX_RULE_LEN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freq {
    Daily,
    Weekly,
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    pub freq: Freq,
    /// The days an occurrence starts on (every day for `DAILY` without `BYDAY`), Monday first.
    pub days: Vec<Weekday>,
    /// When an occurrence starts on such a day (UTC).
    pub start: NaiveTime,
    pub duration: Duration,
}

/// Why a rule does not parse: the part and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurrenceError {
    pub part: String,
    pub message: String,
}

impl fmt::Display for RecurrenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.part.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.part, self.message)
        }
    }
}

fn bad(part: &str, message: impl Into<String>) -> RecurrenceError {
    RecurrenceError {
        part: part.to_string(),
        message: message.into(),
    }
}

const DAYS: [(&str, Weekday); 7] = [
    ("MO", Weekday::Mon),
    ("TU", Weekday::Tue),
    ("WE", Weekday::Wed),
    ("TH", Weekday::Thu),
    ("FR", Weekday::Fri),
    ("SA", Weekday::Sat),
    ("SU", Weekday::Sun),
];

fn day_code(d: Weekday) -> &'static str {
    DAYS.iter()
        .find(|(_, w)| *w == d)
        .map(|(c, _)| *c)
        .unwrap_or("MO")
}

/// `2d16h`, `90m`, `64h` → a duration; `None` when it is not of that shape.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    let mut seen = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        // Each unit once, largest first.
        let order = "dhm";
        let pos = order.find(ch)?;
        if seen
            .chars()
            .any(|u| order.find(u).is_some_and(|p| p >= pos))
        {
            return None;
        }
        seen.push(ch);
        total += match ch {
            'd' => Duration::days(n.min(1000)),
            'h' => Duration::hours(n.min(100_000)),
            _ => Duration::minutes(n.min(10_000_000)),
        };
    }
    if !digits.is_empty() {
        return None;
    }
    Some(total)
}

/// A duration as the rule writes it: `2d16h`, `90m` → `1h30m`.
pub fn format_duration(d: Duration) -> String {
    let mins = d.num_minutes();
    let (days, hours, minutes) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let mut out = String::new();
    for (n, u) in [(days, 'd'), (hours, 'h'), (minutes, 'm')] {
        if n > 0 {
            out.push_str(&format!("{n}{u}"));
        }
    }
    if out.is_empty() {
        out.push_str("0m");
    }
    out
}

impl Recurrence {
    /// Parse a rule; every problem is named with its part.
    pub fn parse(rule: &str) -> Result<Recurrence, RecurrenceError> {
        let rule = rule.trim();
        if rule.is_empty() {
            return Err(bad(
                "",
                "the rule is empty: write e.g. FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h",
            ));
        }
        if rule.len() > MAX_RULE_LEN {
            return Err(bad(
                "",
                format!("the rule is longer than {MAX_RULE_LEN} characters"),
            ));
        }
        let (mut freq, mut days, mut start, mut duration) = (None, None, None, None);
        for part in rule.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(bad(part, "each part is KEY=VALUE"));
            };
            let key = key.trim().to_ascii_uppercase();
            let value = value.trim();
            let slot_taken = match key.as_str() {
                "FREQ" => freq.is_some(),
                "BYDAY" => days.is_some(),
                "START" => start.is_some(),
                "DURATION" => duration.is_some(),
                _ => {
                    return Err(bad(
                        part,
                        format!("`{key}` is not a part of a rule (FREQ, BYDAY, START, DURATION)"),
                    ))
                }
            };
            if slot_taken {
                return Err(bad(part, format!("`{key}` is given twice")));
            }
            match key.as_str() {
                "FREQ" => {
                    freq = Some(match value.to_ascii_uppercase().as_str() {
                        "WEEKLY" => Freq::Weekly,
                        "DAILY" => Freq::Daily,
                        _ => {
                            return Err(bad(
                                part,
                                format!("`{value}` is not a frequency (WEEKLY or DAILY)"),
                            ))
                        }
                    })
                }
                "BYDAY" => {
                    let mut list = Vec::new();
                    for d in value.split(',').map(str::trim) {
                        let up = d.to_ascii_uppercase();
                        let Some((_, w)) = DAYS.iter().find(|(c, _)| *c == up) else {
                            return Err(bad(
                                part,
                                format!("`{d}` is not a day (MO, TU, WE, TH, FR, SA, SU)"),
                            ));
                        };
                        if list.contains(w) {
                            return Err(bad(part, format!("`{d}` is listed twice")));
                        }
                        list.push(*w);
                    }
                    list.sort_by_key(|w| w.num_days_from_monday());
                    days = Some(list);
                }
                "START" => {
                    let t = NaiveTime::parse_from_str(value, "%H:%M").map_err(|_| {
                        bad(
                            part,
                            format!("`{value}` is not a time of day as HH:MM (UTC)"),
                        )
                    })?;
                    start = Some(t);
                }
                _ => {
                    let d = parse_duration(value).ok_or_else(|| {
                        bad(
                            part,
                            format!("`{value}` is not a duration such as 64h, 90m or 2d16h"),
                        )
                    })?;
                    duration = Some(d);
                }
            }
        }
        let freq = freq.ok_or_else(|| bad("", "the rule needs FREQ (WEEKLY or DAILY)"))?;
        let start = start.ok_or_else(|| bad("", "the rule needs START=HH:MM (UTC)"))?;
        let duration =
            duration.ok_or_else(|| bad("", "the rule needs DURATION (e.g. 64h or 2d16h)"))?;
        let days = match (freq, days) {
            (Freq::Weekly, None) => {
                return Err(bad("", "a WEEKLY rule needs BYDAY (e.g. BYDAY=FR)"));
            }
            (_, Some(d)) => d,
            (Freq::Daily, None) => DAYS.iter().map(|(_, w)| *w).collect(),
        };
        let longest = match freq {
            Freq::Weekly => Duration::days(7),
            Freq::Daily => Duration::days(1),
        };
        if duration < Duration::minutes(1) || duration > longest {
            return Err(bad(
                &format!("DURATION={}", format_duration(duration)),
                format!(
                    "a {} occurrence lasts at least a minute and at most {}",
                    if freq == Freq::Weekly {
                        "weekly"
                    } else {
                        "daily"
                    },
                    format_duration(longest)
                ),
            ));
        }
        Ok(Recurrence {
            freq,
            days,
            start,
            duration,
        })
    }

    /// The rule as it is stored and shown (normalised).
    pub fn text(&self) -> String {
        let days: Vec<&str> = self.days.iter().map(|d| day_code(*d)).collect();
        let by = if self.freq == Freq::Daily && self.days.len() == 7 {
            String::new()
        } else {
            format!(";BYDAY={}", days.join(","))
        };
        format!(
            "FREQ={}{by};START={};DURATION={}",
            if self.freq == Freq::Weekly {
                "WEEKLY"
            } else {
                "DAILY"
            },
            self.start.format("%H:%M"),
            format_duration(self.duration)
        )
    }

    /// RFC 5545's RRULE value (without UNTIL): `FREQ=WEEKLY;BYDAY=FR`.
    pub fn rrule(&self) -> String {
        let days: Vec<&str> = self.days.iter().map(|d| day_code(*d)).collect();
        match self.freq {
            Freq::Weekly => format!("FREQ=WEEKLY;BYDAY={}", days.join(",")),
            Freq::Daily if self.days.len() == 7 => "FREQ=DAILY".into(),
            Freq::Daily => format!("FREQ=DAILY;BYDAY={}", days.join(",")),
        }
    }

    /// In words: "every Friday at 16:00 UTC for 2d16h".
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.days.iter().map(|d| format!("{d}")).collect();
        let on = if self.days.len() == 7 {
            "every day".to_string()
        } else {
            format!("every {}", names.join(", "))
        };
        format!(
            "{on} at {} UTC for {}",
            self.start.format("%H:%M"),
            format_duration(self.duration)
        )
    }

    fn starts_on(&self, d: NaiveDate) -> bool {
        self.days.contains(&d.weekday())
    }

    /// The occurrences (start, end) that start at or after `first` (and before `until`,
    /// if any) and overlap `[from, to)`, in order; at most `max`.
    pub fn occurrences(
        &self,
        first: NaiveDateTime,
        until: Option<NaiveDateTime>,
        (from, to): (NaiveDateTime, NaiveDateTime),
        max: usize,
    ) -> Vec<(NaiveDateTime, NaiveDateTime)> {
        let mut out = Vec::new();
        // An occurrence overlapping `from` started at most `duration` (≤ 7 days) before it.
        let mut day = from
            .checked_sub_signed(self.duration)
            .unwrap_or(from)
            .date()
            .max(first.date());
        // No occurrence starts at or after `until`: the walk stops there, not at `to`.
        let last = match until {
            Some(u) => to.min(u).date(),
            None => to.date(),
        };
        while day <= last && out.len() < max {
            if self.starts_on(day) {
                let s = day.and_time(self.start);
                let before_until = match until {
                    Some(u) => s < u,
                    None => true,
                };
                let in_rule = s >= first && before_until;
                if let Some(e) = s.checked_add_signed(self.duration) {
                    if in_rule && s < to && e > from {
                        out.push((s, e));
                    }
                }
            }
            day = match day.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        out
    }

    /// The occurrence that contains `t`, if any.
    pub fn containing(
        &self,
        first: NaiveDateTime,
        until: Option<NaiveDateTime>,
        t: NaiveDateTime,
    ) -> Option<(NaiveDateTime, NaiveDateTime)> {
        self.occurrences(first, until, (t, t + Duration::microseconds(1)), 1)
            .into_iter()
            .next()
    }

    /// The first occurrence's start at or after `first` (the iCalendar DTSTART).
    pub fn first_start(&self, first: NaiveDateTime) -> NaiveDateTime {
        let mut day = first.date();
        for _ in 0..9 {
            let s = day.and_time(self.start);
            if self.starts_on(day) && s >= first {
                return s;
            }
            day = day.succ_opt().unwrap_or(day);
        }
        first
    }
}
