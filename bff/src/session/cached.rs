//! An in-memory cache in front of a durable session store, so the per-request session lookup does no I/O:
//! read-through on `get`, write-through on `put` and every removal, bounded in size, entries dropped when unused
//! for the idle timeout. `list` and `count` go to the durable store, which holds every session.
//!
//! Single node: the cache is correct when this process is the durable store's only writer. (A shared store —
//! Redis, in the scale-out issue — needs invalidation between nodes or no local cache.)
//!
//! Concurrent loads and writes of one session must not leave an older copy in the cache than in the durable
//! store: a load that read a session just before a `remove` (logout) would otherwise revive it, and a load that
//! read it just before a `put` of refreshed tokens would serve an already rotated refresh token. Every write bumps
//! a counter after its durable write; a load or write that sees the counter move by anyone else while it ran
//! drops what it cached, and the next `get` reads the durable store again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{Session, SessionStore, StoreError};

pub struct CachedSessionStore<D> {
    durable: Arc<D>,
    cache: moka::future::Cache<String, Arc<Session>>,
    /// Durable writes and removals so far.
    writes: AtomicU64,
}

impl<D: SessionStore> CachedSessionStore<D> {
    /// `capacity` sessions at most in memory, each dropped after `idle_timeout` without use.
    pub fn new(durable: Arc<D>, capacity: u64, idle_timeout: Duration) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(capacity)
            .time_to_idle(idle_timeout)
            .support_invalidation_closures()
            .build();
        Self { durable, cache, writes: AtomicU64::new(0) }
    }

    /// The store behind the cache.
    pub fn durable(&self) -> &Arc<D> {
        &self.durable
    }

    /// Sessions held in memory right now (tests, metrics).
    pub async fn cached_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Marks a durable write as done; call after the durable store changed, before touching the cache.
    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// Caches `session` unless another write happened since `seen` (then the durable store may hold newer).
    /// `own` is how many of the writes since `seen` were the caller's.
    async fn cache_if_unchanged(&self, session: Arc<Session>, seen: u64, own: u64) {
        let id = session.id.clone();
        self.cache.insert(id.clone(), session).await;
        if self.writes.load(Ordering::SeqCst) != seen + own {
            self.cache.invalidate(&id).await;
        }
    }
}

#[async_trait]
impl<D: SessionStore + 'static> SessionStore for CachedSessionStore<D> {
    async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some(session) = self.cache.get(id).await {
            return Ok(Some(session));
        }
        let seen = self.writes.load(Ordering::SeqCst);
        let loaded = self.durable.get(id).await?;
        if let Some(session) = &loaded {
            self.cache_if_unchanged(session.clone(), seen, 0).await;
        }
        Ok(loaded)
    }

    async fn put(&self, session: Arc<Session>) -> Result<(), StoreError> {
        let seen = self.writes.load(Ordering::SeqCst);
        let written = self.durable.put(session.clone()).await;
        self.wrote();
        if let Err(error) = written {
            // The durable store may or may not hold it now: the cache must not claim either.
            self.cache.invalidate(&session.id).await;
            return Err(error);
        }
        self.cache_if_unchanged(session, seen, 1).await;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        let removed = self.durable.remove(id).await;
        self.wrote();
        let cached = self.cache.remove(id).await;
        Ok(removed?.or(cached))
    }

    async fn remove_by_idp_sid(&self, idp_sid: &str) -> Result<usize, StoreError> {
        let removed = self.durable.remove_by_idp_sid(idp_sid).await;
        self.wrote();
        let idp_sid = idp_sid.to_owned();
        self.invalidate_where(move |s| s.idp_sid.as_deref() == Some(idp_sid.as_str()));
        removed
    }

    async fn remove_by_sub(&self, sub: &str) -> Result<usize, StoreError> {
        let removed = self.durable.remove_by_sub(sub).await;
        self.wrote();
        let sub = sub.to_owned();
        self.invalidate_where(move |s| s.sub == sub);
        removed
    }

    async fn list(&self, sub: Option<&str>) -> Result<Vec<Arc<Session>>, StoreError> {
        self.durable.list(sub).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.durable.count().await
    }
}

impl<D> CachedSessionStore<D> {
    /// Drops every cached session matching `matches`. moka applies the predicate to every entry cached before
    /// this call (lookups check it at once); entries loaded concurrently are caught by the write counter.
    fn invalidate_where(&self, matches: impl Fn(&Session) -> bool + Send + Sync + 'static) {
        if self.cache.invalidate_entries_if(move |_, session| matches(session)).is_err() {
            // Only when the builder did not enable closures, which `new` does; be safe anyway.
            self.cache.invalidate_all();
        }
    }
}
