//! What the outbox deliverers share: one attempt's outcome and the channel's sender.

use crate::config::MailConfig;
use crate::db::models::OutboxRow;
use crate::db::Pool;

/// What one delivery attempt came to.
pub(super) enum Outcome {
    Sent,
    /// Retry later (connection refused, a timeout, a 4xx SMTP reply, a 5xx or 429 HTTP
    /// answer).
    Transient(String),
    /// Never retry (a 5xx SMTP reply for this recipient, an unusable address, another 4xx
    /// HTTP answer).
    Permanent(String),
}

/// Delivers the rows of one channel.
pub(super) trait Deliver {
    /// Work before each claim (the mailer collects digests).
    fn before_claim(&mut self, _pool: &Pool, _config: &MailConfig) {}
    fn deliver(&mut self, pool: &Pool, row: &OutboxRow) -> Outcome;
}
