//! Server-side sessions. The browser's cookie carries only the sealed session id; what a session holds — the
//! user's claims, the tokens and the session's DPoP private key — stays here.
//!
//! `SessionStore` is the seam for shared stores (Redis, in the scale-out issue). The default is durable and
//! embedded: `SqliteSessionStore` (`sqlite`: one SQLite file, bodies sealed with the cookie keys) behind
//! `CachedSessionStore` (`cached`: moka in front, so lookups do no I/O). `MemorySessionStore` keeps sessions in
//! process memory only: a moka cache bounded in size whose entries expire after the idle timeout. Idle and
//! absolute expiry are also checked on every lookup (`Session::is_live`), so a store that keeps entries longer
//! never revives one. `conformance` is the test suite every store passes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_proto::b64;
use serde::{Deserialize, Serialize};

pub mod cached;
#[cfg(test)]
mod conformance;
pub mod sqlite;

pub use cached::CachedSessionStore;
pub use sqlite::SqliteSessionStore;

/// The tokens of a session. `Debug` shows none of them.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    /// Unix seconds.
    pub access_token_expires_at: i64,
    pub refresh_token: Option<String>,
    /// Granted scope (space-separated), when the token service said.
    pub scope: Option<String>,
    /// Access tokens narrowed to one API each (RFC 8707 `resource`), for routes that name a `resource`;
    /// fetched and refreshed together with the main access token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceToken>,
}

/// An access token for one resource (RFC 8707). An empty `access_token` records that the token service
/// refused the resource (`invalid_target`): the route answers 403 until the next refresh instead of asking
/// again on every request.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceToken {
    pub resource: String,
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .field("resources", &self.resources.iter().map(|r| r.resource.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// The access token for `resource`, if one was fetched (`Some("")`: refused by the token service).
    pub fn for_resource(&self, resource: &str) -> Option<&ResourceToken> {
        self.resources.iter().find(|r| r.resource == resource)
    }

    pub fn has_scopes(&self, required: &[String]) -> bool {
        let granted = self.scope.as_deref().unwrap_or("");
        required.iter().all(|r| granted.split(' ').any(|g| g == r))
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// Random, 256 bits, base64url: the store key; the cookie carries it sealed.
    pub id: String,
    /// The user (`sub` of the ID token).
    pub sub: String,
    /// The session id shown to the frontend in `bff:logout_url` and demanded back by `/bff/logout` (logout
    /// CSRF): the token service's `sid` when the ID token carries one, else a random value.
    pub sid: String,
    /// The token service's `sid` (back-channel logout names sessions by it).
    pub idp_sid: Option<String>,
    /// The ID token's claims, for `/bff/user`.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Kept as `id_token_hint` for RP-initiated logout.
    pub id_token: String,
    pub tokens: Tokens,
    /// PKCS#8 DER of the session's DPoP key: the access and refresh tokens are bound to it.
    pub dpop_key: Vec<u8>,
    pub created_at: i64,
    pub last_seen: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("tokens", &self.tokens)
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .finish_non_exhaustive()
    }
}

/// Idle timeout and absolute lifetime.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub idle: i64,
    pub absolute: i64,
}

impl Session {
    /// A fresh random id (256 bits from the OS CSPRNG).
    pub fn new_id() -> String {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        b64::encode(bytes)
    }

    pub fn is_live(&self, lifetimes: Lifetimes, now: i64) -> bool {
        now < self.last_seen.saturating_add(lifetimes.idle) && now < self.created_at.saturating_add(lifetimes.absolute)
    }

