//! JOSE parsing: JSON Web Keys and key sets (`gatehouse_proto::Jwk`, RFC 7517) with their thumbprints (RFC 7638)
//! and verification keys, and the protected headers of compact JWSs (RFC 7515) as the gateway reads them for ID
//! and logout tokens (`oidc::jose::header`) and as the DPoP verifier reads them (`dpop::verify_proof`).
//!
//! Input: JSON (or anything). It is read as a JWK, as a JWK set, as the protected header of a JWS, and as a
//! compact JWS itself. A JWK that parses must survive serialise → parse unchanged, and its thumbprint depends on
//! the required members only (RFC 7638 §3.2).

#![no_main]

use gatehouse_bff::oidc::jose;
use gatehouse_fuzz::{DPOP_METHOD, DPOP_URI, NOW, TOKEN_ALGS};
use gatehouse_proto::dpop::{self, Request, TimeWindow};
use gatehouse_proto::{Jwk, JwkSet, b64};
use libfuzzer_sys::fuzz_target;

/// Every algorithm a key may be asked for, symmetric ones included (they must find no key).
const ALGORITHMS: [&str; 12] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"];

fuzz_target!(|data: &[u8]| {
    // A JWK.
    if let Ok(jwk) = serde_json::from_slice::<Jwk>(data) {
        let thumbprint = jwk.thumbprint();
        if thumbprint.is_ok() {
            assert!(jwk.is_public(), "RFC 9449 §4.3 (7): a key with private members has no thumbprint");
        }
        let text = serde_json::to_vec(&jwk).expect("a parsed JWK serialises");
        let again: Jwk = serde_json::from_slice(&text).expect("a serialised JWK parses");
        assert_eq!(again, jwk, "JWK serialise → parse changed it");
        let bare = Jwk { kid: None, alg: None, key_use: None, ..jwk.clone() };
        assert_eq!(bare.thumbprint(), thumbprint, "RFC 7638 §3.2: optional members change the thumbprint");
        for alg in ALGORITHMS {
            if let Ok(alg) = alg.parse::<jsonwebtoken::Algorithm>() {
                let key = jwk.decoding_key(alg);
                assert!(key.is_none() || jwk.is_public(), "a private JWK became a verification key");
            }
        }
    }
    // A JWK set.
    if let Ok(set) = serde_json::from_slice::<JwkSet>(data) {
        let _ = set.find("k1");
    }
    // The input as the protected header of a JWS, then as a whole compact JWS.
    let as_header = format!("{}.e30.c2ln", b64::encode(data));
    let text = String::from_utf8_lossy(data);
    let allowed: Vec<String> = TOKEN_ALGS.map(str::to_owned).to_vec();
    let request = Request {
        method: DPOP_METHOD,
        uri: DPOP_URI,
        access_token: None,
        now: NOW,
        window: TimeWindow::default(),
        nonces: None,
    };
    for token in [as_header.as_str(), &text] {
        if let Ok(header) = jose::header(token, &allowed) {
            assert!(allowed.contains(&header.alg_name), "RFC 8725 §3.1: alg outside the allow-list");
        }
        let _ = jsonwebtoken::decode_header(token);
        let _ = dpop::verify_proof(token, &request);
    }
    // "sig" is no signature of any key: whatever the header says, that proof is refused.
    assert!(dpop::verify_proof(&as_header, &request).is_err(), "a proof with a forged signature passed");
});
