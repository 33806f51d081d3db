ALTER TABLE changes DROP COLUMN selects_everything;
DROP INDEX budget_uses_window;
DROP TABLE budget_uses;
DROP TABLE budget_groups;
