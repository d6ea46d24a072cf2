-- Token service schema (SQLite). Times are seconds since the Unix epoch.

CREATE TABLE users (
    sub           TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    claims        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    document  TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    state          TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    activated_at   INTEGER,
    retired_at     INTEGER
);

CREATE TABLE grants (
    grant_id   TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    sid        TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX grants_by_expiry ON grants (expires_at);
CREATE INDEX grants_by_sub ON grants (sub);

CREATE TABLE auth_codes (
    code_hash      BLOB PRIMARY KEY,
    grant_id       TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    dpop_jkt       TEXT,
    expires_at     INTEGER NOT NULL,
    consumed_at    INTEGER
);
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash    BLOB PRIMARY KEY,
    grant_id      TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    scope         TEXT NOT NULL,
    dpop_jkt      TEXT,
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    superseded_at INTEGER
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

CREATE TABLE access_tokens (
    jti        TEXT PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

CREATE TABLE used_jtis (
    namespace  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, jti)
);

CREATE TABLE idp_sessions (
    sid        TEXT PRIMARY KEY,
    sub        TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX idp_sessions_by_sub ON idp_sessions (sub);
CREATE INDEX idp_sessions_by_expiry ON idp_sessions (expires_at);
