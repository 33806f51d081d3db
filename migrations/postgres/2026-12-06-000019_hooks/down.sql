DROP INDEX outbox_hook;
DROP INDEX outbox_channel_due;
DELETE FROM outbox WHERE channel = 'hook';
ALTER TABLE outbox DROP COLUMN hook_id;
ALTER TABLE outbox DROP COLUMN channel;
DROP TABLE hooks;
