//! The refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2): every refresh
//! returns a new refresh token; presenting a superseded one revokes the whole grant — except within a short
//! grace window for confidential clients, so a retry after a lost response succeeds (catalogue DD1,
//! FAPI 2.0 §5.3.2.1-10). Scope can only shrink.

use super::TokenResponse;
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::scope::Scopes;
use crate::server::Inner;
use crate::store::{ClientRecord, Epoch, RotateOutcome};
use crate::tokens;

const INVALID_GRANT: OAuthError = OAuthError::new(ErrorCode::InvalidGrant, "the refresh token is invalid");

pub async fn refresh(
    state: &Inner,
    client: &ClientRecord,
    params: &Params,
    jkt: Option<&str>,
    now: Epoch,
) -> Result<TokenResponse, OAuthError> {
    let presented =
        params.get("refresh_token").ok_or(OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is required"))?;
    if presented.len() > 512 {
        return Err(INVALID_GRANT);
    }
    let hash = tokens::digest(presented);
    let (record, grant) = state.store.grants.refresh(&hash).await?.ok_or(INVALID_GRANT)?;
    // RFC 6749 §6: bound to the client it was issued to. Checked before rotation, so another client cannot
    // burn it.
    if record.client_id != client.client_id {
        return Err(INVALID_GRANT);
    }
    if grant.revoked_at.is_some() || record.expires_at <= now || grant.expires_at <= now {
        return Err(INVALID_GRANT);
    }
    // RFC 9449 §5: a bound refresh token (public clients) needs a proof of the same key.
    if let Some(bound) = &record.dpop_jkt
        && jkt != Some(bound.as_str())
    {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "the refresh token is bound to another DPoP key"));
    }
    let granted = Scopes::from_stored(&record.scope);
    let scope = match params.get("scope") {
        None => granted.clone(),
        Some(requested) => {
            let requested =
                Scopes::parse(requested).ok_or(OAuthError::new(ErrorCode::InvalidScope, "scope is malformed"))?;
            if !requested.is_subset_of_scopes(&granted) {
                return Err(OAuthError::new(ErrorCode::InvalidScope, "scope exceeds the original grant"));
            }
            requested
        }
    };
    // RFC 8707 §2.2: a refresh may ask for a token for some of the grant's APIs only.
    let target = crate::resource::requested(params, &scope, &state.settings.apis)?;
    let grace = if client.auth_method.is_confidential() { state.settings.tokens.refresh_reuse_grace } else { 0 };
    // The successor keeps the original grant's scope so a down-scoped refresh does not shrink later ones.
    let (value, successor) = super::new_refresh(state, &grant, &granted, super::refresh_binding(client, jkt), now);
    match state.store.grants.rotate_refresh(&hash, successor, now, grace).await? {
        RotateOutcome::Rotated(grant) => {
            super::user_tokens(
                state,
                client,
                &grant,
                &scope,
                super::Extras { nonce: None, refresh_token: Some(value), jkt, target },
                now,
            )
            .await
        }
        RotateOutcome::ReuseDetected => {
            tracing::warn!(client_id = %client.client_id, "refresh token reused: grant revoked");
            Err(INVALID_GRANT)
        }
        RotateOutcome::Missing => Err(INVALID_GRANT),
    }
}
