//! Signing keys: generation (aws-lc-rs), sealing at rest with the master key (AES-256-GCM), the in-memory key
//! set that signs and verifies tokens, and the published JWK Set.
//!
//! Lifecycle of a key, per algorithm (automatic key management, as in Duende IdentityServer):
//!
//! ```text
//!   created ──propagation_time──▶ activated ──rotation_interval──▶ retired ──retention_time──▶ removed
//!   Pending: published, not signing   Active: signs and is published   Retired: published only
//! ```
//!
//! `plan` decides the next steps from the stored keys and `now` (no I/O); `maintain` applies them. Every node
//! runs `maintain` each `key_reload_interval` and then reloads its `KeySet`. The successor of the active key is
//! generated `propagation_time` before the active key's `rotation_interval` ends, so a verifier that caches the
//! JWK Set has seen the new key before the first token it signs; the retired key stays published for
//! `retention_time`, so every token it signed expires before the key leaves the JWK Set. Hence:
//!
//! - `propagation_time` must exceed the JWK Set cache lifetime (`max-age=60`) plus `key_reload_interval`;
//! - `retention_time` must be at least the longest token lifetime (`access_token_ttl`, `id_token_ttl`) plus
//!   `key_reload_interval` (another node signs with the old key until its next reload). A shorter retention
//!   removes a key while tokens it signed are still unexpired (`tests/key_rotation.rs` shows both sides).
//!
//! Several nodes may run `maintain` at the same moment. Whatever they do, the outcome converges: every node signs
//! with the same key (`KeySet::from_records` picks the newest `activated_at`, the greater `kid` on a tie) and
//! the next `maintain` retires any other Active key of that algorithm (it stays published for its retention).
//! `gatehouse keys rotate` (`rotate_now`) forces the next step at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use gatehouse_proto::vocab::SigningAlg;
use gatehouse_proto::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::settings::{MasterKey, SigningSettings};
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

    /// Builds the key set from stored records: every non-removed key verifies and is published; of the active
    /// keys of each algorithm, the newest (`signing_rank`) signs, so every node makes the same choice.
    pub fn from_records(records: &[SigningKeyRecord], master: &MasterKey) -> Result<Self, KeyError> {
        let mut signing = HashMap::new();
        let mut verifying = HashMap::new();
        let mut published = JwkSet::default();
        let mut chosen: HashMap<SigningAlg, &SigningKeyRecord> = HashMap::new();
        for record in records {
            let decoding = decoding_key(&record.public_jwk).ok_or_else(|| KeyError::Malformed(record.kid.clone()))?;
            verifying.insert(record.kid.clone(), (record.alg, Arc::new(decoding)));
            published.keys.push(record.public_jwk.clone());
            if record.state == KeyState::Active {
                let best = chosen.entry(record.alg).or_insert(record);
                if signing_rank(record) > signing_rank(best) {
                    *best = record;
                }
            }
        }
        for (alg, record) in chosen {
            let der = unseal(master, &record.kid, &record.private_sealed)?;
            let encoding = encoding_key(alg, &der).ok_or_else(|| KeyError::Malformed(record.kid.clone()))?;
            signing.insert(alg, Arc::new(SigningKey { kid: record.kid.clone(), alg, encoding }));
        }
        let jwks = serde_json::to_vec(&published).map_err(|_| KeyError::Malformed("jwks".into()))?;
        Ok(Self { signing, verifying, jwks: Arc::new(jwks) })
    }
}

impl KeySet {
    /// The algorithms this set signs with.
    pub fn signing_algorithms(&self) -> impl Iterator<Item = SigningAlg> + '_ {
        self.signing.keys().copied()
    }
}

/// The stored keys as they stood at `at`: a key created later is left out, one activated later was still
/// pending, one retired later was still active. Every node signed with these keys at `at`; once
/// `key_reload_interval` has passed since, every node also publishes all of them (a retired key stays published
/// for `retention_time`), which is not yet so for a key that `rotate_now` activated moments ago.
pub fn as_of(records: &[SigningKeyRecord], at: Epoch) -> Vec<SigningKeyRecord> {
    records
        .iter()
        .filter(|record| record.created_at <= at)
        .map(|record| {
            let state = match record.state {
                KeyState::Pending => KeyState::Pending,
                _ if activated_at(record) > at => KeyState::Pending,
                KeyState::Retired if record.retired_at.is_none_or(|retired| retired <= at) => KeyState::Retired,
                _ => KeyState::Active,
            };
            SigningKeyRecord { state, ..record.clone() }
        })
        .collect()
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

/// One step of key management, decided by `plan` (or `plan_forced_rotation`) and applied by `maintain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// Generate a key for `alg`: `Pending` ahead of a rotation, `Active` only when the algorithm has no key that
    /// could sign (first start).
    Generate { alg: SigningAlg, state: KeyState },
    /// A pending key starts signing (`activated_at = now`).
    Activate { kid: String },
    /// An active key stops signing (`retired_at = now`); it stays published for `retention_time`.
    Retire { kid: String },
    /// A retired key leaves the store and the JWK Set.
    Remove { kid: String },
}

