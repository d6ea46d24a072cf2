//! Token revocation (RFC 7009): a client revokes its own refresh tokens (the whole grant: every refresh and
//! access token issued from it) and access tokens (deny-listed by `jti` until they expire). Unknown tokens and
//! other clients' tokens get 200 and change nothing (§2.2; catalogue EP-REV02/03).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::error::{OAuthError, no_store};
use crate::server::{AppState, Inner};
use crate::tokens;

pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(()) => {
            let mut response = axum::http::StatusCode::OK.into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn handle(state: &Inner, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let (client, params) = super::token::authenticated_form(state, headers, body).await?;
    let Some(token) = params.get("token").filter(|t| t.len() <= 16 * 1024) else {
        return Err(OAuthError::new(crate::error::ErrorCode::InvalidRequest, "token is required"));
    };
    let now = state.now();
    if let Some((record, _)) = state.store.grants.refresh(&tokens::digest(token)).await? {
        if record.client_id == client.client_id {
            state.store.grants.revoke_grant(&record.grant_id, now).await?;
            tracing::info!(client_id = %client.client_id, "refresh token revoked: grant revoked");
        }
        return Ok(());
    }
    if let Ok(claims) = tokens::verify_access_token(&state.keys.current(), &state.issuer, token, now)
        && claims.client_id == client.client_id
    {
        state.store.revocations.revoke_access_token(&claims.jti, claims.exp).await?;
        tracing::info!(client_id = %client.client_id, "access token revoked");
    }
    Ok(())
}
