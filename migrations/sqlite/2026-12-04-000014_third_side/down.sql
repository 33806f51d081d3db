-- Fails (as on PostgreSQL) while a `reviewer` sign-off is stored.
CREATE TEMPORARY TABLE signoffs_side_check_existing (v TEXT CONSTRAINT signoffs_side_check CHECK (v IN ('requester', 'implementer')));
INSERT INTO signoffs_side_check_existing SELECT DISTINCT side FROM signoffs;
DROP TABLE signoffs_side_check_existing;
DROP TRIGGER signoffs_side_check_insert;
DROP TRIGGER signoffs_side_check_update;
CREATE TRIGGER signoffs_side_check_insert BEFORE INSERT ON signoffs
WHEN NEW.side NOT IN ('requester', 'implementer')
BEGIN
    SELECT RAISE(ABORT, 'signoffs.side: unknown value (CHECK signoffs_side_check)');
END;
CREATE TRIGGER signoffs_side_check_update BEFORE UPDATE OF side ON signoffs
WHEN NEW.side NOT IN ('requester', 'implementer')
BEGIN
    SELECT RAISE(ABORT, 'signoffs.side: unknown value (CHECK signoffs_side_check)');
END;
