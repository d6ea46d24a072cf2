//! The client side of DPoP (RFC 9449 §4): a key pair that signs a fresh proof per request. The gateway holds
//! one per login; tests use it to act as a DPoP client.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::dpop::{DPOP_TYP, ath};
use crate::{Jwk, b64};

/// An ES256 DPoP key. `Debug` shows only the thumbprint.
pub struct DpopKey {
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    jwk: Jwk,
    jkt: String,
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
        Ok(Self { pkcs8: pkcs8.to_vec(), encoding: EncodingKey::from_ec_der(pkcs8), jwk, jkt })
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
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(DPOP_TYP.to_owned());
        // jsonwebtoken's Header carries its own JWK type: serialise ours through it.
        header.jwk = serde_json::to_value(&self.jwk).ok().and_then(|v| serde_json::from_value(v).ok());
        let htu = crate::dpop::normalise_htu(uri).unwrap_or_else(|| uri.to_owned());
        let mut jti = [0u8; 16];
        let _ = aws_lc_rs::rand::fill(&mut jti);
        let mut claims = serde_json::json!({"jti": b64::encode(jti), "htm": method, "htu": htu, "iat": now});
        if let Some(token) = access_token {
            claims["ath"] = ath(token).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap_or_default()
    }
}
