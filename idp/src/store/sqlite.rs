//! The embedded SQLite back-end of every token-service store (the default): `sqlite://PATH` or
//! `sqlite::memory:`. Schema in `idp/migrations/sqlite`, applied when the store opens.
//!
//! A file database runs in WAL mode with `synchronous=NORMAL`, `foreign_keys=ON` and a 5 s busy timeout, so the
//! CLI and a running server share it safely. Single-use things stay atomic with many connections (and many
//! processes): a code is spent by one conditional `UPDATE … RETURNING`, a `jti` by one conditional upsert, and a
//! refresh token is rotated inside a `BEGIN IMMEDIATE` transaction, which takes the write lock before reading.
//! A row that fails to decode is a `StoreError`, never a panic.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_proto::vocab::SigningAlg;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{
    ClientRecord, ClientStore, CodeOutcome, CodeRecord, Epoch, GrantRecord, GrantStore, IdpSessionRecord, KeyState,
    KeyStore, RefreshRecord, ReplayOutcome, RotateOutcome, SessionStore, SigningKeyRecord, StoreError, StoreResult,
    UserRecord, UserStore,
};

/// How long a connection waits for another writer (this process or another) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections to a file database; SQLite serialises writers, WAL lets readers run beside them.
const FILE_CONNECTIONS: u32 = 8;

/// Every store trait on one SQLite database.
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `sqlite://PATH` (creating the file and its parent directory when missing) or `sqlite::memory:`, then
    /// applies the migrations.
    ///
    /// An in-memory database lives as long as its connection, so it gets exactly one connection that is never
    /// closed for idleness or age; callers queue for it, which also makes it trivially serial.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let memory = is_memory(url);
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(failed("parse store URL"))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = if memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(failed("open in-memory database"))?
        } else {
            create_parent_directory(options.get_filename())?;
            options = options.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal);
            SqlitePoolOptions::new()
                .max_connections(FILE_CONNECTIONS)
                .connect_with(options)
                .await
                .map_err(failed("open database file"))?
        };
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(failed("migrate"))?;
        Ok(Self { pool })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Users

