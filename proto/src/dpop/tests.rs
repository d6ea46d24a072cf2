//! RFC 9449 §4.3 checks, one test per clause (catalogue §C DPOP-P rows).

use super::*;
use crate::dpop_key::DpopKey;

const URI: &str = "https://id.test/token";
const NOW: i64 = 1_900_000_000;

fn request<'a>(access_token: Option<&'a str>, nonces: Option<&'a NonceIssuer>) -> Request<'a> {
    Request { method: "POST", uri: URI, access_token, now: NOW, window: TimeWindow::default(), nonces }
}

/// Signs arbitrary header and claims with `key` (for malformed-proof tests).
fn forge(key: &DpopKey, header: serde_json::Value, claims: serde_json::Value) -> String {
    let signing_input = format!("{}.{}", b64::encode(header.to_string()), b64::encode(claims.to_string()));
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        key.pkcs8(),
    )
    .unwrap();
    let sig = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64::encode(sig.as_ref()))
}

fn good_header(key: &DpopKey) -> serde_json::Value {
    serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()})
}

fn good_claims() -> serde_json::Value {
    serde_json::json!({"jti": "j1", "htm": "POST", "htu": URI, "iat": NOW})
}

#[test]
fn a_valid_proof_yields_the_key_thumbprint() {
    let key = DpopKey::generate().unwrap();
    let proof = key.proof("POST", URI, None, None, NOW);
    let verified = verify([proof.as_str()], &request(None, None)).unwrap();
    assert_eq!(verified.jkt, key.jkt());
    assert!(verified.replay_key.starts_with(key.jkt()));
}

#[test]
fn dpop_p01_exactly_one_header() {
    let key = DpopKey::generate().unwrap();
    let proof = key.proof("POST", URI, None, None, NOW);
    assert_eq!(verify([], &request(None, None)), Err(DpopError::Missing));
    assert_eq!(verify([proof.as_str(), proof.as_str()], &request(None, None)), Err(DpopError::Multiple));
}

#[test]
fn dpop_p02_malformed() {
    for bad in ["", "a.b", "a.b.c.d", "..", "!!!.???.***", &"a".repeat(9000)] {
        assert_eq!(verify_proof(bad, &request(None, None)), Err(DpopError::Malformed), "{bad:.20}");
    }
}

#[test]
fn dpop_p04_typ_must_be_dpop_jwt() {
    let key = DpopKey::generate().unwrap();
    for typ in [
        serde_json::json!("JWT"),
        serde_json::json!("at+jwt"),
        serde_json::json!("dpop+JWT"),
        serde_json::json!("application/dpop+jwt"),
        serde_json::Value::Null,
    ] {
        let mut header = good_header(&key);
        header["typ"] = typ;
        assert_eq!(verify_proof(&forge(&key, header, good_claims()), &request(None, None)), Err(DpopError::Type));
    }
}

#[test]
fn dpop_p05_alg_none_hmac_and_mismatch_refused() {
    let key = DpopKey::generate().unwrap();
    for alg in ["none", "HS256", "ES512", ""] {
        let mut header = good_header(&key);
        header["alg"] = alg.into();
        assert_eq!(
            verify_proof(&forge(&key, header, good_claims()), &request(None, None)),
            Err(DpopError::Algorithm),
            "{alg}"
        );
    }
    // An RS256 header with an EC key cannot verify.
    let mut header = good_header(&key);
    header["alg"] = "RS256".into();
    assert_eq!(verify_proof(&forge(&key, header, good_claims()), &request(None, None)), Err(DpopError::Key));
}

