//! Client authentication at the token endpoint (RFC 6749 §2.3, OIDC Core §9): `client_secret_basic`,
//! `client_secret_post`, `private_key_jwt` (RFC 7523 §3) and `none` for public clients.
//!
//! `presented` reads what the request carries; `verify_secret` and `verify_assertion` decide; the endpoint
//! looks the client up and spends the assertion's `jti` in between.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_proto::claims::Audience;
use gatehouse_proto::secret::ct_eq;
use gatehouse_proto::vocab::ClientAuthMethod;
use gatehouse_proto::{Jwk, Secret};
use jsonwebtoken::Validation;

use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::params::Params;
use crate::store::{ClientRecord, Epoch};

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Algorithms accepted for client assertions (asymmetric only: RFC 8725 §3.1).
pub const ASSERTION_ALGS: [&str; 5] = ["ES256", "ES384", "RS256", "PS256", "EdDSA"];

/// `typ` values a client assertion may carry (none at all is fine too): plain `JWT`, and the explicit type of
/// draft-ietf-oauth-rfc7523bis.
const ASSERTION_TYPS: [&str; 3] = ["JWT", "client-authentication+jwt", "application/client-authentication+jwt"];

/// Longest accepted assertion lifetime: bounds how long a `jti` must be remembered.
const MAX_ASSERTION_LIFETIME: i64 = 600;
const CLOCK_SKEW: i64 = 30;

/// Credentials as presented, before any lookup.
#[derive(Debug)]
pub enum Presented {
    Basic { client_id: String, secret: Secret },
    Post { client_id: String, secret: Secret },
    Assertion { client_id: String, assertion: String },
    None { client_id: String },
}

impl Presented {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::Assertion { client_id, .. }
            | Self::None { client_id } => client_id,
        }
    }

    pub fn method(&self) -> ClientAuthMethod {
        match self {
            Self::Basic { .. } => ClientAuthMethod::ClientSecretBasic,
            Self::Post { .. } => ClientAuthMethod::ClientSecretPost,
            Self::Assertion { .. } => ClientAuthMethod::PrivateKeyJwt,
            Self::None { .. } => ClientAuthMethod::None,
        }
    }

    /// The challenge to send with `invalid_client`: `Basic` when the client used the header (RFC 6749 §5.2).
    pub fn challenge(&self) -> Option<Challenge> {
        matches!(self, Self::Basic { .. }).then_some(Challenge::Basic)
    }
}

fn invalid_client(description: &'static str, via_header: bool) -> OAuthError {
    let error = OAuthError::new(ErrorCode::InvalidClient, description);
    if via_header { error.with_challenge(Challenge::Basic) } else { error }
}

