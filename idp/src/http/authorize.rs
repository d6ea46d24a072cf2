//! The authorization endpoint (GET and POST, OIDC Core §3.1.2.1) and the login form behind it.
//!
//! With a live IdP session that satisfies `prompt`/`max_age` a code is issued at once; `prompt=none` without
//! one answers `login_required`; otherwise the login page is shown. The pending request travels in the form,
//! sealed (AES-GCM) together with the CSRF token, so no server state is kept for abandoned logins.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::SameSite;
use gatehouse_proto::Secret;
use gatehouse_proto::secret::ct_eq;
use serde::{Deserialize, Serialize};

use crate::authorize::{self, AuthorizeError, AuthorizeRequest, Prompt};
use crate::error::{ErrorCode, OAuthError};
use crate::http::cookies;
use crate::http::pages::{self, LoginPage};
use crate::params::Params;
use crate::server::{AppState, Inner};
use crate::store::{CodeRecord, Epoch, GrantRecord, IdpSessionRecord, UserRecord};
use crate::tokens;

/// How long a login form stays usable.
const LOGIN_TICKET_TTL: Epoch = 15 * 60;

pub async fn authorize_get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    authorize(&state, &headers, query.unwrap_or_default().as_bytes()).await
}

pub async fn authorize_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_form_request(&headers) {
        return pages::error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "The request must be a form submission.");
    }
    authorize(&state, &headers, &body).await
}

async fn authorize(state: &Inner, headers: &HeaderMap, raw: &[u8]) -> Response {
    let Ok(params) = Params::parse(raw) else {
        // RFC 6749 §3.1: parameters must not repeat. The redirect URI itself cannot be trusted: show a page.
        return pages::error_page(StatusCode::BAD_REQUEST, "A request parameter was sent more than once.");
    };
    let client = match params.get("client_id") {
        Some(id) => match state.store.clients.client(id).await {
            Ok(client) => client,
            Err(error) => return store_failure_page(error),
        },
        None => None,
    };
    let request = match params.get("request_uri") {
        // RFC 9126 §4: a pushed request, taken once; nothing in the query may change it.
        Some(request_uri) if request_uri.starts_with(super::par::REQUEST_URI_PREFIX) => {
            match pushed_request(state, &params, request_uri, client.as_ref()).await {
                Ok(request) => request,
                Err(response) => return response,
            }
        }
        // Anything else (a request object by reference, OIDC Core §6.2) is refused by `validate`.
        _ => {
            let request = match authorize::validate(&params, client.as_ref()) {
                Ok(request) => request,
                Err(error) => return authorize_error(state, error),
            };
            // RFC 9126 §5: PAR required for this client or for everyone.
            if state.settings.require_pushed_authorization_requests
                || client.as_ref().is_some_and(|c| c.require_pushed_authorization_requests)
            {
                return authorize_error(
                    state,
                    AuthorizeError::Redirect {
                        redirect_uri: request.redirect_uri,
                        state: request.state,
                        error: ErrorCode::InvalidRequest,
                        description: "this client must use pushed authorization requests",
                    },
                );
            }
            request
        }
    };
    let now = state.now();
    let session = match current_session(state, headers, now).await {
        Ok(session) => session,
        Err(error) => return store_failure_page(error),
    };
    if let Some(session) = session.filter(|s| authorize::session_satisfies(&request, s.auth_time, now)) {
        return match issue_code(state, &request, &session, now).await {
            Ok(location) => redirect(&location, &[]),
            Err(error) => authorize_error(state, redirect_error(&request, error)),
        };
    }
    if request.prompt == Prompt::None {
        // OIDC Core §3.1.2.6: no interaction allowed and none possible without a session.
        return authorize_error(
            state,
            AuthorizeError::Redirect {
                redirect_uri: request.redirect_uri.clone(),
                state: request.state.clone(),
                error: ErrorCode::LoginRequired,
                description: "the user is not signed in",
            },
        );
    }
    let client_name = client.as_ref().and_then(|c| c.name.clone()).unwrap_or_else(|| request.client_id.clone());
    let username = request.login_hint.clone().unwrap_or_default();
    login_page(state, StatusCode::OK, request, &client_name, &username, None)
}

