-- Answers are matched to sent commands by (device, session, message, command): only a sent
-- command has a session. Queued commands (a group reset queues 400,000 at once) stay out of
-- the index; a lookup by `session_id = ?` implies `session_id IS NOT NULL`, so it still uses it.
DROP INDEX commands_ref;
CREATE INDEX commands_ref ON commands (device_id, session_id, msg_id, cmd_id)
    WHERE session_id IS NOT NULL;
