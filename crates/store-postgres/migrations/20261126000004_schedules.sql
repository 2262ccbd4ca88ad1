-- Scheduled bulk requests (core::schedule): recurrence as its text form, window bounds as
-- seconds since local midnight, zone as its IANA name.

CREATE TABLE schedules (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    group_id     TEXT NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    tz           TEXT NOT NULL,
    recurrence   TEXT NOT NULL,
    window_start BIGINT,
    window_end   BIGINT,
    enabled      BOOLEAN NOT NULL,
    next_run     BIGINT,
    last_run     BIGINT
);
CREATE INDEX schedules_due ON schedules (enabled, next_run);
