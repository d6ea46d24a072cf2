//! JSON Web Keys (RFC 7517) restricted to public keys of the kinds this project uses (RSA, EC P-256/P-384,
//! OKP Ed25519), and their SHA-256 thumbprints (RFC 7638), which DPoP uses as `jkt` (RFC 9449 §6.1).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::b64;

/// A public JWK. Private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`) are kept only so that a key carrying
/// them can be recognised and refused (`is_public`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("the JWK contains private key material")]
    PrivateMaterial,
    #[error("unsupported key type or curve")]
    Unsupported,
    #[error("a required JWK member is missing")]
    MissingMember,
}

impl Jwk {
    /// An EC public key from its affine coordinates.
    pub fn ec(crv: &str, x: &[u8], y: &[u8]) -> Self {
        Self {
            kty: "EC".into(),
            crv: Some(crv.into()),
            x: Some(b64::encode(x)),
            y: Some(b64::encode(y)),
            ..Self::empty()
        }
    }

    /// An RSA public key from its big-endian modulus and exponent.
    pub fn rsa(n: &[u8], e: &[u8]) -> Self {
        Self { kty: "RSA".into(), n: Some(b64::encode(n)), e: Some(b64::encode(e)), ..Self::empty() }
    }

    fn empty() -> Self {
        Self {
            kty: String::new(),
            kid: None,
            alg: None,
            key_use: None,
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            d: None,
            p: None,
            q: None,
            dp: None,
            dq: None,
            qi: None,
            k: None,
        }
    }

    /// True when no private or symmetric member is present (RFC 9449 §4.3 (6) requires a public key).
    pub fn is_public(&self) -> bool {
        [&self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.k].iter().all(|m| m.is_none())
    }

    /// The verification key for `alg`, when this JWK is a public key of a type and curve that fit it.
    /// One place decides which key types go with which algorithms (RFC 7518 §3).
    pub fn decoding_key(&self, alg: jsonwebtoken::Algorithm) -> Option<jsonwebtoken::DecodingKey> {
        use jsonwebtoken::{Algorithm as A, DecodingKey};
        if !self.is_public() {
            return None;
        }
        let crv = self.crv.as_deref();
        match (self.kty.as_str(), alg) {
            ("RSA", A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512) => {
                DecodingKey::from_rsa_components(self.n.as_deref()?, self.e.as_deref()?).ok()
            }
            ("EC", A::ES256) if crv == Some("P-256") => {
                DecodingKey::from_ec_components(self.x.as_deref()?, self.y.as_deref()?).ok()
            }
            ("EC", A::ES384) if crv == Some("P-384") => {
                DecodingKey::from_ec_components(self.x.as_deref()?, self.y.as_deref()?).ok()
            }
            ("OKP", A::EdDSA) if crv == Some("Ed25519") => DecodingKey::from_ed_components(self.x.as_deref()?).ok(),
            _ => None,
        }
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, base64url.
    pub fn thumbprint(&self) -> Result<String, JwkError> {
        if !self.is_public() {
            return Err(JwkError::PrivateMaterial);
        }
        fn need(m: &Option<String>) -> Result<&str, JwkError> {
            m.as_deref().ok_or(JwkError::MissingMember)
        }
        // RFC 7638 §3.2: members in lexicographic order, no whitespace. serde_json escapes strings correctly.
        let canonical = match self.kty.as_str() {
            "EC" => serde_json::json!({"crv": need(&self.crv)?, "kty": "EC", "x": need(&self.x)?, "y": need(&self.y)?}),
            "RSA" => serde_json::json!({"e": need(&self.e)?, "kty": "RSA", "n": need(&self.n)?}),
            "OKP" => serde_json::json!({"crv": need(&self.crv)?, "kty": "OKP", "x": need(&self.x)?}),
            _ => return Err(JwkError::Unsupported),
        };
        // serde_json's Map is a BTreeMap here (no preserve_order feature), so keys are already sorted.
        let text = serde_json::to_string(&canonical).map_err(|_| JwkError::Unsupported)?;
        Ok(b64::encode(Sha256::digest(text.as_bytes())))
    }
}

/// A JWK Set (RFC 7517 §5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Whether a token naming a `kid` missing from the cached JWK Set may trigger a fetch of the set now. OpenID
/// Connect Core §10.1.1: an unfamiliar `kid` means the signer rotated, and the verifier re-reads the set. To bound
/// the fetches that made-up `kid`s (or an unreachable issuer) cause, none within `floor` of the last fetch that did
/// not find the `kid` it was made for (`last_fruitless`); a fetch that found its key holds nothing back, so each
/// rotation is picked up with its first token however soon it follows the previous fetch.
pub fn may_fetch_for_unknown_kid(
    last_fruitless: Option<std::time::Instant>,
    now: std::time::Instant,
    floor: std::time::Duration,
) -> bool {
    last_fruitless.is_none_or(|at| now.saturating_duration_since(at) >= floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fruitless_fetch_holds_the_next_one_back() {
        use std::time::{Duration, Instant};
        let floor = Duration::from_secs(30);
        let now = Instant::now();
        // Every fetch so far found its key (start-up, earlier rotations): a new kid is fetched at once.
        assert!(may_fetch_for_unknown_kid(None, now, floor));
        // A fetch that found nothing (a made-up kid, an unreachable issuer) holds further fetches back.
        assert!(!may_fetch_for_unknown_kid(Some(now), now, floor));
        assert!(!may_fetch_for_unknown_kid(Some(now), now + Duration::from_secs(29), floor));
        assert!(may_fetch_for_unknown_kid(Some(now), now + floor, floor));
        // A clock reading before the recorded instant is "no time passed", never a panic.
        assert!(!may_fetch_for_unknown_kid(Some(now + Duration::from_secs(5)), now, floor));
    }

    #[test]
    fn rfc7638_section_3_1_example() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(jwk.thumbprint().unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn private_members_are_refused() {
        let mut jwk = Jwk::ec("P-256", &[1; 32], &[2; 32]);
        assert!(jwk.is_public());
        assert!(jwk.thumbprint().is_ok());
        jwk.d = Some("AAAA".into());
        assert!(!jwk.is_public());
        assert_eq!(jwk.thumbprint(), Err(JwkError::PrivateMaterial));
    }

    #[test]
    fn thumbprint_ignores_optional_members() {
        let mut a = Jwk::ec("P-256", &[1; 32], &[2; 32]);
        let b = a.clone();
        a.kid = Some("x".into());
        a.alg = Some("ES256".into());
        assert_eq!(a.thumbprint(), b.thumbprint());
    }
}
