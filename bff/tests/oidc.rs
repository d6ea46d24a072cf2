//! The gateway's OIDC client against a real token service in process on a free port: discovery, PAR, the
//! login form, the DPoP-bound code exchange, ID token validation, refresh, revocation, client credentials,
//! DPoP nonces, back-channel logout tokens and an unreachable token service.
//!
//! Run: `cargo test -p gatehouse-bff --test oidc`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_bff::oidc::{AuthorizationRequest, OidcClient, OidcError};
use gatehouse_bff::settings::OidcSettings;
use gatehouse_idp::settings::{SeedClient, SeedPassword, SeedUser, Settings};
use gatehouse_idp::store::ClientRecord;
use gatehouse_idp::{Idp, Store, admin, backchannel, tokens};
use gatehouse_proto::Secret;
use gatehouse_proto::claims::{LOGOUT_TOKEN_TYP, StandardClaims};
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::pkce::{CodeChallenge, CodeVerifier};
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use url::Url;

const SECRET: &str = "bff-oidc-test-secret-0123456789abcdefghijklmnop";
const CALLBACK: &str = "https://app.test/bff/callback";
const POST_LOGOUT: &str = "https://app.test/";
const SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "api"];

struct TokenService {
    issuer: String,
    idp: Idp,
}

/// A token service with alice and two confidential clients: `bff`, and `bff-nonce` which requires DPoP
/// nonces (RFC 9449 §8).
async fn token_service() -> TokenService {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let settings = Settings::for_tests(&issuer);
    let store = Store::open("sqlite::memory:").await.unwrap();
    let alice = SeedUser {
        username: "alice".into(),
        password: SeedPassword::Plain(Secret::new("alice-password")),
        claims: StandardClaims { name: Some("Alice".into()), ..Default::default() },
    };
    let clients = [client("bff", false), client("bff-nonce", true)];
    admin::seed(&store, &[alice], &clients, 0).await.unwrap();
    let idp = Idp::start(settings, store).await.unwrap();
    let router = idp.router();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    TokenService { issuer, idp }
}

fn client(id: &str, require_dpop_nonce: bool) -> SeedClient {
    SeedClient {
        record: ClientRecord {
            client_id: id.into(),
            name: None,
            auth_method: ClientAuthMethod::ClientSecretBasic,
            secret_sha256: None,
            jwks: None,
            redirect_uris: vec![CALLBACK.into()],
            post_logout_redirect_uris: vec![POST_LOGOUT.into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials],
            scopes: SCOPES.map(String::from).to_vec(),
            id_token_signed_response_alg: SigningAlg::RS256,
            backchannel_logout_uri: None,
            source: String::new(),
            require_dpop: true,
            require_dpop_nonce,
            require_pushed_authorization_requests: false,
        },
        secret: Some(Secret::new(SECRET)),
    }
}

fn settings(issuer: &str, client_id: &str, use_par: bool) -> OidcSettings {
    OidcSettings {
        issuer: Url::parse(issuer).unwrap(),
        client_id: client_id.into(),
        client_secret: Secret::new(SECRET),
        scopes: SCOPES.map(String::from).to_vec(),
        use_par,
        id_token_algs: vec!["RS256".into(), "ES256".into()],
        timeout: Duration::from_secs(5),
        metadata_ttl: Duration::from_secs(300),
        jwks_min_refresh: Duration::from_secs(1),
        leeway_seconds: 30,
    }
}

fn now() -> i64 {
    gatehouse_bff::now()
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The JWT payload, unverified (to look at `cnf`).
fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&gatehouse_proto::b64::decode(part).unwrap()).unwrap()
}

/// A login transaction as `/bff/login` would hold it.
struct Login {
    verifier: CodeVerifier,
    challenge: String,
    dpop: DpopKey,
}

impl Login {
    fn new() -> Self {
        let bytes: [u8; 32] = std::array::from_fn(|_| rand::random());
        let verifier = CodeVerifier::from_random(&bytes);
        let challenge = CodeChallenge::s256(&verifier).as_str().to_owned();
        Self { verifier, challenge, dpop: DpopKey::generate().unwrap() }
    }

    fn request(&self) -> AuthorizationRequest<'_> {
        AuthorizationRequest {
            redirect_uri: CALLBACK,
            state: "state-1",
            nonce: "nonce-1",
            code_challenge: &self.challenge,
            prompt: Some("login"),
        }
    }
}

