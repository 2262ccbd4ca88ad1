-- A device's open commands (queued, or sent and not answered): a check-in's first read asks
-- whether it has any (`check_in::select_view`, whose condition is this one, written the same).
-- The index holds only open commands, so the probe reads nothing for an idle PC however many
-- answered commands it has; PostgreSQL no longer hashes every command ever sent for a batch of
-- a dozen check-ins (docs/benchmarks.md, session 15).
CREATE INDEX commands_open ON commands (device_id)
    WHERE state = 'queued' OR (state = 'sent' AND status IS NULL);
