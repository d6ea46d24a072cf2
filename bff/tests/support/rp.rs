//! A scriptable, misbehaving OpenID Provider for the gateway's relying-party tests (catalogue §B,
//! `tests/catalogue_rp.rs`; the "mock OP" of §0.2-6), and a gateway pointed at it.
//!
//! The mock OP serves discovery, a JWK Set, `/authorize` (which answers at once with a redirect to the
//! callback: no login page), `/token` (authorization code and refresh), `/revoke` and `/end_session`, and
//! records every call. What it answers is a `Plan` the test changes between logins: the issuer it claims, the
//! `iss`/`state` of the authorization response, the token response's shape, and how each ID token is signed
//! and what its header and claims say. Keys are real (RS256 and ES256 signing keys of the token service's key
//! module), so every signature is genuine unless the plan says otherwise.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_bff::settings::{
    BffSettings, CookieKey, CookieSettings, Frontend, OidcSettings, RouteSettings, SameSite, SessionMode,
    SessionSettings, SessionStoreSettings, TokenRequirement,
};
use gatehouse_bff::{Gateway, RunningGateway};
use gatehouse_idp::keys::{KeySet, SigningKey};
use gatehouse_idp::settings::MasterKey;
use gatehouse_idp::store::KeyState;
use gatehouse_proto::vocab::SigningAlg;
use gatehouse_proto::{Jwk, Secret, b64};
use serde_json::{Value, json};

use crate::ports::free_port;
use crate::support::{Browser, CLIENT_SECRET, Reply, SESSION_COOKIE, rand_key};

/// The user the mock OP logs in.
pub const SUB: &str = "alice-sub";
/// The IdP session id of that login (`sid`).
pub const SID: &str = "op-sid-1";
pub const CLIENT_ID: &str = "bff";
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Edits a token's JOSE header and claims before it is signed.
pub type Edit = Arc<dyn Fn(&mut Value, &mut Value) + Send + Sync>;

/// Which key signs a token (with that key's algorithm), or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignWith {
    /// The published RS256 key.
    Rs256,
    /// The published ES256 key.
    Es256,
    /// The published RS256 key used with PS256 (an algorithm the gateway was not configured for).
    Ps256,
    /// An RS256 key that is not in the JWK Set.
    Foreign,
    /// A new RS256 key, published only once the plan's JWK Set includes it (key rotation).
    Rotated,
    /// `alg: none`, no signature.
    Unsigned,
    /// The RS256 key, then one bit of the signature flipped.
    Tampered,
}

#[derive(Clone)]
pub struct TokenPlan {
    pub sign: SignWith,
    pub edit: Edit,
}

impl Default for TokenPlan {
    fn default() -> Self {
        Self { sign: SignWith::Rs256, edit: Arc::new(|_, _| {}) }
    }
}

impl TokenPlan {
    pub fn edit(edit: impl Fn(&mut Value, &mut Value) + Send + Sync + 'static) -> Self {
        Self { edit: Arc::new(edit), ..Self::default() }
    }

    pub fn signed(sign: SignWith) -> Self {
        Self { sign, ..Self::default() }
    }
}

/// The authorization response's `iss` parameter (RFC 9207).
#[derive(Clone, Debug)]
pub enum IssParam {
    Correct,
    Missing,
    Value(String),
}

/// What the JWK Set publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// The RS256 and the ES256 key.
    Both,
    /// The RS256 key only, and without its `kid` (a single-key JWK Set).
    OnlyRs256,
    /// RS256, ES256 and the rotated key.
    WithRotated,
}

/// How the mock OP behaves; changed by tests between logins.
#[derive(Clone)]
pub struct Plan {
    /// The `issuer` the discovery document names (default: the real one).
    pub discovery_issuer: Option<String>,
    pub iss_parameter_supported: bool,
    pub authorization_iss: IssParam,
    /// Replaces the `state` of the authorization response (`Some("")`: leaves it out).
    pub authorization_state: Option<String>,
    pub token_type: String,
    pub expires_in: Option<i64>,
    /// The ID token of the code exchange.
    pub login: TokenPlan,
    /// The ID token of refresh responses (none when `None`).
    pub refresh: Option<TokenPlan>,
    pub published: Published,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            discovery_issuer: None,
            iss_parameter_supported: true,
            authorization_iss: IssParam::Correct,
            authorization_state: None,
            token_type: "DPoP".into(),
            expires_in: Some(300),
            login: TokenPlan::default(),
            refresh: Some(TokenPlan::default()),
            published: Published::Both,
        }
    }
}

