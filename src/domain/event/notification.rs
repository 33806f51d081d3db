//! The notifications a person can set a preference for (what an event causes: `Event::notification`).

use serde::{Deserialize, Serialize};

use crate::domain::text_enum::text_enum;

/// The notifications a person can set a preference for, keyed by these spellings in
/// `notification_prefs.event_kind` and `outbox.event_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    NeedsSignoff,
    Signed,
    Approved,
    Stale,
    Rejected,
    Cancelled,
    Commented,
    ExecutionStarted,
    ExecutionHalted,
    ExecutionFinished,
    NoticeDrafted,
    RollbackCreated,
    SignoffExpiring,
    SignoffsExpired,
}

text_enum!(NotificationKind, "notification kind", {
    NeedsSignoff => "needs_signoff",
    Signed => "signed",
    Approved => "approved",
    Stale => "stale",
    Rejected => "rejected",
    Cancelled => "cancelled",
    Commented => "commented",
    ExecutionStarted => "execution_started",
    ExecutionHalted => "execution_halted",
    ExecutionFinished => "execution_finished",
    NoticeDrafted => "notice_drafted",
    RollbackCreated => "rollback_created",
    SignoffExpiring => "signoff_expiring",
    SignoffsExpired => "signoffs_expired",
});

impl NotificationKind {
    /// What a person reads next to the preference.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NeedsSignoff => "A change needs your team's sign-off",
            Self::Signed => "Someone signed a change you are part of",
            Self::Approved => "A change was approved",
            Self::Stale => "A sign-off of yours went stale (the target list changed)",
            Self::Rejected => "A change you are part of was rejected",
            Self::Cancelled => "A change you are part of was cancelled",
            Self::Commented => "A comment on a change you are part of",
            Self::ExecutionStarted => "Execution started",
            Self::ExecutionHalted => "Execution halted, or paused at a gate, and needs a decision",
            Self::ExecutionFinished => {
                "Execution finished (completed, partially failed, failed or aborted)"
            }
            Self::RollbackCreated => "A rollback of a change you are part of was created",
            Self::NoticeDrafted => "A customer notice waits for your team's approval",
            Self::SignoffExpiring => "A sign-off of yours is about to expire",
            Self::SignoffsExpired => {
                "Sign-offs on a change you are part of expired (it needs them again)"
            }
        }
    }

    /// A sign-off request can be digested, never muted.
    pub fn can_mute(self) -> bool {
        self != Self::NeedsSignoff
    }
}
