-- Deactivated people (issue #14). Keep in step with migrations/postgres.
-- A deactivated person keeps their row, teams, sign-offs and audit trail, but signs in no
-- more, their sessions and API tokens are refused (db/users.rs reads only people with
-- `deactivated_at IS NULL` for a session or token), and their sign-offs stop counting.
-- `deactivated_by`: the admin who did it; NULL with `deactivated_at` set: the command line.
ALTER TABLE users ADD COLUMN deactivated_at TIMESTAMP;
ALTER TABLE users ADD COLUMN deactivated_by BIGINT REFERENCES users(id);
