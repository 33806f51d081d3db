CREATE INDEX entities_parent_kind_state ON entities(parent_id, kind, state);
DROP INDEX entities_children;
