//! DPoP proof verification (RFC 9449 §4.3) — the one implementation, used by the token endpoint, PAR,
//! userinfo and the API-side verifier — plus stateless server nonces (§8, §9).
//!
//! `verify` performs every check of §4.3 that needs no state and returns the proof's `jkt` and `jti`; the caller
//! spends the `jti` in its replay cache (catalogue DD4: single use per key within the window) and compares the
//! `jkt` with the token's `cnf.jkt` (§4.3 (12), §7.1).

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::jwk::Jwk;
use crate::{b64, secret};

/// The JOSE `typ` of a DPoP proof (§4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// Algorithms accepted in proofs (asymmetric only: §4.3 (5), RFC 8725 §3.1). Advertised as
/// `dpop_signing_alg_values_supported` and in `WWW-Authenticate: DPoP algs="…"`.
pub const DPOP_ALGS: [&str; 5] = ["ES256", "ES384", "EdDSA", "PS256", "RS256"];

/// Largest proof accepted, in bytes.
const MAX_PROOF_LEN: usize = 8 * 1024;

/// Why a proof was refused. Every variant maps to `invalid_dpop_proof` except `UseNonce` (`use_dpop_nonce`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("no DPoP proof")]
    Missing,
    #[error("more than one DPoP header")]
    Multiple,
    #[error("the proof is not a compact JWS")]
    Malformed,
    #[error("typ must be dpop+jwt")]
    Type,
    #[error("alg is not an allowed asymmetric algorithm")]
    Algorithm,
    #[error("jwk is missing, private, or does not fit alg")]
    Key,
    #[error("signature does not verify")]
    Signature,
    #[error("a required claim is missing")]
    MissingClaim,
    #[error("htm does not match the request method")]
    Method,
    #[error("htu does not match the request URI")]
    Uri,
    #[error("iat is outside the accepted window")]
    Time,
    #[error("ath does not match the access token")]
    AccessTokenHash,
    #[error("a fresh server nonce is required")]
    UseNonce,
    #[error("the proof was used before")]
    Replay,
    #[error("the proof's key does not match the token's binding")]
    KeyMismatch,
}

impl DpopError {
    /// The OAuth error code (§7.1, §8).
    pub fn error_code(self) -> &'static str {
        match self {
            Self::UseNonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// The accepted `iat` window (catalogue DD5): proofs up to `future_skew` seconds ahead and `max_age` old.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub future_skew: i64,
    pub max_age: i64,
}

impl Default for TimeWindow {
    fn default() -> Self {
        Self { future_skew: 60, max_age: 300 }
    }
}

/// What the request looks like, for the request-binding checks.
pub struct Request<'a> {
    /// The HTTP method (`htm`).
    pub method: &'a str,
    /// The request URI as the server is reached (`htu`), with or without query.
    pub uri: &'a str,
    /// The access token presented with the proof (resource requests): `ath` is then required (§4.3 (11)).
    pub access_token: Option<&'a str>,
    pub now: i64,
    pub window: TimeWindow,
    /// When the server requires nonces: the validator for the `nonce` claim (§4.3 (10)).
    pub nonces: Option<&'a NonceIssuer>,
}

/// A proof that passed every stateless check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof key (`cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    /// The replay key: the `jti` scoped to the key that signed it (catalogue DD4).
    pub replay_key: String,
}

#[derive(Deserialize)]
struct ProofHeader {
    typ: Option<String>,
    alg: Option<String>,
    jwk: Option<Jwk>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<serde_json::Value>,
    ath: Option<String>,
    nonce: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

/// Verifies the DPoP header values of a request (all of them: there must be exactly one).
pub fn verify<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    request: &Request<'_>,
) -> Result<VerifiedProof, DpopError> {
    let mut values = header_values.into_iter();
    let proof = values.next().ok_or(DpopError::Missing)?;
    // §4.3 (1): exactly one DPoP header.
    if values.next().is_some() {
        return Err(DpopError::Multiple);
    }
    verify_proof(proof, request)
}