#[async_trait]
impl UserStore for SqliteStore {
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE username = ?"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("read user"))?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_by_sub(&self, sub: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE sub = ?"))
            .bind(sub)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("read user"))?;
        row.as_ref().map(user_from).transpose()
    }

    async fn upsert_user(&self, user: UserRecord) -> StoreResult<UserRecord> {
        let claims = serde_json::to_string(&user.claims).map_err(failed("encode user claims"))?;
        // The username decides: an existing account keeps its `sub` and `created_at`.
        let row = sqlx::query(concat!(
            "INSERT INTO users (sub, username, password_hash, claims, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, claims = excluded.claims
             RETURNING ",
            user_columns!()
        ))
        .bind(&user.sub)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(claims)
        .bind(user.created_at)
        .fetch_one(&self.pool)
        .await
        .map_err(failed("upsert user"))?;
        user_from(&row)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await
            .map_err(failed("list users"))?;
        rows.iter().map(user_from).collect()
    }

    async fn remove_user(&self, username: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE username = ?")
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(failed("remove user"))?;
        Ok(done.rows_affected() > 0)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Clients

#[async_trait]
impl ClientStore for SqliteStore {
    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let row = sqlx::query("SELECT document FROM clients WHERE client_id = ?")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("read client"))?;
        row.as_ref().map(client_from).transpose()
    }

    async fn upsert_client(&self, client: ClientRecord) -> StoreResult<()> {
        let document = serde_json::to_string(&client).map_err(failed("encode client"))?;
        sqlx::query(
            "INSERT INTO clients (client_id, document) VALUES (?, ?)
             ON CONFLICT (client_id) DO UPDATE SET document = excluded.document",
        )
        .bind(&client.client_id)
        .bind(document)
        .execute(&self.pool)
        .await
        .map_err(failed("upsert client"))?;
        Ok(())
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        let rows = sqlx::query("SELECT document FROM clients ORDER BY client_id")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("list clients"))?;
        rows.iter().map(client_from).collect()
    }

    async fn remove_client(&self, client_id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM clients WHERE client_id = ?")
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(failed("remove client"))?;
        Ok(done.rows_affected() > 0)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Signing keys

#[async_trait]
impl KeyStore for SqliteStore {
    async fn list_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(concat!("SELECT ", key_columns!(), " FROM signing_keys ORDER BY created_at, kid"))
            .fetch_all(&self.pool)
            .await
            .map_err(failed("list signing keys"))?;
        rows.iter().map(key_from).collect()
    }

    async fn insert_key(&self, key: SigningKeyRecord) -> StoreResult<()> {
        let public_jwk = serde_json::to_string(&key.public_jwk).map_err(failed("encode public JWK"))?;
        sqlx::query(concat!("INSERT INTO signing_keys (", key_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&key.kid)
            .bind(key.alg.as_str())
            .bind(key.state.as_str())
            .bind(&key.private_sealed)
            .bind(public_jwk)
            .bind(key.created_at)
            .bind(key.activated_at)
            .bind(key.retired_at)
            .execute(&self.pool)
            .await
            .map_err(failed("insert signing key"))?;
        Ok(())
    }

    async fn set_key_state(&self, kid: &str, state: KeyState, at: Epoch) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE signing_keys SET state = ?1,
                 activated_at = CASE WHEN ?1 = 'active' THEN ?2 ELSE activated_at END,
                 retired_at = CASE WHEN ?1 = 'retired' THEN ?2 ELSE retired_at END
             WHERE kid = ?3",
        )
        .bind(state.as_str())
        .bind(at)
        .bind(kid)
        .execute(&self.pool)
        .await
        .map_err(failed("set signing key state"))?;
        // A lost state change of a signing key must not pass silently.
        if done.rows_affected() == 0 {
            return Err(StoreError(format!("sqlite set signing key state: no key with kid {kid:?}")));
        }
        Ok(())
    }

    async fn remove_key(&self, kid: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = ?")
            .bind(kid)
            .execute(&self.pool)
            .await
            .map_err(failed("remove signing key"))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Grants, codes, refresh tokens, issued access tokens, spent jtis

#[async_trait]
impl GrantStore for SqliteStore {
    async fn insert_code(&self, grant: GrantRecord, code: CodeRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed("begin insert code"))?;
        sqlx::query(concat!("INSERT INTO grants (", grant_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&grant.grant_id)
            .bind(&grant.client_id)
            .bind(&grant.sub)
            .bind(&grant.scope)
            .bind(grant.auth_time)
            .bind(&grant.sid)
            .bind(grant.created_at)
            .bind(grant.expires_at)
            .bind(grant.revoked_at)
            .execute(&mut *tx)
            .await
            .map_err(failed("insert grant"))?;
        sqlx::query(concat!("INSERT INTO auth_codes (", code_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&code.code_hash)
            .bind(&code.grant_id)
            .bind(&code.client_id)
            .bind(&code.redirect_uri)
            .bind(&code.code_challenge)
            .bind(&code.nonce)
            .bind(&code.dpop_jkt)
            .bind(code.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(failed("insert code"))?;
        tx.commit().await.map_err(failed("commit insert code"))
    }

    async fn consume_code(&self, code_hash: &[u8], now: Epoch) -> StoreResult<CodeOutcome> {
        let mut connection = self.pool.acquire().await.map_err(failed("acquire connection"))?;
        // One conditional UPDATE: exactly one caller ever sees the row come back, even across processes. An
        // expired code is spent too, so it can never be redeemed later.
        let spent = sqlx::query(concat!(
            "UPDATE auth_codes SET consumed_at = ? WHERE code_hash = ? AND consumed_at IS NULL RETURNING ",
            code_columns!()
        ))
        .bind(now)
        .bind(code_hash)
        .fetch_optional(&mut *connection)
        .await
        .map_err(failed("consume code"))?;
        if let Some(row) = spent {
            let code = code_from(&row)?;
            if code.expires_at <= now {
                return Ok(CodeOutcome::Missing);
            }
            return Ok(match grant_in(&mut connection, &code.grant_id).await? {
                Some(grant) => CodeOutcome::Consumed(code, grant),
                None => CodeOutcome::Missing,
            });
        }
        // Spent before (whether or not it has expired since): the caller revokes what it issued.
        let row = sqlx::query(concat!("SELECT ", code_columns!(), " FROM auth_codes WHERE code_hash = ?"))
            .bind(code_hash)
            .fetch_optional(&mut *connection)
            .await
            .map_err(failed("read code"))?;
        Ok(match row {
            Some(row) => CodeOutcome::AlreadyUsed(code_from(&row)?),
            None => CodeOutcome::Missing,
        })
    }

    async fn grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let mut connection = self.pool.acquire().await.map_err(failed("acquire connection"))?;
        grant_in(&mut connection, grant_id).await
    }

    async fn revoke_grant(&self, grant_id: &str, now: Epoch) -> StoreResult<()> {
        // Idempotent: the first revocation time stays.
        sqlx::query("UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(grant_id)
            .execute(&self.pool)
            .await
            .map_err(failed("revoke grant"))?;
        Ok(())
    }

    async fn grants_of_session(&self, sid: &str) -> StoreResult<Vec<GrantRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM grants WHERE sid = ? ORDER BY created_at, grant_id"
        ))
        .bind(sid)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list grants of session"))?;
        rows.iter().map(grant_from).collect()
    }

    async fn revoke_session_grants(&self, sid: &str, now: Epoch) -> StoreResult<u64> {
        // Idempotent like `revoke_grant`: grants revoked earlier keep their first revocation time.
        let done = sqlx::query("UPDATE grants SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(sid)
            .execute(&self.pool)
            .await
            .map_err(failed("revoke grants of session"))?;
        Ok(done.rows_affected())
    }

    async fn insert_refresh(&self, token: RefreshRecord) -> StoreResult<()> {
        let mut connection = self.pool.acquire().await.map_err(failed("acquire connection"))?;
        insert_refresh_in(&mut connection, &token, token.superseded_at).await
    }

    async fn refresh(&self, token_hash: &[u8]) -> StoreResult<Option<(RefreshRecord, GrantRecord)>> {
        let mut connection = self.pool.acquire().await.map_err(failed("acquire connection"))?;
        let Some(token) = refresh_in(&mut connection, token_hash).await? else { return Ok(None) };
        Ok(grant_in(&mut connection, &token.grant_id).await?.map(|grant| (token, grant)))
    }

    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new: RefreshRecord,
        now: Epoch,
        grace: i64,
    ) -> StoreResult<RotateOutcome> {
        // BEGIN IMMEDIATE takes the write lock before the read, so rotations of one token (from any connection or
        // process) run one after the other and each sees the previous one's `superseded_at`.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed("begin rotation"))?;
        let outcome = rotate_in(&mut tx, old_hash, &new, now, grace).await?;
        tx.commit().await.map_err(failed("commit rotation"))?;
        Ok(outcome)
    }

    async fn record_access_token(&self, jti: &str, grant_id: &str, expires_at: Epoch) -> StoreResult<()> {
        sqlx::query("INSERT INTO access_tokens (jti, grant_id, expires_at) VALUES (?, ?, ?)")
            .bind(jti)
            .bind(grant_id)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(failed("record access token"))?;
        Ok(())
    }

    async fn access_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        let revoked = sqlx::query_scalar::<_, bool>(
            "SELECT g.revoked_at IS NOT NULL FROM access_tokens a JOIN grants g ON g.grant_id = a.grant_id
             WHERE a.jti = ?",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("read access token"))?;
        Ok(revoked.unwrap_or(false))
    }

    async fn consume_jti(
        &self,
        namespace: &str,
        jti: &str,
        expires_at: Epoch,
        now: Epoch,
    ) -> StoreResult<ReplayOutcome> {
        // Insert, or take over an entry that has expired; exactly one caller changes a row.
        let done = sqlx::query(
            "INSERT INTO used_jtis (namespace, jti, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (namespace, jti) DO UPDATE SET expires_at = excluded.expires_at
             WHERE used_jtis.expires_at <= ?",
        )
        .bind(namespace)
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(failed("consume jti"))?;
        Ok(if done.rows_affected() == 1 { ReplayOutcome::Consumed } else { ReplayOutcome::AlreadyUsed })
    }

    async fn purge_expired(&self, now: Epoch) -> StoreResult<u64> {
        // Children first, so the count covers every row removed (a cascade would hide them). A grant past its end
        // stays while one of its access tokens lives: that is where a revoked token's revocation is recorded.
        const PURGE: [&str; 8] = [
            "DELETE FROM access_tokens WHERE expires_at <= ?1",
            "DELETE FROM auth_codes WHERE expires_at <= ?1
                OR grant_id IN (SELECT grant_id FROM grants WHERE expires_at <= ?1)",
            "DELETE FROM refresh_tokens WHERE expires_at <= ?1
                OR grant_id IN (SELECT grant_id FROM grants WHERE expires_at <= ?1)",
            "DELETE FROM grants WHERE expires_at <= ?1
                AND NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = grants.grant_id)",
            "DELETE FROM used_jtis WHERE expires_at <= ?1",
            "DELETE FROM idp_sessions WHERE expires_at <= ?1",
            "DELETE FROM pushed_requests WHERE expires_at <= ?1",
            "DELETE FROM revoked_access_tokens WHERE expires_at <= ?1",
        ];
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed("begin purge"))?;
        let mut removed = 0;
        for sql in PURGE {
            removed += sqlx::query(sql).bind(now).execute(&mut *tx).await.map_err(failed("purge"))?.rows_affected();
        }
        tx.commit().await.map_err(failed("commit purge"))?;
        Ok(removed)
    }
}

