//! Sealed values too big for one cookie, split over several: `<name>`, `<name>.1`, `<name>.2`… (cookie-mode
//! sessions, catalogue §H CRYPT-19…22).
//!
//! The whole value is sealed with ONE AEAD (`seal::KeyRing`, AES-256-GCM) and the sealed text is then cut into
//! pieces of `CHUNK_LEN` characters. The number of chunks is part of the associated data (purpose
//! `<name>/<count>`), so reassembly refuses, without a second thought:
//! - a missing, reordered, duplicated or re-split chunk (the ciphertext changes: the tag fails),
//! - an extra chunk, or a dropped last one (the count changes: the associated data differs),
//! - chunks mixed from two sealings (each has its own nonce and tag),
//! - a server-mode cookie or a transaction cookie replayed as a chunk set (other purposes).
//!
//! Hostile input is bounded before any decryption: at most `MAX_CHUNKS` chunks of at most `CHUNK_LEN`
//! characters each (CRYPT-22: a cookie bomb costs a string scan, never unbounded decryption or allocation).
//!
//! Every chunk is a `__Host-` cookie (`cookies::set`): `Secure; HttpOnly; Path=/; SameSite=…`, and each whole
//! `Set-Cookie` line stays under 4096 bytes (RFC 6265 §6.1, BFF-CK07). When a value is re-sealed into fewer
//! chunks, the obsolete higher chunks the browser still holds are deleted in the same response (CRYPT-21);
//! deletions use the same name with `Path=/; Secure` (BFF-CK08).
//!
//! Plain functions, no I/O: callers hand in the request's cookie pairs and get `Set-Cookie` lines back.

use crate::cookies;
use crate::seal::KeyRing;
use crate::settings::SameSite;

/// Characters of sealed text per chunk. With a cookie name of at most 64 characters (the configuration's limit)
/// plus `.N` and the attributes (`HttpOnly; SameSite=Strict; Secure; Path=/`, < 60 bytes), a `Set-Cookie` line
/// stays well under 4096 bytes.
pub const CHUNK_LEN: usize = 3600;
/// Most chunks a value may use: 18 000 characters of sealed text (≈ 13 KB of plaintext). More is refused when
/// sealing and treated as tampering when opening.
pub const MAX_CHUNKS: usize = 4;

// Every chunk set the gateway writes must also pass its own bound on `Cookie` headers (CRYPT-22), with room
// for the application's own cookies: 4 × 3600 characters plus names leave about 1.9 KiB of the 16 KiB.
const _: () = assert!(MAX_CHUNKS * (CHUNK_LEN + 40) + 1536 <= crate::request_checks::MAX_COOKIE_BYTES);

/// Why a chunk set does not open. The caller treats all alike ("no session"); the variant is for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("a chunk name with an unknown or out-of-range index")]
    UnknownChunk,
    #[error("a chunk sent twice")]
    Duplicate,
    #[error("a chunk is missing (gap in the indices)")]
    Missing,
    #[error("a chunk has the wrong length")]
    Malformed,
    #[error("the chunks do not open (tampered, mixed, wrong count or unknown key)")]
    DoesNotOpen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the value needs more than {MAX_CHUNKS} cookie chunks")]
pub struct TooLarge;

/// The cookie name of chunk `index`: `<name>` for 0, `<name>.<index>` after.
pub fn chunk_name(name: &str, index: usize) -> String {
    if index == 0 { name.to_owned() } else { format!("{name}.{index}") }
}

/// Seals `plaintext` for cookie `name` and splits it: the chunk values, in order.
pub fn seal(ring: &KeyRing, name: &str, plaintext: &[u8]) -> Result<Vec<String>, TooLarge> {
    let count = ring.sealed_len(plaintext.len()).div_ceil(CHUNK_LEN).max(1);
    if count > MAX_CHUNKS {
        return Err(TooLarge);
    }
    let sealed = ring.seal(&purpose(name, count), plaintext);
    // The sealed text is ASCII (key id, '.', base64url), so byte offsets are character boundaries.
    let values: Vec<String> =
        sealed.as_bytes().chunks(CHUNK_LEN).map(|piece| String::from_utf8_lossy(piece).into_owned()).collect();
    if values.len() != count {
        // `sealed_len` disagrees with `seal`: never expected; refuse rather than write an unopenable set.
        return Err(TooLarge);
    }
    Ok(values)
}

