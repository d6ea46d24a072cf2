//! The pingora adapter: `ProxyHttp` for the gateway. It decides per request whether the gateway answers
//! itself (`/bff/*`, static files, refusals) or forwards to a route's upstream, and on the way out it strips
//! what the upstream must never see (`Cookie`, the browser's `Authorization`/`DPoP`, hop-by-hop headers) and
//! adds `Authorization: DPoP <token>` with a fresh proof (RFC 9449 §7.1) signed by the session's key.
//!
//! An upstream answering 401 `use_dpop_nonce` with a `DPoP-Nonce` (§9) gets the request once more with the
//! nonce in the proof (pingora's retry, for idempotent methods or a fully buffered body); the nonce is kept
//! per upstream for later requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_proto::dpop_key::DpopKey;
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorSource, ErrorType};

use crate::carrier::Carried;
use crate::endpoints::{self, has_csrf_header, unauthorized};
use crate::refresh::RefreshError;
use crate::request_checks;
use crate::response::LocalResponse;
use crate::routes::Route;
use crate::settings::TokenRequirement;
use crate::state::Gateway;

/// Largest body a `/bff/*` endpoint reads (a logout token is well under 8 KiB).
const MAX_MANAGEMENT_BODY: usize = 64 * 1024;
/// Bodies up to this size are buffered so a `use_dpop_nonce` answer can be retried.
const RETRY_BUFFER: usize = 64 * 1024;

pub struct GatewayProxy {
    pub gateway: Arc<Gateway>,
    /// Parsed DPoP keys by session id (parsing PKCS#8 per request would cost more than signing).
    keys: moka::sync::Cache<String, Arc<DpopKey>>,
    /// Ports of the TLS listeners (`X-Forwarded-Proto: https` for requests arriving there).
    tls_ports: Vec<u16>,
    /// `X-Forwarded-Host`: the public origin's host (and port), computed once.
    forwarded_host: Option<http::HeaderValue>,
}

impl GatewayProxy {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let tls_ports = gateway.settings.tls.iter().map(|t| t.listen.port()).collect();
        let keys = moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(3600)).build();
        let public = &gateway.settings.public_origin;
        let forwarded_host = public
            .host_str()
            .map(|host| match public.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
            .and_then(|host| http::HeaderValue::from_str(&host).ok());
        Self { gateway, keys, tls_ports, forwarded_host }
    }

    fn session_key(&self, id: &str, pkcs8: &[u8]) -> Option<Arc<DpopKey>> {
        if let Some(key) = self.keys.get(id) {
            return Some(key);
        }
        let key = Arc::new(DpopKey::from_pkcs8(pkcs8).ok()?);
        self.keys.insert(id.to_owned(), key.clone());
        Some(key)
    }
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    route: Option<Arc<Route>>,
    upstream_index: usize,
    attempt: usize,
    upstream_addr: Option<SocketAddr>,
    /// The token forwarded and the key proving possession of it.
    token: Option<(String, Arc<DpopKey>)>,
    /// The upstream asked for a DPoP nonce: retry once.
    nonce_retry: bool,
    nonce_retried: bool,
    /// The request body is buffered for a retry.
    buffered: bool,
    /// The caller's `X-Request-Id` when it is a sane token, else a random one; sent upstream and logged.
    request_id: String,
    /// Request body bytes forwarded in this attempt (the route's limit holds for chunked bodies too).
    body_bytes: usize,
    /// `Set-Cookie` lines for the session cookie (cookie mode: re-sealed after a refresh or slide, or deletions
    /// of a dead cookie), added to the response whether the gateway or the upstream answers.
    session_cookies: Vec<String>,
}

/// The request id to use: the incoming `X-Request-Id` if it is 1–64 visible ASCII characters without spaces
/// or quotes, else 16 random hex digits.
fn request_id(headers: &HeaderMap) -> String {
    let incoming = headers.get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    });
    match incoming {
        Some(id) => id.to_owned(),
        None => {
            let bytes: [u8; 8] = rand::random();
            format!("{:016x}", u64::from_be_bytes(bytes))
        }
    }
}

