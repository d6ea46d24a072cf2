//! A response the gateway writes itself (management endpoints, static files, refusals on API routes),
//! independent of pingora so the code producing it is testable as plain functions.

use bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    /// Header name (lower case) and value; `set-cookie` may repeat.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl LocalResponse {
    pub fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Bytes::new() }
    }

    /// A JSON body with `Content-Type: application/json` and `Cache-Control: no-store`.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(serde_json::to_vec(value).unwrap_or_default())
    }

    /// `{"error": code, "error_description": description}` (the RFC 6749 §5.2 shape) with `no-store`.
    pub fn error(status: u16, code: &str, description: &str) -> Self {
        Self::json(status, &serde_json::json!({"error": code, "error_description": description}))
    }

    /// A `302 Found` to `location`, never cached.
    pub fn redirect(location: &str) -> Self {
        Self::new(302).header("location", location).header("cache-control", "no-store")
    }

    /// An HTML page (`text/html; charset=utf-8`, `no-store`).
    pub fn html(status: u16, html: impl Into<Bytes>) -> Self {
        Self::new(status)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .body(html)
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of header `name`.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (e.g. all `set-cookie`s).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}
