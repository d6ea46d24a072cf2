//! The client credentials grant (RFC 6749 §4.4): confidential clients only, API scopes only (no OpenID
//! Connect scopes: there is no user), no refresh token.

use super::TokenResponse;
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::scope::Scopes;
use crate::server::Inner;
use crate::store::{ClientRecord, Epoch};

pub fn issue(
    state: &Inner,
    client: &ClientRecord,
    params: &Params,
    jkt: Option<&str>,
    now: Epoch,
) -> Result<TokenResponse, OAuthError> {
    if !client.auth_method.is_confidential() {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "public clients cannot use client_credentials"));
    }
    let allowed = Scopes::parse(&client.scopes.join(" ")).unwrap_or_default().api_scopes();
    let scope = match params.get("scope") {
        // RFC 6749 §3.3: without a scope, the client's pre-defined default: all its API scopes.
        None => allowed.clone(),
        Some(requested) => {
            let requested =
                Scopes::parse(requested).ok_or(OAuthError::new(ErrorCode::InvalidScope, "scope is malformed"))?;
            if !requested.is_subset_of_scopes(&allowed) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "a requested scope is not allowed for this client",
                ));
            }
            requested
        }
    };
    if scope.is_empty() {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "no API scope is allowed for this client"));
    }
    let target = crate::resource::requested(params, &scope, &state.settings.apis)?;
    let (access_token, claims) =
        super::access_token(state, client, &client.client_id, &scope, target.as_ref(), None, jkt, now)?;
    Ok(TokenResponse {
        access_token,
        token_type: super::token_type(jkt),
        expires_in: state.settings.tokens.access_token_ttl,
        scope: claims.scope.unwrap_or_default(),
        id_token: None,
        refresh_token: None,
    })
}
