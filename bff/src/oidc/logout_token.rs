//! Logout token validation (OpenID Connect Back-Channel Logout 1.0 §2.6), step by step, after the JOSE
//! checks of `jose`. Pure: the key and `now` are given; the `jti` replay check is the caller's (it needs state).
//!
//! The token service signs `gatehouse_proto::claims::LogoutTokenClaims`; what arrives here is parsed leniently
//! (`ReceivedClaims`: `aud` may be an array, `sub`/`sid` may be absent, a forbidden `nonce` must be seen to be
//! refused) and the `events` member is parsed into the shared `LogoutEvents` type.

use gatehouse_proto::Jwk;
use gatehouse_proto::claims::{Audience, LOGOUT_TOKEN_TYP, LogoutEvents, typ_matches};
use serde::Deserialize;

use super::OidcError;
use super::jose::{self, CheckedHeader};

/// A logout token issued longer ago than this is refused (it is delivered within seconds; §2.6 step 5 lets
/// the receiver bound `iat`).
pub const LOGOUT_TOKEN_MAX_AGE_SECONDS: i64 = 600;

/// The validated content of a logout token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutToken {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
}

/// A logout token as received.
#[derive(Deserialize)]
struct ReceivedClaims {
    iss: String,
    aud: Audience,
    iat: i64,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    events: Option<serde_json::Value>,
    #[serde(default)]
    nonce: Option<serde_json::Value>,
}

/// What a logout token is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub leeway: i64,
}

/// §2.6 step 2 / errata (explicit typing, RFC 8725 §3.11): `typ` is `logout+jwt`.
pub fn check_typ(header: &CheckedHeader) -> Result<(), OidcError> {
    if typ_matches(header.typ.as_deref(), LOGOUT_TOKEN_TYP) {
        Ok(())
    } else {
        Err(OidcError::InvalidToken("typ is not logout+jwt".into()))
    }
}

/// Verifies the signature and the claims; returns the token and until when it stays acceptable (the replay
/// cache must remember its `jti` that long).
pub fn verify(
    token: &str,
    header: &CheckedHeader,
    jwk: &Jwk,
    expected: &Expected<'_>,
    now: i64,
) -> Result<(LogoutToken, i64), OidcError> {
    check_typ(header)?;
    // §2.6 step 3: signature with the token service's key, alg from the allow-list (in `jose::header`).
    let claims: ReceivedClaims = jose::verify(token, header, jwk)?;
    let invalid = |check: &str| Err(OidcError::InvalidToken(check.to_owned()));
    // §2.6 step 4 (OIDC Core §3.1.3.7 (2), (3)): iss and aud.
    if claims.iss != expected.issuer {
        return invalid("iss is not the issuer");
    }
    if !super::id_token::only_audience(&claims.aud, expected.client_id) {
        return invalid("aud is not exactly the client_id");
    }
    // §2.6 step 5: iat within an acceptable range; exp (REQUIRED since errata set 1, §2.4) not passed.
    if claims.iat > now + expected.leeway {
        return invalid("iat is in the future");
    }
    if claims.iat < now - LOGOUT_TOKEN_MAX_AGE_SECONDS - expected.leeway {
        return invalid("iat is too old");
    }
    // RFC 7519 §4.1.5: a token not yet valid is not valid (catalogue JWT-20).
    if claims.nbf.is_some_and(|nbf| nbf > now + expected.leeway) {
        return invalid("nbf not yet reached");
    }
    let Some(exp) = claims.exp else { return invalid("exp missing") };
    if exp + expected.leeway <= now {
        return invalid("exp has passed");
    }
    // §2.6 step 6: at least one of sub and sid.
    let sub = claims.sub.filter(|s| !s.is_empty());
    let sid = claims.sid.filter(|s| !s.is_empty());
    if sub.is_none() && sid.is_none() {
        return invalid("neither sub nor sid");
    }
    // §2.6 step 7: events has the back-channel logout member whose value is a JSON object; this client
    // accepts exactly that member with `{}` (what `LogoutEvents` parses).
    let Some(events) = claims.events else { return invalid("events missing") };
    if serde_json::from_value::<LogoutEvents>(events).is_err() {
        return invalid("events is not the back-channel logout event");
    }
    // §2.6 step 8: no nonce (so an ID token cannot pass for a logout token).
    if claims.nonce.is_some() {
        return invalid("nonce present");
    }
    // §2.6 step 9 (jti replay) needs the jti: required here (§2.4: REQUIRED).
    let Some(jti) = claims.jti.filter(|j| !j.is_empty()) else { return invalid("jti missing") };
    let acceptable_until = exp.min(claims.iat + LOGOUT_TOKEN_MAX_AGE_SECONDS).saturating_add(expected.leeway);
    Ok((LogoutToken { sub, sid, jti }, acceptable_until))
}