/// Applies the key plan for `now` to the store; true when anything changed. Every node runs it each
/// `key_reload_interval` (and then reloads its `KeySet`); concurrent runs converge (see the module docs).
pub async fn maintain(
    store: &Store,
    master: &MasterKey,
    algs: &[SigningAlg],
    settings: &SigningSettings,
    now: Epoch,
) -> Result<bool, KeyError> {
    let records = store.keys.list_keys().await?;
    let actions = plan(&records, algs, settings, now);
    apply(store, master, &actions, now).await?;
    Ok(!actions.is_empty())
}

/// The key-management steps due at `now`, per algorithm in `algs` (in this order: a key is activated before
/// the one it replaces is retired, so a reader never sees an algorithm without an active key):
///
/// 1. No active key: activate the oldest pending key published for at least `propagation_time`; without one,
///    generate an active key at once (first start: nothing was published, nothing to wait for).
/// 2. The active key has signed for `rotation_interval` and a pending key has been published for
///    `propagation_time`: activate the pending key, retire the active one.
/// 3. More than one active key (nodes that stepped at the same moment): keep the one `KeySet::from_records`
///    signs with, retire the others.
/// 4. The active key has signed for `rotation_interval - propagation_time` and no key is pending: generate a
///    pending key, which is then published for `propagation_time` before rule 2 activates it.
///
/// Then, for every algorithm: remove retired keys whose `retired_at + retention_time` has passed. Keys of
/// algorithms not in `algs` are otherwise left alone: during a rolling change of configuration, another node
/// may still sign with them (rule 3 still applies to them, as `KeySet::from_records` only signs with one).
pub fn plan(
    records: &[SigningKeyRecord],
    algs: &[SigningAlg],
    settings: &SigningSettings,
    now: Epoch,
) -> Vec<KeyAction> {
    let mut actions = Vec::new();
    let mut managed: Vec<SigningAlg> = Vec::new();
    for &alg in algs {
        if !managed.contains(&alg) {
            managed.push(alg);
            plan_algorithm(records, alg, settings, now, &mut actions);
        }
    }
    let mut unmanaged: Vec<SigningAlg> = Vec::new();
    for record in records {
        if record.state == KeyState::Active && !managed.contains(&record.alg) && !unmanaged.contains(&record.alg) {
            unmanaged.push(record.alg);
            if let Some(current) = current_active(records, record.alg) {
                retire_other_actives(records, current, &mut actions);
            }
        }
    }
    for record in records {
        // A retired key without a retirement time cannot be shown to have outlived its tokens: it is kept.
        let retention_over =
            record.retired_at.is_some_and(|retired| retired.saturating_add(settings.retention_time) <= now);
        if record.state == KeyState::Retired && retention_over {
            actions.push(KeyAction::Remove { kid: record.kid.clone() });
        }
    }
    actions
}

fn plan_algorithm(
    records: &[SigningKeyRecord],
    alg: SigningAlg,
    settings: &SigningSettings,
    now: Epoch,
    actions: &mut Vec<KeyAction>,
) {
    let pending: Vec<&SigningKeyRecord> =
        records.iter().filter(|r| r.alg == alg && r.state == KeyState::Pending).collect();
    // A pending key is published from its creation on.
    let ready = pending
        .iter()
        .filter(|r| now.saturating_sub(r.created_at) >= settings.propagation_time)
        .min_by_key(|r| (r.created_at, r.kid.as_str()));
    // Rule 1.
    let Some(current) = current_active(records, alg) else {
        match ready {
            Some(next) => actions.push(KeyAction::Activate { kid: next.kid.clone() }),
            None => actions.push(KeyAction::Generate { alg, state: KeyState::Active }),
        }
        return;
    };
    let age = now.saturating_sub(activated_at(current));
    // Rule 2. A pending key not yet published long enough waits: the active key signs a little longer.
    if age >= settings.rotation_interval
        && let Some(next) = ready
    {
        actions.push(KeyAction::Activate { kid: next.kid.clone() });
        actions.push(KeyAction::Retire { kid: current.kid.clone() });
        retire_other_actives(records, current, actions);
        return;
    }
    // Rule 3.
    retire_other_actives(records, current, actions);
    // Rule 4.
    if pending.is_empty() && age >= settings.rotation_interval.saturating_sub(settings.propagation_time) {
        actions.push(KeyAction::Generate { alg, state: KeyState::Pending });
    }
}

