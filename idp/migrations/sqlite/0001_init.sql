-- Token service schema (SQLite), owned by `idp/src/store/sqlite.rs`.
--
-- Times are seconds since the Unix epoch, always supplied by the caller. Secrets are never stored: codes and
-- refresh tokens are keyed by the SHA-256 of their value, signing keys are sealed with the master key.
-- Tables are STRICT so a value of the wrong type is refused on write instead of surprising a reader.

CREATE TABLE users (
    sub           TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    claims        TEXT NOT NULL CHECK (json_valid(claims)),
    created_at    INTEGER NOT NULL
) STRICT;

-- A client is one JSON document (`ClientRecord` via serde); the id is repeated as the key.
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    document  TEXT NOT NULL CHECK (json_valid(document))
) STRICT;

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY NOT NULL,
    alg            TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    private_sealed BLOB NOT NULL,
    public_jwk     TEXT NOT NULL CHECK (json_valid(public_jwk)),
    created_at     INTEGER NOT NULL,
    activated_at   INTEGER,
    retired_at     INTEGER
) STRICT;
CREATE INDEX signing_keys_by_created ON signing_keys (created_at);

-- One authorization; every code, refresh token and recorded access token below belongs to one grant and goes
-- with it when the grant is purged.
CREATE TABLE grants (
    grant_id   TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    sid        TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX grants_by_sub ON grants (sub);
CREATE INDEX grants_by_expiry ON grants (expires_at);

-- `consumed_at` is set once, by the single conditional UPDATE that spends the code.
CREATE TABLE auth_codes (
    code_hash      BLOB PRIMARY KEY NOT NULL,
    grant_id       TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    dpop_jkt       TEXT,
    expires_at     INTEGER NOT NULL,
    consumed_at    INTEGER
) STRICT;
CREATE INDEX auth_codes_by_grant ON auth_codes (grant_id);
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at);

-- `superseded_at` is set when the token is rotated; a later presentation is a retry (within the grace window)
-- or reuse (after it).
CREATE TABLE refresh_tokens (
    token_hash    BLOB PRIMARY KEY NOT NULL,
    grant_id      TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    client_id     TEXT NOT NULL,
    scope         TEXT NOT NULL,
    dpop_jkt      TEXT,
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    superseded_at INTEGER
) STRICT;
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

-- Access tokens issued under a grant, so revoking the grant revokes them. A grant is kept while any of its
-- access tokens is still live, so a revoked grant's tokens stay revoked until they expire.
CREATE TABLE access_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX access_tokens_by_grant ON access_tokens (grant_id);
CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

-- Spent single-use identifiers (client assertion `jti`s), per namespace, until they expire.
CREATE TABLE used_jtis (
    namespace  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, jti)
) STRICT;
CREATE INDEX used_jtis_by_expiry ON used_jtis (expires_at);

CREATE TABLE idp_sessions (
    sid        TEXT PRIMARY KEY NOT NULL,
    sub        TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX idp_sessions_by_sub ON idp_sessions (sub);
CREATE INDEX idp_sessions_by_expiry ON idp_sessions (expires_at);
