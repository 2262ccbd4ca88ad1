-- The support trail gets two rows per check-in: each row was an entry in two indexes and a
-- foreign-key check that also locked its device's row (`FOR KEY SHARE`, a write to that
-- row's page) — a third of PostgreSQL's work for the trail under check-in load
-- (docs/benchmarks.md, session 17). Its rows are read and trimmed per device, newest first,
-- so one index on (device_id, seq) serves both; device rows are never deleted (the
-- `devices_kept` trigger), so the key could only refuse a message of a device that never
-- existed, and trail messages come from check-ins of enrolled devices.
ALTER TABLE device_messages DROP CONSTRAINT device_messages_device_id_fkey;
ALTER TABLE device_messages DROP CONSTRAINT device_messages_pkey;
DROP INDEX device_messages_device_seq;
ALTER TABLE device_messages ADD PRIMARY KEY (device_id, seq);
