//! The login transaction: what the gateway must remember between `/bff/login` and `/bff/callback` of one
//! OpenID Connect authorization-code flow — `state` (RFC 6749 §10.12, CSRF binding of the callback), `nonce`
//! (OpenID Connect Core §3.1.2.1, ID token replay), the PKCE `code_verifier` (RFC 7636 §4.1), the DPoP key the
//! tokens will be bound to (RFC 9449), the validated return URL and whether it is a silent login.
//!
//! It lives in a short-lived (`MAX_AGE_SECONDS`) `SameSite=Lax` cookie sealed with the cookie key ring (so it
//! cannot be read or altered: RFC 9700 §4.7.1, catalogue BFF-RU02), one cookie per login attempt, named after a
//! hash of its `state` so parallel logins in several tabs do not overwrite each other. A new login clears
//! expired and unreadable transaction cookies and keeps at most `MAX_PENDING`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::seal::KeyRing;
use gatehouse_proto::b64;
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::pkce::{CodeChallenge, CodeVerifier};
use gatehouse_proto::secret::ct_eq;

pub const COOKIE_PREFIX: &str = "__Host-gatehouse-tx-";
pub const MAX_AGE_SECONDS: i64 = 600;
/// At most this many transaction cookies are kept; older and expired ones are cleared.
pub const MAX_PENDING: usize = 3;
/// Clock skew tolerated on `created_at` from the future (several gateway instances share the key ring).
const FUTURE_SKEW_SECONDS: i64 = 60;
/// Characters of the base64url SHA-256 of `state` in the cookie name.
const NAME_HASH_LEN: usize = 16;

/// The state of one login between `/bff/login` and `/bff/callback`. `Debug` redacts the secrets.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginTransaction {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    pub return_url: String,
    /// PKCS#8 DER of the DPoP private key, serialised base64url.
    #[serde(with = "b64_bytes")]
    pub dpop_key: Vec<u8>,
    pub silent: bool,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

impl std::fmt::Debug for LoginTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginTransaction")
            .field("state", &"<redacted>")
            .field("nonce", &"<redacted>")
            .field("code_verifier", &"<redacted>")
            .field("return_url", &self.return_url)
            .field("dpop_key", &"<redacted>")
            .field("silent", &self.silent)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl LoginTransaction {
    /// Fresh random state, nonce (each 32 random bytes base64url), PKCE verifier
    /// (`CodeVerifier::from_random`), a new `DpopKey::generate()` PKCS#8.
    ///
    /// # Panics
    /// Only if the operating system's random generator fails (as `rand::random` does then too).
    pub fn new(return_url: String, silent: bool, now: i64) -> Self {
        let dpop_key = DpopKey::generate().expect("the OS random generator failed to make a DPoP key");
        Self {
            // RFC 6749 §10.10: 256 bits of entropy; OpenID Connect Core §15.5.2 for the nonce.
            state: b64::encode(rand::random::<[u8; 32]>()),
            nonce: b64::encode(rand::random::<[u8; 32]>()),
            // RFC 7636 §7.1: a 32-octet random sequence, base64url: 43 characters.
            code_verifier: CodeVerifier::from_random(&rand::random::<[u8; 32]>()).expose().to_owned(),
            return_url,
            dpop_key: dpop_key.pkcs8().to_vec(),
            silent,
            created_at: now,
        }
    }

    /// RFC 7636 §4.2: S256 `code_challenge` of the verifier.
    pub fn code_challenge(&self) -> String {
        match CodeVerifier::parse(&self.code_verifier) {
            Ok(verifier) => CodeChallenge::s256(&verifier).as_str().to_owned(),
            // Only a verifier that did not come from `new` can fail to parse; its challenge still binds it.
            Err(_) => b64::encode(Sha256::digest(self.code_verifier.as_bytes())),
        }
    }

    /// Cookie name for this transaction: COOKIE_PREFIX + first 16 base64url chars of SHA-256(state) — so the
    /// callback finds it by `state`.
    pub fn cookie_name(state: &str) -> String {
        let hash = b64::encode(Sha256::digest(state.as_bytes()));
        format!("{COOKIE_PREFIX}{}", &hash[..NAME_HASH_LEN])
    }

    /// The sealed cookie value; the purpose is the cookie name, so it only opens as this transaction's cookie.
    pub fn seal(&self, ring: &KeyRing) -> String {
        // Serialising plain strings, bools and integers cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        ring.seal(&Self::cookie_name(&self.state), &json)
    }

    /// None if it does not open, is older than MAX_AGE_SECONDS, or its state differs from `state`.
    pub fn open(ring: &KeyRing, state: &str, sealed: &str, now: i64) -> Option<Self> {
        let tx = Self::open_any(ring, &Self::cookie_name(state), sealed, now)?;
        // RFC 6749 §10.12: the callback's `state` must be the one this browser started with.
        ct_eq(tx.state.as_bytes(), state.as_bytes()).then_some(tx)
    }

    /// Opens a transaction cookie found under `name` without knowing its state (to tidy up at a new login):
    /// None unless the name is a transaction cookie name, the value opens with that name as purpose, it is not
    /// expired, and its state hashes to that name.
    pub fn open_any(ring: &KeyRing, name: &str, sealed: &str, now: i64) -> Option<Self> {
        if !name.starts_with(COOKIE_PREFIX) {
            return None;
        }
        let json = ring.open(name, sealed)?;
        let tx: Self = serde_json::from_slice(&json).ok()?;
        if !tx.is_fresh(now) || Self::cookie_name(&tx.state) != name {
            return None;
        }
        Some(tx)
    }

    /// Created at most MAX_AGE_SECONDS ago (and not implausibly in the future).
    fn is_fresh(&self, now: i64) -> bool {
        let age = now.saturating_sub(self.created_at);
        (-FUTURE_SKEW_SECONDS..=MAX_AGE_SECONDS).contains(&age)
    }
}

