-- Between waves (issue #13): an execution bakes after a wave (`baking`, until
-- `bake_until`, then the health check) or waits for an implementer (`paused`, with
-- `pause_reason`). The state check (000009, triggers) takes the two new values.
ALTER TABLE executions ADD COLUMN bake_until TIMESTAMP;
ALTER TABLE executions ADD COLUMN pause_reason TEXT;
DROP TRIGGER executions_state_check_insert;
DROP TRIGGER executions_state_check_update;
CREATE TRIGGER executions_state_check_insert BEFORE INSERT ON executions
WHEN NEW.state NOT IN ('running', 'baking', 'paused', 'halted', 'completed', 'partially_failed', 'failed', 'aborted')
BEGIN
    SELECT RAISE(ABORT, 'executions.state: unknown value (CHECK executions_state_check)');
END;
CREATE TRIGGER executions_state_check_update BEFORE UPDATE OF state ON executions
WHEN NEW.state NOT IN ('running', 'baking', 'paused', 'halted', 'completed', 'partially_failed', 'failed', 'aborted')
BEGIN
    SELECT RAISE(ABORT, 'executions.state: unknown value (CHECK executions_state_check)');
END;
