//! The management endpoints under `/bff/`, answered by the gateway itself with Duende BFF's conventions so
//! existing SPA code works: `login`, `callback`, `user`, `logout`, `silent-login`, `backchannel`.
//!
//! Each is a plain async function from the request's parts to a `LocalResponse`; `proxy` only adapts pingora.

use gatehouse_proto::dpop_key::DpopKey;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::carrier::EstablishError;
use crate::cookies;
use crate::oidc::{AuthorizationRequest, OidcError};
use crate::refresh::tokens_from;
use crate::response::LocalResponse;
use crate::return_url;
use crate::session::Session;
use crate::state::Gateway;
use crate::transaction::{self, LoginTransaction};
use crate::user;

/// The parts of a request the endpoints look at.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The body, read only for `POST /bff/backchannel`.
    pub body: &'a [u8],
}

impl Request<'_> {
    fn param(&self, name: &str) -> Option<String> {
        let query = self.query?;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// True when a query parameter appears more than once (RFC 6749 §3.1: parameters must not repeat).
    fn repeated(&self, name: &str) -> bool {
        let Some(query) = self.query else { return false };
        url::form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == name).count() > 1
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn cookies(&self) -> Vec<(String, String)> {
        let values: Vec<&str> =
            self.headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
        cookies::parse(&values)
    }
}

/// True when the request carries the anti-forgery header `X-CSRF: 1` (Duende BFF's convention: a custom header
/// forces a CORS preflight, so a cross-site page cannot send it).
pub fn has_csrf_header(headers: &HeaderMap) -> bool {
    headers.get_all("x-csrf").iter().any(|v| v.as_bytes() == b"1")
}

/// 401 JSON for API-style callers (never a redirect).
pub fn unauthorized(description: &str) -> LocalResponse {
    LocalResponse::error(401, "unauthorized", description)
}

/// Routes a `/bff/*` request. `None` when the path is not a management endpoint (404 is the caller's).
pub async fn handle(gw: &Gateway, req: &Request<'_>, now: i64) -> LocalResponse {
    let endpoint = req.path.strip_prefix("/bff/").unwrap_or("");
    let allowed = match endpoint {
        "backchannel" => "POST",
        "login" | "callback" | "user" | "logout" | "silent-login" => "GET",
        _ => return LocalResponse::error(404, "not_found", "no such management endpoint"),
    };
    if req.method != allowed && !(allowed == "GET" && req.method == "HEAD") {
        return LocalResponse::error(405, "method_not_allowed", &format!("use {allowed}")).header("allow", allowed);
    }
    match endpoint {
        "login" => login(gw, req, false, now).await,
        "silent-login" => login(gw, req, true, now).await,
        "callback" => callback(gw, req, now).await,
        "user" => user_endpoint(gw, req, now).await,
        "logout" => logout(gw, req, now).await,
        "backchannel" => backchannel(gw, req, now).await,
        _ => unreachable!("matched above"),
    }
}