#[test]
fn dpop_p06_p07_signature_and_private_key() {
    let key = DpopKey::generate().unwrap();
    let other = DpopKey::generate().unwrap();
    // Signed by one key, claiming another.
    let header = good_header(&other);
    assert_eq!(verify_proof(&forge(&key, header, good_claims()), &request(None, None)), Err(DpopError::Signature));
    let mut header = good_header(&key);
    header["jwk"]["d"] = "AAAA".into();
    assert_eq!(verify_proof(&forge(&key, header, good_claims()), &request(None, None)), Err(DpopError::Key));
    let mut header = good_header(&key);
    header.as_object_mut().unwrap().remove("jwk");
    assert_eq!(verify_proof(&forge(&key, header, good_claims()), &request(None, None)), Err(DpopError::Key));
}

#[test]
fn dpop_p03_required_claims() {
    let key = DpopKey::generate().unwrap();
    for missing in ["jti", "htm", "htu", "iat"] {
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove(missing);
        assert_eq!(
            verify_proof(&forge(&key, good_header(&key), claims), &request(None, None)),
            Err(DpopError::MissingClaim),
            "{missing}"
        );
    }
    let mut claims = good_claims();
    claims["iat"] = NOW.to_string().into();
    assert_eq!(
        verify_proof(&forge(&key, good_header(&key), claims), &request(None, None)),
        Err(DpopError::Malformed),
        "string iat: not a NumericDate (crate::jose)"
    );
}

#[test]
fn dpop_p08_p09_htm_and_htu() {
    let key = DpopKey::generate().unwrap();
    let proof = key.proof("GET", URI, None, None, NOW);
    assert_eq!(verify_proof(&proof, &request(None, None)), Err(DpopError::Method));
    let proof = key.proof("post", URI, None, None, NOW);
    assert_eq!(verify_proof(&proof, &request(None, None)), Err(DpopError::Method));
    for htu in [
        "https://id.test/other",
        "https://id.test/TOKEN",
        "https://id.test/token/../par",
        "https://id.test/token%2F",
        "https://id.test../token",
        "https://evil.test/token",
        "http://id.test/token",
        "https://id.test:8443/token",
        "/token",
    ] {
        let mut claims = good_claims();
        claims["htu"] = htu.into();
        assert_eq!(
            verify_proof(&forge(&key, good_header(&key), claims), &request(None, None)),
            Err(DpopError::Uri),
            "{htu}"
        );
    }
    // Query and fragment are ignored; RFC 3986 §6.2.2/§6.2.3 normalisation (catalogue DPOP-B04).
    for htu in [
        "https://id.test/token?x=1",
        "https://id.test/token#f",
        "HTTPS://ID.TEST/token",
        "https://id.test:443/token",
        "https://id.test./token",
        "https://id.test/%74oken",
        "https://id.test/%74%6F%6b%65%6e",
        "https://id.test/x/../token",
    ] {
        let mut claims = good_claims();
        claims["htu"] = htu.into();
        assert!(verify_proof(&forge(&key, good_header(&key), claims), &request(None, None)).is_ok(), "{htu}");
    }
}

#[test]
fn dpop_p11_iat_window_dd5() {
    let key = DpopKey::generate().unwrap();
    for (offset, ok) in [
        (0, true),
        (10, true),
        (-10, true),
        (60, true),
        (61, false),
        (-300, true),
        (-301, false),
        (3600, false),
        (-3600, false),
    ] {
        let proof = key.proof("POST", URI, None, None, NOW + offset);
        assert_eq!(verify_proof(&proof, &request(None, None)).is_ok(), ok, "offset {offset}");
    }
}

#[test]
fn dpop_r_ath_binds_the_access_token() {
    let key = DpopKey::generate().unwrap();
    let with = key.proof("POST", URI, Some("token-a"), None, NOW);
    assert!(verify_proof(&with, &request(Some("token-a"), None)).is_ok());
    assert_eq!(verify_proof(&with, &request(Some("token-b"), None)), Err(DpopError::AccessTokenHash));
    let without = key.proof("POST", URI, None, None, NOW);
    assert_eq!(verify_proof(&without, &request(Some("token-a"), None)), Err(DpopError::AccessTokenHash));
    // DD3: at the token endpoint (no access token) an ath is ignored.
    assert!(verify_proof(&with, &request(None, None)).is_ok());
}

