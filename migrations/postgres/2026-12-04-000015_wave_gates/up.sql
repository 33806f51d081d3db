-- Between waves (issue #13): an execution bakes after a wave (`baking`, until
-- `bake_until`, then the health check) or waits for an implementer (`paused`, with
-- `pause_reason`).
ALTER TABLE executions ADD COLUMN bake_until TIMESTAMP;
ALTER TABLE executions ADD COLUMN pause_reason TEXT;
ALTER TABLE executions DROP CONSTRAINT executions_state_check;
ALTER TABLE executions ADD CONSTRAINT executions_state_check CHECK (state IN ('running', 'baking', 'paused', 'halted', 'completed', 'partially_failed', 'failed', 'aborted'));
