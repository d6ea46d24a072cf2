//! ID and logout token validation against locally signed tokens, with the metadata and JWKS preloaded (no I/O:
//! the JWKS floor keeps an unknown `kid` from causing a fetch).

use std::time::Duration;

use gatehouse_proto::Secret;
use gatehouse_proto::claims::BACKCHANNEL_LOGOUT_EVENT;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://id.test";
const CLIENT: &str = "bff";
const NOW: i64 = 1_900_000_000;
const KID: &str = "k1";

struct Fixture {
    client: OidcClient,
    signer: DpopKey,
}

fn settings() -> OidcSettings {
    OidcSettings {
        issuer: Url::parse(ISSUER).unwrap(),
        client_id: CLIENT.into(),
        client_secret: Secret::new("s"),
        scopes: vec!["openid".into()],
        use_par: true,
        id_token_algs: vec!["RS256".into(), "ES256".into()],
        timeout: Duration::from_secs(1),
        metadata_ttl: Duration::from_secs(3600),
        jwks_min_refresh: Duration::from_secs(3600),
        leeway_seconds: 30,
    }
}

fn fixture_with(settings: OidcSettings) -> Fixture {
    // An ES256 key pair: the DPoP key type doubles as a signing key for the test's token service.
    let signer = DpopKey::generate().unwrap();
    let mut jwk = signer.jwk().clone();
    jwk.kid = Some(KID.into());
    jwk.alg = Some("ES256".into());
    jwk.key_use = Some("sig".into());
    let metadata: ProviderMetadata = serde_json::from_value(json!({
        "issuer": ISSUER,
        "authorization_endpoint": "https://id.test/authorize",
        "token_endpoint": "https://id.test/token",
        "jwks_uri": "https://id.test/jwks",
    }))
    .unwrap();
    let client = OidcClient::preloaded(settings, metadata, JwkSet { keys: vec![jwk] });
    Fixture { client, signer }
}

fn fixture() -> Fixture {
    fixture_with(settings())
}

impl Fixture {
    fn sign(&self, typ: Option<&str>, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(self.signer.pkcs8())).unwrap()
    }

    fn id_token(&self, claims: &Value) -> String {
        self.sign(Some("JWT"), KID, claims)
    }

    fn logout_token(&self, claims: &Value) -> String {
        self.sign(Some("logout+jwt"), KID, claims)
    }

    async fn id(&self, token: &str, nonce: Option<&str>) -> Result<IdTokenClaims, OidcError> {
        self.client.validate_id_token(token, nonce, NOW).await
    }

    async fn logout(&self, token: &str) -> Result<LogoutToken, OidcError> {
        self.client.validate_logout_token(token, NOW).await
    }
}

fn id_claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": CLIENT, "exp": NOW + 300, "iat": NOW, "nonce": "n-1", "sid": "s-1"})
}

fn logout_claims() -> Value {
    json!({
        "iss": ISSUER, "aud": CLIENT, "iat": NOW, "exp": NOW + 120, "jti": "jti-1", "sub": "alice", "sid": "s-1",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    })
}

fn with(mut claims: Value, changes: &[(&str, Value)]) -> Value {
    for (name, value) in changes {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(*name);
        } else {
            claims[*name] = value.clone();
        }
    }
    claims
}

/// Asserts an `InvalidToken` whose message contains `check`.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, OidcError>, check: &str) {
    match result {
        Err(OidcError::InvalidToken(message)) => assert!(message.contains(check), "{message:?} lacks {check:?}"),
        other => panic!("expected InvalidToken({check}), got {other:?}"),
    }
}

fn unsigned(header: &Value, claims: &Value) -> String {
    let part = |v: &Value| gatehouse_proto::b64::encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.", part(header), part(claims))
}

// ---- ID tokens (OIDC Core §3.1.3.7) ----

#[tokio::test]
async fn valid_id_token_returns_its_claims() {
    let f = fixture();
    let claims = f.id(&f.id_token(&id_claims()), Some("n-1")).await.unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.sid.as_deref(), Some("s-1"));
    // Untyped ID tokens are accepted; so is application/jwt.
    let untyped = f.sign(None, KID, &id_claims());
    assert!(f.id(&untyped, Some("n-1")).await.is_ok());
    let media = f.sign(Some("application/jwt"), KID, &id_claims());
    assert!(f.id(&media, Some("n-1")).await.is_ok());
    // No nonce expected: none required.
    let no_nonce = f.id_token(&with(id_claims(), &[("nonce", Value::Null)]));
    assert!(f.id(&no_nonce, None).await.is_ok());
}

