//! The token service as a running thing: shared state, the router, background tasks (key reload, expiry
//! clean-up) and `run`, which serves on a listener the caller bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::clock::{Clock, SystemClock};
use crate::http;
use crate::keys::{KeyError, KeySet, Keys};
use crate::seal::Sealer;
use crate::settings::Settings;
use crate::store::Store;
use crate::throttle::LoginThrottle;

/// Seconds a client registration is cached at the token-style endpoints.
pub const CLIENT_CACHE_TTL: u64 = 5;

/// Everything a request handler needs, shared by all of them.
pub struct Inner {
    pub settings: Settings,
    /// The issuer exactly as published (`iss`): no trailing slash added or removed.
    pub issuer: String,
    pub store: Store,
    pub keys: Keys,
    pub clock: Arc<dyn Clock>,
    pub throttle: LoginThrottle,
    /// Seals the pending authorization request carried by the login form.
    pub login_sealer: Sealer,
    /// Seals the IdP session cookie.
    pub session_sealer: Sealer,
    /// The discovery document, rendered once.
    pub discovery: Vec<u8>,
    /// Stateless DPoP nonces (keyed from the master key, so every node agrees).
    pub dpop_nonces: gatehouse_proto::dpop::NonceIssuer,
    /// Spent DPoP proof identifiers.
    pub dpop_replay: Arc<dyn gatehouse_proto::dpop::ReplayCache>,
    /// Registered clients as the token endpoint sees them, for `CLIENT_CACHE_TTL` (changes made with the CLI
    /// or on another node take effect within that time).
    pub client_cache: moka::future::Cache<String, Option<Arc<crate::store::ClientRecord>>>,
    /// Sends back-channel logout tokens when an IdP session ends (`backchannel`).
    pub logout_notifier: Arc<dyn crate::backchannel::LogoutNotifier>,
}

pub type AppState = Arc<Inner>;

impl Inner {
    /// A registered client, from the short-lived cache or the store.
    pub async fn client(
        &self,
        client_id: &str,
    ) -> Result<Option<Arc<crate::store::ClientRecord>>, crate::store::StoreError> {
        if let Some(hit) = self.client_cache.get(client_id).await {
            return Ok(hit);
        }
        let client = self.store.clients.client(client_id).await?.map(Arc::new);
        self.client_cache.insert(client_id.to_owned(), client.clone()).await;
        Ok(client)
    }

    pub fn now(&self) -> crate::store::Epoch {
        self.clock.now()
    }

    /// An endpoint URL under the issuer.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer.trim_end_matches('/'), path)
    }
}

/// A started token service.
pub struct Idp {
    state: AppState,
}

