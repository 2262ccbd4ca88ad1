-- Initial schema. Instants are BIGINT microseconds since the Unix epoch (core::store::to_micros),
-- ids are hyphenated lowercase UUID text: the same shapes as the SQLite backend, so both run the
-- same query text (src/imp.rs).

CREATE TABLE devices (
    id                   TEXT PRIMARY KEY,
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
    total_ram_mb         BIGINT,
    total_storage_mb     BIGINT,
    last_seen            BIGINT,
    current_user_name    TEXT,
    primary_user         TEXT,
    shared               BOOLEAN NOT NULL,
    cert_thumbprint      TEXT,
    cert_not_after       BIGINT,
    local_reset_desired  BOOLEAN,
    local_reset_reported BOOLEAN,
    autopilot_status     BIGINT,
    autopilot_last_error BIGINT,
    enrolled_at          BIGINT NOT NULL,
    unenrolled_at        BIGINT
);
CREATE INDEX devices_cert_thumbprint ON devices (cert_thumbprint);
CREATE INDEX devices_mdm_device_id ON devices (mdm_device_id);
CREATE INDEX devices_name ON devices (name, id);

CREATE TABLE enrollments (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL REFERENCES devices (id),
    enrollment_type TEXT NOT NULL,
    upn             TEXT,
    auth_method     TEXT NOT NULL,
    context         TEXT NOT NULL,
    raw_request     BYTEA NOT NULL,
    cert_thumbprint TEXT NOT NULL,
    cert_serial     TEXT NOT NULL,
    cert_not_after  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    replaced_by     TEXT
);
CREATE INDEX enrollments_device ON enrollments (device_id, created_at);

CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY,
    label       TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    expires_at  BIGINT,
    max_uses    BIGINT,
    uses        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE actions (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    reason       TEXT,
    last_error   BIGINT,
    batch_id     TEXT,
    requested_by TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    timeline     TEXT NOT NULL
);
CREATE INDEX actions_device ON actions (device_id, created_at);
CREATE INDEX actions_batch ON actions (batch_id);
CREATE INDEX actions_state ON actions (state, updated_at);

CREATE TABLE commands (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    status      BIGINT,
    result      TEXT,
    created_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    answered_at BIGINT,
    attempts    BIGINT NOT NULL
);
CREATE INDEX commands_queue ON commands (device_id, state, seq);
CREATE INDEX commands_ref ON commands (device_id, session_id, msg_id, cmd_id);
CREATE INDEX commands_action ON commands (action_id);

CREATE TABLE inventory (
    device_id TEXT NOT NULL REFERENCES devices (id),
    uri       TEXT NOT NULL,
    value     TEXT NOT NULL,
    format    TEXT,
    at        BIGINT NOT NULL,
    PRIMARY KEY (device_id, uri)
);

CREATE TABLE audit_events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    targets  TEXT NOT NULL,
    batch_id TEXT,
    outcome  TEXT NOT NULL,
    details  TEXT NOT NULL
);
CREATE TABLE audit_targets (
    audit_seq BIGINT NOT NULL REFERENCES audit_events (seq),
    device_id TEXT NOT NULL,
    PRIMARY KEY (device_id, audit_seq)
);

-- The audit log is append-only, also for anyone with a SQL prompt.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
