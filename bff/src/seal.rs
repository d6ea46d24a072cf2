//! Sealing of cookie values: AES-256-GCM (NIST SP 800-38D) authenticated encryption under a key ring, so the
//! gateway can rotate its cookie keys without logging everyone out.
//!
//! A sealed value is `<key id>.<base64url(96-bit random nonce || ciphertext || 128-bit tag)>`. The first key of
//! the ring seals; every key of the ring opens. A key removed from the ring (retired) no longer opens anything.
//! The associated data binds the value to its key id and its *purpose* (the cookie name): a value sealed for one
//! cookie cannot be replayed as another (catalogue BFF-RU02, RFC 9700 §4.7.1 "protect state against tampering").
//!
//! `open` treats its input as hostile: anything wrong yields `None`, never a panic and never a reason (the
//! caller has nothing to tell the client but "no session").

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

use crate::settings::CookieKey;
use gatehouse_proto::b64;

/// NIST SP 800-38D §8.2.2: a 96-bit nonce from a random bit generator.
const NONCE_LEN: usize = 12;
/// AES-GCM authentication tag length (full 128 bits).
const TAG_LEN: usize = 16;
/// Longest sealed text `open` looks at. Browsers keep cookies of at most 4096 bytes, so anything longer is not
/// ours; refusing it early bounds the work an attacker can cause.
pub const MAX_SEALED_LEN: usize = 8192;
/// Longest key id.
const MAX_ID_LEN: usize = 16;

/// The cookie keys: the first seals, all open. `Debug` shows only the key ids.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

struct RingKey {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("ids", &ids).field("keys", &"[redacted]").finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("at least one cookie key is required")]
    Empty,
    #[error("cookie key id `{0}` is used twice")]
    DuplicateId(String),
    #[error("cookie key id `{0}` must be 1 to 16 characters of [A-Za-z0-9_-]")]
    BadId(String),
}

impl KeyRing {
    /// Builds the ring from the configured keys, newest first. Ids are 1–16 characters of `[A-Za-z0-9_-]` (so a
    /// sealed value splits unambiguously at its first `.`) and unique.
    pub fn new(keys: &[CookieKey]) -> Result<Self, KeyRingError> {
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        let mut ring = Vec::with_capacity(keys.len());
        for key in keys {
            if !valid_id(&key.id) {
                return Err(KeyRingError::BadId(key.id.clone()));
            }
            if ring.iter().any(|k: &RingKey| k.id == key.id) {
                return Err(KeyRingError::DuplicateId(key.id.clone()));
            }
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.key));
            ring.push(RingKey { id: key.id.clone(), cipher });
        }
        Ok(Self { keys: ring })
    }

    /// The id of the key that seals (the newest).
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every key id, newest first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The length of `seal(_, plaintext)` for a plaintext of `plaintext_len` bytes under the current key (callers
    /// that split sealed values decide how many pieces before sealing).
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        let blob = NONCE_LEN + plaintext_len + TAG_LEN;
        // Unpadded base64url: 4 characters per 3 bytes, the last group shortened.
        self.keys[0].id.len() + 1 + (blob * 4).div_ceil(3)
    }

    /// `<key id>.<base64url(96-bit random nonce || ciphertext+tag)>`; `purpose` (e.g. the cookie name) is the AEAD
    /// associated data, so a value sealed for one cookie cannot be opened as another.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        self.seal_with_nonce(purpose, plaintext, rand::random::<[u8; NONCE_LEN]>())
    }

    /// `seal` with a caller-chosen nonce (tests use fixed ones). A nonce must never repeat under one key.
    fn seal_with_nonce(&self, purpose: &str, plaintext: &[u8], nonce: [u8; NONCE_LEN]) -> String {
        let key = &self.keys[0];
        let aad = associated_data(&key.id, purpose);
        // Encryption only fails for plaintexts beyond GCM's 2^36-byte limit, far beyond any cookie.
        let ciphertext =
            key.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad }).unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{}.{}", key.id, b64::encode(blob))
    }

    /// None for anything wrong: unknown (retired) key id, bad base64, truncated, tampered, wrong purpose. Never
    /// panics on any input.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        self.open_within(purpose, sealed, MAX_SEALED_LEN)
    }

    /// `open` for sealed values longer than a cookie, up to `max_len` characters: the session store seals whole
    /// sessions (tokens, claims, DPoP key), which may exceed `MAX_SEALED_LEN`.
    pub fn open_within(&self, purpose: &str, sealed: &str, max_len: usize) -> Option<Vec<u8>> {
        if sealed.len() > max_len {
            return None;
        }
        let (id, body) = sealed.split_once('.')?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        let blob = b64::decode(body)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let aad = associated_data(&key.id, purpose);
        // SP 800-38D §7.2: the tag is verified before any plaintext is released.
        key.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad }).ok()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `gatehouse-seal-v1 NUL <key id> NUL <purpose>`: binds the value to its key id and purpose. The key id cannot
