//! DPoP at this server's endpoints: reads the `DPoP` header, runs the shared verifier from
//! `gatehouse_proto::dpop` (RFC 9449 §4.3) with this server's nonce policy, and spends the proof's `jti`.

use axum::http::HeaderMap;
use gatehouse_proto::dpop::{self, DpopError, VerifiedProof};

use crate::error::OAuthError;
use crate::server::Inner;

/// The verified proof of a request, `None` when it carries no `DPoP` header.
pub async fn proof(
    state: &Inner,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    access_token: Option<&str>,
    require_nonce: bool,
) -> Result<Option<VerifiedProof>, DpopError> {
    let values: Vec<&str> = headers.get_all("dpop").iter().map(|v| v.to_str().unwrap_or("")).collect();
    if values.is_empty() {
        return Ok(None);
    }
    let uri = state.endpoint(path);
    let now = state.now();
    let request = dpop::Request {
        method,
        uri: &uri,
        access_token,
        now,
        window: state.settings.dpop.window,
        nonces: (require_nonce || state.settings.dpop.require_nonce).then_some(&state.dpop_nonces),
    };
    let verified = dpop::verify(values, &request)?;
    // Catalogue DD4: single use per key within the window.
    if !state.dpop_replay.first_use(&verified.replay_key).await {
        return Err(DpopError::Replay);
    }
    Ok(Some(verified))
}

/// The token-endpoint rendering of a proof failure, with a fresh nonce when one is needed.
pub fn token_error(state: &Inner, error: DpopError) -> OAuthError {
    tracing::info!(reason = %error, "DPoP proof refused");
    let rendered = OAuthError::from_dpop(error);
    if error == DpopError::UseNonce { rendered.with_nonce(state.dpop_nonces.current(state.now())) } else { rendered }
}
