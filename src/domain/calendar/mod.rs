//! The change calendar (issue #13): freeze windows (one-off or recurring, global or for
//! listed operations, hard or soft), lockdowns, and the two-person rule for every calendar
//! act. Pure: what a freeze spec may be, when a freeze holds, what blocks an execution,
//! who may confirm a proposal and who may give a soft freeze's exception.

mod recurrence;

use chrono::{Duration, NaiveDateTime};
use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;
pub use recurrence::{format_duration, parse_duration, Freq, Recurrence, RecurrenceError};

/// Longest name, reason; most operations a freeze lists; longest one-off freeze.
pub const MAX_NAME: usize = 120;
pub const MAX_REASON: usize = 1000;
pub const MAX_OPERATIONS: usize = 50;
pub const MAX_ONE_OFF_DAYS: i64 = 400;
/// The widest range the calendar answers for at once, and most occurrences per freeze.
pub const MAX_RANGE_DAYS: i64 = 400;
pub const MAX_OCCURRENCES: usize = 2000;

/// Hard: execution is refused (`frozen`). Soft: it needs one more implementer sign-off
/// marked as a freeze exception (`freeze_exception_required` until it has one).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Severity {
    Hard,
    Soft,
}

text_enum!(Severity, "freeze severity", { Hard => "hard", Soft => "soft" });

/// A calendar act that needs a second admin.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum ProposalAction {
    CreateFreeze,
    EditFreeze,
    LiftFreeze,
    DeclareLockdown,
    LiftLockdown,
}

text_enum!(ProposalAction, "calendar action", {
    CreateFreeze => "create_freeze",
    EditFreeze => "edit_freeze",
    LiftFreeze => "lift_freeze",
    DeclareLockdown => "declare_lockdown",
    LiftLockdown => "lift_lockdown",
});

impl ProposalAction {
    pub fn words(self) -> &'static str {
        match self {
            Self::CreateFreeze => "create a freeze",
            Self::EditFreeze => "edit a freeze",
            Self::LiftFreeze => "lift a freeze",
            Self::DeclareLockdown => "declare a lockdown",
            Self::LiftLockdown => "lift the lockdown",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum ProposalState {
    Pending,
    Confirmed,
    Declined,
    Withdrawn,
}

text_enum!(ProposalState, "proposal state", {
    Pending => "pending",
    Confirmed => "confirmed",
    Declined => "declined",
    Withdrawn => "withdrawn",
});

/// A freeze as proposed and stored: checked by [`FreezeSpec::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeSpec {
    pub name: String,
    pub severity: Severity,
    /// One-off: the start. Recurring: the first moment an occurrence may start. RFC 3339
    /// (`2026-12-20T00:00:00Z`; an offset is converted to UTC).
    #[serde(with = "utc")]
    pub starts_at: NaiveDateTime,
    /// One-off: the end (required). Recurring: no occurrence starts at or after it.
    #[serde(default, with = "utc_opt")]
    pub ends_at: Option<NaiveDateTime>,
    /// `FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h`; none: one-off.
    #[serde(default)]
    pub recurrence: Option<String>,
    /// Operation names; empty: every operation.
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub reason: String,
}

/// Times in a spec: written as RFC 3339 in UTC (`…Z`), read as RFC 3339 with any offset
/// (or without one, as UTC).
mod utc {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(s: &str) -> Option<NaiveDateTime> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.naive_utc())
            .ok()
            .or_else(|| s.parse::<NaiveDateTime>().ok())
    }

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}` is not an RFC 3339 time such as 2026-12-20T00:00:00Z",
                crate::domain::lines::clip_to(&s, 40)
            ))
        })
    }
}

mod utc_opt {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::utc::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDateTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::utc::parse(&s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{}` is not an RFC 3339 time such as 2027-01-04T00:00:00Z",
                    crate::domain::lines::clip_to(&s, 40)
                ))
            }),
        }
    }
}

/// What is wrong with a freeze spec: the field and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub field: &'static str,
    pub message: String,
    /// The rule does not parse (`invalid_recurrence`), rather than another field.
    pub recurrence: bool,
}

fn problem(field: &'static str, message: impl Into<String>) -> SpecProblem {
    SpecProblem {
        field,
        message: message.into(),
        recurrence: false,
    }
}

