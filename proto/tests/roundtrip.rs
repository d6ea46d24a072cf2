//! Round-trip properties of the protocol codecs (proptest): base64url encode → decode, JWK serialise → parse and
//! thumbprint stability (RFC 7638), DPoP proof create → verify (RFC 9449 §4), PKCE verifier → challenge →
//! verify (RFC 7636 §4.6). The hostile-input side of the same code is fuzzed in `fuzz/` (`dpop_proof`, `jose`).
//!
//!     cargo test -p gatehouse-proto --test roundtrip

use gatehouse_proto::b64;
use gatehouse_proto::dpop::{self, DpopError, NonceIssuer, Request, TimeWindow};
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::jwk::Jwk;
use gatehouse_proto::pkce::{CodeChallenge, CodeVerifier, PkceError};
use proptest::prelude::*;
use std::sync::OnceLock;

const NOW: i64 = 1_900_000_000;

/// Key generation is the slow part: one key for every case.
fn key() -> &'static DpopKey {
    static KEY: OnceLock<DpopKey> = OnceLock::new();
    KEY.get_or_init(|| DpopKey::generate().expect("P-256 key"))
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Optional JWK members: absent, or any text (JSON escaping included).
fn member() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(any::<String>())
}

prop_compose! {
    fn public_jwk()(
        kty in prop_oneof![Just("EC"), Just("RSA"), Just("OKP")],
        crv in member(), x in member(), y in member(), n in member(), e in member(),
        kid in member(), alg in member(), key_use in member(),
    ) -> Jwk {
        let mut jwk = Jwk::ec("P-256", &[], &[]);
        jwk.kty = kty.to_owned();
        jwk.crv = crv;
        jwk.x = x;
        jwk.y = y;
        jwk.n = n;
        jwk.e = e;
        jwk.kid = kid;
        jwk.alg = alg;
        jwk.key_use = key_use;
        jwk
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// RFC 7515 §2: base64url without padding decodes to what was encoded, in the URL-safe alphabet only.
    #[test]
    fn base64url_encode_decode(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = b64::encode(&bytes);
        prop_assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{text}");
        prop_assert_eq!(b64::decode(&text), Some(bytes));
    }

    /// Whatever decodes re-encodes to the same text (the encoding is canonical: no two texts for one value).
    #[test]
    fn base64url_decode_encode(text in "[A-Za-z0-9_-]{0,64}") {
        if let Some(bytes) = b64::decode(&text) {
            prop_assert_eq!(b64::encode(bytes), text);
        }
    }

    /// RFC 7517: a JWK survives serialise → parse; RFC 7638 §3.2: its thumbprint depends on the required
    /// members only, and is the same after the round trip.
    #[test]
    fn jwk_serialise_parse_and_thumbprint(jwk in public_jwk()) {
        let text = serde_json::to_string(&jwk).unwrap();
        let again: Jwk = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&again, &jwk);
        prop_assert_eq!(again.thumbprint(), jwk.thumbprint());
        let bare = Jwk { kid: None, alg: None, key_use: None, ..jwk.clone() };
        prop_assert_eq!(bare.thumbprint(), jwk.thumbprint());
    }

    /// RFC 7638 §3: distinct EC keys have distinct thumbprints, each 43 base64url characters (SHA-256).
    #[test]
    fn ec_thumbprints_tell_keys_apart(x in any::<[u8; 32]>(), y in any::<[u8; 32]>(), other_x in any::<[u8; 32]>()) {
        let a = Jwk::ec("P-256", &x, &y).thumbprint().unwrap();
        prop_assert_eq!(a.len(), 43);
        prop_assert_eq!(Jwk::ec("P-256", &x, &y).thumbprint().unwrap(), a.clone());
        if other_x != x {
            prop_assert_ne!(Jwk::ec("P-256", &other_x, &y).thumbprint().unwrap(), a);
        }
    }

    /// RFC 7636 §4.6: the S256 challenge of any valid verifier verifies it, parses back as a challenge, and
    /// verifies no other verifier.
    #[test]
    fn pkce_verifier_challenge_verify(
        verifier in "[A-Za-z0-9._~-]{43,128}",
        other in "[A-Za-z0-9._~-]{43,128}",
        random in any::<[u8; 32]>(),
    ) {
        let verifier = CodeVerifier::parse(&verifier).unwrap();
        let challenge = CodeChallenge::s256(&verifier);
        prop_assert!(challenge.verify(&verifier));
        prop_assert_eq!(CodeChallenge::parse(Some(challenge.as_str()), Some("S256")), Ok(challenge.clone()));
        prop_assert_eq!(CodeChallenge::parse(Some(challenge.as_str()), None), Err(PkceError::UnsupportedMethod));
        let other = CodeVerifier::parse(&other).unwrap();
        prop_assert_eq!(challenge.verify(&other), other == verifier);
        let from_random = CodeVerifier::from_random(&random);
        prop_assert!(CodeVerifier::parse(from_random.expose()).is_ok(), "a random verifier is well-formed");
        prop_assert!(CodeChallenge::s256(&from_random).verify(&from_random));
    }
}

/// HTTP methods and request URIs a client makes proofs for.
fn method() -> impl Strategy<Value = String> {
    prop_oneof![Just("GET".to_owned()), Just("POST".to_owned()), "[A-Z]{1,10}"]
}

fn uri() -> impl Strategy<Value = String> {
    (
        "(https?)",
        "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,5})?",
        proptest::option::of(1u16..),
        "(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,12}){0,4}",
        "(\\?[a-z=&0-9]{0,20})?",
    )
        .prop_map(|(scheme, host, port, path, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{path}{query}")
        })
}

proptest! {
    #![proptest_config(config(64))]

    /// RFC 9449 §4: a proof made by the client side (`DpopKey::proof`) passes every check of the verifier for
    /// the request it was made for, and yields the key's thumbprint; the same proof fails for another method,
    /// another access token or outside the time window.
    #[test]
    fn dpop_proof_create_verify(
        method in method(),
        uri in uri(),
        access_token in proptest::option::of("[ -~]{1,64}"),
        with_nonce in any::<bool>(),
        age in -60i64..=300,
    ) {
        let nonces = NonceIssuer::new([9; 32], 300);
        let nonce = with_nonce.then(|| nonces.current(NOW));
        let iat = NOW - age;
        let proof = key().proof(&method, &uri, access_token.as_deref(), nonce.as_deref(), iat);
        let request = Request {
            method: &method,
            uri: &uri,
            access_token: access_token.as_deref(),
            now: NOW,
            window: TimeWindow::default(),
            nonces: with_nonce.then_some(&nonces),
        };
        let verified = dpop::verify([proof.as_str()], &request).unwrap();
        prop_assert_eq!(&verified.jkt, key().jkt());
        prop_assert_eq!(verified.iat, iat);
        prop_assert_eq!(verified.replay_key, format!("{}:{}", verified.jkt, verified.jti));

        let other_method = Request { method: if method == "GET" { "POST" } else { "GET" }, ..request };
        prop_assert_eq!(dpop::verify_proof(&proof, &other_method), Err(DpopError::Method));
        let other_token = Request { access_token: Some("another-token"), ..request };
        if access_token.as_deref() != Some("another-token") {
            prop_assert_eq!(dpop::verify_proof(&proof, &other_token), Err(DpopError::AccessTokenHash));
        }
        let later = Request { now: iat + 301, ..request };
        let outcome = dpop::verify_proof(&proof, &later);
        prop_assert!(matches!(outcome, Err(DpopError::Time | DpopError::UseNonce)), "{outcome:?}");
    }
}