/// The active key of `alg` that signs: the same choice as `KeySet::from_records`.
fn current_active(records: &[SigningKeyRecord], alg: SigningAlg) -> Option<&SigningKeyRecord> {
    records.iter().filter(|r| r.alg == alg && r.state == KeyState::Active).max_by_key(|r| signing_rank(r))
}

fn retire_other_actives(records: &[SigningKeyRecord], current: &SigningKeyRecord, actions: &mut Vec<KeyAction>) {
    for other in records {
        if other.alg == current.alg && other.state == KeyState::Active && other.kid != current.kid {
            actions.push(KeyAction::Retire { kid: other.kid.clone() });
        }
    }
}

/// Orders the active keys of one algorithm: the greatest signs. Newest activation first, `kid` on a tie, so
/// every node reading the same records chooses the same key.
fn signing_rank(record: &SigningKeyRecord) -> (Epoch, &str) {
    (activated_at(record), record.kid.as_str())
}

fn activated_at(record: &SigningKeyRecord) -> Epoch {
    record.activated_at.unwrap_or(record.created_at)
}

/// Makes sure an active key exists for each algorithm in `algs`, generating what is missing, and returns the
/// stored keys. Run at start, before the settings are at hand: it is `maintain` with `FIRST_START` timings, so
/// it takes only the steps that need no timing (rule 1 generating a key, rule 3). The rest of the schedule is
/// up to the background task, whose first tick runs `maintain` with the configured timings at once.
pub async fn ensure_active(
    store: &Store,
    master: &MasterKey,
    algs: &[SigningAlg],
    now: Epoch,
) -> Result<Vec<SigningKeyRecord>, KeyError> {
    maintain(store, master, algs, &FIRST_START, now).await?;
    Ok(store.keys.list_keys().await?)
}

/// Timings under which nothing is ever due: no pending key is published long enough to activate, no active key
/// old enough to need a successor, no retention ever over.
const FIRST_START: SigningSettings = SigningSettings {
    id_token_alg: SigningAlg::RS256,
    access_token_alg: SigningAlg::ES256,
    key_reload_interval: 10,
    rotation_interval: Epoch::MAX,
    propagation_time: Epoch::MAX / 2,
    retention_time: Epoch::MAX,
};

/// Forces the next step now (`gatehouse keys rotate`), for every algorithm that has keys (all algorithms when
/// the store has none): the oldest pending key becomes active, or without one a new key is generated active;
/// the previous active keys are retired (still published for `retention_time`). Returns the `kid`s that became
/// active. A key activated this way may reach verifiers before their cached JWK Set has it.
pub async fn rotate_now(store: &Store, master: &MasterKey, now: Epoch) -> Result<Vec<String>, KeyError> {
    let records = store.keys.list_keys().await?;
    apply(store, master, &plan_forced_rotation(&records), now).await
}

/// The steps `rotate_now` takes, per algorithm that has keys (all of them when there are none).
pub fn plan_forced_rotation(records: &[SigningKeyRecord]) -> Vec<KeyAction> {
    let mut algs: Vec<SigningAlg> = records.iter().map(|r| r.alg).collect();
    if algs.is_empty() {
        algs = SigningAlg::ALL.to_vec();
    }
    algs.sort_by_key(|a| a.as_str());
    algs.dedup();
    let mut actions = Vec::new();
    for alg in algs {
        let next = records
            .iter()
            .filter(|r| r.alg == alg && r.state == KeyState::Pending)
            .min_by_key(|r| (r.created_at, r.kid.as_str()));
        actions.push(match next {
            Some(next) => KeyAction::Activate { kid: next.kid.clone() },
            None => KeyAction::Generate { alg, state: KeyState::Active },
        });
        for old in records.iter().filter(|r| r.alg == alg && r.state == KeyState::Active) {
            actions.push(KeyAction::Retire { kid: old.kid.clone() });
        }
    }
    actions
}