/// Plays the browser: the authorization URL → the login page → the form POST → the redirect to the callback.
/// Returns the callback URL.
async fn log_in_as_alice(authorization_url: &Url, issuer: &str) -> Url {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = browser.get(authorization_url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookies: Vec<String> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let html = page.text().await.unwrap();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    };
    let (csrf, request) = (field("csrf"), field("request"));
    let posted = browser
        .post(format!("{issuer}/login"))
        .header("cookie", cookies.join("; "))
        .form(&[("username", "alice"), ("password", "alice-password"), ("csrf", &csrf), ("request", &request)])
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_redirection(), "{}", posted.status());
    let location = Url::parse(posted.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(CALLBACK), "{location}");
    location
}

#[tokio::test]
async fn metadata_is_discovered_for_the_configured_issuer() {
    let ts = token_service().await;
    let oidc = OidcClient::new(settings(&ts.issuer, "bff", true));
    let metadata = oidc.metadata().await.unwrap();
    assert_eq!(metadata.issuer, ts.issuer);
    assert!(metadata.pushed_authorization_request_endpoint.is_some());
    assert!(metadata.authorization_response_iss_parameter_supported);
    // Cached: the same document comes back.
    assert!(Arc::ptr_eq(&metadata, &oidc.metadata().await.unwrap()));
}

/// OIDC Discovery §4.3: a document for another issuer is refused.
#[tokio::test]
async fn metadata_for_another_issuer_is_refused() {
    let ts = token_service().await;
    let wrong = ts.issuer.replace("127.0.0.1", "localhost");
    let result = OidcClient::new(settings(&wrong, "bff", true)).metadata().await;
    assert!(matches!(result, Err(OidcError::Protocol(_))), "{result:?}");
}

/// The whole login: PAR, the form, the DPoP-bound exchange, the ID token, refresh, revocation.
#[tokio::test]
async fn par_login_exchange_refresh_and_revocation() {
    let ts = token_service().await;
    let oidc = OidcClient::new(settings(&ts.issuer, "bff", true));
    let login = Login::new();

    // RFC 9126 §4: with PAR the URL carries only client_id and request_uri.
    let url = oidc.authorization_url(&login.request(), &login.dpop).await.unwrap();
    assert!(url.as_str().starts_with(&format!("{}/authorize?", ts.issuer)), "{url}");
    assert!(param(&url, "request_uri").is_some_and(|u| u.starts_with("urn:ietf:params:oauth:request_uri:")));
    assert_eq!(param(&url, "client_id").as_deref(), Some("bff"));
    assert!(param(&url, "code_challenge").is_none() && param(&url, "nonce").is_none());

    let callback = log_in_as_alice(&url, &ts.issuer).await;
    assert_eq!(param(&callback, "state").as_deref(), Some("state-1"));
    let code = param(&callback, "code").unwrap();

    // RFC 9449 §5: the token is DPoP-bound to the transaction's key.
    let tokens = oidc.exchange_code(&code, login.verifier.expose(), CALLBACK, &login.dpop).await.unwrap();
    assert!(tokens.token_type.eq_ignore_ascii_case("dpop"));
    assert_eq!(payload(&tokens.access_token)["cnf"]["jkt"], login.dpop.jkt());
    assert!(!format!("{tokens:?}").contains(&tokens.access_token), "Debug must redact");

    // OIDC Core §3.1.3.7 with the nonce sent.
    let id_token = tokens.id_token.clone().unwrap();
    let claims = oidc.validate_id_token(&id_token, Some("nonce-1"), now()).await.unwrap();
    assert!(claims.aud.contains("bff"));
    assert!(matches!(
        oidc.validate_id_token(&id_token, Some("another-nonce"), now()).await,
        Err(OidcError::InvalidToken(_))
    ));

    // Refresh with the same key.
    let refresh_token = tokens.refresh_token.clone().unwrap();
    let refreshed = oidc.refresh(&refresh_token, &login.dpop).await.unwrap();
    assert_eq!(payload(&refreshed.access_token)["cnf"]["jkt"], login.dpop.jkt());
    let latest = refreshed.refresh_token.clone().unwrap_or(refresh_token);

    // RFC 7009, then the refresh token is refused: the session would end.
    oidc.revoke_refresh_token(&latest).await.unwrap();
    let after = oidc.refresh(&latest, &login.dpop).await;
    assert!(matches!(&after, Err(OidcError::Refused { error, .. }) if error == "invalid_grant"), "{after:?}");

    // RP-Initiated Logout 1.0 §3.
    let end = oidc.end_session_url(&id_token, POST_LOGOUT).await.unwrap().unwrap();
    assert!(end.as_str().starts_with(&format!("{}/end_session?", ts.issuer)));
    assert_eq!(param(&end, "id_token_hint").as_deref(), Some(id_token.as_str()));
    assert_eq!(param(&end, "post_logout_redirect_uri").as_deref(), Some(POST_LOGOUT));
    assert_eq!(param(&end, "client_id").as_deref(), Some("bff"));

    // A reused code is refused (and revokes what it issued), not "unavailable".
    let reused = oidc.exchange_code(&code, login.verifier.expose(), CALLBACK, &login.dpop).await;
    assert!(matches!(reused, Err(OidcError::Refused { .. })), "{reused:?}");
}

