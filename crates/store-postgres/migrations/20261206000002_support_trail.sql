-- The support trail (core::trail): the last raw messages each device exchanged with the server,
-- redacted, newest kept (the store trims each device's trail to its bound after every append).

CREATE TABLE device_messages (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at         TIMESTAMPTZ NOT NULL,
    direction  TEXT NOT NULL,
    session_id TEXT NOT NULL,
    msg_id     TEXT NOT NULL,
    body       TEXT NOT NULL,
    size       BIGINT NOT NULL
);
CREATE INDEX device_messages_device_seq ON device_messages (device_id, seq);
