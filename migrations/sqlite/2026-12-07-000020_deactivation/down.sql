ALTER TABLE users DROP COLUMN deactivated_by;
ALTER TABLE users DROP COLUMN deactivated_at;
