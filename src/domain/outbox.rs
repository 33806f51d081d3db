//! The state of one mail in the outbox.

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum OutboxState {
    /// Due to be sent (at `next_attempt_at`).
    Pending,
    Sent,
    /// Given up after the last retry.
    Dead,
    /// Waiting to be collected into the recipient's next digest.
    Digest,
    /// Collected into a digest (`digest_id`).
    Digested,
}

text_enum!(OutboxState, "outbox state", {
    Pending => "pending",
    Sent => "sent",
    Dead => "dead",
    Digest => "digest",
    Digested => "digested",
});

/// How a person wants one kind of notification (`notification_prefs.mode`).
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
pub enum NotificationMode {
    /// One mail per event, as it happens (the default).
    Immediately,
    /// Collected into the person's next digest.
    Digest,
    /// Not mailed (not allowed for requests for one's sign-off).
    Never,
}

text_enum!(NotificationMode, "notification mode", {
    Immediately => "immediately",
    Digest => "digest",
    Never => "never",
});

impl NotificationMode {
    /// Where a mail of this mode goes: pending, the digest, or nowhere.
    pub fn outbox_state(self, can_mute: bool) -> Option<OutboxState> {
        match self {
            NotificationMode::Immediately => Some(OutboxState::Pending),
            NotificationMode::Never if can_mute => None,
            // A request for one's sign-off is never muted: at most digested.
            NotificationMode::Digest | NotificationMode::Never => Some(OutboxState::Digest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_state_text_round_trips() {
        crate::domain::text_enum::assert_round_trip(OutboxState::VALUES);
        crate::domain::text_enum::assert_round_trip(NotificationMode::VALUES);
        assert_eq!(NotificationMode::Never.outbox_state(true), None);
        assert_eq!(
            NotificationMode::Never.outbox_state(false),
            Some(OutboxState::Digest)
        );
        assert_eq!(
            NotificationMode::Immediately.outbox_state(false),
            Some(OutboxState::Pending)
        );
        assert_eq!(OutboxState::VALUES.len(), 5);
    }
}
