-- Budgets shared across changes (issue #12): `budget = { roots_per_day, targets_per_day }`
-- per operation, drawn from by every operation of its `budget_group`. Each target an
-- execution takes from a budget is one row; what a group used is what its rows of the
-- last 24 hours count (targets, and distinct roots). Keep in step with the other backend.
CREATE TABLE budget_groups (
    name TEXT NOT NULL PRIMARY KEY,
    -- Bumped by every writer: the row lock that serialises takers of one group.
    lock_version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE budget_uses (
    budget_group TEXT NOT NULL REFERENCES budget_groups(name),
    change_id BIGINT NOT NULL REFERENCES changes(id),
    entity_id TEXT NOT NULL,
    root_id TEXT NOT NULL,
    used_at TIMESTAMP NOT NULL,
    PRIMARY KEY (budget_group, change_id, entity_id)
);
CREATE INDEX budget_uses_window ON budget_uses(budget_group, used_at);

-- A change that selects everything with its operation's leave (`allow_everything`) needs the
-- operation's strictest tier: what the resolution found, beside the counts tiers read.
ALTER TABLE changes ADD COLUMN selects_everything BOOLEAN NOT NULL DEFAULT FALSE;
