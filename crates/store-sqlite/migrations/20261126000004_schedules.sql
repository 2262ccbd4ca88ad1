-- Scheduled bulk requests (core::schedule): recurrence as its text form, window bounds as
-- seconds since local midnight, zone as its IANA name.

CREATE TABLE schedules (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL UNIQUE,
    group_id     TEXT NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    tz           TEXT NOT NULL,
    recurrence   TEXT NOT NULL,
    window_start INTEGER,
    window_end   INTEGER,
    enabled      BOOLEAN NOT NULL,
    next_run     INTEGER,
    last_run     INTEGER
);
CREATE INDEX schedules_due ON schedules (enabled, next_run);