/// Verifies one proof (RFC 9449 §4.3, steps in the RFC's order).
pub fn verify_proof(proof: &str, request: &Request<'_>) -> Result<VerifiedProof, DpopError> {
    // §4.3 (2): a single well-formed JWT: a compact JWS, no duplicate members, no `crit` (`crate::jose`).
    if proof.len() > MAX_PROOF_LEN || crate::jose::check_compact(proof).is_err() {
        return Err(DpopError::Malformed);
    }
    let header_part = proof.split('.').next().ok_or(DpopError::Malformed)?;
    let header: ProofHeader =
        b64::decode(header_part).and_then(|bytes| serde_json::from_slice(&bytes).ok()).ok_or(DpopError::Malformed)?;
    // §4.3 (4): typ has the value dpop+jwt, exactly (catalogue DPOP-S05: no other spelling, no `application/`).
    if header.typ.as_deref() != Some(DPOP_TYP) {
        return Err(DpopError::Type);
    }
    // §4.3 (5): an asymmetric algorithm we support; never `none` or MAC.
    let alg_name = header.alg.ok_or(DpopError::Algorithm)?;
    if !DPOP_ALGS.contains(&alg_name.as_str()) {
        return Err(DpopError::Algorithm);
    }
    let alg: Algorithm = alg_name.parse().map_err(|_| DpopError::Algorithm)?;
    // §4.3 (7): the jwk header is a public key.
    let jwk = header.jwk.ok_or(DpopError::Key)?;
    if !jwk.is_public() {
        return Err(DpopError::Key);
    }
    let key = jwk.decoding_key(alg).ok_or(DpopError::Key)?;
    // §4.3 (6): the signature verifies with that key.
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => DpopError::Signature,
        jsonwebtoken::errors::ErrorKind::Json(_) => DpopError::Malformed,
        _ => DpopError::Signature,
    })?;
    let claims = claims.claims;
    // §4.3 (3): required claims.
    let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256).ok_or(DpopError::MissingClaim)?;
    let htm = claims.htm.ok_or(DpopError::MissingClaim)?;
    let htu = claims.htu.ok_or(DpopError::MissingClaim)?;
    // iat must be a JSON number (NumericDate); strings are refused.
    let iat = claims.iat.as_ref().and_then(serde_json::Value::as_i64).ok_or(DpopError::MissingClaim)?;
    // §4.3 (8): htm matches the method (case-sensitive, as methods are).
    if htm != request.method {
        return Err(DpopError::Method);
    }
    // §4.3 (9): htu matches the request URI, ignoring query and fragment, after normalisation (RFC 3986 §6).
    if normalise_htu(&htu).is_none() || normalise_htu(&htu) != normalise_htu(request.uri) {
        return Err(DpopError::Uri);
    }
    // §4.3 (10): the server's nonce, when it requires one.
    if let Some(nonces) = request.nonces
        && !claims.nonce.as_deref().is_some_and(|n| nonces.is_valid(n, request.now))
    {
        return Err(DpopError::UseNonce);
    }
    // §4.3 (11): iat within the window (DD5).
    if iat > request.now + request.window.future_skew || iat < request.now - request.window.max_age {
        return Err(DpopError::Time);
    }
    // RFC 7519 §4.1.4, §4.1.5: optional `exp` and `nbf` keep their JWT meaning, with the same skew as `iat`
    // (catalogue DPOP-B08).
    if claims.exp.is_some_and(|exp| exp + request.window.future_skew <= request.now)
        || claims.nbf.is_some_and(|nbf| nbf > request.now + request.window.future_skew)
    {
        return Err(DpopError::Time);
    }
    // §4.3 (12): with an access token, ath = base64url(SHA-256(token)). At the token endpoint ath is ignored
    // (catalogue DD3: WG consensus).
    if let Some(token) = request.access_token {
        let expected = b64::encode(Sha256::digest(token.as_bytes()));
        if !claims.ath.as_deref().is_some_and(|ath| secret::ct_eq(ath.as_bytes(), expected.as_bytes())) {
            return Err(DpopError::AccessTokenHash);
        }
    }
    let jkt = jwk.thumbprint().map_err(|_| DpopError::Key)?;
    let replay_key = format!("{jkt}:{jti}");
    Ok(VerifiedProof { jkt, jti, iat, replay_key })
}

