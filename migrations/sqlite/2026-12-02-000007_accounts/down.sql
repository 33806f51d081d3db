CREATE TABLE web_sessions_old (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
INSERT INTO web_sessions_old SELECT token_hash, user_id, csrf_token, created_at, expires_at FROM web_sessions;
DROP TABLE web_sessions;
ALTER TABLE web_sessions_old RENAME TO web_sessions;
CREATE INDEX web_sessions_user ON web_sessions(user_id);
ALTER TABLE users DROP COLUMN must_change_password;
ALTER TABLE api_tokens DROP COLUMN expires_at;