/// Without PAR the URL carries the whole request, with PKCE S256 and dpop_jkt (RFC 9449 §10).
#[tokio::test]
async fn front_channel_authorization_url_carries_the_request() {
    let ts = token_service().await;
    let oidc = OidcClient::new(settings(&ts.issuer, "bff", false));
    let login = Login::new();
    let url = oidc.authorization_url(&login.request(), &login.dpop).await.unwrap();
    assert!(param(&url, "request_uri").is_none());
    assert_eq!(param(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&url, "code_challenge").as_deref(), Some(login.challenge.as_str()));
    assert_eq!(param(&url, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param(&url, "dpop_jkt").as_deref(), Some(login.dpop.jkt()));
    assert_eq!(param(&url, "nonce").as_deref(), Some("nonce-1"));
    assert_eq!(param(&url, "prompt").as_deref(), Some("login"));
    assert_eq!(param(&url, "scope").as_deref(), Some("openid profile offline_access api"));

    let code = param(&log_in_as_alice(&url, &ts.issuer).await, "code").unwrap();
    // RFC 9449 §10: the code is bound to dpop_jkt; another key cannot redeem it.
    let other = DpopKey::generate().unwrap();
    let stolen = oidc.exchange_code(&code, login.verifier.expose(), CALLBACK, &other).await;
    assert!(matches!(stolen, Err(OidcError::Refused { .. })), "{stolen:?}");
}

/// RFC 6749 §4.4, DPoP-bound.
#[tokio::test]
async fn client_credentials_token_is_dpop_bound() {
    let ts = token_service().await;
    let oidc = OidcClient::new(settings(&ts.issuer, "bff", true));
    let key = DpopKey::generate().unwrap();
    let tokens = oidc.client_credentials(&["api".to_owned()], &key).await.unwrap();
    assert!(tokens.token_type.eq_ignore_ascii_case("dpop"));
    assert_eq!(payload(&tokens.access_token)["cnf"]["jkt"], key.jkt());
    assert!(tokens.refresh_token.is_none());
    // A scope the client may not have is refused.
    let refused = oidc.client_credentials(&["admin".to_owned()], &key).await;
    assert!(matches!(refused, Err(OidcError::Refused { .. })), "{refused:?}");
}

/// RFC 9449 §8: a `use_dpop_nonce` answer is retried once with the nonce, at PAR and at the token endpoint.
#[tokio::test]
async fn dpop_nonce_is_obtained_and_used() {
    let ts = token_service().await;
    let oidc = OidcClient::new(settings(&ts.issuer, "bff-nonce", true));
    let key = DpopKey::generate().unwrap();
    let tokens = oidc.client_credentials(&["api".to_owned()], &key).await.unwrap();
    assert_eq!(payload(&tokens.access_token)["cnf"]["jkt"], key.jkt());

    let login = Login::new();
    let url = oidc.authorization_url(&login.request(), &login.dpop).await.unwrap();
    let code = param(&log_in_as_alice(&url, &ts.issuer).await, "code").unwrap();
    let tokens = oidc.exchange_code(&code, login.verifier.expose(), CALLBACK, &login.dpop).await.unwrap();
    assert!(oidc.refresh(&tokens.refresh_token.unwrap(), &login.dpop).await.is_ok());
}

/// Back-Channel Logout §2.6 with a token the token service signed: accepted once.
#[tokio::test]
async fn logout_token_signed_by_the_token_service_is_accepted_once() {
    let ts = token_service().await;
    let oidc = OidcClient::new(settings(&ts.issuer, "bff", true));
    let claims = backchannel::logout_token_claims(&ts.issuer, "bff", "sub-a", "sid-1", "jti-1".into(), now());
    let keys = ts.idp.state().keys.current();
    let token = tokens::sign(&keys, SigningAlg::RS256, LOGOUT_TOKEN_TYP, &claims).unwrap();
    let logout = oidc.validate_logout_token(&token, now()).await.unwrap();
    assert_eq!((logout.sub.as_deref(), logout.sid.as_deref()), (Some("sub-a"), Some("sid-1")));
    assert!(matches!(oidc.validate_logout_token(&token, now()).await, Err(OidcError::InvalidToken(_))));
    // Meant for another client.
    let claims = backchannel::logout_token_claims(&ts.issuer, "other", "sub-a", "sid-1", "jti-2".into(), now());
    let token = tokens::sign(&keys, SigningAlg::RS256, LOGOUT_TOKEN_TYP, &claims).unwrap();
    assert!(matches!(oidc.validate_logout_token(&token, now()).await, Err(OidcError::InvalidToken(_))));
}

/// OpenID Connect Core §10.1.1: a token signed by a freshly rotated key is verified at once, however recent the
/// last JWKS fetch (before, any fetch within `jwks_min_refresh` refused it: found by scripts/soak.sh); only a
/// fetch that found nothing (a made-up `kid`) holds the next one back.
#[tokio::test]
async fn a_rotated_signing_key_is_fetched_at_once_and_made_up_kids_are_held_back() {
    let ts = token_service().await;
    let state = ts.idp.state();
    let oidc = OidcClient::new(OidcSettings {
        jwks_min_refresh: Duration::from_secs(3600),
        ..settings(&ts.issuer, "bff", true)
    });
    let logout_token = |jti: &str| {
        let claims = backchannel::logout_token_claims(&ts.issuer, "bff", "sub-a", "sid-1", jti.into(), now());
        tokens::sign(&state.keys.current(), SigningAlg::RS256, LOGOUT_TOKEN_TYP, &claims).unwrap()
    };
    let rotate = async || {
        admin::rotate_keys(&state.store, &state.settings.master_key, now()).await.unwrap();
        state.keys.reload(&state.store, &state.settings.master_key).await.unwrap();
    };
    oidc.validate_logout_token(&logout_token("jti-1"), now()).await.unwrap();
    rotate().await;
    oidc.validate_logout_token(&logout_token("jti-2"), now()).await.expect("the new key, moments after a fetch");

    // A made-up kid costs one fetch; until the floor passes, even a real new key is not fetched for.
    let mut forged: Vec<String> = logout_token("jti-3").split('.').map(str::to_owned).collect();
    let mut header: serde_json::Value =
        serde_json::from_slice(&gatehouse_proto::b64::decode(&forged[0]).unwrap()).unwrap();
    header["kid"] = "made-up".into();
    forged[0] = gatehouse_proto::b64::encode(serde_json::to_vec(&header).unwrap());
    assert!(matches!(oidc.validate_logout_token(&forged.join("."), now()).await, Err(OidcError::InvalidToken(_))));
    rotate().await;
    assert!(matches!(oidc.validate_logout_token(&logout_token("jti-4"), now()).await, Err(OidcError::InvalidToken(_))));
}

/// A token service that cannot be reached is `Unavailable` (sessions are kept), never `Refused`.
#[tokio::test]
async fn unreachable_token_service_is_unavailable() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let oidc = OidcClient::new(settings(&closed, "bff", true));
    let key = DpopKey::generate().unwrap();
    assert!(matches!(oidc.metadata().await, Err(OidcError::Unavailable(_))));
    assert!(matches!(oidc.refresh("rt", &key).await, Err(OidcError::Unavailable(_))));
    assert!(matches!(oidc.client_credentials(&[], &key).await, Err(OidcError::Unavailable(_))));

    // Metadata known, token service gone since.
    let metadata = serde_json::from_value(serde_json::json!({
        "issuer": closed,
        "authorization_endpoint": format!("{closed}/authorize"),
        "token_endpoint": format!("{closed}/token"),
        "jwks_uri": format!("{closed}/jwks"),
        "revocation_endpoint": format!("{closed}/revoke"),
    }))
    .unwrap();
    let oidc = OidcClient::preloaded(settings(&closed, "bff", true), metadata, Default::default());
    assert!(matches!(oidc.refresh("rt", &key).await, Err(OidcError::Unavailable(_))));
    assert!(matches!(oidc.revoke_refresh_token("rt").await, Err(OidcError::Unavailable(_))));
}
