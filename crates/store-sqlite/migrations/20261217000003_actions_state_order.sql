-- Actions in a state are read oldest update first, ties by creation order (`seq`): the expiry
-- sweep and the action list by state. With `seq` in the index the order is the index's, and a
-- limited read stops after its rows; without it, 100,000 actions queued by one group reset
-- (one instant) were all read and sorted to take the first thousand.
DROP INDEX actions_state;
CREATE INDEX actions_state ON actions (state, updated_at, seq);