/// Resolves `request_uri` to the request pushed at the PAR endpoint (single use, bound to its client).
async fn pushed_request(
    state: &Inner,
    params: &Params,
    request_uri: &str,
    client: Option<&crate::store::ClientRecord>,
) -> Result<AuthorizeRequest, Response> {
    let Some(client) = client else {
        return Err(pages::error_page(
            StatusCode::BAD_REQUEST,
            "The application that sent you here is not registered.",
        ));
    };
    // RFC 9126 §4 / OAUTH-PAR11: only client_id and request_uri may accompany it.
    if params.pairs().iter().any(|(name, value)| !value.is_empty() && name != "client_id" && name != "request_uri") {
        return Err(pages::error_page(StatusCode::BAD_REQUEST, "A pushed request cannot be changed in the browser."));
    }
    let record = match state.store.pushed.take_pushed(&tokens::digest(request_uri), state.now()).await {
        Ok(record) => record,
        Err(error) => return Err(store_failure_page(error)),
    };
    // invalid_request_uri (RFC 9126 §4): unknown, expired, used, or pushed by another client (OAUTH-PAR08/13).
    let request = record
        .filter(|r| r.client_id == client.client_id)
        .and_then(|r| serde_json::from_str::<AuthorizeRequest>(&r.request).ok());
    request.ok_or_else(|| {
        pages::error_page(StatusCode::BAD_REQUEST, "This sign-in request has expired or was already used.")
    })
}

#[derive(Serialize, Deserialize)]
struct LoginTicket {
    request: AuthorizeRequest,
    client_name: String,
    csrf: String,
    issued_at: Epoch,
}

/// Renders the login form with a fresh CSRF token (double-submit: cookie + sealed in the form).
fn login_page(
    state: &Inner,
    status: StatusCode,
    request: AuthorizeRequest,
    client_name: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let csrf = crate::random::token::<32>();
    let ticket =
        LoginTicket { request, client_name: client_name.to_owned(), csrf: csrf.clone(), issued_at: state.now() };
    let sealed = match serde_json::to_vec(&ticket) {
        Ok(json) => state.login_sealer.seal(&json, b"login"),
        Err(_) => return pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong."),
    };
    let page = LoginPage { client_name, username, error, csrf: &csrf, request: &sealed };
    let mut response = pages::html(status, &page);
    let cookie = cookies::set(state, &cookies::name(state, cookies::CSRF), &csrf, SameSite::Strict, None);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request: String,
    /// Set by the form's "Cancel" button: the user declines to sign in.
    #[serde(default)]
    cancel: String,
}

