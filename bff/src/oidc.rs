//! The gateway's OpenID Connect client: a confidential client (`client_secret_basic`, RFC 6749 §2.3.1) of the
//! token service, using the authorization code flow with PKCE (RFC 7636), pushed authorization requests
//! (RFC 9126) and DPoP-bound tokens (RFC 9449), refresh (RFC 6749 §6), client credentials (§4.4), revocation
//! (RFC 7009), RP-initiated logout (RP-Initiated Logout 1.0) and back-channel logout (Back-Channel Logout 1.0).
//!
//! `OidcClient` is the thin I/O shell: one `reqwest::Client` (timeout, no redirects, bounded bodies), the
//! discovery document and JWKS caches, the token service's latest `DPoP-Nonce`, the logout-token `jti` replay
//! cache. The protocol steps are pure functions in the submodules:
//! - `metadata`: the discovery document (OIDC Discovery 1.0);
//! - `token`: authorization request parameters, client authentication, token/PAR/error answers;
//! - `jose`: header, algorithm allow-list and signature checks shared by ID and logout tokens;
//! - `id_token`: OIDC Core §3.1.3.7; `logout_token`: Back-Channel Logout §2.6.
//!
//! No token value is ever put in an error or a log line.

pub mod id_token;
pub mod jose;
pub mod logout_token;
pub mod metadata;
pub mod token;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use gatehouse_proto::claims::IdTokenClaims;
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::{Jwk, JwkSet};
use url::Url;

pub use logout_token::LogoutToken;
pub use metadata::ProviderMetadata;
pub use token::{AuthorizationRequest, TokenResponse};

use crate::settings::OidcSettings;

/// Largest answer read from the token service.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How many logout-token `jti`s the replay cache holds.
const REPLAY_CACHE_CAPACITY: u64 = 100_000;

/// What can go wrong talking to the token service or validating what it signed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The token service answered with an RFC 6749 §5.2 error (e.g. `invalid_grant`): the request was refused
    /// and repeating it will not help. A refused refresh ends the session.
    #[error("refused by the token service: {error}")]
    Refused { error: String, description: Option<String> },
    /// Network error, timeout, 5xx, or an answer that cannot be parsed: try later; sessions are kept.
    #[error("token service unavailable: {0}")]
    Unavailable(String),
    /// An ID or logout token failed a check; the message names the check.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token service's answer parsed but breaks the protocol (e.g. a Bearer token where a DPoP-bound one
    /// was asked for, a discovery document for another issuer). A configuration problem; sessions are kept.
    #[error("protocol violation by the token service: {0}")]
    Protocol(String),
    /// The token service does not advertise the endpoint this needs (e.g. `revocation_endpoint`).
    #[error("the token service advertises no {0}")]
    NotAdvertised(&'static str),
}

/// The OIDC client. Cheap to clone (one `Arc`); `Send + Sync`.
#[derive(Clone)]
pub struct OidcClient {
    inner: Arc<Inner>,
}

struct Inner {
    settings: OidcSettings,
    /// The issuer as published (`metadata::issuer_identifier`).
    issuer: String,
    http: reqwest::Client,
    metadata: RwLock<Option<Fetched<ProviderMetadata>>>,
    metadata_fetch: tokio::sync::Mutex<()>,
    jwks: RwLock<Option<Fetched<JwkSet>>>,
    jwks_fetch: tokio::sync::Mutex<()>,
    /// When the last JWKS fetch that did not find the `kid` it was made for ended: the floor for the next one
    /// (`jwk::may_fetch_for_unknown_kid`).
    jwks_fruitless: Mutex<Option<Instant>>,
    /// The latest `DPoP-Nonce` the token service sent (RFC 9449 §8).
    dpop_nonce: Mutex<Option<String>>,
    /// Logout-token `jti`s seen, each kept as long as its token stays acceptable (Back-Channel Logout §2.6 (9)).
    seen_logout_jtis: moka::sync::Cache<String, Duration>,
}

struct Fetched<T> {
    value: Arc<T>,
    at: Instant,
}

/// Keeps each replay-cache entry for the duration stored as its value.
struct KeepFor;

