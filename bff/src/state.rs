//! The gateway's shared state: settings, the cookie key ring, the session store, the OIDC client, routes,
//! the frontend, the refresher and per-upstream DPoP nonces. Built once at start, shared by every worker.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_proto::dpop_key::DpopKey;
use http::HeaderMap;

use crate::cookies;
use crate::oidc::OidcClient;
use crate::refresh::Refresher;
use crate::routes::Routes;
use crate::seal::KeyRing;
use crate::session::{Lifetimes, MemorySessionStore, Session, SessionStore, StoreError};
use crate::settings::{BffSettings, Frontend, RouteSettings, TokenRequirement};
use crate::static_files::StaticFiles;

pub struct Gateway {
    pub settings: BffSettings,
    pub ring: KeyRing,
    pub sessions: Arc<dyn SessionStore>,
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
        public_base: None,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(60),
        max_body_bytes: 16 * 1024 * 1024,
        websockets: true,
    }
}

/// Sessions whose `last_seen` is older than this are written back on use (sliding expiration without a store
/// write per request).
pub const SLIDE_GRANULARITY: i64 = 30;

/// The (name, value) pairs of the request's `Cookie` headers.
fn request_cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    let values: Vec<&str> = headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    cookies::parse(&values)
}

impl Gateway {
    /// Builds the state: key ring, session store (in memory), routes (DNS resolved here), frontend.
    pub async fn new(settings: BffSettings) -> anyhow::Result<Self> {
        let sessions: Arc<dyn SessionStore> =
            Arc::new(MemorySessionStore::new(settings.session.cache_capacity, settings.session.idle_timeout));
        Self::with_store(settings, sessions).await
    }

    pub async fn with_store(settings: BffSettings, sessions: Arc<dyn SessionStore>) -> anyhow::Result<Self> {
        let ring = KeyRing::new(&settings.cookie.keys)?;
        let mut route_settings = settings.routes.clone();
        if let Frontend::DevServer { upstream } = &settings.frontend {
            route_settings.push(dev_server_route(upstream));
        }
        let routes = Arc::new(Routes::resolve(&route_settings).await?);
        Routes::spawn_health_checks(&routes, Duration::from_secs(5));
        let static_files = match &settings.frontend {
            Frontend::Static { root } => Some(
                StaticFiles::new(root.clone())
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
        Ok(Self {
            ring,
            sessions,
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

    pub fn cookie_name(&self) -> &str {
        &self.settings.cookie.name
    }

    /// The session id in the request's session cookie, if one opens.
    pub fn session_id(&self, headers: &HeaderMap) -> Option<String> {
        self.opened_session_cookie(headers).map(|(id, _)| id)
    }

    /// The session id and the sealed value it came from.
    fn opened_session_cookie(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let name = self.cookie_name();
        request_cookies(headers)
            .into_iter()
            .filter(|(n, _)| n == name)
            .find_map(|(_, value)| Some((String::from_utf8(self.ring.open(name, &value)?).ok()?, value)))
    }

    /// True when the request carries a session cookie at all (valid or not): a refusal then also deletes it
    /// (catalogue §H: a cookie that does not open, or names no live session, is cleared).
    pub fn has_session_cookie(&self, headers: &HeaderMap) -> bool {
        request_cookies(headers).iter().any(|(n, _)| n == self.cookie_name())
    }

    /// A `Set-Cookie` re-sealing the session cookie under the current key when the request's cookie was sealed
    /// with an older key of the ring (catalogue CRYPT-12: rotation re-issues, so the old key can be retired
    /// once every active session has been seen).
    pub fn resealed_session_cookie(&self, headers: &HeaderMap) -> Option<String> {
        let (id, sealed) = self.opened_session_cookie(headers)?;
        let key_id = sealed.split_once('.').map(|(k, _)| k)?;
        (key_id != self.ring.current_id()).then(|| self.session_cookie(&id))
    }

    /// The live session the request's cookie names. A cookie that does not open, an unknown id, or an idle /
    /// expired session are all simply "no session" (expired ones are removed).
    pub async fn session(&self, headers: &HeaderMap, now: i64) -> Result<Option<Arc<Session>>, StoreError> {
        let Some(id) = self.session_id(headers) else { return Ok(None) };
        let Some(session) = self.sessions.get(&id).await? else { return Ok(None) };
        if !session.is_live(self.lifetimes, now) {
            self.sessions.remove(&id).await?;
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Slides the idle timeout: writes `last_seen = now` back when it is older than `SLIDE_GRANULARITY`.
    pub async fn touch(&self, session: &Arc<Session>, now: i64) -> Result<Arc<Session>, StoreError> {
        if now - session.last_seen < SLIDE_GRANULARITY {
            return Ok(session.clone());
        }
        let mut next = (**session).clone();
        next.last_seen = now;
        let next = Arc::new(next);
        self.sessions.put(next.clone()).await?;
        Ok(next)
    }

    /// `Set-Cookie` for a new session id.
    pub fn session_cookie(&self, id: &str) -> String {
        let name = self.cookie_name();
        cookies::set(name, &self.ring.seal(name, id.as_bytes()), self.settings.cookie.same_site, None)
    }
}