/// A plain error page for browser navigations (login, callback, logout).
fn error_page(status: u16, title: &str, detail: &str) -> LocalResponse {
    let escape = |s: &str| {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{d}</p><p><a href=\"/\">Back to the application</a></p></body></html>",
        t = escape(title),
        d = escape(detail)
    );
    LocalResponse::html(status, html)
        .header("content-security-policy", "default-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        // RFC 9700 §4.16 / catalogue OAUTH-UI01: the legacy header too, for browsers without CSP level 2.
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
}

/// `GET /bff/login?returnUrl=&prompt=` and `GET /bff/silent-login`: starts the authorization-code flow with
/// PKCE S256, a per-login DPoP key (`dpop_jkt`), PAR when the token service offers it.
async fn login(gw: &Gateway, req: &Request<'_>, silent: bool, now: i64) -> LocalResponse {
    if req.repeated("returnUrl") || req.repeated("prompt") {
        return error_page(400, "Cannot start the login", "A parameter was given more than once.");
    }
    let return_to = if silent {
        "/".to_owned()
    } else {
        match return_url::validate(req.param("returnUrl").as_deref()) {
            Ok(path) => path,
            Err(e) => {
                tracing::info!(error = %e, "login refused: returnUrl is not a local path");
                return error_page(400, "Cannot start the login", "The return address must be a local path.");
            }
        }
    };
    let metadata = match gw.oidc.metadata().await {
        Ok(metadata) => metadata,
        Err(e) => {
            tracing::warn!(error = %e, "login: token service unavailable");
            return error_page(503, "Login unavailable", "The sign-in service cannot be reached. Try again later.");
        }
    };
    let prompt = if silent { Some("none".to_owned()) } else { req.param("prompt") };
    if let Some(prompt) = &prompt
        && !metadata.prompt_values_supported.iter().any(|p| p == prompt)
    {
        return error_page(400, "Cannot start the login", "The sign-in service does not support that prompt value.");
    }
    let tx = LoginTransaction::new(return_to, silent, now);
    let Ok(dpop) = DpopKey::from_pkcs8(&tx.dpop_key) else {
        return error_page(500, "Cannot start the login", "Internal error.");
    };
    let request = AuthorizationRequest {
        redirect_uri: &gw.redirect_uri,
        state: &tx.state,
        nonce: &tx.nonce,
        code_challenge: &tx.code_challenge(),
        prompt: prompt.as_deref(),
    };
    let location = match gw.oidc.authorization_url(&request, &dpop).await {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(error = %e, "login: the authorization request failed");
            return error_page(503, "Login unavailable", "The sign-in service refused or failed the request.");
        }
    };
    let mut response = LocalResponse::redirect(location.as_str());
    for stale in transaction::stale_on_login(&gw.ring(), &req.cookies(), now) {
        response = response.header("set-cookie", cookies::clear(&stale));
    }
    let name = LoginTransaction::cookie_name(&tx.state);
    response.header(
        "set-cookie",
        cookies::set(&name, &tx.seal(&gw.ring()), crate::settings::SameSite::Lax, Some(transaction::MAX_AGE_SECONDS)),
    )
}

/// The page the silent-login iframe ends on: it tells the parent window (same origin only) the outcome, as
/// Duende BFF's does (`{source: "bff-silent-login", isLoggedIn}`).
fn silent_login_page(logged_in: bool) -> LocalResponse {
    let script = format!(
        "window.parent.postMessage({{source:'bff-silent-login',isLoggedIn:{logged_in}}},window.location.origin);"
    );
    let hash = gatehouse_proto::b64::encode(Sha256::digest(script.as_bytes()));
    let hash = hash.replace('-', "+").replace('_', "/");
    let padded = format!("{hash}{}", "=".repeat((4 - hash.len() % 4) % 4));
    LocalResponse::html(
        200,
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><script>{script}</script></head><body></body></html>"
        ),
    )
    .header(
        "content-security-policy",
        format!("default-src 'none'; base-uri 'none'; script-src 'sha256-{padded}'; frame-ancestors 'self'"),
    )
    // Framed by the application itself only (OAUTH-UI01), for browsers without CSP level 2 too.
    .header("x-frame-options", "SAMEORIGIN")
    .header("x-content-type-options", "nosniff")
}

