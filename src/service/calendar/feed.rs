//! The calendar over a range — freezes (each occurrence), the windows (`not_before`/
//! `not_after`) of open and executed changes, and the lockdown — for the JSON API and the
//! page; and the same as an iCalendar feed (RFC 5545: CRLF line ends, lines folded at 75
//! octets, TEXT escaped, a UID and DTSTAMP per event, recurring freezes as an RRULE).
//!
//! Calendar clients cannot sign in, so the feed is read with a per-person feed token
//! (`/calendar.ics?token=csf_…`, 256 random bits, stored as SHA-256): it reads the feed and
//! nothing else — never the API — and creating a new one replaces the old.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;

use crate::db::calendar as repo;
use crate::db::{now, snapshot, users, write_tx, DbConn};
use crate::domain::calendar::{self as cal, Severity, MAX_RANGE_DAYS};
use crate::domain::event::Event;
use crate::domain::ChangeState;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::views::number;
use crate::service::CurrentUser;

/// Most changes one answer lists (`truncated` says when there were more).
pub const MAX_ITEMS: i64 = 1000;

/// A checked range: `from` before `to`, at most 400 days.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
}

fn parse_time(field: &str, v: &str) -> AppResult<NaiveDateTime> {
    let v = v.trim();
    if v.len() > 40 {
        return Err(AppError::new(
            ErrorCode::InvalidRange,
            format!("`{field}` is too long for a time"),
        ));
    }
    let parsed = chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.naive_utc())
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        });
    if let Some(t) = parsed {
        // The freezes' years: no range arithmetic near chrono's limits.
        use chrono::Datelike;
        if !(2000..=9999).contains(&t.year()) {
            return Err(AppError::new(
                ErrorCode::InvalidRange,
                format!("`{field}` must lie between the years 2000 and 9999"),
            ));
        }
        return Ok(t);
    }
    Err(AppError::new(
        ErrorCode::InvalidRange,
        format!(
            "`{field}` is neither an RFC 3339 time (2026-12-20T00:00:00Z) nor a date (2026-12-20)"
        ),
    ))
}

