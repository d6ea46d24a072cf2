//! Token introspection (RFC 7662) for authenticated clients: our JWT access tokens and opaque refresh tokens.
//! Anything unknown, expired, revoked or not the caller's business is `{"active": false}` and nothing else.
//!
//! Who may introspect what (RFC 7662 §4): a client sees tokens issued to itself, and access tokens whose
//! audience is an API whose scopes the client is registered for (a resource server introspecting what it
//! receives).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::{OAuthError, no_store};
use crate::server::{AppState, Inner};
use crate::store::ClientRecord;
use crate::tokens;

pub async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(answer) => {
            let mut response = axum::Json(answer).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

fn inactive() -> Value {
    json!({"active": false})
}

async fn handle(state: &Inner, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let (client, params) = super::token::authenticated_form(state, headers, body).await?;
    // RFC 7662 §2.1: introspection needs real client authentication; public clients have none.
    if !client.auth_method.is_confidential() {
        return Err(OAuthError::new(crate::error::ErrorCode::InvalidClient, "public clients cannot introspect"));
    }
    let Some(token) = params.get("token").filter(|t| t.len() <= 16 * 1024) else { return Ok(inactive()) };
    // The hint only orders the look-ups (RFC 7662 §2.1); a wrong hint still gets the right answer.
    if let Some(answer) = access_token(state, &client, token).await? {
        return Ok(answer);
    }
    Ok(refresh_token(state, &client, token).await?.unwrap_or_else(inactive))
}

async fn access_token(state: &Inner, client: &ClientRecord, token: &str) -> Result<Option<Value>, OAuthError> {
    let now = state.now();
    let Ok(claims) = tokens::verify_access_token(&state.keys.current(), &state.issuer, token, now) else {
        return Ok(None);
    };
    if !access_token_active(state, &claims.jti).await? {
        return Ok(Some(inactive()));
    }
    let allowed = claims.client_id == client.client_id
        || state
            .settings
            .apis
            .iter()
            .any(|api| claims.aud.contains(&api.audience) && api.scopes.iter().any(|s| client.scopes.contains(s)));
    if !allowed {
        return Ok(Some(inactive()));
    }
    let mut answer = json!({
        "active": true,
        "iss": claims.iss,
        "sub": claims.sub,
        "aud": claims.aud,
        "client_id": claims.client_id,
        "scope": claims.scope,
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
        "token_type": crate::grants::token_type(claims.cnf.as_ref().map(|c| c.jkt.as_str())),
    });
    if let Some(cnf) = claims.cnf {
        answer["cnf"] = json!({"jkt": cnf.jkt});
    }
    Ok(Some(answer))
}

/// Whether a verified access token is still live: not on the deny list and its grant not revoked.
pub async fn access_token_active(state: &Inner, jti: &str) -> Result<bool, OAuthError> {
    Ok(!state.store.revocations.access_token_denied(jti).await?
        && !state.store.grants.access_token_revoked(jti).await?)
}

async fn refresh_token(state: &Inner, client: &ClientRecord, token: &str) -> Result<Option<Value>, OAuthError> {
    let now = state.now();
    let Some((record, grant)) = state.store.grants.refresh(&tokens::digest(token)).await? else { return Ok(None) };
    let live = record.superseded_at.is_none()
        && record.expires_at > now
        && grant.expires_at > now
        && grant.revoked_at.is_none();
    if !live || record.client_id != client.client_id {
        return Ok(Some(inactive()));
    }
    let mut answer = json!({
        "active": true,
        "iss": state.issuer,
        "sub": grant.sub,
        "client_id": record.client_id,
        "scope": record.scope,
        "exp": record.expires_at,
        "iat": record.issued_at,
        "token_type": "refresh_token",
    });
    if let Some(jkt) = record.dpop_jkt {
        answer["cnf"] = json!({"jkt": jkt});
    }
    Ok(Some(answer))
}
