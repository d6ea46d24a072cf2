//! The pushed authorization request endpoint (RFC 9126): an authenticated client posts its authorization
//! request, which is validated exactly as at the authorization endpoint and stored for one use.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::authorize::{self, AuthorizeError};
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::server::{AppState, Inner};
use crate::store::PushedRequestRecord;
use crate::tokens;

pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// Lifetime of a pushed request (RFC 9126 §2.2: short; the catalogue asks 5–600 s).
pub const PUSHED_REQUEST_TTL: i64 = 60;

pub async fn par(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok((request_uri, expires_in)) => {
            let body = serde_json::json!({"request_uri": request_uri, "expires_in": expires_in});
            let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn handle(state: &Inner, headers: &HeaderMap, body: &[u8]) -> Result<(String, i64), OAuthError> {
    let (client, params) = super::token::authenticated_form(state, headers, body).await?;
    // RFC 9126 §2.1: request_uri must not be pushed.
    if params.contains("request_uri") {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "request_uri is not allowed in a pushed request"));
    }
    // The authenticated client is the request's client; a client_id in the body must agree.
    if params.get("client_id").is_some_and(|id| id != client.client_id) {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "client_id does not match the authenticated client"));
    }
    let mut pairs = params.pairs().to_vec();
    if params.get("client_id").is_none() {
        pairs.retain(|(name, _)| name != "client_id");
        pairs.push(("client_id".into(), client.client_id.clone()));
    }
    let params = Params::from_pairs(pairs);
    // RFC 9126 §2.1: the same validation as the authorization endpoint, errors as JSON.
    let mut request = authorize::validate(&params, Some(&client)).map_err(|error| match error {
        AuthorizeError::Page(_) => {
            OAuthError::new(ErrorCode::InvalidRequest, "the client_id or redirect_uri is invalid")
        }
        AuthorizeError::Redirect { error, description, .. } => OAuthError::new(error, description),
    })?;
    // RFC 9449 §10.1: a DPoP proof at PAR binds the code to its key; dpop_jkt, if also sent, must agree.
    let proof = crate::dpop::proof(state, headers, "POST", "/par", None, client.require_dpop_nonce)
        .await
        .map_err(|e| crate::dpop::token_error(state, e))?;
    if let Some(proof) = proof {
        if request.dpop_jkt.as_ref().is_some_and(|jkt| *jkt != proof.jkt) {
            return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "dpop_jkt does not match the DPoP proof"));
        }
        request.dpop_jkt = Some(proof.jkt);
    } else if client.require_dpop && request.dpop_jkt.is_none() {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "this client must use DPoP"));
    }
    // ≥ 128 bits of entropy (RFC 9126 §7.1), stored only as a digest.
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", crate::random::token::<32>());
    let record = PushedRequestRecord {
        request_uri_hash: tokens::digest(&request_uri),
        client_id: client.client_id.clone(),
        request: serde_json::to_string(&request).map_err(|_| OAuthError::server_error())?,
        expires_at: state.now() + PUSHED_REQUEST_TTL,
    };
    state.store.pushed.insert_pushed(record).await?;
    Ok((request_uri, PUSHED_REQUEST_TTL))
}
