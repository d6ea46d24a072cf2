//! The IdP's own cookies: the single sign-on session and the login form's CSRF token. `__Host-` prefixed and
//! `Secure` except on a loopback `http` issuer (development), `HttpOnly`, `Path=/`.

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};

use crate::server::Inner;

pub const SESSION: &str = "gh-session";
pub const CSRF: &str = "gh-csrf";

/// The cookie's name on this deployment: `__Host-` only when it can be `Secure`.
pub fn name(state: &Inner, base: &str) -> String {
    if state.settings.insecure_loopback_http() { base.to_owned() } else { format!("__Host-{base}") }
}

/// A cookie's value from the request, if present exactly once.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for cookie in Cookie::split_parse(value).flatten() {
            if cookie.name() == name {
                if found.is_some() {
                    return None; // duplicates: trust neither
                }
                found = Some(cookie.value().to_owned());
            }
        }
    }
    found
}

/// A `Set-Cookie` value. `max_age` in seconds; `None` for a browser-session cookie; `Some(0)` deletes.
pub fn set(state: &Inner, name: &str, value: &str, same_site: SameSite, max_age: Option<i64>) -> HeaderValue {
    let mut cookie = Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .secure(!state.settings.insecure_loopback_http())
        .same_site(same_site)
        .build();
    if let Some(seconds) = max_age {
        cookie.set_max_age(cookie::time::Duration::seconds(seconds));
    }
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}
