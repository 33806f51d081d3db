-- Every state-like column takes only the values its Rust enum names (src/domain:
-- ChangeState, Side, EntityState, Effect, ExecState, ItemStatus, OutboxState, NoticeState;
-- the lists here are checked against the enums by the test `states_are_checked_by_the_database`).
-- The application also refuses to load an unknown value (db::text_enum), so a bad value
-- written by hand is refused twice: here on write, there on read.
--
-- PostgreSQL: named CHECK constraints. ADD CONSTRAINT validates the rows already stored,
-- so a database that already holds an unknown value fails this migration with the
-- constraint's name instead of failing later on a page that loads the row.
ALTER TABLE changes ADD CONSTRAINT changes_state_check CHECK (state IN ('draft', 'awaiting_signoff', 'approved', 'rejected', 'cancelled', 'executing', 'completed', 'partially_failed', 'failed', 'halted', 'aborted'));
ALTER TABLE signoffs ADD CONSTRAINT signoffs_side_check CHECK (side IN ('requester', 'implementer'));
ALTER TABLE entities ADD CONSTRAINT entities_state_check CHECK (state IN ('active', 'deleted', 'purged'));
ALTER TABLE entity_versions ADD CONSTRAINT entity_versions_before_state_check CHECK (before_state IN ('active', 'deleted', 'purged'));
ALTER TABLE entity_versions ADD CONSTRAINT entity_versions_after_state_check CHECK (after_state IN ('active', 'deleted', 'purged'));
ALTER TABLE executions ADD CONSTRAINT executions_effect_check CHECK (effect IN ('soft_delete', 'restore', 'set_attributes', 'purge', 'webhook'));
ALTER TABLE executions ADD CONSTRAINT executions_state_check CHECK (state IN ('running', 'halted', 'completed', 'partially_failed', 'failed', 'aborted'));
ALTER TABLE execution_items ADD CONSTRAINT execution_items_status_check CHECK (status IN ('pending', 'done', 'failed', 'skipped'));
ALTER TABLE outbox ADD CONSTRAINT outbox_state_check CHECK (state IN ('pending', 'sent', 'dead', 'digest', 'digested'));
ALTER TABLE customer_notices ADD CONSTRAINT customer_notices_state_check CHECK (state IN ('draft', 'sent', 'discarded'));
