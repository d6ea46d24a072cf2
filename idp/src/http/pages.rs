//! Server-rendered pages (askama templates in `idp/templates/`), their security headers, and the stylesheet.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub client_name: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub csrf: &'a str,
    pub request: &'a str,
}

/// The end-session endpoint's page: "Sign out?" with its form, or, once `signed_out`, "You are signed out".
#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub signed_out: bool,
    pub client_name: Option<&'a str>,
    pub csrf: &'a str,
    pub request: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// Renders a page with no caching, no framing, no sniffing and a strict content security policy.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    let body = match page.render() {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "template rendering failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    html(status, &ErrorPage { title: "Sign-in problem", message })
}

pub async fn stylesheet() -> Response {
    let mut response = include_str!("../../static/style.css").into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

pub async fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "not_found"}))).into_response();
    crate::error::no_store(response.headers_mut());
    response
}
