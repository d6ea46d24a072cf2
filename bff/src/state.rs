//! The gateway's shared state: settings, the cookie key ring, the session store, the OIDC client, routes,
//! the frontend, the refresher and per-upstream DPoP nonces. Built once at start, shared by every worker.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_proto::dpop_key::DpopKey;
use http::HeaderMap;

use crate::carrier::SessionCarrier;
use crate::cookie_keys::{CookieKeys, Replaced};
use crate::cookies;
use crate::oidc::OidcClient;
use crate::refresh::Refresher;
use crate::routes::Routes;
use crate::seal::{KeyRing, KeyRingError};
use crate::session::{
    CachedSessionStore, Lifetimes, MemorySessionStore, Session, SessionStore, SqliteSessionStore, StoreError,
};
use crate::settings::{BffSettings, Frontend, RouteSettings, SessionMode, SessionStoreSettings, TokenRequirement};
use crate::static_files::StaticFiles;

pub struct Gateway {
    pub settings: BffSettings,
    /// The cookie key ring (`ring()` for the current one); shared with the session store, replaced on reload.
    pub cookie_keys: Arc<CookieKeys>,
    pub sessions: Arc<dyn SessionStore>,
    /// The session mode: where session state travels (`carrier`).
    pub carrier: SessionCarrier,
    pub oidc: OidcClient,
    pub routes: Arc<Routes>,
    pub static_files: Option<StaticFiles>,
    pub refresher: Refresher,
    /// Latest `DPoP-Nonce` each upstream (by socket address) asked for.
    pub upstream_nonces: moka::sync::Cache<std::net::SocketAddr, Arc<str>>,
    pub lifetimes: Lifetimes,
    /// `<public_origin>/bff/callback`.
    pub redirect_uri: String,
    /// `<public_origin>/`.
    pub post_logout_redirect_uri: String,
    /// `state` values (SHA-256, base64url) of login transactions a callback already used, kept as long as a
    /// transaction cookie lives: a replayed callback is refused before the code reaches the token service
    /// (catalogue BFF-SESS03, RFC 9700 §4.2.4). Per instance; several instances still rely on the token service
    /// refusing a reused code.
    pub consumed_states: moka::sync::Cache<String, ()>,
    /// `<public_origin>` as browsers send it in `Origin`.
    pub public_origin: String,
}

/// The catch-all route to a frontend dev server (Vite & co.): no token, no CSRF header, websockets for hot
/// reload.
fn dev_server_route(upstream: &url::Url) -> RouteSettings {
    RouteSettings {
        path: "/".into(),
        upstreams: vec![upstream.clone()],
        strip_prefix: false,
        token: TokenRequirement::None,
        require_csrf: false,
        required_scopes: Vec::new(),
        resource: None,
        public_base: None,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(60),
        max_body_bytes: 16 * 1024 * 1024,
        websockets: true,
        methods: Vec::new(),
    }
}

/// How often expired sessions are deleted from a durable store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// The store `settings.session.store` names: process memory, or the SQLite file with the cache in front (its
/// bodies sealed with the gateway's cookie keys `keys`; expired rows swept every `SWEEP_INTERVAL`).
async fn open_session_store(settings: &BffSettings, keys: &Arc<CookieKeys>) -> anyhow::Result<Arc<dyn SessionStore>> {
    let session = &settings.session;
    // Cookie mode keeps no session server-side: no database file to open.
    let store = if session.mode == SessionMode::Cookie { &SessionStoreSettings::Memory } else { &session.store };
    Ok(match store {
        SessionStoreSettings::Memory => Arc::new(MemorySessionStore::new(session.cache_capacity, session.idle_timeout)),
        SessionStoreSettings::Sqlite { path } => {
            let lifetimes = Lifetimes {
                idle: session.idle_timeout.as_secs() as i64,
                absolute: session.absolute_lifetime.as_secs() as i64,
            };
            let durable = Arc::new(
                SqliteSessionStore::open(path, keys.clone(), lifetimes)
                    .await
                    .map_err(|e| anyhow::anyhow!("session store {}: {e}", path.display()))?,
            );
            SqliteSessionStore::spawn_sweeper(&durable, SWEEP_INTERVAL);
            Arc::new(CachedSessionStore::new(durable, session.cache_capacity, session.idle_timeout))
        }
    })
}

/// Sessions whose `last_seen` is older than this are written back on use (sliding expiration without a store
/// write per request).
pub const SLIDE_GRANULARITY: i64 = 30;

impl Gateway {
    /// Builds the state: key ring, the configured session store, routes (DNS resolved here), frontend.
    pub async fn new(settings: BffSettings) -> anyhow::Result<Self> {
        let keys: Arc<CookieKeys> = KeyRing::new(&settings.cookie.keys)?.into();
        let sessions = open_session_store(&settings, &keys).await?;
        Self::build(settings, sessions, keys).await
    }

