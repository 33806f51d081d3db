-- Accounts hardening (issue #10). Keep in step with migrations/postgres.
-- API tokens may expire (NULL: never); last_used_at (already there) is now written,
-- at most once a minute per token.
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMP;
-- A password printed by the CLI (`user add`, `user reset-password`) must be replaced at
-- the first sign-in. Existing accounts keep their passwords.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT 0;
-- Sessions get a random public id for URLs (the token hash never leaves the database) and
-- what the person needs to recognise them in the list: when, with which browser and from
-- which network (the client's address cut to /24 or /48) the session was last seen,
-- recorded at most once a minute. SQLite cannot add a NOT NULL UNIQUE column in place:
-- rebuild the table (live sessions survive, each with a fresh public id).
CREATE TABLE web_sessions_new (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    last_seen_at TIMESTAMP,
    user_agent TEXT,
    ip_prefix TEXT
);
INSERT INTO web_sessions_new (token_hash, user_id, csrf_token, created_at, expires_at, public_id)
    SELECT token_hash, user_id, csrf_token, created_at, expires_at, lower(hex(randomblob(16)))
    FROM web_sessions;
DROP TABLE web_sessions;
ALTER TABLE web_sessions_new RENAME TO web_sessions;
CREATE INDEX web_sessions_user ON web_sessions(user_id);