impl moka::Expiry<String, Duration> for KeepFor {
    fn expire_after_create(&self, _key: &String, value: &Duration, _created_at: Instant) -> Option<Duration> {
        Some(*value)
    }
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.inner.issuer)
            .field("client_id", &self.inner.settings.client_id)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    pub fn new(settings: OidcSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let seen_logout_jtis =
            moka::sync::Cache::builder().max_capacity(REPLAY_CACHE_CAPACITY).expire_after(KeepFor).build();
        Self {
            inner: Arc::new(Inner {
                issuer: metadata::issuer_identifier(&settings.issuer),
                settings,
                http,
                metadata: RwLock::new(None),
                metadata_fetch: tokio::sync::Mutex::new(()),
                jwks: RwLock::new(None),
                jwks_fetch: tokio::sync::Mutex::new(()),
                jwks_fruitless: Mutex::new(None),
                dpop_nonce: Mutex::new(None),
                seen_logout_jtis,
            }),
        }
    }

    /// A client whose metadata and JWKS are already known (tests, or a deployment pinning them). They count as
    /// just fetched: they are used for `metadata_ttl`, and an unknown `kid` refetches only after
    /// `jwks_min_refresh`.
    pub fn preloaded(settings: OidcSettings, metadata: ProviderMetadata, jwks: JwkSet) -> Self {
        let client = Self::new(settings);
        let now = Instant::now();
        *write(&client.inner.metadata) = Some(Fetched { value: Arc::new(metadata), at: now });
        *write(&client.inner.jwks) = Some(Fetched { value: Arc::new(jwks), at: now });
        *lock(&client.inner.jwks_fruitless) = Some(now);
        client
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.inner.settings
    }

    /// The issuer as the token service publishes it (what `iss` values are compared with).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The discovery document, fetched lazily and cached for `metadata_ttl`. When a refetch fails the previous
    /// document is kept in use.
    pub async fn metadata(&self) -> Result<Arc<ProviderMetadata>, OidcError> {
        let ttl = self.inner.settings.metadata_ttl;
        if let Some(fresh) = fresh(&self.inner.metadata, ttl) {
            return Ok(fresh);
        }
        let _single_flight = self.inner.metadata_fetch.lock().await;
        if let Some(fresh) = fresh(&self.inner.metadata, ttl) {
            return Ok(fresh);
        }
        let url = metadata::discovery_url(&self.inner.settings.issuer);
        let fetched = async {
            let (status, _, body) = self.get(url).await?;
            if status != 200 {
                return Err(OidcError::Unavailable(format!("discovery document: status {status}")));
            }
            ProviderMetadata::parse(&body, &self.inner.issuer)
        }
        .await;
        match fetched {
            Ok(document) => {
                let document = Arc::new(document);
                *write(&self.inner.metadata) = Some(Fetched { value: document.clone(), at: Instant::now() });
                Ok(document)
            }
            Err(error) => match read(&self.inner.metadata).as_ref() {
                Some(stale) => {
                    tracing::warn!(%error, "discovery document refetch failed: keeping the previous one");
                    Ok(stale.value.clone())
                }
                None => Err(error),
            },
        }
    }

    /// Whether the token service answers its discovery document now (readiness probes): always a fresh fetch,
    /// never the cached copy, and the cache is left as it is.
    pub async fn probe(&self) -> Result<(), OidcError> {
        let url = metadata::discovery_url(&self.inner.settings.issuer);
        let (status, _, body) = self.get(url).await?;
        if status != 200 {
            return Err(OidcError::Unavailable(format!("discovery document: status {status}")));
        }
        ProviderMetadata::parse(&body, &self.inner.issuer).map(drop)
    }

    /// Where to send the browser to log in. With PAR (RFC 9126) the request is pushed with client
    /// authentication and a DPoP proof (RFC 9449 §10.1), and the URL carries only `client_id` and
    /// `request_uri`; otherwise the URL carries the whole request (with `dpop_jkt`, RFC 9449 §10).
    pub async fn authorization_url(&self, req: &AuthorizationRequest<'_>, dpop: &DpopKey) -> Result<Url, OidcError> {
        let metadata = self.metadata().await?;
        let settings = &self.inner.settings;
        let params = token::authorization_params(&settings.client_id, &settings.scopes, req, dpop.jkt(), &metadata);
        let mut url = metadata.authorization_endpoint.clone();
        match (&metadata.pushed_authorization_request_endpoint, settings.use_par) {
            (Some(par), true) => {
                let form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let (status, body) = self.post_authenticated(par, &form, Some(dpop)).await?;
                let pushed = token::parse_par_answer(status, &body)?;
                url.query_pairs_mut()
                    .append_pair("client_id", &settings.client_id)
                    .append_pair("request_uri", &pushed.request_uri);
            }
            _ => {
                url.query_pairs_mut().extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
            }
        }
        Ok(url)
    }

    /// The authorization code grant (RFC 6749 §4.1.3) with the PKCE verifier and a DPoP proof.
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        dpop: &DpopKey,
    ) -> Result<TokenResponse, OidcError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        self.token_grant(&form, dpop).await
    }

    /// The refresh token grant (RFC 6749 §6) with a proof of the key the refresh token is bound to.
    pub async fn refresh(&self, refresh_token: &str, dpop: &DpopKey) -> Result<TokenResponse, OidcError> {
        self.refresh_for(refresh_token, dpop, None).await
    }

    /// The refresh grant, asking for an access token for `resource` only when given (RFC 8707 §2.2).
    pub async fn refresh_for(
        &self,
        refresh_token: &str,
        dpop: &DpopKey,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OidcError> {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        self.token_grant(&form, dpop).await
    }

    /// The client credentials grant (RFC 6749 §4.4): the gateway's own DPoP-bound token.
    pub async fn client_credentials(&self, scopes: &[String], dpop: &DpopKey) -> Result<TokenResponse, OidcError> {
        self.client_credentials_for(scopes, dpop, None).await
    }

    /// The client credentials grant for `resource` only, when given (RFC 8707 §2.2).
    pub async fn client_credentials_for(
        &self,
        scopes: &[String],
        dpop: &DpopKey,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OidcError> {
        let scope = scopes.join(" ");
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        self.token_grant(&form, dpop).await
    }

    /// Revokes a refresh token (RFC 7009 §2.1, `token_type_hint=refresh_token`). RFC 7009 §2.2: 200 whether or
    /// not the token was valid.
    pub async fn revoke_refresh_token(&self, refresh_token: &str) -> Result<(), OidcError> {
        let metadata = self.metadata().await?;
        let endpoint = metadata.revocation_endpoint.as_ref().ok_or(OidcError::NotAdvertised("revocation_endpoint"))?;
        let form = [("token", refresh_token), ("token_type_hint", "refresh_token")];
        let (status, body) = self.post_authenticated(endpoint, &form, None).await?;
        if status == 200 { Ok(()) } else { Err(token::error_answer(status, &body)) }
    }

    /// The RP-initiated logout URL (RP-Initiated Logout 1.0 §2), or None when no `end_session_endpoint` is
    /// advertised.
    pub async fn end_session_url(
        &self,
        id_token_hint: &str,
        post_logout_redirect_uri: &str,
    ) -> Result<Option<Url>, OidcError> {
        let metadata = self.metadata().await?;
        let Some(endpoint) = &metadata.end_session_endpoint else { return Ok(None) };
        let mut url = endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            if !id_token_hint.is_empty() {
                query.append_pair("id_token_hint", id_token_hint);
            }
            query
                .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
                .append_pair("client_id", &self.inner.settings.client_id);
        }
        Ok(Some(url))
    }

    /// Validates an ID token (OIDC Core §3.1.3.7) and returns its claims. `expected_nonce`, when given, must be
    /// the token's `nonce`.
    pub async fn validate_id_token(
        &self,
        id_token: &str,
        expected_nonce: Option<&str>,
        now: i64,
    ) -> Result<IdTokenClaims, OidcError> {
        let settings = &self.inner.settings;
        // §3.1.3.7 (7): alg from the allow-list (never none/HS*).
        let header = jose::header(id_token, &settings.id_token_algs)?;
        id_token::check_typ(&header)?;
        let jwk = self.key_for(header.kid.as_deref()).await?;
        let expected = id_token::Expected {
            issuer: &self.inner.issuer,
            client_id: &settings.client_id,
            leeway: settings.leeway_seconds,
            nonce: expected_nonce,
        };
        id_token::verify(id_token, &header, &jwk, &expected, now)
    }

    /// Validates the ID token of a refresh response (OIDC Core §12.2): valid as at login (signature, `iss`,
    /// `aud`, `azp`, times; no nonce is expected) and about the same user, `sub` equal to the session's. A
    /// refresh answer that fails this is not used (catalogue CS-RP-22: never switch users).
    pub async fn validate_refreshed_id_token(
        &self,
        id_token: &str,
        session_sub: &str,
        now: i64,
    ) -> Result<IdTokenClaims, OidcError> {
        let claims = self.validate_id_token(id_token, None, now).await?;
        if !gatehouse_proto::secret::ct_eq(claims.sub.as_bytes(), session_sub.as_bytes()) {
            return Err(OidcError::InvalidToken("sub differs from the session's".into()));
        }
        Ok(claims)
    }

    /// Validates a back-channel logout token (Back-Channel Logout §2.6), including `jti` replay: a token is
    /// accepted once.
    pub async fn validate_logout_token(&self, token: &str, now: i64) -> Result<LogoutToken, OidcError> {
        let settings = &self.inner.settings;
        let header = jose::header(token, &settings.id_token_algs)?;
        logout_token::check_typ(&header)?;
        let jwk = self.key_for(header.kid.as_deref()).await?;
        let expected = logout_token::Expected {
            issuer: &self.inner.issuer,
            client_id: &settings.client_id,
            leeway: settings.leeway_seconds,
        };
        let (logout, acceptable_until) = logout_token::verify(token, &header, &jwk, &expected, now)?;
        // §2.6 (9): a jti already seen is a replay. Remembered while the token stays acceptable.
        let keep = Duration::from_secs(acceptable_until.saturating_sub(now).clamp(1, 86_400) as u64);
        let entry = self.inner.seen_logout_jtis.entry(logout.jti.clone()).or_insert(keep);
        if !entry.is_fresh() {
            return Err(OidcError::InvalidToken("jti already used (replay)".into()));
        }
        Ok(logout)
    }

    /// A grant at the token endpoint with a DPoP proof; the answer must be a DPoP-bound token.
    async fn token_grant(&self, form: &[(&str, &str)], dpop: &DpopKey) -> Result<TokenResponse, OidcError> {
        let metadata = self.metadata().await?;
        let (status, body) = self.post_authenticated(&metadata.token_endpoint, form, Some(dpop)).await?;
        token::parse_token_answer(status, &body)
    }

    /// POSTs a form with client authentication and, when `dpop` is given, a proof for `endpoint`. RFC 9449 §8:
    /// a `use_dpop_nonce` answer is retried once with the nonce it carries; the latest nonce is remembered.
    async fn post_authenticated(
        &self,
        endpoint: &Url,
        form: &[(&str, &str)],
        dpop: Option<&DpopKey>,
    ) -> Result<(u16, Vec<u8>), OidcError> {
        let settings = &self.inner.settings;
        let mut authorization = http::HeaderValue::from_str(&token::basic_authorization(
            &settings.client_id,
            settings.client_secret.expose(),
        ))
        .map_err(|_| OidcError::Protocol("the client credentials do not fit a header".to_owned()))?;
        authorization.set_sensitive(true);
        let mut retried = false;
        loop {
            let mut request = self
                .inner
                .http
                .post(endpoint.clone())
                .header(http::header::AUTHORIZATION, authorization.clone())
                .header(http::header::ACCEPT, "application/json")
                .form(form);
            if let Some(key) = dpop {
                let nonce = lock(&self.inner.dpop_nonce).clone();
                // RFC 9449 §4.2: htu is the endpoint, htm POST.
                request =
                    request.header("DPoP", key.proof("POST", endpoint.as_str(), None, nonce.as_deref(), crate::now()));
            }
            let (status, nonce, body) = self.send(request).await?;
            if let Some(nonce) = &nonce {
                *lock(&self.inner.dpop_nonce) = Some(nonce.clone());
            }
            let asks_nonce = status == 400 && token::error_code(&body).as_deref() == Some("use_dpop_nonce");
            if asks_nonce && nonce.is_some() && dpop.is_some() && !retried {
                retried = true;
                continue;
            }
            return Ok((status, body));
        }
    }

    async fn get(&self, url: Url) -> Result<(u16, Option<String>, Vec<u8>), OidcError> {
        self.send(self.inner.http.get(url).header(http::header::ACCEPT, "application/json")).await
    }

    /// Sends a request and reads the status, the `DPoP-Nonce` header and a bounded body.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Option<String>, Vec<u8>), OidcError> {
        let unavailable = |e: reqwest::Error| OidcError::Unavailable(e.to_string());
        let mut response = request.send().await.map_err(unavailable)?;
        let status = response.status().as_u16();
        let nonce = response.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(OidcError::Unavailable("answer too large".to_owned()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(OidcError::Unavailable("answer too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, nonce, body))
    }

    /// The key that verifies a token with header `kid`. OIDC Core §10.1: `kid` may be left out only while the
    /// JWK Set holds a single key; then that key is used (it must still fit the header's `alg`).
    async fn key_for(&self, kid: Option<&str>) -> Result<Jwk, OidcError> {
        match kid {
            Some(kid) => self.signing_key(kid).await,
            None => match self.jwk_set().await?.keys.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(OidcError::InvalidToken("no kid, and the JWK Set has several keys".into())),
            },
        }
    }

    /// The JWK Set, from the cache while younger than `metadata_ttl`, else fetched (once for concurrent callers).
    async fn jwk_set(&self) -> Result<Arc<JwkSet>, OidcError> {
        let ttl = self.inner.settings.metadata_ttl;
        if let Some(set) = fresh(&self.inner.jwks, ttl) {
            return Ok(set);
        }
        let _single_flight = self.inner.jwks_fetch.lock().await;
        if let Some(set) = fresh(&self.inner.jwks, ttl) {
            return Ok(set);
        }
        let set = Arc::new(self.fetch_jwks().await?);
        *write(&self.inner.jwks) = Some(Fetched { value: set.clone(), at: Instant::now() });
        Ok(set)
    }

    /// The token service's signing key `kid`. The JWKS is refetched when older than `metadata_ttl`, or when
    /// `kid` is unknown (a key rotation, OpenID Connect Core §10.1.1) unless a fetch that did not find its `kid`
    /// ended less than `jwks_min_refresh` ago.
    async fn signing_key(&self, kid: &str) -> Result<Jwk, OidcError> {
        let settings = &self.inner.settings;
        let lookup = |max_age: Duration| -> Option<Jwk> {
            read(&self.inner.jwks)
                .as_ref()
                .filter(|f| f.at.elapsed() < max_age)
                .and_then(|f| f.value.find(kid).cloned())
        };
        if let Some(jwk) = lookup(settings.metadata_ttl) {
            return Ok(jwk);
        }
        let _single_flight = self.inner.jwks_fetch.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(jwk) = lookup(settings.metadata_ttl) {
            return Ok(jwk);
        }
        // The floor: after a fetch that found nothing, an unknown kid is not fetched again for a while.
        let last_fruitless = *lock(&self.inner.jwks_fruitless);
        let known = lookup(Duration::MAX);
        if known.is_none()
            && !gatehouse_proto::jwk::may_fetch_for_unknown_kid(
                last_fruitless,
                Instant::now(),
                settings.jwks_min_refresh,
            )
        {
            return Err(OidcError::InvalidToken("unknown kid".into()));
        }
        let outcome = match self.fetch_jwks().await {
            Ok(set) => {
                let found = set.find(kid).cloned();
                *write(&self.inner.jwks) = Some(Fetched { value: Arc::new(set), at: Instant::now() });
                found.ok_or_else(|| OidcError::InvalidToken("unknown kid".into()))
            }
            Err(error) => {
                tracing::warn!(%error, "JWKS fetch failed");
                // An expired set that has the key still verifies: a rotation would have been announced.
                known.ok_or(error)
            }
        };
        if outcome.is_err() {
            *lock(&self.inner.jwks_fruitless) = Some(Instant::now());
        }
        outcome
    }

    async fn fetch_jwks(&self) -> Result<JwkSet, OidcError> {
        let metadata = self.metadata().await?;
        let (status, _, body) = self.get(metadata.jwks_uri.clone()).await?;
        if status != 200 {
            return Err(OidcError::Unavailable(format!("JWKS: status {status}")));
        }
        serde_json::from_slice(&body).map_err(|_| OidcError::Unavailable("unparsable JWKS".to_owned()))
    }
}

fn fresh<T>(slot: &RwLock<Option<Fetched<T>>>, ttl: Duration) -> Option<Arc<T>> {
    read(slot).as_ref().filter(|f| f.at.elapsed() < ttl).map(|f| f.value.clone())
}

// Poisoning cannot leave these values half-written (each write is one assignment): recover the guard.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
