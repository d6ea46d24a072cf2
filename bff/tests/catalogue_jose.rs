//! Security catalogue §G (JWT pitfalls, RFC 8725 / draft-ietf-oauth-rfc8725bis) against every acceptor of a
//! JWT in the system, over real sockets:
//!
//! | kind | acceptor | refusal |
//! |---|---|---|
//! | ID token | the gateway's `/bff/callback` (from a mock OP) | 400 page, no session |
//! | logout token | the gateway's `/bff/backchannel` | 400 `invalid_request`, the session lives on |
//! | client assertion | the token service's token endpoint | 401 `invalid_client` |
//! | DPoP proof | the token endpoint; userinfo | 400 / 401 `invalid_dpop_proof` |
//! | access token | the API-side verifier (the example API); userinfo | 401 `invalid_token` |
//! | `id_token_hint` | the token service's `end_session` | 400 page, no redirect, the session lives on |
//!
//! The attack set is written once (`support/jose.rs`, `attacks`), each attack tagged with its row; each test
//! below runs the rows in its name against every acceptor the row applies to, asserts each refusal in full,
//! then checks that the untouched token is accepted (so the refusal was the attack's doing). One world (token
//! service, example API, mock OP, gateway) serves every test.
//!
//! Run: `cargo test -p gatehouse-bff --test catalogue_jose`.

#[path = "support/jose.rs"]
mod jose;
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gatehouse_bff::settings::{
    BffSettings, CookieKey, CookieSettings, Frontend, SameSite, SessionMode, SessionSettings, SessionStoreSettings,
};
use gatehouse_idp::settings::{MasterKey, SeedClient, SeedPassword, SeedUser, Settings};
use gatehouse_idp::store::ClientRecord;
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::pkce::{CodeChallenge, CodeVerifier};
use gatehouse_proto::verifier::VerifierConfig;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use gatehouse_proto::{Secret, b64};
use jose::{Attack, Base, Kind, MockOp, Plan, Signer, random_id};
use serde_json::{Value, json};
use support::{Browser, form_fields};

const C1_SECRET: &str = "c1-secret-0123456789abcdefghijklmnopqrstuvwxyz";
const M2M_SECRET: &str = "m2m-secret-0123456789abcdefghijklmnopqrstuvwxyz";
const BFF_SECRET: &str = "bff-secret-0123456789abcdefghijklmnopqrstuvwxyz";
const C1_CALLBACK: &str = "https://app.test/cb";
const C1_SIGNED_OUT: &str = "https://app.test/out";
const API_AUDIENCE: &str = "https://api.test";

// ---------------------------------------------------------------------------------------------------------------
// The world: a token service, the example API (behind a counting JWKS relay), a mock OP and a gateway using it.

struct World {
    issuer: String,
    api: String,
    gw: String,
    op: MockOp,
    idp_rsa: Arc<Signer>,
    idp_ec: Arc<Signer>,
    pkjwt: Arc<Signer>,
    alice_sub: String,
    /// Requests to a URL nobody may fetch (`jku`, `x5u`).
    tripwire_url: String,
    tripwire_hits: Arc<AtomicUsize>,
    /// JWKS fetches of the API-side verifier.
    api_jwks_fetches: Arc<AtomicUsize>,
}

static WORLD: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let world = runtime.block_on(build_world());
            tx.send(world).unwrap();
            // Keep serving for the rest of the test process.
            runtime.block_on(std::future::pending::<()>());
        });
        rx.recv().unwrap()
    })
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    origin
}

fn record(id: &str, method: ClientAuthMethod, grants: &[GrantType], scopes: &[&str]) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        name: None,
        auth_method: method,
        secret_sha256: None,
        jwks: None,
        redirect_uris: if grants.contains(&GrantType::AuthorizationCode) { vec![C1_CALLBACK.into()] } else { vec![] },
        post_logout_redirect_uris: vec![],
        grant_types: grants.to_vec(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        id_token_signed_response_alg: SigningAlg::RS256,
        backchannel_logout_uri: None,
        source: String::new(),
        require_dpop: false,
        require_dpop_nonce: false,
        require_pushed_authorization_requests: false,
    }
}

