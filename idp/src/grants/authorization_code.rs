//! The authorization code grant at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6): one use only, bound
//! to client, redirect URI and PKCE verifier; a second use revokes everything the code issued (§4.1.2).

use gatehouse_proto::pkce::{CodeChallenge, CodeVerifier};

use super::TokenResponse;
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::scope::Scopes;
use crate::server::Inner;
use crate::store::{ClientRecord, CodeOutcome, Epoch};
use crate::tokens;

const INVALID_GRANT: OAuthError = OAuthError::new(ErrorCode::InvalidGrant, "the authorization code is invalid");

pub async fn exchange(
    state: &Inner,
    client: &ClientRecord,
    params: &Params,
    jkt: Option<&str>,
    now: Epoch,
) -> Result<TokenResponse, OAuthError> {
    let code = params.get("code").ok_or(OAuthError::new(ErrorCode::InvalidRequest, "code is required"))?;
    let redirect_uri = params.get("redirect_uri");
    // RFC 7636 §4.5: the verifier is required; a syntactically invalid one can never match.
    let verifier =
        params.get("code_verifier").ok_or(OAuthError::new(ErrorCode::InvalidGrant, "code_verifier is required"))?;
    let verifier = CodeVerifier::parse(verifier)
        .map_err(|_| OAuthError::new(ErrorCode::InvalidGrant, "code_verifier is malformed"))?;
    if code.len() > 512 {
        return Err(INVALID_GRANT);
    }
    let (record, grant) = match state.store.grants.consume_code(&tokens::digest(code), now).await? {
        CodeOutcome::Consumed(record, grant) => (record, grant),
        CodeOutcome::AlreadyUsed(record) => {
            // RFC 6749 §4.1.2 / RFC 9700 §4.2.4: revoke the tokens issued from this code.
            state.store.grants.revoke_grant(&record.grant_id, now).await?;
            tracing::warn!(client_id = %record.client_id, "authorization code reused: grant revoked");
            return Err(INVALID_GRANT);
        }
        CodeOutcome::Missing => return Err(INVALID_GRANT),
    };
    // RFC 6749 §4.1.3: issued to this client, for this redirect URI (exact match).
    if record.client_id != client.client_id
        || !redirect_uri_matches(redirect_uri, &record.redirect_uri, &client.redirect_uris)
    {
        return Err(INVALID_GRANT);
    }
    // RFC 7636 §4.6: S256(verifier) == challenge.
    if !CodeChallenge::from_stored(record.code_challenge.clone()).verify(&verifier) {
        return Err(OAuthError::new(ErrorCode::InvalidGrant, "PKCE verification failed"));
    }
    if grant.revoked_at.is_some() {
        return Err(INVALID_GRANT);
    }
    // RFC 9449 §10: a code bound with `dpop_jkt` is redeemed only with a proof of that key.
    if let Some(bound) = &record.dpop_jkt
        && jkt != Some(bound.as_str())
    {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP key does not match dpop_jkt"));
    }
    let scope = Scopes::from_stored(&grant.scope);
    // RFC 8707 §2.2: the token request may name the API(s) the access token is for.
    let target = crate::resource::requested(params, &scope, &state.settings.apis)?;
    let refresh_token = if super::wants_refresh_token(client, &scope) {
        let (value, refresh) = super::new_refresh(state, &grant, &scope, super::refresh_binding(client, jkt), now);
        state.store.grants.insert_refresh(refresh).await?;
        Some(value)
    } else {
        None
    };
    super::user_tokens(
        state,
        client,
        &grant,
        &scope,
        super::Extras { nonce: record.nonce.clone(), refresh_token, jkt, target },
        now,
    )
    .await
}

/// RFC 6749 §4.1.3: `redirect_uri` is required when the authorization request named it, and then identical. An
/// authorization request may omit it only when the client has exactly one registered (OAUTH-RU07, PAR without
/// `redirect_uri`); the code can then only have travelled to that one URI, so a token request may omit it too —
/// the code record does not keep whether it was sent, and this is the case where that makes no difference.
fn redirect_uri_matches(sent: Option<&str>, issued_for: &str, registered: &[String]) -> bool {
    match sent {
        Some(sent) => sent == issued_for,
        None => matches!(registered, [only] if only == issued_for),
    }
}

#[cfg(test)]
mod tests {
    use super::redirect_uri_matches;

    fn uris(uris: &[&str]) -> Vec<String> {
        uris.iter().map(|u| (*u).to_owned()).collect()
    }

    #[test]
    fn a_sent_redirect_uri_must_be_identical() {
        let one = uris(&["https://app.test/cb"]);
        assert!(redirect_uri_matches(Some("https://app.test/cb"), "https://app.test/cb", &one));
        assert!(!redirect_uri_matches(Some("https://app.test/cb/"), "https://app.test/cb", &one));
        assert!(!redirect_uri_matches(Some(""), "https://app.test/cb", &one));
    }

    #[test]
    fn an_omitted_redirect_uri_is_allowed_only_with_a_single_registered_one() {
        assert!(redirect_uri_matches(None, "https://app.test/cb", &uris(&["https://app.test/cb"])));
        let two = uris(&["https://app.test/cb", "https://app.test/other"]);
        assert!(!redirect_uri_matches(None, "https://app.test/cb", &two));
        assert!(!redirect_uri_matches(None, "https://app.test/cb", &uris(&["https://app.test/new"])));
    }
}
