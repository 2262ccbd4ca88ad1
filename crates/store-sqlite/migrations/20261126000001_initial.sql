-- Initial schema. Instants are INTEGER microseconds since the Unix epoch (core::store::to_micros);
-- ids are hyphenated lowercase UUID text.

CREATE TABLE devices (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    hw_dev_id            TEXT UNIQUE,
    mdm_device_id        TEXT,
    serial               TEXT,
    manufacturer         TEXT,
    model                TEXT,
    os_version           TEXT,
    os_platform          TEXT,
    join_type            TEXT NOT NULL,
    enrollment_type      TEXT,
    aad_device_id        TEXT,
    domain_name          TEXT,
    dns_computer_name    TEXT,
    total_ram_mb         INTEGER,
    total_storage_mb     INTEGER,
    last_seen            INTEGER,
    current_user_name    TEXT,
    primary_user         TEXT,
    shared               INTEGER NOT NULL,
    cert_thumbprint      TEXT,
    cert_not_after       INTEGER,
    local_reset_desired  INTEGER,
    local_reset_reported INTEGER,
    autopilot_status     INTEGER,
    autopilot_last_error INTEGER,
    enrolled_at          INTEGER NOT NULL,
    unenrolled_at        INTEGER
);
CREATE INDEX devices_cert_thumbprint ON devices (cert_thumbprint);
CREATE INDEX devices_mdm_device_id ON devices (mdm_device_id);
CREATE INDEX devices_name ON devices (name, id);

CREATE TABLE enrollments (
    id              TEXT PRIMARY KEY NOT NULL,
    device_id       TEXT NOT NULL REFERENCES devices (id),
    enrollment_type TEXT NOT NULL,
    upn             TEXT,
    auth_method     TEXT NOT NULL,
    context         TEXT NOT NULL,
    raw_request     BLOB NOT NULL,
    cert_thumbprint TEXT NOT NULL,
    cert_serial     TEXT NOT NULL,
    cert_not_after  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    replaced_by     TEXT
);
CREATE INDEX enrollments_device ON enrollments (device_id, created_at);

CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    label       TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    expires_at  INTEGER,
    max_uses    INTEGER,
    uses        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE actions (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    reason       TEXT,
    last_error   INTEGER,
    batch_id     TEXT,
    requested_by TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    timeline     TEXT NOT NULL
);
CREATE INDEX actions_device ON actions (device_id, created_at);
CREATE INDEX actions_batch ON actions (batch_id);
CREATE INDEX actions_state ON actions (state, updated_at);

CREATE TABLE commands (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    action_id   TEXT REFERENCES actions (id),
    verb        TEXT NOT NULL,
    uri         TEXT NOT NULL,
    format      TEXT,
    data        TEXT,
    state       TEXT NOT NULL,
    session_id  TEXT,
    msg_id      TEXT,
    cmd_id      TEXT,
    status      INTEGER,
    result      TEXT,
    created_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    answered_at INTEGER,
    attempts    INTEGER NOT NULL
);
CREATE INDEX commands_queue ON commands (device_id, state, seq);
CREATE INDEX commands_ref ON commands (device_id, session_id, msg_id, cmd_id);
CREATE INDEX commands_action ON commands (action_id);

CREATE TABLE inventory (
    device_id TEXT NOT NULL REFERENCES devices (id),
    uri       TEXT NOT NULL,
    value     TEXT NOT NULL,
    format    TEXT,
    at        INTEGER NOT NULL,
    PRIMARY KEY (device_id, uri)
);

CREATE TABLE audit_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    targets  TEXT NOT NULL,
    batch_id TEXT,
    outcome  TEXT NOT NULL,
    details  TEXT NOT NULL
);
CREATE TABLE audit_targets (
    audit_seq INTEGER NOT NULL REFERENCES audit_events (seq),
    device_id TEXT NOT NULL,
    PRIMARY KEY (device_id, audit_seq)
);

-- The audit log is append-only, also for anyone with a SQL prompt.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
