-- Pushed authorization requests (RFC 9126) and the access-token deny list (RFC 7009).

CREATE TABLE pushed_requests (
    request_uri_hash BLOB PRIMARY KEY NOT NULL,
    client_id        TEXT NOT NULL,
    request          TEXT NOT NULL CHECK (json_valid(request)),
    expires_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX pushed_requests_by_expiry ON pushed_requests (expires_at);

CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX revoked_access_tokens_by_expiry ON revoked_access_tokens (expires_at);
