//! Signing keys: generation (aws-lc-rs), sealing at rest with the master key (AES-256-GCM), the in-memory key
//! set that signs and verifies tokens, and the published JWK Set.
//!
//! Lifecycle: a key is `Pending` (published, not signing), then `Active` (signing, one per algorithm), then
//! `Retired` (published so tokens it signed keep verifying). This issue generates keys on first start and on
//! `gatehouse keys rotate`; scheduled rotation builds on the same states.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use gatehouse_proto::vocab::SigningAlg;
use gatehouse_proto::{Jwk, JwkSet, b64};
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::settings::MasterKey;
use crate::store::{Epoch, KeyState, SigningKeyRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key generation failed")]
    Generate,
    #[error("signing key {0} cannot be unsealed: wrong master key or corrupted key material")]
    Unseal(String),
    #[error("signing key {0} is malformed")]
    Malformed(String),
}

/// A key that signs tokens.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub encoding: EncodingKey,
}

/// The keys in force at one moment: what signs, what verifies, what is published.
pub struct KeySet {
    signing: HashMap<SigningAlg, Arc<SigningKey>>,
    verifying: HashMap<String, (SigningAlg, Arc<DecodingKey>)>,
    jwks: Arc<Vec<u8>>,
}

impl KeySet {
    /// The active key for an algorithm.
    pub fn signer(&self, alg: SigningAlg) -> Option<&Arc<SigningKey>> {
        self.signing.get(&alg)
    }

    /// A published key by `kid`, with its algorithm.
    pub fn verifier(&self, kid: &str) -> Option<(SigningAlg, &DecodingKey)> {
        self.verifying.get(kid).map(|(alg, key)| (*alg, key.as_ref()))
    }

    /// The JWK Set document as served at the JWKS endpoint.
    pub fn jwks_json(&self) -> Arc<Vec<u8>> {
        self.jwks.clone()
    }

    /// Builds the key set from stored records: every non-removed key verifies and is published; the newest
    /// active key of each algorithm signs.
    pub fn from_records(records: &[SigningKeyRecord], master: &MasterKey) -> Result<Self, KeyError> {
        let mut signing = HashMap::new();
        let mut verifying = HashMap::new();
        let mut published = JwkSet::default();
        let mut newest_active: HashMap<SigningAlg, Epoch> = HashMap::new();
        for record in records {
            let decoding = decoding_key(&record.public_jwk).ok_or_else(|| KeyError::Malformed(record.kid.clone()))?;
            verifying.insert(record.kid.clone(), (record.alg, Arc::new(decoding)));
            published.keys.push(record.public_jwk.clone());
            if record.state == KeyState::Active {
                let activated = record.activated_at.unwrap_or(record.created_at);
                if newest_active.get(&record.alg).is_some_and(|t| *t > activated) {
                    continue;
                }
                newest_active.insert(record.alg, activated);
                let der = unseal(master, &record.kid, &record.private_sealed)?;
                let encoding = encoding_key(record.alg, &der).ok_or_else(|| KeyError::Malformed(record.kid.clone()))?;
                signing.insert(record.alg, Arc::new(SigningKey { kid: record.kid.clone(), alg: record.alg, encoding }));
            }
        }
        let jwks = serde_json::to_vec(&published).map_err(|_| KeyError::Malformed("jwks".into()))?;
        Ok(Self { signing, verifying, jwks: Arc::new(jwks) })
    }
}

/// The live key set, swapped whole when keys change.
pub struct Keys {
    current: RwLock<Arc<KeySet>>,
}

