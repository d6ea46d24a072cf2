//! Storage contracts of the token service, owned by the protocol code that uses them.
//!
//! Each trait is narrow and named for its user. Single-use things (authorization codes, refresh-token rotation,
//! client-assertion `jti`s) are consumed atomically and answer with a named outcome, never a bool. Every
//! back-end lives in its own module (`sqlite` today; PostgreSQL and Redis follow) and passes the same
//! conformance suite (`conformance`).
//!
//! Times are seconds since the Unix epoch (`Epoch`), always passed in by the caller: stores never read a clock.

pub mod sqlite;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch.
pub type Epoch = i64;

/// A storage failure. Protocol code maps it to `server_error`/503 and logs the cause; it is never shown.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

pub type StoreResult<T> = Result<T, StoreError>;

// ---------------------------------------------------------------------------------------------------------
// Users

/// A local account. `password_hash` is an argon2id PHC string; `sub` is stable and never reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub sub: String,
    pub username: String,
    pub password_hash: String,
    pub claims: StandardClaims,
    pub created_at: Epoch,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_sub(&self, sub: &str) -> StoreResult<Option<UserRecord>>;
    /// Inserts the user, or updates password hash and claims of the user with that username (keeping its `sub`).
    /// Returns the stored record.
    async fn upsert_user(&self, user: UserRecord) -> StoreResult<UserRecord>;
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Removes the user; true when it existed.
    async fn remove_user(&self, username: &str) -> StoreResult<bool>;
}

// ---------------------------------------------------------------------------------------------------------
// Clients

/// A registered client. Secrets are never stored: only the SHA-256 digest of a high-entropy secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub auth_method: ClientAuthMethod,
    /// Hex SHA-256 of the client secret, for `client_secret_basic`/`client_secret_post`.
    #[serde(default)]
    pub secret_sha256: Option<String>,
    /// Public keys for `private_key_jwt` (a JWK Set document).
    #[serde(default)]
    pub jwks: Option<gatehouse_proto::JwkSet>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    /// Scopes the client may request (identity scopes and API scopes).
    pub scopes: Vec<String>,
    pub id_token_signed_response_alg: SigningAlg,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Where the record came from: `config` (seeded from the file at start) or `cli`.
    #[serde(default)]
    pub source: String,
    /// Every token request must carry a DPoP proof (RFC 9449 §5).
    #[serde(default)]
    pub require_dpop: bool,
    /// DPoP proofs of this client must carry a server nonce (RFC 9449 §8).
    #[serde(default)]
    pub require_dpop_nonce: bool,
    /// Authorization requests must be pushed first (RFC 9126 §6).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;
    async fn upsert_client(&self, client: ClientRecord) -> StoreResult<()>;
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;
    async fn remove_client(&self, client_id: &str) -> StoreResult<bool>;
}

// ---------------------------------------------------------------------------------------------------------
// Signing keys

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published in JWKS, not yet signing.
    Pending,
    /// Signing (one per algorithm) and published.
    Active,
    /// No longer signing; published until its retention ends.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Active, Self::Retired].into_iter().find(|s| s.as_str() == value)
    }
}

/// A signing key; the private key is PKCS#8 DER sealed with the master key (AES-256-GCM, nonce prepended).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: SigningAlg,
    pub state: KeyState,
    pub private_sealed: Vec<u8>,
    pub public_jwk: gatehouse_proto::Jwk,
    pub created_at: Epoch,
    pub activated_at: Option<Epoch>,
    pub retired_at: Option<Epoch>,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn list_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    async fn insert_key(&self, key: SigningKeyRecord) -> StoreResult<()>;
    /// Sets state, `activated_at` (when becoming active) or `retired_at` (when retiring) to `at`.
    async fn set_key_state(&self, kid: &str, state: KeyState, at: Epoch) -> StoreResult<()>;
    async fn remove_key(&self, kid: &str) -> StoreResult<()>;
}

// ---------------------------------------------------------------------------------------------------------
// Grants, codes, refresh tokens, issued access tokens

