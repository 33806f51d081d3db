-- The change calendar (issue #13): freeze windows, lockdowns, and the two-person
-- confirmation of every calendar act (a proposal by one admin, confirmed by another).
-- Keep in step with the other backend.

-- A freeze: one-off (`starts_at` to `ends_at`) or recurring (`recurrence`, e.g.
-- `FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h`, from `starts_at`, until `ends_at` if set).
-- `operations` is a JSON array of operation names; empty: every operation.
CREATE TABLE freezes (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('hard', 'soft')),
    starts_at TIMESTAMP NOT NULL,
    ends_at TIMESTAMP,
    recurrence TEXT,
    operations TEXT NOT NULL,
    reason TEXT NOT NULL,
    proposed_by BIGINT NOT NULL REFERENCES users(id),
    confirmed_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    lifted_at TIMESTAMP
);
CREATE INDEX freezes_lifted ON freezes(lifted_at);

-- A lockdown: nothing starts, running executions pause at their next batch. At most one
-- is active (`lifted_at` NULL); the confirming transaction checks it.
CREATE TABLE lockdowns (
    id BIGSERIAL PRIMARY KEY,
    reason TEXT NOT NULL,
    proposed_by BIGINT NOT NULL REFERENCES users(id),
    confirmed_by BIGINT NOT NULL REFERENCES users(id),
    declared_at TIMESTAMP NOT NULL,
    lifted_at TIMESTAMP,
    lift_reason TEXT,
    lift_proposed_by BIGINT REFERENCES users(id),
    lift_confirmed_by BIGINT REFERENCES users(id)
);
CREATE INDEX lockdowns_lifted ON lockdowns(lifted_at);

-- One calendar act proposed by an admin; it takes effect when another admin confirms it.
CREATE TABLE calendar_proposals (
    id BIGSERIAL PRIMARY KEY,
    action TEXT NOT NULL CHECK (action IN ('create_freeze', 'edit_freeze', 'lift_freeze', 'declare_lockdown', 'lift_lockdown')),
    freeze_id BIGINT REFERENCES freezes(id),
    lockdown_id BIGINT REFERENCES lockdowns(id),
    spec TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'declined', 'withdrawn')),
    proposed_by BIGINT NOT NULL REFERENCES users(id),
    proposed_at TIMESTAMP NOT NULL,
    decided_by BIGINT REFERENCES users(id),
    decided_at TIMESTAMP,
    decision_reason TEXT
);
CREATE INDEX calendar_proposals_state ON calendar_proposals(state, id);

-- The executions a lockdown paused (so its lift resumes exactly those).
CREATE TABLE lockdown_pauses (
    lockdown_id BIGINT NOT NULL REFERENCES lockdowns(id),
    execution_id BIGINT NOT NULL REFERENCES executions(id),
    paused_at TIMESTAMP NOT NULL,
    resumed_at TIMESTAMP,
    PRIMARY KEY (lockdown_id, execution_id)
);

-- A soft freeze's exception: one more implementer sign-off, for one freeze and the
-- change's fingerprint at the time (a new fingerprint needs a new exception).
CREATE TABLE freeze_exceptions (
    change_id BIGINT NOT NULL REFERENCES changes(id),
    freeze_id BIGINT NOT NULL REFERENCES freezes(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    fingerprint TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (change_id, freeze_id, user_id)
);

-- A person's secret for the calendar feed (`/calendar.ics?token=…`): SHA-256 only.
CREATE TABLE calendar_feed_tokens (
    user_id BIGINT NOT NULL PRIMARY KEY REFERENCES users(id),
    token_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX calendar_feed_tokens_hash ON calendar_feed_tokens(token_hash);
