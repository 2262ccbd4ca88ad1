-- Issue #15 item 2: named local accounts of the web console, their passwords only as Argon2id
-- PHC strings; and console sessions held by an API token, an account or an OpenID Connect user
-- (whose role was mapped at sign-in and is kept with the session). SQLite cannot drop a NOT
-- NULL: the sessions table is rebuilt, its sessions copied over (nobody is signed out).
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);
CREATE TABLE console_sessions_new (
    id_hash        TEXT PRIMARY KEY NOT NULL,
    token_id       TEXT REFERENCES api_tokens (id),
    account_id     TEXT REFERENCES accounts (id),
    openid_subject TEXT,
    openid_name    TEXT,
    openid_role    TEXT,
    csrf_secret    TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    CHECK ((token_id IS NOT NULL) + (account_id IS NOT NULL) + (openid_subject IS NOT NULL) = 1)
);
INSERT INTO console_sessions_new (id_hash, token_id, csrf_secret, created_at, expires_at)
SELECT id_hash, token_id, csrf_secret, created_at, expires_at FROM console_sessions;
DROP TABLE console_sessions;
ALTER TABLE console_sessions_new RENAME TO console_sessions;
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
