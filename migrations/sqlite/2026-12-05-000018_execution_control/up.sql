-- Execution control (issue #13): the drift check before each wave (`drifted` items,
-- `drift_checked_wave`), retrying failed targets (`retries` per item; waves re-run after
-- a retry, up to `rerun_through_wave`, pass their between-wave gates without waiting
-- again), conflicting changes at the gate (items by entity), scheduled starts.
ALTER TABLE executions ADD COLUMN drift_checked_wave BIGINT NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN rerun_through_wave BIGINT NOT NULL DEFAULT 0;
ALTER TABLE execution_items ADD COLUMN retries BIGINT NOT NULL DEFAULT 0;
CREATE INDEX execution_items_entity ON execution_items(entity_id, execution_id);
DROP TRIGGER execution_items_status_check_insert;
DROP TRIGGER execution_items_status_check_update;
CREATE TRIGGER execution_items_status_check_insert BEFORE INSERT ON execution_items
WHEN NEW.status NOT IN ('pending', 'done', 'failed', 'skipped', 'drifted')
BEGIN
    SELECT RAISE(ABORT, 'execution_items.status: unknown value (CHECK execution_items_status_check)');
END;
CREATE TRIGGER execution_items_status_check_update BEFORE UPDATE OF status ON execution_items
WHEN NEW.status NOT IN ('pending', 'done', 'failed', 'skipped', 'drifted')
BEGIN
    SELECT RAISE(ABORT, 'execution_items.status: unknown value (CHECK execution_items_status_check)');
END;
CREATE TABLE scheduled_starts (
    change_id BIGINT PRIMARY KEY NOT NULL REFERENCES changes(id),
    start_at TIMESTAMP NOT NULL,
    fingerprint TEXT NOT NULL,
    scheduled_by BIGINT NOT NULL REFERENCES users(id),
    wait_for_conflicts BOOLEAN NOT NULL DEFAULT 0,
    waiting_on TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX scheduled_starts_due ON scheduled_starts(start_at);