/// The body of `rotate_refresh`, inside its `BEGIN IMMEDIATE` transaction. Returning an error rolls it back.
async fn rotate_in(
    connection: &mut SqliteConnection,
    old_hash: &[u8],
    new: &RefreshRecord,
    now: Epoch,
    grace: i64,
) -> StoreResult<RotateOutcome> {
    let Some(old) = refresh_in(connection, old_hash).await? else { return Ok(RotateOutcome::Missing) };
    let Some(grant) = grant_in(connection, &old.grant_id).await? else { return Ok(RotateOutcome::Missing) };
    if old.expires_at <= now || grant.revoked_at.is_some() || grant.expires_at <= now {
        return Ok(RotateOutcome::Missing);
    }
    if new.grant_id != grant.grant_id {
        return Err(StoreError(format!(
            "sqlite rotate refresh token: successor names grant {:?}, not {:?}",
            new.grant_id, grant.grant_id
        )));
    }
    match old.superseded_at {
        None => {
            sqlx::query("UPDATE refresh_tokens SET superseded_at = ? WHERE token_hash = ?")
                .bind(now)
                .bind(old_hash)
                .execute(&mut *connection)
                .await
                .map_err(failed("supersede refresh token"))?;
        }
        // The retry window (a lost response): the original `superseded_at` stays, so the window does not slide.
        // A grace of 0 means no window at all, not "the same second".
        Some(superseded_at) if grace > 0 && now - superseded_at <= grace => {}
        // RFC 9700 §4.14.2: a superseded token presented again revokes the whole grant.
        Some(_) => {
            sqlx::query("UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(&grant.grant_id)
                .execute(&mut *connection)
                .await
                .map_err(failed("revoke grant on refresh-token reuse"))?;
            return Ok(RotateOutcome::ReuseDetected);
        }
    }
    insert_refresh_in(connection, new, None).await?;
    Ok(RotateOutcome::Rotated(grant))
}

// ---------------------------------------------------------------------------------------------------------
// IdP sessions

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, session: IdpSessionRecord) -> StoreResult<()> {
        sqlx::query(concat!("INSERT INTO idp_sessions (", session_columns!(), ") VALUES (?, ?, ?, ?, ?, ?)"))
            .bind(&session.sid)
            .bind(&session.sub)
            .bind(session.auth_time)
            .bind(session.created_at)
            .bind(session.last_seen)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(failed("insert session"))?;
        Ok(())
    }

    async fn session(&self, sid: &str, now: Epoch) -> StoreResult<Option<IdpSessionRecord>> {
        let row =
            sqlx::query(concat!("SELECT ", session_columns!(), " FROM idp_sessions WHERE sid = ? AND expires_at > ?"))
                .bind(sid)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(failed("read session"))?;
        row.as_ref().map(session_from).transpose()
    }

    async fn touch_session(&self, sid: &str, now: Epoch, expires_at: Epoch) -> StoreResult<()> {
        sqlx::query("UPDATE idp_sessions SET last_seen = ?, expires_at = ? WHERE sid = ?")
            .bind(now)
            .bind(expires_at)
            .bind(sid)
            .execute(&self.pool)
            .await
            .map_err(failed("touch session"))?;
        Ok(())
    }

    async fn remove_session(&self, sid: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM idp_sessions WHERE sid = ?")
            .bind(sid)
            .execute(&self.pool)
            .await
            .map_err(failed("remove session"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn sessions_of(&self, sub: &str, now: Epoch) -> StoreResult<Vec<IdpSessionRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM idp_sessions WHERE sub = ? AND expires_at > ? ORDER BY created_at, sid"
        ))
        .bind(sub)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list sessions"))?;
        rows.iter().map(session_from).collect()
    }

    async fn list_sessions(&self, sub: Option<&str>, now: Epoch) -> StoreResult<Vec<IdpSessionRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM idp_sessions WHERE (?1 IS NULL OR sub = ?1) AND expires_at > ?2 ORDER BY created_at, sid"
        ))
        .bind(sub)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list sessions"))?;
        rows.iter().map(session_from).collect()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers: opening, shared queries, row decoding

