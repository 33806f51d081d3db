-- countersign core schema (SQLite). Keep in step with migrations/postgres.
CREATE TABLE teams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT,
    is_admin BOOLEAN NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE team_members (
    team_id BIGINT NOT NULL REFERENCES teams(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members(user_id);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);

CREATE TABLE schema_versions (
    hash TEXT PRIMARY KEY NOT NULL,
    source TEXT NOT NULL,
    loaded_at TIMESTAMP NOT NULL
);

CREATE TABLE entities (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    parent_id TEXT REFERENCES entities(id),
    name TEXT NOT NULL,
    attrs TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'active',
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
) WITHOUT ROWID; -- one B-tree lookup per ID instead of index + table (resolution does 100k of them)
CREATE INDEX entities_parent ON entities(parent_id);
CREATE INDEX entities_kind_name ON entities(kind, name);

CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    rationale TEXT NOT NULL,
    requesting_team TEXT NOT NULL,
    implementing_team TEXT NOT NULL,
    operation TEXT NOT NULL,
    params TEXT NOT NULL,
    selector TEXT NOT NULL,
    expect TEXT,
    state TEXT NOT NULL,
    author_id BIGINT NOT NULL REFERENCES users(id),
    schema_hash TEXT NOT NULL,
    fingerprint TEXT,
    summary TEXT NOT NULL,
    errors TEXT NOT NULL,
    target_count BIGINT NOT NULL DEFAULT 0,
    root_count BIGINT NOT NULL DEFAULT 0,
    error_count BIGINT NOT NULL DEFAULT 0,
    lock_version BIGINT NOT NULL DEFAULT 0,
    reject_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP NOT NULL,
    submitted_at TIMESTAMP,
    approved_at TIMESTAMP
);
CREATE INDEX changes_state ON changes(state, created_at);

CREATE TABLE change_targets (
    change_id BIGINT NOT NULL REFERENCES changes(id),
    position BIGINT NOT NULL,
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    scope_path TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (change_id, position)
) WITHOUT ROWID;
-- No index on entity_id here: it costs ~20% of storing a 100k-target list, and the
-- conflicts query scans only the targets of open changes (by primary key).

CREATE TABLE signoffs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id BIGINT NOT NULL REFERENCES changes(id),
    side TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    fingerprint TEXT NOT NULL,
    comment TEXT NOT NULL,
    stale BOOLEAN NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX signoffs_change ON signoffs(change_id);

CREATE TABLE comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id BIGINT NOT NULL REFERENCES changes(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX comments_change ON comments(change_id);

-- Append-only, hash-chained audit trail. audit_head holds the chain's tip; every
-- writer updates it first, which serialises appends on both backends.
CREATE TABLE audit_events (
    id BIGINT PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    change_id BIGINT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_change ON audit_events(change_id, id);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL,
    last_id BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, 'genesis');