/// POST /login: checks CSRF and the pending request, throttles, verifies the password, starts the IdP
/// session (always a new session id: no fixation) and continues the authorization.
pub async fn login(State(state): State<AppState>, headers: HeaderMap, extensions: Extensions, body: Bytes) -> Response {
    if !is_form_request(&headers) {
        return pages::error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "The request must be a form submission.");
    }
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return pages::error_page(StatusCode::BAD_REQUEST, "The sign-in form was incomplete.");
    };
    let now = state.now();
    let ticket = state
        .login_sealer
        .open(&form.request, b"login")
        .and_then(|json| serde_json::from_slice::<LoginTicket>(&json).ok())
        .filter(|t| now - t.issued_at <= LOGIN_TICKET_TTL && t.issued_at <= now + 60);
    let Some(ticket) = ticket else {
        return pages::error_page(StatusCode::BAD_REQUEST, "This sign-in page has expired.");
    };
    let cookie_csrf = cookies::read(&headers, &cookies::name(&state, cookies::CSRF)).unwrap_or_default();
    // Double submit: the form's token, the cookie's and the sealed one must all agree.
    let csrf_ok = !form.csrf.is_empty()
        && ct_eq(form.csrf.as_bytes(), ticket.csrf.as_bytes())
        && ct_eq(cookie_csrf.as_bytes(), ticket.csrf.as_bytes());
    if !csrf_ok {
        return pages::error_page(StatusCode::BAD_REQUEST, "The sign-in form could not be verified.");
    }
    // The user declined (OIDC Core §3.1.2.6 `access_denied`): back to the client with `state` and `iss`, nothing
    // issued, no session started.
    if !form.cancel.is_empty() {
        match still_registered(&state, &ticket.request).await {
            Ok(true) => {}
            Ok(false) => return pages::error_page(StatusCode::BAD_REQUEST, "The application is no longer registered."),
            Err(error) => return store_failure_page(error),
        }
        tracing::info!(client_id = %ticket.request.client_id, "sign-in cancelled by the user");
        return authorize_error(
            &state,
            AuthorizeError::Redirect {
                redirect_uri: ticket.request.redirect_uri.clone(),
                state: ticket.request.state.clone(),
                error: ErrorCode::AccessDenied,
                description: "the user cancelled the sign-in",
            },
        );
    }
    let username = form.username.trim().to_owned();
    let ip = client_ip(&extensions);
    let retry = |status, message| {
        login_page(&state, status, ticket.request.clone(), &ticket.client_name, &username, Some(message))
    };
    if username.is_empty() || username.len() > 256 || form.password.len() > 1024 {
        return retry(StatusCode::UNAUTHORIZED, "Invalid username or password.");
    }
    if state.throttle.is_locked(&username, ip) {
        return retry(StatusCode::TOO_MANY_REQUESTS, "Too many failed attempts. Wait a few minutes and try again.");
    }
    let user = match verify_user(&state, &username, Secret::new(form.password)).await {
        Ok(user) => user,
        Err(error) => return store_failure_page(error),
    };
    let Some(user) = user else {
        state.throttle.record_failure(&username, ip);
        tracing::info!(ip = ?ip, "failed login");
        return retry(StatusCode::UNAUTHORIZED, "Invalid username or password.");
    };
    state.throttle.record_success(&username);
    // The client may have changed since the form was shown: validate again before issuing anything.
    match still_registered(&state, &ticket.request).await {
        Ok(true) => {}
        Ok(false) => return pages::error_page(StatusCode::BAD_REQUEST, "The application is no longer registered."),
        Err(error) => return store_failure_page(error),
    }
    let session = IdpSessionRecord {
        sid: crate::admin::new_id(),
        sub: user.sub.clone(),
        auth_time: now,
        created_at: now,
        last_seen: now,
        expires_at: now + state.settings.session.idle_timeout.min(state.settings.session.absolute_lifetime),
    };
    if let Err(error) = state.store.sessions.insert_session(session.clone()).await {
        return store_failure_page(error);
    }
    tracing::info!(sid = %session.sid, "login");
    let location = match issue_code(&state, &ticket.request, &session, now).await {
        Ok(location) => location,
        Err(error) => return authorize_error(&state, redirect_error(&ticket.request, error)),
    };
    let session_cookie = state.session_sealer.seal(session.sid.as_bytes(), b"sso");
    let cookies = [
        cookies::set(&state, &cookies::name(&state, cookies::SESSION), &session_cookie, SameSite::Lax, None),
        cookies::set(&state, &cookies::name(&state, cookies::CSRF), "", SameSite::Strict, Some(0)),
    ];
    redirect(&location, &cookies)
}

/// Whether the request's client still exists with the request's redirect URI registered.
async fn still_registered(state: &Inner, request: &AuthorizeRequest) -> Result<bool, crate::store::StoreError> {
    let client = state.store.clients.client(&request.client_id).await?;
    Ok(client.is_some_and(|c| c.redirect_uris.contains(&request.redirect_uri)))
}

