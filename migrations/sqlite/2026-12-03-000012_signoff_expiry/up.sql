-- Approvals that expire (issue #12, `signoffs_expire_after`). Whether a sign-off counts is
-- decided from its `created_at` and its operation's lifetime, never from these columns;
-- they record what was done about it, once: the reminder mailed to its signer, and the
-- expiry recorded (an audit event, its mails, the change sent back for sign-off).
ALTER TABLE signoffs ADD COLUMN reminded_at TIMESTAMP;
ALTER TABLE signoffs ADD COLUMN expiry_recorded_at TIMESTAMP;
