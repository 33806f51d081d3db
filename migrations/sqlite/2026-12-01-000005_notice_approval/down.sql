-- Drafts and discarded notices were never sent: they do not survive going back. SQLite
-- cannot drop a column that references another table: rebuild the table as it was.
CREATE TABLE customer_notices_old (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id BIGINT NOT NULL REFERENCES changes(id),
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    roles TEXT NOT NULL,
    recipients TEXT NOT NULL,
    recipient_count BIGINT NOT NULL,
    sent_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL
);
INSERT INTO customer_notices_old
    (id, change_id, subject, body, roles, recipients, recipient_count, sent_by, created_at)
    SELECT id, change_id, subject, body, roles, recipients, recipient_count, drafted_by, created_at
    FROM customer_notices WHERE state = 'sent';
DROP TABLE customer_notices;
ALTER TABLE customer_notices_old RENAME TO customer_notices;
CREATE INDEX customer_notices_change ON customer_notices(change_id);
