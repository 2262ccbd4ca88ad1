-- PostgreSQL checks a foreign key row by row (a trigger call per row): 0.5–1 s of a
-- 100,000-PC group reset's `INSERT … SELECT`, whose rows are read from `devices` by that very
-- statement (docs/benchmarks.md, session 16). Device rows are never deleted (unenrolling keeps
-- the row; the trigger below refuses a DELETE), so the key could only refuse an action naming
-- a device that never existed, and the one statement that inserts a single action by id
-- (`insert_action_in`) now tests its device itself (NotFound).
ALTER TABLE actions DROP CONSTRAINT actions_device_id_fkey;

CREATE FUNCTION devices_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'device rows are never deleted (unenroll instead)';
END $$;

CREATE TRIGGER devices_kept BEFORE DELETE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION devices_never_deleted();

-- The request event of a group reset names every member in `targets` (3.7 MB at 100,000 PCs):
-- lz4 compresses it in a third of pglz's time (0.13 → 0.05 s). Where this PostgreSQL was built
-- without lz4, the column keeps the default.
DO $$
BEGIN
    ALTER TABLE audit_events ALTER COLUMN targets SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END $$;
