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

use crate::session::{Session, SessionStore, StoreError, Tokens};

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

pub struct Refresher {
    skew: i64,
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
        self.fresh_in(oidc, &StoreSessions(store), session, now).await
    }

    /// `fresh` with sessions wherever `sessions` keeps them (the store, or cookie-mode's `carrier`).
    pub async fn fresh_in(
        &self,
        oidc: &OidcClient,
        sessions: &dyn RefreshSessions,
        session: Arc<Session>,
        now: i64,
    ) -> Result<Arc<Session>, RefreshError> {
        if !self.needs_refresh(&session.tokens, now) {
            return Ok(session);
        }
        let key = format!("{}:{}", session.id, session.tokens.access_token_expires_at);
        self.flights
            .try_get_with(key, self.refresh_once(oidc, sessions, &session, now))
            .await
            .map_err(|e: Arc<RefreshError>| (*e).clone())
    }

    async fn refresh_once(
        &self,
        oidc: &OidcClient,
        sessions: &dyn RefreshSessions,
        session: &Arc<Session>,
        now: i64,
    ) -> Result<Arc<Session>, RefreshError> {
        // Another flight (or node) may have refreshed already: work from the latest known session.
        let current = sessions.current(session).await.map_err(|e| RefreshError::Unavailable(e.to_string()))?;
        let Some(current) = current else { return Err(RefreshError::Ended("session gone")) };
        if !self.needs_refresh(&current.tokens, now) {
            return Ok(current);
        }
        let Some(refresh_token) = current.tokens.refresh_token.as_deref() else {
            if current.tokens.access_token_expires_at > now {
                return Ok(current);
            }
            let _ = sessions.end(&current, now).await;
            return Err(RefreshError::Ended("access token expired and no refresh token"));
        };
        let key =
            DpopKey::from_pkcs8(&current.dpop_key).map_err(|_| RefreshError::Ended("session DPoP key unreadable"))?;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        match oidc.refresh(refresh_token, &key).await {
            Ok(response) => {
                let mut next = (*current).clone();
                next.tokens = tokens_from(&response, Some(refresh_token), now);
                if next.tokens.scope.is_none() {
                    next.tokens.scope = current.tokens.scope.clone();
                }
                let next = Arc::new(next);
                sessions.save(next.clone()).await.map_err(|e| RefreshError::Unavailable(e.to_string()))?;
                tracing::debug!(sub = %current.sub, "access token refreshed");
                Ok(next)
            }
            Err(OidcError::Refused { error, .. }) => {
                tracing::info!(sub = %current.sub, %error, "refresh refused: session ended");
                let _ = sessions.end(&current, now).await;
                Err(RefreshError::Ended("refresh refused by the token service"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh failed: token service unavailable");
                Err(RefreshError::Unavailable(e.to_string()))
            }
        }
    }

    /// The gateway's own DPoP key (client_credentials tokens are bound to it).
    pub fn client_key(&self) -> &Arc<DpopKey> {
        &self.client_key
    }

    /// A client_credentials token for `scopes`, from the cache until near expiry.
    pub async fn client_token(
        &self,
        oidc: &OidcClient,
        scopes: &[String],
        now: i64,
    ) -> Result<Arc<Tokens>, RefreshError> {
        let key = scopes.join(" ");
        if let Some(tokens) = self.client_tokens.get(&key).await {
            if !self.needs_refresh(&tokens, now) {
                return Ok(tokens);
            }
            self.client_tokens.invalidate(&key).await;
        }
        self.client_tokens
            .try_get_with(key, async {
                match oidc.client_credentials(scopes, &self.client_key).await {
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
