//! Shared harness for the token service's component tests: the real router over an in-memory SQLite store,
//! reached over a real loopback socket (`socket.rs`: one HTTP/1.1 exchange per request, parsed by hyper as a
//! network peer's would be), a manual clock, and a cookie-aware login helper.

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use gatehouse_idp::clock::ManualClock;
use gatehouse_idp::settings::{SeedClient, SeedPassword, SeedUser, Settings};
use gatehouse_idp::store::ClientRecord;
use gatehouse_idp::{Idp, Store, admin};
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::pkce::{CodeChallenge, CodeVerifier};
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use gatehouse_proto::{JwkSet, Secret};

pub mod socket;

pub const ISSUER: &str = "https://id.test";
pub const CALLBACK: &str = "https://app.test/bff/callback";
/// c1's registered `post_logout_redirect_uri` and `backchannel_logout_uri`.
pub const C1_POST_LOGOUT: &str = "https://app.test/signed-out";
pub const C1_BACKCHANNEL_LOGOUT: &str = "https://app.test/bff/backchannel-logout";
pub const C1_SECRET: &str = "c1-secret-0123456789abcdefghijklmnopqrstuvwxyz";
pub const C2_SECRET: &str = "c2-secret-0123456789abcdefghijklmnopqrstuvwxyz";
pub const M2M_SECRET: &str = "m2m-secret-0123456789abcdefghijklmnopqrstuvwxyz";
pub const ALICE_PASSWORD: &str = "alice-password";
pub const START: i64 = 1_900_000_000;

