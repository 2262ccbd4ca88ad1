-- Issue #16: the dashboard's chart (resets per UTC day and state over 30 days) read each action
-- of the window from the table for its kind and state (61 ms with 100,000 resets pending). With
-- both in the index it covers them (33 ms).
DROP INDEX actions_created;
CREATE INDEX actions_created ON actions (created_at, kind, state);
