ALTER TABLE signoffs DROP COLUMN expiry_recorded_at;
ALTER TABLE signoffs DROP COLUMN reminded_at;