impl Keys {
    pub fn new(set: KeySet) -> Self {
        Self { current: RwLock::new(Arc::new(set)) }
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: KeySet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    /// Re-reads keys from the store (picks up rotations made by the CLI or another node).
    pub async fn reload(&self, store: &Store, master: &MasterKey) -> Result<(), KeyError> {
        let records = store.keys.list_keys().await?;
        self.replace(KeySet::from_records(&records, master)?);
        Ok(())
    }
}

/// Makes sure an active key exists for each algorithm in `algs`, generating what is missing. Run at start.
pub async fn ensure_active(
    store: &Store,
    master: &MasterKey,
    algs: &[SigningAlg],
    now: Epoch,
) -> Result<Vec<SigningKeyRecord>, KeyError> {
    let mut records = store.keys.list_keys().await?;
    for alg in algs {
        if !records.iter().any(|r| r.alg == *alg && r.state == KeyState::Active) {
            let record = generate(master, *alg, KeyState::Active, now)?;
            tracing::info!(kid = %record.kid, alg = alg.as_str(), "generated signing key");
            store.keys.insert_key(record.clone()).await?;
            records.push(record);
        }
    }
    Ok(records)
}

/// Rotates now: a new active key per algorithm in use, previous active keys retired (still published).
pub async fn rotate_now(store: &Store, master: &MasterKey, now: Epoch) -> Result<Vec<String>, KeyError> {
    let records = store.keys.list_keys().await?;
    let mut algs: Vec<SigningAlg> = records.iter().map(|r| r.alg).collect();
    if algs.is_empty() {
        algs = SigningAlg::ALL.to_vec();
    }
    algs.sort_by_key(|a| a.as_str());
    algs.dedup();
    let mut created = Vec::new();
    for alg in algs {
        let record = generate(master, alg, KeyState::Active, now)?;
        store.keys.insert_key(record.clone()).await?;
        for old in records.iter().filter(|r| r.alg == alg && r.state == KeyState::Active) {
            store.keys.set_key_state(&old.kid, KeyState::Retired, now).await?;
        }
        created.push(record.kid);
    }
    Ok(created)
}

/// Generates a key pair and seals its private half.
pub fn generate(
    master: &MasterKey,
    alg: SigningAlg,
    state: KeyState,
    now: Epoch,
) -> Result<SigningKeyRecord, KeyError> {
    let (pkcs8, mut jwk) = match alg {
        SigningAlg::ES256 => {
            let doc =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new())
                    .map_err(|_| KeyError::Generate)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|_| KeyError::Generate)?;
            // Uncompressed SEC1 point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err(KeyError::Generate);
            }
            (doc.as_ref().to_vec(), Jwk::ec("P-256", &point[1..33], &point[33..]))
        }
        SigningAlg::RS256 => {
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
            let der = pair.as_der().map_err(|_| KeyError::Generate)?;
            let components = aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            (der.as_ref().to_vec(), Jwk::rsa(&components.n, &components.e))
        }
    };
    let kid = jwk.thumbprint().map_err(|_| KeyError::Generate)?;
    jwk.kid = Some(kid.clone());
    jwk.alg = Some(alg.as_str().to_owned());
    jwk.key_use = Some("sig".to_owned());
    let private_sealed = seal(master, &kid, &pkcs8);
    Ok(SigningKeyRecord {
        kid,
        alg,
        state,
        private_sealed,
        public_jwk: jwk,
        created_at: now,
        activated_at: (state == KeyState::Active).then_some(now),
        retired_at: None,
    })
}

fn encoding_key(alg: SigningAlg, pkcs8: &[u8]) -> Option<EncodingKey> {
    match alg {
        SigningAlg::ES256 => Some(EncodingKey::from_ec_der(pkcs8)),
        SigningAlg::RS256 => {
            // jsonwebtoken reads RSA keys as PKCS#1 DER or as PEM (PKCS#1 or PKCS#8): hand it PKCS#8 PEM.
            let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.to_vec()));
            EncodingKey::from_rsa_pem(pem.as_bytes()).ok()
        }
    }
}

fn decoding_key(jwk: &Jwk) -> Option<DecodingKey> {
    match jwk.kty.as_str() {
        "EC" => DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?).ok(),
        "RSA" => DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok(),
        _ => None,
    }
}

/// AES-256-GCM with a random 96-bit nonce prepended; the `kid` is authenticated data, so a sealed key cannot
/// be moved to another record.
fn seal(master: &MasterKey, kid: &str, plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new((&master.0).into());
    let nonce = crate::random::bytes::<12>();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: kid.as_bytes() })
        .expect("AES-GCM encryption of a short buffer cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

fn unseal(master: &MasterKey, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < 12 {
        return Err(KeyError::Unseal(kid.to_owned()));
    }
    let (nonce, body) = sealed.split_at(12);
    Aes256Gcm::new((&master.0).into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: kid.as_bytes() })
        .map_err(|_| KeyError::Unseal(kid.to_owned()))
}

/// The `kid` of a compact JWS, read from its header (without verifying anything).
pub fn header_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Base64url-encoded random key id material for tests and callers that need one.
pub fn random_kid() -> String {
    b64::encode(crate::random::bytes::<12>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify() {
        let master = MasterKey([3; 32]);
        for alg in SigningAlg::ALL {
            let record = generate(&master, alg, KeyState::Active, 1000).unwrap();
            assert_eq!(record.public_jwk.kid.as_deref(), Some(record.kid.as_str()));
            assert!(record.public_jwk.is_public());
            let set = KeySet::from_records(std::slice::from_ref(&record), &master).unwrap();
            let signer = set.signer(alg).unwrap();
            let jalg = match alg {
                SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
                SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            };
            let mut header = jsonwebtoken::Header::new(jalg);
            header.kid = Some(signer.kid.clone());
            let token = jsonwebtoken::encode(
                &header,
                &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
                &signer.encoding,
            )
            .unwrap();
            let (_, key) = set.verifier(&record.kid).unwrap();
            let mut validation = jsonwebtoken::Validation::new(jalg);
            validation.required_spec_claims.clear();
            validation.validate_aud = false;
            jsonwebtoken::decode::<serde_json::Value>(&token, key, &validation).unwrap();
        }
    }

    #[test]
    fn wrong_master_key_is_refused() {
        let record = generate(&MasterKey([1; 32]), SigningAlg::ES256, KeyState::Active, 0).unwrap();
        let err = KeySet::from_records(&[record], &MasterKey([2; 32])).err().unwrap();
        assert!(matches!(err, KeyError::Unseal(_)));
    }

    #[test]
    fn sealed_key_is_bound_to_its_kid() {
        let master = MasterKey([1; 32]);
        let mut record = generate(&master, SigningAlg::ES256, KeyState::Active, 0).unwrap();
        record.kid = "another".into();
        assert!(KeySet::from_records(&[record], &master).is_err());
    }
}
