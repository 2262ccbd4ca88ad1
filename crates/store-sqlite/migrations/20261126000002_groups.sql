-- Device groups: static member lists or a DeviceFilter (core::group, stored as its JSON text).

CREATE TABLE device_groups (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    filter     TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices (id),
    PRIMARY KEY (group_id, device_id)
);
