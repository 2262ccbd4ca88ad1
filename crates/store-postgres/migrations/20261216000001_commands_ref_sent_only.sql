-- Answers are matched to sent commands by (device, session, message, command): only a sent
-- command has a session. Queued commands (many at once when a large group is reset) stay out of
-- the index; a lookup by `session_id = ?` implies `session_id IS NOT NULL`, so it still uses it.
DROP INDEX commands_ref;
CREATE INDEX commands_ref ON commands (device_id, session_id, msg_id, cmd_id)
    WHERE session_id IS NOT NULL;

-- actions_batch_seq (batch_id, seq) serves every lookup by batch: one index less to write per
-- new action.
DROP INDEX actions_batch;