async fn build_world() -> World {
    // The token service.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let settings = Settings::for_tests(&issuer);
    let store = gatehouse_idp::Store::open("sqlite::memory:").await.unwrap();
    let pkjwt = Arc::new(Signer::ec(Some("k1")));
    let mut pkjwt_record = record("pkjwt", ClientAuthMethod::PrivateKeyJwt, &[GrantType::ClientCredentials], &["api"]);
    pkjwt_record.jwks =
        Some(gatehouse_proto::JwkSet { keys: vec![serde_json::from_value(pkjwt.jwk.clone()).unwrap()] });
    let code_grants = [GrantType::AuthorizationCode, GrantType::RefreshToken];
    let clients = vec![
        SeedClient {
            record: ClientRecord {
                post_logout_redirect_uris: vec![C1_SIGNED_OUT.into()],
                ..record(
                    "c1",
                    ClientAuthMethod::ClientSecretBasic,
                    &code_grants,
                    &["openid", "profile", "offline_access", "api"],
                )
            },
            secret: Some(Secret::new(C1_SECRET)),
        },
        SeedClient {
            record: record("m2m", ClientAuthMethod::ClientSecretBasic, &[GrantType::ClientCredentials], &["api"]),
            secret: Some(Secret::new(M2M_SECRET)),
        },
        SeedClient { record: pkjwt_record, secret: None },
    ];
    let alice = SeedUser {
        username: "alice".into(),
        password: SeedPassword::Plain(Secret::new("alice-password")),
        claims: StandardClaims { name: Some("Alice".into()), ..Default::default() },
    };
    gatehouse_idp::admin::seed(&store, &[alice], &clients, 0).await.unwrap();
    let idp = gatehouse_idp::Idp::start(settings, store.clone()).await.unwrap();
    let router = idp.router();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    let alice_sub = store.users.user_by_username("alice").await.unwrap().unwrap().sub;
    // The token service's own keys, to forge tokens it would have signed.
    let backchannel =
        gatehouse_idp::admin::backchannel(&store, &issuer, &MasterKey([7; 32]), gatehouse_bff::now(), 0).await.unwrap();
    let jwks: Value = reqwest::get(format!("{issuer}/jwks")).await.unwrap().json().await.unwrap();
    let published = |kid: &str| jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap().clone();
    let rsa = backchannel.keys.signer(SigningAlg::RS256).unwrap().clone();
    let ec = backchannel.keys.signer(SigningAlg::ES256).unwrap().clone();
    let idp_rsa = Arc::new(Signer::idp(rsa.clone(), &published(&rsa.kid)));
    let idp_ec = Arc::new(Signer::idp(ec.clone(), &published(&ec.kid)));

    // A JWKS relay that counts the API verifier's fetches, and a tripwire.
    let api_jwks_fetches = Arc::new(AtomicUsize::new(0));
    let relay = {
        let (issuer, count) = (issuer.clone(), api_jwks_fetches.clone());
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (issuer, count) = (issuer.clone(), count.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    reqwest::get(format!("{issuer}/jwks")).await.unwrap().text().await.unwrap()
                }
            }),
        )
    };
    let relay = serve(relay).await;
    let tripwire_hits = Arc::new(AtomicUsize::new(0));
    let hits = tripwire_hits.clone();
    let tripwire = serve(axum::Router::new().fallback(move || {
        hits.fetch_add(1, Ordering::SeqCst);
        async { "{}" }
    }))
    .await;

    // The example API, and a placeholder for its origin (its public base is its own origin).
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://127.0.0.1:{}", api_listener.local_addr().unwrap().port());
    let config = VerifierConfig { jwks_uri: format!("{relay}/jwks"), ..VerifierConfig::new(&issuer, API_AUDIENCE) };
    let app = gatehouse_example_api::router(config, &api);
    tokio::spawn(async move { axum::serve(api_listener, app).await.unwrap() });

    // The mock OP and the gateway that uses it.
    let op = MockOp::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gw = format!("http://127.0.0.1:{port}");
    let settings = BffSettings {
        listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        tls: None,
        threads: 2,
        grace_period: Duration::ZERO,
        graceful_shutdown_timeout: Duration::ZERO,
        public_origin: url::Url::parse(&gw).unwrap(),
        oidc: jose::oidc_settings(&op.issuer, BFF_SECRET),
        cookie: CookieSettings {
            name: "__Host-gatehouse".into(),
            same_site: SameSite::Strict,
            keys: vec![CookieKey { id: "k1".into(), key: support::rand_key() }],
        },
        session: SessionSettings {
            idle_timeout: Duration::from_secs(3600),
            absolute_lifetime: Duration::from_secs(86400),
            refresh_skew: Duration::from_secs(30),
            cache_capacity: 10_000,
            store: SessionStoreSettings::Memory,
            mode: SessionMode::Server,
        },
        routes: vec![],
        frontend: Frontend::None,
    };
    let gateway = Arc::new(gatehouse_bff::Gateway::new(settings).await.unwrap());
    let running = gatehouse_bff::start(gateway).unwrap();
    std::mem::forget(running);
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{gw}/bff/user")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    World {
        issuer,
        api,
        gw,
        op,
        idp_rsa,
        idp_ec,
        pkjwt,
        alice_sub,
        tripwire_url: format!("{tripwire}/keys"),
        tripwire_hits,
        api_jwks_fetches,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Self { status, headers, body: response.text().await.unwrap_or_default() }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!("{} {:.200}", self.status, self.body)
    }
}

