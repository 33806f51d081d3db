-- Population guards (issue #12) count active entities: of a kind (`max_fraction`, every
-- root for `selects_everything`), and of a kind below given parents (`min_remaining`,
-- `max_fraction_per_root`). With the state in the indexes both counts read an index only.
-- The parent index keeps serving every lookup by parent, and by parent and kind.
CREATE INDEX entities_kind_state ON entities(kind, state);
CREATE INDEX entities_parent_kind_state ON entities(parent_id, kind, state);
DROP INDEX entities_parent_kind;
