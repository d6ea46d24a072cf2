//! Keeping access tokens fresh. Before a request is forwarded, a user token within `refresh_skew` of expiry
//! is refreshed with the session's DPoP key. However many requests of one session arrive at once, one refresh
//! runs: they all wait on the same flight (moka's `try_get_with` coalesces concurrent callers of one key) and
//! share its outcome. A refused refresh (the token service answered `invalid_grant` & co.) ends the session;
//! a token service that cannot be reached keeps it and the caller answers 503.
//!
//! The gateway's own client_credentials tokens (routes with `token = "client"`) are cached per scope set
//! until `refresh_skew` before they expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_proto::dpop_key::DpopKey;

use crate::oidc::{OidcClient, OidcError, TokenResponse};
use async_trait::async_trait;

use crate::session::{ResourceToken, Session, SessionStore, StoreError, Tokens};

#[derive(Clone, Debug, thiserror::Error)]
pub enum RefreshError {
    /// The session cannot continue (refresh refused, no refresh token, session gone): the caller answers 401.
    #[error("session ended: {0}")]
    Ended(&'static str),
    /// The token service or the session store could not be reached: 503, the session is kept.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// New session tokens from a token response; the refresh token is kept when the token service did not
/// rotate it.
pub fn tokens_from(response: &TokenResponse, previous_refresh_token: Option<&str>, now: i64) -> Tokens {
    Tokens {
        access_token: response.access_token.clone(),
        access_token_expires_at: now.saturating_add(response.expires_in.unwrap_or(60).max(0)),
        refresh_token: response.refresh_token.clone().or_else(|| previous_refresh_token.map(str::to_owned)),
        scope: response.scope.clone(),
        resources: Vec::new(),
    }
}

/// What the refresher needs from wherever sessions live (the store in server mode; the ended list and the
/// latest-tokens cache in cookie mode, see `carrier`).
#[async_trait]
pub trait RefreshSessions: Send + Sync {
    /// The newest known state of `session` (another flight or node may have refreshed it); `None`: it ended.
    async fn current(&self, session: &Arc<Session>) -> Result<Option<Arc<Session>>, StoreError>;
    /// Keeps the refreshed session.
    async fn save(&self, session: Arc<Session>) -> Result<(), StoreError>;
    /// Ends the session (its refresh was refused).
    async fn end(&self, session: &Session, now: i64) -> Result<(), StoreError>;
}

/// Server mode: sessions in a `SessionStore`.
pub struct StoreSessions<'a>(pub &'a dyn SessionStore);

#[async_trait]
impl RefreshSessions for StoreSessions<'_> {
    async fn current(&self, session: &Arc<Session>) -> Result<Option<Arc<Session>>, StoreError> {
        self.0.get(&session.id).await
    }

    async fn save(&self, session: Arc<Session>) -> Result<(), StoreError> {
        self.0.put(session).await
    }

    async fn end(&self, session: &Session, _now: i64) -> Result<(), StoreError> {
        self.0.remove(&session.id).await.map(|_| ())
    }
}

/// How one grant of a refresh flight failed.
enum GrantError {
    /// The token service answered with this OAuth error code.
    Refused(String),
    Unavailable(String),
}

impl From<GrantError> for RefreshError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Refused(_) => RefreshError::Ended("refresh refused by the token service"),
            GrantError::Unavailable(e) => RefreshError::Unavailable(e),
        }
    }
}

/// `session` with `resource` recorded as refused (no token can be had for it until the next refresh).
fn with_refused(session: &Arc<Session>, resource: Option<&str>, now: i64) -> Arc<Session> {
    let Some(resource) = resource else { return session.clone() };
    let mut next = (**session).clone();
    next.tokens.resources.push(ResourceToken {
        resource: resource.to_owned(),
        access_token: String::new(),
        expires_at: now,
    });
    Arc::new(next)
}

pub struct Refresher {
    skew: i64,
    /// One refresh at a time per session (flights of different resources would otherwise race on the
    /// rotating refresh token).
    locks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    /// Refresh flights by session id + expiry of the token being replaced; results are kept briefly so
    /// latecomers of the same burst reuse them.
    flights: moka::future::Cache<String, Arc<Session>>,
    client_tokens: moka::future::Cache<String, Arc<Tokens>>,
    client_key: Arc<DpopKey>,
    /// Refresh-token grants sent to the token service (one per flight), for metrics and tests.
    pub refreshes: AtomicU64,
}

