-- Device search (`q=`) is a case-insensitive substring of name, serial or primary user
-- (`LOWER(COALESCE(col, '')) LIKE '%…%'`), which no B-tree serves. Trigram GIN indexes on the
-- same expressions (the pg_trgm extension, shipped with PostgreSQL's contrib modules and
-- trusted, so a database owner may create it) let the planner find the rows holding every
-- three-character piece of the search. Where the extension cannot be created the migration
-- still succeeds and search scans, as before.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm not available, device search will scan: %', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX devices_search_name ON devices
            USING gin (LOWER(COALESCE(name, '')) gin_trgm_ops);
        CREATE INDEX devices_search_serial ON devices
            USING gin (LOWER(COALESCE(serial, '')) gin_trgm_ops);
        CREATE INDEX devices_search_primary_user ON devices
            USING gin (LOWER(COALESCE(primary_user, '')) gin_trgm_ops);
    END IF;
END
$$;
