//! Minting and verifying the tokens this server issues: RFC 9068 JWT access tokens, OpenID Connect ID tokens,
//! opaque refresh tokens and authorization codes (stored only as SHA-256 digests).

use gatehouse_proto::claims::{ACCESS_TOKEN_TYP, AccessTokenClaims, IdTokenClaims, typ_matches};
use gatehouse_proto::vocab::SigningAlg;
use jsonwebtoken::{Algorithm, Header, Validation};
use sha2::{Digest, Sha256};

use crate::error::OAuthError;
use crate::keys::KeySet;
use crate::store::Epoch;

/// Signs an access token with the active key for `alg`, `typ: at+jwt` (RFC 9068 §2.1).
pub fn sign_access_token(keys: &KeySet, alg: SigningAlg, claims: &AccessTokenClaims) -> Result<String, OAuthError> {
    sign(keys, alg, ACCESS_TOKEN_TYP, claims)
}

/// Signs an ID token (`typ: JWT`) with the active key for the client's registered algorithm.
pub fn sign_id_token(keys: &KeySet, alg: SigningAlg, claims: &IdTokenClaims) -> Result<String, OAuthError> {
    sign(keys, alg, "JWT", claims)
}

/// Signs any JWT this server issues with the active key for `alg`.
pub fn sign<T: serde::Serialize>(keys: &KeySet, alg: SigningAlg, typ: &str, claims: &T) -> Result<String, OAuthError> {
    let Some(key) = keys.signer(alg) else {
        tracing::error!(alg = alg.as_str(), "no active signing key");
        return Err(OAuthError::server_error());
    };
    let mut header = Header::new(jose_alg(alg));
    header.typ = Some(typ.to_owned());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|error| {
        tracing::error!(%error, "signing failed");
        OAuthError::server_error()
    })
}

pub fn jose_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
    }
}

/// Why an access token was refused (logged; the client sees `invalid_token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessTokenRejection {
    Malformed,
    WrongType,
    UnknownKey,
    AlgorithmMismatch,
    BadSignatureOrClaims,
    WrongIssuer,
    Expired,
    NotYetValid,
}

/// Verifies one of our own access tokens (RFC 9068 §4): `typ`, `alg` from our allow-list and matching the
/// key, signature, `iss`, `exp`. The audience is the caller's business (userinfo accepts any of ours).
pub fn verify_access_token(
    keys: &KeySet,
    issuer: &str,
    token: &str,
    now: Epoch,
) -> Result<AccessTokenClaims, AccessTokenRejection> {
    if token.len() > 8 * 1024 {
        return Err(AccessTokenRejection::Malformed);
    }
    // Compact JWS, no duplicate members, no `crit`, NumericDates in seconds (RFC 8725).
    gatehouse_proto::jose::check_compact(token).map_err(|_| AccessTokenRejection::Malformed)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| AccessTokenRejection::Malformed)?;
    // RFC 9068 §4 (2): typ must be at+jwt.
    if !typ_matches(header.typ.as_deref(), ACCESS_TOKEN_TYP) {
        return Err(AccessTokenRejection::WrongType);
    }
    let kid = header.kid.ok_or(AccessTokenRejection::UnknownKey)?;
    let (alg, key) = keys.verifier(&kid).ok_or(AccessTokenRejection::UnknownKey)?;
    // RFC 8725 §3.1: the algorithm comes from our key, never from the token.
    if header.alg != jose_alg(alg) {
        return Err(AccessTokenRejection::AlgorithmMismatch);
    }
    let mut validation = Validation::new(jose_alg(alg));
    validation.validate_exp = false; // checked below against the injected clock
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<AccessTokenClaims>(token, key, &validation)
        .map_err(|_| AccessTokenRejection::BadSignatureOrClaims)?;
    let claims = data.claims;
    if claims.iss != issuer {
        return Err(AccessTokenRejection::WrongIssuer);
    }
    if claims.exp <= now {
        return Err(AccessTokenRejection::Expired);
    }
    // RFC 7519 §4.1.5, §4.1.6: not before `nbf`, and never issued in the future (catalogue JWT-20; a minute of
    // skew between the nodes of one deployment).
    if claims.nbf.is_some_and(|nbf| nbf > now + 60) || claims.iat > now + 60 {
        return Err(AccessTokenRejection::NotYetValid);
    }
    Ok(claims)
}

/// The stored form of a code or refresh token: SHA-256 of the value.
pub fn digest(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

/// A new authorization code or refresh token: 256 random bits, base64url.
pub fn new_opaque_token() -> String {
    crate::random::token::<32>()
}