/// Reads the credentials of a request. RFC 6749 §2.3: exactly one method per request.
pub fn presented(authorization: Option<&str>, params: &Params) -> Result<Presented, OAuthError> {
    let basic = match authorization {
        Some(value) => Some(parse_basic(value).ok_or_else(|| invalid_client("malformed Basic credentials", true))?),
        None => None,
    };
    let form_secret = params.get("client_secret");
    let assertion = params.get("client_assertion");
    let form_id = params.get("client_id");
    let methods = [basic.is_some(), form_secret.is_some(), assertion.is_some()].iter().filter(|m| **m).count();
    if methods > 1 {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "use exactly one client authentication method"));
    }
    if let Some((client_id, secret)) = basic {
        // A client_id in the body must name the same client.
        if form_id.is_some_and(|id| id != client_id) {
            return Err(invalid_client("client_id does not match the credentials", true));
        }
        return Ok(Presented::Basic { client_id, secret });
    }
    if let Some(secret) = form_secret {
        let client_id = form_id.ok_or_else(|| invalid_client("client_id is required with client_secret", false))?;
        return Ok(Presented::Post { client_id: client_id.to_owned(), secret: Secret::new(secret) });
    }
    if let Some(assertion) = assertion {
        if params.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "unsupported client_assertion_type"));
        }
        // RFC 7523 §3 (2): the subject is the client_id; read it from the assertion when not in the body.
        let client_id = match form_id {
            Some(id) => id.to_owned(),
            // One description for every assertion failure (catalogue §G: nothing that tells the checks apart).
            None => {
                unverified_subject(assertion).ok_or_else(|| invalid_client("client authentication failed", false))?
            }
        };
        return Ok(Presented::Assertion { client_id, assertion: assertion.to_owned() });
    }
    match form_id {
        Some(client_id) => Ok(Presented::None { client_id: client_id.to_owned() }),
        None => Err(invalid_client("client authentication is required", false)),
    }
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(client_id) ":" urlencode(secret))`.
fn parse_basic(value: &str) -> Option<(String, Secret)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = url_decode(id)?;
    let secret = url_decode(secret)?;
    if id.is_empty() {
        return None;
    }
    Some((id, Secret::new(secret)))
}

fn url_decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|s| s.into_owned())
}

/// Checks a presented secret against the stored digest in constant time.
pub fn verify_secret(client: &ClientRecord, presented: &Presented) -> Result<(), OAuthError> {
    let via_header = presented.challenge().is_some();
    if presented.method() != client.auth_method {
        return Err(invalid_client("client authentication failed", via_header));
    }
    match presented {
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
            let stored = client.secret_sha256.as_deref().unwrap_or("");
            let digest = crate::admin::secret_digest(secret);
            if stored.is_empty() || !ct_eq(digest.as_bytes(), stored.as_bytes()) {
                return Err(invalid_client("client authentication failed", via_header));
            }
            Ok(())
        }
        Presented::None { .. } => Ok(()),
        Presented::Assertion { .. } => Ok(()), // verified by verify_assertion
    }
}

/// A verified client assertion's replay identity.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: Epoch,
}

#[derive(serde::Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

/// Verifies a `private_key_jwt` client assertion (RFC 7523 §3, OIDC Core §9) against the client's keys.
pub fn verify_assertion(
    client: &ClientRecord,
    assertion: &str,
    issuer: &str,
    now: Epoch,
) -> Result<VerifiedAssertion, OAuthError> {
    let fail = |why: &'static str| {
        tracing::info!(client_id = %client.client_id, reason = why, "client assertion refused");
        invalid_client("client authentication failed", false)
    };
    if client.auth_method != ClientAuthMethod::PrivateKeyJwt {
        return Err(fail("client is not registered for private_key_jwt"));
    }
    if assertion.len() > 16 * 1024 {
        return Err(fail("assertion too large"));
    }
    // Compact JWS, no duplicate members, no `crit`, NumericDates in seconds (RFC 8725).
    if gatehouse_proto::jose::check_compact(assertion).is_err() {
        return Err(fail("malformed assertion"));
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| fail("malformed header"))?;
    // RFC 8725 §3.11 / catalogue OAUTH-CA06, JWT-25: a JWT typed as another kind (a DPoP proof, an access or
    // logout token, a request object) is not a client assertion, whatever its claims.
    if !header.typ.as_deref().is_none_or(|typ| ASSERTION_TYPS.iter().any(|t| typ.eq_ignore_ascii_case(t))) {
        return Err(fail("typ names another kind of JWT"));
    }
    // RFC 8725 §3.1: asymmetric algorithms from our allow-list only; never `none` or HMAC.
    let alg_name = format!("{:?}", header.alg);
    if !ASSERTION_ALGS.contains(&alg_name.as_str()) {
        return Err(fail("algorithm not allowed"));
    }
    let keys = client.jwks.as_ref().map(|s| s.keys.as_slice()).unwrap_or_default();
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => keys.iter().filter(|k| k.kid.as_deref() == Some(kid.as_str())).collect(),
        None => keys.iter().collect(),
    };
    let mut claims = None;
    for jwk in candidates {
        let Some(key) = jwk.decoding_key(header.alg) else { continue };
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        if let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
            claims = Some(data.claims);
            break;
        }
    }
    let claims = claims.ok_or_else(|| fail("no registered key verifies the signature"))?;
    // RFC 7523 §3 (1), (2): iss and sub are the client_id.
    if claims.iss.as_deref() != Some(client.client_id.as_str())
        || claims.sub.as_deref() != Some(client.client_id.as_str())
    {
        return Err(fail("iss and sub must be the client_id"));
    }
    // RFC 7523 §3 (3) with catalogue DD8 / CVE-2025-27370: aud must be exactly the issuer, as a single string.
    match claims.aud.as_ref().and_then(|a| serde_json::from_value::<Audience>(a.clone()).ok()) {
        Some(Audience::One(aud)) if aud == issuer => {}
        _ => return Err(fail("aud must be the issuer identifier")),
    }
    // RFC 7523 §3 (4): exp required and in the future; bounded lifetime so the jti can be remembered.
    let exp = claims.exp.ok_or_else(|| fail("exp is required"))?;
    if exp <= now - CLOCK_SKEW || exp > now + MAX_ASSERTION_LIFETIME {
        return Err(fail("expired or too long-lived"));
    }
    // RFC 7523 §3 (5), (6): nbf / iat not in the future.
    if claims.nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW) || claims.iat.is_some_and(|iat| iat > now + CLOCK_SKEW) {
        return Err(fail("not yet valid"));
    }
    // RFC 7523 §3 (7): jti for replay protection (spent by the caller).
    let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256).ok_or_else(|| fail("jti is required"))?;
    Ok(VerifiedAssertion { jti, exp: exp.max(now) + CLOCK_SKEW })
}

/// The `sub` of an assertion, read without verification, only to find which client's keys to verify it with.
fn unverified_subject(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = gatehouse_proto::b64::decode(payload)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("sub")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Params {
        Params::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn basic_is_form_urlencoded_inside() {
        let header = format!("Basic {}", STANDARD.encode("my%3Aclient:p%40ss+word"));
        let p = presented(Some(&header), &params("")).unwrap();
        match p {
            Presented::Basic { client_id, secret } => {
                assert_eq!(client_id, "my:client");
                assert_eq!(secret.expose(), "p@ss word");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn more_than_one_method_is_invalid_request() {
        let header = format!("Basic {}", STANDARD.encode("c:s"));
        let err = presented(Some(&header), &params("client_secret=s&client_id=c")).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn malformed_basic_is_invalid_client_with_challenge() {
        let err = presented(Some("Basic !!!"), &params("")).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidClient);
        assert_eq!(err.challenge, Some(Challenge::Basic));
        let err = presented(Some("Bearer abc"), &params("")).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidClient);
    }

    #[test]
    fn nothing_presented_is_invalid_client() {
        assert_eq!(presented(None, &params("grant_type=x")).unwrap_err().code, ErrorCode::InvalidClient);
        assert!(matches!(presented(None, &params("client_id=pub")).unwrap(), Presented::None { .. }));
    }
}
