-- Execution: soft-delete bookkeeping on entities, entity versions, executions and their
-- items, rollback links and execution windows on changes. Keep in step with sqlite.
ALTER TABLE entities ADD COLUMN deleted_at TIMESTAMP;
ALTER TABLE entities ADD COLUMN deleted_by BIGINT;
ALTER TABLE entities ADD COLUMN purge_after TIMESTAMP;

ALTER TABLE changes ADD COLUMN not_before TIMESTAMP;
ALTER TABLE changes ADD COLUMN not_after TIMESTAMP;
ALTER TABLE changes ADD COLUMN rollback_of BIGINT;
ALTER TABLE changes ADD COLUMN rolled_back_by BIGINT;

-- Every mutation of an entity: what it was before and after, and which change did it.
CREATE TABLE entity_versions (
    entity_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    change_id BIGINT,
    at TIMESTAMP NOT NULL,
    before_state TEXT NOT NULL,
    before_name TEXT NOT NULL,
    before_attrs TEXT NOT NULL,
    after_state TEXT NOT NULL,
    after_name TEXT NOT NULL,
    after_attrs TEXT NOT NULL,
    PRIMARY KEY (entity_id, version)
);
CREATE INDEX entity_versions_change ON entity_versions(change_id, entity_id);

CREATE TABLE executions (
    id BIGSERIAL PRIMARY KEY,
    change_id BIGINT NOT NULL UNIQUE REFERENCES changes(id),
    fingerprint TEXT NOT NULL,
    effect TEXT NOT NULL,
    state TEXT NOT NULL,
    waves TEXT NOT NULL,
    current_wave BIGINT NOT NULL DEFAULT 1,
    total BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    halt_reason TEXT,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    started_by BIGINT NOT NULL REFERENCES users(id),
    started_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX executions_state ON executions(state, id);

CREATE TABLE execution_items (
    execution_id BIGINT NOT NULL,
    position BIGINT NOT NULL,
    wave BIGINT NOT NULL,
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    next_attempt_at TIMESTAMP,
    finished_at TIMESTAMP,
    PRIMARY KEY (execution_id, position)
);
CREATE INDEX execution_items_status ON execution_items(execution_id, status, position);