/// One line of at most `max` characters, not empty.
fn one_line(field: &'static str, v: &str, max: usize, required: bool) -> Result<(), SpecProblem> {
    if required && v.trim().is_empty() {
        return Err(problem(field, format!("`{field}` is empty")));
    }
    if v.chars().count() > max {
        return Err(problem(
            field,
            format!("`{field}` is longer than {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        || (field == "name" && v.contains('\n'))
    {
        return Err(problem(field, format!("`{field}` has control characters")));
    }
    Ok(())
}

impl FreezeSpec {
    /// Check every field; `known` says whether an operation name is in the schema. Returns
    /// the parsed rule of a recurring freeze, normalising the spec's text.
    pub fn check(
        &mut self,
        known: impl Fn(&str) -> bool,
    ) -> Result<Option<Recurrence>, SpecProblem> {
        self.name = self.name.trim().to_string();
        self.reason = self.reason.trim().to_string();
        one_line("name", &self.name, MAX_NAME, true)?;
        one_line("reason", &self.reason, MAX_REASON, false)?;
        if self.operations.len() > MAX_OPERATIONS {
            return Err(problem(
                "operations",
                format!(
                    "a freeze lists at most {MAX_OPERATIONS} operations (none: every operation)"
                ),
            ));
        }
        self.operations.sort();
        self.operations.dedup();
        if let Some(op) = self.operations.iter().find(|o| !known(o)) {
            return Err(problem(
                "operations",
                format!(
                    "`{}` is not an operation of the schema",
                    crate::domain::lines::clip_to(op, 80)
                ),
            ));
        }
        use chrono::Datelike;
        let sane = |t: NaiveDateTime| (2000..=9999).contains(&t.year());
        if !sane(self.starts_at) || !self.ends_at.map_or(true, sane) {
            return Err(problem(
                if sane(self.starts_at) {
                    "ends_at"
                } else {
                    "starts_at"
                },
                "a freeze's times lie between the years 2000 and 9999",
            ));
        }
        let rule = match self.recurrence.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(Recurrence::parse(text).map_err(|e| SpecProblem {
                field: "recurrence",
                message: format!("the recurrence does not parse: {e}"),
                recurrence: true,
            })?),
        };
        self.recurrence = rule.as_ref().map(Recurrence::text);
        match (&rule, self.ends_at) {
            (None, None) => {
                return Err(problem(
                    "ends_at",
                    "a one-off freeze needs `ends_at` (or give a `recurrence`)",
                ))
            }
            (_, Some(end)) if end <= self.starts_at => {
                return Err(problem("ends_at", "`ends_at` is not after `starts_at`"))
            }
            (None, Some(end)) if end - self.starts_at > Duration::days(MAX_ONE_OFF_DAYS) => {
                return Err(problem(
                    "ends_at",
                    format!("a one-off freeze lasts at most {MAX_ONE_OFF_DAYS} days"),
                ))
            }
            _ => {}
        }
        Ok(rule)
    }
}

/// A stored freeze, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Freeze {
    pub id: i64,
    pub name: String,
    pub severity: Severity,
    pub starts_at: NaiveDateTime,
    pub ends_at: Option<NaiveDateTime>,
    pub recurrence: Option<Recurrence>,
    pub operations: Vec<String>,
    pub reason: String,
}

impl Freeze {
    /// Does it cover this operation (listed, or a global freeze)?
    pub fn applies_to(&self, operation: &str) -> bool {
        self.operations.is_empty() || self.operations.iter().any(|o| o == operation)
    }

    /// The occurrences overlapping `[from, to)` (a one-off freeze has at most one).
    pub fn occurrences(
        &self,
        from: NaiveDateTime,
        to: NaiveDateTime,
    ) -> Vec<(NaiveDateTime, NaiveDateTime)> {
        match &self.recurrence {
            Some(r) => r.occurrences(self.starts_at, self.ends_at, (from, to), MAX_OCCURRENCES),
            None => {
                let end = self.ends_at.unwrap_or(self.starts_at);
                if self.starts_at < to && end > from {
                    vec![(self.starts_at, end)]
                } else {
                    vec![]
                }
            }
        }
    }

    /// The occurrence holding at `t`, if any.
    pub fn holding_at(&self, t: NaiveDateTime) -> Option<(NaiveDateTime, NaiveDateTime)> {
        match &self.recurrence {
            Some(r) => r.containing(self.starts_at, self.ends_at, t),
            None => {
                let end = self.ends_at?;
                (self.starts_at <= t && t < end).then_some((self.starts_at, end))
            }
        }
    }

    /// "every Friday at 16:00 UTC for 2d16h" or "2026-12-20 00:00 to 2027-01-04 00:00 UTC".
    pub fn when(&self) -> String {
        match (&self.recurrence, self.ends_at) {
            (Some(r), until) => format!(
                "{}{}",
                r.describe(),
                until
                    .map(|u| format!(", until {}", u.format("%Y-%m-%d %H:%M")))
                    .unwrap_or_default()
            ),
            (None, end) => format!(
                "{} to {} UTC",
                self.starts_at.format("%Y-%m-%d %H:%M"),
                end.unwrap_or(self.starts_at).format("%Y-%m-%d %H:%M")
            ),
        }
    }
}

/// What stands in the way of starting (or going on with) an execution now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Blocker {
    Lockdown {
        lockdown: i64,
        reason: String,
        since: NaiveDateTime,
    },
    Freeze {
        freeze: i64,
        name: String,
        severity: Severity,
        /// The occurrence that holds now.
        from: NaiveDateTime,
        until: NaiveDateTime,
    },
}

/// Which kind of blocker: what `domain::access` refuses execute (and, for a lockdown,
/// resume and continue) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Lockdown,
    HardFreeze,
    SoftFreeze,
}

