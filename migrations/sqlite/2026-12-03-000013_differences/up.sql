-- The difference a re-resolution made to a signed list (issue #12): against the base (the
-- last list that had sign-offs), composed over re-resolutions until someone re-signs.
-- Signers re-sign from it; their sign-off records what it was given. Keep in step with the
-- other backend.
CREATE TABLE target_differences (
    change_id BIGINT NOT NULL PRIMARY KEY REFERENCES changes(id),
    base_fingerprint TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE TABLE target_difference_items (
    change_id BIGINT NOT NULL REFERENCES target_differences(change_id),
    direction TEXT NOT NULL CHECK (direction IN ('added', 'removed')),
    entity_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    scope_path TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (change_id, direction, entity_id)
);
-- A sign-off given from the difference view: the fingerprint it replaces and the
-- difference's counts (JSON), as the signer saw them.
ALTER TABLE signoffs ADD COLUMN replaces_fingerprint TEXT;
ALTER TABLE signoffs ADD COLUMN difference TEXT;

-- A notification preference's mode is one of the NotificationMode enum's (triggers, as in
-- 000009; the rows already stored are checked once through a temporary table).
CREATE TEMPORARY TABLE notification_prefs_mode_check_existing (v TEXT CONSTRAINT notification_prefs_mode_check CHECK (v IN ('immediately', 'digest', 'never')));
INSERT INTO notification_prefs_mode_check_existing SELECT DISTINCT mode FROM notification_prefs;
DROP TABLE notification_prefs_mode_check_existing;
CREATE TRIGGER notification_prefs_mode_check_insert BEFORE INSERT ON notification_prefs
WHEN NEW.mode NOT IN ('immediately', 'digest', 'never')
BEGIN
    SELECT RAISE(ABORT, 'notification_prefs.mode: unknown value (CHECK notification_prefs_mode_check)');
END;
CREATE TRIGGER notification_prefs_mode_check_update BEFORE UPDATE OF mode ON notification_prefs
WHEN NEW.mode NOT IN ('immediately', 'digest', 'never')
BEGIN
    SELECT RAISE(ABORT, 'notification_prefs.mode: unknown value (CHECK notification_prefs_mode_check)');
END;
