//! Automatic signing-key management over the real router and store, with a manual clock: the token service is
//! driven through several full rotations the way a node's background task drives it (maintain, reload), signing
//! tokens all along, and at every moment every unexpired token must verify against the JWK Set served then.
//!
//! Run with `cargo test -p gatehouse-idp --test key_rotation`.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::http::StatusCode;
use gatehouse_idp::keys;
use gatehouse_idp::server::Inner;
use gatehouse_idp::store::{Epoch, KeyState, SigningKeyRecord};
use gatehouse_idp::{Store, tokens};
use gatehouse_proto::JwkSet;
use gatehouse_proto::vocab::SigningAlg;
use support::*;

/// Each step is one tick of a node's background task.
const STEP: i64 = 50;

#[derive(Clone, Copy)]
struct Timings {
    rotation: i64,
    propagation: i64,
    retention: i64,
    token_ttl: i64,
}

const SHORT: Timings = Timings { rotation: 1000, propagation: 200, retention: 400, token_ttl: 300 };

/// What the test saw at one moment, after maintenance, reload and signing.
struct Moment {
    now: Epoch,
    /// The stored keys.
    records: Vec<SigningKeyRecord>,
    /// The `kid`s in the JWK Set served at `/jwks`.
    published: BTreeSet<String>,
    /// The key each of this moment's new tokens was signed with.
    signed_with: Vec<(SigningAlg, String)>,
    /// Tokens issued so far and not expired at `now`.
    unexpired: usize,
    /// Those of them that did not verify against the served JWK Set, with why.
    unverifiable: Vec<String>,
}

struct Issued {
    token: String,
    exp: Epoch,
}

/// Starts a token service with `timings` and drives it for `duration` seconds in `STEP`s. At each step:
/// `keys::maintain`, reload, an ES256 access token through `POST /token` (client_credentials) and an RS256 token
/// signed directly (as ID tokens are), then every unexpired token is checked against `GET /jwks`.
async fn drive(timings: Timings, duration: i64) -> Vec<Moment> {
    let h = Harness::with(
        |settings| {
            settings.signing.rotation_interval = timings.rotation;
            settings.signing.propagation_time = timings.propagation;
            settings.signing.retention_time = timings.retention;
            settings.signing.key_reload_interval = STEP;
            settings.tokens.access_token_ttl = timings.token_ttl;
            settings.tokens.id_token_ttl = timings.token_ttl;
        },
        None,
    )
    .await;
    let state: &Inner = h.idp.state();
    let signing = &state.settings.signing;
    assert_eq!((signing.id_token_alg, signing.access_token_alg), (SigningAlg::RS256, SigningAlg::ES256));
    let algs = [signing.id_token_alg, signing.access_token_alg, SigningAlg::RS256];
    let mut issued: Vec<Issued> = Vec::new();
    let mut moments = Vec::new();
    let mut elapsed = 0;
    loop {
        let now = h.clock_now();
        keys::maintain(&state.store, &state.settings.master_key, &algs, signing, now).await.expect("maintain");
        state.keys.reload(&state.store, &state.settings.master_key).await.expect("reload");

        let reply = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials"), ("scope", "api")]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let access_token = reply.json()["access_token"].as_str().expect("access_token").to_owned();
        let claims =
            serde_json::json!({"iss": ISSUER, "sub": "alice", "aud": "c1", "iat": now, "exp": now + timings.token_ttl});
        let id_token = tokens::sign(&state.keys.current(), SigningAlg::RS256, "JWT", &claims).expect("sign");
        let mut signed_with = Vec::new();
        for token in [access_token, id_token] {
            let (header, payload) = jwt_parts(&token);
            let alg = SigningAlg::parse(header["alg"].as_str().unwrap()).unwrap();
            signed_with.push((alg, header["kid"].as_str().unwrap().to_owned()));
            issued.push(Issued { token, exp: payload["exp"].as_i64().unwrap() });
        }

        // RFC 7519 §4.1.4: a token is expired on or after `exp`.
        issued.retain(|t| now < t.exp);
        let jwks_reply = h.get("/jwks", None).await;
        assert_eq!(jwks_reply.status, StatusCode::OK);
        let jwks: JwkSet = serde_json::from_slice(&jwks_reply.body).expect("JWK Set");
        let unverifiable = issued.iter().filter_map(|t| verify(&jwks, &t.token).err()).collect();
        moments.push(Moment {
            now,
            records: state.store.keys.list_keys().await.expect("keys"),
            published: jwks.keys.iter().filter_map(|k| k.kid.clone()).collect(),
            signed_with,
            unexpired: issued.len(),
            unverifiable,
        });
        if elapsed >= duration {
            return moments;
        }
        h.clock.advance(STEP);
        elapsed += STEP;
    }
}

