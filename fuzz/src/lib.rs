//! Fixtures shared by the fuzz targets (`fuzz_targets/`) and the seed generator (`examples/seeds.rs`): a fixed
//! clock, fixed keys, the registered clients and the expected values the targets check input against.
//!
//! Everything is fixed, never random, so that a committed seed (a signed DPoP proof, a sealed cookie, a signed
//! logout token) stays valid and reaches the checks behind the signature, and so a crash reproduces.
//! The keys here are fuzzing fixtures, published with the source: they protect nothing.

#![forbid(unsafe_code)]

use std::sync::OnceLock;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use gatehouse_bff::seal::KeyRing;
use gatehouse_bff::settings::CookieKey;
use gatehouse_idp::settings::ApiResource;
use gatehouse_idp::store::ClientRecord;
use gatehouse_proto::claims::BACKCHANNEL_LOGOUT_EVENT;
use gatehouse_proto::dpop::NonceIssuer;
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use gatehouse_proto::{Jwk, JwkSet, Secret, b64};

/// The fixed "now" of every target (2030-03-17).
pub const NOW: i64 = 1_900_000_000;

/// A P-256 private key (PKCS#8 DER, base64url) that signs the targets' proofs and tokens. A fixture, not a
/// secret.
const SIGNING_KEY_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg7P-Knquc3s3P6z00YwUXbwAafKKFpdfv7Oh-\
                                 5siJzWKhRANCAASfel958IFa-TSIJLYnr8fDJ-ldDxUKN-ii4DguBuhWGTC2NVeBUWes-C5f6UgJ5ej4pMu7\
                                 wUyZrxrUexlDrG0V";

fn signing_key_der() -> Vec<u8> {
    b64::decode(SIGNING_KEY_PKCS8).expect("the fixture key is base64url")
}

/// The fixture key as a DPoP client key (its public JWK goes into proof headers).
pub fn dpop_key() -> &'static DpopKey {
    static KEY: OnceLock<DpopKey> = OnceLock::new();
    KEY.get_or_init(|| DpopKey::from_pkcs8(&signing_key_der()).expect("the fixture key is a P-256 PKCS#8 key"))
}

/// Signs `header` and `payload` (any bytes) with the fixture key as an ES256 compact JWS (RFC 7515 §7.1): the
/// targets use it to put fuzzer-chosen headers and claims behind a valid signature.
pub fn sign_compact(header: &[u8], payload: &[u8]) -> String {
    static PAIR: OnceLock<EcdsaKeyPair> = OnceLock::new();
    let pair = PAIR.get_or_init(|| {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &signing_key_der()).expect("fixture key")
    });
    let signing_input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let signature = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), signing_input.as_bytes())
        .expect("ECDSA signing does not fail for a valid key");
    format!("{signing_input}.{}", b64::encode(signature.as_ref()))
}

// ---- Session cookies (bff `seal`, `chunks`) ----

/// The gateway's default session cookie name.
pub const COOKIE_NAME: &str = "__Host-gatehouse";

/// A key ring after one rotation: `k2` seals, `k1` still opens.
pub fn key_ring() -> KeyRing {
    KeyRing::new(&[CookieKey { id: "k2".into(), key: [2; 32] }, CookieKey { id: "k1".into(), key: [1; 32] }])
        .expect("valid fixture ring")
}

/// The same ring before the rotation: seals with `k1` (an older cookie, which the current ring re-seals).
pub fn old_key_ring() -> KeyRing {
    KeyRing::new(&[CookieKey { id: "k1".into(), key: [1; 32] }]).expect("valid fixture ring")
}

// ---- DPoP proofs (proto `dpop`) ----

/// The endpoint the fuzzed proofs are checked against.
pub const DPOP_METHOD: &str = "POST";
pub const DPOP_URI: &str = "https://id.test/token";
/// The access token presented with a proof when a target asks for `ath` checking.
pub const ACCESS_TOKEN: &str = "fuzz-access-token";

/// The server-nonce issuer of the DPoP target.
pub fn nonce_issuer() -> NonceIssuer {
    NonceIssuer::new([7; 32], 300)
}

/// The protected header of a valid proof of the fixture key.
pub fn dpop_header() -> serde_json::Value {
    serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_key().jwk()})
}

/// The claims of a valid proof for `DPOP_URI` at `NOW`; `ath` and `nonce` as the request needs them.
pub fn dpop_claims(with_access_token: bool, with_nonce: bool) -> serde_json::Value {
    let mut claims = serde_json::json!({"jti": "fuzz-jti", "htm": DPOP_METHOD, "htu": DPOP_URI, "iat": NOW});
    if with_access_token {
        claims["ath"] = gatehouse_proto::dpop::ath(ACCESS_TOKEN).into();
    }
    if with_nonce {
        claims["nonce"] = nonce_issuer().current(NOW).into();
    }
    claims
}

// ---- Logout tokens (bff `oidc::logout_token`) ----

/// The token service the gateway trusts, and the gateway's client id there.
pub const ISSUER: &str = "https://id.test";
pub const CLIENT_ID: &str = "bff";
/// The `kid` of the fixture key in the token service's key set.
pub const KID: &str = "k1";
/// The algorithms the gateway accepts for ID and logout tokens (its default `id_token_algs`).
pub const TOKEN_ALGS: [&str; 2] = ["RS256", "ES256"];

