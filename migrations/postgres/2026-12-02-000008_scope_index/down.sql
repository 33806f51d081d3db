CREATE INDEX entities_parent ON entities(parent_id);
DROP INDEX entities_parent_kind;
