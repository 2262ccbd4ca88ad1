-- Issue #15 item 2: named local accounts of the web console, their passwords only as Argon2id
-- PHC strings; and console sessions held by an API token, an account or an OpenID Connect user
-- (whose role was mapped at sign-in and is kept with the session). Existing sessions stay.
CREATE TABLE accounts (
    id            uuid PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    timestamptz NOT NULL,
    disabled_at   timestamptz
);
ALTER TABLE console_sessions
    ALTER COLUMN token_id DROP NOT NULL,
    ADD COLUMN account_id uuid REFERENCES accounts (id),
    ADD COLUMN openid_subject TEXT,
    ADD COLUMN openid_name TEXT,
    ADD COLUMN openid_role TEXT,
    ADD CONSTRAINT console_sessions_one_holder
        CHECK (num_nonnulls(token_id, account_id, openid_subject) = 1);
