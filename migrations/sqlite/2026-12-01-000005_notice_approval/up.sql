-- Customer notices become a two-person act: one team drafts, a member of the change's other
-- team approves, and only the approval sends. Notices sent before this migration were sent
-- in one step by the person who wrote them: they stay `sent`, drafted by that person, with
-- no approver and no recorded hash. Keep in step with postgres.
ALTER TABLE customer_notices RENAME COLUMN sent_by TO drafted_by;
-- draft | sent | discarded
ALTER TABLE customer_notices ADD COLUMN state TEXT NOT NULL DEFAULT 'draft';
-- The team of the change the drafter drafted for; the approver comes from the other one.
ALTER TABLE customer_notices ADD COLUMN drafter_team TEXT;
-- SHA-256 (hex) of the body as drafted, the text the approver approves.
ALTER TABLE customer_notices ADD COLUMN body_sha256 TEXT;
ALTER TABLE customer_notices ADD COLUMN approved_by BIGINT REFERENCES users(id);
ALTER TABLE customer_notices ADD COLUMN sent_at TIMESTAMP;
ALTER TABLE customer_notices ADD COLUMN discarded_by BIGINT REFERENCES users(id);
ALTER TABLE customer_notices ADD COLUMN discarded_at TIMESTAMP;
UPDATE customer_notices SET state = 'sent', sent_at = created_at;
-- The send rate limit looks up a change's latest send.
CREATE INDEX customer_notices_sent ON customer_notices(change_id, sent_at);
