-- The readiness census (the dashboard, GET /api/v1/readiness, a large group reset's plan)
-- groups the enrolled devices by their own columns in this index's order, so SQLite reads the
-- groups one after the other instead of sorting every device (its GROUP BY otherwise sorts:
-- most of the dashboard's time at 100,000 PCs). Same expressions and order as the census's
-- first eight columns (`store-sql/src/devices.rs`, `census_select`); the yes/no inputs are
-- read from the row and packed per group. These columns rarely change, so check-ins do not
-- rewrite the index.
CREATE INDEX devices_census ON devices (
    join_type, join_evidence, enrollment_type, domain_name, aad_device_id IS NOT NULL,
    os_version, os_platform, winre_enabled
) WHERE unenrolled_at IS NULL;
