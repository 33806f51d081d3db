-- Browser sessions: the cookie holds a random token, the table its SHA-256, so a stolen
-- database does not yield live sessions. Keep in step with postgres.
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);
