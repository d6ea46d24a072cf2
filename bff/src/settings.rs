//! What the gateway runs with: plain values, already validated by the binary's configuration loader
//! (`src/config`), so nothing here parses TOML or reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_proto::Secret;
use url::Url;

#[derive(Clone, Debug)]
pub struct BffSettings {
    /// Plain HTTP listener, if any.
    pub listen: Option<SocketAddr>,
    /// HTTPS listener (rustls, HTTP/2 and HTTP/1.1), if any.
    pub tls: Option<TlsListener>,
    /// pingora worker threads (at least 1; 2+ on a multi-core machine).
    pub threads: usize,
    /// Graceful shutdown: how long to keep serving after the signal, then how long in-flight requests get.
    pub grace_period: Duration,
    pub graceful_shutdown_timeout: Duration,
    /// The origin browsers use to reach the gateway, e.g. `http://localhost:8080`. The OIDC `redirect_uri` is
    /// `<public_origin>/bff/callback`; post-logout redirects go to `<public_origin>/`.
    pub public_origin: Url,
    pub oidc: OidcSettings,
    pub cookie: CookieSettings,
    pub session: SessionSettings,
    pub routes: Vec<RouteSettings>,
    pub frontend: Frontend,
}

#[derive(Clone, Debug)]
pub struct TlsListener {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The token service the gateway is a confidential client of.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The token service's issuer identifier; metadata from `<issuer>/.well-known/openid-configuration`.
    pub issuer: Url,
    pub client_id: String,
    /// `client_secret_basic` secret.
    pub client_secret: Secret,
    /// Scopes asked for at login, e.g. `openid profile email offline_access api`.
    pub scopes: Vec<String>,
    /// Push authorization requests (RFC 9126) when the token service advertises a PAR endpoint. Default true.
    pub use_par: bool,
    /// ID token algorithms accepted (allow-list). Default `["RS256", "ES256"]`.
    pub id_token_algs: Vec<String>,
    /// Timeout of one call to the token service.
    pub timeout: Duration,
    /// How long fetched metadata and JWKS are used before they are fetched again (an unknown `kid` refetches the
    /// JWKS at once: a key rotation).
    pub metadata_ttl: Duration,
    /// After a JWKS fetch that did not find the `kid` it was made for, no fetch for another unknown `kid` for this
    /// long (bounds what made-up `kid`s cost).
    pub jwks_min_refresh: Duration,
    /// Clock skew tolerated on `exp`/`iat`/`nbf` of ID and logout tokens, seconds.
    pub leeway_seconds: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
}

#[derive(Clone, Debug)]
pub struct CookieSettings {
    /// Session cookie name. Default `__Host-gatehouse`.
    pub name: String,
    /// `SameSite` of the session cookie. Default `Strict`. (The login transaction cookie is always `Lax`: it
    /// must come back on the token service's top-level redirect to `/bff/callback`.)
    pub same_site: SameSite,
    /// Cookie sealing keys, newest first: the first seals, all open. Each has an id (carried in the sealed
    /// value) and 32 bytes.
    pub keys: Vec<CookieKey>,
}

#[derive(Clone)]
pub struct CookieKey {
    pub id: String,
    pub key: [u8; 32],
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieKey({}, [redacted])", self.id)
    }
}

#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// A session unused this long ends. Default 8 h.
    pub idle_timeout: Duration,
    /// A session ends this long after login whatever its use. Default 7 days.
    pub absolute_lifetime: Duration,
    /// An access token expiring within this is refreshed before forwarding. Default 30 s.
    pub refresh_skew: Duration,
    /// How many sessions the in-memory cache keeps. Default 100 000.
    pub cache_capacity: u64,
    /// Where sessions are kept. Default: the embedded SQLite store.
    pub store: SessionStoreSettings,
    /// Where sessions live: server-side (the cookie holds a sealed id) or in sealed cookie chunks. Default server.
    pub mode: SessionMode,
}

/// Where the gateway keeps its server-side sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionStoreSettings {
    /// Process memory only: a restart ends every session.
    Memory,
    /// An SQLite database file (created when missing), with the in-memory cache in front: sessions survive a
    /// restart as long as the cookie keys do. The session bodies are sealed with the cookie keys.
    Sqlite { path: PathBuf },
}

/// Where a session's state lives (see `carrier`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionMode {
    /// In the session store; the cookie carries only the sealed session id.
    #[default]
    Server,
    /// The whole session sealed into the browser's cookie chunks; the gateway keeps only a list of ended
    /// sessions (and, briefly, the latest refreshed tokens per session).
    Cookie,
}

/// What token a route forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRequirement {
    /// The session user's token; 401 without a session.
    User,
    /// A client_credentials token of the gateway itself (cached until near expiry).
    Client,
    /// The user's token when there is a session, else the client's.
    UserOrClient,
    /// The user's token when there is a session, else nothing.
    UserOrNone,
    /// Never a token (a public upstream).
    None,
}

#[derive(Clone, Debug)]
pub struct RouteSettings {
    /// Path prefix, e.g. `/api/` (matched on segment boundaries; the longest prefix wins).
    pub path: String,
    /// Upstream base URLs (`http://127.0.0.1:7001`), resolved at start; round robin across them.
    pub upstreams: Vec<Url>,
    /// Remove the prefix before forwarding (`/api/x` → `/x`).
    pub strip_prefix: bool,
    pub token: TokenRequirement,
    /// The `X-CSRF: 1` header is required (anti-forgery). Default true.
    pub require_csrf: bool,
    /// Scopes the token must carry (checked against the granted scope); empty: no requirement.
    pub required_scopes: Vec<String>,
    /// The API's resource indicator (RFC 8707), e.g. `https://orders.example`: the route forwards a token
    /// asked for with `resource=` (its `aud` is that API only), so a token for this upstream is useless at any
    /// other. None: the session's main access token (every API its scopes select).
    pub resource: Option<String>,
    /// The `htu` base: the URL the API sees itself at (its verifier compares `htu` with it). Default: the
    /// upstream URL of the request as forwarded.
    pub public_base: Option<Url>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Largest request body forwarded, bytes.
    pub max_body_bytes: usize,
    pub websockets: bool,
    /// The methods the route forwards (catalogue BFF-PX06: e.g. a read-only API takes only `GET`); others are
    /// 405 with `Allow`. Empty: every method (TRACE, TRACK and CONNECT are refused everywhere anyway).
    pub methods: Vec<http::Method>,
}

/// What the gateway serves for paths no route and no `/bff/*` endpoint claims.
#[derive(Clone, Debug)]
pub enum Frontend {
    /// Nothing: 404.
    None,
    /// Static files from a directory, `index.html` for unknown paths without an extension (client routing).
    Static { root: PathBuf },
    /// Proxy to a development server (e.g. Vite), websockets allowed.
    DevServer { upstream: Url },
}
