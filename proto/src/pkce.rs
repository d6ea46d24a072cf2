//! Proof Key for Code Exchange (RFC 7636), S256 only: `plain` is refused everywhere (RFC 9700 §2.1.1).

use sha2::{Digest, Sha256};

use crate::b64;
use crate::secret::ct_eq;

/// A validated `code_challenge`: exactly the base64url encoding of a SHA-256 digest (43 characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge is required")]
    MissingChallenge,
    #[error("code_challenge_method must be S256")]
    UnsupportedMethod,
    #[error("code_challenge must be 43 base64url characters")]
    MalformedChallenge,
    #[error("code_verifier must be 43 to 128 characters of [A-Z a-z 0-9 - . _ ~]")]
    MalformedVerifier,
}

impl CodeChallenge {
    /// Parses the authorization request's `code_challenge` and `code_challenge_method`.
    /// RFC 7636 §4.3: a missing method means `plain`, which this server does not support.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, PkceError> {
        let challenge = challenge.filter(|c| !c.is_empty()).ok_or(PkceError::MissingChallenge)?;
        if method != Some("S256") {
            return Err(PkceError::UnsupportedMethod);
        }
        // RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters, no padding.
        match b64::decode(challenge) {
            Some(bytes) if bytes.len() == 32 && challenge.len() == 43 => Ok(Self(challenge.to_owned())),
            _ => Err(PkceError::MalformedChallenge),
        }
    }

    /// Computes the S256 challenge of a verifier (used by clients: the gateway and tests).
    pub fn s256(verifier: &CodeVerifier) -> Self {
        Self(b64::encode(Sha256::digest(verifier.0.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Restores a challenge that was validated before it was stored.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) == code_challenge, compared in constant time.
    pub fn verify(&self, verifier: &CodeVerifier) -> bool {
        let computed = b64::encode(Sha256::digest(verifier.0.as_bytes()));
        ct_eq(computed.as_bytes(), self.0.as_bytes())
    }
}

/// A syntactically valid `code_verifier` (RFC 7636 §4.1).
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl std::fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeVerifier(<redacted>)")
    }
}

impl CodeVerifier {
    /// RFC 7636 §4.1: 43–128 characters from the unreserved set.
    pub fn parse(value: &str) -> Result<Self, PkceError> {
        let unreserved = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        if (43..=128).contains(&value.len()) && value.chars().all(unreserved) {
            Ok(Self(value.to_owned()))
        } else {
            Err(PkceError::MalformedVerifier)
        }
    }

    /// A verifier from 32 random bytes supplied by the caller (randomness is injected).
    pub fn from_random(bytes: &[u8; 32]) -> Self {
        Self(b64::encode(bytes))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B test vector.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = CodeVerifier::parse(VERIFIER).unwrap();
        assert_eq!(CodeChallenge::s256(&verifier).as_str(), CHALLENGE);
        let challenge = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        assert!(challenge.verify(&verifier));
    }

    #[test]
    fn oauth_pk01_to_pk05_challenge_rules() {
        assert_eq!(CodeChallenge::parse(None, Some("S256")), Err(PkceError::MissingChallenge));
        assert_eq!(CodeChallenge::parse(Some(CHALLENGE), Some("plain")), Err(PkceError::UnsupportedMethod));
        assert_eq!(CodeChallenge::parse(Some(CHALLENGE), None), Err(PkceError::UnsupportedMethod));
        assert_eq!(CodeChallenge::parse(Some(CHALLENGE), Some("S512")), Err(PkceError::UnsupportedMethod));
        assert_eq!(CodeChallenge::parse(Some("abc"), Some("S256")), Err(PkceError::MalformedChallenge));
        let padded = format!("{}=", &CHALLENGE[..42]);
        assert_eq!(CodeChallenge::parse(Some(&padded), Some("S256")), Err(PkceError::MalformedChallenge));
        let plus = CHALLENGE.replace('-', "+");
        assert_eq!(CodeChallenge::parse(Some(&plus), Some("S256")), Err(PkceError::MalformedChallenge));
    }

    #[test]
    fn oauth_pk07_verifier_rules() {
        assert!(CodeVerifier::parse(&"a".repeat(42)).is_err());
        assert!(CodeVerifier::parse(&"a".repeat(43)).is_ok());
        assert!(CodeVerifier::parse(&"a".repeat(128)).is_ok());
        assert!(CodeVerifier::parse(&"a".repeat(129)).is_err());
        assert!(CodeVerifier::parse(&format!("{}!", "a".repeat(43))).is_err());
        let challenge = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        // The challenge itself used as verifier must not verify.
        assert!(!challenge.verify(&CodeVerifier::parse(CHALLENGE).unwrap()));
    }
}
