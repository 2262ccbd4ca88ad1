-- Issue #16 item 5: waking PCs with WNS push (core::push). A device's channel as last reported
-- (Push/ChannelURI and Push/Status of DMClient, ITPRO dmclient-csp.md) and its judged state; one
-- row per push attempt of a pending action, whose primary key is the claim that lets exactly one
-- server process send it; and what woke each action's PC (push or poll), recorded once.
CREATE TABLE push_channels (
    device_id     TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    uri           TEXT,
    device_status INTEGER,
    state         TEXT NOT NULL,
    seen_at       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE push_attempts (
    action_id   TEXT NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    device_id   TEXT NOT NULL,
    claimed_at  INTEGER NOT NULL,
    outcome     TEXT,
    finished_at INTEGER,
    PRIMARY KEY (action_id, attempt)
);
CREATE TABLE action_wakes (
    action_id TEXT PRIMARY KEY NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
    woken_by  TEXT NOT NULL,
    at        INTEGER NOT NULL
);
