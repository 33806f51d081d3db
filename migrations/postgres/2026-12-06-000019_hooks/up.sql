-- Chat and event hooks (issue #14): a team subscribes a Slack incoming webhook, a
-- Microsoft Teams workflow webhook or a generic signed JSON webhook to kinds of events.
-- Deliveries are outbox rows (`channel = 'hook'`) written in the event's transaction, so
-- they share the mail's retries, dead letters and admin retry. Keep in step with the
-- other backend.
CREATE TABLE hooks (
    id BIGSERIAL PRIMARY KEY,
    team_id BIGINT NOT NULL REFERENCES teams(id),
    name TEXT NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('slack', 'teams', 'json')),
    -- The receiver's address. Slack's and Teams' carry their credential in the path:
    -- shown masked once stored.
    url TEXT NOT NULL,
    -- The HMAC key of a `json` hook (shown once, when it is created).
    secret TEXT,
    -- A JSON array of event kinds.
    events TEXT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL,
    deleted_at TIMESTAMP
);
CREATE INDEX hooks_team ON hooks(team_id, deleted_at);
ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'mail' CHECK (channel IN ('mail', 'hook'));
ALTER TABLE outbox ADD COLUMN hook_id BIGINT REFERENCES hooks(id);
CREATE INDEX outbox_channel_due ON outbox(channel, state, next_attempt_at);
CREATE INDEX outbox_hook ON outbox(hook_id);
