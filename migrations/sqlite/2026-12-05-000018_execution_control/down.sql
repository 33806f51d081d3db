DROP TABLE scheduled_starts;
CREATE TEMPORARY TABLE execution_items_status_check_existing (v TEXT CONSTRAINT execution_items_status_check CHECK (v IN ('pending', 'done', 'failed', 'skipped')));
INSERT INTO execution_items_status_check_existing SELECT DISTINCT status FROM execution_items;
DROP TABLE execution_items_status_check_existing;
DROP TRIGGER execution_items_status_check_insert;
DROP TRIGGER execution_items_status_check_update;
CREATE TRIGGER execution_items_status_check_insert BEFORE INSERT ON execution_items
WHEN NEW.status NOT IN ('pending', 'done', 'failed', 'skipped')
BEGIN
    SELECT RAISE(ABORT, 'execution_items.status: unknown value (CHECK execution_items_status_check)');
END;
CREATE TRIGGER execution_items_status_check_update BEFORE UPDATE OF status ON execution_items
WHEN NEW.status NOT IN ('pending', 'done', 'failed', 'skipped')
BEGIN
    SELECT RAISE(ABORT, 'execution_items.status: unknown value (CHECK execution_items_status_check)');
END;
DROP INDEX execution_items_entity;
ALTER TABLE execution_items DROP COLUMN retries;
ALTER TABLE executions DROP COLUMN rerun_through_wave;
ALTER TABLE executions DROP COLUMN drift_checked_wave;
