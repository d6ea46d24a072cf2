//! Helpers for the catalogue §A/§E tests of the token service (`tests/catalogue_op.rs`): client set-ups the
//! shared harness does not seed (DPoP-requiring clients, a `private_key_jwt` client for the code flow, extra
//! redirect URIs), PAR + login through the form, DPoP proofs of any shape, client assertions of any shape, and
//! the token service served on a real socket (for headers only a server adds, e.g. `Date`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use gatehouse_idp::clock::Clock;
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::pkce::{CodeChallenge, CodeVerifier};
use gatehouse_proto::vocab::GrantType;
use gatehouse_proto::{Jwk, JwkSet, b64};
use serde_json::{Value, json};

use crate::support::*;

pub const TOKEN_URL: &str = "https://id.test/token";
pub const PAR_URL: &str = "https://id.test/par";
pub const USERINFO_URL: &str = "https://id.test/userinfo";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn basic(client: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}")))
}

pub fn now(h: &Harness) -> i64 {
    h.clock.now()
}

/// A fresh random identifier (for `jti`s).
pub fn fresh_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    format!("{}-{}", b64::encode(bytes), N.fetch_add(1, Ordering::Relaxed))
}

/// Changes a seeded client before the first request (the token endpoint caches clients for 5 s).
pub async fn edit_client(h: &Harness, client_id: &str, edit: impl FnOnce(&mut gatehouse_idp::store::ClientRecord)) {
    let mut record = h.store.clients.client(client_id).await.unwrap().expect("seeded client");
    edit(&mut record);
    h.store.clients.upsert_client(record).await.unwrap();
}

// ---------------------------------------------------------------------------------------------------------
// DPoP proofs of any shape

/// Signs `header`.`claims` with `key` (ES256), whatever they say.
pub fn forge_proof(key: &DpopKey, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64::encode(header.to_string()), b64::encode(claims.to_string()));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8()).unwrap();
    let signature = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(signature.as_ref()))
}

/// The header a correct proof of `key` has.
pub fn proof_header(key: &DpopKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()})
}

/// The claims a correct proof has (a fresh `jti`; `ath` when a token is given).
pub fn proof_claims(method: &str, htu: &str, access_token: Option<&str>, iat: i64) -> Value {
    let mut claims = json!({"jti": fresh_id(), "htm": method, "htu": htu, "iat": iat});
    if let Some(token) = access_token {
        claims["ath"] = gatehouse_proto::dpop::ath(token).into();
    }
    claims
}

/// The P-256 private scalar `d` of a DpopKey, read from its PKCS#8 (RFC 5915 `ECPrivateKey`: version 1, then
/// a 32-byte OCTET STRING).
pub fn private_d(key: &DpopKey) -> String {
    let der = key.pkcs8();
    let at = der.windows(5).position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20]).expect("ECPrivateKey") + 5;
    b64::encode(&der[at..at + 32])
}

/// `GET /userinfo` with `Authorization: <scheme> <token>`, the given DPoP headers (each value one header line,
/// under `header_name`) and an optional query.
pub async fn userinfo_with(
    h: &Harness,
    scheme: &str,
    token: &str,
    header_name: &str,
    proofs: &[&str],
    query: &str,
) -> Reply {
    let mut request =
        Request::get(format!("/userinfo{query}")).header(header::AUTHORIZATION, format!("{scheme} {token}"));
    for proof in proofs {
        request = request.header(header_name, *proof);
    }
    h.send(request.body(Body::empty()).unwrap()).await
}

/// RFC 9449 §7.1: a refused resource request is 401 with a `DPoP` challenge naming one of `errors`.
pub fn assert_dpop_401(reply: &Reply, errors: &[&str], what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.text());
    let challenge = reply.headers.get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
    let challenge = challenge.unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(challenge.starts_with("DPoP "), "{what}: {challenge}");
    assert!(errors.iter().any(|e| challenge.contains(&format!("error=\"{e}\""))), "{what}: {challenge}");
    assert!(challenge.contains("algs=\""), "{what}: algs SHOULD be listed: {challenge}");
    assert_eq!(reply.json().get("sub"), None, "{what}: no resource data");
}

// ---------------------------------------------------------------------------------------------------------
// PAR and the login form

