//! The session-store conformance suite: one set of checks, run against every back-end (`memory`, `sqlite` alone,
//! and `sqlite` behind the cache as the gateway runs it). A new back-end (Redis) adds one `suite!` line.
//!
//! The sealing checks (a row sealed under another key is absent; the file holds no token, key or id in clear)
//! apply to the back-ends that write sessions somewhere outside process memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_proto::dpop_key::DpopKey;

use super::sqlite::Clock;
use super::{
    CachedSessionStore, Lifetimes, MemorySessionStore, Session, SessionStore, SqliteSessionStore, StoreError, Tokens,
};
use crate::seal::KeyRing;
use crate::settings::CookieKey;

/// The lifetimes of most checks: nothing expires while they run.
const LONG: Lifetimes = Lifetimes { idle: 3600, absolute: 86_400 };
/// The expiry check's: one idle second.
const SHORT: Lifetimes = Lifetimes { idle: 1, absolute: 86_400 };

/// A store under test, and the database file behind it (when there is one).
struct Fixture {
    store: Arc<dyn SessionStore>,
    file: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

fn ring(byte: u8) -> KeyRing {
    KeyRing::new(&[CookieKey { id: "k1".into(), key: [byte; 32] }]).unwrap()
}

async fn memory(lifetimes: Lifetimes) -> Fixture {
    let idle = Duration::from_secs(lifetimes.idle as u64);
    Fixture { store: Arc::new(MemorySessionStore::new(1000, idle)), file: None, _dir: None }
}

async fn sqlite(lifetimes: Lifetimes) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessions/gateway-sessions.db");
    let store = SqliteSessionStore::open(&file, ring(1), lifetimes).await.unwrap();
    Fixture { store: Arc::new(store), file: Some(file), _dir: Some(dir) }
}

async fn sqlite_cached(lifetimes: Lifetimes) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway-sessions.db");
    let durable = Arc::new(SqliteSessionStore::open(&file, ring(1), lifetimes).await.unwrap());
    let idle = Duration::from_secs(lifetimes.idle as u64);
    Fixture { store: Arc::new(CachedSessionStore::new(durable, 1000, idle)), file: Some(file), _dir: Some(dir) }
}

/// A session as a login makes it: random id, distinctive token values, a real DPoP key.
fn session(sub: &str, idp_sid: Option<&str>, now: i64) -> Session {
    let tag = Session::new_id();
    let mut claims = serde_json::Map::new();
    claims.insert("email".into(), format!("{sub}-{tag}@example.com").into());
    Session {
        id: Session::new_id(),
        sub: sub.into(),
        sid: idp_sid.unwrap_or("local-sid").into(),
        idp_sid: idp_sid.map(Into::into),
        claims,
        id_token: format!("id-token-{tag}"),
        tokens: Tokens {
            access_token: format!("access-token-{tag}"),
            access_token_expires_at: now + 300,
            refresh_token: Some(format!("refresh-token-{tag}")),
            scope: Some("openid api".into()),
            resources: Vec::new(),
        },
        dpop_key: DpopKey::generate().unwrap().pkcs8().to_vec(),
        created_at: now,
        last_seen: now,
    }
}

fn same(a: &Session, b: &Session) {
    assert_eq!(a.id, b.id);
    assert_eq!((&a.sub, &a.sid, &a.idp_sid), (&b.sub, &b.sid, &b.idp_sid));
    assert_eq!(a.claims, b.claims);
    assert_eq!(a.id_token, b.id_token);
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.dpop_key, b.dpop_key);
    assert_eq!((a.created_at, a.last_seen), (b.created_at, b.last_seen));
}