    /// The state with a session store of the caller's (tests); the cookie keys are `settings.cookie.keys`.
    pub async fn with_store(settings: BffSettings, sessions: Arc<dyn SessionStore>) -> anyhow::Result<Self> {
        let keys = KeyRing::new(&settings.cookie.keys)?.into();
        Self::build(settings, sessions, keys).await
    }

    async fn build(
        settings: BffSettings,
        sessions: Arc<dyn SessionStore>,
        cookie_keys: Arc<CookieKeys>,
    ) -> anyhow::Result<Self> {
        let mut route_settings = settings.routes.clone();
        if let Frontend::DevServer { upstream } = &settings.frontend {
            route_settings.push(dev_server_route(upstream));
        }
        let routes = Arc::new(Routes::resolve(&route_settings).await?);
        Routes::spawn_health_checks(&routes, Duration::from_secs(5));
        let static_files = match &settings.frontend {
            Frontend::Static { root } => Some(
                StaticFiles::new(root.clone(), &settings.oidc.issuer)
                    .map_err(|e| anyhow::anyhow!("frontend directory {}: {e}", root.display()))?,
            ),
            _ => None,
        };
        let client_key = Arc::new(DpopKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?);
        let origin = settings.public_origin.origin().ascii_serialization();
        let lifetimes = Lifetimes {
            idle: settings.session.idle_timeout.as_secs() as i64,
            absolute: settings.session.absolute_lifetime.as_secs() as i64,
        };
        let carrier = SessionCarrier::new(&settings.session, &settings.cookie.name)?;
        Ok(Self {
            cookie_keys,
            sessions,
            carrier,
            oidc: OidcClient::new(settings.oidc.clone()),
            routes,
            static_files,
            refresher: Refresher::new(settings.session.refresh_skew, client_key),
            upstream_nonces: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            lifetimes,
            consumed_states: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs(crate::transaction::MAX_AGE_SECONDS as u64 + 120))
                .build(),
            public_origin: origin.clone(),
            redirect_uri: format!("{origin}/bff/callback"),
            post_logout_redirect_uri: format!("{origin}/"),
            settings,
        })
    }

    /// The cookie key ring as of now: hold it for the whole of one seal or open.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.cookie_keys.current()
    }

    /// Replaces the cookie keys (newest first) while running; an invalid list keeps the current ones. The SQLite
    /// session store shares the ring, so stored sessions follow.
    pub fn replace_cookie_keys(&self, keys: &[crate::settings::CookieKey]) -> Result<Replaced, KeyRingError> {
        self.cookie_keys.replace(keys)
    }

    pub fn cookie_name(&self) -> &str {
        &self.settings.cookie.name
    }

    /// The session id in the request's session cookie, if one opens.
    pub fn session_id(&self, headers: &HeaderMap) -> Option<String> {
        self.opened_session_cookie(&cookies::from_headers(headers)).map(|(id, _)| id)
    }

    /// The session id in the request's session cookie (of the request's cookie `pairs`) and the id of the key
    /// that sealed it.
    pub(crate) fn opened_session_cookie(&self, pairs: &[(String, String)]) -> Option<(String, String)> {
        let name = self.cookie_name();
        pairs.iter().filter(|(n, _)| n == name).find_map(|(_, value)| {
            let id = String::from_utf8(self.ring().open(name, value)?).ok()?;
            Some((id, value.split_once('.')?.0.to_owned()))
        })
    }

    /// True when the request carries a session cookie at all (valid or not): a refusal then also deletes it
    /// (catalogue §H: a cookie that does not open, or names no live session, is cleared).
    pub fn has_session_cookie(&self, headers: &HeaderMap) -> bool {
        cookies::from_headers(headers).iter().any(|(n, _)| n == self.cookie_name())
    }

    /// The live session the request's cookie names. A cookie that does not open, an unknown id, or an idle /
    /// expired session are all simply "no session" (expired ones are removed).
    pub async fn session(&self, headers: &HeaderMap, now: i64) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.carried(headers, now).await?.session)
    }

    /// Slides the idle timeout: writes `last_seen = now` back when it is older than `SLIDE_GRANULARITY`.
    pub async fn touch(&self, session: &Arc<Session>, now: i64) -> Result<Arc<Session>, StoreError> {
        if now - session.last_seen < SLIDE_GRANULARITY {
            return Ok(session.clone());
        }
        let mut next = (**session).clone();
        next.last_seen = now;
        // The stored state wins over this request's copy (a refresh may have rotated the tokens meanwhile); a
        // session ended meanwhile stays ended and this request goes on with the copy it has.
        Ok(self.keep_touched(Arc::new(next)).await?.unwrap_or_else(|| session.clone()))
    }

    /// `Set-Cookie` for a new session id.
    pub fn session_cookie(&self, id: &str) -> String {
        let name = self.cookie_name();
        cookies::set(name, &self.ring().seal(name, id.as_bytes()), self.settings.cookie.same_site, None)
    }
}
