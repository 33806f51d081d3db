-- Scoped resolution reads "the children of these parents, of this kind" level by level
-- (issue #11): with the name in the index, a level without a `where` can be an index-only
-- scan. The attributes stay out on PostgreSQL (unlike SQLite): a B-tree entry is limited
-- to about 2,700 bytes and attribute values have no length limit, so an import of a long
-- value would fail. It keeps serving the population counts by (parent_id, kind, state)
-- that entities_parent_kind_state served, and every lookup by parent.
CREATE INDEX entities_children ON entities(parent_id, kind, state, name);
DROP INDEX entities_parent_kind_state;