fn cookie_pairs(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Logins at the token service (for the acceptors that need a live session or a bound token)

struct IdpLogin {
    session_cookie: String,
    tokens: Value,
}

/// Logs alice in as c1 through the login form, redeems the code (with a DPoP proof by `dpop` when given).
async fn idp_login(w: &World, dpop: Option<&Base>) -> IdpLogin {
    let http = http();
    let bytes: [u8; 32] = std::array::from_fn(|_| rand::random());
    let verifier = CodeVerifier::from_random(&bytes);
    let authorize = format!(
        "{}/authorize?response_type=code&client_id=c1&redirect_uri={}&scope={}&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        w.issuer,
        support::enc(C1_CALLBACK),
        support::enc("openid profile offline_access api"),
        CodeChallenge::s256(&verifier).as_str()
    );
    let page = Answer::of(http.get(&authorize).send().await.unwrap()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf_cookie = cookie_pairs(&page.headers).into_iter().find(|c| c.contains("gh-csrf")).unwrap();
    let (csrf, request) = form_fields(&page.body);
    let login = http
        .post(format!("{}/login", w.issuer))
        .header("cookie", csrf_cookie)
        .form(&[("username", "alice"), ("password", "alice-password"), ("csrf", &csrf), ("request", &request)])
        .send()
        .await
        .unwrap();
    let login = Answer::of(login).await;
    assert_eq!(login.status, 303, "{}", login.body);
    let session_cookie = cookie_pairs(&login.headers).into_iter().find(|c| c.contains("gh-session")).unwrap();
    let location = url::Url::parse(login.header("location")).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let mut request = http.post(format!("{}/token", w.issuer)).basic_auth("c1", Some(C1_SECRET)).form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", C1_CALLBACK),
        ("code_verifier", verifier.expose()),
    ]);
    if let Some(base) = dpop {
        request = request.header("dpop", base.token());
    }
    let tokens = Answer::of(request.send().await.unwrap()).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    IdpLogin { session_cookie, tokens: tokens.json() }
}

/// Whether the token-service session behind `cookie` is alive (`prompt=none` gets a code).
async fn idp_session_alive(w: &World, cookie: &str) -> bool {
    let verifier = CodeVerifier::from_random(&[5u8; 32]);
    let uri = format!(
        "{}/authorize?response_type=code&client_id=c1&redirect_uri={}&scope=openid&prompt=none&code_challenge={}&code_challenge_method=S256",
        w.issuer,
        support::enc(C1_CALLBACK),
        CodeChallenge::s256(&verifier).as_str()
    );
    let reply = Answer::of(http().get(uri).header("cookie", cookie).send().await.unwrap()).await;
    reply.header("location").contains("code=")
}

// ---------------------------------------------------------------------------------------------------------------
// A login at the gateway through the mock OP

struct GatewayLogin {
    browser: Browser,
    callback: support::Reply,
}

/// Runs a gateway login through the mock OP; `id_token` makes the token the mock returns from the valid one.
async fn gateway_login(w: &World, id_token: impl FnOnce(&Base) -> String) -> GatewayLogin {
    let mut browser = Browser::new();
    let start = browser.get(&format!("{}/bff/login", w.gw), &[]).await;
    assert_eq!(start.status, 302, "{}", start.body);
    browser.absorb(&start);
    let authorize = Answer::of(http().get(start.header("location").unwrap()).send().await.unwrap()).await;
    assert_eq!(authorize.status, 303, "{}", authorize.body);
    let callback = authorize.header("location").to_owned();
    let code = url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let base = w.op.id_token_base(&code);
    w.op.plan(&code, Plan { id_token: Some(id_token(&base)), ..Plan::default() });
    let reply = browser.get(&callback, &[]).await;
    browser.absorb(&reply);
    GatewayLogin { browser, callback: reply }
}

async fn gateway_user(w: &World, browser: &Browser) -> u16 {
    browser.get(&format!("{}/bff/user", w.gw), &[("x-csrf", "1")]).await.status
}

// ---------------------------------------------------------------------------------------------------------------
// The acceptors

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acceptor {
    GatewayCallback,
    GatewayBackchannel,
    TokenEndpointClientAssertion,
    TokenEndpointDpop,
    UserinfoDpop,
    ApiAccessToken,
    UserinfoAccessToken,
    EndSessionHint,
}

const ACCEPTORS: [Acceptor; 8] = [
    Acceptor::GatewayCallback,
    Acceptor::GatewayBackchannel,
    Acceptor::TokenEndpointClientAssertion,
    Acceptor::TokenEndpointDpop,
    Acceptor::UserinfoDpop,
    Acceptor::ApiAccessToken,
    Acceptor::UserinfoAccessToken,
    Acceptor::EndSessionHint,
];

impl Acceptor {
    fn kind(self) -> Kind {
        match self {
            Self::GatewayCallback => Kind::IdToken,
            Self::GatewayBackchannel => Kind::LogoutToken,
            Self::TokenEndpointClientAssertion => Kind::ClientAssertion,
            Self::TokenEndpointDpop | Self::UserinfoDpop => Kind::DpopProof,
            Self::ApiAccessToken | Self::UserinfoAccessToken => Kind::AccessToken,
            Self::EndSessionHint => Kind::IdTokenHint,
        }
    }

    /// Attacks of `kind` that are not attacks at this acceptor, by deliberate policy.
    fn applies(self, attack: &Attack) -> bool {
        match self {
            // OIDC Core §5.3: userinfo serves any access token this issuer signed with `openid`, whatever API
            // its audience names.
            Self::UserinfoAccessToken => attack.row != "JWT-19",
            // ES384 with its own P-384 key is an allowed DPoP algorithm (`dpop_signing_alg_values_supported`).
            Self::TokenEndpointDpop | Self::UserinfoDpop => attack.name != "ES384 with a valid P-384 signature",
            _ => true,
        }
    }
}

/// An acceptor ready to be attacked: whatever live state its refusals must leave untouched.
struct Target {
    acceptor: Acceptor,
    /// The gateway session a logout token would end.
    gateway_victim: Option<(Browser, String)>,
    /// The token-service login whose session a hint would end / whose bound token userinfo serves.
    idp_victim: Option<IdpLogin>,
    dpop_key: Arc<Signer>,
}

