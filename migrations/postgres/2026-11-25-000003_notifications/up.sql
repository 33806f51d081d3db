-- Notifications: the transactional outbox, per-person preferences, customer contacts and
-- the customer notices sent from changes. Keep in step with sqlite.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    -- What caused the mail: `audit:<event id>`, `digest:<user>:<n>` or `notice:<id>`.
    event_key TEXT NOT NULL,
    event_kind TEXT NOT NULL,
    change_id BIGINT REFERENCES changes(id),
    user_id BIGINT REFERENCES users(id),
    recipient TEXT NOT NULL,
    -- The event's facts as JSON; the mail is rendered from them when it is sent.
    payload TEXT NOT NULL,
    message_id TEXT NOT NULL,
    -- pending | sent | dead | digest (waiting for a digest) | digested
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    last_error TEXT,
    digest_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    UNIQUE (event_key, recipient)
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_change ON outbox(change_id);
CREATE INDEX outbox_user ON outbox(user_id, state);

CREATE TABLE notification_prefs (
    user_id BIGINT NOT NULL REFERENCES users(id),
    event_kind TEXT NOT NULL,
    mode TEXT NOT NULL,
    PRIMARY KEY (user_id, event_kind)
);

CREATE TABLE contacts (
    id BIGSERIAL PRIMARY KEY,
    entity_id TEXT NOT NULL REFERENCES entities(id),
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (entity_id, email, role)
);
CREATE INDEX contacts_email ON contacts(email);

CREATE TABLE customer_notices (
    id BIGSERIAL PRIMARY KEY,
    change_id BIGINT NOT NULL REFERENCES changes(id),
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    roles TEXT NOT NULL,
    recipients TEXT NOT NULL,
    recipient_count BIGINT NOT NULL,
    sent_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX customer_notices_change ON customer_notices(change_id);
