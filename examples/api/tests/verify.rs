//! The API-side verifier end to end over real sockets: a token service and the example API on free ports, a
//! DPoP client getting a bound token by client credentials and calling the API (catalogue §C resource rows).

use gatehouse_idp::settings::{ApiResource, SeedClient, Settings};
use gatehouse_idp::store::ClientRecord;
use gatehouse_idp::{Idp, Store, admin};
use gatehouse_proto::Secret;
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::verifier::VerifierConfig;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};

const SECRET: &str = "api-test-secret-0123456789abcdefghijklmnop";

struct Setup {
    issuer: String,
    api: String,
    http: reqwest::Client,
}

async fn setup(require_dpop: bool) -> Setup {
    setup_with_store(require_dpop, Store::open("sqlite::memory:").await.unwrap(), |_| {}).await
}

/// `setup` on `store`, with `change` applied to the token service's settings before it starts.
async fn setup_with_store(require_dpop: bool, store: Store, change: impl FnOnce(&mut Settings)) -> Setup {
    // The issuer must be known before the IdP starts: reserve its port first.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut settings = Settings::for_tests(&issuer);
    settings.apis = vec![ApiResource { audience: "https://api.test".into(), scopes: vec!["api".into()] }];
    change(&mut settings);
    let client = ClientRecord {
        client_id: "svc".into(),
        name: None,
        auth_method: ClientAuthMethod::ClientSecretPost,
        secret_sha256: None,
        jwks: None,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec!["api".into()],
        id_token_signed_response_alg: SigningAlg::RS256,
        backchannel_logout_uri: None,
        source: String::new(),
        require_dpop: false,
        require_dpop_nonce: false,
        require_pushed_authorization_requests: false,
    };
    admin::seed(&store, &[], &[SeedClient { record: client, secret: Some(Secret::new(SECRET)) }], 0).await.unwrap();
    let idp = Idp::start(settings, store).await.unwrap();
    // Key maintenance and reload (picks up `admin::rotate_keys`), as `gatehouse serve` runs it.
    idp.spawn_background();
    let router = idp.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://127.0.0.1:{}", api_listener.local_addr().unwrap().port());
    let mut config = VerifierConfig::new(&issuer, "https://api.test");
    config.require_dpop = require_dpop;
    let app = gatehouse_example_api::router(config, &api);
    tokio::spawn(async move { axum::serve(api_listener, app).await.unwrap() });
    Setup { issuer, api, http: reqwest::Client::new() }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

impl Setup {
    async fn token(&self, key: Option<&DpopKey>) -> String {
        let url = format!("{}/token", self.issuer);
        let mut request = self.http.post(&url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", SECRET),
        ]);
        if let Some(key) = key {
            request = request.header("dpop", key.proof("POST", &url, None, None, now()));
        }
        let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
        body["access_token"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
    }

    async fn call(&self, scheme: &str, token: &str, proof: Option<String>) -> (u16, serde_json::Value, String) {
        let mut request =
            self.http.get(format!("{}/api/whoami", self.api)).header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let challenge =
            response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, response.json().await.unwrap_or_default(), challenge)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_token_is_accepted_with_its_proof_and_replay_is_refused() {
    let s = setup(false).await;
    let key = DpopKey::generate().unwrap();
    let token = s.token(Some(&key)).await;
    let url = format!("{}/api/whoami", s.api);
    let proof = key.proof("GET", &url, Some(&token), None, now());
    let (status, body, _) = s.call("DPoP", &token, Some(proof.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jkt"], key.jkt());
    assert_eq!(body["client_id"], "svc");
    assert_eq!(body["scopes"], serde_json::json!(["api"]));
    // Replayed proof.
    let (status, body, challenge) = s.call("DPoP", &token, Some(proof)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_dpop_proof");
    assert!(challenge.starts_with("DPoP") && challenge.contains("algs="));
    // Bound token as Bearer; proof from another key; proof without ath; wrong htu.
    assert_eq!(s.call("Bearer", &token, None).await.0, 401);
    let other = DpopKey::generate().unwrap();
    assert_eq!(s.call("DPoP", &token, Some(other.proof("GET", &url, Some(&token), None, now()))).await.0, 401);
    assert_eq!(s.call("DPoP", &token, Some(key.proof("GET", &url, None, None, now()))).await.0, 401);
    let elsewhere = format!("{}/api/other", s.api);
    assert_eq!(s.call("DPoP", &token, Some(key.proof("GET", &elsewhere, Some(&token), None, now()))).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_follow_the_policy_and_garbage_is_refused() {
    let s = setup(false).await;
    let bearer = s.token(None).await;
    let (status, body, _) = s.call("Bearer", &bearer, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jkt"], serde_json::Value::Null);
    for bad in ["garbage", "a.b.c", &format!("{bearer}x")] {
        let (status, body, challenge) = s.call("Bearer", bad, None).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"], "invalid_token");
        assert!(challenge.contains("invalid_token"));
    }
    let strict = setup(true).await;
    let bearer = strict.token(None).await;
    assert_eq!(strict.call("Bearer", &bearer, None).await.0, 401, "require_dpop refuses Bearer");
    let none = strict.http.get(format!("{}/api/whoami", strict.api)).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert!(none.headers()["www-authenticate"].to_str().unwrap().starts_with("DPoP"));
}

/// OpenID Connect Core §10.1.1: a verifier re-reads the JWK Set when a token names an unfamiliar `kid`. A forced
/// rotation (`gatehouse keys rotate`) seconds after the API fetched the set is accepted with its first token: only a
/// fetch that found nothing holds the next one back (found by scripts/soak.sh: 30 s of 401s after each rotation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_rotated_right_after_a_fetch_is_accepted_at_once() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let master = Settings::for_tests("http://127.0.0.1").master_key;
    let s = setup_with_store(false, store.clone(), |settings| settings.signing.key_reload_interval = 1).await;
    let key = DpopKey::generate().unwrap();
    let url = format!("{}/api/whoami", s.api);
    let kid = |token: &str| {
        let header = token.split('.').next().and_then(gatehouse_proto::b64::decode).unwrap();
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
    };
    let call = async |token: &str| {
        let proof = key.proof("GET", &url, Some(token), None, now());
        s.call("DPoP", token, Some(proof)).await
    };
    let before = s.token(Some(&key)).await;
    let (status, body, _) = call(&before).await;
    assert_eq!(status, 200, "{body}");

    admin::rotate_keys(&store, &master, now()).await.unwrap();
    let mut after = s.token(Some(&key)).await;
    for _ in 0..50 {
        if kid(&after) != kid(&before) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = s.token(Some(&key)).await;
    }
    assert_ne!(kid(&after), kid(&before), "the token service did not switch to the rotated key");
    let (status, body, _) = call(&after).await;
    assert_eq!(status, 200, "a token of the rotated key, 1-2 s after the API's last fetch: {body}");
    // The retired key stays published: its tokens still verify.
    assert_eq!(call(&before).await.0, 200);
}
