//! The end-session endpoint (OpenID Connect RP-Initiated Logout 1.0), GET and POST: extracts the parameters,
//! verifies the `id_token_hint`, looks the client and the browser's IdP session up, lets `logout::decide` decide,
//! then ends the session (`backchannel::end_session`: session removed, its grants revoked, back-channel logout
//! tokens sent in the background) or shows the confirmation page first.
//!
//! The confirmation page posts back here with a CSRF token, double-submitted like the login form's: the same
//! value in the form, in the `gh-csrf` cookie and sealed (AES-GCM) in the form's `logout_request` together with
//! where to go afterwards, so no server state is kept for an unanswered question.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::SameSite;
use gatehouse_proto::secret::ct_eq;
use serde::{Deserialize, Serialize};

use crate::backchannel::{self, Backchannel};
use crate::http::authorize::is_form_request;
use crate::http::cookies;
use crate::http::pages::{self, LogoutPage};
use crate::logout::{self, EndSessionRequest, LogoutError, Next, PostLogoutRedirect};
use crate::params::Params;
use crate::server::{AppState, Inner};
use crate::store::{Epoch, IdpSessionRecord, StoreError};

/// How long a confirmation page stays usable.
const CONFIRMATION_TTL: Epoch = 15 * 60;
/// Associated data of the sealed confirmation ticket (the login form's sealer, a different purpose).
const TICKET_AAD: &[u8] = b"logout";

pub async fn end_session_get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    end_session(&state, &headers, query.unwrap_or_default().as_bytes()).await
}

/// POST: either an RP-initiated request sent as a form (RP-Initiated Logout §2), or the user's answer on the
/// confirmation page (it carries `logout_request`).
pub async fn end_session_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_form_request(&headers) {
        return pages::error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "The request must be a form submission.");
    }
    match serde_urlencoded::from_bytes::<ConfirmationForm>(&body) {
        Ok(form) if !form.logout_request.is_empty() => confirmed(&state, &headers, form).await,
        _ => end_session(&state, &headers, &body).await,
    }
}

async fn end_session(state: &Inner, headers: &HeaderMap, raw: &[u8]) -> Response {
    let Ok(params) = Params::parse(raw) else { return refuse(LogoutError::DuplicateParameter) };
    let request = match EndSessionRequest::parse(&params) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    let hint = match request.id_token_hint.as_deref() {
        Some(token) => match logout::verify_id_token_hint(&state.keys.current(), &state.issuer, token) {
            Ok(hint) => Some(hint),
            Err(rejection) => return refuse(LogoutError::InvalidHint(rejection)),
        },
        None => None,
    };
    let client = match request.client_id(hint.as_ref()) {
        Err(error) => return refuse(error),
        Ok(None) => None,
        Ok(Some(client_id)) => match state.store.clients.client(client_id).await {
            Ok(Some(client)) => Some(client),
            Ok(None) => return refuse(LogoutError::UnknownClient),
            Err(error) => return store_failure_page(error),
        },
    };
    let now = state.now();
    let current = match current_session(state, headers, now).await {
        Ok(current) => current,
        Err(error) => return store_failure_page(error),
    };
    let decision =
        match logout::decide(&request, hint.as_ref(), client.as_ref(), current.as_ref().map(|s| s.sid.as_str())) {
            Ok(decision) => decision,
            Err(error) => return refuse(error),
        };
    match decision.next {
        Next::EndNow { sid } => {
            if let Some(sid) = sid
                && let Err(error) = end(state, &sid, now).await
            {
                return store_failure_page(error);
            }
            signed_out(state, decision.redirect)
        }
        Next::Confirm => confirmation_page(state, decision.redirect, client.and_then(|c| c.name).as_deref(), now),
    }
}

/// The confirmation form, sealed into `logout_request`.
#[derive(Serialize, Deserialize)]
struct ConfirmationTicket {
    redirect: Option<PostLogoutRedirect>,
    csrf: String,
    issued_at: Epoch,
}

#[derive(Deserialize)]
struct ConfirmationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    logout_request: String,
}