/// `sqlite::memory:`, `sqlite://:memory:` and `?mode=memory` all name a database that lives in memory.
fn is_memory(url: &str) -> bool {
    let database = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, params) = database.split_once('?').unwrap_or((database, ""));
    path == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

fn create_parent_directory(file: &Path) -> StoreResult<()> {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|error| StoreError(format!("sqlite: creating {}: {error}", parent.display()))),
        _ => Ok(()),
    }
}

/// Maps a failure to a `StoreError` naming what was being done; the cause is logged by the caller, never shown.
fn failed<E: std::fmt::Display>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError(format!("sqlite {operation}: {error}"))
}

async fn grant_in(connection: &mut SqliteConnection, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
    let row = sqlx::query(concat!("SELECT ", grant_columns!(), " FROM grants WHERE grant_id = ?"))
        .bind(grant_id)
        .fetch_optional(connection)
        .await
        .map_err(failed("read grant"))?;
    row.as_ref().map(grant_from).transpose()
}

async fn refresh_in(connection: &mut SqliteConnection, token_hash: &[u8]) -> StoreResult<Option<RefreshRecord>> {
    let row = sqlx::query(concat!("SELECT ", refresh_columns!(), " FROM refresh_tokens WHERE token_hash = ?"))
        .bind(token_hash)
        .fetch_optional(connection)
        .await
        .map_err(failed("read refresh token"))?;
    row.as_ref().map(refresh_from).transpose()
}