struct Keys {
    rs256: Arc<SigningKey>,
    rs256_jwk: Jwk,
    es256: Arc<SigningKey>,
    es256_jwk: Jwk,
    foreign: Arc<SigningKey>,
    rotated: Arc<SigningKey>,
    rotated_jwk: Jwk,
}

fn new_key(alg: SigningAlg) -> (Arc<SigningKey>, Jwk) {
    let master = MasterKey([9; 32]);
    let record = gatehouse_idp::keys::generate(&master, alg, KeyState::Active, 0).unwrap();
    let set = KeySet::from_records(std::slice::from_ref(&record), &master).unwrap();
    (set.signer(alg).unwrap().clone(), record.public_jwk)
}

struct OpState {
    issuer: String,
    plan: Mutex<Plan>,
    calls: Mutex<Vec<String>>,
    /// The `nonce` of each authorization request, by the code issued for it.
    nonces: Mutex<HashMap<String, Option<String>>>,
    keys: Keys,
}

/// The running mock OP.
#[derive(Clone)]
pub struct MockOp {
    pub issuer: String,
    state: Arc<OpState>,
}

impl MockOp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (rs256, rs256_jwk) = new_key(SigningAlg::RS256);
        let (es256, es256_jwk) = new_key(SigningAlg::ES256);
        let (foreign, _) = new_key(SigningAlg::RS256);
        let (rotated, rotated_jwk) = new_key(SigningAlg::RS256);
        let state = Arc::new(OpState {
            issuer: issuer.clone(),
            plan: Mutex::new(Plan::default()),
            calls: Mutex::new(Vec::new()),
            nonces: Mutex::new(HashMap::new()),
            keys: Keys { rs256, rs256_jwk, es256, es256_jwk, foreign, rotated, rotated_jwk },
        });
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", axum::routing::get(discovery))
            .route("/jwks", axum::routing::get(jwks))
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .route("/revoke", axum::routing::post(revoke))
            .route("/end_session", axum::routing::get(end_session))
            .fallback(other)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { issuer, state }
    }

    /// Changes the plan.
    pub fn plan(&self, change: impl FnOnce(&mut Plan)) {
        change(&mut self.state.plan.lock().unwrap());
    }

    /// Every call so far, as `METHOD /path[ grant_type]`.
    pub fn calls(&self) -> Vec<String> {
        self.state.calls.lock().unwrap().clone()
    }

    /// How many calls so far start with `prefix` (e.g. `POST /token`).
    pub fn count(&self, prefix: &str) -> usize {
        self.calls().iter().filter(|c| c.starts_with(prefix)).count()
    }

    /// A logout token for `sub`/`sid`, signed per `plan` like an ID token (claims editable).
    pub fn logout_token(&self, plan: &TokenPlan) -> String {
        let now = gatehouse_bff::now();
        let claims = json!({
            "iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 120, "jti": random_id(),
            "sub": SUB, "sid": SID, "events": {LOGOUT_EVENT: {}},
        });
        self.state.sign(plan, "logout+jwt", claims)
    }
}

impl OpState {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn plan(&self) -> Plan {
        self.plan.lock().unwrap().clone()
    }

