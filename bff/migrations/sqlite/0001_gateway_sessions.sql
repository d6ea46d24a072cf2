-- The gateway's server-side sessions (bff/src/session/sqlite.rs).
--
-- `id_hash` is SHA-256 of the session id: the database never holds the id the cookie carries. `body` is the
-- whole session (tokens, DPoP private key, claims) sealed with the gateway's cookie key ring under a purpose
-- bound to `id_hash`. `sub` and `idp_sid` are in clear, indexed, for logout by user and back-channel logout.
-- `expires_at` = min(last_seen + idle timeout, created_at + absolute lifetime), Unix seconds: the sweep and
-- every read compare it with the clock.

CREATE TABLE gateway_sessions (
    id_hash    BLOB    PRIMARY KEY NOT NULL,
    sub        TEXT    NOT NULL,
    idp_sid    TEXT,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    body       TEXT    NOT NULL
) WITHOUT ROWID;

CREATE INDEX gateway_sessions_by_sub ON gateway_sessions (sub);
CREATE INDEX gateway_sessions_by_idp_sid ON gateway_sessions (idp_sid) WHERE idp_sid IS NOT NULL;
CREATE INDEX gateway_sessions_by_expiry ON gateway_sessions (expires_at);
