-- Drop the CHECK constraints of up.sql.
ALTER TABLE changes DROP CONSTRAINT changes_state_check;
ALTER TABLE signoffs DROP CONSTRAINT signoffs_side_check;
ALTER TABLE entities DROP CONSTRAINT entities_state_check;
ALTER TABLE entity_versions DROP CONSTRAINT entity_versions_before_state_check;
ALTER TABLE entity_versions DROP CONSTRAINT entity_versions_after_state_check;
ALTER TABLE executions DROP CONSTRAINT executions_effect_check;
ALTER TABLE executions DROP CONSTRAINT executions_state_check;
ALTER TABLE execution_items DROP CONSTRAINT execution_items_status_check;
ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;
ALTER TABLE customer_notices DROP CONSTRAINT customer_notices_state_check;