/// §3.1.3.7 (2).
#[tokio::test]
async fn id_token_with_wrong_iss_is_refused() {
    let f = fixture();
    refused(f.id(&f.id_token(&with(id_claims(), &[("iss", json!("https://evil.test"))])), Some("n-1")).await, "iss");
    refused(f.id(&f.id_token(&with(id_claims(), &[("iss", json!("https://id.test/"))])), Some("n-1")).await, "iss");
}

/// §3.1.3.7 (3).
#[tokio::test]
async fn id_token_whose_aud_lacks_the_client_is_refused() {
    let f = fixture();
    refused(f.id(&f.id_token(&with(id_claims(), &[("aud", json!("other"))])), Some("n-1")).await, "aud");
    refused(f.id(&f.id_token(&with(id_claims(), &[("aud", json!(["a", "b"]))])), Some("n-1")).await, "aud");
}

/// §3.1.3.7 (4), (5).
#[tokio::test]
async fn id_token_azp_must_be_the_client() {
    let f = fixture();
    refused(f.id(&f.id_token(&with(id_claims(), &[("azp", json!("other"))])), Some("n-1")).await, "azp");
    // Catalogue JWT-19: another audience besides the client is not trusted, even with azp naming the client.
    let several = with(id_claims(), &[("aud", json!([CLIENT, "api"]))]);
    refused(f.id(&f.id_token(&several), Some("n-1")).await, "aud");
    let with_azp = with(several, &[("azp", json!(CLIENT))]);
    refused(f.id(&f.id_token(&with_azp), Some("n-1")).await, "aud");
    let array_of_one = with(id_claims(), &[("aud", json!([CLIENT])), ("azp", json!(CLIENT))]);
    assert!(f.id(&f.id_token(&array_of_one), Some("n-1")).await.is_ok());
}

/// §3.1.3.7 (9), with leeway.
#[tokio::test]
async fn expired_id_token_is_refused() {
    let f = fixture();
    refused(f.id(&f.id_token(&with(id_claims(), &[("exp", json!(NOW - 31))])), Some("n-1")).await, "exp");
    // Within the leeway it passes.
    assert!(f.id(&f.id_token(&with(id_claims(), &[("exp", json!(NOW - 10))])), Some("n-1")).await.is_ok());
}

/// §3.1.3.7 (10).
#[tokio::test]
async fn id_token_iat_in_the_future_or_too_old_is_refused() {
    let f = fixture();
    refused(f.id(&f.id_token(&with(id_claims(), &[("iat", json!(NOW + 120))])), Some("n-1")).await, "iat");
    let old = with(id_claims(), &[("iat", json!(NOW - 2 * 86_400)), ("exp", json!(NOW + 300))]);
    refused(f.id(&f.id_token(&old), Some("n-1")).await, "iat");
}

/// §3.1.3.7 (11).
#[tokio::test]
async fn id_token_nonce_missing_or_wrong_is_refused() {
    let f = fixture();
    refused(f.id(&f.id_token(&with(id_claims(), &[("nonce", Value::Null)])), Some("n-1")).await, "nonce");
    refused(f.id(&f.id_token(&id_claims()), Some("n-2")).await, "nonce");
}

/// RFC 8725 §3.1: `alg: none` never verifies.
#[tokio::test]
async fn alg_none_is_refused() {
    let f = fixture();
    let token = unsigned(&json!({"alg": "none", "typ": "JWT", "kid": KID}), &id_claims());
    // No signature: not even a well-formed JWS (`gatehouse_proto::jose`).
    refused(f.id(&token, Some("n-1")).await, "compact JWS");
    // With some signature, the header is refused: `none` is no algorithm.
    let signed = format!("{token}c2ln");
    refused(f.id(&signed, Some("n-1")).await, "header");
    // Even if misconfigured into the allow-list.
    let mut lax = settings();
    lax.id_token_algs.push("none".into());
    let f = fixture_with(lax);
    refused(f.id(&token, Some("n-1")).await, "compact JWS");
    refused(f.id(&signed, Some("n-1")).await, "header");
}

