//! Attack material for the token service's catalogue tests (§C DPoP, §D BCP): forged DPoP proofs with any
//! header and claims (signed for real, so only the forged detail is wrong), hand-assembled compact JWS strings,
//! and the assertions behind the catalogue's "Expected" shorthand (`AS-400(x)`, `RS-401(x)`, `AZ-ERR-PAGE`).
//!
//! Used from a test file as `#[path = "support/attacks.rs"] mod attacks;` next to `mod support;`.

#![allow(dead_code)]

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::http::{StatusCode, header};
use base64::Engine;
use gatehouse_proto::b64;
use gatehouse_proto::dpop_key::DpopKey;
use serde_json::{Value, json};

use crate::support::{Harness, Reply};

pub const TOKEN_URL: &str = "https://id.test/token";
pub const PAR_URL: &str = "https://id.test/par";
pub const USERINFO_URL: &str = "https://id.test/userinfo";

/// The RFC 7638 §3.1 example RSA public key (a well-formed RSA JWK nobody here holds the private half of).
pub const RSA_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

pub fn basic(client: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}")))
}

/// The harness clock's now.
pub fn now(h: &Harness) -> i64 {
    use gatehouse_idp::clock::Clock;
    h.clock.now()
}

/// A fresh random `jti`.
pub fn jti() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    b64::encode(bytes)
}

/// `{"typ":"dpop+jwt","alg":"ES256","jwk":<key>}`.
pub fn proof_header(key: &DpopKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()})
}

/// The claims of a correct proof for `htm` `htu` at `iat`, with `ath` for `access_token`.
pub fn proof_claims(htm: &str, htu: &str, iat: i64, access_token: Option<&str>) -> Value {
    let mut claims = json!({"jti": jti(), "htm": htm, "htu": htu, "iat": iat});
    if let Some(token) = access_token {
        claims["ath"] = gatehouse_proto::dpop::ath(token).into();
    }
    claims
}

/// `base64url(header).base64url(claims)` from JSON text, kept byte for byte (duplicates, odd encodings).
pub fn signing_input(header: &str, claims: &str) -> String {
    format!("{}.{}", b64::encode(header), b64::encode(claims))
}

/// Signs JSON text with the P-256 key: JWS ES256 (`R || S`).
pub fn sign_text(key: &DpopKey, header: &str, claims: &str) -> String {
    let input = signing_input(header, claims);
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8()).unwrap();
    let signature = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(signature.as_ref()))
}

/// Signs JSON values with the P-256 key.
pub fn sign(key: &DpopKey, header: &Value, claims: &Value) -> String {
    sign_text(key, &header.to_string(), &claims.to_string())
}

/// The same, but with a DER-encoded ECDSA signature (not the JWS form: must be refused).
pub fn sign_der(key: &DpopKey, header: &Value, claims: &Value) -> String {
    let input = signing_input(&header.to_string(), &claims.to_string());
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key.pkcs8()).unwrap();
    let signature = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(signature.as_ref()))
}

/// HS256 over header and claims, keyed with `secret`.
pub fn sign_hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(&header.to_string(), &claims.to_string());
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64::encode(tag.as_ref()))
}

/// An unsigned JWS (`alg` as given), with or without the trailing dot.
pub fn unsigned(header: &Value, claims: &Value, trailing_dot: bool) -> String {
    let input = signing_input(&header.to_string(), &claims.to_string());
    if trailing_dot { format!("{input}.") } else { input }
}

/// `AS-400(x)`: 400, JSON, `Cache-Control: no-store`, `error` = x, a clean `error_description`.
#[track_caller]
pub fn assert_as400(reply: &Reply, error: &str, what: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.text());
    assert_json(reply, what);
    assert_eq!(reply.oauth_error(), error, "{what}");
}

/// `RS-401(x)`: 401 with `WWW-Authenticate: DPoP error="x", algs="…"`, no-store, no resource data.
#[track_caller]
pub fn assert_rs401(reply: &Reply, error: &str, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.text());
    let challenge = dpop_challenge(reply).unwrap_or_else(|| panic!("{what}: no DPoP challenge"));
    assert!(challenge.contains(&format!("error=\"{error}\"")), "{what}: {challenge}");
    assert!(challenge.contains("algs=\""), "{what}: {challenge}");
    assert_eq!(reply.oauth_error(), error, "{what}");
    assert!(reply.json().get("sub").is_none(), "{what}: no resource data");
}

/// A JSON body (`application/json`).
#[track_caller]
pub fn assert_json(reply: &Reply, what: &str) {
    let content_type = reply.headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("")).unwrap_or("");
    assert!(content_type.starts_with("application/json"), "{what}: content-type {content_type:?}");
}

/// `AZ-ERR-PAGE`: an error page (4xx HTML), never a redirect.
#[track_caller]
pub fn assert_error_page(reply: &Reply, what: &str) {
    assert!(reply.status.is_client_error(), "{what}: status {}", reply.status);
    assert!(
        reply.headers.get(header::LOCATION).is_none(),
        "{what}: redirected to {:?}",
        reply.headers.get(header::LOCATION)
    );
    let content_type = reply.headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("")).unwrap_or("");
    assert!(content_type.starts_with("text/html"), "{what}: content-type {content_type:?}");
}

/// The `WWW-Authenticate: DPoP …` challenge, if any.
pub fn dpop_challenge(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("DPoP"))
        .map(str::to_owned)
}

/// A listener nobody should ever connect to (the `jku`/`x5u` of forged tokens): `connections()` counts the
/// connections accepted so far.
pub struct Tripwire {
    listener: std::net::TcpListener,
    pub url: String,
}

impl Tripwire {
    pub fn new() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://127.0.0.1:{}/jwks", listener.local_addr().unwrap().port());
        Self { listener, url }
    }

    pub fn connections(&self) -> usize {
        let mut count = 0;
        while self.listener.accept().is_ok() {
            count += 1;
        }
        count
    }
}

impl Default for Tripwire {
    fn default() -> Self {
        Self::new()
    }
}
