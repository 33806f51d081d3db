-- A risk tier may name a third side (`also = { team = "security", signoffs = 1 }`):
-- its members sign as `reviewer`.
ALTER TABLE signoffs DROP CONSTRAINT signoffs_side_check;
ALTER TABLE signoffs ADD CONSTRAINT signoffs_side_check CHECK (side IN ('requester', 'implementer', 'reviewer'));