/// RFC 8725 §2.1: key confusion — an HS256 token "signed" with the public key's bytes is refused, even when
/// HS256 is (wrongly) in the allow-list.
#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    for algs in [vec!["ES256".to_owned()], vec!["ES256".to_owned(), "HS256".to_owned()]] {
        let f = fixture_with(OidcSettings { id_token_algs: algs, ..settings() });
        let public = serde_json::to_vec(f.signer.jwk()).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.into());
        let token = jsonwebtoken::encode(&header, &id_claims(), &EncodingKey::from_secret(&public)).unwrap();
        refused(f.id(&token, Some("n-1")).await, "alg");
    }
}

/// An alg outside the allow-list is refused before any key is looked up.
#[tokio::test]
async fn alg_outside_the_allow_list_is_refused() {
    let f = fixture_with(OidcSettings { id_token_algs: vec!["RS256".into()], ..settings() });
    refused(f.id(&f.id_token(&id_claims()), Some("n-1")).await, "allow-list");
}

/// An unknown kid is refused (here without a fetch: the JWKS was just loaded, under the refresh floor).
#[tokio::test]
async fn unknown_kid_is_refused() {
    let f = fixture();
    let token = f.sign(Some("JWT"), "k-unknown", &id_claims());
    refused(f.id(&token, Some("n-1")).await, "unknown kid");
}

/// OIDC Core §10.1 (catalogue CS-RP-19/20): a token without `kid` is verified with the only published key; once
/// the JWK Set holds several keys a `kid` is required.
#[tokio::test]
async fn kid_may_be_left_out_only_while_a_single_key_is_published() {
    let f = fixture();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("JWT".into());
    let key = EncodingKey::from_ec_der(f.signer.pkcs8());
    let token = jsonwebtoken::encode(&header, &id_claims(), &key).unwrap();
    assert_eq!(f.id(&token, Some("n-1")).await.unwrap().sub, "alice");
    // The same token, with a second key published.
    let mut first = f.signer.jwk().clone();
    first.kid = Some(KID.into());
    let mut second = DpopKey::generate().unwrap().jwk().clone();
    second.kid = Some("k2".into());
    let metadata: ProviderMetadata = serde_json::from_value(json!({
        "issuer": ISSUER,
        "authorization_endpoint": "https://id.test/authorize",
        "token_endpoint": "https://id.test/token",
        "jwks_uri": "https://id.test/jwks",
    }))
    .unwrap();
    let two = OidcClient::preloaded(settings(), metadata, JwkSet { keys: vec![first, second] });
    refused(two.validate_id_token(&token, Some("n-1"), NOW).await, "no kid");
}

/// §3.1.3.7 (6): a tampered payload or a signature by another key fails.
#[tokio::test]
async fn tampered_signature_is_refused() {
    let f = fixture();
    let token = f.id_token(&id_claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] =
        gatehouse_proto::b64::encode(serde_json::to_vec(&with(id_claims(), &[("sub", json!("mallory"))])).unwrap());
    refused(f.id(&parts.join("."), Some("n-1")).await, "signature");
    let other = Fixture { client: f.client.clone(), signer: DpopKey::generate().unwrap() };
    refused(f.id(&other.id_token(&id_claims()), Some("n-1")).await, "signature");
}

#[tokio::test]
async fn id_token_with_a_foreign_typ_is_refused() {
    let f = fixture();
    refused(f.id(&f.sign(Some("at+jwt"), KID, &id_claims()), Some("n-1")).await, "typ");
    // A logout token is not an ID token.
    refused(f.id(&f.logout_token(&logout_claims()), None).await, "typ");
}

// ---- Logout tokens (Back-Channel Logout §2.6) ----

#[tokio::test]
async fn valid_logout_token_returns_sub_sid_and_jti() {
    let f = fixture();
    let logout = f.logout(&f.logout_token(&logout_claims())).await.unwrap();
    assert_eq!(logout, LogoutToken { sub: Some("alice".into()), sid: Some("s-1".into()), jti: "jti-1".into() });
    // sid alone, aud as an array of the client: fine.
    let sid_only = with(logout_claims(), &[("sub", Value::Null), ("jti", json!("jti-2")), ("aud", json!([CLIENT]))]);
    let logout = f.logout(&f.logout_token(&sid_only)).await.unwrap();
    assert_eq!((logout.sub, logout.sid.as_deref()), (None, Some("s-1")));
    // Back-Channel Logout §2.4 (errata set 1): exp is required; catalogue JWT-19: no other audience.
    refused(
        f.logout(&f.logout_token(&with(logout_claims(), &[("exp", Value::Null), ("jti", json!("j3"))]))).await,
        "exp",
    );
    let extra = with(logout_claims(), &[("aud", json!([CLIENT, "other"])), ("jti", json!("j4"))]);
    refused(f.logout(&f.logout_token(&extra)).await, "aud");
}

