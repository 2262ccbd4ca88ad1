-- Later waves of bulk requests (core::store::Wave); devices are comma-separated ids.

CREATE TABLE batch_waves (
    batch_id    TEXT NOT NULL,
    wave_index  INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    devices     TEXT NOT NULL,
    due_at      INTEGER NOT NULL,
    released_at INTEGER,
    PRIMARY KEY (batch_id, wave_index)
);
CREATE INDEX batch_waves_due ON batch_waves (released_at, due_at);
CREATE INDEX actions_created ON actions (created_at);