impl Target {
    async fn prepare(w: &World, acceptor: Acceptor) -> Self {
        let dpop_key = Arc::new(Signer::ec(None));
        let mut target = Self { acceptor, gateway_victim: None, idp_victim: None, dpop_key };
        match acceptor {
            Acceptor::GatewayBackchannel => {
                let mut sid = String::new();
                let login = gateway_login(w, |base| {
                    sid = base.claims["sid"].as_str().unwrap().to_owned();
                    base.token()
                })
                .await;
                assert_eq!(login.callback.status, 302, "victim login: {}", login.callback.body);
                target.gateway_victim = Some((login.browser, sid));
            }
            Acceptor::EndSessionHint => target.idp_victim = Some(idp_login(w, None).await),
            Acceptor::UserinfoDpop => {
                let proof = target.proof_base("POST", &format!("{}/token", w.issuer), None);
                target.idp_victim = Some(idp_login(w, Some(&proof)).await);
            }
            _ => {}
        }
        target
    }

    fn proof_base(&self, htm: &str, htu: &str, access_token: Option<&str>) -> Base {
        let mut claims = json!({"jti": random_id(), "htm": htm, "htu": htu, "iat": jose::now()});
        if let Some(token) = access_token {
            claims["ath"] = gatehouse_proto::dpop::ath(token).into();
        }
        Base {
            header: json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.dpop_key.bare_jwk()}),
            claims,
            signer: self.dpop_key.clone(),
        }
    }

    fn bound_access_token(&self) -> String {
        self.idp_victim.as_ref().unwrap().tokens["access_token"].as_str().unwrap().to_owned()
    }

    /// A fresh token this acceptor accepts.
    fn base(&self, w: &World) -> Base {
        let t = jose::now();
        match self.acceptor {
            Acceptor::GatewayCallback => unreachable!("the callback's base depends on the login"),
            Acceptor::GatewayBackchannel => {
                let sid = &self.gateway_victim.as_ref().unwrap().1;
                w.op.logout_token_base("bff", "alice-sub", sid)
            }
            Acceptor::TokenEndpointClientAssertion => Base {
                header: json!({"alg": "ES256", "kid": "k1"}),
                claims: json!({"iss": "pkjwt", "sub": "pkjwt", "aud": w.issuer, "jti": random_id(), "exp": t + 60, "iat": t}),
                signer: w.pkjwt.clone(),
            },
            Acceptor::TokenEndpointDpop => self.proof_base("POST", &format!("{}/token", w.issuer), None),
            Acceptor::UserinfoDpop => {
                self.proof_base("GET", &format!("{}/userinfo", w.issuer), Some(&self.bound_access_token()))
            }
            Acceptor::ApiAccessToken | Acceptor::UserinfoAccessToken => Base {
                header: json!({"typ": "at+jwt", "alg": "ES256", "kid": w.idp_ec.kid}),
                claims: json!({"iss": w.issuer, "sub": w.alice_sub, "aud": API_AUDIENCE, "client_id": "c1",
                    "scope": "openid api", "jti": random_id(), "iat": t, "exp": t + 300}),
                signer: w.idp_ec.clone(),
            },
            Acceptor::EndSessionHint => {
                let (_, idt) = split_jwt(self.idp_victim.as_ref().unwrap().tokens["id_token"].as_str().unwrap());
                Base {
                    header: json!({"typ": "JWT", "alg": "RS256", "kid": w.idp_rsa.kid}),
                    claims: json!({"iss": w.issuer, "sub": w.alice_sub, "aud": "c1", "azp": "c1", "exp": t + 300,
                        "iat": t, "sid": idt["sid"]}),
                    signer: w.idp_rsa.clone(),
                }
            }
        }
    }

    /// Presents `make(base)` and checks the acceptor's refusal in full; `Err` says what was wrong.
    async fn refuses(&self, w: &World, make: impl FnOnce(&Base) -> String) -> Result<(), String> {
        let http = http();
        match self.acceptor {
            Acceptor::GatewayCallback => {
                let login = gateway_login(w, make).await;
                let reply = &login.callback;
                let session_set =
                    reply.set_cookies().iter().any(|c| c.starts_with("__Host-gatehouse=") && !c.contains("Max-Age=0"));
                if reply.status != 400
                    || session_set
                    || !reply.header("content-type").unwrap_or("").starts_with("text/html")
                {
                    return Err(format!(
                        "callback answered {} (session cookie set: {session_set}): {:.200}",
                        reply.status, reply.body
                    ));
                }
                match gateway_user(w, &login.browser).await {
                    401 => Ok(()),
                    other => Err(format!("/bff/user answered {other} after the refused login")),
                }
            }
            Acceptor::GatewayBackchannel => {
                let token = make(&self.base(w));
                let reply =
                    http.post(format!("{}/bff/backchannel", w.gw)).form(&[("logout_token", token)]).send().await;
                let reply = Answer::of(reply.map_err(|e| e.to_string())?).await;
                let expected =
                    json!({"error": "invalid_request", "error_description": "the logout token is not valid"});
                if reply.status != 400 || reply.json() != expected {
                    return Err(reply.describe());
                }
                Ok(())
            }
            Acceptor::TokenEndpointClientAssertion => {
                let token = make(&self.base(w));
                let reply = http
                    .post(format!("{}/token", w.issuer))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                        ("client_assertion", &token),
                    ])
                    .send()
                    .await
                    .unwrap();
                let reply = Answer::of(reply).await;
                let expected = json!({"error": "invalid_client", "error_description": "client authentication failed"});
                if reply.status != 401 || reply.json() != expected || reply.header("cache-control") != "no-store" {
                    return Err(reply.describe());
                }
                Ok(())
            }
            Acceptor::TokenEndpointDpop => {
                let token = make(&self.base(w));
                let reply = http
                    .post(format!("{}/token", w.issuer))
                    .basic_auth("m2m", Some(M2M_SECRET))
                    .header("dpop", token)
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                let reply = Answer::of(reply.map_err(|e| e.to_string())?).await;
                if reply.status != 400
                    || reply.json()["error"] != "invalid_dpop_proof"
                    || reply.header("cache-control") != "no-store"
                {
                    return Err(reply.describe());
                }
                Ok(())
            }
            Acceptor::UserinfoDpop => {
                let token = make(&self.base(w));
                let reply = http
                    .get(format!("{}/userinfo", w.issuer))
                    .header("authorization", format!("DPoP {}", self.bound_access_token()))
                    .header("dpop", token)
                    .send()
                    .await;
                let reply = Answer::of(reply.map_err(|e| e.to_string())?).await;
                let challenge = reply.header("www-authenticate");
                if reply.status != 401
                    || !challenge.starts_with("DPoP error=\"invalid_dpop_proof\"")
                    || reply.json().get("sub").is_some()
                {
                    return Err(format!("{} [{challenge}]", reply.describe()));
                }
                Ok(())
            }
            Acceptor::ApiAccessToken => {
                let token = make(&self.base(w));
                let reply = http
                    .get(format!("{}/api/whoami", w.api))
                    .header("authorization", format!("Bearer {token}"))
                    .send()
                    .await;
                let reply = Answer::of(reply.map_err(|e| e.to_string())?).await;
                if reply.status != 401
                    || reply.json() != json!({"error": "invalid_token"})
                    || reply.header("www-authenticate") != "Bearer error=\"invalid_token\""
                {
                    return Err(format!("{} [{}]", reply.describe(), reply.header("www-authenticate")));
                }
                Ok(())
            }
            Acceptor::UserinfoAccessToken => {
                let token = make(&self.base(w));
                let reply = http
                    .get(format!("{}/userinfo", w.issuer))
                    .header("authorization", format!("Bearer {token}"))
                    .send()
                    .await;
                let reply = Answer::of(reply.map_err(|e| e.to_string())?).await;
                let body = reply.json();
                let generic = ["the access token is invalid", "the access token expired"];
                if reply.status != 401
                    || body["error"] != "invalid_token"
                    || !generic.contains(&body["error_description"].as_str().unwrap_or(""))
                    || !reply.header("www-authenticate").contains("invalid_token")
                {
                    return Err(reply.describe());
                }
                Ok(())
            }
            Acceptor::EndSessionHint => {
                let token = make(&self.base(w));
                let victim = self.idp_victim.as_ref().unwrap();
                let uri = format!(
                    "{}/end_session?id_token_hint={}&post_logout_redirect_uri={}",
                    w.issuer,
                    support::enc(&token),
                    support::enc(C1_SIGNED_OUT)
                );
                let reply =
                    Answer::of(http.get(uri).header("cookie", &victim.session_cookie).send().await.unwrap()).await;
                if reply.status != 400
                    || reply.headers.contains_key("location")
                    || !reply.header("content-type").starts_with("text/html")
                {
                    return Err(reply.describe());
                }
                Ok(())
            }
        }
    }

    /// The positive control: the untouched token is accepted, and the live state survived the attacks.
    async fn accepts_the_base(&self, w: &World) -> Result<(), String> {
        let http = http();
        match self.acceptor {
            Acceptor::GatewayCallback => {
                let login = gateway_login(w, Base::token).await;
                match (login.callback.status, gateway_user(w, &login.browser).await) {
                    (302, 200) => Ok(()),
                    other => Err(format!("a valid ID token: {other:?} {:.200}", login.callback.body)),
                }
            }
            Acceptor::GatewayBackchannel => {
                let (browser, _) = self.gateway_victim.as_ref().unwrap();
                if gateway_user(w, browser).await != 200 {
                    return Err("the victim's session did not survive the refused logout tokens".into());
                }
                let token = self.base(w).token();
                let reply = Answer::of(
                    http.post(format!("{}/bff/backchannel", w.gw))
                        .form(&[("logout_token", token)])
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                if reply.status != 200 || gateway_user(w, browser).await != 401 {
                    return Err(format!("a valid logout token: {}", reply.describe()));
                }
                Ok(())
            }
            Acceptor::TokenEndpointClientAssertion
            | Acceptor::TokenEndpointDpop
            | Acceptor::UserinfoDpop
            | Acceptor::ApiAccessToken
            | Acceptor::UserinfoAccessToken => {
                let token = self.base(w).token();
                let request = match self.acceptor {
                    Acceptor::TokenEndpointClientAssertion => http.post(format!("{}/token", w.issuer)).form(&[
                        ("grant_type", "client_credentials"),
                        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                        ("client_assertion", &token),
                    ]),
                    Acceptor::TokenEndpointDpop => http
                        .post(format!("{}/token", w.issuer))
                        .basic_auth("m2m", Some(M2M_SECRET))
                        .header("dpop", &token)
                        .form(&[("grant_type", "client_credentials")]),
                    Acceptor::UserinfoDpop => http
                        .get(format!("{}/userinfo", w.issuer))
                        .header("authorization", format!("DPoP {}", self.bound_access_token()))
                        .header("dpop", &token),
                    Acceptor::ApiAccessToken => http.get(format!("{}/api/whoami", w.api)).bearer_auth(&token),
                    _ => http.get(format!("{}/userinfo", w.issuer)).bearer_auth(&token),
                };
                let reply = Answer::of(request.send().await.unwrap()).await;
                if reply.status != 200 {
                    return Err(format!("the untouched token: {}", reply.describe()));
                }
                Ok(())
            }
            Acceptor::EndSessionHint => {
                let victim = self.idp_victim.as_ref().unwrap();
                if !idp_session_alive(w, &victim.session_cookie).await {
                    return Err("the session did not survive the refused hints".into());
                }
                let uri = format!(
                    "{}/end_session?id_token_hint={}&post_logout_redirect_uri={}",
                    w.issuer,
                    self.base(w).token(),
                    support::enc(C1_SIGNED_OUT)
                );
                let reply =
                    Answer::of(http.get(uri).header("cookie", &victim.session_cookie).send().await.unwrap()).await;
                if reply.status != 303
                    || reply.header("location") != C1_SIGNED_OUT
                    || idp_session_alive(w, &victim.session_cookie).await
                {
                    return Err(format!("a valid hint: {} → {}", reply.describe(), reply.header("location")));
                }
                Ok(())
            }
        }
    }
}