/// §2.6 (2) / RFC 8725 §3.11: explicit typing.
#[tokio::test]
async fn logout_token_typ_must_be_logout_jwt() {
    let f = fixture();
    refused(f.logout(&f.sign(None, KID, &logout_claims())).await, "typ");
    refused(f.logout(&f.sign(Some("JWT"), KID, &logout_claims())).await, "typ");
    // An ID token cannot pass for a logout token.
    refused(f.logout(&f.id_token(&id_claims())).await, "typ");
    let media = with(logout_claims(), &[("jti", json!("jti-media"))]);
    assert!(f.logout(&f.sign(Some("application/logout+jwt"), KID, &media)).await.is_ok());
}

/// §2.6 (8).
#[tokio::test]
async fn logout_token_with_a_nonce_is_refused() {
    let f = fixture();
    refused(f.logout(&f.logout_token(&with(logout_claims(), &[("nonce", json!("n"))]))).await, "nonce");
}

/// §2.6 (7): events holds exactly the back-channel logout event with `{}`.
#[tokio::test]
async fn logout_token_events_must_be_the_backchannel_event() {
    let f = fixture();
    refused(f.logout(&f.logout_token(&with(logout_claims(), &[("events", Value::Null)]))).await, "events");
    for events in [
        json!({}),
        json!({"urn:other": {}}),
        json!({BACKCHANNEL_LOGOUT_EVENT: {"x": 1}}),
        json!({BACKCHANNEL_LOGOUT_EVENT: {}, "urn:other": {}}),
        json!([BACKCHANNEL_LOGOUT_EVENT]),
    ] {
        refused(f.logout(&f.logout_token(&with(logout_claims(), &[("events", events)]))).await, "events");
    }
}

/// §2.6 (9): a jti is accepted once.
#[tokio::test]
async fn logout_token_replay_is_refused() {
    let f = fixture();
    let token = f.logout_token(&logout_claims());
    assert!(f.logout(&token).await.is_ok());
    refused(f.logout(&token).await, "replay");
    // Another token with the same jti too.
    let same_jti = f.logout_token(&with(logout_claims(), &[("sid", json!("s-other"))]));
    refused(f.logout(&same_jti).await, "replay");
    refused(f.logout(&f.logout_token(&with(logout_claims(), &[("jti", Value::Null)]))).await, "jti");
}

/// §2.6 (6).
#[tokio::test]
async fn logout_token_without_sub_or_sid_is_refused() {
    let f = fixture();
    let neither = with(logout_claims(), &[("sub", Value::Null), ("sid", Value::Null)]);
    refused(f.logout(&f.logout_token(&neither)).await, "neither sub nor sid");
}

/// §2.6 (4), (5).
#[tokio::test]
async fn logout_token_iss_aud_and_times_are_checked() {
    let f = fixture();
    let cases = [
        (with(logout_claims(), &[("iss", json!("https://evil.test"))]), "iss"),
        (with(logout_claims(), &[("aud", json!("other"))]), "aud"),
        (with(logout_claims(), &[("iat", json!(NOW + 120))]), "iat"),
        (with(logout_claims(), &[("iat", json!(NOW - 3600)), ("exp", Value::Null)]), "iat"),
        (with(logout_claims(), &[("exp", json!(NOW - 60))]), "exp"),
    ];
    for (claims, check) in cases {
        refused(f.logout(&f.logout_token(&claims)).await, check);
    }
    let token = f.sign(Some("logout+jwt"), "k-unknown", &logout_claims());
    refused(f.logout(&token).await, "unknown kid");
}

#[test]
fn errors_never_show_tokens() {
    let message = OidcError::Refused { error: "invalid_grant".into(), description: Some("d".into()) }.to_string();
    assert_eq!(message, "refused by the token service: invalid_grant");
}