/// Verifies a token as a resource server would: the key named by `kid` in the served JWK Set, the header's
/// algorithm (which must be the key's), the signature and `iss`. Expiry is the caller's (the clock is manual).
fn verify(jwks: &JwkSet, token: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk =
        jwks.keys.iter().find(|k| k.kid.as_deref() == Some(kid.as_str())).ok_or(format!("{kid} not published"))?;
    let alg = SigningAlg::parse(jwk.alg.as_deref().unwrap_or_default()).ok_or("key without alg")?;
    if tokens::jose_alg(alg) != header.alg {
        return Err(format!("{kid}: header alg does not match the key"));
    }
    let key = jwk.decoding_key(header.alg).ok_or(format!("{kid}: unusable key"))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map(|_| ()).map_err(|e| format!("{kid}: {e}"))
}

trait ClockNow {
    fn clock_now(&self) -> Epoch;
}

impl ClockNow for Harness {
    fn clock_now(&self) -> Epoch {
        self.idp.state().now()
    }
}

fn active_keys(records: &[SigningKeyRecord], alg: SigningAlg) -> Vec<&SigningKeyRecord> {
    records.iter().filter(|r| r.alg == alg && r.state == KeyState::Active).collect()
}

#[tokio::test]
async fn every_unexpired_token_verifies_through_several_rotations() {
    let t = SHORT;
    assert!(t.retention >= t.token_ttl + STEP, "retention covers the token lifetime plus one reload interval");
    assert!(t.propagation > 60 + STEP, "propagation covers the JWKS cache (max-age=60) plus one reload interval");
    let moments = drive(t, 5 * t.rotation + 500).await;

    let mut first_published: BTreeMap<String, Epoch> = BTreeMap::new();
    let mut retired_at: BTreeMap<String, Epoch> = BTreeMap::new();
    let mut signers: HashMap<SigningAlg, BTreeSet<String>> = HashMap::new();
    for m in &moments {
        // Every token issued so far and not expired verifies against the JWK Set served now.
        assert!(m.unexpired >= 2);
        assert!(m.unverifiable.is_empty(), "at {}: {:?}", m.now - START, m.unverifiable);

        for kid in &m.published {
            first_published.entry(kid.clone()).or_insert(m.now);
        }
        for record in &m.records {
            if let Some(at) = record.retired_at {
                retired_at.insert(record.kid.clone(), at);
            }
        }
        for (alg, kid) in &m.signed_with {
            // Exactly one active key per algorithm at every moment, and it is the one that signs.
            let active = active_keys(&m.records, *alg);
            assert_eq!(active.len(), 1, "at {}: {alg:?} active keys {active:?}", m.now - START);
            assert_eq!(&active[0].kid, kid);
            // A new key is in the JWK Set at least propagation_time before it signs anything (the keys
            // generated on first start excepted: nothing could have been signed with a predecessor).
            let published_for = m.now - first_published[kid];
            assert!(
                first_published[kid] == START || published_for >= t.propagation,
                "at {}: {kid} signs after being published for {published_for} s",
                m.now - START
            );
            signers.entry(*alg).or_default().insert(kid.clone());
        }
        // A retired key stays published for exactly retention_time after it stopped signing, then disappears.
        for (kid, retired) in &retired_at {
            let within_retention = m.now < retired + t.retention;
            assert_eq!(m.published.contains(kid), within_retention, "at {}: {kid} retired at {retired}", m.now - START);
        }
        // Nothing else is published: at most the active key, its pending successor and its retired predecessor.
        for alg in SigningAlg::ALL {
            let published = m.records.iter().filter(|r| r.alg == alg).count();
            assert!(published <= 3, "at {}: {published} {alg:?} keys", m.now - START);
        }
    }
    // Several full rotations happened, each after rotation_interval, for both algorithms.
    for alg in SigningAlg::ALL {
        let kids = &signers[&alg];
        assert_eq!(kids.len(), 6, "{alg:?}: one key per rotation interval");
        let mut activations: Vec<Epoch> = kids
            .iter()
            .map(|kid| moments.iter().find(|m| m.signed_with.contains(&(alg, kid.clone()))).unwrap().now - START)
            .collect();
        activations.sort();
        assert_eq!(activations, vec![0, 1000, 2000, 3000, 4000, 5000], "{alg:?}");
    }
    let removed = first_published.keys().filter(|kid| !moments.last().unwrap().published.contains(*kid)).count();
    assert_eq!(removed, 10, "the five retired keys of each algorithm have left the JWK Set");
}

/// Why retention_time must be at least the token lifetime: with a shorter one, a key leaves the JWK Set while
/// tokens it signed are unexpired, and they stop verifying.
#[tokio::test]
async fn retention_shorter_than_the_token_lifetime_strands_tokens() {
    let moments = drive(Timings { retention: 100, ..SHORT }, 2 * SHORT.rotation).await;
    let stranded: Vec<&Moment> = moments.iter().filter(|m| !m.unverifiable.is_empty()).collect();
    assert!(!stranded.is_empty());
    assert!(stranded.iter().all(|m| m.unverifiable.iter().all(|e| e.ends_with("not published"))));
    // The first stranding is when the first retired key is removed: retirement at 1000 + retention 100.
    assert_eq!(stranded[0].now - START, 1100);
}

