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

-- A notification preference's mode is one of the NotificationMode enum's (see 000009).
ALTER TABLE notification_prefs ADD CONSTRAINT notification_prefs_mode_check CHECK (mode IN ('immediately', 'digest', 'never'));
