ALTER TABLE signoffs DROP CONSTRAINT signoffs_side_check;
ALTER TABLE signoffs ADD CONSTRAINT signoffs_side_check CHECK (side IN ('requester', 'implementer'));
