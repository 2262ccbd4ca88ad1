-- Issue #15 item 2: named local accounts of the web console, their passwords only as Argon2id
-- PHC strings; and console sessions held by an API token, an account or an OpenID Connect user
-- (whose role was mapped at sign-in and is kept with the session). Console sessions live 12
-- hours: their table is made anew (as on SQLite), so every admin signs in once more after the
-- upgrade.
CREATE TABLE accounts (
    id            uuid PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    timestamptz NOT NULL,
    disabled_at   timestamptz
);
DROP TABLE console_sessions;
CREATE TABLE console_sessions (
    id_hash        TEXT PRIMARY KEY,
    token_id       uuid REFERENCES api_tokens (id),
    account_id     uuid REFERENCES accounts (id),
    openid_subject TEXT,
    openid_name    TEXT,
    openid_role    TEXT,
    csrf_secret    TEXT NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    CHECK (num_nonnulls(token_id, account_id, openid_subject) = 1)
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
