//! ID token validation (OpenID Connect Core 1.0 §3.1.3.7), step by step, after the JOSE checks of `jose`.
//! Pure: the key and `now` are given.

use gatehouse_proto::Jwk;
use gatehouse_proto::claims::{IdTokenClaims, typ_matches};

use super::OidcError;
use super::jose::{self, CheckedHeader};

/// An ID token issued longer ago than this is refused even when not expired (it is redeemed seconds after
/// issue at the callback).
pub const ID_TOKEN_MAX_AGE_SECONDS: i64 = 3600;

/// What an ID token is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub leeway: i64,
    /// The nonce sent in the authorization request; when given the token must carry it.
    pub nonce: Option<&'a str>,
}

/// Checks the header's `typ` (RFC 8725 §3.11): an ID token is untyped or typed `JWT`.
pub fn check_typ(header: &CheckedHeader) -> Result<(), OidcError> {
    match header.typ.as_deref() {
        None => Ok(()),
        typ if typ_matches(typ, "jwt") => Ok(()),
        _ => Err(OidcError::InvalidToken("typ is not JWT".into())),
    }
}

/// Verifies the signature with `jwk`, then the claims.
pub fn verify(
    token: &str,
    header: &CheckedHeader,
    jwk: &Jwk,
    expected: &Expected<'_>,
    now: i64,
) -> Result<IdTokenClaims, OidcError> {
    check_typ(header)?;
    // §3.1.3.7 (6), (7): signature with the token service's key, alg from the allow-list (in `jose::header`).
    let claims: IdTokenClaims = jose::verify(token, header, jwk)?;
    check_claims(&claims, expected, now)?;
    Ok(claims)
}

/// True when `aud` names `client_id` and nothing else (a string, or an array of that one value).
pub fn only_audience(aud: &gatehouse_proto::claims::Audience, client_id: &str) -> bool {
    match aud {
        gatehouse_proto::claims::Audience::One(one) => one == client_id,
        gatehouse_proto::claims::Audience::Many(list) => !list.is_empty() && list.iter().all(|a| a == client_id),
    }
}

/// The claim checks of §3.1.3.7.
pub fn check_claims(claims: &IdTokenClaims, expected: &Expected<'_>, now: i64) -> Result<(), OidcError> {
    let invalid = |check: &str| Err(OidcError::InvalidToken(check.to_owned()));
    // §3.1.3.7 (2): iss is exactly the issuer.
    if claims.iss != expected.issuer {
        return invalid("iss is not the issuer");
    }
    // §3.1.3.7 (3): aud contains our client_id, and no other audience: this client trusts none (catalogue
    // JWT-19: an extra, untrusted entry is refused even with a matching azp).
    if !only_audience(&claims.aud, expected.client_id) {
        return invalid("aud is not exactly the client_id");
    }
    // §3.1.3.7 (4), (5): azp, when present or when there are several audiences, is our client_id.
    let several = matches!(&claims.aud, gatehouse_proto::claims::Audience::Many(list) if list.len() > 1);
    match claims.azp.as_deref() {
        Some(azp) if azp != expected.client_id => return invalid("azp is not the client_id"),
        None if several => return invalid("azp missing with several audiences"),
        _ => {}
    }
    // §2: sub is a non-empty identifier.
    if claims.sub.is_empty() {
        return invalid("sub is empty");
    }
    // §3.1.3.7 (9): exp is in the future (with leeway).
    if claims.exp + expected.leeway <= now {
        return invalid("exp has passed");
    }
    // §3.1.3.7 (10): iat is not in the future and not too long ago.
    if claims.iat > now + expected.leeway {
        return invalid("iat is in the future");
    }
    if claims.iat < now - ID_TOKEN_MAX_AGE_SECONDS - expected.leeway {
        return invalid("iat is too old");
    }
    // RFC 7519 §4.1.5: nbf, if present, has passed.
    if let Some(nbf) = claims.profile.get("nbf") {
        match nbf.as_i64() {
            Some(nbf) if nbf <= now + expected.leeway => {}
            _ => return invalid("nbf not yet reached"),
        }
    }
    // §3.1.3.7 (11): the nonce sent is the nonce returned.
    if let Some(nonce) = expected.nonce {
        match claims.nonce.as_deref() {
            None => return invalid("nonce missing"),
            Some(got) if !gatehouse_proto::secret::ct_eq(got.as_bytes(), nonce.as_bytes()) => {
                return invalid("nonce does not match");
            }
            Some(_) => {}
        }
    }
    Ok(())
}
