//! The durable embedded session store: one SQLite table (schema in `bff/migrations/sqlite`, applied when the
//! store opens), so a gateway restart keeps every session. Run it behind `CachedSessionStore`, which keeps the
//! per-request path free of SQL.
//!
//! What a stolen database file gives away is kept small:
//! - the primary key is SHA-256 of the session id, never the id itself: the file holds nothing a cookie could be
//!   made from (the cookie carries the id sealed with the cookie key, which the file does not hold either);
//! - the session body (tokens, the DPoP private key, claims) is sealed with the gateway's cookie key ring
//!   (`seal::KeyRing`, AES-256-GCM) under the purpose `gatehouse-session-store:<id hash>`, so a row can be
//!   confused neither with a cookie nor with another row;
//! - only `sub`, the token service's `sid` and the timestamps are in clear, as columns, so ending sessions by
//!   user or by back-channel logout, listing and counting are SQL queries rather than decrypting every row.
//!
//! A row whose body no longer opens (its key was retired from the ring, or the key was generated for an
//! earlier run) is a session that is gone: reads treat it as absent and delete it. Expired rows are invisible
//! to reads and deleted by `sweep`, which `spawn_sweeper` runs periodically.
//!
//! The file runs in WAL mode with `synchronous=NORMAL` and a 5 s busy timeout, like the token service's store.
//! The migrations are recorded in a table of their own (`_gatehouse_gateway_migrations`), so the sessions may
//! even share a database file with the token service without the two migration histories colliding.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_proto::b64;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{Lifetimes, Session, SessionStore, StoreError};
use crate::cookie_keys::CookieKeys;

/// The sealing purpose (AEAD associated data) of stored session bodies; the cookie names are `__Host-…`, so a
/// sealed cookie never opens as a stored body, nor the other way round.
pub const PURPOSE: &str = "gatehouse-session-store";
/// Longest sealed body read back: far above any real session, small enough to bound a hostile row.
const MAX_BODY_LEN: usize = 1024 * 1024;
/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections to the file; SQLite serialises writers, WAL lets readers run beside them.
const CONNECTIONS: u32 = 4;
/// Where the migrations applied to the file are recorded (not sqlx's default, which the token service uses).
const MIGRATIONS_TABLE: &str = "_gatehouse_gateway_migrations";

/// Unix seconds, injected so tests can move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Gateway sessions in an SQLite file, bodies sealed with the cookie key ring.
pub struct SqliteSessionStore {
    pool: SqlitePool,
    /// The gateway's cookie keys (shared: a reload of the keys applies here too).
    keys: Arc<CookieKeys>,
    lifetimes: Lifetimes,
    clock: Clock,
}

impl SqliteSessionStore {
    /// Opens (creating it and its directory when missing) the database file at `path`, applies the migrations
    /// and deletes the rows that expired while the gateway was down.
    pub async fn open(path: &Path, keys: impl Into<Arc<CookieKeys>>, lifetimes: Lifetimes) -> Result<Self, StoreError> {
        Self::open_with_clock(path, keys, lifetimes, Arc::new(crate::now)).await
    }

    pub async fn open_with_clock(
        path: &Path,
        keys: impl Into<Arc<CookieKeys>>,
        lifetimes: Lifetimes,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        create_private_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(failed("open the session database"))?;
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator.run(&pool).await.map_err(failed("migrate the session database"))?;
        let store = Self { pool, keys: keys.into(), lifetimes, clock };
        store.sweep().await?;
        Ok(store)
    }