/// Applies `actions` in order; returns the `kid`s that became active.
async fn apply(store: &Store, master: &MasterKey, actions: &[KeyAction], now: Epoch) -> Result<Vec<String>, KeyError> {
    let mut activated = Vec::new();
    for action in actions {
        match action {
            KeyAction::Generate { alg, state } => {
                let record = generate(master, *alg, *state, now)?;
                tracing::info!(kid = %record.kid, alg = alg.as_str(), state = state.as_str(), "generated signing key");
                let kid = record.kid.clone();
                store.keys.insert_key(record).await?;
                if *state == KeyState::Active {
                    activated.push(kid);
                }
            }
            KeyAction::Activate { kid } => {
                store.keys.set_key_state(kid, KeyState::Active, now).await?;
                tracing::info!(%kid, "signing key activated");
                activated.push(kid.clone());
            }
            KeyAction::Retire { kid } => {
                store.keys.set_key_state(kid, KeyState::Retired, now).await?;
                tracing::info!(%kid, "signing key retired");
            }
            KeyAction::Remove { kid } => {
                store.keys.remove_key(kid).await?;
                tracing::info!(%kid, "signing key removed");
            }
        }
    }
    Ok(activated)
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

    #[test]
    fn keys_as_of_an_earlier_moment_undo_later_steps() {
        // k1 signed from 0 until `rotate_now` at 1000 activated k2; p was generated (pending) at 900.
        let mut k1 = retired("k1", RS, 1000);
        k1.activated_at = Some(0);
        k1.created_at = 0;
        let records = [k1, active("k2", RS, 1000), pending("p", RS, 900)];
        let state = |set: &[SigningKeyRecord], kid: &str| set.iter().find(|r| r.kid == kid).map(|r| r.state);
        let before = as_of(&records, 995);
        assert_eq!(state(&before, "k1"), Some(KeyState::Active), "still signing at 995");
        assert_eq!(state(&before, "k2"), None, "not created yet");
        assert_eq!(state(&before, "p"), Some(KeyState::Pending));
        assert_eq!(current_active(&before, RS).map(|r| r.kid.as_str()), Some("k1"));
        let after = as_of(&records, 1000);
        assert_eq!(state(&after, "k1"), Some(KeyState::Retired));
        assert_eq!(state(&after, "k2"), Some(KeyState::Active));
        assert_eq!(as_of(&records, 5000), records.to_vec(), "now is as stored");
        assert!(as_of(&records, -1).is_empty());
    }

    // ----- plan -----

    const ES: SigningAlg = SigningAlg::ES256;
    const RS: SigningAlg = SigningAlg::RS256;

    fn timings() -> SigningSettings {
        SigningSettings {
            rotation_interval: 1000,
            propagation_time: 200,
            retention_time: 400,
            ..SigningSettings::default()
        }
    }

    /// A record without real key material: `plan` reads only kid, alg, state and times.
    fn key(kid: &str, alg: SigningAlg, state: KeyState, created: Epoch) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.into(),
            alg,
            state,
            private_sealed: Vec::new(),
            public_jwk: Jwk::ec("P-256", &[1; 32], &[2; 32]),
            created_at: created,
            activated_at: None,
            retired_at: None,
        }
    }

    fn active(kid: &str, alg: SigningAlg, activated: Epoch) -> SigningKeyRecord {
        SigningKeyRecord { activated_at: Some(activated), ..key(kid, alg, KeyState::Active, activated) }
    }

    fn pending(kid: &str, alg: SigningAlg, created: Epoch) -> SigningKeyRecord {
        key(kid, alg, KeyState::Pending, created)
    }

    fn retired(kid: &str, alg: SigningAlg, retired_at: Epoch) -> SigningKeyRecord {
        SigningKeyRecord {
            activated_at: Some(retired_at - 1000),
            retired_at: Some(retired_at),
            ..key(kid, alg, KeyState::Retired, retired_at - 1200)
        }
    }

    fn generate_action(alg: SigningAlg, state: KeyState) -> KeyAction {
        KeyAction::Generate { alg, state }
    }

    fn activate(kid: &str) -> KeyAction {
        KeyAction::Activate { kid: kid.into() }
    }

    fn retire(kid: &str) -> KeyAction {
        KeyAction::Retire { kid: kid.into() }
    }

    fn remove(kid: &str) -> KeyAction {
        KeyAction::Remove { kid: kid.into() }
    }

    /// A case, the keys in the store, the managed algorithms, `now`, the expected steps.
    type PlanCase = (&'static str, Vec<SigningKeyRecord>, &'static [SigningAlg], Epoch, Vec<KeyAction>);

    #[test]
    fn plan_steps() {
        // Rotation 1000 s, propagation 200 s, retention 400 s.
        let cases: Vec<PlanCase> = vec![
            ("first start", vec![], &[ES], 0, vec![generate_action(ES, KeyState::Active)]),
            (
                "first start, each algorithm once",
                vec![],
                &[RS, ES, RS],
                0,
                vec![generate_action(RS, KeyState::Active), generate_action(ES, KeyState::Active)],
            ),
            ("young active key: nothing to do", vec![active("a", ES, 0)], &[ES], 799, vec![]),
            (
                "pending generation at rotation - propagation",
                vec![active("a", ES, 0)],
                &[ES],
                800,
                vec![generate_action(ES, KeyState::Pending)],
            ),
            (
                "late pending generation (node was down)",
                vec![active("a", ES, 0)],
                &[ES],
                5000,
                vec![generate_action(ES, KeyState::Pending)],
            ),
            ("pending exists: no second one", vec![active("a", ES, 0), pending("p", ES, 800)], &[ES], 999, vec![]),
            (
                "activation at rotation",
                vec![active("a", ES, 0), pending("p", ES, 800)],
                &[ES],
                1000,
                vec![activate("p"), retire("a")],
            ),
            (
                "rotation due but pending not yet propagated: the active key signs on",
                vec![active("a", ES, 0), pending("p", ES, 900)],
                &[ES],
                1099,
                vec![],
            ),
            (
                "activation once propagated",
                vec![active("a", ES, 0), pending("p", ES, 900)],
                &[ES],
                1100,
                vec![activate("p"), retire("a")],
            ),
            (
                "several pending: the oldest activates",
                vec![active("a", ES, 0), pending("q", ES, 850), pending("p", ES, 800)],
                &[ES],
                1000,
                vec![activate("p"), retire("a")],
            ),
            (
                "no active key: a propagated pending key activates",
                vec![pending("p", ES, 0)],
                &[ES],
                200,
                vec![activate("p")],
            ),
            (
                "no active key: an unpropagated pending key does not sign",
                vec![pending("p", ES, 0)],
                &[ES],
                199,
                vec![generate_action(ES, KeyState::Active)],
            ),
            (
                "retired key within retention stays",
                vec![active("b", ES, 1000), retired("a", ES, 1000)],
                &[ES],
                1399,
                vec![],
            ),
            (
                "retired key removed after retention",
                vec![active("b", ES, 1000), retired("a", ES, 1000)],
                &[ES],
                1400,
                vec![remove("a")],
            ),
            (
                "retired key of an unmanaged algorithm removed too",
                vec![active("b", ES, 1000), retired("r", RS, 1000)],
                &[ES],
                1400,
                vec![remove("r")],
            ),
            (
                "retired key without retirement time kept",
                vec![active("b", ES, 5500), key("a", ES, KeyState::Retired, 0)],
                &[ES],
                6000,
                vec![],
            ),
            (
                "two active keys: the newer stays",
                vec![active("z", ES, 10), active("a", ES, 11)],
                &[ES],
                12,
                vec![retire("z")],
            ),
            (
                "two active keys activated together: the greater kid stays",
                vec![active("b", ES, 10), active("a", ES, 10)],
                &[ES],
                12,
                vec![retire("a")],
            ),
            (
                "two active keys at rotation: both retire",
                vec![active("b", ES, 0), active("a", ES, 0), pending("p", ES, 800)],
                &[ES],
                1000,
                vec![activate("p"), retire("b"), retire("a")],
            ),
            (
                "unmanaged algorithm: not rotated, duplicates resolved",
                vec![active("e", ES, 4500), active("r1", RS, 0), active("r2", RS, 1)],
                &[ES],
                5000,
                vec![retire("r1")],
            ),
        ];
        for (case, records, algs, now, expected) in cases {
            assert_eq!(plan(&records, algs, &timings(), now), expected, "{case}");
        }
    }

    #[test]
    fn a_full_rotation_replays_the_schedule() {
        // Applying the plan to in-memory records every 50 s: each key is published 200 s before it signs,
        // signs 1000 s, and is published 400 s after.
        let settings = timings();
        let mut records: Vec<SigningKeyRecord> = Vec::new();
        let mut next_kid = 0;
        for now in (0..=3000).step_by(50) {
            for action in plan(&records, &[ES], &settings, now) {
                match action {
                    KeyAction::Generate { alg, state } => {
                        next_kid += 1;
                        let mut record = key(&format!("k{next_kid}"), alg, state, now);
                        record.activated_at = (state == KeyState::Active).then_some(now);
                        records.push(record);
                    }
                    KeyAction::Activate { kid } => {
                        let record = records.iter_mut().find(|r| r.kid == kid).unwrap();
                        record.state = KeyState::Active;
                        record.activated_at = Some(now);
                    }
                    KeyAction::Retire { kid } => {
                        let record = records.iter_mut().find(|r| r.kid == kid).unwrap();
                        record.state = KeyState::Retired;
                        record.retired_at = Some(now);
                    }
                    KeyAction::Remove { kid } => records.retain(|r| r.kid != kid),
                }
            }
            assert_eq!(records.iter().filter(|r| r.state == KeyState::Active).count(), 1, "at {now}");
        }
        let k = |kid: &str| records.iter().find(|r| r.kid == kid).cloned();
        // At 3000: k3 retired at 3000 (still published), k4 active since 3000; k1 and k2 removed.
        assert!(k("k1").is_none() && k("k2").is_none());
        let k3 = k("k3").unwrap();
        assert_eq!((k3.created_at, k3.activated_at, k3.retired_at), (1800, Some(2000), Some(3000)));
        let k4 = k("k4").unwrap();
        assert_eq!((k4.state, k4.created_at, k4.activated_at), (KeyState::Active, 2800, Some(3000)));
    }

    #[test]
    fn first_start_timings_take_no_scheduled_step() {
        let records = vec![active("a", ES, 0), pending("p", ES, 0), retired("r", ES, 10)];
        assert_eq!(plan(&records, &[ES], &FIRST_START, Epoch::MAX - 1), vec![]);
        assert_eq!(plan(&[], &[ES], &FIRST_START, 0), vec![generate_action(ES, KeyState::Active)]);
        let twins = vec![active("a", ES, 5), active("b", ES, 5)];
        assert_eq!(plan(&twins, &[ES], &FIRST_START, 6), vec![retire("a")]);
    }

    #[test]
    fn forced_rotation_steps() {
        let cases: Vec<(&str, Vec<SigningKeyRecord>, Vec<KeyAction>)> = vec![
            (
                "empty store: a key per algorithm",
                vec![],
                vec![generate_action(ES, KeyState::Active), generate_action(RS, KeyState::Active)],
            ),
            (
                "no pending key: a new active key",
                vec![active("a", ES, 0)],
                vec![generate_action(ES, KeyState::Active), retire("a")],
            ),
            (
                "pending key: it activates early",
                vec![active("a", ES, 0), pending("q", ES, 900), pending("p", ES, 800)],
                vec![activate("p"), retire("a")],
            ),
        ];
        for (case, records, expected) in cases {
            assert_eq!(plan_forced_rotation(&records), expected, "{case}");
        }
    }

    #[test]
    fn the_key_set_signs_with_the_active_key_plan_keeps() {
        let master = MasterKey([4; 32]);
        let mut first = generate(&master, ES, KeyState::Active, 100).unwrap();
        let mut second = generate(&master, ES, KeyState::Active, 100).unwrap();
        if first.kid > second.kid {
            std::mem::swap(&mut first, &mut second);
        }
        // Same activation time: the greater kid signs, whatever the order of the records.
        for records in [vec![first.clone(), second.clone()], vec![second.clone(), first.clone()]] {
            let set = KeySet::from_records(&records, &master).unwrap();
            assert_eq!(set.signer(ES).unwrap().kid, second.kid);
            assert_eq!(plan(&records, &[ES], &timings(), 101), vec![retire(&first.kid)]);
        }
        // A newer activation wins over a greater kid.
        first.activated_at = Some(101);
        let set = KeySet::from_records(&[second.clone(), first.clone()], &master).unwrap();
        assert_eq!(set.signer(ES).unwrap().kid, first.kid);
        assert_eq!(plan(&[second.clone(), first], &[ES], &timings(), 102), vec![retire(&second.kid)]);
    }
}