/// `GET /bff/callback`: the token service's answer to `/bff/login`.
async fn callback(gw: &Gateway, req: &Request<'_>, now: i64) -> LocalResponse {
    for name in ["state", "code", "iss", "error"] {
        if req.repeated(name) {
            return error_page(400, "Login failed", "A parameter was given more than once.");
        }
    }
    let Some(state) = req.param("state") else {
        return error_page(400, "Login failed", "The response carries no state.");
    };
    let tx_name = LoginTransaction::cookie_name(&state);
    let sealed = req.cookies().into_iter().find(|(n, _)| *n == tx_name).map(|(_, v)| v);
    let Some(tx) = sealed.and_then(|v| LoginTransaction::open(&gw.ring(), &state, &v, now)) else {
        tracing::info!("callback refused: no login transaction for this state");
        return error_page(400, "Login failed", "This login is unknown or has expired. Start again.");
    };
    // From here on the transaction is used up, whatever the outcome; a replay of this callback is refused here
    // (catalogue BFF-SESS03, RFC 9700 §4.2.4: state is invalidated after its first use).
    let clear_tx = cookies::clear(&tx_name);
    let fail = |status: u16, detail: &str| {
        if tx.silent {
            silent_login_page(false).header("set-cookie", clear_tx.clone())
        } else {
            error_page(status, "Login failed", detail).header("set-cookie", clear_tx.clone())
        }
    };
    let state_hash = gatehouse_proto::b64::encode(Sha256::digest(state.as_bytes()));
    // One atomic insert: of two concurrent callbacks with the same state, only the first proceeds.
    if !gw.consumed_states.entry(state_hash).or_insert(()).is_fresh() {
        tracing::info!("callback refused: this login transaction was already used");
        return fail(400, "This login was already completed. Start again.");
    }

    let metadata = match gw.oidc.metadata().await {
        Ok(metadata) => metadata,
        Err(_) => return fail(503, "The sign-in service cannot be reached."),
    };
    // RFC 9207: the `iss` parameter identifies who answered (mix-up defence); required when advertised.
    match req.param("iss") {
        Some(iss) if iss != metadata.issuer => {
            tracing::warn!("callback refused: iss parameter names another issuer");
            return fail(400, "The response came from an unexpected issuer.");
        }
        None if metadata.authorization_response_iss_parameter_supported => {
            return fail(400, "The response does not name its issuer.");
        }
        _ => {}
    }
    if let Some(error) = req.param("error") {
        tracing::info!(%error, silent = tx.silent, "login ended with an error from the token service");
        return fail(400, "The sign-in service did not log you in.");
    }
    let Some(code) = req.param("code") else { return fail(400, "The response carries no code.") };
    let Ok(dpop) = DpopKey::from_pkcs8(&tx.dpop_key) else { return fail(400, "The login transaction is damaged.") };
    let tokens = match gw.oidc.exchange_code(&code, &tx.code_verifier, &gw.redirect_uri, &dpop).await {
        Ok(tokens) => tokens,
        Err(OidcError::Refused { error, .. }) => {
            tracing::info!(%error, "code exchange refused");
            return fail(400, "The sign-in service refused the login.");
        }
        Err(e) => {
            tracing::warn!(error = %e, "code exchange failed");
            return fail(503, "The sign-in service cannot be reached.");
        }
    };
    let Some(id_token) = tokens.id_token.clone() else { return fail(400, "The sign-in service sent no ID token.") };
    let claims = match gw.oidc.validate_id_token(&id_token, Some(&tx.nonce), now).await {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(error = %e, "ID token refused");
            return fail(400, "The sign-in service's answer did not verify.");
        }
    };
    let Ok(serde_json::Value::Object(claim_map)) = serde_json::to_value(&claims) else {
        return fail(400, "The ID token's claims are unreadable.");
    };

    // No fixation: whatever session the browser had is ended, and the new one gets a fresh id.
    if let Ok(carried) = gw.carried(req.headers, now).await
        && let Some(old) = &carried.session
    {
        let _ = gw.end_session(old, now).await;
    }
    let session = Session {
        id: Session::new_id(),
        sub: claims.sub.clone(),
        sid: claims.sid.clone().unwrap_or_else(Session::new_id),
        idp_sid: claims.sid.clone(),
        claims: claim_map,
        id_token,
        tokens: tokens_from(&tokens, None, now),
        dpop_key: tx.dpop_key.clone(),
        created_at: now,
        last_seen: now,
    };
    let session_cookies = match gw.establish(session).await {
        Ok(lines) => lines,
        Err(EstablishError::Store(e)) => {
            tracing::error!(error = %e, "cannot store the new session");
            return fail(503, "Sessions cannot be stored right now.");
        }
        Err(EstablishError::TooLarge) => {
            tracing::error!("the new session is too large for cookie chunks");
            return fail(500, "The session is too large to be kept.");
        }
    };
    tracing::info!(sub = %claims.sub, silent = tx.silent, "login complete: session created");
    let response = if tx.silent { silent_login_page(true) } else { LocalResponse::redirect(&tx.return_url) };
    with_cookies(response.header("set-cookie", clear_tx), session_cookies)
}

/// Adds `Set-Cookie` lines to a response.
pub fn with_cookies(response: LocalResponse, set_cookies: Vec<String>) -> LocalResponse {
    set_cookies.into_iter().fold(response, |response, line| response.header("set-cookie", line))
}