/// Names of transaction cookies in the request that a new login should clear: unreadable or expired ones, and
/// beyond the newest MAX_PENDING-1 valid ones (so with the new one there are at most MAX_PENDING). Each name is
/// listed once, in the order of the request.
pub fn stale_on_login(ring: &KeyRing, cookies: &[(String, String)], now: i64) -> Vec<String> {
    let mut stale: Vec<&str> = Vec::new();
    let mut valid: Vec<(i64, &str)> = Vec::new();
    for (name, value) in cookies.iter().filter(|(name, _)| name.starts_with(COOKIE_PREFIX)) {
        match LoginTransaction::open_any(ring, name, value, now) {
            Some(tx) => valid.push((tx.created_at, name)),
            None => stale.push(name),
        }
    }
    // Newest first; among equal times the later cookie in the request counts as newer.
    let mut by_age: Vec<(usize, i64)> = valid.iter().enumerate().map(|(i, (created, _))| (i, *created)).collect();
    by_age.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let keep: Vec<&str> = by_age.iter().take(MAX_PENDING - 1).map(|(i, _)| valid[*i].1).collect();
    stale.extend(valid.iter().map(|(_, name)| *name).filter(|name| !keep.contains(name)));

    let mut names: Vec<String> = Vec::new();
    for (name, _) in cookies {
        if stale.contains(&name.as_str()) && !keep.contains(&name.as_str()) && !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Serde adapter: bytes as base64url without padding.
mod b64_bytes {
    use gatehouse_proto::b64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&b64::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        b64::decode(&text).ok_or_else(|| serde::de::Error::custom("not base64url"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::CookieKey;

    const NOW: i64 = 1_700_000_000;

    fn ring() -> KeyRing {
        KeyRing::new(&[CookieKey { id: "k1".to_owned(), key: [3; 32] }]).unwrap()
    }

    /// A transaction without key generation (fast, fixed values).
    fn fixed(state: &str, created_at: i64) -> LoginTransaction {
        LoginTransaction {
            state: state.to_owned(),
            nonce: "nonce".to_owned(),
            code_verifier: "v".repeat(43),
            return_url: "/app".to_owned(),
            dpop_key: vec![1, 2, 3],
            silent: false,
            created_at,
        }
    }

    fn cookie(tx: &LoginTransaction, ring: &KeyRing) -> (String, String) {
        (LoginTransaction::cookie_name(&tx.state), tx.seal(ring))
    }

    #[test]
    fn new_is_random_and_complete() {
        let a = LoginTransaction::new("/app".to_owned(), true, NOW);
        let b = LoginTransaction::new("/app".to_owned(), false, NOW);
        assert_ne!(a.state, b.state);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.code_verifier, b.code_verifier);
        assert_ne!(a.dpop_key, b.dpop_key);
        for value in [&a.state, &a.nonce, &a.code_verifier] {
            assert_eq!(b64::decode(value).map(|v| v.len()), Some(32), "{value}");
        }
        assert!(CodeVerifier::parse(&a.code_verifier).is_ok());
        assert!(DpopKey::from_pkcs8(&a.dpop_key).is_ok());
        assert!(a.silent && !b.silent);
        assert_eq!((a.return_url.as_str(), a.created_at), ("/app", NOW));
    }

    #[test]
    fn rfc7636_code_challenge_is_s256_of_verifier() {
        let mut tx = fixed("s", NOW);
        // RFC 7636 Appendix B.
        tx.code_verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned();
        assert_eq!(tx.code_challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn round_trip() {
        let ring = ring();
        let tx = LoginTransaction::new("/app?x=1".to_owned(), true, NOW);
        let sealed = tx.seal(&ring);
        let opened = LoginTransaction::open(&ring, &tx.state, &sealed, NOW + 5).unwrap();
        assert_eq!(opened.state, tx.state);
        assert_eq!(opened.nonce, tx.nonce);
        assert_eq!(opened.code_verifier, tx.code_verifier);
        assert_eq!(opened.return_url, tx.return_url);
        assert_eq!(opened.dpop_key, tx.dpop_key);
        assert_eq!(opened.silent, tx.silent);
        assert_eq!(opened.created_at, tx.created_at);
        assert_eq!(opened.code_challenge(), tx.code_challenge());
    }

    #[test]
    fn sealed_cookie_fits_the_browser_limit() {
        let ring = ring();
        let tx = LoginTransaction::new(format!("/{}", "a".repeat(crate::return_url::MAX_LEN - 1)), false, NOW);
        let (name, value) = cookie(&tx, &ring);
        assert!(name.len() + value.len() < 4096, "{}", name.len() + value.len());
    }

    #[test]
    fn rfc6749_10_12_wrong_state_is_refused() {
        let ring = ring();
        let tx = fixed("state-a", NOW);
        let sealed = tx.seal(&ring);
        assert!(LoginTransaction::open(&ring, "state-a", &sealed, NOW).is_some());
        assert!(LoginTransaction::open(&ring, "state-b", &sealed, NOW).is_none());
        assert!(LoginTransaction::open(&ring, "", &sealed, NOW).is_none());
    }

    #[test]
    fn catalogue_bff_ru02_transaction_from_another_cookie_is_refused() {
        // A transaction sealed for state B, presented with state A (cookie swapped): the purpose differs.
        let ring = ring();
        let b = fixed("state-b", NOW);
        let sealed_b = b.seal(&ring);
        assert!(LoginTransaction::open(&ring, "state-a", &sealed_b, NOW).is_none());
        assert!(LoginTransaction::open_any(&ring, &LoginTransaction::cookie_name("state-a"), &sealed_b, NOW).is_none());
        // A value sealed under a transaction cookie name but holding another state does not open there either.
        let mut forged = fixed("state-a", NOW);
        forged.state = "state-b".to_owned();
        let name_a = LoginTransaction::cookie_name("state-a");
        let sealed = ring.seal(&name_a, &serde_json::to_vec(&forged).unwrap());
        assert!(LoginTransaction::open_any(&ring, &name_a, &sealed, NOW).is_none());
    }

    #[test]
    fn expired_is_refused() {
        let ring = ring();
        let tx = fixed("s", NOW);
        let sealed = tx.seal(&ring);
        assert!(LoginTransaction::open(&ring, "s", &sealed, NOW + MAX_AGE_SECONDS).is_some());
        assert!(LoginTransaction::open(&ring, "s", &sealed, NOW + MAX_AGE_SECONDS + 1).is_none());
        // From the future beyond the tolerated skew.
        assert!(LoginTransaction::open(&ring, "s", &sealed, NOW - FUTURE_SKEW_SECONDS).is_some());
        assert!(LoginTransaction::open(&ring, "s", &sealed, NOW - FUTURE_SKEW_SECONDS - 1).is_none());
        // No overflow at the extremes.
        assert!(LoginTransaction::open(&ring, "s", &fixed("s", i64::MIN).seal(&ring), i64::MAX).is_none());
        assert!(LoginTransaction::open(&ring, "s", &fixed("s", i64::MAX).seal(&ring), i64::MIN).is_none());
    }

    #[test]
    fn tampered_or_garbage_is_refused() {
        let ring = ring();
        for garbage in ["", "k1.", "k1.AAAA", "not a cookie", &ring.seal(&LoginTransaction::cookie_name("s"), b"{}")] {
            assert!(LoginTransaction::open(&ring, "s", garbage, NOW).is_none(), "{garbage}");
        }
        let other_ring = KeyRing::new(&[CookieKey { id: "k1".to_owned(), key: [4; 32] }]).unwrap();
        assert!(LoginTransaction::open(&other_ring, "s", &fixed("s", NOW).seal(&ring), NOW).is_none());
    }

    #[test]
    fn cookie_names_are_stable() {
        let name = LoginTransaction::cookie_name("abc");
        assert_eq!(name, LoginTransaction::cookie_name("abc"));
        // base64url(SHA-256("abc")) = ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0
        assert_eq!(name, "__Host-gatehouse-tx-ungWv48Bz-pBQUDe");
        assert_ne!(name, LoginTransaction::cookie_name("abd"));
        assert_eq!(name.len(), COOKIE_PREFIX.len() + NAME_HASH_LEN);
    }

    #[test]
    fn debug_redacts_secrets() {
        let tx = LoginTransaction::new("/app".to_owned(), false, NOW);
        let debug = format!("{tx:?}");
        for secret in [&tx.state, &tx.nonce, &tx.code_verifier] {
            assert!(!debug.contains(secret.as_str()), "{debug}");
        }
        assert!(debug.contains("/app"), "{debug}");
    }

    #[test]
    fn stale_on_login_keeps_the_newest_pending() {
        let ring = ring();
        let txs: Vec<LoginTransaction> = (0..5).map(|i| fixed(&format!("s{i}"), NOW - 50 + 10 * i)).collect();
        // Request order shuffled: ages must decide, not order.
        let cookies: Vec<(String, String)> = [3, 0, 4, 1, 2].iter().map(|&i| cookie(&txs[i], &ring)).collect();
        let mut stale = stale_on_login(&ring, &cookies, NOW);
        stale.sort();
        let mut expected: Vec<String> =
            [0, 1, 2].iter().map(|&i| LoginTransaction::cookie_name(&txs[i].state)).collect();
        expected.sort();
        assert_eq!(stale, expected);
        // With the new login there are at most MAX_PENDING.
        assert_eq!(cookies.len() - stale.len() + 1, MAX_PENDING);
    }

    #[test]
    fn stale_on_login_clears_garbage_and_expired_only() {
        let ring = ring();
        let fresh = fixed("fresh", NOW - 1);
        let expired = fixed("expired", NOW - MAX_AGE_SECONDS - 1);
        let cookies = vec![
            ("__Host-gatehouse".to_owned(), "k1.session".to_owned()),
            ("other".to_owned(), "x".to_owned()),
            (format!("{COOKIE_PREFIX}junk"), "garbage".to_owned()),
            (format!("{COOKIE_PREFIX}empty"), String::new()),
            cookie(&fresh, &ring),
            cookie(&expired, &ring),
            // A valid value copied under another transaction name.
            (LoginTransaction::cookie_name("moved"), fresh.seal(&ring)),
        ];
        let stale = stale_on_login(&ring, &cookies, NOW);
        let expected = vec![
            format!("{COOKIE_PREFIX}junk"),
            format!("{COOKIE_PREFIX}empty"),
            LoginTransaction::cookie_name("expired"),
            LoginTransaction::cookie_name("moved"),
        ];
        assert_eq!(stale, expected);
        assert!(stale_on_login(&ring, &[cookie(&fresh, &ring)], NOW).is_empty());
        assert!(stale_on_login(&ring, &[], NOW).is_empty());
    }

    #[test]
    fn stale_on_login_lists_each_name_once() {
        let ring = ring();
        let name = format!("{COOKIE_PREFIX}dup");
        let cookies = vec![(name.clone(), "a".to_owned()), (name.clone(), "b".to_owned())];
        assert_eq!(stale_on_login(&ring, &cookies, NOW), vec![name]);
    }
}
