ALTER TABLE executions DROP CONSTRAINT executions_state_check;
ALTER TABLE executions ADD CONSTRAINT executions_state_check CHECK (state IN ('running', 'halted', 'completed', 'partially_failed', 'failed', 'aborted'));
ALTER TABLE executions DROP COLUMN pause_reason;
ALTER TABLE executions DROP COLUMN bake_until;
