//! The UserInfo endpoint (OIDC Core §5.3), GET and POST, with a Bearer access token in the `Authorization`
//! header (RFC 6750 §2.1). Claims are released by the token's scopes.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{Challenge, ErrorCode, OAuthError, no_store};
use crate::server::{AppState, Inner};
use crate::tokens::{self, AccessTokenRejection};

pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match handle(&state, &headers).await {
        Ok(claims) => {
            let mut response = axum::Json(claims).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

fn invalid_token(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, description).with_challenge(Challenge::Bearer)
}

async fn handle(state: &Inner, headers: &HeaderMap) -> Result<Value, OAuthError> {
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        // RFC 6750 §3.1: no credentials → 401 with a bare challenge.
        return Err(invalid_token("an access token is required"));
    };
    let token = authorization
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| invalid_token("use the Bearer scheme"))?;
    let now = state.now();
    let keys = state.keys.current();
    let claims = tokens::verify_access_token(&keys, &state.issuer, token, now).map_err(|reason| {
        tracing::info!(?reason, "userinfo: access token refused");
        match reason {
            AccessTokenRejection::Expired => invalid_token("the access token expired"),
            _ => invalid_token("the access token is invalid"),
        }
    })?;
    if state.store.grants.access_token_revoked(&claims.jti).await? {
        return Err(invalid_token("the access token was revoked"));
    }
    if !claims.scopes().any(|s| s == "openid") {
        return Err(OAuthError::new(ErrorCode::InsufficientScope, "the openid scope is required")
            .with_challenge(Challenge::Bearer));
    }
    let user =
        state.store.users.user_by_sub(&claims.sub).await?.ok_or_else(|| invalid_token("the user no longer exists"))?;
    let mut out = user.claims.released_for(claims.scopes());
    out.insert("sub".into(), Value::String(user.sub));
    Ok(Value::Object(out))
}
