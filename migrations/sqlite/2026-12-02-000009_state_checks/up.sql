-- Every state-like column takes only the values its Rust enum names (src/domain:
-- ChangeState, Side, EntityState, Effect, ExecState, ItemStatus, OutboxState, NoticeState;
-- the lists here are checked against the enums by the test `states_are_checked_by_the_database`).
-- The application also refuses to load an unknown value (db::text_enum), so a bad value
-- written by hand is refused twice: here on write, there on read.
--
-- SQLite cannot add a CHECK to an existing table; adding one means rebuilding the table
-- (create, copy, drop, rename), which for `entities` (up to ~1M rows) and its version rows
-- rewrites the largest tables and every index on them, and for `changes` means dropping
-- and recreating a table that most other tables reference. Triggers give the same refusal
-- without touching a row: BEFORE INSERT and BEFORE UPDATE OF the column, RAISE(ABORT) on
-- a value outside the list (one IN test per written row). The rows already stored are
-- checked once below, through a temporary table with the CHECK, so a database that already
-- holds an unknown value fails this migration, as on PostgreSQL.

CREATE TEMPORARY TABLE changes_state_check_existing (v TEXT CONSTRAINT changes_state_check CHECK (v IN ('draft', 'awaiting_signoff', 'approved', 'rejected', 'cancelled', 'executing', 'completed', 'partially_failed', 'failed', 'halted', 'aborted')));
INSERT INTO changes_state_check_existing SELECT DISTINCT state FROM changes;
DROP TABLE changes_state_check_existing;
CREATE TRIGGER changes_state_check_insert BEFORE INSERT ON changes
WHEN NEW.state NOT IN ('draft', 'awaiting_signoff', 'approved', 'rejected', 'cancelled', 'executing', 'completed', 'partially_failed', 'failed', 'halted', 'aborted')
BEGIN
    SELECT RAISE(ABORT, 'changes.state: unknown value (CHECK changes_state_check)');
END;
CREATE TRIGGER changes_state_check_update BEFORE UPDATE OF state ON changes
WHEN NEW.state NOT IN ('draft', 'awaiting_signoff', 'approved', 'rejected', 'cancelled', 'executing', 'completed', 'partially_failed', 'failed', 'halted', 'aborted')
BEGIN
    SELECT RAISE(ABORT, 'changes.state: unknown value (CHECK changes_state_check)');
END;

CREATE TEMPORARY TABLE signoffs_side_check_existing (v TEXT CONSTRAINT signoffs_side_check CHECK (v IN ('requester', 'implementer')));
INSERT INTO signoffs_side_check_existing SELECT DISTINCT side FROM signoffs;
DROP TABLE signoffs_side_check_existing;
CREATE TRIGGER signoffs_side_check_insert BEFORE INSERT ON signoffs
WHEN NEW.side NOT IN ('requester', 'implementer')
BEGIN
    SELECT RAISE(ABORT, 'signoffs.side: unknown value (CHECK signoffs_side_check)');
END;
CREATE TRIGGER signoffs_side_check_update BEFORE UPDATE OF side ON signoffs
WHEN NEW.side NOT IN ('requester', 'implementer')
BEGIN
    SELECT RAISE(ABORT, 'signoffs.side: unknown value (CHECK signoffs_side_check)');
END;

CREATE TEMPORARY TABLE entities_state_check_existing (v TEXT CONSTRAINT entities_state_check CHECK (v IN ('active', 'deleted', 'purged')));
INSERT INTO entities_state_check_existing SELECT DISTINCT state FROM entities;
DROP TABLE entities_state_check_existing;
CREATE TRIGGER entities_state_check_insert BEFORE INSERT ON entities
WHEN NEW.state NOT IN ('active', 'deleted', 'purged')
BEGIN
    SELECT RAISE(ABORT, 'entities.state: unknown value (CHECK entities_state_check)');
END;
CREATE TRIGGER entities_state_check_update BEFORE UPDATE OF state ON entities
WHEN NEW.state NOT IN ('active', 'deleted', 'purged')
BEGIN
    SELECT RAISE(ABORT, 'entities.state: unknown value (CHECK entities_state_check)');
END;

CREATE TEMPORARY TABLE entity_versions_before_state_check_existing (v TEXT CONSTRAINT entity_versions_before_state_check CHECK (v IN ('active', 'deleted', 'purged')));
INSERT INTO entity_versions_before_state_check_existing SELECT DISTINCT before_state FROM entity_versions;
DROP TABLE entity_versions_before_state_check_existing;
CREATE TRIGGER entity_versions_before_state_check_insert BEFORE INSERT ON entity_versions
WHEN NEW.before_state NOT IN ('active', 'deleted', 'purged')
BEGIN
    SELECT RAISE(ABORT, 'entity_versions.before_state: unknown value (CHECK entity_versions_before_state_check)');
