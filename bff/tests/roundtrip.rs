//! Round-trip properties of the gateway's cookie codecs (proptest): seal → open under a key ring
//! (`seal::KeyRing`, catalogue BFF-RU02, CRYPT-12) and cookie-mode chunk encode → decode through real
//! `Set-Cookie` / `Cookie` headers (`chunks`, CRYPT-19…22). The hostile-input side of the same code is fuzzed
//! in `fuzz/` (`session_cookie`).
//!
//!     cargo test -p gatehouse-bff --test roundtrip

use gatehouse_bff::chunks::{self, CHUNK_LEN, MAX_CHUNKS};
use gatehouse_bff::cookies;
use gatehouse_bff::seal::KeyRing;
use gatehouse_bff::settings::{CookieKey, SameSite};
use proptest::prelude::*;

const NAME: &str = "__Host-gatehouse";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

fn ring(keys: &[(String, [u8; 32])]) -> KeyRing {
    let keys: Vec<CookieKey> = keys.iter().map(|(id, key)| CookieKey { id: id.clone(), key: *key }).collect();
    KeyRing::new(&keys).unwrap()
}

/// One to three keys with distinct valid ids (1–16 characters of `[A-Za-z0-9_-]`), newest first.
fn keys() -> impl Strategy<Value = Vec<(String, [u8; 32])>> {
    proptest::collection::btree_map("[A-Za-z0-9_-]{1,16}", any::<[u8; 32]>(), 1..=3)
        .prop_map(|keys| keys.into_iter().collect())
        .prop_shuffle()
}

/// What the browser sends back after receiving `set_cookie_lines`: `name=value` pairs of the cookies set (the
/// deleted ones, empty with `Max-Age=0`, left out), joined as one `Cookie` header (RFC 6265 §5.4).
fn cookie_header(set_cookie_lines: &[String]) -> String {
    let mut jar: Vec<(String, String)> = Vec::new();
    for line in set_cookie_lines {
        let cookie = cookie::Cookie::parse(line.as_str()).unwrap();
        jar.retain(|(name, _)| name != cookie.name());
        if cookie.max_age() != Some(cookie::time::Duration::ZERO) {
            jar.push((cookie.name().to_owned(), cookie.value().to_owned()));
        }
    }
    jar.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
}

proptest! {
    #![proptest_config(config(128))]

    /// Any plaintext sealed for any purpose opens to itself under the ring, and under no other purpose.
    #[test]
    fn seal_open(
        keys in keys(),
        purpose in "[ -~]{0,40}",
        other_purpose in "[ -~]{0,40}",
        plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let ring = ring(&keys);
        let sealed = ring.seal(&purpose, &plaintext);
        prop_assert_eq!(sealed.len(), ring.sealed_len(plaintext.len()));
        prop_assert!(sealed.starts_with(&format!("{}.", keys[0].0)), "the newest key seals");
        prop_assert_eq!(ring.open(&purpose, &sealed), Some(plaintext.clone()));
        if other_purpose != purpose {
            prop_assert_eq!(ring.open(&other_purpose, &sealed), None);
        }
    }

    /// CRYPT-12: after a rotation (a new key in front) what the old ring sealed still opens and the new key
    /// seals; once the old keys are retired (removed) it no longer opens.
    #[test]
    fn seal_open_across_a_rotation(
        keys in keys(),
        new_key in any::<[u8; 32]>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        const NEW_ID: &str = "rotated-new";
        prop_assume!(keys.iter().all(|(id, _)| id != NEW_ID));
        let sealed = ring(&keys).seal(NAME, &plaintext);
        let mut rotated_keys = vec![(NEW_ID.to_owned(), new_key)];
        rotated_keys.extend(keys.iter().cloned());
        let rotated = ring(&rotated_keys);
        prop_assert_eq!(rotated.open(NAME, &sealed), Some(plaintext.clone()));
        prop_assert!(rotated.seal(NAME, &plaintext).starts_with("rotated-new."));
        let retired = ring(&[(NEW_ID.to_owned(), new_key)]);
        prop_assert_eq!(retired.open(NAME, &sealed), None);
    }

    /// CRYPT-19: any value that fits in `MAX_CHUNKS` chunks goes out as `Set-Cookie` lines under 4096 bytes
    /// (RFC 6265 §6.1) and comes back from the browser's `Cookie` header as itself, whatever the chunks the
    /// browser held before (the stale ones are deleted, CRYPT-21).
    #[test]
    fn chunk_encode_decode(
        keys in keys(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..(MAX_CHUNKS * CHUNK_LEN * 3 / 4)),
        held_before in proptest::collection::btree_set(0..MAX_CHUNKS, 0..=MAX_CHUNKS),
    ) {
        let ring = ring(&keys);
        let present: Vec<usize> = held_before.into_iter().collect();
        match chunks::seal(&ring, NAME, &plaintext) {
            Ok(values) => {
                prop_assert!(!values.is_empty() && values.len() <= MAX_CHUNKS);
                let lines = chunks::set_cookies(NAME, &values, SameSite::Lax, &present);
                prop_assert!(lines.iter().all(|line| line.len() < 4096));
                let header = cookie_header(&lines);
                let pairs = cookies::parse(&[header.as_str()]);
                prop_assert_eq!(chunks::present(NAME, &pairs), (0..values.len()).collect::<Vec<_>>());
                prop_assert_eq!(chunks::open(&ring, NAME, &pairs), Ok(Some(plaintext)));
            }
            // CRYPT-22: only a value that needs more than MAX_CHUNKS chunks is refused.
            Err(chunks::TooLarge) => prop_assert!(ring.sealed_len(plaintext.len()) > MAX_CHUNKS * CHUNK_LEN),
        }
    }

    /// RFC 6265 §4.1.1: a cookie value the gateway writes is read back unchanged from a `Cookie` header.
    #[test]
    fn cookie_set_parse(value in "[A-Za-z0-9._~-]{0,200}", other in "[a-z]{1,8}") {
        let line = cookies::set(NAME, &value, SameSite::Strict, Some(60));
        let header = format!("{other}=1; {}", cookie_header(&[line]));
        let pairs = cookies::parse(&[header.as_str()]);
        prop_assert_eq!(pairs, vec![(other, "1".to_owned()), (NAME.to_owned(), value)]);
    }
}