async fn insert_refresh_in(
    connection: &mut SqliteConnection,
    token: &RefreshRecord,
    superseded_at: Option<Epoch>,
) -> StoreResult<()> {
    sqlx::query(concat!("INSERT INTO refresh_tokens (", refresh_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
        .bind(&token.token_hash)
        .bind(&token.grant_id)
        .bind(&token.client_id)
        .bind(&token.scope)
        .bind(&token.dpop_jkt)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .bind(superseded_at)
        .execute(connection)
        .await
        .map_err(failed("insert refresh token"))?;
    Ok(())
}

// Column lists, in the order the inserts bind them; macros so `concat!` builds each statement at compile time.
macro_rules! user_columns {
    () => {
        "sub, username, password_hash, claims, created_at"
    };
}
macro_rules! key_columns {
    () => {
        "kid, alg, state, private_sealed, public_jwk, created_at, activated_at, retired_at"
    };
}
macro_rules! grant_columns {
    () => {
        "grant_id, client_id, sub, scope, auth_time, sid, created_at, expires_at, revoked_at"
    };
}
macro_rules! code_columns {
    () => {
        "code_hash, grant_id, client_id, redirect_uri, code_challenge, nonce, dpop_jkt, expires_at"
    };
}
macro_rules! refresh_columns {
    () => {
        "token_hash, grant_id, client_id, scope, dpop_jkt, issued_at, expires_at, superseded_at"
    };
}
macro_rules! session_columns {
    () => {
        "sid, sub, auth_time, created_at, last_seen, expires_at"
    };
}
use {code_columns, grant_columns, key_columns, refresh_columns, session_columns, user_columns};

fn column<'r, T>(row: &'r SqliteRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name).map_err(failed("decode row"))
}

