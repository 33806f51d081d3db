-- Drafts and discarded notices were never sent: they do not survive going back.
DROP INDEX customer_notices_sent;
DELETE FROM customer_notices WHERE state <> 'sent';
ALTER TABLE customer_notices DROP COLUMN discarded_at;
ALTER TABLE customer_notices DROP COLUMN discarded_by;
ALTER TABLE customer_notices DROP COLUMN sent_at;
ALTER TABLE customer_notices DROP COLUMN approved_by;
ALTER TABLE customer_notices DROP COLUMN body_sha256;
ALTER TABLE customer_notices DROP COLUMN drafter_team;
ALTER TABLE customer_notices DROP COLUMN state;
ALTER TABLE customer_notices RENAME COLUMN drafted_by TO sent_by;
