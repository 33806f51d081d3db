DROP TRIGGER notification_prefs_mode_check_update;
DROP TRIGGER notification_prefs_mode_check_insert;
ALTER TABLE signoffs DROP COLUMN difference;
ALTER TABLE signoffs DROP COLUMN replaces_fingerprint;
DROP TABLE target_difference_items;
DROP TABLE target_differences;
