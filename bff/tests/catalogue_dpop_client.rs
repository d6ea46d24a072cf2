//! Security catalogue §C6 (the gateway as a DPoP client, RFC 9449) and the gateway-side rows of §D (PKCE,
//! code injection, RFC 9207 `iss`, the callback page), over real sockets: a token service (or a mock OP that
//! records what the gateway sends it), the gateway, and a recording upstream that keeps every header value of
//! every request it is sent. Each test is named after its row ID(s) in `/work/shared/security/CATALOGUE.md`;
//! the coverage table is `SECURITY.md`.
//!
//! Run: `cargo test -p gatehouse-bff --test catalogue_dpop_client`.

#[path = "support/jose.rs"]
mod jose;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_bff::settings::{RouteSettings, TokenRequirement};
use gatehouse_proto::b64;
use gatehouse_proto::dpop_key::DpopKey;
use jose::{MockOp, NonceDemand, Plan};
use sha2::Digest;
use support::{Browser, Harness, Options, Reply, enc, form_fields};

// ---------------------------------------------------------------------------------------------------------------
// A recording upstream

/// One request as the upstream saw it, every header value kept (repeated headers too).
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    fn proof(&self) -> &str {
        let proofs = self.all("dpop");
        assert_eq!(proofs.len(), 1, "exactly one DPoP header: {proofs:?}");
        proofs[0]
    }
}

/// Answers 200 to everything except: `…/always-nonce` (401 `use_dpop_nonce` with a new nonce each time) and
/// `…/redirect307` (307 to `redirect_to`).
struct Recorder {
    origin: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start(redirect_to: String) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (log, counter, redirect_to) = (log.clone(), counter.clone(), redirect_to.clone());
            async move {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
                let headers = request
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                log.lock().unwrap().push(Seen {
                    method: request.method().as_str().into(),
                    path: path.clone(),
                    headers,
                });
                let mut response = axum::response::Response::new(axum::body::Body::from("{\"ok\":true}"));
                let h = response.headers_mut();
                h.insert("content-type", axum::http::HeaderValue::from_static("application/json"));
                if path.contains("/always-nonce") {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
                    let h = response.headers_mut();
                    h.insert("dpop-nonce", format!("rec-nonce-{n}").parse().unwrap());
                    h.insert("www-authenticate", "DPoP error=\"use_dpop_nonce\", algs=\"ES256\"".parse().unwrap());
                } else if path.contains("/redirect307") {
                    *response.status_mut() = axum::http::StatusCode::TEMPORARY_REDIRECT;
                    response.headers_mut().insert("location", redirect_to.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { origin, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().last().cloned().expect("the recorder saw a request")
    }
}

/// A server nobody may reach; counts requests.
async fn tripwire() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "stolen" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (origin, hits)
}

fn rec_route(recorder: &Recorder) -> RouteSettings {
    RouteSettings {
        path: "/rec/".into(),
        upstreams: vec![url::Url::parse(&recorder.origin).unwrap()],
        strip_prefix: true,
        token: TokenRequirement::User,
        require_csrf: true,
        required_scopes: vec![],
        resource: None,
        public_base: None,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(10),
        max_body_bytes: 1024 * 1024,
        websockets: false,
        methods: Vec::new(),
    }
}

/// A harness (token service, gateway) with the `/rec/` route to a recorder added.
async fn with_recorder(options: Options) -> (Harness, Recorder, (String, Arc<AtomicUsize>)) {
    let evil = tripwire().await;
    let recorder = Recorder::start(format!("{}/steal", evil.0)).await;
    let route = rec_route(&recorder);
    let h = Harness::start(options).await.restart_gateway_with(|s| s.routes.insert(0, route)).await;
    (h, recorder, evil)
}

async fn logged_in(h: &Harness) -> Browser {
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    b
}

async fn call(h: &Harness, b: &Browser, path: &str) -> Reply {
    b.get(&h.gw(path), &[("x-csrf", "1")]).await
}

fn thumbprint_of_proof(proof: &str) -> String {
    let jwk: gatehouse_proto::Jwk = serde_json::from_value(jose::jwt_part(proof, 0)["jwk"].clone()).unwrap();
    jwk.thumbprint().unwrap()
}

/// The private scalar of a P-256 PKCS#8 key (the 32 bytes after `02 01 01 04 20`, RFC 5915).
fn private_scalar(pkcs8: &[u8]) -> Vec<u8> {
    let at = pkcs8.windows(5).position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20]).expect("an ECPrivateKey");
    pkcs8[at + 5..at + 37].to_vec()
}