    /// Deletes every expired row (idle timeout or absolute lifetime passed); how many.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM gateway_sessions WHERE expires_at <= ?")
            .bind((self.clock)())
            .execute(&self.pool)
            .await
            .map_err(failed("sweep expired sessions"))?;
        Ok(done.rows_affected())
    }

    /// Runs `sweep` every `interval` until `store` is dropped.
    pub fn spawn_sweeper(store: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(store) = weak.upgrade() else { return };
                match store.sweep().await {
                    Ok(0) => {}
                    Ok(swept) => tracing::debug!(swept, "expired gateway sessions deleted"),
                    Err(error) => tracing::warn!(%error, "sweeping expired gateway sessions failed"),
                }
            }
        });
    }

    /// The session sealed in `body`, if it opens under the ring and belongs to the row `id_hash`.
    fn open_body(&self, id_hash: &[u8], body: &str) -> Option<Session> {
        let plaintext = self.keys.current().open_within(&purpose(id_hash), body, MAX_BODY_LEN)?;
        let session: Session = serde_json::from_slice(&plaintext).ok()?;
        (hash_id(&session.id).as_slice() == id_hash).then_some(session)
    }

    /// Deletes rows that no longer open. Each delete names the body it saw, so a row that a `put` rewrote
    /// meanwhile is left alone.
    async fn discard(&self, rows: &[(Vec<u8>, String)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        tracing::debug!(count = rows.len(), "stored gateway sessions no longer open (cookie key retired): discarded");
        for (id_hash, body) in rows {
            sqlx::query("DELETE FROM gateway_sessions WHERE id_hash = ? AND body = ?")
                .bind(id_hash)
                .bind(body)
                .execute(&self.pool)
                .await
                .map_err(failed("discard a session"))?;
        }
        Ok(())
    }

    /// Unix second at which `session` ends unless used again.
    fn expires_at(&self, session: &Session) -> i64 {
        let idle_end = session.last_seen.saturating_add(self.lifetimes.idle);
        let absolute_end = session.created_at.saturating_add(self.lifetimes.absolute);
        idle_end.min(absolute_end)
    }
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        let id_hash = hash_id(id);
        let row = sqlx::query("SELECT body FROM gateway_sessions WHERE id_hash = ? AND expires_at > ?")
            .bind(id_hash.as_slice())
            .bind((self.clock)())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("read a session"))?;
        let Some(row) = row else { return Ok(None) };
        let body: String = row.try_get("body").map_err(failed("decode a session row"))?;
        match self.open_body(&id_hash, &body) {
            Some(session) => Ok(Some(Arc::new(session))),
            None => {
                self.discard(&[(id_hash.to_vec(), body)]).await?;
                Ok(None)
            }
        }
    }

    async fn put(&self, session: Arc<Session>) -> Result<(), StoreError> {
        let id_hash = hash_id(&session.id);
        let plaintext = serde_json::to_vec(&*session).map_err(failed("encode a session"))?;
        let body = self.keys.current().seal(&purpose(&id_hash), &plaintext);
        sqlx::query(
            "INSERT INTO gateway_sessions (id_hash, sub, idp_sid, created_at, last_seen, expires_at, body)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id_hash) DO UPDATE SET sub = excluded.sub, idp_sid = excluded.idp_sid,
                 created_at = excluded.created_at, last_seen = excluded.last_seen,
                 expires_at = excluded.expires_at, body = excluded.body",
        )
        .bind(id_hash.as_slice())
        .bind(&session.sub)
        .bind(session.idp_sid.as_deref())
        .bind(session.created_at)
        .bind(session.last_seen)
        .bind(self.expires_at(&session))
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(failed("write a session"))?;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        let id_hash = hash_id(id);
        let row = sqlx::query("DELETE FROM gateway_sessions WHERE id_hash = ? RETURNING body, expires_at")
            .bind(id_hash.as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("remove a session"))?;
        let Some(row) = row else { return Ok(None) };
        let body: String = row.try_get("body").map_err(failed("decode a session row"))?;
        let expires_at: i64 = row.try_get("expires_at").map_err(failed("decode a session row"))?;
        if expires_at <= (self.clock)() {
            return Ok(None);
        }
        Ok(self.open_body(&id_hash, &body).map(Arc::new))
    }

    async fn remove_by_idp_sid(&self, idp_sid: &str) -> Result<usize, StoreError> {
        let done = sqlx::query("DELETE FROM gateway_sessions WHERE idp_sid = ?")
            .bind(idp_sid)
            .execute(&self.pool)
            .await
            .map_err(failed("remove sessions by sid"))?;
        Ok(done.rows_affected() as usize)
    }

    async fn remove_by_sub(&self, sub: &str) -> Result<usize, StoreError> {
        let done = sqlx::query("DELETE FROM gateway_sessions WHERE sub = ?")
            .bind(sub)
            .execute(&self.pool)
            .await
            .map_err(failed("remove sessions by user"))?;
        Ok(done.rows_affected() as usize)
    }

    async fn list(&self, sub: Option<&str>) -> Result<Vec<Arc<Session>>, StoreError> {
        let rows = sqlx::query(
            "SELECT id_hash, body FROM gateway_sessions WHERE expires_at > ? AND (? IS NULL OR sub = ?)
             ORDER BY created_at, id_hash",
        )
        .bind((self.clock)())
        .bind(sub)
        .bind(sub)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list sessions"))?;
        let mut sessions = Vec::with_capacity(rows.len());
        let mut unopenable = Vec::new();
        for row in rows {
            let id_hash: Vec<u8> = row.try_get("id_hash").map_err(failed("decode a session row"))?;
            let body: String = row.try_get("body").map_err(failed("decode a session row"))?;
            match self.open_body(&id_hash, &body) {
                Some(session) => sessions.push(Arc::new(session)),
                None => unopenable.push((id_hash, body)),
            }
        }
        self.discard(&unopenable).await?;
        Ok(sessions)
    }

    /// Unexpired rows, including any that no longer open and were not read since (they go at their expiry).
    async fn count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateway_sessions WHERE expires_at > ?")
            .bind((self.clock)())
            .fetch_one(&self.pool)
            .await
            .map_err(failed("count sessions"))?;
        Ok(count.max(0) as u64)
    }
}

/// The row key: SHA-256 of the session id. Ids are 256 random bits, so a plain hash cannot be reversed.
pub(super) fn hash_id(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The sealing purpose of one row's body: binds it to the row, so bodies cannot be swapped between rows.
fn purpose(id_hash: &[u8]) -> String {
    format!("{PURPOSE}:{}", b64::encode(id_hash))
}

/// Creates the database file readable by its owner only (SQLite gives the `-wal` and `-shm` files the same
/// permissions), and its directory.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError(format!("creating the session store directory {}: {e}", parent.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|e| StoreError(format!("opening the session store {}: {e}", path.display())))
}

/// Maps a failure to a `StoreError` naming what was being done.
fn failed<E: std::fmt::Display>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError(format!("sqlite: {operation}: {error}"))
}
