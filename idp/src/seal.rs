//! Authenticated encryption of small server-issued values that travel through the browser (the login form's
//! pending authorization request, the IdP session cookie): AES-256-GCM with a random nonce, base64url.
//! Each use gets its own key derived from the master key with a distinct label, and its own associated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use gatehouse_proto::b64;
use sha2::{Digest, Sha256};

use crate::settings::MasterKey;

/// A 256-bit key for one use, derived from the master key and a label (domain separation).
pub fn derive_key(master: &MasterKey, label: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"gatehouse/seal/v1/");
    hasher.update(label.as_bytes());
    hasher.update([0]);
    hasher.update(master.0);
    hasher.finalize().into()
}

pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    /// A sealer whose key is derived from the master key and `label` (domain separation between uses).
    pub fn derive(master: &MasterKey, label: &str) -> Self {
        let key = derive_key(master, label);
        Self { cipher: Aes256Gcm::new((&key).into()) }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let nonce = crate::random::bytes::<12>();
        let body = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM encryption of a short buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&body);
        b64::encode(out)
    }

    /// The plaintext, or `None` for anything not sealed by this sealer with this `aad` (tampered, truncated,
    /// another key, another use).
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() > 16 * 1024 {
            return None;
        }
        let raw = b64::decode(sealed)?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, body) = raw.split_at(12);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let sealer = Sealer::derive(&MasterKey([9; 32]), "test");
        let sealed = sealer.seal(b"hello", b"ctx");
        assert_eq!(sealer.open(&sealed, b"ctx").unwrap(), b"hello");
        assert!(sealer.open(&sealed, b"other").is_none());
        let other = Sealer::derive(&MasterKey([9; 32]), "other");
        assert!(other.open(&sealed, b"ctx").is_none());
        let mut bytes = b64::decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(sealer.open(&b64::encode(&bytes), b"ctx").is_none());
        assert!(sealer.open("", b"ctx").is_none());
        assert!(sealer.open("!!!", b"ctx").is_none());
    }
}