impl RequestCtx {
    fn replayable(&self, session: &Session) -> bool {
        session.req_header().method.is_idempotent() || (self.buffered && !session.as_ref().retry_buffer_truncated())
    }
}

/// True when the request arrived over TLS (HTTPS listener).
fn over_tls(session: &Session) -> bool {
    session.as_ref().digest().is_some_and(|digest| digest.ssl_digest.is_some())
}

/// Writes a local response (with the baseline security headers) and ends the request.
pub async fn write_local(session: &mut Session, response: LocalResponse) -> Result<()> {
    let mut header = ResponseHeader::build(response.status, Some(response.headers.len() + 6))?;
    for (name, value) in &response.headers {
        header.append_header(name.clone(), value.as_str())?;
    }
    let baseline = crate::security_headers::missing(
        |name| response.header_value(name).is_some(),
        response.header_value("content-type"),
        over_tls(session),
    );
    for (name, value) in baseline {
        header.insert_header(name, value)?;
    }
    // A HEAD answer may carry the length of the body it omits.
    if response.header_value("content-length").is_none() {
        header.insert_header("content-length", response.body.len().to_string())?;
    }
    let head = session.req_header().method == http::Method::HEAD;
    let empty = response.body.is_empty() || head;
    session.write_response_header(Box::new(header), empty).await?;
    if !empty {
        session.write_response_body(Some(response.body), true).await?;
    }
    Ok(())
}

/// Reads a request body up to `limit` bytes; `None` when it is larger.
async fn read_body(session: &mut Session, limit: usize) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Headers a browser could send to impersonate a user or rewrite the upstream's idea of the request
/// (catalogue BFF-PX02, BFF-PX04): identity headers set by authenticating proxies, and IIS/Symfony-style URL
/// overrides. The upstream only learns the user from the forwarded token.
const SPOOFABLE_HEADERS: [&str; 16] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-user-id",
    "x-remote-user",
    "remote-user",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
];

/// True when a `Set-Cookie` from an upstream names one of the gateway's own cookies (the session cookie, its
/// chunks, login transactions), or cannot be read: it never reaches the browser (catalogue BFF-PX07), so an
/// upstream cannot overwrite or plant a session. Cookie-name prefixes are compared case-insensitively
/// (RFC 6265bis §4.1.3: browsers match the `__Host-` prefix so).
fn is_gateway_cookie(set_cookie: &[u8], session_cookie: &str) -> bool {
    let Some(name) = std::str::from_utf8(set_cookie).ok().and_then(|v| cookie::Cookie::parse(v).ok()) else {
        return true;
    };
    let name = name.name().to_ascii_lowercase();
    name.starts_with(&session_cookie.to_ascii_lowercase())
        || name.starts_with(&crate::transaction::COOKIE_PREFIX.to_ascii_lowercase())
}

/// Request headers never forwarded, found in one pass over the request (most requests carry none of them, so
/// nothing is removed and no name is hashed in vain): the browser's cookies and credentials (the gateway sets its
/// own), identity and URL-override headers an upstream might trust, forwarding headers the gateway rewrites, and
/// hop-by-hop headers (RFC 9110 §7.6.1) with whatever `Connection` names — except, for a websocket upgrade the
/// route allows, `Connection` and `Upgrade` themselves.
fn stripped_headers(headers: &HeaderMap, keep_upgrade: bool) -> Vec<http::HeaderName> {
    const ALWAYS: [&str; 10] = [
        "cookie",
        "authorization",
        "dpop",
        "proxy-authorization",
        "x-forwarded-for",
        "forwarded",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
    ];
    let listed: Vec<String> = if keep_upgrade {
        Vec::new()
    } else {
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
            .filter(|t| !t.is_empty())
            .collect()
    };
    let doomed = |name: &str| {
        ALWAYS.contains(&name)
            || SPOOFABLE_HEADERS.contains(&name)
            || (!keep_upgrade && (name == "connection" || name == "upgrade" || listed.iter().any(|l| l == name)))
    };
    headers.keys().filter(|name| doomed(name.as_str())).cloned().collect()
}

