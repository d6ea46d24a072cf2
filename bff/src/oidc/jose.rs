//! The JOSE steps ID tokens and logout tokens share (RFC 7515, RFC 8725): the protected header, the algorithm
//! allow-list and the signature check against a key of the token service's JWKS. Pure.

use gatehouse_proto::Jwk;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::de::DeserializeOwned;

use super::OidcError;

/// Largest token accepted (a bound on work done for hostile input).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token's protected header, after the checks that need no key.
#[derive(Debug)]
pub struct CheckedHeader {
    pub alg: Algorithm,
    pub alg_name: String,
    /// Absent only when the token service publishes a single key (OIDC Core §10.1; see `OidcClient`).
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// Parses the protected header of a compact JWS and checks its algorithm against `allowed`.
/// RFC 8725 §3.1: `none` and symmetric algorithms are never accepted, whatever the allow-list says: the
/// client's only key material for the token service's tokens is public.
pub fn header(token: &str, allowed: &[String]) -> Result<CheckedHeader, OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::InvalidToken("token too large".into()));
    }
    // Compact JWS (a JWE has five parts and is not supported), no duplicate members, no `crit`, NumericDates
    // in seconds (RFC 8725, `gatehouse_proto::jose`).
    gatehouse_proto::jose::check_compact(token).map_err(|e| OidcError::InvalidToken(e.to_string()))?;
    // `alg: none` does not parse into jsonwebtoken's Algorithm: it fails here.
    let Header { alg, kid, typ, .. } =
        jsonwebtoken::decode_header(token).map_err(|_| OidcError::InvalidToken("malformed JOSE header".into()))?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(OidcError::InvalidToken("symmetric alg refused".into()));
    }
    let alg_name = format!("{alg:?}");
    if !allowed.contains(&alg_name) {
        return Err(OidcError::InvalidToken("alg not in the allow-list".into()));
    }
    Ok(CheckedHeader { alg, alg_name, kid, typ })
}

/// Verifies the signature with `jwk` and deserialises the claims; no claim is checked here.
pub fn verify<T: DeserializeOwned>(token: &str, header: &CheckedHeader, jwk: &Jwk) -> Result<T, OidcError> {
    // RFC 8725 §3.1: a key that names its algorithm is used with that one only.
    if jwk.alg.as_deref().is_some_and(|a| a != header.alg_name) {
        return Err(OidcError::InvalidToken("alg does not match the key".into()));
    }
    if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
        return Err(OidcError::InvalidToken("key is not a signing key".into()));
    }
    let key = jwk.decoding_key(header.alg).ok_or_else(|| OidcError::InvalidToken("key does not fit the alg".into()))?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<T>(token, &key, &validation).map(|data| data.claims).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => OidcError::InvalidToken("bad signature".into()),
        _ => OidcError::InvalidToken("bad signature or malformed claims".into()),
    })
}