/// The authorization request parameters of a PAR body for `CALLBACK` with PKCE S256 of `verifier`.
pub fn par_form(verifier: &CodeVerifier, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let challenge = CodeChallenge::s256(verifier);
    let mut form: Vec<(String, String)> = [
        ("response_type", "code"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid offline_access api"),
        ("state", "st-par"),
        ("nonce", "n-par"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (name, value) in extra {
        form.retain(|(k, _)| k != name);
        if !value.is_empty() {
            form.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    form
}

/// `POST /par` with `form` and `headers`.
pub async fn push(h: &Harness, form: &[(String, String)], headers: &[(&str, &str)]) -> Reply {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    h.post_form("/par", &form, headers).await
}

/// The `request_uri` of a successful PAR answer (asserting RFC 9126 §2.2).
pub fn request_uri_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply.json()["request_uri"].as_str().unwrap().to_owned()
}

pub fn par_authorize_uri(client_id: &str, request_uri: &str) -> String {
    format!("/authorize?client_id={client_id}&request_uri={}", enc(request_uri))
}

/// Submits the login form of `page` as alice; returns the redirect to the client.
pub async fn submit_login(h: &Harness, page: &Reply) -> Reply {
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    h.post_form(
        "/login",
        &[("username", "alice"), ("password", ALICE_PASSWORD), ("csrf", &csrf), ("request", &request)],
        &[("cookie", &cookie)],
    )
    .await
}

/// A PAR-started login of alice as `client_id` authenticated by `auth` headers; returns the redirect with the
/// code (asserting RFC 9207 `iss` and the code in the query).
pub async fn par_login(h: &Harness, client_id: &str, form: &[(String, String)], headers: &[(&str, &str)]) -> Reply {
    let request_uri = request_uri_of(&push(h, form, headers).await);
    let page = h.get(&par_authorize_uri(client_id, &request_uri), None).await;
    let reply = submit_login(h, &page).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.param("iss").as_deref(), Some(ISSUER));
    assert!(reply.location().fragment().is_none());
    reply
}

/// `POST /token` with `form` and headers (`dpop` proofs among them).
pub async fn token_with(h: &Harness, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
    h.post_form("/token", form, headers).await
}

/// Asserts `AS-400(x)` for one of `codes` and returns the code.
pub fn assert_as_400(reply: &Reply, codes: &[&str], what: &str) -> String {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.text());
    assert_json(reply, what);
    let code = reply.oauth_error();
    assert!(codes.contains(&code.as_str()), "{what}: {code}");
    code
}

/// Asserts `AS-401(invalid_client)` (400 tolerated by the suite, but this server answers 401).
pub fn assert_invalid_client(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.text());
    assert_json(reply, what);
    assert_eq!(reply.oauth_error(), "invalid_client", "{what}");
}

pub fn assert_json(reply: &Reply, what: &str) {
    let content_type = reply.headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    assert!(content_type.is_some_and(|t| t.starts_with("application/json")), "{what}: content type");
}

/// `AZ-ERR-PAGE`: an HTML error page, 4xx, no `Location`.
pub fn assert_error_page(reply: &Reply, what: &str) {
    assert!(reply.status.is_client_error(), "{what}: {} {}", reply.status, reply.text());
    assert!(reply.headers.get(header::LOCATION).is_none(), "{what}: must not redirect");
    let content_type = reply.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{what}: {content_type}");
}

/// `AZ-REDIR(x)`: 303 to the registered redirect URI with `error`, `state` echoed and `iss`; no fragment.
pub fn assert_redirected_error(reply: &Reply, registered: &str, error: &str, state: Option<&str>, what: &str) {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{what}: {}", reply.text());
    let location = reply.location();
    assert!(location.as_str().starts_with(registered), "{what}: {location}");
    assert!(location.fragment().is_none(), "{what}: never the fragment");
    assert_eq!(reply.param("error").as_deref(), Some(error), "{what}: {location}");
    assert_eq!(reply.param("state").as_deref(), state, "{what}");
    assert_eq!(reply.param("iss").as_deref(), Some(ISSUER), "{what}");
    assert!(reply.param("code").is_none(), "{what}");
}

// ---------------------------------------------------------------------------------------------------------
// private_key_jwt

/// A P-256 key of a `private_key_jwt` client, `kid` "k1".
pub struct ClientKey {
    pub pkcs8: Vec<u8>,
    pub jwk: Jwk,
}

impl ClientKey {
    pub fn generate() -> Self {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let mut jwk = Jwk::ec("P-256", &point[1..33], &point[33..]);
        jwk.kid = Some("k1".into());
        Self { pkcs8: doc.as_ref().to_vec(), jwk }
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk.clone()] }
    }

    /// An ES256 client assertion with exactly `claims`.
    pub fn assertion(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

/// The claims of a good assertion of client `pkjwt` for `aud`.
pub fn assertion_claims(aud: Value, now: i64) -> Value {
    json!({"iss": "pkjwt", "sub": "pkjwt", "aud": aud, "jti": fresh_id(), "iat": now, "exp": now + 60})
}

/// A harness whose `pkjwt` client (private_key_jwt, `key`) may also run the code flow at `CALLBACK`.
pub async fn pkjwt_harness(key: &ClientKey) -> Harness {
    let h = Harness::with(|_| {}, Some(key.jwks())).await;
    edit_client(&h, "pkjwt", |c| {
        c.grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials];
        c.redirect_uris = vec![CALLBACK.into()];
        c.scopes = ["openid", "offline_access", "api"].map(String::from).to_vec();
    })
    .await;
    h
}

/// The form fields of `private_key_jwt` client authentication with `assertion`.
pub fn with_assertion(form: &[(String, String)], assertion: &str) -> Vec<(String, String)> {
    let mut form = form.to_vec();
    form.push(("client_assertion_type".into(), JWT_BEARER.into()));
    form.push(("client_assertion".into(), assertion.into()));
    form
}

// ---------------------------------------------------------------------------------------------------------
// A real socket

/// Serves the harness's router on a free loopback port; returns its base URL.
pub async fn serve(h: &Harness) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let router = h.router.clone();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap()
    });
    base
}