END;
CREATE TRIGGER entity_versions_before_state_check_update BEFORE UPDATE OF before_state ON entity_versions
WHEN NEW.before_state NOT IN ('active', 'deleted', 'purged')
BEGIN
    SELECT RAISE(ABORT, 'entity_versions.before_state: unknown value (CHECK entity_versions_before_state_check)');
END;

CREATE TEMPORARY TABLE entity_versions_after_state_check_existing (v TEXT CONSTRAINT entity_versions_after_state_check CHECK (v IN ('active', 'deleted', 'purged')));
INSERT INTO entity_versions_after_state_check_existing SELECT DISTINCT after_state FROM entity_versions;
DROP TABLE entity_versions_after_state_check_existing;
CREATE TRIGGER entity_versions_after_state_check_insert BEFORE INSERT ON entity_versions
WHEN NEW.after_state NOT IN ('active', 'deleted', 'purged')
BEGIN
    SELECT RAISE(ABORT, 'entity_versions.after_state: unknown value (CHECK entity_versions_after_state_check)');
END;
CREATE TRIGGER entity_versions_after_state_check_update BEFORE UPDATE OF after_state ON entity_versions
WHEN NEW.after_state NOT IN ('active', 'deleted', 'purged')
BEGIN
    SELECT RAISE(ABORT, 'entity_versions.after_state: unknown value (CHECK entity_versions_after_state_check)');
END;

CREATE TEMPORARY TABLE executions_effect_check_existing (v TEXT CONSTRAINT executions_effect_check CHECK (v IN ('soft_delete', 'restore', 'set_attributes', 'purge', 'webhook')));
INSERT INTO executions_effect_check_existing SELECT DISTINCT effect FROM executions;
DROP TABLE executions_effect_check_existing;
CREATE TRIGGER executions_effect_check_insert BEFORE INSERT ON executions
WHEN NEW.effect NOT IN ('soft_delete', 'restore', 'set_attributes', 'purge', 'webhook')
BEGIN
    SELECT RAISE(ABORT, 'executions.effect: unknown value (CHECK executions_effect_check)');
END;
CREATE TRIGGER executions_effect_check_update BEFORE UPDATE OF effect ON executions
WHEN NEW.effect NOT IN ('soft_delete', 'restore', 'set_attributes', 'purge', 'webhook')
BEGIN
    SELECT RAISE(ABORT, 'executions.effect: unknown value (CHECK executions_effect_check)');
END;

CREATE TEMPORARY TABLE executions_state_check_existing (v TEXT CONSTRAINT executions_state_check CHECK (v IN ('running', 'halted', 'completed', 'partially_failed', 'failed', 'aborted')));
INSERT INTO executions_state_check_existing SELECT DISTINCT state FROM executions;
DROP TABLE executions_state_check_existing;
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

CREATE TEMPORARY TABLE execution_items_status_check_existing (v TEXT CONSTRAINT execution_items_status_check CHECK (v IN ('pending', 'done', 'failed', 'skipped')));
INSERT INTO execution_items_status_check_existing SELECT DISTINCT status FROM execution_items;
DROP TABLE execution_items_status_check_existing;
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

CREATE TEMPORARY TABLE outbox_state_check_existing (v TEXT CONSTRAINT outbox_state_check CHECK (v IN ('pending', 'sent', 'dead', 'digest', 'digested')));
INSERT INTO outbox_state_check_existing SELECT DISTINCT state FROM outbox;
DROP TABLE outbox_state_check_existing;
CREATE TRIGGER outbox_state_check_insert BEFORE INSERT ON outbox
WHEN NEW.state NOT IN ('pending', 'sent', 'dead', 'digest', 'digested')
BEGIN
    SELECT RAISE(ABORT, 'outbox.state: unknown value (CHECK outbox_state_check)');
END;
CREATE TRIGGER outbox_state_check_update BEFORE UPDATE OF state ON outbox
WHEN NEW.state NOT IN ('pending', 'sent', 'dead', 'digest', 'digested')
BEGIN
    SELECT RAISE(ABORT, 'outbox.state: unknown value (CHECK outbox_state_check)');
END;

CREATE TEMPORARY TABLE customer_notices_state_check_existing (v TEXT CONSTRAINT customer_notices_state_check CHECK (v IN ('draft', 'sent', 'discarded')));
INSERT INTO customer_notices_state_check_existing SELECT DISTINCT state FROM customer_notices;
DROP TABLE customer_notices_state_check_existing;
CREATE TRIGGER customer_notices_state_check_insert BEFORE INSERT ON customer_notices
WHEN NEW.state NOT IN ('draft', 'sent', 'discarded')
BEGIN
    SELECT RAISE(ABORT, 'customer_notices.state: unknown value (CHECK customer_notices_state_check)');
END;
CREATE TRIGGER customer_notices_state_check_update BEFORE UPDATE OF state ON customer_notices
WHEN NEW.state NOT IN ('draft', 'sent', 'discarded')
BEGIN
    SELECT RAISE(ABORT, 'customer_notices.state: unknown value (CHECK customer_notices_state_check)');
END;
