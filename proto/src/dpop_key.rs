//! The client side of DPoP (RFC 9449 §4): a key pair that signs a fresh proof per request. The gateway holds
//! one per login; tests use it to act as a DPoP client.
//!
//! The gateway signs a proof for every request it forwards, so this is on the hot path: the key pair is
//! parsed once (`jsonwebtoken::encode` would re-parse and re-check the PKCS#8 key on every call, which cost as
//! much as the signature itself) and the protected header — the same for every proof of a key — is encoded
//! once. Per proof only the claims are serialised and signed (aws-lc ECDSA P-256, the JWS fixed-width `R || S`
//! signature of RFC 7518 §3.4), then joined in JWS compact serialisation (RFC 7515 §7.1).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use crate::dpop::{DPOP_TYP, ath};
use crate::{Jwk, b64};

/// The claims of a proof (§4.2), serialised straight from borrowed fields.
#[derive(serde::Serialize)]
struct ProofClaims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// An ES256 DPoP key. `Debug` shows only the thumbprint.
pub struct DpopKey {
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
    jwk: Jwk,
    jkt: String,
    /// base64url of the protected header `{"typ":"dpop+jwt","alg":"ES256","jwk":{…}}`.
    header: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopKey(jkt={})", self.jkt)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("DPoP key error")]
pub struct DpopKeyError;

impl DpopKey {
    /// A new P-256 key from the OS CSPRNG.
    pub fn generate() -> Result<Self, DpopKeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| DpopKeyError)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// Restores a key from its PKCS#8 DER (as kept in an encrypted session).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, DpopKeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| DpopKeyError)?;
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return Err(DpopKeyError);
        }
        let jwk = Jwk::ec("P-256", &point[1..33], &point[33..]);
        let jkt = jwk.thumbprint().map_err(|_| DpopKeyError)?;
        let header = serde_json::json!({"typ": DPOP_TYP, "alg": "ES256", "jwk": &jwk});
        let header = b64::encode(serde_json::to_vec(&header).map_err(|_| DpopKeyError)?);
        Ok(Self { pkcs8: pkcs8.to_vec(), pair, jwk, jkt, header })
    }

    /// PKCS#8 DER of the private key: keep it sealed.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The key's thumbprint, the `jkt` a bound token carries.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A proof for one request (§4.2): `htu` without query and fragment, a random `jti`, `ath` when an access
    /// token is sent, the server's `nonce` when it asked for one.
    pub fn proof(&self, method: &str, uri: &str, access_token: Option<&str>, nonce: Option<&str>, now: i64) -> String {
        let htu = crate::dpop::normalise_htu(uri).unwrap_or_else(|| uri.to_owned());
        let mut jti = [0u8; 16];
        let _ = aws_lc_rs::rand::fill(&mut jti);
        let jti = b64::encode(jti);
        let ath = access_token.map(ath);
        let claims = ProofClaims { jti: &jti, htm: method, htu: &htu, iat: now, ath: ath.as_deref(), nonce };
        let Ok(payload) = serde_json::to_vec(&claims) else { return String::new() };
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 90);
        jws.push_str(&self.header);
        jws.push('.');
        jws.push_str(&b64::encode(payload));
        let Ok(signature) = self.pair.sign(&aws_lc_rs::rand::SystemRandom::new(), jws.as_bytes()) else {
            return String::new();
        };
        jws.push('.');
        jws.push_str(&b64::encode(signature.as_ref()));
        jws
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    /// The hand-assembled compact JWS is what a JOSE library reads: same header, verifying signature.
    #[test]
    fn proofs_verify_with_jsonwebtoken_and_carry_the_jwk_header() {
        let key = DpopKey::generate().unwrap();
        let proof = key.proof("GET", "https://api.example/x?q=1#f", Some("token"), Some("n-1"), 1_700_000_000);
        let header = jsonwebtoken::decode_header(&proof).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.typ.as_deref(), Some(DPOP_TYP));
        let jwk: Jwk = serde_json::from_value(serde_json::to_value(header.jwk.unwrap()).unwrap()).unwrap();
        assert_eq!(jwk.thumbprint().unwrap(), key.jkt());
        let point = key.pair.public_key().as_ref();
        let decoding =
            DecodingKey::from_ec_components(&b64::encode(&point[1..33]), &b64::encode(&point[33..])).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(&proof, &decoding, &validation).unwrap().claims;
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example/x");
        assert_eq!(claims["ath"], ath("token"));
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["iat"], 1_700_000_000);
        let other = key.proof("GET", "https://api.example/x", None, None, 1_700_000_000);
        assert_ne!(
            jsonwebtoken::decode::<serde_json::Value>(&other, &decoding, &validation).unwrap().claims["jti"],
            claims["jti"],
            "a fresh jti per proof"
        );
    }

    #[test]
    fn a_key_survives_its_pkcs8_round_trip() {
        let key = DpopKey::generate().unwrap();
        let again = DpopKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(again.jkt(), key.jkt());
        assert!(DpopKey::from_pkcs8(&key.pkcs8()[1..]).is_err());
    }
}
