-- Webhook subscriptions and the outbox of their deliveries (core::webhook). The secret is kept
-- as given: it is the HMAC key every delivery is signed with. Events are a comma-separated list.
-- A delivery is unique per (webhook, action, event) so that two server processes enqueueing the
-- same event store it once; pings have no action (NULLs never collide).

CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    events     TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    action_id       TEXT REFERENCES actions (id),
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    delivered_at    INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (webhook_id, action_id, event);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at);