impl GatewayProxy {
    /// Decides what a route request needs; `Some(response)` answers locally (refusals).
    async fn prepare_route(
        &self,
        session: &mut Session,
        route: &Arc<Route>,
        ctx: &mut RequestCtx,
        now: i64,
    ) -> Option<LocalResponse> {
        let gw = &self.gateway;
        let settings = &route.settings;
        let headers = &session.req_header().headers;
        if settings.require_csrf && !has_csrf_header(headers) {
            return Some(unauthorized("the X-CSRF: 1 header is required"));
        }
        // API routes (anti-forgery header or the user's token) answer only the application's own pages.
        let api = settings.require_csrf
            || matches!(
                settings.token,
                TokenRequirement::User | TokenRequirement::UserOrClient | TokenRequirement::UserOrNone
            );
        if api && let Some(refusal) = request_checks::cross_site_refusal(headers, &gw.public_origin) {
            return Some(refusal);
        }
        if declared_length(headers).is_some_and(|len| len > settings.max_body_bytes) {
            return Some(LocalResponse::error(413, "payload_too_large", "the request body is too large"));
        }
        let method = &session.req_header().method;
        if !settings.methods.is_empty() && !settings.methods.contains(method) {
            let allow: Vec<&str> = settings.methods.iter().map(http::Method::as_str).collect();
            return Some(
                LocalResponse::error(405, "method_not_allowed", "this route does not take this method")
                    .header("allow", allow.join(", ")),
            );
        }
        if session.is_upgrade_req() && !settings.websockets {
            return Some(LocalResponse::error(403, "forbidden", "websocket upgrades are not allowed on this route"));
        }

        let wants_user = !matches!(settings.token, TokenRequirement::None | TokenRequirement::Client);
        let carried = if wants_user {
            match gw.carried(headers, now).await {
                Ok(carried) => carried,
                Err(e) => {
                    tracing::error!(error = %e, "session store unavailable");
                    return Some(LocalResponse::error(503, "temporarily_unavailable", "sessions cannot be read now"));
                }
            }
        } else {
            Carried::default()
        };
        // Cookie mode: a dead cookie is cleared (and a stale one replaced) whatever happens next.
        ctx.session_cookies = gw.response_cookies(&carried, carried.session.as_deref());
        match (settings.token, carried.session.clone()) {
            (TokenRequirement::None, _) | (TokenRequirement::UserOrNone, None) => {}
            (TokenRequirement::User, None) => return Some(unauthorized("no session")),
            (TokenRequirement::User | TokenRequirement::UserOrClient | TokenRequirement::UserOrNone, Some(user)) => {
                let user = match gw.fresh(user, settings.resource.as_deref(), now).await {
                    Ok(user) => user,
                    Err(RefreshError::Ended(why)) => {
                        ctx.session_cookies = gw.clear_session_cookies();
                        return Some(unauthorized(why));
                    }
                    Err(RefreshError::Unavailable(_)) => {
                        return Some(LocalResponse::error(
                            503,
                            "temporarily_unavailable",
                            "the token service cannot be reached",
                        ));
                    }
                };
                let user = gw.touch(&user, now).await.unwrap_or(user);
                // Cookie mode: refreshed tokens or a slid idle time travel back in a re-sealed cookie.
                ctx.session_cookies = gw.response_cookies(&carried, Some(&user));
                if !user.tokens.has_scopes(&settings.required_scopes) {
                    return Some(LocalResponse::error(403, "insufficient_scope", "the session lacks a required scope"));
                }
                let Some(key) = self.session_key(&user.id, &user.dpop_key) else {
                    return Some(unauthorized("session key unreadable"));
                };
                let token = match &settings.resource {
                    None => user.tokens.access_token.clone(),
                    Some(resource) => match user.tokens.for_resource(resource) {
                        Some(token) if !token.access_token.is_empty() => token.access_token.clone(),
                        _ => {
                            return Some(LocalResponse::error(
                                403,
                                "invalid_target",
                                "the token service issues no token for this route's API to this session",
                            ));
                        }
                    },
                };
                ctx.token = Some((token, key));
            }
            (TokenRequirement::Client, _) | (TokenRequirement::UserOrClient, None) => {
                match gw
                    .refresher
                    .client_token(&gw.oidc, &settings.required_scopes, settings.resource.as_deref(), now)
                    .await
                {
                    Ok(tokens) => ctx.token = Some((tokens.access_token.clone(), gw.refresher.client_key().clone())),
                    Err(_) => {
                        return Some(LocalResponse::error(
                            503,
                            "temporarily_unavailable",
                            "the token service cannot be reached",
                        ));
                    }
                }
            }
        }
        ctx.upstream_index = route.pick();
        if ctx.token.is_some() && declared_length(headers).is_some_and(|len| len <= RETRY_BUFFER) {
            session.as_mut().enable_retry_buffering();
            ctx.buffered = true;
        }
        None
    }
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let now = crate::now();
        let gw = &self.gateway;
        let path = session.req_header().uri.path().to_owned();
        ctx.request_id = request_id(&session.req_header().headers);

