DROP INDEX entity_versions_import;
ALTER TABLE entity_versions DROP COLUMN after_parent;
ALTER TABLE entity_versions DROP COLUMN before_parent;
ALTER TABLE entity_versions DROP COLUMN import_id;
DROP TABLE imports;
