-- Scoped selectors ask for "children of these parents, of this kind": an index on both,
-- so the planner never walks a whole kind through entities_kind_name (issue #11). It also
-- serves every lookup by parent alone, which the old entities_parent index did.
CREATE INDEX entities_parent_kind ON entities(parent_id, kind);
DROP INDEX entities_parent;