/// `GET /bff/user`: the session's claims in Duende's shape; 401 JSON when anonymous.
async fn user_endpoint(gw: &Gateway, req: &Request<'_>, now: i64) -> LocalResponse {
    if !has_csrf_header(req.headers) {
        return unauthorized("the X-CSRF: 1 header is required");
    }
    if let Some(refusal) = crate::request_checks::cross_site_refusal(req.headers, &gw.public_origin) {
        return refusal;
    }
    let carried = match gw.carried(req.headers, now).await {
        Ok(carried) => carried,
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable");
            return LocalResponse::error(503, "temporarily_unavailable", "sessions cannot be read right now");
        }
    };
    let Some(session) = carried.session.clone() else {
        return with_cookies(unauthorized("no session"), gw.response_cookies(&carried, None));
    };
    let session = if req.param("slide").as_deref() == Some("false") {
        session
    } else {
        match gw.touch(&session, now).await {
            Ok(session) => session,
            Err(_) => session,
        }
    };
    let document = user::user_document(
        &session.claims,
        &user::logout_url(&session.sid),
        session.expires_in(gw.lifetimes, now),
        None,
    );
    with_cookies(LocalResponse::json(200, &document), gw.response_cookies(&carried, Some(&session)))
}

/// `GET /bff/logout?sid=`: revokes the refresh token, ends the session, clears the cookie, then RP-initiated
/// logout at the token service. Without the session's `sid` it refuses (a cross-site link cannot log users out).
async fn logout(gw: &Gateway, req: &Request<'_>, now: i64) -> LocalResponse {
    let carried = match gw.carried(req.headers, now).await {
        Ok(carried) => carried,
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable");
            return error_page(503, "Logout unavailable", "Sessions cannot be read right now. Try again.");
        }
    };
    let clear = gw.clear_session_cookies();
    let Some(session) = carried.session else {
        // Nothing to end: leave no cookie behind and go home.
        return with_cookies(LocalResponse::redirect("/"), clear);
    };
    let sid_ok =
        req.param("sid").is_some_and(|sid| gatehouse_proto::secret::ct_eq(sid.as_bytes(), session.sid.as_bytes()));
    if !sid_ok || req.repeated("sid") {
        tracing::info!("logout refused: sid missing or wrong");
        return error_page(400, "Logout refused", "The logout link is not valid for this session.");
    }
    if let Some(refresh_token) = &session.tokens.refresh_token
        && let Err(e) = gw.oidc.revoke_refresh_token(refresh_token).await
    {
        tracing::warn!(error = %e, "refresh token revocation failed (the session ends anyway)");
    }
    if let Err(e) = gw.end_session(&session, now).await {
        tracing::error!(error = %e, "cannot remove the session");
        return error_page(503, "Logout unavailable", "Sessions cannot be changed right now. Try again.");
    }
    tracing::info!(sub = %session.sub, "logout: session ended");
    let location = match gw.oidc.end_session_url(&session.id_token, &gw.post_logout_redirect_uri).await {
        Ok(Some(url)) => url.to_string(),
        Ok(None) => "/".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "end_session endpoint unknown: logged out locally only");
            "/".to_owned()
        }
    };
    with_cookies(LocalResponse::redirect(&location), clear)
}

/// `POST /bff/backchannel`: an OpenID Connect back-channel logout token ends the sessions it names.
async fn backchannel(gw: &Gateway, req: &Request<'_>, now: i64) -> LocalResponse {
    let form_type = req
        .header("content-type")
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        return LocalResponse::error(400, "invalid_request", "expected application/x-www-form-urlencoded");
    }
    let tokens: Vec<String> = url::form_urlencoded::parse(req.body)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .collect();
    let [token] = tokens.as_slice() else {
        return LocalResponse::error(400, "invalid_request", "exactly one logout_token is required");
    };
    let logout = match gw.oidc.validate_logout_token(token, now).await {
        Ok(logout) => logout,
        Err(OidcError::Unavailable(e)) => {
            tracing::warn!(error = %e, "back-channel logout: cannot fetch the token service's keys");
            return LocalResponse::error(503, "temporarily_unavailable", "cannot verify the logout token now");
        }
        Err(e) => {
            tracing::info!(error = %e, "back-channel logout token refused");
            return LocalResponse::error(400, "invalid_request", "the logout token is not valid");
        }
    };
    match gw.end_idp_sessions(logout.sid.as_deref(), logout.sub.as_deref(), now).await {
        Ok(count) => {
            match count {
                Some(count) => tracing::info!(count, "back-channel logout: sessions ended"),
                None => tracing::info!("back-channel logout: sessions listed as ended"),
            }
            LocalResponse::new(200).header("cache-control", "no-store")
        }
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout: session store unavailable");
            LocalResponse::error(503, "temporarily_unavailable", "sessions cannot be changed right now")
        }
    }
}