/// One authorization: created when a code is issued; every token issued from that code belongs to it, so
/// revoking the grant revokes them all (code reuse, refresh-token reuse, logout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub grant_id: String,
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    pub auth_time: Epoch,
    pub sid: Option<String>,
    pub created_at: Epoch,
    /// Absolute end of the grant: no refresh after this (ASVS 10.4.8).
    pub expires_at: Epoch,
    pub revoked_at: Option<Epoch>,
}

/// An authorization code, stored by the SHA-256 of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: Vec<u8>,
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub dpop_jkt: Option<String>,
    pub expires_at: Epoch,
}

/// The outcome of consuming an authorization code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeOutcome {
    /// First use: the code is now spent; here is what it carried and its grant.
    Consumed(CodeRecord, GrantRecord),
    /// The code was spent before: the caller revokes its grant (RFC 6749 §4.1.2).
    AlreadyUsed(CodeRecord),
    Missing,
}

/// A refresh token, stored by the SHA-256 of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRecord {
    pub token_hash: Vec<u8>,
    pub grant_id: String,
    pub client_id: String,
    /// Granted scope of this token (may be narrower than the grant's after a down-scoped refresh).
    pub scope: String,
    pub dpop_jkt: Option<String>,
    pub issued_at: Epoch,
    /// Idle expiry of this token.
    pub expires_at: Epoch,
    /// When a newer token of the grant replaced this one.
    pub superseded_at: Option<Epoch>,
}

/// The outcome of rotating a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The old token is superseded (or was superseded less than `grace` seconds ago) and the new one stored.
    Rotated(GrantRecord),
    /// The token was superseded longer ago than the grace window: the grant is now revoked (RFC 9700 §4.14.2).
    ReuseDetected,
    /// Unknown, expired, or its grant revoked or expired.
    Missing,
}

/// The outcome of consuming a single-use identifier (a client assertion's `jti`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    Consumed,
    AlreadyUsed,
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a new grant and its code together.
    async fn insert_code(&self, grant: GrantRecord, code: CodeRecord) -> StoreResult<()>;
    /// Atomically spends a code. Expired codes are `Missing` (but still spent).
    async fn consume_code(&self, code_hash: &[u8], now: Epoch) -> StoreResult<CodeOutcome>;
    async fn grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>>;
    /// Revokes a grant: its refresh tokens stop working and its recorded access tokens become revoked.
    async fn revoke_grant(&self, grant_id: &str, now: Epoch) -> StoreResult<()>;
    /// Every grant issued under the IdP session `sid`, revoked or not, oldest first (who to tell at logout).
    async fn grants_of_session(&self, sid: &str) -> StoreResult<Vec<GrantRecord>>;
    /// Revokes every grant issued under the IdP session `sid` that is not revoked yet (logout, OIDC Back-Channel
    /// Logout §2.7); earlier revocation times stay. Returns how many it revoked.
    async fn revoke_session_grants(&self, sid: &str, now: Epoch) -> StoreResult<u64>;
    async fn insert_refresh(&self, token: RefreshRecord) -> StoreResult<()>;
    /// Looks a refresh token up with its grant, for the protocol checks that precede rotation.
    async fn refresh(&self, token_hash: &[u8]) -> StoreResult<Option<(RefreshRecord, GrantRecord)>>;
    /// Atomically supersedes `old_hash` by `new` (same grant). A token superseded within the last `grace`
    /// seconds (strictly less) may be rotated again; one superseded earlier revokes the grant (`ReuseDetected`).
    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new: RefreshRecord,
        now: Epoch,
        grace: i64,
    ) -> StoreResult<RotateOutcome>;
    /// Records an access token issued under a grant, so revoking the grant revokes it.
    async fn record_access_token(&self, jti: &str, grant_id: &str, expires_at: Epoch) -> StoreResult<()>;
    /// True when the access token's grant is revoked.
    async fn access_token_revoked(&self, jti: &str) -> StoreResult<bool>;
    /// Spends a single-use identifier within a namespace until `expires_at`.
    async fn consume_jti(
        &self,
        namespace: &str,
        jti: &str,
        expires_at: Epoch,
        now: Epoch,
    ) -> StoreResult<ReplayOutcome>;
    /// Deletes expired codes, refresh tokens, access-token records, jtis and grants. Returns rows removed.
    async fn purge_expired(&self, now: Epoch) -> StoreResult<u64>;
}