impl Refresher {
    pub fn new(skew: Duration, client_key: Arc<DpopKey>) -> Self {
        Self {
            skew: skew.as_secs() as i64,
            locks: moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(60)).build(),
            flights: moka::future::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(30)).build(),
            client_tokens: moka::future::Cache::builder().max_capacity(1_000).build(),
            client_key,
            refreshes: AtomicU64::new(0),
        }
    }

    pub fn needs_refresh(&self, tokens: &Tokens, now: i64) -> bool {
        tokens.access_token_expires_at.saturating_sub(self.skew) <= now
    }

    /// The session with a usable access token: as is, or after the (shared) refresh, with sessions in `store`.
    pub async fn fresh(
        &self,
        oidc: &OidcClient,
        store: &dyn SessionStore,
        session: Arc<Session>,
        now: i64,
    ) -> Result<Arc<Session>, RefreshError> {
        self.fresh_in(oidc, &StoreSessions(store), session, None, now).await
    }

    /// What a session needs before a request for `resource` (or the main token) is forwarded: the main token
    /// is near expiry, or the resource's token is missing or near expiry (a refusal recorded for the resource
    /// is kept until the main token is refreshed, so a refused resource is not asked for on every request).
    fn due(&self, tokens: &Tokens, resource: Option<&str>, now: i64) -> bool {
        self.needs_refresh(tokens, now) || resource.is_some_and(|r| self.resource_due(tokens, r, now))
    }

    fn resource_due(&self, tokens: &Tokens, resource: &str, now: i64) -> bool {
        match tokens.for_resource(resource) {
            None => true,
            Some(token) => !token.access_token.is_empty() && token.expires_at.saturating_sub(self.skew) <= now,
        }
    }

    /// `fresh` with sessions wherever `sessions` keeps them (the store, or cookie-mode's `carrier`), and a
    /// token for `resource` (RFC 8707) when the route names one.
    pub async fn fresh_in(
        &self,
        oidc: &OidcClient,
        sessions: &dyn RefreshSessions,
        session: Arc<Session>,
        resource: Option<&str>,
        now: i64,
    ) -> Result<Arc<Session>, RefreshError> {
        if !self.due(&session.tokens, resource, now) {
            return Ok(session);
        }
        let key = format!("{}:{}:{}", session.id, session.tokens.access_token_expires_at, resource.unwrap_or(""));
        self.flights
            .try_get_with(key, self.refresh_once(oidc, sessions, &session, resource, now))
            .await
            .map_err(|e: Arc<RefreshError>| (*e).clone())
    }

    async fn refresh_once(
        &self,
        oidc: &OidcClient,
        sessions: &dyn RefreshSessions,
        session: &Arc<Session>,
        resource: Option<&str>,
        now: i64,
    ) -> Result<Arc<Session>, RefreshError> {
        let lock = self.session_lock(&session.id);
        let _one_at_a_time = lock.lock().await;
        // Another flight (or node) may have refreshed already: work from the latest known session.
        let current = sessions.current(session).await.map_err(|e| RefreshError::Unavailable(e.to_string()))?;
        let Some(current) = current else { return Err(RefreshError::Ended("session gone")) };
        if !self.due(&current.tokens, resource, now) {
            return Ok(current);
        }
        let main_due = self.needs_refresh(&current.tokens, now);
        let Some(refresh_token) = current.tokens.refresh_token.clone() else {
            if !main_due {
                // No way to get a resource token: the route refuses (403), the session goes on.
                return Ok(with_refused(&current, resource, now));
            }
            if current.tokens.access_token_expires_at > now {
                return Ok(current);
            }
            let _ = sessions.end(&current, now).await;
            return Err(RefreshError::Ended("access token expired and no refresh token"));
        };
        let key =
            DpopKey::from_pkcs8(&current.dpop_key).map_err(|_| RefreshError::Ended("session DPoP key unreadable"))?;
        let mut tokens = current.tokens.clone();
        if main_due {
            let response = self.grant(oidc, sessions, &current, &refresh_token, &key, None, now).await?;
            tokens = tokens_from(&response, Some(&refresh_token), now);
            if tokens.scope.is_none() {
                tokens.scope = current.tokens.scope.clone();
            }
        }
        // Resource tokens are fetched when a request needs one (a new main token drops them all: `tokens_from`).
        if let Some(target) = resource.filter(|r| self.resource_due(&tokens, r, now)) {
            tokens.resources.retain(|t| t.resource != target);
            let rotating = tokens.refresh_token.clone().unwrap_or_else(|| refresh_token.clone());
            let outcome = self.grant(oidc, sessions, &current, &rotating, &key, Some(target), now).await;
            let token = match outcome {
                Ok(response) => {
                    if let Some(next) = response.refresh_token.clone() {
                        tokens.refresh_token = Some(next);
                    }
                    let expires_at = now.saturating_add(response.expires_in.unwrap_or(60).max(0));
                    ResourceToken { resource: target.to_owned(), access_token: response.access_token, expires_at }
                }
                Err(GrantError::Refused(error)) if error == "invalid_target" || error == "invalid_scope" => {
                    tracing::warn!(resource = %target, %error, "the token service refuses this route's resource");
                    ResourceToken { resource: target.to_owned(), access_token: String::new(), expires_at: now }
                }
                Err(GrantError::Refused(_)) => return Err(RefreshError::Ended("refresh refused by the token service")),
                Err(GrantError::Unavailable(e)) => {
                    // Keep what was rotated so far: the previous refresh token may already be spent.
                    if tokens != current.tokens {
                        let partial = Arc::new(Session { tokens, ..(*current).clone() });
                        let _ = sessions.save(partial).await;
                    }
                    return Err(RefreshError::Unavailable(e));
                }
            };
            tokens.resources.push(token);
        }
        let next = Arc::new(Session { tokens, ..(*current).clone() });
        sessions.save(next.clone()).await.map_err(|e| RefreshError::Unavailable(e.to_string()))?;
        tracing::debug!(sub = %current.sub, "tokens refreshed");
        Ok(next)
    }

    /// One refresh-token grant (for `resource` when given). A refusal other than an unknown resource ends the
    /// session.
    #[allow(clippy::too_many_arguments)]
    async fn grant(
        &self,
        oidc: &OidcClient,
        sessions: &dyn RefreshSessions,
        current: &Session,
        refresh_token: &str,
        key: &DpopKey,
        resource: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, GrantError> {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        match oidc.refresh_for(refresh_token, key, resource).await {
            Ok(response) => {
                // OIDC Core §12.2: a refreshed ID token must be valid and about the session's user; otherwise the
                // answer is not used and the session ends (never switch users: catalogue CS-RP-22).
                if let Some(id_token) = &response.id_token {
                    match oidc.validate_refreshed_id_token(id_token, &current.sub, now).await {
                        Ok(_) => {}
                        Err(OidcError::Unavailable(e)) => {
                            tracing::warn!(error = %e, "refresh: cannot verify the new ID token now");
                            return Err(GrantError::Unavailable(e));
                        }
                        Err(e) => {
                            tracing::warn!(sub = %current.sub, error = %e, "refresh answer refused: session ended");
                            let _ = sessions.end(current, now).await;
                            return Err(GrantError::Refused("invalid_id_token".to_owned()));
                        }
                    }
                }
                Ok(response)
            }
            Err(OidcError::Refused { error, .. }) => {
                if resource.is_none() || (error != "invalid_target" && error != "invalid_scope") {
                    tracing::info!(sub = %current.sub, %error, "refresh refused: session ended");
                    let _ = sessions.end(current, now).await;
                }
                Err(GrantError::Refused(error))
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh failed: token service unavailable");
                Err(GrantError::Unavailable(e.to_string()))
            }
        }
    }

    /// The lock that serialises every write of one session's state: refresh flights, the idle-time slide and
    /// logout (a write from a copy read before another write, or before the logout, would otherwise bring back a
    /// spent refresh token or an ended session).
    pub fn session_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.get_with(id.to_owned(), || Arc::new(tokio::sync::Mutex::new(())))
    }

    /// The gateway's own DPoP key (client_credentials tokens are bound to it).
    pub fn client_key(&self) -> &Arc<DpopKey> {
        &self.client_key
    }

    /// A client_credentials token for `scopes` (and `resource`, RFC 8707), from the cache until near expiry.
    pub async fn client_token(
        &self,
        oidc: &OidcClient,
        scopes: &[String],
        resource: Option<&str>,
        now: i64,
    ) -> Result<Arc<Tokens>, RefreshError> {
        let key = format!("{}|{}", scopes.join(" "), resource.unwrap_or(""));
        if let Some(tokens) = self.client_tokens.get(&key).await {
            if !self.needs_refresh(&tokens, now) {
                return Ok(tokens);
            }
            self.client_tokens.invalidate(&key).await;
        }
        self.client_tokens
            .try_get_with(key, async {
                match oidc.client_credentials_for(scopes, &self.client_key, resource).await {
                    Ok(response) => Ok(Arc::new(tokens_from(&response, None, now))),
                    Err(OidcError::Refused { error, .. }) => {
                        tracing::warn!(%error, "client_credentials refused");
                        Err(RefreshError::Unavailable(format!("client_credentials refused: {error}")))
                    }
                    Err(e) => Err(RefreshError::Unavailable(e.to_string())),
                }
            })
            .await
            .map_err(|e: Arc<RefreshError>| (*e).clone())
    }
}
