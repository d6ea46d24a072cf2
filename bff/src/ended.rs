//! The list of ended sessions, for cookie-mode sessions (catalogue DD7, BFF-LO03, CRYPT-16; ASVS 5.0 7.4.1:
//! "applications using self-contained tokens will need … a list of terminated tokens").
//!
//! A cookie-mode session lives in the browser's sealed cookie, so logging out cannot delete it: a copy of the
//! cookie taken before the logout still opens. The gateway therefore remembers which sessions ended, and a
//! cookie naming one of them is anonymous. An entry is kept until no session it can match is still within its
//! absolute lifetime, so the list stays bounded by (logouts per absolute lifetime).
//!
//! `EndedSessions` is the seam for a shared list (Redis, so every gateway node sees a logout);
//! `MemoryEndedSessions` keeps it in this process's memory: **per process, lost at restart**, and not shared
//! between gateway nodes. It has no size bound on purpose: evicting an entry would bring a logged-out session
//! back to life. Entries only come from authenticated logouts (a live session's `sid`, or a verified
//! back-channel logout token) and expire on their own.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::session::{Session, StoreError};

/// What ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// One gateway session (logout, login over an old session, refused refresh), by its session id.
    Session { id: String },
    /// Every session of a token-service session (back-channel logout naming `sid`).
    IdpSession { sid: String },
    /// Every session of user `sub` created at or before `at` (back-channel logout naming only `sub`). Sessions
    /// created within the same second as the logout are ended too (fail closed: `created_at` has 1 s precision).
    UserUntil { sub: String, at: i64 },
}

/// Where the list lives. Implementations must be safe to share between worker threads.
#[async_trait]
pub trait EndedSessions: Send + Sync {
    /// Records `ended`, kept at least `keep_for` (the longest a matching session can still be alive).
    async fn record(&self, ended: Ended, keep_for: Duration) -> Result<(), StoreError>;
    /// True when `session` matches a recorded entry.
    async fn is_ended(&self, session: &Session) -> Result<bool, StoreError>;
}

/// The in-process list: a moka cache whose entries each expire after their own `keep_for`.
pub struct MemoryEndedSessions {
    entries: moka::future::Cache<String, Entry>,
}

#[derive(Clone, Copy)]
struct Entry {
    /// For `UserUntil`: sessions created at or before this are ended. `i64::MAX` for the other kinds.
    until: i64,
    keep_for: Duration,
}

struct PerEntry;

impl moka::Expiry<String, Entry> for PerEntry {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _created_at: Instant) -> Option<Duration> {
        Some(entry.keep_for)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.keep_for)
    }
}

impl Default for MemoryEndedSessions {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEndedSessions {
    pub fn new() -> Self {
        Self { entries: moka::future::Cache::builder().expire_after(PerEntry).build() }
    }