/// Reassembles and opens the chunks of `name` among the request's cookie pairs. `Ok(None)`: no chunk at all.
pub fn open(ring: &KeyRing, name: &str, cookies: &[(String, String)]) -> Result<Option<Vec<u8>>, ChunkError> {
    let mut slots: [Option<&str>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    for (cookie, value) in cookies {
        match slot(name, cookie) {
            Slot::NotOurs => {}
            Slot::Unknown => return Err(ChunkError::UnknownChunk),
            Slot::Index(i) => {
                if slots[i].is_some() {
                    return Err(ChunkError::Duplicate);
                }
                if value.is_empty() || value.len() > CHUNK_LEN {
                    return Err(ChunkError::Malformed);
                }
                slots[i] = Some(value.as_str());
            }
        }
    }
    let count = slots.iter().take_while(|s| s.is_some()).count();
    if slots[count..].iter().any(Option::is_some) {
        return Err(ChunkError::Missing);
    }
    if count == 0 {
        return Ok(None);
    }
    let pieces: Vec<&str> = slots[..count].iter().flatten().copied().collect();
    // `seal` cuts at fixed offsets: every chunk but the last is full.
    if pieces[..count - 1].iter().any(|p| p.len() != CHUNK_LEN) {
        return Err(ChunkError::Malformed);
    }
    let sealed = pieces.concat();
    ring.open_within(&purpose(name, count), &sealed, MAX_CHUNKS * CHUNK_LEN).map(Some).ok_or(ChunkError::DoesNotOpen)
}

/// The chunk indices of `name` the request carries (valid names only), to delete what a new set replaces.
pub fn present(name: &str, cookies: &[(String, String)]) -> Vec<usize> {
    let mut indices: Vec<usize> = cookies
        .iter()
        .filter_map(|(cookie, _)| match slot(name, cookie) {
            Slot::Index(i) => Some(i),
            _ => None,
        })
        .collect();
    indices.sort_unstable();
    indices.dedup();
    indices
}

/// `Set-Cookie` lines writing `values` as the chunks of `name`, and deleting the chunks in `present` that the
/// new set no longer uses (CRYPT-21).
pub fn set_cookies(name: &str, values: &[String], same_site: SameSite, present: &[usize]) -> Vec<String> {
    let mut lines: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, value)| cookies::set(&chunk_name(name, i), value, same_site, None))
        .collect();
    lines.extend(present.iter().filter(|&&i| i >= values.len()).map(|&i| cookies::clear(&chunk_name(name, i))));
    lines
}

/// `Set-Cookie` lines deleting every chunk of `name`: the first always, the others the request carries
/// (BFF-CK08: same name, `Path=/; Secure`).
pub fn clear_cookies(name: &str, present: &[usize]) -> Vec<String> {
    let mut lines = vec![cookies::clear(name)];
    lines.extend(present.iter().filter(|&&i| i > 0).map(|&i| cookies::clear(&chunk_name(name, i))));
    lines
}

/// The AEAD purpose of a set of `count` chunks: the cookie name and the count. `/` cannot occur in a cookie name
/// (RFC 6265 §4.1.1 token), so the encoding is unambiguous and differs from every single-cookie purpose.
fn purpose(name: &str, count: usize) -> String {
    format!("{name}/{count}")
}

enum Slot {
    /// Another cookie.
    NotOurs,
    /// `<name>.<something>` that is not a chunk index we write: never ours, so tampering.
    Unknown,
    Index(usize),
}