fn split_jwt(token: &str) -> (Value, Value) {
    (jose::jwt_part(token, 0), jose::jwt_part(token, 1))
}

/// Runs every attack of `rows` against every acceptor it applies to; each refusal must be complete and quick,
/// each acceptor must still accept its untouched token afterwards, and every row must reach an acceptor.
async fn refused_by_every_acceptor(rows: &[&str]) {
    let w = world();
    let tripwire_before = w.tripwire_hits.load(Ordering::SeqCst);
    let mut failures = Vec::new();
    let mut reached: HashMap<&str, Vec<Acceptor>> = HashMap::new();
    for acceptor in ACCEPTORS {
        let attacks: Vec<Attack> = jose::attacks(acceptor.kind(), &w.tripwire_url)
            .into_iter()
            .filter(|a| rows.contains(&a.row) && acceptor.applies(a))
            .collect();
        if attacks.is_empty() {
            continue;
        }
        let target = Target::prepare(w, acceptor).await;
        for attack in &attacks {
            let started = Instant::now();
            if let Err(problem) = target.refuses(w, |base| attack.token(base)).await {
                failures.push(format!("{acceptor:?} {attack:?}: {problem}"));
            }
            if started.elapsed() > Duration::from_secs(10) {
                failures.push(format!("{acceptor:?} {attack:?}: took {:?}", started.elapsed()));
            }
            reached.entry(attack.row).or_default().push(acceptor);
        }
        if let Err(problem) = target.accepts_the_base(w).await {
            failures.push(format!("{acceptor:?} positive control: {problem}"));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    for row in rows {
        assert!(reached.contains_key(row), "{row} reached no acceptor");
    }
    assert_eq!(w.tripwire_hits.load(Ordering::SeqCst), tripwire_before, "a jku/x5u was fetched (SSRF)");
}

// ---------------------------------------------------------------------------------------------------------------
// §G rows

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_01_02_alg_none_in_any_spelling_is_refused_everywhere() {
    refused_by_every_acceptor(&["JWT-01", "JWT-02"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_03_hs256_keyed_with_the_public_key_in_any_encoding_is_refused_everywhere() {
    refused_by_every_acceptor(&["JWT-03"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_04_05_algorithms_not_bound_to_the_key_or_not_allowed_are_refused_everywhere() {
    refused_by_every_acceptor(&["JWT-04", "JWT-05"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_06_the_psychic_signature_is_refused_everywhere() {
    refused_by_every_acceptor(&["JWT-06"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_07_injected_kids_are_refused_everywhere() {
    refused_by_every_acceptor(&["JWT-07"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_09_embedded_or_remote_keys_are_refused_and_never_fetched() {
    refused_by_every_acceptor(&["JWT-09"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_10_crit_and_b64_are_refused_everywhere() {
    refused_by_every_acceptor(&["JWT-10"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_11_other_serialisations_are_refused_everywhere() {
    refused_by_every_acceptor(&["JWT-11"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_12_13_14_15_jwe_shapes_are_refused_quickly_everywhere() {
    refused_by_every_acceptor(&["JWT-12", "JWT-13", "JWT-14", "JWT-15"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_16_17_duplicate_members_and_non_utf8_json_are_refused_everywhere() {
    refused_by_every_acceptor(&["JWT-16", "JWT-17"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_18_26_the_issuer_must_match_exactly_even_with_shared_keys() {
    refused_by_every_acceptor(&["JWT-18", "JWT-26"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_19_the_audience_must_be_ours_alone() {
    refused_by_every_acceptor(&["JWT-19"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_20_time_claims_are_enforced_with_a_small_skew() {
    refused_by_every_acceptor(&["JWT-20"]).await;
}

/// JWT-08: a flood of unknown `kid`s (1 000 logout tokens at the gateway, 250 access tokens at the API, 100
/// client assertions) makes the gateway and the API fetch the JWKS at most once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_08_an_unknown_kid_flood_does_not_amplify_jwks_fetches() {
    let w = world();
    let http = http();
    let (mock_before, api_before) = (w.op.jwks_fetches(), w.api_jwks_fetches.load(Ordering::SeqCst));
    let logout = w.op.logout_token_base("bff", "alice-sub", "no-such-sid");
    let access = Target::prepare(w, Acceptor::ApiAccessToken).await.base(w);
    let assertion = Target::prepare(w, Acceptor::TokenEndpointClientAssertion).await.base(w);
    for i in 0..1000 {
        let kid = random_id();
        let token = logout.sign(&logout.header_with(&[("kid", kid.clone().into())]), &logout.claims);
        let reply =
            http.post(format!("{}/bff/backchannel", w.gw)).form(&[("logout_token", token)]).send().await.unwrap();
        assert_eq!(reply.status(), 400, "logout token {i}");
        if i % 4 == 0 {
            let token = access.sign(&access.header_with(&[("kid", kid.clone().into())]), &access.claims);
            let reply = http.get(format!("{}/api/whoami", w.api)).bearer_auth(token).send().await.unwrap();
            assert_eq!(reply.status(), 401, "access token {i}");
        }
        if i % 10 == 0 {
            let token = assertion.sign(
                &assertion.header_with(&[("kid", kid.into())]),
                &assertion.claims_with(&[("jti", random_id().into())]),
            );
            let reply = http
                .post(format!("{}/token", w.issuer))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", &token),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 401, "client assertion {i}");
        }
    }
    assert!(
        w.op.jwks_fetches() - mock_before <= 1,
        "the gateway fetched the JWKS {} times",
        w.op.jwks_fetches() - mock_before
    );
    let api_fetches = w.api_jwks_fetches.load(Ordering::SeqCst) - api_before;
    assert!(api_fetches <= 1, "the API fetched the JWKS {api_fetches} times");
}

/// Cross-JWT confusion (RFC 8725 §2.8, §3.11, §3.12) and JWT-27 (one RSA key signs the token service's ID
/// tokens and logout tokens, one EC key its access tokens): every token type is refused as every other type,
/// because `typ` and the claim rules are mutually exclusive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_21_22_23_27_each_token_type_is_refused_as_every_other() {
    let w = world();
    let http = http();
    let login = idp_login(w, None).await;
    let id_token = login.tokens["id_token"].as_str().unwrap().to_owned();
    let access_token = login.tokens["access_token"].as_str().unwrap().to_owned();
    // JWT-27: the types and keys in use.
    let (id_header, id_claims) = split_jwt(&id_token);
    let (at_header, _) = split_jwt(&access_token);
    assert_eq!((id_header["typ"].as_str(), id_header["alg"].as_str()), (Some("JWT"), Some("RS256")));
    assert_eq!((at_header["typ"].as_str(), at_header["alg"].as_str()), (Some("at+jwt"), Some("ES256")));
    assert!(id_claims.get("nonce").is_some() && id_claims.get("events").is_none());
    let t = jose::now();
    let logout_token = Base {
        header: json!({"typ": "logout+jwt", "alg": "RS256", "kid": w.idp_rsa.kid}),
        claims: json!({"iss": w.issuer, "aud": "c1", "iat": t, "exp": t + 120, "jti": random_id(), "sub": w.alice_sub,
            "sid": id_claims["sid"], "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
        signer: w.idp_rsa.clone(),
    }
    .token();
    // JWT-21: an ID token (of the gateway's OP) posted as a logout token; the victim session survives.
    let backchannel = Target::prepare(w, Acceptor::GatewayBackchannel).await;
    let mock_id_token = w.op.id_token_base_for("bff", Some("n")).token();
    backchannel.refuses(w, |_| mock_id_token).await.unwrap();
    backchannel.accepts_the_base(w).await.unwrap();
    // JWT-22: a logout token as id_token_hint, and as an access token at userinfo and at the API.
    let hint = Target::prepare(w, Acceptor::EndSessionHint).await;
    hint.refuses(w, |_| logout_token.clone()).await.unwrap();
    for target in [Acceptor::UserinfoAccessToken, Acceptor::ApiAccessToken] {
        let target = Target::prepare(w, target).await;
        target.refuses(w, |_| logout_token.clone()).await.unwrap();
        // JWT-23: the ID token as an access token.
        target.refuses(w, |_| id_token.clone()).await.unwrap();
        // And the access token as an ID-token hint (below) — each type only where it belongs.
    }
    hint.refuses(w, |_| access_token.clone()).await.unwrap();
    hint.accepts_the_base(w).await.unwrap();
    // JWT-23 with the DPoP scheme too.
    for (url, what) in [(format!("{}/userinfo", w.issuer), "userinfo"), (format!("{}/api/whoami", w.api), "API")] {
        let reply = http.get(&url).header("authorization", format!("DPoP {id_token}")).send().await.unwrap();
        assert_eq!(reply.status(), 401, "ID token with the DPoP scheme at the {what}");
    }
}

/// JWT-24: an access token handed back as the ID token creates no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_24_an_access_token_as_id_token_creates_no_session() {
    let w = world();
    let target = Target::prepare(w, Acceptor::GatewayCallback).await;
    target.refuses(w, |_| w.op.access_token("bff", None)).await.unwrap();
    // Even shaped like an ID token in everything but its type.
    target
        .refuses(w, |base| {
            let signer = w.op.ec.clone();
            let header = json!({"typ": "at+jwt", "alg": "ES256", "kid": "mock-es"});
            Base { header, claims: base.claims.clone(), signer }.token()
        })
        .await
        .unwrap();
    target.accepts_the_base(w).await.unwrap();
}

/// JWT-25: DPoP proofs, client assertions and request objects cannot stand in for each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_25_proofs_assertions_and_request_objects_are_not_interchangeable() {
    let w = world();
    let assertion = Target::prepare(w, Acceptor::TokenEndpointClientAssertion).await;
    // A proof-shaped JWT signed with the client's key, as a client assertion.
    assertion
        .refuses(w, |base| {
            let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": w.pkjwt.bare_jwk(), "kid": "k1"});
            base.sign(&header, &base.claims)
        })
        .await
        .unwrap();
    assertion
        .refuses(w, |base| {
            let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": w.pkjwt.bare_jwk()});
            let claims =
                json!({"jti": random_id(), "htm": "POST", "htu": format!("{}/token", w.issuer), "iat": jose::now()});
            base.sign(&header, &claims)
        })
        .await
        .unwrap();
    // A request object, as a client assertion.
    assertion
        .refuses(w, |base| base.sign(&json!({"typ": "oauth-authz-req+jwt", "alg": "ES256", "kid": "k1"}), &base.claims))
        .await
        .unwrap();
    assertion.accepts_the_base(w).await.unwrap();
    // A client assertion as a DPoP proof (even one carrying the client's key as jwk).
    let dpop = Target::prepare(w, Acceptor::TokenEndpointDpop).await;
    let client_assertion = assertion.base(w).token();
    dpop.refuses(w, |_| client_assertion.clone()).await.unwrap();
    dpop.refuses(w, |_| {
        let base = assertion.base(w);
        base.sign(&json!({"alg": "ES256", "kid": "k1", "jwk": w.pkjwt.bare_jwk()}), &base.claims)
    })
    .await
    .unwrap();
    dpop.accepts_the_base(w).await.unwrap();
    // Request objects are not accepted at all (OIDC Core §6: `request_not_supported`).
    let verifier = CodeVerifier::from_random(&[3u8; 32]);
    let request_object = assertion
        .base(w)
        .sign(&json!({"typ": "oauth-authz-req+jwt", "alg": "ES256", "kid": "k1"}), &json!({"client_id": "c1"}));
    let uri = format!(
        "{}/authorize?response_type=code&client_id=c1&redirect_uri={}&scope=openid&state=s&code_challenge={}&code_challenge_method=S256&request={request_object}",
        w.issuer,
        support::enc(C1_CALLBACK),
        CodeChallenge::s256(&verifier).as_str()
    );
    let reply = Answer::of(http().get(uri).send().await.unwrap()).await;
    assert!(reply.header("location").contains("error=request_not_supported"), "{}", reply.header("location"));
}

/// JWT-28: no acceptor takes an HMAC-signed token, so no shared secret can be attacked offline; client secrets
/// are 256-bit random values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_28_no_hmac_jwt_is_accepted_and_client_secrets_are_256_bit() {
    let w = world();
    let doc: Value = http()
        .get(format!("{}/.well-known/openid-configuration", w.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods: Vec<&str> =
        doc["token_endpoint_auth_methods_supported"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(!methods.contains(&"client_secret_jwt"), "{methods:?}");
    for list in [
        "id_token_signing_alg_values_supported",
        "dpop_signing_alg_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
    ] {
        if let Some(algs) = doc[list].as_array() {
            assert!(
                algs.iter().all(|a| !a.as_str().unwrap_or("").starts_with("HS") && a != "none"),
                "{list}: {algs:?}"
            );
        }
    }
    // An assertion MACed with a client secret (client_secret_jwt) is refused.
    let assertion = Target::prepare(w, Acceptor::TokenEndpointClientAssertion).await;
    assertion
        .refuses(w, |base| {
            let header = json!({"alg": "HS256"});
            let input = format!("{}.{}", jose::part(header.to_string()), jose::part(base.claims.to_string()));
            format!("{input}.{}", jose::part(jose::hmac("HS256", M2M_SECRET.as_bytes(), input.as_bytes())))
        })
        .await
        .unwrap();
    let secret = gatehouse_idp::admin::generate_client_secret();
    assert_eq!(b64::decode(secret.expose()).unwrap().len(), 32, "256 random bits");
}
