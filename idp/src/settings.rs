//! The token service's validated settings. The root binary builds them from the TOML file and environment
//! (`src/config.rs`); tests build them directly with `Settings::for_tests`. Nothing here reads files or env.

use std::net::SocketAddr;

use gatehouse_proto::Secret;
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::SigningAlg;
use url::Url;

use crate::store::ClientRecord;

/// Everything the token service needs to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The issuer identifier (`iss`): an `https` URL, or `http` on a loopback host for development.
    pub issuer: Url,
    /// Where the HTTP listener binds.
    pub listen: SocketAddr,
    /// `sqlite://PATH` (embedded default) — other back-ends follow.
    pub store_url: String,
    /// 32-byte key that seals signing keys at rest (AES-256-GCM).
    pub master_key: MasterKey,
    pub tokens: TokenSettings,
    pub login: LoginSettings,
    pub session: SessionSettings,
    pub signing: SigningSettings,
    pub dpop: DpopSettings,
    /// Protected APIs (resource servers): an access token's `aud` is the API whose scopes were requested.
    pub apis: Vec<ApiResource>,
    /// Upper bound on a request body, in bytes.
    pub max_body_bytes: usize,
    /// Every client must push its authorization requests (RFC 9126 §5).
    pub require_pushed_authorization_requests: bool,
}

/// Lifetimes, all in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSettings {
    pub access_token_ttl: i64,
    pub id_token_ttl: i64,
    /// Authorization code lifetime; at most 60 s.
    pub code_ttl: i64,
    /// A refresh token unused this long expires (each rotation starts a new idle period).
    pub refresh_token_idle_ttl: i64,
    /// No refresh after this long from the original login, however active (ASVS 10.4.8).
    pub refresh_token_absolute_ttl: i64,
    /// A confidential client may present a superseded refresh token again within this window (a retry after a
    /// lost response: catalogue DD1, FAPI 2.0 §5.3.2.1-10). Public clients get no window.
    pub refresh_reuse_grace: i64,
}

/// Brute-force throttling of the login form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSettings {
    /// Failed attempts for one username within `failure_window` before it is locked for the rest of the window.
    pub max_failures_per_username: u32,
    /// Failed attempts from one client IP within `failure_window` before it is locked.
    pub max_failures_per_ip: u32,
    pub failure_window: i64,
}

/// The IdP's single sign-on session (its own cookie, not the gateway's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session idle this long ends.
    pub idle_timeout: i64,
    /// A session ends this long after login, however active.
    pub absolute_lifetime: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningSettings {
    /// ID token algorithm for clients that register none (OIDC Core's default is RS256).
    pub id_token_alg: SigningAlg,
    /// Access token algorithm.
    pub access_token_alg: SigningAlg,
    /// How often a node runs key maintenance (`keys::maintain`) and re-reads signing keys from the store (picks
    /// up `gatehouse keys rotate` and steps taken by other nodes).
    pub key_reload_interval: i64,
    /// How long a key signs before its successor takes over, in seconds. Default 90 days.
    pub rotation_interval: i64,
    /// How long a new key is published (`Pending`, in the JWK Set) before it signs, in seconds, so verifiers
    /// that cache the JWK Set know it before the first token it signs arrives. Must exceed the JWK Set cache
    /// lifetime (60 s) plus `key_reload_interval`, and be shorter than `rotation_interval`. Default 14 days.
    pub propagation_time: i64,
    /// How long a retired key stays published after it stopped signing, in seconds, so the tokens it signed keep
    /// verifying. Must be at least the longest token lifetime (`access_token_ttl`, `id_token_ttl`): a shorter
    /// retention removes a key while tokens it signed are still unexpired. Default 14 days.
    pub retention_time: i64,
}

/// DPoP (RFC 9449) at the token, PAR and userinfo endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopSettings {
    /// Require a server nonce in every proof (RFC 9449 §8) for all clients.
    pub require_nonce: bool,
    /// Nonces rotate with this period; one stays valid for up to two periods.
    pub nonce_lifetime: i64,
    /// Accepted proof age and clock skew (catalogue DD5).
    pub window: gatehouse_proto::dpop::TimeWindow,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self { require_nonce: false, nonce_lifetime: 300, window: gatehouse_proto::dpop::TimeWindow::default() }
    }
}