pub struct Harness {
    pub idp: Idp,
    pub router: Router,
    pub clock: Arc<ManualClock>,
    pub store: Store,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn location(&self) -> url::Url {
        url::Url::parse(self.headers[header::LOCATION].to_str().unwrap()).unwrap()
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.location().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// Asserts an RFC 6749 JSON error with no-store and returns the error code.
    pub fn oauth_error(&self) -> String {
        assert_eq!(
            self.headers.get(header::CACHE_CONTROL).map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{}",
            self.text()
        );
        let body = self.json();
        let description = body["error_description"].as_str().unwrap_or("");
        assert!(description.chars().all(|c| matches!(c as u32, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)));
        body["error"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn client(id: &str, method: ClientAuthMethod, grants: &[GrantType], scopes: &[&str]) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        name: Some(format!("{id} app")),
        auth_method: method,
        secret_sha256: None,
        jwks: None,
        redirect_uris: if grants.contains(&GrantType::AuthorizationCode) { vec![CALLBACK.into()] } else { vec![] },
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

impl Harness {
    pub async fn new() -> Self {
        Self::with(|_| {}, None).await
    }

    /// A harness with adjusted settings and optionally the JWKS of a `private_key_jwt` client `pkjwt`.
    pub async fn with(adjust: impl FnOnce(&mut Settings), pkjwt_keys: Option<JwkSet>) -> Self {
        let mut settings = Settings::for_tests(ISSUER);
        adjust(&mut settings);
        let store = Store::open("sqlite::memory:").await.expect("store");
        let code_grants = [GrantType::AuthorizationCode, GrantType::RefreshToken];
        let user_scopes = ["openid", "profile", "email", "offline_access", "api"];
        let mut clients = vec![
            SeedClient {
                record: ClientRecord {
                    post_logout_redirect_uris: vec![C1_POST_LOGOUT.into()],
                    backchannel_logout_uri: Some(C1_BACKCHANNEL_LOGOUT.into()),
                    ..client("c1", ClientAuthMethod::ClientSecretBasic, &code_grants, &user_scopes)
                },
                secret: Some(Secret::new(C1_SECRET)),
            },
            SeedClient {
                record: client("c2", ClientAuthMethod::ClientSecretPost, &code_grants, &user_scopes),
                secret: Some(Secret::new(C2_SECRET)),
            },
            SeedClient { record: client("pub", ClientAuthMethod::None, &code_grants, &user_scopes), secret: None },
            SeedClient {
                record: client("m2m", ClientAuthMethod::ClientSecretBasic, &[GrantType::ClientCredentials], &["api"]),
                secret: Some(Secret::new(M2M_SECRET)),
            },
        ];
        if let Some(keys) = pkjwt_keys {
            let mut record =
                client("pkjwt", ClientAuthMethod::PrivateKeyJwt, &[GrantType::ClientCredentials], &["api"]);
            record.jwks = Some(keys);
            clients.push(SeedClient { record, secret: None });
        }
        let users = vec![SeedUser {
            username: "alice".into(),
            password: SeedPassword::Plain(Secret::new(ALICE_PASSWORD)),
            claims: StandardClaims {
                name: Some("Alice Liddell".into()),
                email: Some("alice@example.com".into()),
                email_verified: Some(true),
                ..Default::default()
            },
        }];
        admin::seed(&store, &users, &clients, START).await.expect("seed");
        let clock = Arc::new(ManualClock::new(START));
        let idp = Idp::start_with_clock(settings, store.clone(), clock.clone()).await.expect("start");
        let router = idp.router();
        Self { idp, router, clock, store }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let (parts, body) = socket::exchange(self.router.clone(), request).await.into_parts();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&self, uri: &str, cookie: Option<&str>) -> Reply {
        let mut request = Request::get(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    pub async fn post_form(&self, uri: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let body = serde_urlencoded::to_string(form).unwrap();
        let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// `POST /token` with client_secret_basic.
    pub async fn token_basic(&self, client_id: &str, secret: &str, form: &[(&str, &str)]) -> Reply {
        let basic =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}")));
        self.post_form("/token", form, &[("authorization", &basic)]).await
    }

    /// Starts an authorization as `client_id` and logs alice in through the form. Returns the redirect reply
    /// (303 to the callback with a code) and the session cookie header value to reuse.
    pub async fn login(&self, client_id: &str, query: &str, verifier: &CodeVerifier) -> (Reply, String) {
        let uri = authorize_uri(client_id, query, verifier);
        let page = self.get(&uri, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let (csrf, request) = form_fields(&page.text());
        let csrf_cookie = cookie_pair(&page.headers, "gh-csrf");
        let reply = self
            .post_form(
                "/login",
                &[("username", "alice"), ("password", ALICE_PASSWORD), ("csrf", &csrf), ("request", &request)],
                &[("cookie", &csrf_cookie)],
            )
            .await;
        let session = cookie_pair(&reply.headers, "gh-session");
        (reply, session)
    }

    /// Logs in and exchanges the code at the token endpoint as c1. Returns the token response.
    pub async fn tokens(&self, scope: &str) -> serde_json::Value {
        let verifier = verifier();
        let (reply, _) = self.login("c1", &format!("scope={}&nonce=n-1&state=s-1", enc(scope)), &verifier).await;
        let code = reply.param("code").expect("code");
        let reply = self
            .token_basic(
                "c1",
                C1_SECRET,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", verifier.expose()),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()
    }

    pub async fn userinfo(&self, access_token: &str) -> Reply {
        self.send(
            Request::get("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {access_token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
}

pub fn verifier() -> CodeVerifier {
    let bytes: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(rand_byte()));
    CodeVerifier::from_random(&bytes)
}

fn rand_byte() -> u8 {
    use std::sync::atomic::{AtomicU8, Ordering};
    static N: AtomicU8 = AtomicU8::new(1);
    N.fetch_add(7, Ordering::Relaxed)
}

pub fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub fn authorize_uri(client_id: &str, query: &str, verifier: &CodeVerifier) -> String {
    let challenge = CodeChallenge::s256(verifier);
    let query = if query.contains("scope=") { query.to_owned() } else { format!("scope=openid&{query}") };
    format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&{query}",
        enc(CALLBACK),
        challenge.as_str()
    )
}

/// The `csrf` and `request` hidden inputs of the login form.
pub fn form_fields(html: &str) -> (String, String) {
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {html}")) + marker.len();
        let end = html[start..].find('"').unwrap() + start;
        html[start..end].to_owned()
    };
    (field("csrf"), field("request"))
}

/// `name=value` of a Set-Cookie whose name ends with `suffix` (works with and without `__Host-`).
pub fn cookie_pair(headers: &HeaderMap, suffix: &str) -> String {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.split('=').next().is_some_and(|name| name.ends_with(suffix)))
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Decodes a JWT's header and payload without verifying.
pub fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut parts = token.split('.');
    let decode = |p: Option<&str>| {
        let bytes = gatehouse_proto::b64::decode(p.unwrap()).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    (decode(parts.next()), decode(parts.next()))
}