// ---------------------------------------------------------------------------------------------------------------
// C6. The gateway as DPoP client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c01_outbound_proofs_have_the_rfc_9449_shape() {
    let (h, recorder, _) = with_recorder(Options::default()).await;
    let b = logged_in(&h).await;
    let session = h.only_session().await;
    let at = session.tokens.access_token.clone();
    let cookie = format!("__Host-gatehouse={}", b.cookie("__Host-gatehouse").unwrap());
    let client = reqwest::Client::new();
    for (method, path, upstream_path) in [("GET", "/rec/items/1?q=x", "/items/1"), ("POST", "/rec/items?y=2", "/items")]
    {
        let request = if method == "GET" { client.get(h.gw(path)) } else { client.post(h.gw(path)).body("{}") };
        let reply = request.header("x-csrf", "1").header("cookie", &cookie).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{method} {path}");
        let seen = recorder.last();
        assert_eq!(seen.method, method);
        assert!(seen.path.starts_with(&format!("{upstream_path}?")), "the query reaches the upstream: {}", seen.path);
        // Authorization: DPoP <AT>, once, never Bearer.
        assert_eq!(seen.all("authorization"), vec![format!("DPoP {at}").as_str()]);
        let proof = seen.proof();
        let header = jose::jwt_part(proof, 0);
        let claims = jose::jwt_part(proof, 1);
        assert_eq!(header["typ"], "dpop+jwt");
        assert!(gatehouse_proto::dpop::DPOP_ALGS.contains(&header["alg"].as_str().unwrap()) && header["alg"] != "none");
        let jwk = header["jwk"].as_object().unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(!jwk.contains_key(private), "private member {private} in the jwk");
        }
        assert_eq!(claims["htm"], method);
        let htu = format!("{}{upstream_path}", recorder.origin);
        assert_eq!(claims["htu"], htu.as_str(), "the upstream URL, no query, no fragment, no userinfo");
        assert!((claims["iat"].as_i64().unwrap() - gatehouse_bff::now()).abs() <= 5, "a fresh iat");
        assert!(b64::decode(claims["jti"].as_str().unwrap()).is_some_and(|j| j.len() * 8 >= 96), "jti ≥ 96 bits");
        assert_eq!(claims["ath"], b64::encode(sha2::Sha256::digest(at.as_bytes())));
        // The token is bound to the proof's key, and the proof verifies as an API would verify it.
        let cnf = jose::jwt_part(&at, 1)["cnf"]["jkt"].as_str().unwrap().to_owned();
        assert_eq!(thumbprint_of_proof(proof), cnf);
        let request = gatehouse_proto::dpop::Request {
            method,
            uri: &htu,
            access_token: Some(&at),
            now: gatehouse_bff::now(),
            window: Default::default(),
            nonces: None,
        };
        assert_eq!(gatehouse_proto::dpop::verify([proof], &request).unwrap().jkt, cnf);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c02_every_request_and_every_retry_gets_a_new_proof() {
    let (h, recorder, _) = with_recorder(Options::default()).await;
    let b = logged_in(&h).await;
    for _ in 0..100 {
        assert_eq!(call(&h, &b, "/rec/same").await.status, 200);
    }
    let jtis: std::collections::HashSet<String> =
        recorder.seen().iter().map(|s| jose::jwt_part(s.proof(), 1)["jti"].as_str().unwrap().to_owned()).collect();
    assert_eq!(jtis.len(), 100, "100 calls, 100 distinct jti");
    // A nonce retry is a new proof too.
    let before = recorder.seen().len();
    assert_eq!(call(&h, &b, "/rec/always-nonce").await.status, 401);
    let retried = &recorder.seen()[before..];
    assert_eq!(retried.len(), 2);
    assert_ne!(jose::jwt_part(retried[0].proof(), 1)["jti"], jose::jwt_part(retried[1].proof(), 1)["jti"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c03_an_upstream_nonce_demand_gets_one_retry_no_loop_and_is_remembered() {
    let (h, recorder, _) = with_recorder(Options::default()).await;
    let b = logged_in(&h).await;
    let reply = call(&h, &b, "/rec/always-nonce").await;
    // One retry, then the upstream's answer reaches the browser: no loop.
    assert_eq!(reply.status, 401);
    let seen = recorder.seen();
    assert_eq!(seen.len(), 2, "one request and exactly one retry");
    let (first, second) = (jose::jwt_part(seen[0].proof(), 1), jose::jwt_part(seen[1].proof(), 1));
    assert!(first.get("nonce").is_none());
    assert_eq!(second["nonce"], "rec-nonce-0", "the retry carries the nonce the upstream sent");
    assert_ne!(first["jti"], second["jti"]);
    // The latest nonce is used on later calls to that upstream.
    assert_eq!(call(&h, &b, "/rec/later").await.status, 200);
    assert_eq!(jose::jwt_part(recorder.last().proof(), 1)["nonce"], "rec-nonce-1");
}

/// Points the harness's gateway at a mock OP.
async fn with_mock_op(options: Options) -> (Harness, MockOp) {
    let op = MockOp::start().await;
    let issuer = op.issuer.clone();
    let use_par = options.use_par;
    let h = Harness::start(options)
        .await
        .restart_gateway_with(|s| {
            s.oidc = jose::oidc_settings(&issuer, support::CLIENT_SECRET);
            s.oidc.use_par = use_par;
        })
        .await;
    (h, op)
}

/// A gateway login through the mock OP, stopping at the callback URL (returned with the code).
async fn mock_login_until_callback(h: &Harness, b: &mut Browser) -> (String, String) {
    let start = b.get(&h.gw("/bff/login"), &[]).await;
    assert_eq!(start.status, 302, "{}", start.body);
    b.absorb(&start);
    let authorize = b.get(start.header("location").unwrap(), &[]).await;
    assert_eq!(authorize.status, 303, "{}", authorize.body);
    let callback = authorize.header("location").unwrap().to_owned();
    let code = url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    (callback, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c04_a_nonce_demand_at_the_token_endpoint_gets_one_retry() {
    let (h, op) = with_mock_op(Options::default()).await;
    op.set_nonce_demand(NonceDemand::UntilSent);
    let mut b = Browser::new();
    let (callback, _) = mock_login_until_callback(&h, &mut b).await;
    let reply = b.get(&callback, &[]).await;
    assert_eq!(reply.status, 302, "login completes after one nonce retry: {}", reply.body);
    let requests = op.token_requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].proof_claims().get("nonce").is_none());
    assert_eq!(requests[1].proof_claims()["nonce"], jose::MOCK_NONCE);
    assert_ne!(requests[0].proof_claims()["jti"], requests[1].proof_claims()["jti"]);
    // A token endpoint that always wants another nonce: one retry, then the login fails; no loop.
    op.set_nonce_demand(NonceDemand::Always);
    let mut b = Browser::new();
    let (callback, _) = mock_login_until_callback(&h, &mut b).await;
    let reply = b.get(&callback, &[]).await;
    b.absorb(&reply);
    assert!(reply.status >= 400, "{}", reply.status);
    assert_eq!(op.token_requests().len(), 4, "exactly one retry");
    assert_eq!(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c05_each_login_has_its_own_key_and_the_private_key_never_reaches_the_browser() {
    let (h, recorder, _) = with_recorder(Options::default()).await;
    let mut everything_the_browser_saw = String::new();
    let mut keys = std::collections::HashSet::new();
    for _ in 0..3 {
        let mut b = Browser::new();
        let reply = h.login_reply(&mut b, "alice", "/").await;
        everything_the_browser_saw.push_str(&format!("{:?}{}", reply.headers, reply.body));
        let user = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
        everything_the_browser_saw.push_str(&format!("{:?}{}", user.headers, user.body));
        let api = call(&h, &b, "/rec/x").await;
        everything_the_browser_saw.push_str(&format!("{:?}{}", api.headers, api.body));
        keys.insert(thumbprint_of_proof(recorder.last().proof()));
    }
    assert_eq!(keys.len(), 3, "a new DPoP key for every login");
    for session in h.sessions().await {
        let d = private_scalar(&session.dpop_key);
        for encoding in [
            b64::encode(&d),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &d),
            d.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            b64::encode(&session.dpop_key),
        ] {
            assert!(!everything_the_browser_saw.contains(&encoding), "the private key reached the browser");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c06_a_bearer_answer_to_a_dpop_request_is_refused() {
    let (h, op) = with_mock_op(Options::default()).await;
    let mut b = Browser::new();
    let (callback, code) = mock_login_until_callback(&h, &mut b).await;
    op.plan(&code, Plan { token_type: Some("Bearer".into()), ..Plan::default() });
    let reply = b.get(&callback, &[]).await;
    b.absorb(&reply);
    assert!(reply.status >= 400, "{} {}", reply.status, reply.body);
    assert!(!reply.set_cookies().iter().any(|c| c.starts_with("__Host-gatehouse=") && !c.contains("Max-Age=0")));
    assert_eq!(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401);
    assert_eq!(h.session_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c07_the_code_is_bound_to_the_key_that_redeems_it() {
    // PAR: dpop_jkt and a proof of the same key at PAR, then a proof of that key at the token endpoint.
    let (h, op) = with_mock_op(Options::default()).await;
    let mut b = Browser::new();
    let (callback, _) = mock_login_until_callback(&h, &mut b).await;
    assert_eq!(b.get(&callback, &[]).await.status, 302);
    let par = op.par_requests().pop().unwrap();
    let jkt = par.form["dpop_jkt"].clone();
    assert_eq!(par.dpop.len(), 1);
    assert_eq!(thumbprint_of_proof(&par.dpop[0]), jkt);
    assert_eq!(par.proof_claims()["htu"], format!("{}/par", op.issuer).as_str());
    let token = op.token_requests().pop().unwrap();
    assert_eq!(thumbprint_of_proof(&token.dpop[0]), jkt);
    drop(h);
    // Without PAR (the real token service): dpop_jkt in the authorization URL is the key the session uses.
    let (h, recorder, _) = with_recorder(Options { use_par: false, ..Options::default() }).await;
    let mut b = Browser::new();
    let start = b.get(&h.gw("/bff/login"), &[]).await;
    b.absorb(&start);
    let authorize = start.header("location").unwrap().to_owned();
    let jkt = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "dpop_jkt")
        .expect("dpop_jkt")
        .1
        .into_owned();
    let page = b.get(&authorize, &[]).await;
    b.absorb(&page);
    let (csrf, request) = form_fields(&page.body);
    let form =
        [("username", "alice"), ("password", "alice-password"), ("csrf", csrf.as_str()), ("request", request.as_str())];
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let posted = b.post_form(&format!("{}/login", h.issuer), &body).await;
    let callback = b.get(posted.header("location").unwrap(), &[]).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    b.absorb(&callback);
    let session = h.only_session().await;
    assert_eq!(DpopKey::from_pkcs8(&session.dpop_key).unwrap().jkt(), jkt);
    assert_eq!(call(&h, &b, "/rec/x").await.status, 200);
    assert_eq!(thumbprint_of_proof(recorder.last().proof()), jkt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c08_credentials_sent_by_the_browser_are_never_forwarded() {
    let (h, recorder, _) = with_recorder(Options::default()).await;
    let b = logged_in(&h).await;
    let forged = DpopKey::generate().unwrap().proof("GET", "https://x/y", Some("x"), None, gatehouse_bff::now());
    let headers = [
        ("x-csrf", "1"),
        ("dpop", forged.as_str()),
        ("authorization", "Bearer browser-token"),
        ("proxy-authorization", "Basic Zm9vOmJhcg=="),
    ];
    assert_eq!(b.get(&h.gw("/rec/x"), &headers).await.status, 200);
    let seen = recorder.last();
    let session = h.only_session().await;
    assert_eq!(seen.all("authorization"), vec![format!("DPoP {}", session.tokens.access_token).as_str()]);
    assert_ne!(seen.proof(), forged);
    assert_eq!(thumbprint_of_proof(seen.proof()), DpopKey::from_pkcs8(&session.dpop_key).unwrap().jkt());
    assert!(seen.all("proxy-authorization").is_empty());
    // A route forwarding no token forwards none of the browser's either.
    let reply = b.get(&h.gw("/open/x"), &headers).await;
    assert_eq!(reply.status, 200);
    let echoed = h.last_echo();
    for name in ["authorization", "dpop", "proxy-authorization"] {
        assert!(echoed.get(name).is_none(), "{name} reached a token-less route's upstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_c09_an_upstream_redirect_is_never_followed_with_the_token() {
    let (h, recorder, (_, evil_hits)) = with_recorder(Options::default()).await;
    let b = logged_in(&h).await;
    let reply = call(&h, &b, "/rec/redirect307").await;
    assert_eq!(reply.status, 307, "the redirect reaches the browser");
    assert!(reply.header("location").unwrap().ends_with("/steal"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(evil_hits.load(Ordering::SeqCst), 0, "the gateway followed the redirect");
    assert_eq!(recorder.seen().len(), 1);
    let at = h.only_session().await.tokens.access_token.clone();
    let shown = format!("{:?}{}", reply.headers, reply.body);
    assert!(!shown.contains(&at) && !shown.to_lowercase().contains("dpop"), "token or proof in the answer");
}

// ---------------------------------------------------------------------------------------------------------------
// §D on the gateway side

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_pk11_every_login_has_a_fresh_s256_challenge_and_the_verifier_stays_in_the_gateway() {
    let (h, op) = with_mock_op(Options::default()).await;
    let mut challenges = std::collections::HashSet::new();
    for _ in 0..5 {
        let mut b = Browser::new();
        let start = b.get(&h.gw("/bff/login"), &[]).await;
        let mut seen = format!("{:?}{}", start.headers, start.body);
        b.absorb(&start);
        let authorize = b.get(start.header("location").unwrap(), &[]).await;
        let callback_url = authorize.header("location").unwrap().to_owned();
        seen.push_str(&callback_url);
        let callback = b.get(&callback_url, &[]).await;
        seen.push_str(&format!("{:?}{}", callback.headers, callback.body));
        assert_eq!(callback.status, 302);
        let par = op.par_requests().pop().unwrap();
        assert_eq!(par.form["code_challenge_method"], "S256");
        let challenge = par.form["code_challenge"].clone();
        assert_eq!(challenge.len(), 43);
        assert!(challenges.insert(challenge.clone()), "a challenge repeated");
        let verifier = op.token_requests().pop().unwrap().form["code_verifier"].clone();
        assert_eq!(b64::encode(sha2::Sha256::digest(verifier.as_bytes())), challenge);
        assert!((43..=128).contains(&verifier.len()));
        assert!(!seen.contains(&verifier), "the verifier reached the browser");
        assert!(!seen.contains(&challenge), "with PAR even the challenge stays off the front channel");
    }
}

/// RFC 9700 §4.5: an attacker's code injected into the victim's callback (with the victim's state) creates no
/// session: the victim's PKCE verifier and DPoP key do not match the attacker's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_ac07_an_injected_code_creates_no_session() {
    let h = Harness::start(Options { use_par: false, ..Options::default() }).await;
    // The victim starts a login: a transaction cookie and a state.
    let mut victim = Browser::new();
    let start = victim.get(&h.gw("/bff/login"), &[]).await;
    victim.absorb(&start);
    let victim_state = victim.last_tx_state(&h).await;
    // The attacker logs in as bob in their own browser and keeps the code instead of delivering it.
    let mut attacker = Browser::new();
    let start = attacker.get(&h.gw("/bff/login"), &[]).await;
    attacker.absorb(&start);
    let page = attacker.get(start.header("location").unwrap(), &[]).await;
    attacker.absorb(&page);
    let (csrf, request) = form_fields(&page.body);
    let form =
        [("username", "bob"), ("password", "bob-password"), ("csrf", csrf.as_str()), ("request", request.as_str())];
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let posted = attacker.post_form(&format!("{}/login", h.issuer), &body).await;
    let callback = url::Url::parse(posted.header("location").unwrap()).unwrap();
    let param = |name: &str| callback.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap();
    let (code, attacker_state) = (param("code"), param("state"));
    // Injected with the victim's state.
    let injected =
        format!("{}?code={}&state={}&iss={}", h.gw("/bff/callback"), enc(&code), enc(&victim_state), enc(&h.issuer));
    let reply = victim.get(&injected, &[]).await;
    victim.absorb(&reply);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(victim.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401);
    // With the attacker's own state the victim's browser has no transaction at all.
    let injected =
        format!("{}?code={}&state={}&iss={}", h.gw("/bff/callback"), enc(&code), enc(&attacker_state), enc(&h.issuer));
    let reply = victim.get(&injected, &[]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(victim.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401);
    assert_eq!(h.session_count().await, 0);
}

/// RFC 9207 §2.4: the `iss` of the authorization response is checked before the code goes anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_mx02_a_wrong_or_missing_iss_is_refused_before_the_token_request() {
    let (h, op) = with_mock_op(Options::default()).await;
    for (what, iss) in [
        ("another issuer", Some("https://evil.example".to_owned())),
        ("a trailing slash", Some(format!("{}/", op.issuer))),
        ("missing", None),
    ] {
        let mut b = Browser::new();
        let (callback, _) = mock_login_until_callback(&h, &mut b).await;
        let mut url = url::Url::parse(&callback).unwrap();
        let pairs: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != "iss").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        {
            let mut query = url.query_pairs_mut();
            query.clear().extend_pairs(pairs);
            if let Some(iss) = &iss {
                query.append_pair("iss", iss);
            }
        }
        let before = op.token_requests().len();
        let reply = b.get(url.as_str(), &[]).await;
        b.absorb(&reply);
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert_eq!(op.token_requests().len(), before, "{what}: the code was sent to the token endpoint");
        assert_eq!(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401, "{what}");
    }
}

/// OAUTH-UI04 (the callback never renders the code), OAUTH-UI03 (no Referer leaves it), OAUTH-UI01 for the
/// gateway's own pages (its error page cannot be framed; the silent-login page only by the application).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_ui01_ui03_ui04_the_callback_redirects_at_once_without_the_code() {
    let h = Harness::start(Options::default()).await;
    let mut b = Browser::new();
    let reply = h.login_reply(&mut b, "alice", "/app/page?x=1").await;
    assert_eq!(reply.status, 302);
    let location = reply.header("location").unwrap();
    assert_eq!(location, "/app/page?x=1");
    assert!(!location.contains("code") && !location.contains("state"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert!(!reply.body.contains("code="));
    // The callback's error page.
    let error = Browser::new().get(&h.gw("/bff/callback?code=x&state=y"), &[]).await;
    assert_eq!(error.status, 400);
    assert!(error.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(error.header("x-frame-options"), Some("DENY"));
    assert_eq!(error.header("referrer-policy"), Some("no-referrer"));
    assert!(!error.body.contains("code=x"));
    // The silent-login page is framed by the application only.
    let silent = h.silent_login(&mut b).await;
    assert!(silent.header("content-security-policy").unwrap().contains("frame-ancestors 'self'"));
    assert_eq!(silent.header("x-frame-options"), Some("SAMEORIGIN"));
}
