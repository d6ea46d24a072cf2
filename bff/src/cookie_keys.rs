//! The cookie key ring of a running gateway, replaceable without a restart (`gatehouse serve` re-reads
//! `bff.cookie.keys` / `keys_file` on SIGHUP and calls `replace`).
//!
//! One `CookieKeys` is shared by everything that seals with the ring: session cookies, login transaction
//! cookies, cookie-mode chunks and the SQLite session store's sealed bodies. A replacement is validated first
//! (`seal::KeyRing::new`: at least one key, ids well-formed and unique); an invalid list changes nothing. A valid
//! one is swapped in whole and atomically (`arc_swap`): each request works on the snapshot it loaded, so a value
//! is sealed and measured (`KeyRing::sealed_len`) under one ring, and connections are never dropped.
//!
//! The usual rotation is two reloads: put a new key first (it seals; the old one still opens; cookies sealed under
//! an older key are re-sealed as they come by, catalogue CRYPT-12), later drop the old key (retired: what it
//! sealed no longer opens).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::seal::{KeyRing, KeyRingError};
use crate::settings::CookieKey;

/// The current key ring; `replace` swaps it.
pub struct CookieKeys {
    ring: ArcSwap<KeyRing>,
}

/// What a replacement changed, by key id (never key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The key that sealed before and the one that seals now.
    pub sealing_before: String,
    pub sealing_now: String,
    /// Ids of the previous ring that are no longer in the ring: what they sealed no longer opens.
    pub retired: Vec<String>,
}

impl CookieKeys {
    pub fn new(ring: KeyRing) -> Self {
        Self { ring: ArcSwap::from_pointee(ring) }
    }

    /// The ring as of now. Hold the snapshot for the whole of one seal or open.
    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }

    /// Validates `keys` (newest first) and swaps them in; on error the current ring stays.
    pub fn replace(&self, keys: &[CookieKey]) -> Result<Replaced, KeyRingError> {
        let next = KeyRing::new(keys)?;
        let sealing_now = next.current_id().to_owned();
        let previous = self.ring.swap(Arc::new(next));
        let retired = previous.ids().filter(|id| !keys.iter().any(|k| k.id == *id)).map(str::to_owned).collect();
        Ok(Replaced { sealing_before: previous.current_id().to_owned(), sealing_now, retired })
    }
}

impl From<KeyRing> for Arc<CookieKeys> {
    fn from(ring: KeyRing) -> Self {
        Arc::new(CookieKeys::new(ring))
    }
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.current().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PURPOSE: &str = "__Host-gatehouse";

    fn key(id: &str, byte: u8) -> CookieKey {
        CookieKey { id: id.to_owned(), key: [byte; 32] }
    }

    #[test]
    fn a_new_key_first_seals_and_the_old_one_still_opens() {
        let keys = CookieKeys::new(KeyRing::new(&[key("k1", 1)]).unwrap());
        let before = keys.current().seal(PURPOSE, b"before");
        let replaced = keys.replace(&[key("k2", 2), key("k1", 1)]).unwrap();
        assert_eq!(replaced, Replaced { sealing_before: "k1".into(), sealing_now: "k2".into(), retired: Vec::new() });
        let ring = keys.current();
        assert_eq!(ring.open(PURPOSE, &before).as_deref(), Some(&b"before"[..]));
        let after = ring.seal(PURPOSE, b"after");
        assert!(after.starts_with("k2."), "{after}");

        // Dropping k1 retires it: what it sealed no longer opens, what k2 sealed still does.
        let replaced = keys.replace(&[key("k2", 2)]).unwrap();
        assert_eq!(replaced.retired, ["k1"]);
        assert_eq!(keys.current().open(PURPOSE, &before), None);
        assert_eq!(keys.current().open(PURPOSE, &after).as_deref(), Some(&b"after"[..]));
    }

    #[test]
    fn an_invalid_list_changes_nothing() {
        let keys = CookieKeys::new(KeyRing::new(&[key("k1", 1)]).unwrap());
        let sealed = keys.current().seal(PURPOSE, b"x");
        for bad in [vec![], vec![key("k2", 2), key("k2", 3)], vec![key("bad id", 2)]] {
            assert!(keys.replace(&bad).is_err(), "{bad:?}");
            assert_eq!(keys.current().current_id(), "k1");
            assert!(keys.current().open(PURPOSE, &sealed).is_some());
        }
    }

    #[test]
    fn a_snapshot_taken_before_a_replacement_stays_whole() {
        let keys = CookieKeys::new(KeyRing::new(&[key("k1", 1)]).unwrap());
        let snapshot = keys.current();
        keys.replace(&[key("longer-key-id", 2)]).unwrap();
        // The snapshot still measures and seals under k1, so a length computed before sealing stays right.
        let sealed = snapshot.seal(PURPOSE, b"abc");
        assert_eq!(sealed.len(), snapshot.sealed_len(3));
        assert!(sealed.starts_with("k1."));
        assert!(keys.current().seal(PURPOSE, b"abc").starts_with("longer-key-id."));
    }

    #[test]
    fn debug_shows_ids_only() {
        let keys = CookieKeys::new(KeyRing::new(&[key("k1", 0xab)]).unwrap());
        let debug = format!("{keys:?}");
        assert!(debug.contains("k1") && debug.contains("redacted"), "{debug}");
    }
}
