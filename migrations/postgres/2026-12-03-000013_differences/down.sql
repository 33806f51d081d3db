ALTER TABLE notification_prefs DROP CONSTRAINT notification_prefs_mode_check;
ALTER TABLE signoffs DROP COLUMN difference;
ALTER TABLE signoffs DROP COLUMN replaces_fingerprint;
DROP TABLE target_difference_items;
DROP TABLE target_differences;