impl Range {
    /// `from`/`to` as given (RFC 3339 or a date, UTC); by default the current month and
    /// the next one.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> AppResult<Range> {
        let from = match from.filter(|s| !s.trim().is_empty()) {
            Some(f) => parse_time("from", f)?,
            None => {
                let d = now().date();
                NaiveDate::from_ymd_opt(chrono::Datelike::year(&d), chrono::Datelike::month(&d), 1)
                    .expect("first of the month")
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight")
            }
        };
        let to = match to.filter(|s| !s.trim().is_empty()) {
            Some(t) => parse_time("to", t)?,
            None => from + Duration::days(62),
        };
        if to <= from {
            return Err(AppError::new(
                ErrorCode::InvalidRange,
                "`to` is not after `from`",
            ));
        }
        if to - from > Duration::days(MAX_RANGE_DAYS) {
            return Err(AppError::new(
                ErrorCode::InvalidRange,
                format!("the range is longer than {MAX_RANGE_DAYS} days: ask for less at a time"),
            ));
        }
        Ok(Range { from, to })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Occurrence {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct FreezeItem {
    pub id: i64,
    pub name: String,
    pub severity: Severity,
    pub when: String,
    pub recurrence: Option<String>,
    pub operations: Vec<String>,
    pub reason: String,
    pub occurrences: Vec<Occurrence>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CalendarItem {
    pub change: String,
    pub id: i64,
    pub title: String,
    pub state: ChangeState,
    pub operation: String,
    pub not_before: Option<NaiveDateTime>,
    pub not_after: Option<NaiveDateTime>,
    /// The freezes its window overlaps, in words.
    pub freezes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CalendarView {
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    pub freezes: Vec<FreezeItem>,
    pub changes: Vec<CalendarItem>,
    pub truncated: bool,
    pub lockdown: Option<super::LockdownView>,
}

/// The calendar over `range` (anyone signed in).
pub fn calendar(conn: &mut DbConn, range: Range) -> AppResult<CalendarView> {
    snapshot(conn, |conn| {
        let all = super::freezes(conn)?;
        let freezes = all
            .iter()
            .filter_map(|f| {
                let occ = f.occurrences(range.from, range.to);
                (!occ.is_empty()).then(|| FreezeItem {
                    id: f.id,
                    name: f.name.clone(),
                    severity: f.severity,
                    when: f.when(),
                    recurrence: f.recurrence.as_ref().map(|r| r.text()),
                    operations: f.operations.clone(),
                    reason: f.reason.clone(),
                    occurrences: occ
                        .into_iter()
                        .map(|(start, end)| Occurrence { start, end })
                        .collect(),
                })
            })
            .collect();
        let rows = repo::changes_in_range(conn, range.from, range.to, MAX_ITEMS + 1)?;
        let truncated = rows.len() as i64 > MAX_ITEMS;
        let changes = rows
            .into_iter()
            .take(MAX_ITEMS as usize)
            .map(|c| {
                let (from, to) = window(&c);
                let marks = cal::overlapping(&all, &c.operation, from, to)
                    .into_iter()
                    .map(|(f, _)| format!("{} ({})", f.name, f.severity.as_str()))
                    .collect();
                CalendarItem {
                    change: number(c.id),
                    id: c.id,
                    title: c.title,
                    state: c.state,
                    operation: c.operation,
                    not_before: c.not_before,
                    not_after: c.not_after,
                    freezes: marks,
                }
            })
            .collect();
        let lockdown = match repo::active_lockdown(conn)? {
            Some(l) => Some(super::lockdown_view(conn, &l)?),
            None => None,
        };
        Ok(CalendarView {
            from: range.from,
            to: range.to,
            freezes,
            changes,
            truncated,
            lockdown,
        })
    })
}

/// A change's window as a closed range: an open end is an hour from the other end.
fn window(c: &crate::db::models::Change) -> (NaiveDateTime, NaiveDateTime) {
    match (c.not_before, c.not_after) {
        (Some(a), Some(b)) => (a, b.max(a + Duration::minutes(1))),
        (Some(a), None) => (a, a + Duration::hours(1)),
        (None, Some(b)) => (b - Duration::hours(1), b),
        (None, None) => {
            let t = c.created_at;
            (t, t + Duration::hours(1))
        }
    }
}

// ---- the iCalendar feed ----

/// A new feed token for the caller (replacing an earlier one); shown once.
pub fn feed_token(conn: &mut DbConn, user: &CurrentUser) -> AppResult<String> {
    write_tx(conn, |conn| -> AppResult<String> {
        let t = repo::new_feed_token(conn, user.id)?;
        record(
            conn,
            &user.actor(),
            None,
            Event::CalendarFeedTokenCreated {},
        )?;
        Ok(t)
    })
}

/// Whose feed this token opens; `None` for an unknown (or replaced) one.
pub fn user_for_feed(conn: &mut DbConn, token: &str) -> AppResult<Option<i64>> {
    if token.len() > 100 || !token.starts_with("csf_") {
        return Ok(None);
    }
    let Some(uid) = repo::feed_token_user(conn, token)? else {
        return Ok(None);
    };
    Ok(users::find_active_user(conn, uid)?.map(|u| u.id))
}

/// RFC 5545 TEXT: backslash, semicolon, comma and newlines escaped; other controls dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded: at most 75 octets per line (never splitting a UTF-8
/// character), continuation lines starting with a space, each ended by CRLF.
pub fn fold(line: &str, out: &mut String) {
    let mut width = 0usize;
    let mut first = true;
    for ch in line.chars() {
        let n = ch.len_utf8();
        let limit = if first { 75 } else { 74 };
        if width + n > limit {
            out.push_str("\r\n ");
            width = 0;
            first = false;
        }
        out.push(ch);
        width += n;
    }
    out.push_str("\r\n");
}

fn stamp(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// RFC 5545 DURATION of a recurring freeze's occurrence: `PT64H`, `PT1H30M`.
fn ics_duration(d: Duration) -> String {
    let m = d.num_minutes();
    match (m / 60, m % 60) {
        (h, 0) => format!("PT{h}H"),
        (0, mm) => format!("PT{mm}M"),
        (h, mm) => format!("PT{h}H{mm}M"),
    }
}

/// The feed: every freeze in force, the lockdown, and the windows of changes from 90 days
/// ago to a year ahead (at most [`MAX_ITEMS`]).
pub fn ics(conn: &mut DbConn, public_url: &str) -> AppResult<String> {
    let base = public_url.trim_end_matches('/');
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or(base)
        .split('/')
        .next()
        .unwrap_or("countersign")
        .to_string();
    let t = now();
    let (freezes, lockdown, changes) = snapshot(conn, |conn| -> AppResult<_> {
        Ok((
            super::freezes(conn)?,
            repo::active_lockdown(conn)?,
            repo::changes_in_range(
                conn,
                t - Duration::days(90),
                t + Duration::days(365),
                MAX_ITEMS,
            )?,
        ))
    })?;
    let mut lines: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        "VERSION:2.0".into(),
        "PRODID:-//countersign//change calendar//EN".into(),
        "CALSCALE:GREGORIAN".into(),
        "METHOD:PUBLISH".into(),
        "X-WR-CALNAME:countersign change calendar".into(),
    ];
    let dtstamp = format!("DTSTAMP:{}", stamp(t));
    for f in &freezes {
        let ops = if f.operations.is_empty() {
            "every operation".to_string()
        } else {
            f.operations.join(", ")
        };
        let what = match f.severity {
            Severity::Hard => "execution is refused",
            Severity::Soft => "execution needs a freeze exception",
        };
        lines.push("BEGIN:VEVENT".into());
        lines.push(format!("UID:freeze-{}@{host}", f.id));
        lines.push(dtstamp.clone());
        match &f.recurrence {
            Some(r) => {
                lines.push(format!("DTSTART:{}", stamp(r.first_start(f.starts_at))));
                lines.push(format!("DURATION:{}", ics_duration(r.duration)));
                let until = f
                    .ends_at
                    .map(|u| format!(";UNTIL={}", stamp(u - Duration::seconds(1))))
                    .unwrap_or_default();
                lines.push(format!("RRULE:{}{until}", r.rrule()));
            }
            None => {
                lines.push(format!("DTSTART:{}", stamp(f.starts_at)));
                lines.push(format!("DTEND:{}", stamp(f.ends_at.unwrap_or(f.starts_at))));
            }
        }
        lines.push(format!(
            "SUMMARY:{}",
            escape(&format!("Freeze ({}): {}", f.severity.as_str(), f.name))
        ));
        lines.push(format!(
            "DESCRIPTION:{}",
            escape(&format!(
                "{what} for {ops}.\n{}{}",
                f.when(),
                if f.reason.is_empty() {
                    String::new()
                } else {
                    format!("\n{}", f.reason)
                }
            ))
        ));
        lines.push("CATEGORIES:FREEZE".into());
        lines.push("TRANSP:OPAQUE".into());
        lines.push("END:VEVENT".into());
    }
    if let Some(l) = lockdown {
        lines.push("BEGIN:VEVENT".into());
        lines.push(format!("UID:lockdown-{}@{host}", l.id));
        lines.push(dtstamp.clone());
        lines.push(format!("DTSTART:{}", stamp(l.declared_at)));
        lines.push(format!("DTEND:{}", stamp(t + Duration::days(1))));
        lines.push(format!("SUMMARY:{}", escape("LOCKDOWN: nothing runs")));
        lines.push(format!("DESCRIPTION:{}", escape(&l.reason)));
        lines.push("CATEGORIES:LOCKDOWN".into());
        lines.push("END:VEVENT".into());
    }
    for c in changes {
        let (s, e) = window(&c);
        lines.push("BEGIN:VEVENT".into());
        lines.push(format!("UID:change-{}@{host}", c.id));
        lines.push(dtstamp.clone());
        lines.push(format!("DTSTART:{}", stamp(s)));
        lines.push(format!("DTEND:{}", stamp(e)));
        lines.push(format!(
            "SUMMARY:{}",
            escape(&format!(
                "{} ({}): {}",
                number(c.id),
                c.state.as_str(),
                c.title
            ))
        ));
        lines.push(format!(
            "DESCRIPTION:{}",
            escape(&format!(
                "Window of {}: {} by {} for {}.",
                number(c.id),
                c.operation,
                c.implementing_team,
                c.requesting_team
            ))
        ));
        lines.push(format!("URL:{base}/changes/{}", number(c.id)));
        lines.push("CATEGORIES:CHANGE".into());
        lines.push("TRANSP:TRANSPARENT".into());
        lines.push("END:VEVENT".into());
    }
    lines.push("END:VCALENDAR".into());
    let mut out = String::new();
    for l in &lines {
        fold(l, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let long = format!("SUMMARY:{}", "é".repeat(100));
        fold(&long, &mut out);
        for l in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        let unfolded = out.replace("\r\n ", "");
        assert_eq!(unfolded.trim_end_matches("\r\n"), long);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
    }

    #[test]
    fn ranges_are_checked() {
        assert!(Range::parse(Some("2026-12-01"), Some("2026-12-31")).is_ok());
        assert!(Range::parse(
            Some("2026-12-01T00:00:00Z"),
            Some("2027-01-01T00:00:00+01:00")
        )
        .is_ok());
        for (f, t) in [
            ("2026-12-31", "2026-12-01"),
            ("2026-01-01", "2027-12-01"),
            ("soon", "2026-12-01"),
        ] {
            let e = Range::parse(Some(f), Some(t)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidRange, "{f} {t}");
        }
    }
}