#[tokio::test]
async fn rotate_now_forces_the_next_step() {
    let h = Harness::with(
        |settings| {
            settings.signing.rotation_interval = SHORT.rotation;
            settings.signing.propagation_time = SHORT.propagation;
            settings.signing.retention_time = SHORT.retention;
        },
        None,
    )
    .await;
    let state = h.idp.state();
    let master = &state.settings.master_key;
    let algs = [SigningAlg::RS256, SigningAlg::ES256];
    let first = state.store.keys.list_keys().await.unwrap();
    assert_eq!(first.len(), 2);

    // With a pending key: it becomes active at once (before its propagation time), the active one retires.
    h.clock.advance(850);
    assert!(keys::maintain(&state.store, master, &algs, &state.settings.signing, h.clock_now()).await.unwrap());
    let records = state.store.keys.list_keys().await.unwrap();
    let pending: BTreeSet<String> =
        records.iter().filter(|r| r.state == KeyState::Pending).map(|r| r.kid.clone()).collect();
    assert_eq!(pending.len(), 2);
    let activated: BTreeSet<String> =
        keys::rotate_now(&state.store, master, h.clock_now()).await.unwrap().into_iter().collect();
    assert_eq!(activated, pending);
    let records = state.store.keys.list_keys().await.unwrap();
    for alg in algs {
        assert_eq!(active_keys(&records, alg).len(), 1);
        assert!(pending.contains(&active_keys(&records, alg)[0].kid));
    }
    assert!(first.iter().all(|old| records.iter().any(|r| r.kid == old.kid && r.state == KeyState::Retired)));

    // Without one: a new key is generated active.
    h.clock.advance(10);
    let activated = keys::rotate_now(&state.store, master, h.clock_now()).await.unwrap();
    assert_eq!(activated.len(), 2);
    let records = state.store.keys.list_keys().await.unwrap();
    assert_eq!(records.len(), 6);
    for alg in algs {
        let active = active_keys(&records, alg);
        assert_eq!(active.len(), 1);
        assert!(activated.contains(&active[0].kid) && !pending.contains(&active[0].kid));
    }
    // All of them are still published.
    state.keys.reload(&state.store, master).await.unwrap();
    let jwks: JwkSet = serde_json::from_slice(&h.get("/jwks", None).await.body).unwrap();
    assert_eq!(jwks.keys.len(), 6);
    // The schedule then continues from the new keys: nothing due yet, nothing removed before retention.
    assert!(!keys::maintain(&state.store, master, &algs, &state.settings.signing, h.clock_now()).await.unwrap());
}

#[tokio::test]
async fn nodes_that_step_at_once_converge_on_one_signing_key() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let settings = gatehouse_idp::Settings::for_tests(ISSUER);
    let master = &settings.master_key;
    let algs = [SigningAlg::ES256];
    // Two nodes on first start at the same second each generate an active key.
    for _ in 0..2 {
        let record = keys::generate(master, SigningAlg::ES256, KeyState::Active, START).unwrap();
        store.keys.insert_key(record).await.unwrap();
    }
    let records = store.keys.list_keys().await.unwrap();
    // Both nodes sign with the same key at once (newest activation, then greatest kid) ...
    let node_a = keys::KeySet::from_records(&records, master).unwrap();
    let reversed: Vec<SigningKeyRecord> = records.iter().rev().cloned().collect();
    let node_b = keys::KeySet::from_records(&reversed, master).unwrap();
    let winner = node_a.signer(SigningAlg::ES256).unwrap().kid.clone();
    assert_eq!(node_b.signer(SigningAlg::ES256).unwrap().kid, winner);
    assert_eq!(winner, records.iter().map(|r| r.kid.clone()).max().unwrap());

    // ... and the next maintenance, run by both nodes concurrently, retires the other one (still published).
    let (a, b) = tokio::join!(
        keys::maintain(&store, master, &algs, &settings.signing, START + 1),
        keys::maintain(&store, master, &algs, &settings.signing, START + 1),
    );
    assert!(a.unwrap() || b.unwrap());
    let records = store.keys.list_keys().await.unwrap();
    let active = active_keys(&records, SigningAlg::ES256);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].kid, winner);
    assert_eq!(records.iter().filter(|r| r.state == KeyState::Retired).count(), 1);
    let after = keys::KeySet::from_records(&records, master).unwrap();
    assert_eq!(after.signer(SigningAlg::ES256).unwrap().kid, winner);
    assert_eq!(serde_json::from_slice::<JwkSet>(&after.jwks_json()).unwrap().keys.len(), 2);
}