/// contain NUL, so the encoding is unambiguous.
fn associated_data(id: &str, purpose: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(20 + id.len() + purpose.len());
    aad.extend_from_slice(b"gatehouse-seal-v1\0");
    aad.extend_from_slice(id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const PURPOSE: &str = "__Host-gatehouse";

    fn key(id: &str, byte: u8) -> CookieKey {
        CookieKey { id: id.to_owned(), key: [byte; 32] }
    }

    fn ring(keys: &[(&str, u8)]) -> KeyRing {
        let keys: Vec<CookieKey> = keys.iter().map(|(id, byte)| key(id, *byte)).collect();
        KeyRing::new(&keys).unwrap()
    }

    #[test]
    fn round_trip() {
        let ring = ring(&[("k1", 1)]);
        for plaintext in [&b""[..], b"x", b"session-id-0123456789", &[0u8; 3000]] {
            let sealed = ring.seal(PURPOSE, plaintext);
            assert!(sealed.starts_with("k1."), "{sealed}");
            assert_eq!(ring.open(PURPOSE, &sealed).as_deref(), Some(plaintext));
        }
    }

    #[test]
    fn sealed_len_predicts_the_length() {
        let ring = ring(&[("k1", 1)]);
        for len in [0, 1, 2, 3, 4, 100, 4000, 4001, 4002] {
            assert_eq!(ring.seal(PURPOSE, &vec![7u8; len]).len(), ring.sealed_len(len), "{len}");
        }
    }

    #[test]
    fn sealing_twice_gives_different_values() {
        let ring = ring(&[("k1", 1)]);
        assert_ne!(ring.seal(PURPOSE, b"same"), ring.seal(PURPOSE, b"same"));
    }

    #[test]
    fn sealed_value_does_not_contain_the_plaintext() {
        let ring = ring(&[("k1", 1)]);
        let sealed = ring.seal(PURPOSE, b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert!(!sealed.contains("AAAAAAAAAAAA"));
        let blob = b64::decode(sealed.split_once('.').unwrap().1).unwrap();
        assert_eq!(blob.len(), NONCE_LEN + 32 + TAG_LEN);
    }

    #[test]
    fn rotation_old_key_opens_newest_seals() {
        let old = ring(&[("old", 1)]);
        let sealed_before = old.seal(PURPOSE, b"before");
        let rotated = ring(&[("new", 2), ("old", 1)]);
        assert_eq!(rotated.current_id(), "new");
        assert_eq!(rotated.open(PURPOSE, &sealed_before).as_deref(), Some(&b"before"[..]));
        let sealed_after = rotated.seal(PURPOSE, b"after");
        assert!(sealed_after.starts_with("new."));
        assert_eq!(rotated.open(PURPOSE, &sealed_after).as_deref(), Some(&b"after"[..]));
        // The old ring does not know the new key.
        assert_eq!(old.open(PURPOSE, &sealed_after), None);
    }

    #[test]
    fn retired_key_no_longer_opens() {
        let rotated = ring(&[("new", 2), ("old", 1)]);
        let sealed_old = ring(&[("old", 1)]).seal(PURPOSE, b"x");
        assert!(rotated.open(PURPOSE, &sealed_old).is_some());
        let retired = ring(&[("new", 2)]);
        assert_eq!(retired.open(PURPOSE, &sealed_old), None);
    }

    #[test]
    fn key_id_is_authenticated() {
        // Same key material under two ids: relabelling a value with the other id must not open.
        let ring = ring(&[("a", 7), ("b", 7)]);
        let sealed = ring.seal(PURPOSE, b"x");
        let relabelled = format!("b{}", &sealed[1..]);
        assert_eq!(ring.open(PURPOSE, &relabelled), None);
    }

    #[test]
    fn catalogue_bff_ru02_every_byte_flip_is_refused() {
        let ring = ring(&[("k1", 1)]);
        let sealed = ring.seal_with_nonce(PURPOSE, b"tamper me", [9; NONCE_LEN]);
        let (id, body) = sealed.split_once('.').unwrap();
        let blob = b64::decode(body).unwrap();
        for i in 0..blob.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = blob.clone();
                bad[i] ^= mask;
                let tampered = format!("{id}.{}", b64::encode(&bad));
                assert_eq!(ring.open(PURPOSE, &tampered), None, "byte {i} mask {mask:#x}");
            }
        }
        // Every character of the text form replaced by another base64url character (or a separator).
        let bytes = sealed.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'B', b'_', b'-', b'.', b'='] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut bad = bytes.to_vec();
                bad[i] = replacement;
                let tampered = String::from_utf8(bad).unwrap();
                assert_eq!(ring.open(PURPOSE, &tampered), None, "char {i} -> {}", replacement as char);
            }
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let ring = ring(&[("k1", 1)]);
        let sealed = ring.seal(PURPOSE, b"truncate me");
        for len in 0..sealed.len() {
            assert_eq!(ring.open(PURPOSE, &sealed[..len]), None, "prefix of {len}");
        }
        // Dropping bytes from the front of the ciphertext, too.
        let (id, body) = sealed.split_once('.').unwrap();
        let blob = b64::decode(body).unwrap();
        for start in 1..blob.len() {
            assert_eq!(ring.open(PURPOSE, &format!("{id}.{}", b64::encode(&blob[start..]))), None);
        }
        // And appending.
        assert_eq!(ring.open(PURPOSE, &format!("{sealed}A")), None);
        assert_eq!(ring.open(PURPOSE, &format!("{id}.{}", b64::encode([&blob[..], &[0]].concat()))), None);
    }

    #[test]
    fn wrong_purpose_is_refused() {
        let ring = ring(&[("k1", 1)]);
        let sealed = ring.seal("__Host-gatehouse-tx-abc", b"x");
        assert_eq!(ring.open(PURPOSE, &sealed), None);
        assert_eq!(ring.open("", &sealed), None);
        assert_eq!(ring.open("__Host-gatehouse-tx-abd", &sealed), None);
        assert!(ring.open("__Host-gatehouse-tx-abc", &sealed).is_some());
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let ring = ring(&[("k1", 1)]);
        let huge = format!("k1.{}", "A".repeat(1_000_000));
        let huge_valid_b64 = format!("k1.{}", b64::encode(vec![0u8; 4000]));
        let inputs = [
            "",
            ".",
            "k1",
            "k1.",
            "k1..",
            ".k1",
            "k1.!!!!",
            "k1.AAAA",
            "k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "k1.+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/",
            "unknown.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "k1.\u{0}\u{1}\u{ff}",
            "k1.ü€𝄞",
            "\u{feff}k1.AAAA",
            huge.as_str(),
            huge_valid_b64.as_str(),
        ];
        for input in inputs {
            assert_eq!(ring.open(PURPOSE, input), None, "{:.40}", input);
        }
    }

    #[test]
    fn ring_validation() {
        assert!(matches!(KeyRing::new(&[]), Err(KeyRingError::Empty)));
        assert!(matches!(KeyRing::new(&[key("a", 1), key("a", 2)]), Err(KeyRingError::DuplicateId(id)) if id == "a"));
        for bad in ["", "a.b", "a b", "ü", "12345678901234567", "a\0"] {
            assert!(matches!(KeyRing::new(&[key(bad, 1)]), Err(KeyRingError::BadId(id)) if id == bad), "{bad:?}");
        }
        for good in ["a", "2024-06_k1", "1234567890123456"] {
            assert!(KeyRing::new(&[key(good, 1)]).is_ok(), "{good}");
        }
    }

    #[test]
    fn debug_redacts_keys() {
        let ring = ring(&[("k1", 0xab)]);
        let debug = format!("{ring:?}");
        assert!(debug.contains("k1") && debug.contains("redacted"), "{debug}");
        assert!(!debug.to_lowercase().contains("ab, ab") && !debug.contains("171"), "{debug}");
    }
}
