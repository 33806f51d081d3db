DROP TABLE scheduled_starts;
ALTER TABLE execution_items DROP CONSTRAINT execution_items_status_check;
ALTER TABLE execution_items ADD CONSTRAINT execution_items_status_check CHECK (status IN ('pending', 'done', 'failed', 'skipped'));
DROP INDEX execution_items_entity;
ALTER TABLE execution_items DROP COLUMN retries;
ALTER TABLE executions DROP COLUMN rerun_through_wave;
ALTER TABLE executions DROP COLUMN drift_checked_wave;