fn slot(name: &str, cookie: &str) -> Slot {
    if cookie == name {
        return Slot::Index(0);
    }
    let Some(suffix) = cookie.strip_prefix(name).and_then(|rest| rest.strip_prefix('.')) else {
        return Slot::NotOurs;
    };
    // Canonical decimal only (no sign, no leading zero), 1 ..= MAX_CHUNKS - 1.
    let canonical = !suffix.is_empty() && suffix.len() <= 2 && suffix.bytes().all(|b| b.is_ascii_digit());
    match suffix.parse::<usize>() {
        Ok(i) if canonical && !suffix.starts_with('0') && i < MAX_CHUNKS => Slot::Index(i),
        _ => Slot::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::CookieKey;

    const NAME: &str = "__Host-gatehouse";

    fn ring() -> KeyRing {
        KeyRing::new(&[CookieKey { id: "k1".into(), key: [3; 32] }]).unwrap()
    }

    /// The cookie pairs a browser would send after `lines` (chunks set, deletions applied).
    fn jar(lines: &[String]) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for line in lines {
            let cookie = cookie::Cookie::parse(line.as_str()).unwrap();
            pairs.retain(|(n, _)| n != cookie.name());
            if cookie.max_age() != Some(cookie::time::Duration::ZERO) {
                pairs.push((cookie.name().to_owned(), cookie.value().to_owned()));
            }
        }
        pairs
    }

    fn sealed_pairs(plaintext: &[u8]) -> Vec<(String, String)> {
        let values = seal(&ring(), NAME, plaintext).unwrap();
        jar(&set_cookies(NAME, &values, SameSite::Strict, &[]))
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn catalogue_crypt19_round_trip_at_several_sizes_each_line_under_4096() {
        let ring = ring();
        let longest_name = format!("__Host-{}", "n".repeat(57));
        assert_eq!(longest_name.len(), 64);
        for len in [0, 1, 100, 2000, 2650, 2700, 4096, 5000, 8000, 10_000, 10_700] {
            for name in [NAME, longest_name.as_str()] {
                let values = seal(&ring, name, &plaintext(len)).unwrap();
                let lines = set_cookies(name, &values, SameSite::Strict, &[]);
                assert_eq!(lines.len(), values.len());
                for (i, line) in lines.iter().enumerate() {
                    assert!(line.len() < 4096, "chunk {i} of {len} bytes: {} bytes", line.len());
                    assert!(line.starts_with(&format!("{}=", chunk_name(name, i))), "{line:.60}");
                    let cookie = cookie::Cookie::parse(line.as_str()).unwrap();
                    assert!(cookie.name().starts_with("__Host-"));
                    assert_eq!(cookie.secure(), Some(true));
                    assert_eq!(cookie.http_only(), Some(true));
                    assert_eq!(cookie.path(), Some("/"));
                    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict));
                    assert_eq!(cookie.domain(), None);
                }
                let opened = open(&ring, name, &jar(&lines)).unwrap().unwrap();
                assert_eq!(opened, plaintext(len), "{len} bytes");
            }
        }
        // A 5000-byte value needs more than one cookie.
        assert!(seal(&ring, NAME, &plaintext(5000)).unwrap().len() >= 2);
    }

    #[test]
    fn catalogue_crypt22_too_large_values_are_refused_when_sealing() {
        assert_eq!(seal(&ring(), NAME, &plaintext(14_000)), Err(TooLarge));
    }

    #[test]
    fn no_chunk_is_no_value() {
        let others = vec![("a".to_owned(), "1".to_owned()), ("__Host-gatehouse-tx-abc".to_owned(), "x".to_owned())];
        assert_eq!(open(&ring(), NAME, &others), Ok(None));
    }

    #[test]
    fn catalogue_crypt20_missing_reordered_duplicated_extra_chunks_are_refused() {
        let ring = ring();
        let pairs = sealed_pairs(&plaintext(7000));
        assert_eq!(pairs.len(), 3);

        // Drop each chunk in turn.
        for i in 0..pairs.len() {
            let mut dropped = pairs.clone();
            dropped.remove(i);
            let outcome = open(&ring, NAME, &dropped);
            assert!(matches!(outcome, Err(ChunkError::Missing | ChunkError::DoesNotOpen)), "drop {i}: {outcome:?}");
        }
        // Swap the values of two chunks (names kept).
        let mut swapped = pairs.clone();
        let first = swapped[0].1.clone();
        swapped[0].1 = swapped[1].1.clone();
        swapped[1].1 = first;
        assert_eq!(open(&ring, NAME, &swapped), Err(ChunkError::DoesNotOpen));
        // The order of the cookie pairs in the header does not matter; the names do.
        let mut reversed = pairs.clone();
        reversed.reverse();
        assert_eq!(open(&ring, NAME, &reversed).unwrap().unwrap(), plaintext(7000));
        // A duplicated chunk (same name twice, same or other value).
        for i in 0..pairs.len() {
            let mut duplicated = pairs.clone();
            duplicated.push(pairs[i].clone());
            assert_eq!(open(&ring, NAME, &duplicated), Err(ChunkError::Duplicate), "duplicate {i}");
        }
        // An extra chunk after the last: the count changes, so the associated data does.
        let mut extra = pairs.clone();
        extra.push((chunk_name(NAME, 3), "A".repeat(10)));
        assert_eq!(open(&ring, NAME, &extra), Err(ChunkError::Malformed), "the last chunk was not full");
        // The last chunk re-split in two (a fourth chunk appears, the third is no longer full).
        let mut resplit = pairs.clone();
        let last = resplit.pop().unwrap().1;
        let (c, d) = last.split_at(last.len() / 2);
        resplit.push((chunk_name(NAME, 2), c.to_owned()));
        resplit.push((chunk_name(NAME, 3), d.to_owned()));
        assert_eq!(open(&ring, NAME, &resplit), Err(ChunkError::Malformed));
        // Chunk names we never write.
        for bad in [".01", ".5", ".99", ".x", ".", ".-1", ".1.1"] {
            let mut odd = pairs.clone();
            odd.push((format!("{NAME}{bad}"), "A".into()));
            assert_eq!(open(&ring, NAME, &odd), Err(ChunkError::UnknownChunk), "{bad}");
        }
    }

    #[test]
    fn catalogue_crypt20_changed_count_and_truncation_are_refused() {
        let ring = ring();
        let pairs = sealed_pairs(&plaintext(7000));
        // Keep only the first two chunks but make the second look like a final one: count 2 instead of 3.
        let shortened = vec![pairs[0].clone(), (pairs[1].0.clone(), pairs[1].1[..100].to_owned())];
        assert_eq!(open(&ring, NAME, &shortened), Err(ChunkError::DoesNotOpen));
        // A whole valid set opened under a different count (sealed as 1 chunk, presented with an empty second).
        let small = sealed_pairs(b"small");
        let mut padded = small.clone();
        padded.push((chunk_name(NAME, 1), "A".into()));
        assert!(open(&ring, NAME, &padded).is_err());
        // Every single-character change in every chunk.
        for i in 0..pairs.len() {
            for at in [0, 1, pairs[i].1.len() / 2, pairs[i].1.len() - 1] {
                let mut bad = pairs.clone();
                let mut bytes = bad[i].1.clone().into_bytes();
                bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
                bad[i].1 = String::from_utf8(bytes).unwrap();
                assert!(open(&ring, NAME, &bad).is_err(), "chunk {i} char {at}");
            }
        }
    }

    #[test]
    fn catalogue_crypt20_chunks_mixed_from_two_sealings_are_refused() {
        let ring = ring();
        let value = plaintext(7000);
        let one = sealed_pairs(&value);
        let two = sealed_pairs(&value);
        assert_ne!(one, two, "fresh nonce per sealing");
        for i in 0..one.len() {
            let mut mixed = one.clone();
            mixed[i] = two[i].clone();
            assert_eq!(open(&ring, NAME, &mixed), Err(ChunkError::DoesNotOpen), "chunk {i} from the other set");
        }
    }

    #[test]
    fn other_purposes_do_not_open_as_chunks() {
        let ring = ring();
        // A server-mode cookie (purpose = the name alone) is not a chunk set.
        let server_cookie = ring.seal(NAME, b"session-id");
        assert_eq!(open(&ring, NAME, &[(NAME.to_owned(), server_cookie)]), Err(ChunkError::DoesNotOpen));
        // Chunks of another cookie name.
        let values = seal(&ring, "__Host-other", b"x").unwrap();
        assert_eq!(open(&ring, NAME, &[(NAME.to_owned(), values[0].clone())]), Err(ChunkError::DoesNotOpen));
    }

    #[test]
    fn catalogue_crypt22_cookie_bombs_are_refused_before_decryption() {
        let ring = ring();
        let huge = vec![(NAME.to_owned(), "A".repeat(64 * 1024))];
        assert_eq!(open(&ring, NAME, &huge), Err(ChunkError::Malformed));
        let many: Vec<(String, String)> = (0..50).map(|i| (chunk_name(NAME, i), "A".repeat(4000))).collect();
        assert!(matches!(open(&ring, NAME, &many), Err(ChunkError::UnknownChunk | ChunkError::Malformed)));
        let thousand: Vec<(String, String)> = (0..1000).map(|i| (format!("c{i}"), "x".into())).collect();
        assert_eq!(open(&ring, NAME, &thousand), Ok(None));
        let full: Vec<(String, String)> =
            (0..MAX_CHUNKS).map(|i| (chunk_name(NAME, i), "A".repeat(CHUNK_LEN))).collect();
        assert_eq!(open(&ring, NAME, &full), Err(ChunkError::DoesNotOpen));
    }

    #[test]
    fn catalogue_crypt21_a_smaller_value_deletes_the_stale_chunks() {
        let ring = ring();
        let big = sealed_pairs(&plaintext(7000));
        let present_before = present(NAME, &big);
        assert_eq!(present_before, vec![0, 1, 2]);
        let small = seal(&ring, NAME, b"small now").unwrap();
        let lines = set_cookies(NAME, &small, SameSite::Strict, &present_before);
        assert_eq!(lines.len(), 3, "one chunk set, two deleted: {lines:?}");
        for stale in [1, 2] {
            let deletion = lines.iter().find(|l| l.starts_with(&format!("{}=", chunk_name(NAME, stale)))).unwrap();
            let cookie = cookie::Cookie::parse(deletion.as_str()).unwrap();
            assert_eq!(cookie.max_age(), Some(cookie::time::Duration::ZERO));
            assert_eq!(cookie.path(), Some("/"));
            assert_eq!(cookie.secure(), Some(true));
        }
        // The browser's jar after the response: only the new chunk, and it opens.
        let mut after = big.clone();
        for line in &lines {
            let cookie = cookie::Cookie::parse(line.as_str()).unwrap();
            after.retain(|(n, _)| n != cookie.name());
            if cookie.max_age() != Some(cookie::time::Duration::ZERO) {
                after.push((cookie.name().to_owned(), cookie.value().to_owned()));
            }
        }
        assert_eq!(after.len(), 1);
        assert_eq!(open(&ring, NAME, &after).unwrap().unwrap(), b"small now");
    }

    #[test]
    fn catalogue_bff_ck08_clearing_deletes_every_chunk_with_path_and_secure() {
        let pairs = sealed_pairs(&plaintext(7000));
        let lines = clear_cookies(NAME, &present(NAME, &pairs));
        assert_eq!(lines.len(), 3);
        for (i, line) in lines.iter().enumerate() {
            let cookie = cookie::Cookie::parse(line.as_str()).unwrap();
            assert_eq!(cookie.name(), chunk_name(NAME, i));
            assert_eq!(cookie.value(), "");
            assert_eq!(cookie.max_age(), Some(cookie::time::Duration::ZERO));
            assert_eq!(cookie.path(), Some("/"));
            assert_eq!(cookie.secure(), Some(true));
        }
        // Nothing present: the first chunk is cleared anyway.
        assert_eq!(clear_cookies(NAME, &[]).len(), 1);
    }

    #[test]
    fn random_chunk_sets_never_open_and_never_panic() {
        let ring = ring();
        let genuine = sealed_pairs(&plaintext(7000));
        let alphabet = b"ABCxyz019-_.=!; ";
        for round in 0..500u32 {
            let count = 1 + (rand::random::<u8>() as usize % 7);
            let pairs: Vec<(String, String)> = (0..count)
                .map(|i| {
                    let name = match rand::random::<u8>() % 4 {
                        0 => NAME.to_owned(),
                        1 => chunk_name(NAME, i),
                        2 => format!("{NAME}.{}", rand::random::<u8>()),
                        _ => genuine[i % genuine.len()].0.clone(),
                    };
                    let len = rand::random::<u16>() as usize % (CHUNK_LEN + 10);
                    let value = if rand::random::<bool>() {
                        let mut v = genuine[i % genuine.len()].1.clone().into_bytes();
                        let at = rand::random::<u16>() as usize % v.len();
                        v[at] = alphabet[rand::random::<u8>() as usize % alphabet.len()];
                        String::from_utf8_lossy(&v).into_owned()
                    } else {
                        (0..len).map(|_| alphabet[rand::random::<u8>() as usize % alphabet.len()] as char).collect()
                    };
                    (name, value)
                })
                .collect();
            let outcome = open(&ring, NAME, &pairs);
            assert!(!matches!(outcome, Ok(Some(_))) || pairs == genuine, "round {round}: {outcome:?}");
        }
    }
}
