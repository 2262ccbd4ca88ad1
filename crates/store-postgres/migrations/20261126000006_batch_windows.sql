-- Maintenance windows of scheduled batches (core::schedule::BatchWindow). Keyed by batch rather
-- than stored on each action: one row per firing, later waves of the batch inherit it, and the
-- actions table and its DTOs stay as they are. The session engine holds a pending action whose
-- batch has a window while the device checks in outside it. Bounds are seconds since local
-- midnight, the zone its IANA name (as in schedules).

CREATE TABLE batch_windows (
    batch_id     TEXT PRIMARY KEY NOT NULL,
    window_start BIGINT NOT NULL,
    window_end   BIGINT NOT NULL,
    tz           TEXT NOT NULL
);
