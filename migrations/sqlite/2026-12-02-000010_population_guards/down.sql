CREATE INDEX entities_parent_kind ON entities(parent_id, kind);
DROP INDEX entities_parent_kind_state;
DROP INDEX entities_kind_state;
