//! Test harness: a token service on its own runtime (so it can be killed outright), the example API, a
//! recording echo upstream and the gateway on free ports; and a small cookie-jar browser.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_bff::session::Session;
use gatehouse_bff::settings::{
    BffSettings, CookieKey, CookieSettings, Frontend, OidcSettings, RouteSettings, SameSite, SessionMode,
    SessionSettings, SessionStoreSettings, TokenRequirement,
};
use gatehouse_bff::{Gateway, RunningGateway};
use gatehouse_idp::admin::{self, SessionSelector};
use gatehouse_idp::settings::{ApiResource, SeedClient, SeedPassword, SeedUser, Settings};
use gatehouse_idp::store::ClientRecord;
use gatehouse_idp::{Idp, Store};
use gatehouse_proto::Secret;
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::verifier::VerifierConfig;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};

pub const SESSION_COOKIE: &str = "__Host-gatehouse";
pub const CLIENT_SECRET: &str = "bff-test-secret-0123456789abcdefghijklmnop";
pub const API_AUDIENCE: &str = "https://api.test";
/// A second API of the token service (same scope), named by the `/files/` route's `resource` (RFC 8707).
pub const FILES_AUDIENCE: &str = "https://files.test";

#[derive(Clone)]
pub struct Options {
    pub use_par: bool,
    pub access_token_ttl: i64,
    /// Where the gateway keeps sessions. Default: memory.
    pub session_store: SessionStoreSettings,
    /// Where the gateway keeps sessions (default: server-side).
    pub session_mode: SessionMode,
    /// The gateway's cookie key ring (newest first); default one random key `k1`.
    pub cookie_keys: Option<Vec<CookieKey>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            use_par: true,
            access_token_ttl: 300,
            session_store: SessionStoreSettings::Memory,
            session_mode: SessionMode::Server,
            cookie_keys: None,
        }
    }
}

pub struct Harness {
    pub issuer: String,
    pub gw_origin: String,
    pub gateway: Arc<Gateway>,
    /// What the gateway was started with (`restart_gateway` starts it again with these).
    pub settings: BffSettings,
    running: Mutex<Option<RunningGateway>>,
    idp_runtime: tokio::runtime::Handle,
    idp_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    store: Store,
    echoes: Arc<Mutex<Vec<serde_json::Value>>>,
    /// The DPoP proof payloads the nonce-demanding upstream received.
    pub nonce_proofs: Arc<Mutex<Vec<serde_json::Value>>>,
    http: reqwest::Client,
}

#[path = "../../../tests/support/ports.rs"]
mod ports;
use ports::free_port;