    /// How many entries are held (approximate: expired entries leave lazily).
    pub async fn len(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

/// Cache keys: a kind prefix and NUL (which none of the values contains: ids are base64url, `sid`/`sub` are
/// JSON strings from verified tokens) so kinds never collide.
fn key(kind: &str, value: &str) -> String {
    format!("{kind}\0{value}")
}

#[async_trait]
impl EndedSessions for MemoryEndedSessions {
    async fn record(&self, ended: Ended, keep_for: Duration) -> Result<(), StoreError> {
        match ended {
            Ended::Session { id } => {
                self.entries.insert(key("id", &id), Entry { until: i64::MAX, keep_for }).await;
            }
            Ended::IdpSession { sid } => {
                self.entries.insert(key("sid", &sid), Entry { until: i64::MAX, keep_for }).await;
            }
            Ended::UserUntil { sub, at } => {
                // A later logout of the same user moves the line forward, never back.
                self.entries
                    .entry(key("sub", &sub))
                    .and_upsert_with(|existing| {
                        let until = existing.map_or(at, |e| e.into_value().until.max(at));
                        std::future::ready(Entry { until, keep_for })
                    })
                    .await;
            }
        }
        Ok(())
    }

    async fn is_ended(&self, session: &Session) -> Result<bool, StoreError> {
        if self.entries.contains_key(&key("id", &session.id)) {
            return Ok(true);
        }
        if let Some(sid) = &session.idp_sid
            && self.entries.contains_key(&key("sid", sid))
        {
            return Ok(true);
        }
        Ok(self.entries.get(&key("sub", &session.sub)).await.is_some_and(|e| session.created_at <= e.until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Tokens;

    fn session(id: &str, sub: &str, idp_sid: Option<&str>, created_at: i64) -> Session {
        Session {
            id: id.into(),
            sub: sub.into(),
            sid: "s".into(),
            idp_sid: idp_sid.map(Into::into),
            claims: serde_json::Map::new(),
            id_token: "id".into(),
            tokens: Tokens {
                access_token: "at".into(),
                access_token_expires_at: 0,
                refresh_token: None,
                scope: None,
                resources: Vec::new(),
            },
            dpop_key: vec![],
            created_at,
            last_seen: created_at,
        }
    }

    const DAY: Duration = Duration::from_secs(86400);

    #[tokio::test]
    async fn by_session_id() {
        let list = MemoryEndedSessions::new();
        let a = session("a", "alice", None, 10);
        let b = session("b", "alice", None, 10);
        list.record(Ended::Session { id: "a".into() }, DAY).await.unwrap();
        assert!(list.is_ended(&a).await.unwrap());
        assert!(!list.is_ended(&b).await.unwrap(), "another session of the same user lives");
    }

    #[tokio::test]
    async fn by_idp_sid() {
        let list = MemoryEndedSessions::new();
        list.record(Ended::IdpSession { sid: "s1".into() }, DAY).await.unwrap();
        assert!(list.is_ended(&session("a", "alice", Some("s1"), 10)).await.unwrap());
        assert!(list.is_ended(&session("b", "bob", Some("s1"), 10)).await.unwrap());
        assert!(!list.is_ended(&session("c", "alice", Some("s2"), 10)).await.unwrap());
        assert!(!list.is_ended(&session("d", "alice", None, 10)).await.unwrap());
    }

    #[tokio::test]
    async fn by_user_before_a_time_and_the_line_only_moves_forward() {
        let list = MemoryEndedSessions::new();
        list.record(Ended::UserUntil { sub: "alice".into(), at: 100 }, DAY).await.unwrap();
        assert!(list.is_ended(&session("a", "alice", None, 50)).await.unwrap());
        assert!(list.is_ended(&session("a", "alice", None, 100)).await.unwrap(), "same second: ended");
        assert!(!list.is_ended(&session("b", "alice", None, 101)).await.unwrap(), "a later login lives");
        assert!(!list.is_ended(&session("c", "bob", None, 50)).await.unwrap());
        list.record(Ended::UserUntil { sub: "alice".into(), at: 60 }, DAY).await.unwrap();
        assert!(list.is_ended(&session("a", "alice", None, 90)).await.unwrap(), "an older line does not revive");
        list.record(Ended::UserUntil { sub: "alice".into(), at: 200 }, DAY).await.unwrap();
        assert!(list.is_ended(&session("b", "alice", None, 150)).await.unwrap());
    }

    #[tokio::test]
    async fn entries_expire_after_their_own_keep_for() {
        let list = MemoryEndedSessions::new();
        list.record(Ended::Session { id: "short".into() }, Duration::from_millis(50)).await.unwrap();
        list.record(Ended::Session { id: "long".into() }, DAY).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!list.is_ended(&session("short", "alice", None, 0)).await.unwrap());
        assert!(list.is_ended(&session("long", "alice", None, 0)).await.unwrap());
        assert!(!list.is_empty().await);
    }
}