fn user_from(row: &SqliteRow) -> StoreResult<UserRecord> {
    let claims: String = column(row, "claims")?;
    Ok(UserRecord {
        sub: column(row, "sub")?,
        username: column(row, "username")?,
        password_hash: column(row, "password_hash")?,
        claims: serde_json::from_str(&claims).map_err(failed("decode user claims"))?,
        created_at: column(row, "created_at")?,
    })
}

fn client_from(row: &SqliteRow) -> StoreResult<ClientRecord> {
    let document: String = column(row, "document")?;
    serde_json::from_str(&document).map_err(failed("decode client"))
}

fn key_from(row: &SqliteRow) -> StoreResult<SigningKeyRecord> {
    let alg: String = column(row, "alg")?;
    let state: String = column(row, "state")?;
    let public_jwk: String = column(row, "public_jwk")?;
    Ok(SigningKeyRecord {
        kid: column(row, "kid")?,
        alg: SigningAlg::parse(&alg).ok_or_else(|| StoreError(format!("sqlite decode row: unknown alg {alg:?}")))?,
        state: KeyState::parse(&state)
            .ok_or_else(|| StoreError(format!("sqlite decode row: unknown key state {state:?}")))?,
        private_sealed: column(row, "private_sealed")?,
        public_jwk: serde_json::from_str(&public_jwk).map_err(failed("decode public JWK"))?,
        created_at: column(row, "created_at")?,
        activated_at: column(row, "activated_at")?,
        retired_at: column(row, "retired_at")?,
    })
}

fn grant_from(row: &SqliteRow) -> StoreResult<GrantRecord> {
    Ok(GrantRecord {
        grant_id: column(row, "grant_id")?,
        client_id: column(row, "client_id")?,
        sub: column(row, "sub")?,
        scope: column(row, "scope")?,
        auth_time: column(row, "auth_time")?,
        sid: column(row, "sid")?,
        created_at: column(row, "created_at")?,
        expires_at: column(row, "expires_at")?,
        revoked_at: column(row, "revoked_at")?,
    })
}

fn code_from(row: &SqliteRow) -> StoreResult<CodeRecord> {
    Ok(CodeRecord {
        code_hash: column(row, "code_hash")?,
        grant_id: column(row, "grant_id")?,
        client_id: column(row, "client_id")?,
        redirect_uri: column(row, "redirect_uri")?,
        code_challenge: column(row, "code_challenge")?,
        nonce: column(row, "nonce")?,
        dpop_jkt: column(row, "dpop_jkt")?,
        expires_at: column(row, "expires_at")?,
    })
}

