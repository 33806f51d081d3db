-- A risk tier may name a third side (`also = { team = "security", signoffs = 1 }`):
-- its members sign as `reviewer`. The side check (000009, triggers) takes the new value.
DROP TRIGGER signoffs_side_check_insert;
DROP TRIGGER signoffs_side_check_update;
CREATE TRIGGER signoffs_side_check_insert BEFORE INSERT ON signoffs
WHEN NEW.side NOT IN ('requester', 'implementer', 'reviewer')
BEGIN
    SELECT RAISE(ABORT, 'signoffs.side: unknown value (CHECK signoffs_side_check)');
END;
CREATE TRIGGER signoffs_side_check_update BEFORE UPDATE OF side ON signoffs
WHEN NEW.side NOT IN ('requester', 'implementer', 'reviewer')
BEGIN
    SELECT RAISE(ABORT, 'signoffs.side: unknown value (CHECK signoffs_side_check)');
END;