/// Asks "Sign out?" with a fresh CSRF token (double submit: cookie + sealed in the form).
fn confirmation_page(
    state: &Inner,
    redirect: Option<PostLogoutRedirect>,
    client_name: Option<&str>,
    now: Epoch,
) -> Response {
    let csrf = crate::random::token::<32>();
    let ticket = ConfirmationTicket { redirect, csrf: csrf.clone(), issued_at: now };
    let sealed = match serde_json::to_vec(&ticket) {
        Ok(json) => state.login_sealer.seal(&json, TICKET_AAD),
        Err(_) => return pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong."),
    };
    let page = LogoutPage { signed_out: false, client_name, csrf: &csrf, request: &sealed };
    let mut response = pages::html(StatusCode::OK, &page);
    let cookie = cookies::set(state, &cookies::name(state, cookies::CSRF), &csrf, SameSite::Strict, None);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// The user confirmed: check the form, then end the browser's current session (ASVS 5.0 10.6.2).
async fn confirmed(state: &Inner, headers: &HeaderMap, form: ConfirmationForm) -> Response {
    let now = state.now();
    let ticket = state
        .login_sealer
        .open(&form.logout_request, TICKET_AAD)
        .and_then(|json| serde_json::from_slice::<ConfirmationTicket>(&json).ok())
        .filter(|t| now - t.issued_at <= CONFIRMATION_TTL && t.issued_at <= now + 60);
    let Some(ticket) = ticket else {
        return pages::error_page(StatusCode::BAD_REQUEST, "This sign-out page has expired.");
    };
    let cookie_csrf = cookies::read(headers, &cookies::name(state, cookies::CSRF)).unwrap_or_default();
    // Double submit: the form's token, the cookie's and the sealed one must all agree.
    let csrf_ok = !form.csrf.is_empty()
        && ct_eq(form.csrf.as_bytes(), ticket.csrf.as_bytes())
        && ct_eq(cookie_csrf.as_bytes(), ticket.csrf.as_bytes());
    if !csrf_ok {
        return pages::error_page(StatusCode::BAD_REQUEST, "The sign-out form could not be verified.");
    }
    match current_session(state, headers, now).await {
        Ok(Some(session)) => {
            if let Err(error) = end(state, &session.sid, now).await {
                return store_failure_page(error);
            }
        }
        Ok(None) => {} // already signed out (another tab, expiry)
        Err(error) => return store_failure_page(error),
    }
    signed_out(state, ticket.redirect)
}

/// Ends the session; the back-channel logout tokens go out in the background, never delaying the response.
async fn end(state: &Inner, sid: &str, now: Epoch) -> Result<(), StoreError> {
    let backchannel = Backchannel::of(state);
    let ended = backchannel::end_session(&state.store, &backchannel, sid, now).await?;
    backchannel::spawn_delivery(backchannel.notifier, ended.deliveries);
    Ok(())
}

/// The browser's live IdP session, if any (not extended: the user is leaving).
async fn current_session(
    state: &Inner,
    headers: &HeaderMap,
    now: Epoch,
) -> Result<Option<IdpSessionRecord>, StoreError> {
    let Some(cookie) = cookies::read(headers, &cookies::name(state, cookies::SESSION)) else { return Ok(None) };
    let Some(sid) = state.session_sealer.open(&cookie, b"sso").and_then(|b| String::from_utf8(b).ok()) else {
        return Ok(None);
    };
    let session = state.store.sessions.session(&sid, now).await?;
    Ok(session.filter(|s| now < s.created_at + state.settings.session.absolute_lifetime))
}

/// Signed out: the session and CSRF cookies are deleted (same names and attributes as when set, `Max-Age=0`),
/// then a 303 to the validated post-logout URI or the signed-out page.
fn signed_out(state: &Inner, redirect: Option<PostLogoutRedirect>) -> Response {
    let mut response = match redirect {
        Some(redirect) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(&redirect.location()) {
                headers.insert(header::LOCATION, location);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            response
        }
        None => pages::html(StatusCode::OK, &LogoutPage { signed_out: true, client_name: None, csrf: "", request: "" }),
    };
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookies::set(state, &cookies::name(state, cookies::SESSION), "", SameSite::Lax, Some(0)),
    );
    headers.append(
        header::SET_COOKIE,
        cookies::set(state, &cookies::name(state, cookies::CSRF), "", SameSite::Strict, Some(0)),
    );
    response
}

/// An error page, never a redirect (RP-Initiated Logout §3, catalogue CS-OP-L02…L06).
fn refuse(error: LogoutError) -> Response {
    tracing::info!(?error, "end_session refused");
    pages::html(StatusCode::BAD_REQUEST, &pages::ErrorPage { title: "Sign-out problem", message: error.message() })
}

fn store_failure_page(error: StoreError) -> Response {
    tracing::error!(%error, "store failure during sign-out");
    pages::error_page(StatusCode::SERVICE_UNAVAILABLE, "The sign-out service is temporarily unavailable.")
}