impl Idp {
    /// Loads (or on first start generates) signing keys and prepares the state.
    pub async fn start(settings: Settings, store: Store) -> Result<Self, KeyError> {
        Self::start_with_clock(settings, store, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(settings: Settings, store: Store, clock: Arc<dyn Clock>) -> Result<Self, KeyError> {
        let logout_notifier = Arc::new(crate::backchannel::HttpNotifier::new());
        Self::start_with_notifier(settings, store, clock, logout_notifier).await
    }

    /// `start_with_clock` with the sender of back-channel logout tokens injected (tests record them instead).
    pub async fn start_with_notifier(
        settings: Settings,
        store: Store,
        clock: Arc<dyn Clock>,
        logout_notifier: Arc<dyn crate::backchannel::LogoutNotifier>,
    ) -> Result<Self, KeyError> {
        let now = clock.now();
        let algs = [
            settings.signing.id_token_alg,
            settings.signing.access_token_alg,
            gatehouse_proto::vocab::SigningAlg::RS256,
        ];
        let records = crate::keys::ensure_active(&store, &settings.master_key, &algs, now).await?;
        let keys = Keys::new(KeySet::from_records(&records, &settings.master_key)?);
        let issuer = settings.issuer.as_str().to_owned();
        // url::Url adds a trailing slash to a bare origin; the published issuer has none (OIDC Discovery §3).
        let issuer = if settings.issuer.path() == "/" { issuer.trim_end_matches('/').to_owned() } else { issuer };
        let discovery = http::discovery::document(&issuer, &settings);
        let nonce_key = crate::seal::derive_key(&settings.master_key, "dpop-nonce");
        let state = Arc::new(Inner {
            dpop_nonces: gatehouse_proto::dpop::NonceIssuer::new(nonce_key, settings.dpop.nonce_lifetime),
            dpop_replay: Arc::new(gatehouse_proto::dpop::MemoryReplayCache::new(settings.dpop.window, 1_000_000)),
            client_cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(CLIENT_CACHE_TTL))
                .build(),
            logout_notifier,
            throttle: LoginThrottle::new(&settings.login),
            login_sealer: Sealer::derive(&settings.master_key, "login-request"),
            session_sealer: Sealer::derive(&settings.master_key, "idp-session"),
            discovery,
            issuer,
            keys,
            store,
            clock,
            settings,
        });
        Ok(Self { state })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The HTTP router. Tests drive it with `oneshot`; `run` serves it.
    pub fn router(&self) -> Router {
        let limit = self.state.settings.max_body_bytes;
        Router::new()
            .route("/.well-known/openid-configuration", get(http::discovery::openid_configuration))
            .route("/jwks", get(http::discovery::jwks))
            .route("/authorize", get(http::authorize::authorize_get).post(http::authorize::authorize_post))
            .route("/login", post(http::authorize::login))
            .route("/token", post(http::token::token))
            .route("/userinfo", get(http::userinfo::userinfo).post(http::userinfo::userinfo))
            .route("/end_session", get(http::end_session::end_session_get).post(http::end_session::end_session_post))
            .route("/par", post(http::par::par))
            .route("/introspect", post(http::introspect::introspect))
            .route("/revoke", post(http::revoke::revoke))
            .route("/static/style.css", get(http::pages::stylesheet))
            .fallback(http::pages::not_found)
            .layer(DefaultBodyLimit::max(limit))
            .layer(RequestBodyLimitLayer::new(limit))
            .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
            .with_state(self.state.clone())
    }

    /// Starts the background tasks, each `key_reload_interval` (the first tick at once): key maintenance
    /// (`keys::maintain`: publishes, activates, retires and removes keys on schedule), then key reload (picks up
    /// those steps and the ones taken by other nodes or `gatehouse keys rotate`); and expiry clean-up.
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        let state = self.state.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(state.settings.signing.key_reload_interval.max(1) as u64);
            let signing = &state.settings.signing;
            let algs = [signing.id_token_alg, signing.access_token_alg, gatehouse_proto::vocab::SigningAlg::RS256];
            let mut ticker = tokio::time::interval(every);
            let mut ticks: u64 = 0;
            loop {
                ticker.tick().await;
                ticks += 1;
                let master = &state.settings.master_key;
                if let Err(error) = crate::keys::maintain(&state.store, master, &algs, signing, state.now()).await {
                    tracing::warn!(%error, "signing key maintenance failed; retrying at the next tick");
                }
                if let Err(error) = state.keys.reload(&state.store, master).await {
                    tracing::warn!(%error, "signing key reload failed; keeping the current keys");
                }
                // Purge roughly once a minute.
                if ticks.is_multiple_of(60 / every.as_secs().clamp(1, 60)) {
                    match state.store.grants.purge_expired(state.now()).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::debug!(removed, "purged expired rows"),
                        Err(error) => tracing::warn!(%error, "purge failed"),
                    }
                }
            }
        })
    }
}

/// Serves the token service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    store: Store,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let idp = Idp::start(settings, store).await?;
    let background = idp.spawn_background();
    let app = idp.router().into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    background.abort();
    result.map_err(Into::into)
}
