//! Session cookies as the gateway opens them (catalogue BFF-RU02, CRYPT-19…22): the request's `Cookie` header
//! lines are parsed (`cookies::parse`), the server-mode cookie is opened with the key ring (`seal::KeyRing::open`,
//! as `Gateway::opened_session_cookie` does) and the cookie-mode chunks are reassembled and opened
//! (`chunks::present`, `chunks::open`).
//!
//! Input: `Cookie` header values, one per line. A forged value must never open; nothing may panic.
//! Then the same bytes as a plaintext make two round trips (the rustls way: decode → encode): seal → open, and
//! chunk seal → `Set-Cookie` lines → the browser's `Cookie` header → chunk open; each must give the bytes back.

#![no_main]

use gatehouse_bff::settings::SameSite;
use gatehouse_bff::{chunks, cookies, seal};
use gatehouse_fuzz::{COOKIE_NAME, key_ring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ring = key_ring();
    let text = String::from_utf8_lossy(data);
    let header_values: Vec<&str> = text.split('\n').collect();
    let pairs = cookies::parse(&header_values);

    // Server mode: the sealed session id (any cookie of ours, opened for its own name).
    for (name, value) in &pairs {
        if let Some(plaintext) = ring.open(name, value) {
            // Only a value sealed under a fixture key opens, and then its key id is known.
            assert!(value.starts_with("k1.") || value.starts_with("k2."), "opened a value of no ring key");
            let _id = String::from_utf8(plaintext);
        }
    }

    // Cookie mode: the chunk set.
    let present = chunks::present(COOKIE_NAME, &pairs);
    assert!(present.iter().all(|&i| i < chunks::MAX_CHUNKS));
    if let Ok(Some(plaintext)) = chunks::open(&ring, COOKIE_NAME, &pairs) {
        assert!(!present.is_empty());
        assert!(plaintext.len() <= chunks::MAX_CHUNKS * chunks::CHUNK_LEN);
    }

    // Round trip 1: seal → open.
    let sealed = ring.seal(COOKIE_NAME, data);
    assert_eq!(sealed.len(), ring.sealed_len(data.len()));
    let opened = if sealed.len() <= seal::MAX_SEALED_LEN {
        ring.open(COOKIE_NAME, &sealed)
    } else {
        ring.open_within(COOKIE_NAME, &sealed, sealed.len())
    };
    assert_eq!(opened.as_deref(), Some(data), "seal → open lost the plaintext");

    // Round trip 2: chunk seal → Set-Cookie → Cookie header → chunk open.
    if let Ok(values) = chunks::seal(&ring, COOKIE_NAME, data) {
        let lines = chunks::set_cookies(COOKIE_NAME, &values, SameSite::Strict, &present);
        let mut jar: Vec<String> = Vec::new();
        for line in &lines {
            let cookie = cookie::Cookie::parse(line.as_str()).expect("the gateway writes parsable Set-Cookie lines");
            assert!(line.len() < 4096, "RFC 6265 §6.1: a Set-Cookie line over 4096 bytes");
            if !cookie.value().is_empty() {
                jar.push(format!("{}={}", cookie.name(), cookie.value()));
            }
        }
        let browser_header = jar.join("; ");
        let returned = cookies::parse(&[browser_header.as_str()]);
        assert_eq!(chunks::open(&ring, COOKIE_NAME, &returned), Ok(Some(data.to_vec())), "chunk round trip failed");
    }
});