        let header = session.req_header();
        // Too many cookies (CRYPT-22): the session cookie(s) are deleted too, so a browser that somehow holds an
        // oversized set is not locked out until they expire.
        let cookie_bomb = request_checks::cookie_refusal(&header.headers)
            .map(|refusal| endpoints::with_cookies(refusal, gw.clear_session_cookies()));
        let refusal = request_checks::method_refusal(&header.method)
            .or_else(|| request_checks::framing_refusal(&header.headers))
            .or(cookie_bomb)
            .or_else(|| request_checks::path_refusal(&path));
        if let Some(refusal) = refusal {
            // The body (if any) is not read: the connection cannot be reused.
            session.set_keepalive(None);
            write_local(session, refusal).await?;
            return Ok(true);
        }

        if path == "/bff" || path.starts_with("/bff/") {
            let body = if session.req_header().method == http::Method::POST {
                match read_body(session, MAX_MANAGEMENT_BODY).await? {
                    Some(body) => body,
                    None => {
                        let response = LocalResponse::error(413, "payload_too_large", "the body is too large");
                        write_local(session, response).await?;
                        return Ok(true);
                    }
                }
            } else {
                Vec::new()
            };
            let header = session.req_header();
            let request = endpoints::Request {
                method: header.method.as_str(),
                path: &path,
                query: header.uri.query(),
                headers: &header.headers,
                body: &body,
            };
            let response = endpoints::handle(gw, &request, now).await;
            write_local(session, response).await?;
            return Ok(true);
        }

        if let Some(route) = gw.routes.find(&path).cloned() {
            if let Some(refusal) = self.prepare_route(session, &route, ctx, now).await {
                let refusal = endpoints::with_cookies(refusal, std::mem::take(&mut ctx.session_cookies));
                write_local(session, refusal).await?;
                return Ok(true);
            }
            ctx.route = Some(route);
            return Ok(false);
        }