#[test]
fn dpop_n_nonces() {
    let nonces = NonceIssuer::new([4; 32], 60);
    let key = DpopKey::generate().unwrap();
    let no_nonce = key.proof("POST", URI, None, None, NOW);
    assert_eq!(verify_proof(&no_nonce, &request(None, Some(&nonces))), Err(DpopError::UseNonce));
    assert_eq!(DpopError::UseNonce.error_code(), "use_dpop_nonce");
    let nonce = nonces.current(NOW);
    let proof = key.proof("POST", URI, None, Some(&nonce), NOW);
    assert!(verify_proof(&proof, &request(None, Some(&nonces))).is_ok());
    assert!(nonces.is_valid(&nonce, NOW + 60), "previous slot still valid");
    assert!(!nonces.is_valid(&nonce, NOW + 180), "expired");
    assert!(!NonceIssuer::new([5; 32], 60).is_valid(&nonce, NOW), "another key");
    assert!(!nonces.is_valid("garbage", NOW));
    let forged = proof.replace('a', "b");
    assert!(verify_proof(&forged, &request(None, Some(&nonces))).is_err());
}

#[test]
fn proofs_round_trip_through_pkcs8() {
    let key = DpopKey::generate().unwrap();
    let restored = DpopKey::from_pkcs8(key.pkcs8()).unwrap();
    assert_eq!(restored.jkt(), key.jkt());
    let proof = restored.proof("POST", URI, None, None, NOW);
    assert_eq!(verify_proof(&proof, &request(None, None)).unwrap().jkt, key.jkt());
}

#[tokio::test]
async fn dpop_p12_replay_cache_dd4() {
    let cache = MemoryReplayCache::new(TimeWindow::default(), 1000);
    assert!(cache.first_use("jkt:j1").await);
    assert!(!cache.first_use("jkt:j1").await);
    assert!(cache.first_use("other:j1").await, "scoped per key");
}

/// Catalogue DPOP-B08: optional `exp` and `nbf` keep their JWT meaning.
#[test]
fn dpop_b08_exp_and_nbf() {
    let key = DpopKey::generate().unwrap();
    for (claim, value, ok) in
        [("exp", NOW + 300, true), ("nbf", NOW, true), ("exp", NOW - 120, false), ("nbf", NOW + 120, false)]
    {
        let mut claims = good_claims();
        claims[claim] = value.into();
        let proof = forge(&key, good_header(&key), claims);
        assert_eq!(verify_proof(&proof, &request(None, None)).is_ok(), ok, "{claim}={value}");
    }
    let mut claims = good_claims();
    claims["exp"] = (NOW + 300).to_string().into();
    assert_eq!(verify_proof(&forge(&key, good_header(&key), claims), &request(None, None)), Err(DpopError::Malformed));
}

/// Catalogue DPOP-S18, DPOP-S19: duplicate members and `crit` (`crate::jose`).
#[test]
fn dpop_s18_s19_duplicates_and_crit() {
    let key = DpopKey::generate().unwrap();
    let mut header = good_header(&key);
    header["crit"] = serde_json::json!(["exp-x"]);
    header["exp-x"] = 1.into();
    assert_eq!(verify_proof(&forge(&key, header, good_claims()), &request(None, None)), Err(DpopError::Malformed));
    let header = b64::encode(format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{},"typ":"dpop+jwt"}}"#,
        serde_json::to_string(key.jwk()).unwrap()
    ));
    let claims =
        b64::encode(format!(r#"{{"jti":"j","htm":"POST","htu":"{URI}","htu":"https://evil.test/x","iat":{NOW}}}"#));
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        key.pkcs8(),
    )
    .unwrap();
    let input = format!("{header}.{claims}");
    let sig = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
    let proof = format!("{input}.{}", b64::encode(sig.as_ref()));
    assert_eq!(verify_proof(&proof, &request(None, None)), Err(DpopError::Malformed));
}
