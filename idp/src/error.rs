//! OAuth 2.0 / OpenID Connect error codes and the one place they are rendered as JSON (RFC 6749 §5.2) with
//! `Cache-Control: no-store` and, where required, `WWW-Authenticate`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Error codes this server returns (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1; OIDC Core §3.1.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    /// RFC 8707 §2: a `resource` the server does not know or will not issue for.
    InvalidTarget,
    AccessDenied,
    LoginRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    InvalidToken,
    InsufficientScope,
    InvalidDpopProof,
    UseDpopNonce,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::LoginRequired => "login_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::InvalidToken => "invalid_token",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::InsufficientScope => "insufficient_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status for this error at the token-style endpoints.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest
            | Self::InvalidGrant
            | Self::UnauthorizedClient
            | Self::UnsupportedGrantType
            | Self::UnsupportedResponseType
            | Self::InvalidScope
            | Self::InvalidTarget
            | Self::AccessDenied
            | Self::LoginRequired
            | Self::RequestNotSupported
            | Self::RequestUriNotSupported
            | Self::InvalidDpopProof
            | Self::UseDpopNonce => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answered to the client. `description` is for developers, never contains secrets or internals, and
/// only uses RFC 6749 Appendix A characters (no CR/LF/TAB, no `"` or `\`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: &'static str,
    /// `WWW-Authenticate` challenge to add (e.g. `Basic realm="gatehouse"` for invalid_client via Basic).
    pub challenge: Option<Challenge>,
    /// A fresh `DPoP-Nonce` to send (RFC 9449 §8, §9).
    pub dpop_nonce: Option<String>,
    /// Overrides `code.status()` (resource endpoints answer DPoP errors with 401: RFC 9449 §7.1).
    pub status: Option<StatusCode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer,
    /// RFC 9449 §7.1: `DPoP error="…", algs="…"`.
    Dpop,
    /// No credentials at a resource: offer both schemes, without an error code (RFC 6750 §3.1).
    BearerAndDpop,
}

impl OAuthError {
    pub const fn new(code: ErrorCode, description: &'static str) -> Self {
        Self { code, description, challenge: None, dpop_nonce: None, status: None }
    }

    pub fn with_nonce(mut self, nonce: String) -> Self {
        self.dpop_nonce = Some(nonce);
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// A DPoP proof failure at the token or PAR endpoint (RFC 9449 §5, §8).
    pub fn from_dpop(error: gatehouse_proto::dpop::DpopError) -> Self {
        use gatehouse_proto::dpop::DpopError;
        match error {
            DpopError::UseNonce => Self::new(ErrorCode::UseDpopNonce, "a DPoP nonce is required"),
            DpopError::Replay => Self::new(ErrorCode::InvalidDpopProof, "the DPoP proof was used before"),
            DpopError::KeyMismatch => Self::new(ErrorCode::InvalidDpopProof, "the DPoP key does not match the binding"),
            _ => Self::new(ErrorCode::InvalidDpopProof, "the DPoP proof is invalid"),
        }
    }

    pub fn with_challenge(mut self, challenge: Challenge) -> Self {
        self.challenge = Some(challenge);
        self
    }

    pub fn server_error() -> Self {
        Self::new(ErrorCode::ServerError, "the server could not complete the request")
    }
}

/// Standard headers for every token-style JSON answer (RFC 6749 §5.1): no caching.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code.as_str(), "error_description": self.description});
        let status = self.status.unwrap_or_else(|| self.code.status());
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        no_store(headers);
        match self.challenge {
            Some(Challenge::Basic) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"gatehouse\""));
            }
            Some(Challenge::Bearer) => {
                // RFC 6750 §3: the error code in the challenge; no description to keep the header simple.
                let value = format!("Bearer error=\"{}\"", self.code.as_str());
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Some(Challenge::Dpop) => {
                let algs = gatehouse_proto::dpop::DPOP_ALGS.join(" ");
                let value = format!("DPoP error=\"{}\", algs=\"{algs}\"", self.code.as_str());
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Some(Challenge::BearerAndDpop) => {
                let algs = gatehouse_proto::dpop::DPOP_ALGS.join(" ");
                headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                if let Ok(value) = HeaderValue::from_str(&format!("DPoP algs=\"{algs}\"")) {
                    headers.append(header::WWW_AUTHENTICATE, value);
                }
            }
            None => {}
        }
        if let Some(nonce) = self.dpop_nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
            headers.insert("dpop-nonce", nonce);
        }
        response
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "store failure");
        Self::new(ErrorCode::TemporarilyUnavailable, "the server is temporarily unable to handle the request")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_json_no_store() {
        let response = OAuthError::new(ErrorCode::InvalidGrant, "x").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let response = OAuthError::new(ErrorCode::InvalidClient, "x").with_challenge(Challenge::Basic).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
