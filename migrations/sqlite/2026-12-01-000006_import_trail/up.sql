-- The inventory import trail: one row per committed import (who, when, counts, a digest of
-- the changed IDs), and a version row for every entity an import changed, in
-- entity_versions with `import_id` set and `change_id` NULL. Restores read only the rows
-- of changes (see db/exec.rs::state_at). Keep in step with migrations/postgres.
CREATE TABLE imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The actor: a person's email or `cli:<user>`.
    importer TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    lines BIGINT NOT NULL DEFAULT 0,
    inserted BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    unchanged BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    partial BOOLEAN NOT NULL DEFAULT 0,
    -- Distinct entities changed, and SHA-256 over their sorted IDs (each followed by "\n").
    changed BIGINT NOT NULL DEFAULT 0,
    changed_digest TEXT NOT NULL DEFAULT '',
    audit_event_id BIGINT
);

ALTER TABLE entity_versions ADD COLUMN import_id BIGINT REFERENCES imports(id);
-- The parent before and after (imports can move an entity; the executor never does, and
-- rows written before this migration have NULL in both).
ALTER TABLE entity_versions ADD COLUMN before_parent TEXT;
ALTER TABLE entity_versions ADD COLUMN after_parent TEXT;
CREATE INDEX entity_versions_import ON entity_versions(import_id, entity_id);
