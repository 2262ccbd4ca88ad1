-- Web console sessions (core::console_session): the hash of the cookie's session id, the API
-- token it was opened with, the CSRF secret of its forms, and its lifetime.

CREATE TABLE console_sessions (
    id_hash     TEXT PRIMARY KEY NOT NULL,
    token_id    TEXT NOT NULL REFERENCES api_tokens (id),
    csrf_secret TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