    /// Seconds until the session ends without further use.
    pub fn expires_in(&self, lifetimes: Lifetimes, now: i64) -> i64 {
        let idle_end = self.last_seen.saturating_add(lifetimes.idle);
        let absolute_end = self.created_at.saturating_add(lifetimes.absolute);
        idle_end.min(absolute_end).saturating_sub(now).max(0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreError(pub String);

/// Where sessions live. Implementations must be safe to share between worker threads.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError>;
    async fn put(&self, session: Arc<Session>) -> Result<(), StoreError>;
    async fn remove(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError>;
    /// Ends every session whose token-service `sid` is `idp_sid`; how many.
    async fn remove_by_idp_sid(&self, idp_sid: &str) -> Result<usize, StoreError>;
    /// Ends every session of user `sub`; how many.
    async fn remove_by_sub(&self, sub: &str) -> Result<usize, StoreError>;
    /// The live sessions held, of user `sub` or everyone's (administration; may be slow on big stores).
    async fn list(&self, sub: Option<&str>) -> Result<Vec<Arc<Session>>, StoreError>;
    /// How many sessions are held (approximate for caches).
    async fn count(&self) -> Result<u64, StoreError>;
}

/// The embedded store: sessions in process memory, bounded, expiring when idle.
pub struct MemorySessionStore {
    cache: moka::future::Cache<String, Arc<Session>>,
}

impl MemorySessionStore {
    pub fn new(capacity: u64, idle_timeout: Duration) -> Self {
        Self { cache: moka::future::Cache::builder().max_capacity(capacity).time_to_idle(idle_timeout).build() }
    }

    async fn remove_where(&self, matches: impl Fn(&Session) -> bool) -> usize {
        let ids: Vec<Arc<String>> =
            self.cache.iter().filter(|(_, session)| matches(session)).map(|(id, _)| id).collect();
        for id in &ids {
            self.cache.invalidate(id.as_str()).await;
        }
        ids.len()
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.cache.get(id).await)
    }

    async fn put(&self, session: Arc<Session>) -> Result<(), StoreError> {
        self.cache.insert(session.id.clone(), session).await;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.cache.remove(id).await)
    }

    async fn remove_by_idp_sid(&self, idp_sid: &str) -> Result<usize, StoreError> {
        Ok(self.remove_where(|s| s.idp_sid.as_deref() == Some(idp_sid)).await)
    }

    async fn remove_by_sub(&self, sub: &str) -> Result<usize, StoreError> {
        Ok(self.remove_where(|s| s.sub == sub).await)
    }

    async fn list(&self, sub: Option<&str>) -> Result<Vec<Arc<Session>>, StoreError> {
        Ok(self.cache.iter().map(|(_, s)| s).filter(|s| sub.is_none_or(|sub| s.sub == sub)).collect())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.cache.run_pending_tasks().await;
        Ok(self.cache.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn session(id: &str, sub: &str, idp_sid: Option<&str>, now: i64) -> Session {
        Session {
            id: id.into(),
            sub: sub.into(),
            sid: idp_sid.unwrap_or("local").into(),
            idp_sid: idp_sid.map(Into::into),
            claims: serde_json::Map::new(),
            id_token: "id".into(),
            tokens: Tokens {
                access_token: "secret-at".into(),
                access_token_expires_at: now + 300,
                refresh_token: Some("secret-rt".into()),
                scope: Some("openid api".into()),
                resources: Vec::new(),
            },
            dpop_key: vec![],
            created_at: now,
            last_seen: now,
        }
    }

    #[test]
    fn idle_and_absolute_expiry() {
        let lifetimes = Lifetimes { idle: 100, absolute: 1000 };
        let mut s = session("a", "alice", None, 0);
        assert!(s.is_live(lifetimes, 99));
        assert!(!s.is_live(lifetimes, 100), "idle timeout reached");
        s.last_seen = 950;
        assert!(s.is_live(lifetimes, 999));
        assert!(!s.is_live(lifetimes, 1000), "absolute lifetime wins over activity");
        assert_eq!(s.expires_in(lifetimes, 990), 10);
    }

    #[test]
    fn debug_shows_no_token() {
        let s = session("a", "alice", None, 0);
        let text = format!("{s:?}");
        assert!(!text.contains("secret-at") && !text.contains("secret-rt"), "{text}");
    }

    #[test]
    fn scope_check() {
        let s = session("a", "alice", None, 0);
        assert!(s.tokens.has_scopes(&["api".into()]));
        assert!(s.tokens.has_scopes(&[]));
        assert!(!s.tokens.has_scopes(&["admin".into()]));
    }

    #[tokio::test]
    async fn memory_store_removes_by_sid_and_sub() {
        let store = MemorySessionStore::new(100, Duration::from_secs(60));
        store.put(Arc::new(session("1", "alice", Some("s1"), 0))).await.unwrap();
        store.put(Arc::new(session("2", "alice", Some("s2"), 0))).await.unwrap();
        store.put(Arc::new(session("3", "bob", Some("s3"), 0))).await.unwrap();
        assert_eq!(store.remove_by_idp_sid("s1").await.unwrap(), 1);
        assert!(store.get("1").await.unwrap().is_none());
        assert_eq!(store.remove_by_sub("alice").await.unwrap(), 1);
        assert!(store.get("2").await.unwrap().is_none());
        assert!(store.get("3").await.unwrap().is_some());
        assert_eq!(store.count().await.unwrap(), 1);
    }
}