async fn verify_user(
    state: &Inner,
    username: &str,
    password: Secret,
) -> Result<Option<UserRecord>, crate::store::StoreError> {
    let user = state.store.users.user_by_username(username).await?;
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    // argon2 is CPU-heavy: keep it off the async workers.
    let ok =
        tokio::task::spawn_blocking(move || crate::password::verify(&password, phc.as_deref())).await.unwrap_or(false);
    Ok(user.filter(|_| ok))
}

/// The IdP session named by the cookie, if valid now; extends its idle expiry.
async fn current_session(
    state: &Inner,
    headers: &HeaderMap,
    now: Epoch,
) -> Result<Option<IdpSessionRecord>, crate::store::StoreError> {
    let Some(cookie) = cookies::read(headers, &cookies::name(state, cookies::SESSION)) else { return Ok(None) };
    let Some(sid) = state.session_sealer.open(&cookie, b"sso").and_then(|b| String::from_utf8(b).ok()) else {
        return Ok(None);
    };
    let Some(session) = state.store.sessions.session(&sid, now).await? else { return Ok(None) };
    let settings = &state.settings.session;
    let absolute_end = session.created_at + settings.absolute_lifetime;
    if now >= absolute_end {
        return Ok(None);
    }
    let expires_at = (now + settings.idle_timeout).min(absolute_end);
    state.store.sessions.touch_session(&sid, now, expires_at).await?;
    Ok(Some(session))
}

/// Issues an authorization code for the request and returns the redirect URL (RFC 6749 §4.1.2, RFC 9207).
async fn issue_code(
    state: &Inner,
    request: &AuthorizeRequest,
    session: &IdpSessionRecord,
    now: Epoch,
) -> Result<String, OAuthError> {
    let code = tokens::new_opaque_token();
    let grant = GrantRecord {
        grant_id: crate::admin::new_id(),
        client_id: request.client_id.clone(),
        sub: session.sub.clone(),
        scope: request.scope.clone(),
        auth_time: session.auth_time,
        sid: Some(session.sid.clone()),
        created_at: now,
        expires_at: now + state.settings.tokens.refresh_token_absolute_ttl.max(state.settings.tokens.code_ttl),
        revoked_at: None,
    };
    let record = CodeRecord {
        code_hash: tokens::digest(&code),
        grant_id: grant.grant_id.clone(),
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        dpop_jkt: request.dpop_jkt.clone(),
        expires_at: now + state.settings.tokens.code_ttl.min(60),
    };
    state.store.grants.insert_code(grant, record).await?;
    Ok(authorize::response_url(&request.redirect_uri, &[("code", &code)], request.state.as_deref(), &state.issuer))
}

fn redirect_error(request: &AuthorizeRequest, error: OAuthError) -> AuthorizeError {
    AuthorizeError::Redirect {
        redirect_uri: request.redirect_uri.clone(),
        state: request.state.clone(),
        error: if error.code == ErrorCode::ServerError {
            ErrorCode::ServerError
        } else {
            ErrorCode::TemporarilyUnavailable
        },
        description: error.description,
    }
}

fn authorize_error(state: &Inner, error: AuthorizeError) -> Response {
    match error {
        AuthorizeError::Page(message) => pages::error_page(StatusCode::BAD_REQUEST, message),
        AuthorizeError::Redirect { redirect_uri, state: client_state, error, description } => {
            let location = authorize::response_url(
                &redirect_uri,
                &[("error", error.as_str()), ("error_description", description)],
                client_state.as_deref(),
                &state.issuer,
            );
            redirect(&location, &[])
        }
    }
}

/// 303 See Other, so a POSTed form is not re-posted to the client (RFC 9700 §4.12).
fn redirect(location: &str, cookies: &[HeaderValue]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie.clone());
    }
    response
}

fn store_failure_page(error: crate::store::StoreError) -> Response {
    tracing::error!(%error, "store failure during authorization");
    pages::error_page(StatusCode::SERVICE_UNAVAILABLE, "The sign-in service is temporarily unavailable.")
}

/// Whether the request body is `application/x-www-form-urlencoded` (parameters are ignored).
pub(crate) fn is_form_request(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

fn client_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())
}
