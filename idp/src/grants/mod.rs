//! Token-endpoint grants, one module each (RFC 6749 §4.1.3, §6, §4.4), and what they share: the token response
//! and minting the access, ID and refresh tokens of a grant.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use gatehouse_proto::claims::{AccessTokenClaims, Audience, Confirmation, IdTokenClaims};
use serde::Serialize;

use crate::error::{ErrorCode, OAuthError};
use crate::resource::Target;
use crate::scope::Scopes;
use crate::server::Inner;
use crate::store::{ClientRecord, Epoch, GrantRecord, RefreshRecord};
use crate::tokens;

/// The successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Mints an access token for `sub` with `scope`; its audience is the APIs whose scopes are granted, or the
/// issuer when only OpenID Connect scopes are (a userinfo-only token). With a `target` (RFC 8707 `resource`)
/// the audience and scope are the target's.
#[allow(clippy::too_many_arguments)]
pub fn access_token(
    state: &Inner,
    client: &ClientRecord,
    sub: &str,
    scope: &Scopes,
    target: Option<&Target>,
    grant: Option<&GrantRecord>,
    jkt: Option<&str>,
    now: Epoch,
) -> Result<(String, AccessTokenClaims), OAuthError> {
    let (scope, mut audiences) = match target {
        Some(target) => (&target.scope, target.audiences.clone()),
        None => (scope, scope.audiences(&state.settings.apis)),
    };
    if audiences.is_empty() {
        audiences.push(state.issuer.clone());
    }
    let claims = AccessTokenClaims {
        iss: state.issuer.clone(),
        sub: sub.to_owned(),
        aud: Audience::from_list(audiences),
        client_id: client.client_id.clone(),
        scope: Some(scope.to_string()),
        jti: crate::random::token::<16>(),
        iat: now,
        exp: now + state.settings.tokens.access_token_ttl,
        nbf: None,
        auth_time: grant.map(|g| g.auth_time),
        sid: grant.and_then(|g| g.sid.clone()),
        // RFC 9449 §6: a DPoP-bound token carries the key's thumbprint.
        cnf: jkt.map(|jkt| Confirmation { jkt: jkt.to_owned() }),
    };
    let keys = state.keys.current();
    let token = tokens::sign_access_token(&keys, state.settings.signing.access_token_alg, &claims)?;
    Ok((token, claims))
}

/// What varies between the grants that mint user tokens.
pub struct Extras<'a> {
    /// The authorization request's `nonce` (code exchange only).
    pub nonce: Option<String>,
    /// The refresh token to return, already stored.
    pub refresh_token: Option<String>,
    /// The DPoP key the tokens are bound to.
    pub jkt: Option<&'a str>,
    /// The RFC 8707 target of the access token, when the request named `resource`s.
    pub target: Option<Target>,
}

/// Mints the tokens of a user grant: the access token (recorded under the grant so revoking the grant revokes
/// it), an ID token when `openid` was granted, and a refresh token when `offline_access` was granted and the
/// client may refresh.
pub async fn user_tokens(
    state: &Inner,
    client: &ClientRecord,
    grant: &GrantRecord,
    scope: &Scopes,
    extras: Extras<'_>,
    now: Epoch,
) -> Result<TokenResponse, OAuthError> {
    let user = state
        .store
        .users
        .user_by_sub(&grant.sub)
        .await?
        .ok_or(OAuthError::new(ErrorCode::InvalidGrant, "the user no longer exists"))?;
    let Extras { nonce, refresh_token, jkt, target } = extras;
    let (access_token, claims) =
        access_token(state, client, &grant.sub, scope, target.as_ref(), Some(grant), jkt, now)?;
    state.store.grants.record_access_token(&claims.jti, &grant.grant_id, claims.exp).await?;
    let id_token = if scope.contains("openid") {
        let claims = IdTokenClaims {
            iss: state.issuer.clone(),
            sub: grant.sub.clone(),
            aud: Audience::One(client.client_id.clone()),
            exp: now + state.settings.tokens.id_token_ttl,
            iat: now,
            auth_time: Some(grant.auth_time),
            nonce,
            sid: grant.sid.clone(),
            azp: Some(client.client_id.clone()),
            profile: user.claims.released_for(scope.iter()),
        };
        let keys = state.keys.current();
        Some(tokens::sign_id_token(&keys, client.id_token_signed_response_alg, &claims)?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: token_type(jkt),
        expires_in: state.settings.tokens.access_token_ttl,
        // RFC 6749 §5.1: the access token's scope (narrower than the grant's under a resource target).
        scope: claims.scope.clone().unwrap_or_default(),
        id_token,
        refresh_token,
    })
}

/// `DPoP` for a bound token (RFC 9449 §5), `Bearer` otherwise.
pub fn token_type(jkt: Option<&str>) -> &'static str {
    if jkt.is_some() { "DPoP" } else { "Bearer" }
}

/// The key a refresh token is bound to: a public client's refresh tokens are bound to its DPoP key (RFC 9449
/// §5); a confidential client's are not, since client authentication constrains them (catalogue DD2).
pub fn refresh_binding(client: &ClientRecord, jkt: Option<&str>) -> Option<String> {
    if client.auth_method.is_confidential() { None } else { jkt.map(str::to_owned) }
}

/// Whether this grant gets a refresh token (OIDC Core §11: `offline_access`; the client must be allowed).
pub fn wants_refresh_token(client: &ClientRecord, scope: &Scopes) -> bool {
    scope.contains("offline_access") && client.grant_types.contains(&gatehouse_proto::vocab::GrantType::RefreshToken)
}

/// A new refresh token record for a grant; its idle expiry never passes the grant's absolute end.
pub fn new_refresh(
    state: &Inner,
    grant: &GrantRecord,
    scope: &Scopes,
    dpop_jkt: Option<String>,
    now: Epoch,
) -> (String, RefreshRecord) {
    let value = tokens::new_opaque_token();
    let record = RefreshRecord {
        token_hash: tokens::digest(&value),
        grant_id: grant.grant_id.clone(),
        client_id: grant.client_id.clone(),
        scope: scope.to_string(),
        dpop_jkt,
        issued_at: now,
        expires_at: (now + state.settings.tokens.refresh_token_idle_ttl).min(grant.expires_at),
        superseded_at: None,
    };
    (value, record)
}
