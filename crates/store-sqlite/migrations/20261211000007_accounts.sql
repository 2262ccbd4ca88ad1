-- Issue #15 item 2: named local accounts of the web console, their passwords only as Argon2id
-- PHC strings; and console sessions held by an API token, an account or an OpenID Connect user
-- (whose role was mapped at sign-in and is kept with the session). Console sessions live 12
-- hours: their table is made anew rather than rebuilt (SQLite cannot drop a NOT NULL), so every
-- admin signs in once more after the upgrade.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);
DROP TABLE console_sessions;
CREATE TABLE console_sessions (
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
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