impl Harness {
    pub async fn start(options: Options) -> Self {
        let gw_port = free_port();
        let gw_origin = format!("http://127.0.0.1:{gw_port}");

        // The token service, on a runtime of its own: stopping it kills every connection.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let origin = gw_origin.clone();
        let ttl = options.access_token_ttl;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let handle = rt.handle().clone();
            let (issuer, store) = rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
                let mut settings = Settings::for_tests(&issuer);
                settings.apis = vec![
                    ApiResource { audience: API_AUDIENCE.into(), scopes: vec!["api".into()] },
                    ApiResource { audience: FILES_AUDIENCE.into(), scopes: vec!["api".into()] },
                ];
                settings.tokens.access_token_ttl = ttl;
                let store = Store::open("sqlite::memory:").await.unwrap();
                admin::seed(&store, &[alice(), bob()], &[bff_client(&origin)], 0).await.unwrap();
                let idp = Idp::start(settings, store.clone()).await.unwrap();
                let router = idp.router();
                tokio::spawn(async move {
                    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
                });
                (issuer, store)
            });
            ready_tx.send((issuer, store, handle)).ok();
            let _ = stop_rx.recv();
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        let (issuer, store, idp_runtime) = ready_rx.await.unwrap();

        // The example API and the echo upstream.
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://127.0.0.1:{}", api_listener.local_addr().unwrap().port());
        let app = gatehouse_example_api::router(VerifierConfig::new(&issuer, API_AUDIENCE), &gw_origin);
        tokio::spawn(async move { axum::serve(api_listener, app).await.unwrap() });
        let echoes = Arc::new(Mutex::new(Vec::new()));
        let echo = start_echo(echoes.clone()).await;
        let nonce_proofs = Arc::new(Mutex::new(Vec::new()));
        let nonce = start_nonce_upstream(nonce_proofs.clone()).await;

        let settings = BffSettings {
            listen: Some(format!("127.0.0.1:{gw_port}").parse().unwrap()),
            tls: None,
            threads: 2,
            grace_period: Duration::ZERO,
            graceful_shutdown_timeout: Duration::ZERO,
            public_origin: url::Url::parse(&gw_origin).unwrap(),
            oidc: OidcSettings {
                issuer: url::Url::parse(&issuer).unwrap(),
                client_id: "bff".into(),
                client_secret: Secret::new(CLIENT_SECRET),
                scopes: ["openid", "profile", "email", "offline_access", "api"].map(String::from).to_vec(),
                use_par: options.use_par,
                id_token_algs: vec!["RS256".into(), "ES256".into()],
                timeout: Duration::from_secs(5),
                metadata_ttl: Duration::from_secs(300),
                jwks_min_refresh: Duration::from_secs(1),
                leeway_seconds: 30,
            },
            cookie: CookieSettings {
                name: SESSION_COOKIE.into(),
                same_site: SameSite::Strict,
                keys: options
                    .cookie_keys
                    .clone()
                    .unwrap_or_else(|| vec![CookieKey { id: "k1".into(), key: rand_key() }]),
            },
            session: SessionSettings {
                idle_timeout: Duration::from_secs(3600),
                absolute_lifetime: Duration::from_secs(86400),
                refresh_skew: Duration::from_secs(30),
                cache_capacity: 10_000,
                store: options.session_store.clone(),
                mode: options.session_mode,
            },
            routes: vec![
                route("/api/", &api, false, Some(&gw_origin)),
                route("/echo/", &echo, true, None),
                RouteSettings {
                    token: TokenRequirement::Client,
                    required_scopes: vec!["api".into()],
                    ..route("/svc/", &echo, true, None)
                },
                RouteSettings { required_scopes: vec!["admin".into()], ..route("/admin/", &echo, true, None) },
                RouteSettings { max_body_bytes: 10, ..route("/small/", &echo, true, None) },
                RouteSettings {
                    token: TokenRequirement::None,
                    require_csrf: false,
                    ..route("/open/", &echo, true, None)
                },
                RouteSettings { token: TokenRequirement::UserOrNone, ..route("/maybe/", &echo, true, None) },
                route("/nonce/", &nonce, true, None),
                RouteSettings { resource: Some(FILES_AUDIENCE.into()), ..route("/files/", &echo, true, None) },
                RouteSettings {
                    token: TokenRequirement::Client,
                    resource: Some(FILES_AUDIENCE.into()),
                    ..route("/svc-files/", &echo, true, None)
                },
                RouteSettings {
                    resource: Some("https://unknown.test".into()),
                    ..route("/unknown/", &echo, true, None)
                },
                RouteSettings { methods: vec![http::Method::GET], ..route("/readonly/", &echo, true, None) },
            ],
            frontend: Frontend::Static {
                root: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/spa"),
            },
        };
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let (gateway, running) = start_gateway(&http, settings.clone()).await;
        Self {
            issuer,
            gw_origin,
            gateway,
            settings,
            running: Mutex::new(Some(running)),
            idp_runtime,
            idp_stop: Mutex::new(Some(stop_tx)),
            store,
            echoes,
            nonce_proofs,
            http,
        }
    }

    pub fn gw(&self, path: &str) -> String {
        format!("{}{path}", self.gw_origin)
    }

    pub fn gw_authority(&self) -> String {
        self.gw_origin.trim_start_matches("http://").to_owned()
    }

    /// Stops the gateway and starts a new one on the same port with `settings` as changed by `change` (the
    /// token service and the upstreams keep running): what a gateway restart looks like to a browser.
    pub async fn restart_gateway_with(mut self, change: impl FnOnce(&mut BffSettings)) -> Self {
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            running.stop_async().await;
        }
        change(&mut self.settings);
        let (gateway, running) = start_gateway(&self.http, self.settings.clone()).await;
        self.gateway = gateway;
        *self.running.lock().unwrap() = Some(running);
        self
    }

    pub async fn restart_gateway(self) -> Self {
        self.restart_gateway_with(|_| {}).await
    }

    pub async fn stop(self) {
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            running.stop_async().await;
        }
        self.stop_token_service();
    }

    pub fn stop_token_service(&self) {
        if let Some(stop) = self.idp_stop.lock().unwrap().take() {
            let _ = stop.send(());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub async fn sessions(&self) -> Vec<Arc<Session>> {
        self.gateway.sessions.list(None).await.unwrap()
    }

    pub async fn session_count(&self) -> usize {
        self.sessions().await.len()
    }

    pub async fn only_session(&self) -> Arc<Session> {
        let sessions = self.sessions().await;
        assert_eq!(sessions.len(), 1, "exactly one session expected");
        sessions[0].clone()
    }

    /// Moves the session's access-token expiry inside the refresh skew.
    pub async fn expire_access_token_soon(&self) {
        let session = self.only_session().await;
        let mut next = (*session).clone();
        next.tokens.access_token_expires_at = gatehouse_bff::now() + 5;
        self.gateway.sessions.put(Arc::new(next)).await.unwrap();
    }

    /// Cookie mode: the session `b`'s cookie chunks carry, as the gateway reads it now.
    pub async fn cookie_session(&self, b: &Browser) -> Option<Arc<Session>> {
        let url = url::Url::parse(&self.gw("/")).unwrap();
        let mut headers = http::HeaderMap::new();
        if let Some(cookie) = b.cookie_header(&url) {
            headers.insert(http::header::COOKIE, cookie.parse().unwrap());
        }
        self.gateway.carried(&headers, gatehouse_bff::now()).await.unwrap().session
    }

    /// Cookie mode: re-seals `b`'s session with its access-token expiry moved inside the refresh skew (what
    /// `expire_access_token_soon` does to a stored session).
    pub async fn expire_cookie_access_token_soon(&self, b: &mut Browser) {
        let session = self.cookie_session(b).await.expect("a cookie session");
        let mut next = (*session).clone();
        next.tokens.access_token_expires_at = gatehouse_bff::now() + 5;
        let lines = self.gateway.establish(next).await.unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        for line in lines {
            headers.append("set-cookie", line.parse().unwrap());
        }
        let url = url::Url::parse(&self.gw("/")).unwrap();
        b.absorb(&Reply { url, status: 200, headers, body: String::new() });
    }

    pub fn echo_count(&self) -> usize {
        self.echoes.lock().unwrap().len()
    }

    pub fn last_echo(&self) -> serde_json::Value {
        self.echoes.lock().unwrap().last().cloned().expect("the echo upstream saw a request")
    }

    /// RFC 7009 revocation as the gateway's client.
    pub async fn revoke_at_token_service(&self, token: &str) {
        let reply = self
            .http
            .post(format!("{}/revoke", self.issuer))
            .basic_auth("bff", Some(CLIENT_SECRET))
            .form(&[("token", token), ("token_type_hint", "refresh_token")])
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }

    /// The status of a refresh_token grant with `token` (no DPoP proof).
    pub async fn refresh_status(&self, token: &str) -> u16 {
        let key = gatehouse_proto::dpop_key::DpopKey::generate().unwrap();
        let url = format!("{}/token", self.issuer);
        self.http
            .post(&url)
            .basic_auth("bff", Some(CLIENT_SECRET))
            .header("dpop", key.proof("POST", &url, None, None, gatehouse_bff::now()))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// A JWT signed with the token service's current RS256 key (`typ` as given): logout tokens of any shape.
    pub async fn sign_with_token_service_key(&self, typ: &str, claims: serde_json::Value) -> String {
        let store = self.store.clone();
        let issuer = self.issuer.clone();
        let typ = typ.to_owned();
        self.idp_runtime
            .spawn(async move {
                let backchannel = admin::backchannel(
                    &store,
                    &issuer,
                    &gatehouse_idp::settings::MasterKey([7; 32]),
                    gatehouse_bff::now(),
                    0,
                )
                .await
                .unwrap();
                gatehouse_idp::tokens::sign(&backchannel.keys, SigningAlg::RS256, &typ, &claims).unwrap()
            })
            .await
            .unwrap()
    }

    /// Deletes a user at the token service (`gatehouse users remove`).
    pub async fn remove_idp_user(&self, username: &str) {
        let store = self.store.clone();
        let username = username.to_owned();
        let removed =
            self.idp_runtime.spawn(async move { admin::remove_user(&store, &username).await.unwrap() }).await.unwrap();
        assert!(removed);
    }

    /// The stored token-service user's `sub`.
    pub async fn sub_of(&self, username: &str) -> String {
        let store = self.store.clone();
        let username = username.to_owned();
        self.idp_runtime
            .spawn(async move { store.users.user_by_username(&username).await.unwrap().unwrap().sub })
            .await
            .unwrap()
    }

    /// `gatehouse sessions revoke --user`: ends the token-service sessions and sends back-channel logouts.
    pub async fn revoke_idp_sessions(&self, username: &str) -> Vec<String> {
        let store = self.store.clone();
        let issuer = self.issuer.clone();
        let username = username.to_owned();
        self.idp_runtime
            .spawn(async move {
                let backchannel = admin::backchannel(
                    &store,
                    &issuer,
                    &gatehouse_idp::settings::MasterKey([7; 32]),
                    gatehouse_bff::now(),
                    0,
                )
                .await
                .unwrap();
                let revocation =
                    admin::revoke_sessions(&store, &backchannel, SessionSelector::User(username), gatehouse_bff::now())
                        .await
                        .unwrap();
                revocation.notifications.iter().map(|n| format!("{n:?}")).collect()
            })
            .await
            .unwrap()
    }

    /// The whole login through the real form; returns the callback's reply.
    pub async fn login_reply(&self, b: &mut Browser, username: &str, return_url: &str) -> Reply {
        let start = b.get(&self.gw(&format!("/bff/login?returnUrl={}", enc(return_url))), &[]).await;
        assert_eq!(start.status, 302, "{}", start.body);
        b.absorb(&start);
        let authorize = start.header("location").unwrap().to_owned();
        let page = b.get(&authorize, &[]).await;
        b.absorb(&page);
        let callback = if matches!(page.status, 302 | 303) {
            page.header("location").unwrap().to_owned()
        } else {
            assert_eq!(page.status, 200, "{}", page.body);
            let (csrf, request) = form_fields(&page.body);
            let password = format!("{username}-password");
            let form = [("username", username), ("password", &password), ("csrf", &csrf), ("request", &request)];
            let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
            let posted = b.post_form(&format!("{}/login", self.issuer), &body).await;
            assert!(matches!(posted.status, 302 | 303), "{} {}", posted.status, posted.body);
            b.absorb(&posted);
            posted.header("location").unwrap().to_owned()
        };
        assert!(callback.starts_with(&self.gw("/bff/callback?")), "{callback}");
        let reply = b.get(&callback, &[]).await;
        b.absorb(&reply);
        reply
    }

    /// Logs in; returns where the gateway sent the browser afterwards.
    /// The `bff:logout_url` of the browser's session, from `/bff/user`.
    pub async fn logout_url(&self, b: &Browser) -> String {
        let user = b.get(&self.gw("/bff/user"), &[("x-csrf", "1")]).await;
        assert_eq!(user.status, 200, "{}", user.body);
        let claims: Vec<serde_json::Value> = serde_json::from_str(&user.body).unwrap();
        claims.iter().find(|c| c["type"] == "bff:logout_url").unwrap()["value"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, b: &mut Browser, username: &str, return_url: &str) -> String {
        let reply = self.login_reply(b, username, return_url).await;
        assert_eq!(reply.status, 302, "{}", reply.body);
        reply.header("location").unwrap().to_owned()
    }

    /// Logs in (the login transaction already started in `b`); the session's Set-Cookie.
    pub async fn login_set_cookie(&self, b: &mut Browser) -> String {
        let reply = self.login_reply(b, "alice", "/").await;
        reply.set_cookies().into_iter().find(|c| c.starts_with("__Host-gatehouse=")).expect("session cookie")
    }

    /// `/bff/silent-login` through to the callback page.
    pub async fn silent_login(&self, b: &mut Browser) -> Reply {
        let start = b.get(&self.gw("/bff/silent-login"), &[]).await;
        assert_eq!(start.status, 302, "{}", start.body);
        b.absorb(&start);
        let authorize = start.header("location").unwrap().to_owned();
        let answer = b.get(&authorize, &[]).await;
        assert!(matches!(answer.status, 302 | 303), "prompt=none never shows a form: {}", answer.body);
        b.absorb(&answer);
        let callback = answer.header("location").unwrap().to_owned();
        let page = b.get(&callback, &[]).await;
        b.absorb(&page);
        assert_eq!(page.status, 200, "{}", page.body);
        page
    }
}

/// Builds and starts a gateway, and waits until it answers.
async fn start_gateway(http: &reqwest::Client, settings: BffSettings) -> (Arc<Gateway>, RunningGateway) {
    let origin = settings.public_origin.as_str().trim_end_matches('/').to_owned();
    let gateway = Arc::new(Gateway::new(settings).await.unwrap());
    let running = gatehouse_bff::start(gateway.clone()).unwrap();
    for _ in 0..100 {
        if http.get(format!("{origin}/bff/user")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (gateway, running)
}

pub fn rand_key() -> [u8; 32] {
    let key = gatehouse_proto::dpop_key::DpopKey::generate().unwrap();
    let mut out = [0u8; 32];
    out.copy_from_slice(&sha2_32(key.pkcs8()));
    out
}

fn sha2_32(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

fn route(path: &str, upstream: &str, strip: bool, public_base: Option<&str>) -> RouteSettings {
    RouteSettings {
        path: path.into(),
        upstreams: vec![url::Url::parse(upstream).unwrap()],
        strip_prefix: strip,
        token: TokenRequirement::User,
        require_csrf: true,
        required_scopes: vec![],
        resource: None,
        public_base: public_base.map(|b| url::Url::parse(b).unwrap()),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(10),
        max_body_bytes: 1024 * 1024,
        websockets: false,
        methods: Vec::new(),
    }
}

fn bob() -> SeedUser {
    SeedUser {
        username: "bob".into(),
        password: SeedPassword::Plain(Secret::new("bob-password")),
        claims: StandardClaims { name: Some("Bob".into()), ..Default::default() },
    }
}

fn alice() -> SeedUser {
    SeedUser {
        username: "alice".into(),
        password: SeedPassword::Plain(Secret::new("alice-password")),
        claims: StandardClaims {
            name: Some("Alice Liddell".into()),
            given_name: Some("Alice".into()),
            email: Some("alice@example.com".into()),
            ..Default::default()
        },
    }
}

fn bff_client(origin: &str) -> SeedClient {
    SeedClient {
        record: ClientRecord {
            client_id: "bff".into(),
            name: None,
            auth_method: ClientAuthMethod::ClientSecretBasic,
            secret_sha256: None,
            jwks: None,
            redirect_uris: vec![format!("{origin}/bff/callback")],
            post_logout_redirect_uris: vec![format!("{origin}/")],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials],
            scopes: ["openid", "profile", "email", "offline_access", "api"].map(String::from).to_vec(),
            id_token_signed_response_alg: SigningAlg::RS256,
            backchannel_logout_uri: Some(format!("{origin}/bff/backchannel")),
            source: String::new(),
            require_dpop: true,
            require_dpop_nonce: false,
            require_pushed_authorization_requests: false,
        },
        secret: Some(Secret::new(CLIENT_SECRET)),
    }
}

/// An upstream that records method, path and headers of every request and answers them as JSON. A few paths
/// misbehave on purpose: `/redirect` answers 302 to a foreign host, `/set-cookie` tries to set the gateway's
/// cookies, `/invalid-token` answers 401 `DPoP error="invalid_token"`.
async fn start_echo(log: Arc<Mutex<Vec<serde_json::Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        async move {
            let mut seen = serde_json::Map::new();
            seen.insert("method".into(), request.method().as_str().into());
            seen.insert("path".into(), request.uri().path_and_query().map_or("/", |p| p.as_str()).into());
            for (name, value) in request.headers() {
                seen.insert(name.as_str().into(), value.to_str().unwrap_or("").into());
            }
            // `X-Set-Cookie: <line>` asks the echo to answer with `Set-Cookie: <line>` (cookie-confinement tests).
            let mut set_cookies = axum::http::HeaderMap::new();
            for line in request.headers().get_all("x-set-cookie") {
                set_cookies.append(axum::http::header::SET_COOKIE, line.clone());
            }
            // `X-Cache-Control: <value>` asks for that `Cache-Control` on the answer (caching tests).
            if let Some(value) = request.headers().get("x-cache-control") {
                set_cookies.insert(axum::http::header::CACHE_CONTROL, value.clone());
            }
            let seen = serde_json::Value::Object(seen);
            log.lock().unwrap().push(seen.clone());
            use axum::response::IntoResponse;
            let path = request.uri().path().to_owned();
            let mut response = axum::Json(seen).into_response();
            let headers = response.headers_mut();
            for line in set_cookies.get_all(axum::http::header::SET_COOKIE) {
                headers.append(axum::http::header::SET_COOKIE, line.clone());
            }
            if let Some(value) = set_cookies.get(axum::http::header::CACHE_CONTROL) {
                headers.insert(axum::http::header::CACHE_CONTROL, value.clone());
            }
            let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
                headers.append(name, axum::http::HeaderValue::from_static(value));
            };
            if path.ends_with("/redirect") {
                *response.status_mut() = axum::http::StatusCode::FOUND;
                set(response.headers_mut(), "location", "https://evil.example/steal");
            } else if path.ends_with("/set-cookie") {
                set(headers, "set-cookie", "__Host-gatehouse=evil; Path=/; Secure; HttpOnly");
                set(headers, "set-cookie", "__host-GATEHOUSE=evil; Path=/; Secure");
                set(headers, "set-cookie", "__Host-gatehouse.1=evil; Path=/; Secure");
                set(headers, "set-cookie", "__Host-gatehouse-tx-AAAAAAAAAAAAAAAA=evil; Path=/; Secure");
                set(headers, "set-cookie", "__Host-gatehouse=; Max-Age=0; Path=/; Secure");
                set(headers, "set-cookie", "app-pref=dark; Path=/; Secure; SameSite=Lax");
            } else if path.ends_with("/invalid-token") {
                *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
                set(response.headers_mut(), "www-authenticate", "DPoP error=\"invalid_token\", algs=\"ES256\"");
            }
            response
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// An API that demands a DPoP nonce (RFC 9449 §9): 401 `use_dpop_nonce` with `DPoP-Nonce: n-1` until a proof
/// carries it. Records every proof's payload.
async fn start_nonce_upstream(log: Arc<Mutex<Vec<serde_json::Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let log = log.clone();
        async move {
            let proof = headers.get("dpop").and_then(|v| v.to_str().ok()).unwrap_or("");
            let payload = proof
                .split('.')
                .nth(1)
                .and_then(gatehouse_proto::b64::decode)
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .unwrap_or_default();
            log.lock().unwrap().push(payload.clone());
            if payload["nonce"] == "n-1" {
                (axum::http::StatusCode::OK, [("dpop-nonce", "n-1")], "ok")
            } else {
                (axum::http::StatusCode::UNAUTHORIZED, [("dpop-nonce", "n-1")], "use_dpop_nonce")
            }
        }
    });
    let app = app.layer(axum::middleware::map_response(|mut response: axum::response::Response| async move {
        if response.status() == axum::http::StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("DPoP error=\"use_dpop_nonce\", algs=\"ES256\""),
            );
        }
        response
    }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Decodes a JWT's payload without verifying.
pub fn jwt_payload(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).and_then(gatehouse_proto::b64::decode).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

pub fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The `csrf` and `request` hidden inputs of the token service's login form.
pub fn form_fields(html: &str) -> (String, String) {
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {html}")) + marker.len();
        let end = html[start..].find('"').unwrap() + start;
        html[start..end].replace("&#x2B;", "+").replace("&#x3D;", "=").replace("&amp;", "&")
    };
    (field("csrf"), field("request"))
}

pub struct Reply {
    pub url: url::Url,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }
}

/// A cookie jar per host:port that, like browsers on localhost, sends `Secure` cookies over plain http.
pub struct Browser {
    http: reqwest::Client,
    jar: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    last_authorize: Mutex<Option<String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            jar: Mutex::new(BTreeMap::new()),
            last_authorize: Mutex::new(None),
        }
    }

    fn authority(url: &url::Url) -> String {
        format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
    }

    fn cookie_header(&self, url: &url::Url) -> Option<String> {
        let jar = self.jar.lock().unwrap();
        let mut cookies = jar.get("*").cloned().unwrap_or_default();
        cookies.extend(jar.get(&Self::authority(url)).cloned().unwrap_or_default());
        if cookies.is_empty() {
            return None;
        }
        Some(cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: url::Url) -> Reply {
        let request = match self.cookie_header(&url) {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Reply { url, status, headers, body }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let parsed = url::Url::parse(url).unwrap();
        let mut request = self.http.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request, parsed).await
    }

    pub async fn post_form(&self, url: &str, body: &str) -> Reply {
        let parsed = url::Url::parse(url).unwrap();
        let request =
            self.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body.to_owned());
        self.send(request, parsed).await
    }

    /// Stores the cookies a response set (Max-Age=0 deletes).
    pub fn absorb(&mut self, reply: &Reply) {
        if let Some(location) = reply.header("location")
            && location.contains("/authorize?")
        {
            *self.last_authorize.lock().unwrap() = Some(location.to_owned());
        }
        let mut jar = self.jar.lock().unwrap();
        let site = jar.entry(Self::authority(&reply.url)).or_default();
        for set in reply.set_cookies() {
            let pair = set.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else { continue };
            if set.contains("Max-Age=0") {
                site.remove(name.trim());
            } else {
                site.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// The value of a gateway cookie (any site).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().values().find_map(|site| site.get(name).cloned())
    }

    pub fn cookie_names(&self) -> Vec<String> {
        self.jar.lock().unwrap().values().flat_map(|site| site.keys().cloned()).collect()
    }

    /// Sets a cookie for every site (tests forging cookies).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        let mut jar = self.jar.lock().unwrap();
        jar.entry("*".into()).or_default().insert(name.to_owned(), value.to_owned());
    }

    /// The `state` of the last authorization request the gateway started (needs `use_par = false`).
    pub async fn last_tx_state(&self, _h: &Harness) -> String {
        let location = self.last_authorize.lock().unwrap().clone().expect("a login was started");
        let url = url::Url::parse(&location).unwrap();
        url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).expect("state in the URL (no PAR)")
    }
}