fn ids(sessions: &[Arc<Session>]) -> Vec<String> {
    let mut ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------------------------------
// The checks every back-end passes

async fn put_get_remove(f: Fixture) {
    let store = f.store;
    let now = crate::now();
    let s = Arc::new(session("alice", Some("sid-1"), now));
    assert!(store.get(&s.id).await.unwrap().is_none());
    store.put(s.clone()).await.unwrap();
    same(&store.get(&s.id).await.unwrap().expect("stored"), &s);
    assert!(store.get(&Session::new_id()).await.unwrap().is_none(), "an unknown id is absent");

    // A put replaces (the idle-timeout slide and a token refresh are puts).
    let mut next = (*s).clone();
    next.last_seen = now + 40;
    next.tokens.access_token = "access-token-refreshed".into();
    next.tokens.refresh_token = Some("refresh-token-rotated".into());
    let next = Arc::new(next);
    store.put(next.clone()).await.unwrap();
    same(&store.get(&s.id).await.unwrap().unwrap(), &next);
    assert_eq!(store.count().await.unwrap(), 1);

    same(&store.remove(&s.id).await.unwrap().expect("removed session returned"), &next);
    assert!(store.get(&s.id).await.unwrap().is_none());
    assert!(store.remove(&s.id).await.unwrap().is_none());
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn remove_by_sub(f: Fixture) {
    let store = f.store;
    let now = crate::now();
    let a1 = Arc::new(session("alice", Some("s1"), now));
    let a2 = Arc::new(session("alice", None, now));
    let b = Arc::new(session("bob", Some("s3"), now));
    for s in [&a1, &a2, &b] {
        store.put(s.clone()).await.unwrap();
        assert!(store.get(&s.id).await.unwrap().is_some());
    }
    assert_eq!(store.remove_by_sub("alice").await.unwrap(), 2);
    assert!(store.get(&a1.id).await.unwrap().is_none());
    assert!(store.get(&a2.id).await.unwrap().is_none());
    assert!(store.get(&b.id).await.unwrap().is_some());
    assert_eq!(store.remove_by_sub("alice").await.unwrap(), 0);
    assert_eq!(store.remove_by_sub("nobody").await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 1);
}

async fn remove_by_idp_sid(f: Fixture) {
    let store = f.store;
    let now = crate::now();
    let one = Arc::new(session("alice", Some("sid-1"), now));
    let also_one = Arc::new(session("alice", Some("sid-1"), now));
    let two = Arc::new(session("alice", Some("sid-2"), now));
    let none = Arc::new(session("alice", None, now));
    for s in [&one, &also_one, &two, &none] {
        store.put(s.clone()).await.unwrap();
        assert!(store.get(&s.id).await.unwrap().is_some());
    }
    assert_eq!(store.remove_by_idp_sid("sid-1").await.unwrap(), 2);
    assert!(store.get(&one.id).await.unwrap().is_none());
    assert!(store.get(&also_one.id).await.unwrap().is_none());
    assert!(store.get(&two.id).await.unwrap().is_some());
    assert!(store.get(&none.id).await.unwrap().is_some(), "a session without sid is not named by any sid");
    // The local fallback `sid` is not the token service's: back-channel logout must not find it.
    assert_eq!(store.remove_by_idp_sid("local-sid").await.unwrap(), 0);
    assert_eq!(ids(&store.list(None).await.unwrap()), sorted(&[&two.id, &none.id]));
}

async fn list_and_count(f: Fixture) {
    let store = f.store;
    let now = crate::now();
    assert!(store.list(None).await.unwrap().is_empty());
    assert_eq!(store.count().await.unwrap(), 0);
    let a1 = Arc::new(session("alice", Some("s1"), now));
    let a2 = Arc::new(session("alice", Some("s2"), now + 1));
    let b = Arc::new(session("bob", Some("s3"), now + 2));
    for s in [&a1, &a2, &b] {
        store.put(s.clone()).await.unwrap();
    }
    let everyone = store.list(None).await.unwrap();
    assert_eq!(ids(&everyone), sorted(&[&a1.id, &a2.id, &b.id]));
    same(everyone.iter().find(|s| s.id == b.id).unwrap(), &b);
    assert_eq!(ids(&store.list(Some("alice")).await.unwrap()), sorted(&[&a1.id, &a2.id]));
    assert!(store.list(Some("carol")).await.unwrap().is_empty());
    assert_eq!(store.count().await.unwrap(), 3);
}

/// A session unused for the idle timeout is gone from every view of the store.
async fn idle_sessions_expire(f: Fixture) {
    let store = f.store;
    let s = Arc::new(session("alice", Some("s1"), crate::now()));
    store.put(s.clone()).await.unwrap();
    assert!(store.get(&s.id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(store.get(&s.id).await.unwrap().is_none());
    assert!(store.list(None).await.unwrap().is_empty());
    assert_eq!(store.count().await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------------------
// The checks of back-ends that write sessions to a file

/// A row written under one cookie key and read by a gateway whose ring no longer has it (retired, or a
/// demo key generated anew at start) is no session, and is deleted on sight.
async fn a_row_sealed_under_another_key_is_absent(f: Fixture) {
    let file = f.file.clone().unwrap();
    let now = crate::now();
    let s = Arc::new(session("alice", Some("s1"), now));
    f.store.put(s.clone()).await.unwrap();
    let listed = Arc::new(session("bob", Some("s2"), now));
    f.store.put(listed.clone()).await.unwrap();

    let other = SqliteSessionStore::open(&file, ring(2), LONG).await.unwrap();
    assert_eq!(other.count().await.unwrap(), 2, "the rows are there");
    assert!(other.get(&s.id).await.unwrap().is_none(), "but do not open");
    assert!(other.list(None).await.unwrap().is_empty());
    assert_eq!(other.count().await.unwrap(), 0, "and were deleted when read");
    assert!(other.remove(&s.id).await.unwrap().is_none());
}

/// What the file holds (database, WAL and shared-memory files) contains no token, no DPoP key, no session id
/// and no claim in clear.
async fn the_file_holds_no_secret_in_clear(f: Fixture) {
    let file = f.file.clone().unwrap();
    let now = crate::now();
    let sessions: Vec<Session> = (0..3).map(|i| session("alice", Some(&format!("s{i}")), now)).collect();
    for s in &sessions {
        f.store.put(Arc::new(s.clone())).await.unwrap();
        assert!(f.store.get(&s.id).await.unwrap().is_some());
    }
    let bytes = files_next_to(&file);
    assert!(contains(&bytes, b"alice"), "the check reads the right files");
    for s in &sessions {
        let email = s.claims["email"].as_str().unwrap();
        let refresh = s.tokens.refresh_token.as_deref().unwrap();
        for secret in [&s.tokens.access_token, refresh, &s.id_token, &s.id, email] {
            assert!(!contains(&bytes, secret.as_bytes()), "{secret} is in the file in clear");
        }
        // The session id's hash is the key; its base64url encoding would be as good as the id to a thief only
        // with the cookie key, but the id itself must not be there in any common form.
        let raw_id = gatehouse_proto::b64::decode(&s.id).unwrap();
        assert!(!contains(&bytes, &raw_id), "the raw session id is in the file");
        assert!(!contains(&bytes, &s.dpop_key[s.dpop_key.len() - 32..]), "DPoP key bytes are in the file");
        let key_json = serde_json::to_string(&s.dpop_key).unwrap();
        assert!(
            !contains(&bytes, &key_json.as_bytes()[key_json.len() - 60..key_json.len() - 1]),
            "the DPoP key's JSON is in the file"
        );
    }
}

fn files_next_to(file: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", file.display()));
        if let Ok(content) = std::fs::read(&path) {
            bytes.extend(content);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

macro_rules! suite {
    ($backend:ident, $make:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn put_get_remove() {
                super::put_get_remove($make(LONG).await).await
            }

            #[tokio::test]
            async fn remove_by_sub() {
                super::remove_by_sub($make(LONG).await).await
            }

            #[tokio::test]
            async fn remove_by_idp_sid() {
                super::remove_by_idp_sid($make(LONG).await).await
            }

            #[tokio::test]
            async fn list_and_count() {
                super::list_and_count($make(LONG).await).await
            }

            #[tokio::test]
            async fn idle_sessions_expire() {
                super::idle_sessions_expire($make(SHORT).await).await
            }
        }
    };
}

macro_rules! sealing_suite {
    ($backend:ident, $make:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn a_row_sealed_under_another_key_is_absent() {
                super::a_row_sealed_under_another_key_is_absent($make(LONG).await).await
            }

            #[tokio::test]
            async fn the_file_holds_no_secret_in_clear() {
                super::the_file_holds_no_secret_in_clear($make(LONG).await).await
            }
        }
    };
}

suite!(memory_store, memory);
suite!(sqlite_store, sqlite);
suite!(sqlite_cached_store, sqlite_cached);
sealing_suite!(sqlite_store_sealing, sqlite);
sealing_suite!(sqlite_cached_store_sealing, sqlite_cached);

// ---------------------------------------------------------------------------------------------------------
// Back-end specific checks

/// A clock the test moves.
fn fixed_clock(start: i64) -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(start));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

#[tokio::test]
async fn sqlite_sessions_survive_reopening_the_file_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway-sessions.db");
    let s = Arc::new(session("alice", Some("s1"), crate::now()));
    {
        let store = SqliteSessionStore::open(&file, ring(1), LONG).await.unwrap();
        store.put(s.clone()).await.unwrap();
    }
    let reopened = SqliteSessionStore::open(&file, ring(1), LONG).await.unwrap();
    same(&reopened.get(&s.id).await.unwrap().expect("survives"), &s);
    // The key ring may have rotated meanwhile: the old key still opens what it sealed.
    let rotated =
        KeyRing::new(&[CookieKey { id: "k2".into(), key: [9; 32] }, CookieKey { id: "k1".into(), key: [1; 32] }])
            .unwrap();
    let rotated = SqliteSessionStore::open(&file, rotated, LONG).await.unwrap();
    same(&rotated.get(&s.id).await.unwrap().expect("opens under the retiring key"), &s);
}

#[tokio::test]
async fn sqlite_sweep_deletes_idle_and_too_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (now, clock) = fixed_clock(1_000_000);
    let lifetimes = Lifetimes { idle: 100, absolute: 1000 };
    let store = SqliteSessionStore::open_with_clock(&dir.path().join("s.db"), ring(1), lifetimes, clock).await.unwrap();
    let start = 1_000_000;
    let idle = Arc::new(session("alice", None, start));
    let mut busy = session("bob", None, start);
    busy.last_seen = start + 950;
    let busy = Arc::new(busy);
    let fresh = Arc::new(session("carol", None, start + 950));
    for s in [&idle, &busy, &fresh] {
        store.put(s.clone()).await.unwrap();
    }
    now.store(start + 99, Ordering::SeqCst);
    assert_eq!(store.sweep().await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 3);
    now.store(start + 100, Ordering::SeqCst);
    assert!(store.get(&idle.id).await.unwrap().is_none(), "idle timeout reached: invisible before the sweep");
    assert_eq!(store.sweep().await.unwrap(), 1);
    now.store(start + 1000, Ordering::SeqCst);
    // bob was used at +950, but the absolute lifetime ends at +1000 whatever the use.
    assert!(store.get(&busy.id).await.unwrap().is_none());
    assert_eq!(store.sweep().await.unwrap(), 1);
    assert_eq!(ids(&store.list(None).await.unwrap()), sorted(&[&fresh.id]));
}

#[tokio::test]
async fn sqlite_rows_cannot_be_swapped() {
    // A body copied onto another row (someone with write access to the file) does not open there.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    let store = SqliteSessionStore::open(&file, ring(1), LONG).await.unwrap();
    let victim = Arc::new(session("alice", None, crate::now()));
    let attacker = Arc::new(session("mallory", None, crate::now()));
    store.put(victim.clone()).await.unwrap();
    store.put(attacker.clone()).await.unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&file);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let victim_hash = super::sqlite::hash_id(&victim.id);
    let attacker_hash = super::sqlite::hash_id(&attacker.id);
    sqlx::query(
        "UPDATE gateway_sessions SET body = (SELECT body FROM gateway_sessions WHERE id_hash = ?) WHERE id_hash = ?",
    )
    .bind(victim_hash.as_slice())
    .bind(attacker_hash.as_slice())
    .execute(&pool)
    .await
    .unwrap();
    assert!(store.get(&attacker.id).await.unwrap().is_none());
    assert!(store.get(&victim.id).await.unwrap().is_some());
}

/// Counts the lookups that reach the store behind the cache.
struct CountingStore {
    inner: MemorySessionStore,
    gets: AtomicUsize,
}

#[async_trait]
impl SessionStore for CountingStore {
    async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(id).await
    }
    async fn put(&self, session: Arc<Session>) -> Result<(), StoreError> {
        self.inner.put(session).await
    }
    async fn remove(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        self.inner.remove(id).await
    }
    async fn remove_by_idp_sid(&self, idp_sid: &str) -> Result<usize, StoreError> {
        self.inner.remove_by_idp_sid(idp_sid).await
    }
    async fn remove_by_sub(&self, sub: &str) -> Result<usize, StoreError> {
        self.inner.remove_by_sub(sub).await
    }
    async fn list(&self, sub: Option<&str>) -> Result<Vec<Arc<Session>>, StoreError> {
        self.inner.list(sub).await
    }
    async fn count(&self) -> Result<u64, StoreError> {
        self.inner.count().await
    }
}

#[tokio::test]
async fn the_cache_answers_repeated_lookups_without_the_durable_store() {
    let durable = Arc::new(CountingStore {
        inner: MemorySessionStore::new(100, Duration::from_secs(60)),
        gets: AtomicUsize::new(0),
    });
    let cached = CachedSessionStore::new(durable.clone(), 100, Duration::from_secs(60));
    let s = Arc::new(session("alice", None, crate::now()));
    // A session written before this process started (a restart): the first lookup reads it through.
    durable.inner.put(s.clone()).await.unwrap();
    for _ in 0..5 {
        assert!(cached.get(&s.id).await.unwrap().is_some());
    }
    assert_eq!(durable.gets.load(Ordering::SeqCst), 1, "read through once, then from memory");
    // Written through: a put is served from memory at once.
    let t = Arc::new(session("bob", None, crate::now()));
    cached.put(t.clone()).await.unwrap();
    assert!(cached.get(&t.id).await.unwrap().is_some());
    assert_eq!(durable.gets.load(Ordering::SeqCst), 1);
    assert!(durable.inner.get(&t.id).await.unwrap().is_some(), "and in the durable store");
    // Removal reaches both.
    cached.remove(&t.id).await.unwrap();
    assert!(durable.inner.get(&t.id).await.unwrap().is_none());
    assert!(cached.get(&t.id).await.unwrap().is_none());
    assert_eq!(cached.cached_count().await, 1);
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let durable = Arc::new(SqliteSessionStore::open(&dir.path().join("s.db"), ring(1), LONG).await.unwrap());
    let cached = CachedSessionStore::new(durable, 10, Duration::from_secs(60));
    let sessions: Vec<Arc<Session>> = (0..50).map(|_| Arc::new(session("alice", None, crate::now()))).collect();
    for s in &sessions {
        cached.put(s.clone()).await.unwrap();
    }
    assert!(cached.cached_count().await <= 10);
    // Every session is still there, read through from the file when evicted from memory.
    for s in &sessions {
        assert!(cached.get(&s.id).await.unwrap().is_some());
    }
    assert_eq!(cached.count().await.unwrap(), 50);
}