impl Blocker {
    pub fn kind(&self) -> BlockKind {
        match self {
            Blocker::Lockdown { .. } => BlockKind::Lockdown,
            Blocker::Freeze {
                severity: Severity::Hard,
                ..
            } => BlockKind::HardFreeze,
            Blocker::Freeze { .. } => BlockKind::SoftFreeze,
        }
    }

    /// One sentence: "the freeze “Year end” (hard) holds until 2027-01-04 00:00 UTC".
    pub fn describe(&self) -> String {
        match self {
            Blocker::Lockdown { reason, since, .. } => format!(
                "a lockdown is in force since {} UTC: {reason}",
                since.format("%Y-%m-%d %H:%M")
            ),
            Blocker::Freeze {
                name,
                severity,
                until,
                ..
            } => format!(
                "the freeze “{name}” ({}) holds until {} UTC",
                severity.as_str(),
                until.format("%Y-%m-%d %H:%M")
            ),
        }
    }
}

/// The freezes that cover `operation` at `t`, hard ones first (then by id): what the gate
/// and the runner weigh.
pub fn holding<'f>(
    freezes: &'f [Freeze],
    operation: &str,
    t: NaiveDateTime,
) -> Vec<(&'f Freeze, (NaiveDateTime, NaiveDateTime))> {
    let mut v: Vec<_> = freezes
        .iter()
        .filter(|f| f.applies_to(operation))
        .filter_map(|f| f.holding_at(t).map(|w| (f, w)))
        .collect();
    v.sort_by_key(|(f, _)| (f.severity != Severity::Hard, f.id));
    v
}

/// The freezes covering `operation` that overlap the window `[from, to)` (a change's
/// `not_before`/`not_after`), each with its first overlapping occurrence: what the
/// new-change form warns about and the queue marks.
pub fn overlapping<'f>(
    freezes: &'f [Freeze],
    operation: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Vec<(&'f Freeze, (NaiveDateTime, NaiveDateTime))> {
    freezes
        .iter()
        .filter(|f| f.applies_to(operation))
        .filter_map(|f| f.occurrences(from, to).into_iter().next().map(|w| (f, w)))
        .collect()
}

/// Why a calendar proposal may not be confirmed (or proposed) by this person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmRefusal {
    NotAdmin,
    /// The proposer is no longer an admin: two admins never means one.
    ProposerNotAdmin,
    OwnProposal,
    NotPending(ProposalState),
}

/// The two-person rule: only an admin proposes or confirms (both still admins when it is
/// confirmed), the confirmer is not the proposer, and only a pending proposal is confirmed. Checked in the confirming
/// transaction, on the proposal row as it is locked there.
pub fn may_confirm(
    (confirmer, confirmer_is_admin): (i64, bool),
    (proposer, proposer_is_admin): (i64, bool),
    state: ProposalState,
) -> Result<(), ConfirmRefusal> {
    if !confirmer_is_admin {
        return Err(ConfirmRefusal::NotAdmin);
    }
    if !proposer_is_admin {
        return Err(ConfirmRefusal::ProposerNotAdmin);
    }
    if state != ProposalState::Pending {
        return Err(ConfirmRefusal::NotPending(state));
    }
    if confirmer == proposer {
        return Err(ConfirmRefusal::OwnProposal);
    }
    Ok(())
}

/// What the exception rule needs to know about the person and the change.
#[derive(Debug, Clone, Default)]
pub struct ExceptionFacts {
    pub in_implementing_team: bool,
    pub is_author: bool,
    /// Signed the requester or third side of the change (any fingerprint).
    pub signed_other_side: bool,
    /// Has a counted implementer sign-off on the current fingerprint: the exception is one
    /// *more* sign-off, by someone else.
    pub counted_implementer: bool,
    pub approved: bool,
}

/// Who may give a soft freeze's exception: a member of the implementing team who is not
/// the author, took no other side and is not one of the implementer signers already
/// counted, on an approved change. `Err` is the sentence why not.
pub fn may_grant_exception(f: &ExceptionFacts) -> Result<(), (ExceptionRefusal, String)> {
    use ExceptionRefusal as R;
    if !f.in_implementing_team {
        return Err((
            R::NotImplementer,
            "only a member of the implementing team gives a freeze exception".into(),
        ));
    }
    if f.is_author || f.signed_other_side {
        return Err((
            R::SeparationOfDuties,
            "the author, or someone who signed another side, never gives the freeze exception"
                .into(),
        ));
    }
    if f.counted_implementer {
        return Err((
            R::SeparationOfDuties,
            "a freeze exception is one more implementer sign-off: someone other than the implementers already counted gives it".into(),
        ));
    }
    if !f.approved {
        return Err((
            R::NotApproved,
            "a freeze exception is given on an approved change".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionRefusal {
    NotImplementer,
    SeparationOfDuties,
    NotApproved,
}

#[cfg(test)]
mod tests;