/// The token service's key set: the fixture key as `k1` (ES256, `use=sig`).
pub fn token_service_keys() -> JwkSet {
    let mut jwk: Jwk = dpop_key().jwk().clone();
    jwk.kid = Some(KID.into());
    jwk.alg = Some("ES256".into());
    jwk.key_use = Some("sig".into());
    JwkSet { keys: vec![jwk] }
}

/// The header of a valid logout token.
pub fn logout_header() -> serde_json::Value {
    serde_json::json!({"alg": "ES256", "typ": "logout+jwt", "kid": KID})
}

/// The claims of a valid logout token at `NOW` (Back-Channel Logout 1.0 §2.4).
pub fn logout_claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": CLIENT_ID, "iat": NOW, "exp": NOW + 120, "jti": "fuzz-logout-1", "sub": "alice",
        "sid": "s-1", "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    })
}

// ---- Token service clients (idp `authorize`, `client_auth`, `resource`) ----

/// The confidential client's secret (`client_secret_basic`) and the machine client's (`client_secret_post`).
pub const BFF_SECRET: &str = "bff-secret-0123456789abcdef0123456789";
pub const M2M_SECRET: &str = "m2m-secret-0123456789abcdef0123456789";

/// The registered clients: `spa` (public, `none`), `bff` (`client_secret_basic`), `m2m` (`client_secret_post`,
/// client credentials only) and `signed` (`private_key_jwt` with the fixture key).
pub fn clients() -> Vec<ClientRecord> {
    let client = |id: &str, auth_method, grant_types: Vec<GrantType>| ClientRecord {
        client_id: id.into(),
        name: None,
        auth_method,
        secret_sha256: None,
        jwks: None,
        redirect_uris: vec![
            "https://app.test/bff/callback".into(),
            "https://app.test/cb?tenant=1".into(),
            "http://127.0.0.1:8080/cb".into(),
        ],
        post_logout_redirect_uris: vec!["https://app.test/".into()],
        grant_types,
        scopes: ["openid", "profile", "email", "offline_access", "api", "api.read", "billing"]
            .map(str::to_owned)
            .to_vec(),
        id_token_signed_response_alg: SigningAlg::ES256,
        backchannel_logout_uri: None,
        source: "config".into(),
        require_dpop: false,
        require_dpop_nonce: false,
        require_pushed_authorization_requests: false,
    };
    let user_grants = || vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
    let mut bff = client("bff", ClientAuthMethod::ClientSecretBasic, user_grants());
    bff.secret_sha256 = Some(gatehouse_idp::admin::secret_digest(&Secret::new(BFF_SECRET)));
    let mut m2m = client("m2m", ClientAuthMethod::ClientSecretPost, vec![GrantType::ClientCredentials]);
    m2m.secret_sha256 = Some(gatehouse_idp::admin::secret_digest(&Secret::new(M2M_SECRET)));
    let mut signed = client("signed", ClientAuthMethod::PrivateKeyJwt, user_grants());
    let mut jwk = dpop_key().jwk().clone();
    jwk.kid = Some("c1".into());
    signed.jwks = Some(JwkSet { keys: vec![jwk] });
    let mut spa = client("spa", ClientAuthMethod::None, user_grants());
    spa.require_dpop = true;
    vec![spa, bff, m2m, signed]
}

/// The registered client named `client_id`, as the store would return it.
pub fn client(client_id: &str) -> Option<ClientRecord> {
    clients().into_iter().find(|c| c.client_id == client_id)
}

/// The APIs (RFC 8707 resources) the token service knows.
pub fn apis() -> Vec<ApiResource> {
    vec![
        ApiResource { audience: "https://api.test".into(), scopes: vec!["api".into(), "api.read".into()] },
        ApiResource { audience: "https://billing.test/".into(), scopes: vec!["billing".into()] },
    ]
}

/// The claims of a valid `private_key_jwt` client assertion of `signed` (RFC 7523 §3) at `NOW`.
pub fn assertion_claims() -> serde_json::Value {
    serde_json::json!({
        "iss": "signed", "sub": "signed", "aud": format!("{ISSUER}/token"), "iat": NOW, "exp": NOW + 60,
        "jti": "fuzz-assertion-1",
    })
}

// ---- Input splitting ----

/// `data` cut at the first `separator`: (before, Some(after)), or (data, None) without one.
pub fn split_at_byte(data: &[u8], separator: u8) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == separator) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_consistent() {
        // The fixture key loads and signs what the verifiers accept.
        let proof = dpop_key().proof(DPOP_METHOD, DPOP_URI, None, None, NOW);
        let request = gatehouse_proto::dpop::Request {
            method: DPOP_METHOD,
            uri: DPOP_URI,
            access_token: None,
            now: NOW,
            window: Default::default(),
            nonces: None,
        };
        assert!(gatehouse_proto::dpop::verify_proof(&proof, &request).is_ok());
        let forged =
            sign_compact(dpop_header().to_string().as_bytes(), dpop_claims(false, false).to_string().as_bytes());
        assert!(gatehouse_proto::dpop::verify_proof(&forged, &request).is_ok());
        assert_eq!(clients().len(), 4);
        assert_eq!(split_at_byte(b"a\nb\nc", b'\n'), (&b"a"[..], Some(&b"b\nc"[..])));
        assert_eq!(split_at_byte(b"abc", b'\n'), (&b"abc"[..], None));
    }
}