fn refresh_from(row: &SqliteRow) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        token_hash: column(row, "token_hash")?,
        grant_id: column(row, "grant_id")?,
        client_id: column(row, "client_id")?,
        scope: column(row, "scope")?,
        dpop_jkt: column(row, "dpop_jkt")?,
        issued_at: column(row, "issued_at")?,
        expires_at: column(row, "expires_at")?,
        superseded_at: column(row, "superseded_at")?,
    })
}

fn session_from(row: &SqliteRow) -> StoreResult<IdpSessionRecord> {
    Ok(IdpSessionRecord {
        sid: column(row, "sid")?,
        sub: column(row, "sub")?,
        auth_time: column(row, "auth_time")?,
        created_at: column(row, "created_at")?,
        last_seen: column(row, "last_seen")?,
        expires_at: column(row, "expires_at")?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::Store;
    use crate::store::conformance::unique_temp_directory;

    /// A file store in a fresh directory, removed when the test ends.
    struct FileStore {
        url: String,
        directory: std::path::PathBuf,
    }

    impl FileStore {
        fn new() -> Self {
            let directory = unique_temp_directory();
            let url = format!("sqlite://{}", directory.join("a").join("b").join("store.db").display());
            Self { url, directory }
        }
    }

    impl Drop for FileStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
    }

    /// The value of a `PRAGMA` on one of the store's connections, as text.
    async fn pragma(store: &SqliteStore, sql: &'static str) -> String {
        let row = sqlx::query(sql).fetch_one(&store.pool).await.unwrap();
        row.try_get::<String, _>(0).or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string())).unwrap()
    }

    #[test]
    fn memory_urls_are_recognised() {
        for (url, memory) in [
            ("sqlite::memory:", true),
            ("sqlite://:memory:", true),
            ("sqlite://?mode=memory", true),
            ("sqlite://shared?mode=memory&cache=shared", true),
            ("sqlite://data/gatehouse.db", false),
            ("sqlite:///var/lib/gatehouse/gatehouse.db", false),
            ("sqlite://memory.db?mode=rwc", false),
        ] {
            assert_eq!(is_memory(url), memory, "{url}");
        }
    }

    #[tokio::test]
    async fn file_store_creates_its_directory_and_sets_the_sharing_pragmas() {
        let file = FileStore::new();
        let store = SqliteStore::open(&file.url).await.unwrap();
        assert!(file.directory.join("a").join("b").join("store.db").is_file());
        assert_eq!(pragma(&store, "PRAGMA journal_mode").await, "wal");
        assert_eq!(pragma(&store, "PRAGMA foreign_keys").await, "1");
        assert_eq!(pragma(&store, "PRAGMA busy_timeout").await, "5000");
        assert_eq!(pragma(&store, "PRAGMA synchronous").await, "1", "NORMAL");
    }

    #[tokio::test]
    async fn memory_store_enforces_foreign_keys() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert_eq!(pragma(&store, "PRAGMA foreign_keys").await, "1");
        let orphan = store.record_access_token("at-1", "no-such-grant", 100).await;
        assert!(orphan.is_err(), "an access token needs its grant");
    }

    #[tokio::test]
    async fn reopening_a_file_keeps_its_data() {
        let file = FileStore::new();
        let first = Store::open(&file.url).await.unwrap();
        first.sessions.insert_session(session("s1")).await.unwrap();
        drop(first);
        let second = Store::open(&file.url).await.unwrap();
        assert_eq!(second.sessions.session("s1", 0).await.unwrap(), Some(session("s1")), "migrations ran once");
    }

    /// The CLI and a running server each open the file with their own pool: a code is still spent once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_on_one_file_spend_a_code_once() {
        let file = FileStore::new();
        let (server, cli) = (Store::open(&file.url).await.unwrap(), Store::open(&file.url).await.unwrap());
        server.grants.insert_code(grant("g1"), code(b"code-1", "g1")).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let grants: Arc<dyn GrantStore> = if i % 2 == 0 { server.grants.clone() } else { cli.grants.clone() };
                tokio::spawn(async move { grants.consume_code(b"code-1", 150).await.unwrap() })
            })
            .collect();
        let mut consumed = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), CodeOutcome::Consumed(..)) {
                consumed += 1;
            }
        }
        assert_eq!(consumed, 1);
    }

    #[tokio::test]
    async fn purge_counts_every_row_it_removes() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        store.insert_code(grant("g1"), code(b"code-1", "g1")).await.unwrap(); // grant ends at 5000, code at 200
        store.record_access_token("at-1", "g1", 300).await.unwrap();
        store.consume_jti("assertion", "j1", 200, 100).await.unwrap();
        store.insert_session(session("s1")).await.unwrap(); // ends at 1000
        assert_eq!(store.purge_expired(199).await.unwrap(), 0);
        assert_eq!(store.purge_expired(300).await.unwrap(), 3, "code, access token, jti");
        assert_eq!(store.purge_expired(5000).await.unwrap(), 2, "session, grant");
        assert_eq!(store.purge_expired(5000).await.unwrap(), 0);
    }

    /// Rows written by something else (an older version, a hand edit) that do not decode are errors, not panics.
    #[tokio::test]
    async fn undecodable_rows_are_store_errors() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        for sql in [
            "INSERT INTO signing_keys VALUES ('k1', 'none', 'active', x'00', '{\"kty\":\"EC\"}', 1, NULL, NULL)",
            "INSERT INTO clients VALUES ('c1', '{\"client_id\":\"c1\"}')",
            "INSERT INTO users VALUES ('sub-a', 'alice', 'hash', '\"not an object\"', 1)",
        ] {
            sqlx::query(sql).execute(&store.pool).await.unwrap();
        }
        let error = store.list_keys().await.unwrap_err();
        assert!(error.0.contains("unknown alg"), "{error}");
        assert!(store.client("c1").await.is_err());
        assert!(store.list_clients().await.is_err());
        assert!(store.user_by_username("alice").await.is_err());

        sqlx::query("UPDATE signing_keys SET alg = 'ES256', public_jwk = '[1]'").execute(&store.pool).await.unwrap();
        assert!(store.list_keys().await.is_err(), "a JWK of the wrong shape");
    }

    /// STRICT tables refuse a value of the wrong type on write, so readers never meet one.
    #[tokio::test]
    async fn the_schema_refuses_ill_typed_values() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        for sql in [
            "INSERT INTO idp_sessions VALUES ('s1', 'alice', 'yesterday', 1, 1, 1)",
            "INSERT INTO signing_keys VALUES ('k1', 'ES256', 'revoked', x'00', '{}', 1, NULL, NULL)",
            "INSERT INTO clients VALUES ('c1', 'not json')",
        ] {
            assert!(sqlx::query(sql).execute(&store.pool).await.is_err(), "{sql}");
        }
    }

    fn grant(grant_id: &str) -> GrantRecord {
        GrantRecord {
            grant_id: grant_id.into(),
            client_id: "web".into(),
            sub: "sub-a".into(),
            scope: "openid".into(),
            auth_time: 100,
            sid: None,
            created_at: 100,
            expires_at: 5000,
            revoked_at: None,
        }
    }

    fn code(code_hash: &[u8], grant_id: &str) -> CodeRecord {
        CodeRecord {
            code_hash: code_hash.to_vec(),
            grant_id: grant_id.into(),
            client_id: "web".into(),
            redirect_uri: "https://a/cb".into(),
            code_challenge: "challenge".into(),
            nonce: None,
            dpop_jkt: None,
            expires_at: 200,
        }
    }

    fn session(sid: &str) -> IdpSessionRecord {
        IdpSessionRecord {
            sid: sid.into(),
            sub: "sub-a".into(),
            auth_time: 1,
            created_at: 1,
            last_seen: 1,
            expires_at: 1000,
        }
    }
}
mod requests;