/// `scheme://host[:port]/path` after RFC 3986 §6.2.2 and §6.2.3 normalisation (catalogue DPOP-B04): scheme and
/// host lower-cased, default port dropped, dot segments resolved, percent-encoded unreserved characters decoded
/// and other percent-encodings upper-cased; the host's trailing dot (the DNS root) dropped; query and fragment
/// removed. `None` for anything that is not an absolute http(s) URL.
pub fn normalise_htu(uri: &str) -> Option<String> {
    let mut url = url::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    if let Some(host) = url.host_str().and_then(|h| h.strip_suffix('.')).filter(|h| !h.is_empty()).map(str::to_owned) {
        url.set_host(Some(&host)).ok()?;
    }
    let path = normalise_percent_encoding(url.path());
    url.set_path(&path);
    Some(url.to_string())
}

/// RFC 3986 §6.2.2.1 and §6.2.2.2: `%7e` → `~`, `%2f` → `%2F`.
fn normalise_percent_encoding(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) =
                (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            let decoded = (high * 16 + low) as u8;
            if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                out.push(decoded as char);
            } else {
                out.push('%');
                out.push_str(&format!("{decoded:02X}"));
            }
            i += 3;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// `base64url(SHA-256(access_token))`, the `ath` claim (§4.2).
pub fn ath(access_token: &str) -> String {
    b64::encode(Sha256::digest(access_token.as_bytes()))
}

/// Stateless rotating nonces (§8): `base64url(slot || HMAC-SHA256(key, slot)[..16])`. A nonce is valid in its
/// time slot and the next one, so every node with the same key agrees without shared state.
pub struct NonceIssuer {
    key: [u8; 32],
    slot_seconds: i64,
}

impl NonceIssuer {
    pub fn new(key: [u8; 32], slot_seconds: i64) -> Self {
        Self { key, slot_seconds: slot_seconds.max(1) }
    }

    fn tag(&self, slot: i64) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"gatehouse/dpop-nonce/v1");
        mac.update(&slot.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The nonce to hand out now.
    pub fn current(&self, now: i64) -> String {
        let slot = now.div_euclid(self.slot_seconds);
        let mut bytes = slot.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.tag(slot));
        b64::encode(bytes)
    }

    /// Whether a nonce was issued in the current or the previous slot.
    pub fn is_valid(&self, nonce: &str, now: i64) -> bool {
        let Some(bytes) = b64::decode(nonce) else { return false };
        if bytes.len() != 24 {
            return false;
        }
        let slot = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let current = now.div_euclid(self.slot_seconds);
        (slot == current || slot == current - 1) && secret::ct_eq(&bytes[8..], &self.tag(slot))
    }
}

#[cfg(test)]
mod tests;

/// Spends proof identifiers (catalogue DD4). In-process by default; a shared store (Redis) replaces it when
/// several nodes serve one deployment.
#[async_trait::async_trait]
pub trait ReplayCache: Send + Sync {
    /// True the first time `key` is seen within the proof window; false for every later use.
    async fn first_use(&self, key: &str) -> bool;
}

/// A bounded in-memory replay cache whose entries live as long as a proof is acceptable.
pub struct MemoryReplayCache {
    seen: moka::sync::Cache<String, ()>,
}

impl MemoryReplayCache {
    pub fn new(window: TimeWindow, capacity: u64) -> Self {
        let ttl = (window.future_skew + window.max_age).max(1) as u64;
        Self {
            seen: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(std::time::Duration::from_secs(ttl))
                .build(),
        }
    }
}

#[async_trait::async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn first_use(&self, key: &str) -> bool {
        self.seen.entry(key.to_owned()).or_insert(()).is_fresh()
    }
}
