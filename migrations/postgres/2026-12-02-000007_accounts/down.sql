ALTER TABLE web_sessions DROP COLUMN ip_prefix;
ALTER TABLE web_sessions DROP COLUMN user_agent;
ALTER TABLE web_sessions DROP COLUMN last_seen_at;
DROP INDEX web_sessions_public_id;
ALTER TABLE web_sessions DROP COLUMN public_id;
ALTER TABLE users DROP COLUMN must_change_password;
ALTER TABLE api_tokens DROP COLUMN expires_at;