    /// Signs `claims` with the plan's key after its edits (the header may then lie about the key or alg).
    fn sign(&self, plan: &TokenPlan, typ: &str, mut claims: Value) -> String {
        let keys = &self.keys;
        let (key, alg) = match plan.sign {
            SignWith::Rs256 => (Some(&keys.rs256), "RS256"),
            SignWith::Es256 => (Some(&keys.es256), "ES256"),
            SignWith::Ps256 => (Some(&keys.rs256), "PS256"),
            SignWith::Foreign => (Some(&keys.foreign), "RS256"),
            SignWith::Rotated => (Some(&keys.rotated), "RS256"),
            SignWith::Unsigned => (None, "none"),
            SignWith::Tampered => (Some(&keys.rs256), "RS256"),
        };
        let mut header = json!({"alg": alg, "typ": typ});
        if let Some(key) = key {
            header["kid"] = key.kid.clone().into();
        }
        (plan.edit)(&mut header, &mut claims);
        let input = format!("{}.{}", b64::encode(header.to_string()), b64::encode(claims.to_string()));
        match key {
            None => format!("{input}."),
            Some(key) => {
                let alg: jsonwebtoken::Algorithm = alg.parse().unwrap();
                let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding, alg).unwrap();
                if plan.sign == SignWith::Tampered {
                    let mut bytes = b64::decode(&signature).unwrap();
                    bytes[10] ^= 1;
                    return format!("{input}.{}", b64::encode(bytes));
                }
                format!("{input}.{signature}")
            }
        }
    }

    fn id_token(&self, plan: &TokenPlan, nonce: Option<String>) -> String {
        let now = gatehouse_bff::now();
        let mut claims = json!({
            "iss": self.issuer, "sub": SUB, "aud": CLIENT_ID, "exp": now + 300, "iat": now, "auth_time": now,
            "sid": SID, "name": "Alice Liddell",
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        self.sign(plan, "JWT", claims)
    }
}

fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    b64::encode(bytes)
}

async fn discovery(State(op): State<Arc<OpState>>) -> Response {
    op.record("GET /.well-known/openid-configuration".into());
    let plan = op.plan();
    let issuer = &op.issuer;
    axum::Json(json!({
        "issuer": plan.discovery_issuer.clone().unwrap_or_else(|| issuer.clone()),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "end_session_endpoint": format!("{issuer}/end_session"),
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": plan.iss_parameter_supported,
    }))
    .into_response()
}

async fn jwks(State(op): State<Arc<OpState>>) -> Response {
    op.record("GET /jwks".into());
    let keys = &op.keys;
    let published = match op.plan().published {
        Published::Both => vec![keys.rs256_jwk.clone(), keys.es256_jwk.clone()],
        Published::OnlyRs256 => vec![Jwk { kid: None, ..keys.rs256_jwk.clone() }],
        Published::WithRotated => vec![keys.rs256_jwk.clone(), keys.es256_jwk.clone(), keys.rotated_jwk.clone()],
    };
    axum::Json(json!({"keys": published})).into_response()
}

/// Answers at once (as if alice were signed in) with a redirect to the client's `redirect_uri`.
async fn authorize(State(op): State<Arc<OpState>>, RawQuery(query): RawQuery) -> Response {
    op.record("GET /authorize".into());
    let query = query.unwrap_or_default();
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let plan = op.plan();
    let code = random_id();
    op.nonces.lock().unwrap().insert(code.clone(), params.get("nonce").cloned());
    let Some(mut location) = params.get("redirect_uri").and_then(|u| url::Url::parse(u).ok()) else {
        return (StatusCode::BAD_REQUEST, "no redirect_uri").into_response();
    };
    {
        let mut pairs = location.query_pairs_mut();
        pairs.append_pair("code", &code);
        match (&plan.authorization_state, params.get("state")) {
            (Some(state), _) if state.is_empty() => {}
            (Some(state), _) => {
                pairs.append_pair("state", state);
            }
            (None, Some(state)) => {
                pairs.append_pair("state", state);
            }
            (None, None) => {}
        }
        match &plan.authorization_iss {
            IssParam::Correct => {
                pairs.append_pair("iss", &op.issuer);
            }
            IssParam::Value(iss) => {
                pairs.append_pair("iss", iss);
            }
            IssParam::Missing => {}
        }
    }
    (StatusCode::FOUND, [("location", location.to_string())]).into_response()
}

async fn token(
    State(op): State<Arc<OpState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    op.record(format!("POST /token {grant}"));
    let authenticated =
        headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Basic "));
    if !authenticated || !headers.contains_key("dpop") {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_request"}))).into_response();
    }
    let plan = op.plan();
    let id_token = match grant.as_str() {
        "authorization_code" => {
            let nonce = form.get("code").and_then(|code| op.nonces.lock().unwrap().remove(code)).flatten();
            Some(op.id_token(&plan.login, nonce))
        }
        "refresh_token" => plan.refresh.as_ref().map(|refresh| op.id_token(refresh, None)),
        _ => return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"}))).into_response(),
    };
    let mut body = json!({
        "access_token": format!("at-{}", random_id()),
        "token_type": plan.token_type,
        "refresh_token": format!("rt-{}", random_id()),
        "scope": "openid profile offline_access api",
    });
    if let Some(expires_in) = plan.expires_in {
        body["expires_in"] = expires_in.into();
    }
    if let Some(id_token) = id_token {
        body["id_token"] = id_token.into();
    }
    ([("cache-control", "no-store")], axum::Json(body)).into_response()
}

