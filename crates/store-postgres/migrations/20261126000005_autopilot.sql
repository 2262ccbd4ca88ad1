-- The Autopilot device registry (core::autopilot), keyed by the upper-case serial.

CREATE TABLE autopilot_devices (
    serial_key    TEXT PRIMARY KEY,
    serial        TEXT NOT NULL,
    product_id    TEXT,
    hardware_hash TEXT NOT NULL,
    group_tag     TEXT,
    assigned_user TEXT
);
CREATE INDEX devices_serial ON devices (serial);