/// A protected API. Its `audience` becomes the access token's `aud` when one of its `scopes` is granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResource {
    pub audience: String,
    pub scopes: Vec<String>,
}

/// The master key: 32 bytes, redacted in `Debug`.
#[derive(Clone)]
pub struct MasterKey(pub [u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A user declared in the configuration file, seeded into the store at start.
#[derive(Clone, Debug)]
pub struct SeedUser {
    pub username: String,
    pub password: SeedPassword,
    pub claims: StandardClaims,
}

#[derive(Clone, Debug)]
pub enum SeedPassword {
    /// A plain password (demo); hashed with argon2id before it is stored.
    Plain(Secret),
    /// An argon2id PHC string.
    Hash(String),
}

/// A client declared in the configuration file, seeded into the store at start.
#[derive(Clone, Debug)]
pub struct SeedClient {
    /// The record, with `secret_sha256` left `None`.
    pub record: ClientRecord,
    /// The client secret for `client_secret_*` methods; stored as its SHA-256 digest.
    pub secret: Option<Secret>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            access_token_ttl: 300,
            id_token_ttl: 300,
            code_ttl: 60,
            refresh_token_idle_ttl: 14 * 24 * 3600,
            refresh_token_absolute_ttl: 30 * 24 * 3600,
            refresh_reuse_grace: 60,
        }
    }
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self { max_failures_per_username: 5, max_failures_per_ip: 20, failure_window: 300 }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self { idle_timeout: 8 * 3600, absolute_lifetime: 7 * 24 * 3600 }
    }
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self {
            id_token_alg: SigningAlg::RS256,
            access_token_alg: SigningAlg::ES256,
            key_reload_interval: 10,
            rotation_interval: 90 * 24 * 3600,
            propagation_time: 14 * 24 * 3600,
            retention_time: 14 * 24 * 3600,
        }
    }
}

impl Settings {
    /// Whether cookies may omit `Secure`: only for an `http` issuer on a loopback host (development).
    pub fn insecure_loopback_http(&self) -> bool {
        self.issuer.scheme() == "http"
    }

    /// Settings for tests: the given issuer, an in-memory store, a fixed master key, default lifetimes.
    pub fn for_tests(issuer: &str) -> Self {
        Self {
            issuer: Url::parse(issuer).expect("test issuer"),
            listen: "127.0.0.1:0".parse().expect("addr"),
            store_url: "sqlite::memory:".into(),
            master_key: MasterKey([7; 32]),
            tokens: TokenSettings::default(),
            login: LoginSettings::default(),
            session: SessionSettings::default(),
            signing: SigningSettings::default(),
            dpop: DpopSettings::default(),
            apis: vec![ApiResource { audience: "https://api.test".into(), scopes: vec!["api".into()] }],
            max_body_bytes: 64 * 1024,
            require_pushed_authorization_requests: false,
        }
    }
}

/// Checks an issuer per OIDC Discovery §3 and RFC 9207: absolute `https` URL without query or fragment; `http`
/// only on a loopback host (`localhost`, 127.0.0.0/8, `[::1]`). Returns the reason when refused.
pub fn check_issuer(issuer: &Url) -> Result<(), String> {
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err("the issuer must not have a query or fragment".into());
    }
    if issuer.cannot_be_a_base() || issuer.host().is_none() {
        return Err("the issuer must be an absolute URL with a host".into());
    }
    match issuer.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(issuer) => Ok(()),
        "http" => Err(format!(
            "plain http is allowed only for a loopback issuer (localhost, 127.0.0.1, [::1]); use https for {issuer}"
        )),
        other => Err(format!("the issuer's scheme must be https, not {other}")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_rules() {
        let ok = |s: &str| check_issuer(&Url::parse(s).unwrap());
        assert!(ok("https://id.example.com").is_ok());
        assert!(ok("http://localhost:9000").is_ok());
        assert!(ok("http://127.0.0.1:9000").is_ok());
        assert!(ok("http://[::1]:9000").is_ok());
        assert!(ok("http://id.example.com").is_err());
        assert!(ok("http://10.0.0.1").is_err());
        assert!(ok("https://id.example.com/?a=b").is_err());
        assert!(ok("https://id.example.com/#x").is_err());
        assert!(ok("ftp://id.example.com").is_err());
    }
}
