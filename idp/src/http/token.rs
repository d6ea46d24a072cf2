//! The token endpoint (RFC 6749 §3.2): form-encoded POST, client authentication, then one grant module.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use gatehouse_proto::vocab::GrantType;

use crate::client_auth::{self, Presented};
use crate::error::{ErrorCode, OAuthError, no_store};
use crate::grants::{self, TokenResponse};
use crate::params::Params;
use crate::server::{AppState, Inner};
use crate::store::{ClientRecord, ReplayOutcome};

pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(tokens) => {
            let mut response = axum::Json(tokens).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => {
            tracing::debug!(error = error.code.as_str(), description = error.description, "token request refused");
            error.into_response()
        }
    }
}

async fn handle(state: &Inner, headers: &HeaderMap, body: &[u8]) -> Result<TokenResponse, OAuthError> {
    let (client, params) = authenticated_form(state, headers, body).await?;
    let now = state.now();
    let grant_type =
        params.get("grant_type").ok_or(OAuthError::new(ErrorCode::InvalidRequest, "grant_type is required"))?;
    let grant_type = GrantType::parse(grant_type)
        .ok_or(OAuthError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type"))?;
    if !client.grant_types.contains(&grant_type) {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "the client may not use this grant type"));
    }
    // RFC 9449 §5: a proof binds the issued tokens to its key.
    let proof = crate::dpop::proof(state, headers, "POST", "/token", None, client.require_dpop_nonce)
        .await
        .map_err(|e| crate::dpop::token_error(state, e))?;
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    if client.require_dpop && jkt.is_none() {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "this client must use DPoP"));
    }
    match grant_type {
        GrantType::AuthorizationCode => grants::authorization_code::exchange(state, &client, &params, jkt, now).await,
        GrantType::RefreshToken => grants::refresh_token::refresh(state, &client, &params, jkt, now).await,
        GrantType::ClientCredentials => grants::client_credentials::issue(state, &client, &params, jkt, now),
    }
}

/// Parses a form-encoded back-channel request (token, PAR, introspection, revocation) and authenticates its
/// client (RFC 6749 §2.3).
pub async fn authenticated_form(
    state: &Inner,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(std::sync::Arc<ClientRecord>, Params), OAuthError> {
    if !super::authorize::is_form_request(headers) {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "the body must be application/x-www-form-urlencoded"));
    }
    let params = Params::parse(body)
        .map_err(|_| OAuthError::new(ErrorCode::InvalidRequest, "a parameter was sent more than once"))?;
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let presented = client_auth::presented(authorization, &params)?;
    let client = authenticate(state, &presented, state.now()).await?;
    Ok((client, params))
}

/// Looks the client up and checks its credentials; spends a client assertion's `jti`.
pub async fn authenticate(
    state: &Inner,
    presented: &Presented,
    now: i64,
) -> Result<std::sync::Arc<ClientRecord>, OAuthError> {
    let unknown = || {
        let error = OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
        match presented.challenge() {
            Some(challenge) => error.with_challenge(challenge),
            None => error,
        }
    };
    let client = state.client(presented.client_id()).await?.ok_or_else(unknown)?;
    match presented {
        Presented::Assertion { assertion, .. } => {
            let verified = client_auth::verify_assertion(&client, assertion, &state.issuer, now)?;
            let key = format!("{}:{}", client.client_id, verified.jti);
            match state.store.grants.consume_jti("client_assertion", &key, verified.exp, now).await? {
                ReplayOutcome::Consumed => {}
                ReplayOutcome::AlreadyUsed => {
                    tracing::warn!(client_id = %client.client_id, "client assertion replayed");
                    return Err(OAuthError::new(ErrorCode::InvalidClient, "client authentication failed"));
                }
            }
        }
        _ => client_auth::verify_secret(&client, presented)?,
    }
    Ok(client)
}
