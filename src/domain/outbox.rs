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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_state_text_round_trips() {
        crate::domain::text_enum::assert_round_trip(OutboxState::VALUES);
        assert_eq!(OutboxState::VALUES.len(), 5);
    }
}
