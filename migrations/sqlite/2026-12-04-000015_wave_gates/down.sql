-- Fails (as on PostgreSQL) while an execution is baking or paused.
CREATE TEMPORARY TABLE executions_state_check_existing (v TEXT CONSTRAINT executions_state_check CHECK (v IN ('running', 'halted', 'completed', 'partially_failed', 'failed', 'aborted')));
INSERT INTO executions_state_check_existing SELECT DISTINCT state FROM executions;
DROP TABLE executions_state_check_existing;
DROP TRIGGER executions_state_check_insert;
DROP TRIGGER executions_state_check_update;
CREATE TRIGGER executions_state_check_insert BEFORE INSERT ON executions
WHEN NEW.state NOT IN ('running', 'halted', 'completed', 'partially_failed', 'failed', 'aborted')
BEGIN
    SELECT RAISE(ABORT, 'executions.state: unknown value (CHECK executions_state_check)');
END;
CREATE TRIGGER executions_state_check_update BEFORE UPDATE OF state ON executions
WHEN NEW.state NOT IN ('running', 'halted', 'completed', 'partially_failed', 'failed', 'aborted')
BEGIN
    SELECT RAISE(ABORT, 'executions.state: unknown value (CHECK executions_state_check)');
END;
ALTER TABLE executions DROP COLUMN pause_reason;
ALTER TABLE executions DROP COLUMN bake_until;
