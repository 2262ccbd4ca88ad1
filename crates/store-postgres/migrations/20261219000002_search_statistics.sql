-- A substring search's row estimate comes from the statistics of the searched expression (the
-- trigram indexes' column): with the default 100-entry histogram every `%…%` pattern that the
-- names' common prefix matches was taken for 1 % of the fleet (1,010 rows of 100,000 where 100
-- matched), so the planner walked the name index for the page's first rows, 80,000 rows deep
-- for a name late in the order (75–100 ms; docs/benchmarks.md, session 16). A 1,000-entry
-- histogram estimates such searches to within their real size, and they go through the trigram
-- indexes (1 ms). Where pg_trgm was unavailable the indexes do not exist and nothing changes.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'devices_search_name') THEN
        ALTER INDEX devices_search_name ALTER COLUMN 1 SET STATISTICS 1000;
        ALTER INDEX devices_search_serial ALTER COLUMN 1 SET STATISTICS 1000;
        ALTER INDEX devices_search_primary_user ALTER COLUMN 1 SET STATISTICS 1000;
    END IF;
END
$$;

ANALYZE devices;
