-- Accounts hardening (issue #10). Keep in step with migrations/sqlite.
-- API tokens may expire (NULL: never); last_used_at (already there) is now written,
-- at most once a minute per token.
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMP;
-- A password printed by the CLI (`user add`, `user reset-password`) must be replaced at
-- the first sign-in. Existing accounts keep their passwords.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;
-- Sessions get a random public id for URLs (the token hash never leaves the database) and
-- what the person needs to recognise them in the list: when, with which browser and from
-- which network (the client's address cut to /24 or /48) the session was last seen,
-- recorded at most once a minute. Live sessions survive, each with a fresh public id.
ALTER TABLE web_sessions ADD COLUMN public_id TEXT;
UPDATE web_sessions SET public_id = replace(gen_random_uuid()::text, '-', '');
ALTER TABLE web_sessions ALTER COLUMN public_id SET NOT NULL;
CREATE UNIQUE INDEX web_sessions_public_id ON web_sessions(public_id);
ALTER TABLE web_sessions ADD COLUMN last_seen_at TIMESTAMP;
ALTER TABLE web_sessions ADD COLUMN user_agent TEXT;
ALTER TABLE web_sessions ADD COLUMN ip_prefix TEXT;