// ---------------------------------------------------------------------------------------------------------
// IdP (single sign-on) sessions

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdpSessionRecord {
    pub sid: String,
    pub sub: String,
    pub auth_time: Epoch,
    pub created_at: Epoch,
    pub last_seen: Epoch,
    pub expires_at: Epoch,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, session: IdpSessionRecord) -> StoreResult<()>;
    /// The session if it exists and has not expired at `now`.
    async fn session(&self, sid: &str, now: Epoch) -> StoreResult<Option<IdpSessionRecord>>;
    async fn touch_session(&self, sid: &str, now: Epoch, expires_at: Epoch) -> StoreResult<()>;
    async fn remove_session(&self, sid: &str) -> StoreResult<bool>;
    async fn sessions_of(&self, sub: &str, now: Epoch) -> StoreResult<Vec<IdpSessionRecord>>;
    /// Sessions live at `now` (every user's, or only those of `sub`), oldest first (`created_at`, then `sid`).
    async fn list_sessions(&self, sub: Option<&str>, now: Epoch) -> StoreResult<Vec<IdpSessionRecord>>;
}

/// Every store the token service uses, as trait objects. One back-end usually serves them all.
#[derive(Clone)]
pub struct Store {
    pub users: Arc<dyn UserStore>,
    pub clients: Arc<dyn ClientStore>,
    pub keys: Arc<dyn KeyStore>,
    pub grants: Arc<dyn GrantStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub pushed: Arc<dyn PushedRequestStore>,
    pub revocations: Arc<dyn RevocationStore>,
}

impl Store {
    /// Opens the back-end named by a store URL: `sqlite://PATH` (created if missing) or `sqlite::memory:`.
    /// Migrations are applied before this returns.
    pub async fn open(url: &str) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            let backend = Arc::new(sqlite::SqliteStore::open(url).await?);
            Ok(Self::from_backend(backend))
        } else {
            Err(StoreError(format!("unsupported store URL scheme in {url:?}: expected sqlite://")))
        }
    }

    /// One back-end serving every trait.
    pub fn from_backend<B>(backend: Arc<B>) -> Self
    where
        B: UserStore
            + ClientStore
            + KeyStore
            + GrantStore
            + SessionStore
            + PushedRequestStore
            + RevocationStore
            + 'static,
    {
        Self {
            users: backend.clone(),
            clients: backend.clone(),
            keys: backend.clone(),
            grants: backend.clone(),
            sessions: backend.clone(),
            pushed: backend.clone(),
            revocations: backend,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Pushed authorization requests (RFC 9126) and access-token revocation (RFC 7009)

/// A pushed authorization request, stored by the SHA-256 of its `request_uri`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedRequestRecord {
    pub request_uri_hash: Vec<u8>,
    pub client_id: String,
    /// The validated request (serialised `AuthorizeRequest`).
    pub request: String,
    pub expires_at: Epoch,
}

#[async_trait]
pub trait PushedRequestStore: Send + Sync {
    async fn insert_pushed(&self, record: PushedRequestRecord) -> StoreResult<()>;
    /// Atomically takes a pushed request (single use, RFC 9126 §4); expired ones are `None`.
    async fn take_pushed(&self, request_uri_hash: &[u8], now: Epoch) -> StoreResult<Option<PushedRequestRecord>>;
}

#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Puts an access token on the deny list until it expires anyway.
    async fn revoke_access_token(&self, jti: &str, expires_at: Epoch) -> StoreResult<()>;
    /// True when the token is on the deny list.
    async fn access_token_denied(&self, jti: &str) -> StoreResult<bool>;
}