        let response = match &gw.static_files {
            Some(files) => {
                let header = session.req_header();
                let etag = header.headers.get(http::header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
                files.serve(header.method.as_str(), &path, etag).await
            }
            None => LocalResponse::error(404, "not_found", "nothing is served at this path"),
        };
        write_local(session, response).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        let Some(route) = &ctx.route else {
            return Error::e_explain(ErrorType::InternalError, "no route selected");
        };
        let upstream = route.upstream(ctx.upstream_index, ctx.attempt);
        ctx.upstream_addr = Some(upstream.addr);
        let sni = upstream.host.rsplit_once(':').map_or(upstream.host.as_str(), |(h, _)| h).to_owned();
        let mut peer = HttpPeer::new(upstream.addr, upstream.tls, sni);
        peer.options.connection_timeout = Some(route.settings.connect_timeout);
        peer.options.total_connection_timeout = Some(route.settings.connect_timeout);
        let read_timeout =
            if route.settings.websockets { Duration::from_secs(3600) } else { route.settings.read_timeout };
        peer.options.read_timeout = Some(read_timeout);
        peer.options.write_timeout = Some(route.settings.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let Some(route) = &ctx.route else {
            return Error::e_explain(ErrorType::InternalError, "no route selected");
        };
        let upstream = route.upstream(ctx.upstream_index, ctx.attempt);
        ctx.body_bytes = 0; // a retry replays the body from the start

        // What the upstream must never see: the browser's cookies and any credentials it sent itself.
        let keep_upgrade = route.settings.websockets && session.is_upgrade_req();
        for name in stripped_headers(&request.headers, keep_upgrade) {
            request.remove_header(&name);
        }

        let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string());
        let tls = session.server_addr().and_then(|a| a.as_inet()).is_some_and(|a| self.tls_ports.contains(&a.port()));
        if let Some(ip) = client_ip {
            request.insert_header("x-forwarded-for", ip)?;
        }
        request.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
        // BFF-PX02: the host browsers use is the configured public origin's, never the request's `Host`.
        if let Some(host) = &self.forwarded_host {
            request.insert_header("x-forwarded-host", host.clone())?;
        }

        let path_and_query = request.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let upstream_path = route.upstream_path(upstream, &path_and_query);
        let uri: http::Uri =
            upstream_path.parse().map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "bad upstream path"))?;
        request.set_uri(uri);
        request.insert_header("host", upstream.host.as_str())?;
        request.insert_header("x-request-id", ctx.request_id.as_str())?;

        if let Some((token, key)) = &ctx.token {
            let nonce = self.gateway.upstream_nonces.get(&upstream.addr);
            let htu = route.htu(upstream, upstream_path.split('?').next().unwrap_or("/"));
            let proof = key.proof(request.method.as_str(), &htu, Some(token), nonce.as_deref(), crate::now());
            request.insert_header("authorization", format!("DPoP {token}"))?;
            request.insert_header("dpop", proof)?;
        }
        Ok(())
    }

    /// The route's body limit for bodies without (or with an understated) `Content-Length`: counted as they
    /// stream, refused with 413 once over.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let (Some(route), Some(chunk)) = (&ctx.route, body.as_ref()) {
            ctx.body_bytes = ctx.body_bytes.saturating_add(chunk.len());
            if ctx.body_bytes > route.settings.max_body_bytes {
                return Error::e_explain(ErrorType::HTTPStatus(413), "the request body is over the route's limit");
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let nonce = response.headers.get("dpop-nonce").and_then(|v| v.to_str().ok()).map(Arc::<str>::from);
        if let (Some(nonce), Some(addr)) = (nonce, ctx.upstream_addr) {
            self.gateway.upstream_nonces.insert(addr, nonce);
            let asks = response.status == 401
                && response
                    .headers
                    .get_all(http::header::WWW_AUTHENTICATE)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| v.contains("use_dpop_nonce")));
            if asks && ctx.token.is_some() && !ctx.nonce_retried && ctx.replayable(session) {
                ctx.nonce_retry = true;
                ctx.nonce_retried = true;
                let mut e = Error::explain(ErrorType::HTTPStatus(401), "upstream asked for a DPoP nonce");
                e.set_retry(true);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // BFF-PX07: upstreams cannot set (or delete) the gateway's cookies: the session cookie and its chunks
        // (named from the configured cookie name) and the login transaction cookies.
        let set_cookies: Vec<http::HeaderValue> =
            response.headers.get_all(http::header::SET_COOKIE).iter().cloned().collect();
        if set_cookies.iter().any(|v| is_gateway_cookie(v.as_bytes(), self.gateway.cookie_name())) {
            response.remove_header("set-cookie");
            for value in set_cookies {
                if !is_gateway_cookie(value.as_bytes(), self.gateway.cookie_name()) {
                    response.append_header("set-cookie", value)?;
                }
            }
        }
        // The session's own cookie lines: a re-sealed cookie (cookie mode after a refresh or slide; server mode
        // after a key rotation) or the deletion of a dead one.
        let sets_session = !ctx.session_cookies.is_empty();
        for line in std::mem::take(&mut ctx.session_cookies) {
            response.append_header("set-cookie", line)?;
        }
        // BFF-HD06: an answer made with the user's token is personal: not stored unless the API says otherwise.
        // One that carries the session's cookie is never stored, whatever the API says (a shared cache would
        // hand the session to everyone).
        let user_token =
            ctx.token.is_some() && ctx.route.as_ref().is_some_and(|r| r.settings.token != TokenRequirement::Client);
        if sets_session || (user_token && !response.headers.contains_key(http::header::CACHE_CONTROL)) {
            response.insert_header("cache-control", "no-store")?;
        }
        let content_type =
            response.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let baseline = crate::security_headers::missing(
            |name| response.headers.contains_key(name),
            content_type.as_deref(),
            over_tls(session),
        );
        for (name, value) in baseline {
            response.insert_header(name, value)?;
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if std::mem::take(&mut ctx.nonce_retry) {
            e.set_retry(ctx.replayable(session) && session.response_written().is_none());
        } else if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Try the route's other upstreams once each.
        if let Some(route) = &ctx.route
            && ctx.attempt + 1 < route.upstreams.len()
        {
            ctx.attempt += 1;
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Self::CTX) -> FailToProxy {
        let (status, code, description) = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                (504, "gateway_timeout", "the upstream did not answer in time")
            }
            ErrorType::HTTPStatus(status) if *status == 401 => {
                (502, "bad_gateway", "the upstream refused the forwarded credentials")
            }
            ErrorType::HTTPStatus(status) if *status == 413 => {
                (413, "payload_too_large", "the request body is too large")
            }
            _ => match e.esource() {
                ErrorSource::Upstream => (502, "bad_gateway", "the upstream failed"),
                ErrorSource::Downstream => (400, "bad_request", "the request could not be read"),
                _ => (500, "internal_error", "the gateway failed"),
            },
        };
        let downstream_dead =
            matches!(e.etype(), ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed)
                && e.esource() == &ErrorSource::Downstream;
        if downstream_dead || session.response_written().is_some() {
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        }
        tracing::warn!(status, request_id = %ctx.request_id, error = %e, "request failed");
        session.set_keepalive(None);
        // Refreshed tokens (cookie mode) reach the browser even when the upstream failed.
        let response = endpoints::with_cookies(
            LocalResponse::error(status, code, description),
            std::mem::take(&mut ctx.session_cookies),
        );
        let _ = write_local(session, response).await;
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    fn names(list: Vec<http::HeaderName>) -> Vec<String> {
        let mut names: Vec<String> = list.iter().map(|n| n.as_str().to_owned()).collect();
        names.sort();
        names
    }

    /// Catalogue BFF-PX03/PX04/PX05: credentials, identity headers and hop-by-hop headers (and whatever
    /// `Connection` names) are stripped; ordinary headers pass.
    #[test]
    fn credentials_identity_and_hop_by_hop_headers_are_stripped() {
        let request = headers(&[
            ("accept", "application/json"),
            ("cookie", "__Host-gatehouse=x"),
            ("Authorization", "Bearer stolen"),
            ("dpop", "proof"),
            ("proxy-authorization", "Basic x"),
            ("x-user-id", "admin"),
            ("x-real-ip", "10.0.0.1"),
            ("x-original-url", "/admin"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-app", "kept"),
        ]);
        assert_eq!(
            names(stripped_headers(&request, false)),
            [
                "authorization",
                "connection",
                "cookie",
                "dpop",
                "forwarded",
                "proxy-authorization",
                "te",
                "upgrade",
                "x-forwarded-for",
                "x-original-url",
                "x-real-ip",
                "x-secret",
                "x-user-id"
            ]
        );
        // A websocket upgrade the route allows keeps `Connection` and `Upgrade` (and what Connection names).
        let kept = names(stripped_headers(&request, true));
        assert!(!kept.contains(&"connection".to_owned()) && !kept.contains(&"upgrade".to_owned()));
        assert!(kept.contains(&"cookie".to_owned()) && kept.contains(&"authorization".to_owned()));
        assert!(stripped_headers(&headers(&[("accept", "*/*"), ("x-app", "1")]), false).is_empty());
    }
}