async fn revoke(State(op): State<Arc<OpState>>) -> Response {
    op.record("POST /revoke".into());
    StatusCode::OK.into_response()
}

async fn end_session(State(op): State<Arc<OpState>>) -> Response {
    op.record("GET /end_session".into());
    (StatusCode::OK, "signed out").into_response()
}

async fn other(State(op): State<Arc<OpState>>, request: axum::extract::Request) -> Response {
    op.record(format!("{} {}", request.method(), request.uri().path()));
    StatusCode::NOT_FOUND.into_response()
}

// ---------------------------------------------------------------------------------------------------------
// Upstreams

/// An API that records each request (path, `authorization`, the DPoP proof's payload) and answers 200 JSON.
async fn start_echo(log: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        async move {
            let seen = json!({
                "path": request.uri().path(),
                "authorization": request.headers().get("authorization").and_then(|v| v.to_str().ok()),
                "dpop": proof_payload(request.headers()),
            });
            log.lock().unwrap().push(seen.clone());
            axum::Json(seen)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// An API that asks for a DPoP nonce with a lower-case scheme, `WWW-Authenticate: dpop error="use_dpop_nonce"`
/// (RFC 9110 §11.1: schemes are case-insensitive), until a proof carries `n-rp`.
async fn start_lowercase_nonce_api(log: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let log = log.clone();
        async move {
            let payload = proof_payload(&headers);
            log.lock().unwrap().push(payload.clone());
            if payload["nonce"] == "n-rp" {
                (StatusCode::OK, [("dpop-nonce", "n-rp")], "ok").into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [("dpop-nonce", "n-rp"), ("www-authenticate", "dpop error=\"use_dpop_nonce\", algs=\"ES256\"")],
                    "use_dpop_nonce",
                )
                    .into_response()
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn proof_payload(headers: &HeaderMap) -> Value {
    headers
        .get("dpop")
        .and_then(|v| v.to_str().ok())
        .and_then(|proof| proof.split('.').nth(1))
        .and_then(b64::decode)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------------------
// The gateway in front

/// The gateway configured as a client of the mock OP (front-channel authorization request: the mock OP
/// offers no PAR), with an echo API at `/echo/` and a nonce-demanding API at `/nonce/`.
pub struct RpGateway {
    pub op: MockOp,
    pub origin: String,
    pub gateway: Arc<Gateway>,
    running: Option<RunningGateway>,
    pub echoes: Arc<Mutex<Vec<Value>>>,
    pub nonce_proofs: Arc<Mutex<Vec<Value>>>,
}

impl RpGateway {
    pub async fn start(op: MockOp) -> Self {
        Self::start_with(op, vec!["RS256".into(), "ES256".into()]).await
    }

    /// `id_token_algs`: the algorithms the gateway accepts for ID and logout tokens.
    pub async fn start_with(op: MockOp, id_token_algs: Vec<String>) -> Self {
        let port = free_port();
        let origin = format!("http://127.0.0.1:{port}");
        let echoes = Arc::new(Mutex::new(Vec::new()));
        let echo = start_echo(echoes.clone()).await;
        let nonce_proofs = Arc::new(Mutex::new(Vec::new()));
        let nonce = start_lowercase_nonce_api(nonce_proofs.clone()).await;
        let route = |path: &str, upstream: &str| RouteSettings {
            path: path.into(),
            upstreams: vec![url::Url::parse(upstream).unwrap()],
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
        };
        let settings = BffSettings {
            listen: Some(format!("127.0.0.1:{port}").parse::<SocketAddr>().unwrap()),
            tls: None,
            threads: 1,
            grace_period: Duration::ZERO,
            graceful_shutdown_timeout: Duration::ZERO,
            public_origin: url::Url::parse(&origin).unwrap(),
            oidc: OidcSettings {
                issuer: url::Url::parse(&op.issuer).unwrap(),
                client_id: CLIENT_ID.into(),
                client_secret: Secret::new(CLIENT_SECRET),
                scopes: ["openid", "profile", "offline_access", "api"].map(String::from).to_vec(),
                use_par: true,
                id_token_algs,
                timeout: Duration::from_secs(5),
                metadata_ttl: Duration::from_secs(300),
                jwks_min_refresh: Duration::from_secs(1),
                leeway_seconds: 30,
            },
            cookie: CookieSettings {
                name: SESSION_COOKIE.into(),
                same_site: SameSite::Strict,
                keys: vec![CookieKey { id: "k1".into(), key: rand_key() }],
            },
            session: SessionSettings {
                idle_timeout: Duration::from_secs(3600),
                absolute_lifetime: Duration::from_secs(86400),
                refresh_skew: Duration::from_secs(30),
                cache_capacity: 1000,
                store: SessionStoreSettings::Memory,
                mode: SessionMode::Server,
            },
            routes: vec![route("/echo/", &echo), route("/nonce/", &nonce)],
            frontend: Frontend::Static {
                root: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/spa"),
            },
        };
        let gateway = Arc::new(Gateway::new(settings).await.unwrap());
        let running = gatehouse_bff::start(gateway.clone()).unwrap();
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{origin}/bff/user")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { op, origin, gateway, running: Some(running), echoes, nonce_proofs }
    }

    pub fn gw(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop_async().await;
        }
    }

    pub fn echo_count(&self) -> usize {
        self.echoes.lock().unwrap().len()
    }

    /// `/bff/login` → the mock OP's `/authorize` → the callback; returns the callback's answer.
    pub async fn login(&self, b: &mut Browser) -> Reply {
        let start = b.get(&self.gw("/bff/login?returnUrl=%2F"), &[]).await;
        assert_eq!(start.status, 302, "{}", start.body);
        b.absorb(&start);
        let authorize = start.header("location").unwrap().to_owned();
        assert!(authorize.starts_with(&format!("{}/authorize?", self.op.issuer)), "{authorize}");
        let answer = b.get(&authorize, &[]).await;
        assert_eq!(answer.status, 302, "{}", answer.body);
        let callback = answer.header("location").unwrap().to_owned();
        assert!(callback.starts_with(&self.gw("/bff/callback?")), "{callback}");
        let reply = b.get(&callback, &[]).await;
        b.absorb(&reply);
        reply
    }

    /// `/bff/user` with the anti-forgery header: its status.
    pub async fn user_status(&self, b: &Browser) -> u16 {
        b.get(&self.gw("/bff/user"), &[("x-csrf", "1")]).await.status
    }

    /// An API call through the gateway.
    pub async fn api(&self, b: &Browser, path: &str) -> Reply {
        b.get(&self.gw(path), &[("x-csrf", "1")]).await
    }

    /// Catalogue §B "Reject": an error page, no session cookie set, `/bff/user` anonymous.
    pub async fn assert_rejected(&self, b: &Browser, reply: &Reply, what: &str) {
        assert_eq!(reply.status, 400, "{what}: {} {}", reply.status, reply.body);
        assert!(reply.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{what}: an error page");
        assert!(reply.header("location").is_none(), "{what}: no redirect");
        let session_set = reply
            .set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{SESSION_COOKIE}=")) && !c.starts_with(&format!("{SESSION_COOKIE}=;")));
        assert!(!session_set, "{what}: a session cookie was set");
        assert_eq!(self.user_status(b).await, 401, "{what}: /bff/user must be anonymous");
    }

    /// A login that worked: back to the return URL with a session cookie, `/bff/user` signed in.
    pub async fn assert_accepted(&self, b: &Browser, reply: &Reply, what: &str) {
        assert_eq!(reply.status, 302, "{what}: {}", reply.body);
        assert_eq!(reply.header("location"), Some("/"), "{what}");
        assert!(reply.set_cookies().iter().any(|c| c.starts_with(&format!("{SESSION_COOKIE}="))), "{what}");
        assert_eq!(self.user_status(b).await, 200, "{what}");
    }
}
