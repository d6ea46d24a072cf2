//! The UserInfo endpoint (OIDC Core §5.3), GET and POST, with a Bearer access token in the `Authorization`
//! header (RFC 6750 §2.1). Claims are released by the token's scopes.

use axum::extract::State;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{Challenge, ErrorCode, OAuthError, no_store};
use crate::server::{AppState, Inner};
use crate::tokens::{self, AccessTokenRejection};
use gatehouse_proto::dpop::DpopError;

pub async fn userinfo(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    match handle(&state, method.as_str(), &headers).await {
        Ok(claims) => {
            let mut response = axum::Json(claims).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

/// How the access token was presented.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

fn invalid_token(scheme: Scheme, description: &'static str) -> OAuthError {
    let error = OAuthError::new(ErrorCode::InvalidToken, description);
    match scheme {
        Scheme::Bearer => error.with_challenge(Challenge::Bearer),
        Scheme::Dpop => error.with_challenge(Challenge::Dpop),
    }
}

async fn handle(state: &Inner, method: &str, headers: &HeaderMap) -> Result<Value, OAuthError> {
    // RFC 6750 §3.1 / RFC 9449 §7.2: one way of presenting one token; two Authorization headers (a Bearer and a
    // DPoP one, say) are a malformed request, never "the first one wins" (catalogue DPOP-R06).
    if headers.get_all(header::AUTHORIZATION).iter().nth(1).is_some() {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "send one Authorization header")
            .with_challenge(Challenge::Bearer));
    }
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        // RFC 6750 §3.1 / RFC 9449 §7.1: no credentials → 401 offering both schemes.
        return Err(OAuthError::new(ErrorCode::InvalidToken, "an access token is required")
            .with_challenge(Challenge::BearerAndDpop));
    };
    let (scheme, token) = authorization
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .and_then(|(scheme, token)| {
            let token = token.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                Some((Scheme::Bearer, token))
            } else if scheme.eq_ignore_ascii_case("dpop") {
                Some((Scheme::Dpop, token))
            } else {
                None
            }
        })
        .ok_or_else(|| invalid_token(Scheme::Bearer, "use the Bearer or DPoP scheme"))?;
    let now = state.now();
    let keys = state.keys.current();
    let claims = tokens::verify_access_token(&keys, &state.issuer, token, now).map_err(|reason| {
        tracing::info!(?reason, "userinfo: access token refused");
        match reason {
            AccessTokenRejection::Expired => invalid_token(scheme, "the access token expired"),
            _ => invalid_token(scheme, "the access token is invalid"),
        }
    })?;
    // RFC 9449 §7: a DPoP-bound token only with the DPoP scheme and a proof of its key (with ath).
    match (&claims.cnf, scheme) {
        (Some(_), Scheme::Bearer) => return Err(invalid_token(Scheme::Dpop, "this token is DPoP-bound")),
        (None, Scheme::Dpop) => return Err(invalid_token(Scheme::Dpop, "this token is not DPoP-bound")),
        (Some(cnf), Scheme::Dpop) => {
            let proof = crate::dpop::proof(state, headers, method, "/userinfo", Some(token), false).await;
            let proof = match proof {
                Ok(Some(proof)) => proof,
                Ok(None) => return Err(dpop_error(state, DpopError::Missing)),
                Err(error) => return Err(dpop_error(state, error)),
            };
            // RFC 9449 §7.1: a proof by another key than the token's is a token problem ("Invalid DPoP key
            // binding"), answered invalid_token (catalogue DPOP-R05).
            if !gatehouse_proto::secret::ct_eq(proof.jkt.as_bytes(), cnf.jkt.as_bytes()) {
                tracing::info!(reason = %DpopError::KeyMismatch, "userinfo: DPoP proof refused");
                return Err(invalid_token(Scheme::Dpop, "invalid DPoP key binding"));
            }
        }
        (None, Scheme::Bearer) => {}
    }
    if !super::introspect::access_token_active(state, &claims.jti).await? {
        return Err(invalid_token(scheme, "the access token was revoked"));
    }
    if !claims.scopes().any(|s| s == "openid") {
        let challenge = if scheme == Scheme::Dpop { Challenge::Dpop } else { Challenge::Bearer };
        return Err(
            OAuthError::new(ErrorCode::InsufficientScope, "the openid scope is required").with_challenge(challenge)
        );
    }
    let user = state
        .store
        .users
        .user_by_sub(&claims.sub)
        .await?
        .ok_or_else(|| invalid_token(scheme, "the user no longer exists"))?;
    let mut out = user.claims.released_for(claims.scopes());
    out.insert("sub".into(), Value::String(user.sub));
    Ok(Value::Object(out))
}

/// RFC 9449 §7.1: proof problems at a resource are 401 with a DPoP challenge.
fn dpop_error(state: &Inner, error: DpopError) -> OAuthError {
    tracing::info!(reason = %error, "userinfo: DPoP proof refused");
    let rendered = crate::dpop::token_error(state, error).with_status(axum::http::StatusCode::UNAUTHORIZED);
    OAuthError { challenge: Some(Challenge::Dpop), ..rendered }
}
