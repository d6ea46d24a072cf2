//! The API-side verifier: what a resource server behind the gateway calls for each request.
//!
//! ```no_run
//! # async fn demo(headers: http::HeaderMap) -> Result<(), gatehouse_proto::verifier::Rejection> {
//! use gatehouse_proto::verifier::{Verifier, VerifierConfig};
//! let verifier = Verifier::new(VerifierConfig::new("https://id.example.com", "https://api.example.com"));
//! let caller = verifier.verify("GET", "https://api.example.com/orders", &headers).await?;
//! println!("{} via {} (DPoP key {:?})", caller.sub, caller.client_id, caller.jkt);
//! # Ok(()) }
//! ```
//!
//! It fetches the issuer's JWKS (`<issuer>/jwks` unless configured) and caches it, refreshing when a token names
//! an unknown `kid` (OpenID Connect Core §10.1.1; after a fetch that did not find its `kid`, not again for
//! `min_refresh_interval`); validates the RFC 9068 access token (`typ`, `alg`
//! from the allow-list and matching the key, signature, `iss`, `aud`, `exp`, `nbf`); and, for DPoP-bound tokens
//! (RFC 9449 §7), the proof: `DPoP` scheme, every §4.3 check via `crate::dpop`, `ath`, `cnf.jkt` equality and
//! `jti` replay. Failures come back as a `Rejection` carrying the RFC 6750 / RFC 9449 status and
//! `WWW-Authenticate` value to send.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::Validation;

use crate::claims::{ACCESS_TOKEN_TYP, AccessTokenClaims, typ_matches};
use crate::dpop::{self, DPOP_ALGS, MemoryReplayCache, ReplayCache, TimeWindow};
use crate::jwk::JwkSet;

/// Access-token algorithms accepted by default (what Gatehouse signs with).
pub const ACCESS_TOKEN_ALGS: [&str; 2] = ["ES256", "RS256"];

#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// This API's audience: the token's `aud` must contain it.
    pub audience: String,
    /// Where the signing keys are; default `<issuer>/jwks`.
    pub jwks_uri: String,
    /// Accepted access-token algorithms.
    pub algorithms: Vec<String>,
    /// Refuse Bearer tokens: every token must be DPoP-bound.
    pub require_dpop: bool,
    /// Clock skew tolerated for `exp`/`nbf`, seconds.
    pub leeway: i64,
    pub dpop_window: TimeWindow,
    /// After a JWKS fetch that did not find the `kid` it was made for (or failed), no fetch for another unknown
    /// `kid` for this long: `kid`s made up by callers cost at most one fetch per interval. A fetch that found its
    /// key (a rotation) holds nothing back.
    pub min_refresh_interval: Duration,
    /// Timeout of one JWKS fetch.
    pub fetch_timeout: Duration,
}

impl VerifierConfig {
    pub fn new(issuer: &str, audience: &str) -> Self {
        let issuer = issuer.trim_end_matches('/').to_owned();
        Self {
            jwks_uri: format!("{issuer}/jwks"),
            issuer,
            audience: audience.to_owned(),
            algorithms: ACCESS_TOKEN_ALGS.iter().map(|a| (*a).to_owned()).collect(),
            require_dpop: false,
            leeway: 5,
            dpop_window: TimeWindow::default(),
            min_refresh_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// The verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// The DPoP key thumbprint the token is bound to and the proof was signed with.
    pub jkt: Option<String>,
    pub claims: AccessTokenClaims,
}

/// A refusal, ready to send: status, `WWW-Authenticate`, and a JSON body with `error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub error: &'static str,
    pub www_authenticate: String,
    /// Why, for logs (never sent).
    pub reason: &'static str,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.error, self.reason)
    }
}

impl std::error::Error for Rejection {}

fn challenge(scheme: &str, error: Option<&str>) -> String {
    let algs = DPOP_ALGS.join(" ");
    match (scheme, error) {
        ("DPoP", Some(e)) => format!("DPoP error=\"{e}\", algs=\"{algs}\""),
        ("DPoP", None) => format!("DPoP algs=\"{algs}\""),
        (_, Some(e)) => format!("Bearer error=\"{e}\""),
        (_, None) => "Bearer".to_owned(),
    }
}

fn reject(scheme: &str, error: &'static str, reason: &'static str) -> Rejection {
    Rejection { status: 401, error, www_authenticate: challenge(scheme, Some(error)), reason }
}

pub struct Verifier {
    config: VerifierConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<JwkSet>>,
    /// When the last fetch that did not find its `kid` ended (`jwk::may_fetch_for_unknown_kid`).
    last_fruitless_fetch: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    replay: Arc<dyn ReplayCache>,
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Self {
        let replay = Arc::new(MemoryReplayCache::new(config.dpop_window, 1_000_000));
        Self::with_replay_cache(config, replay)
    }

    /// A verifier sharing its DPoP replay cache with other nodes (e.g. Redis).
    pub fn with_replay_cache(config: VerifierConfig, replay: Arc<dyn ReplayCache>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            keys: RwLock::new(Arc::new(JwkSet::default())),
            last_fruitless_fetch: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            replay,
        }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verifies a request: `method` and `url` as the client sent them (the URL the client addressed, for `htu`).
    pub async fn verify(&self, method: &str, url: &str, headers: &http::HeaderMap) -> Result<Caller, Rejection> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.verify_at(method, url, headers, now).await
    }

    pub async fn verify_at(
        &self,
        method: &str,
        url: &str,
        headers: &http::HeaderMap,
        now: i64,
    ) -> Result<Caller, Rejection> {
        let mut authorizations = headers.get_all(http::header::AUTHORIZATION).iter();
        let (first, second) = (authorizations.next(), authorizations.next());
        // RFC 6750 §3.1 / RFC 9449 §7.2: two Authorization headers (e.g. Bearer and DPoP) are a malformed
        // request: 400 invalid_request, never "the first one wins".
        if second.is_some() {
            let scheme = if self.config.require_dpop { "DPoP" } else { "Bearer" };
            return Err(Rejection {
                status: 400,
                error: "invalid_request",
                www_authenticate: challenge(scheme, Some("invalid_request")),
                reason: "more than one Authorization header",
            });
        }
        let Some(authorization) = first else {
            // RFC 6750 §3.1: no credentials → a bare challenge, no error code.
            let scheme = if self.config.require_dpop { "DPoP" } else { "Bearer" };
            return Err(Rejection {
                status: 401,
                error: "invalid_request",
                www_authenticate: challenge(scheme, None),
                reason: "no single Authorization header",
            });
        };
        let (scheme, token) = authorization
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .map(|(s, t)| (s, t.trim()))
            .ok_or_else(|| reject("Bearer", "invalid_token", "malformed Authorization header"))?;
        let scheme = if scheme.eq_ignore_ascii_case("dpop") {
            "DPoP"
        } else if scheme.eq_ignore_ascii_case("bearer") {
            "Bearer"
        } else {
            return Err(reject("Bearer", "invalid_token", "unsupported authorization scheme"));
        };
        if scheme == "Bearer" && self.config.require_dpop {
            return Err(reject("DPoP", "invalid_token", "DPoP required"));
        }
        let claims = self.validate_token(scheme, token, now).await?;
        // RFC 9449 §7.1: bound tokens need the DPoP scheme and a proof of the bound key.
        let jkt = match (&claims.cnf, scheme) {
            (Some(_), "Bearer") => return Err(reject("DPoP", "invalid_token", "DPoP-bound token sent as Bearer")),
            (None, "DPoP") => return Err(reject("DPoP", "invalid_token", "DPoP scheme with an unbound token")),
            (Some(cnf), _) => {
                let values = headers.get_all("dpop").iter().map(|v| v.to_str().unwrap_or(""));
                let request = dpop::Request {
                    method,
                    uri: url,
                    access_token: Some(token),
                    now,
                    window: self.config.dpop_window,
                    nonces: None,
                };
                let proof = dpop::verify(values, &request).map_err(|e| Rejection {
                    status: 401,
                    error: e.error_code(),
                    www_authenticate: challenge("DPoP", Some(e.error_code())),
                    reason: "invalid DPoP proof",
                })?;
                // RFC 9449 §7.1: "Invalid DPoP key binding" is a token problem: invalid_token.
                if !crate::secret::ct_eq(proof.jkt.as_bytes(), cnf.jkt.as_bytes()) {
                    return Err(reject("DPoP", "invalid_token", "proof key does not match cnf.jkt"));
                }
                if !self.replay.first_use(&proof.replay_key).await {
                    return Err(reject("DPoP", "invalid_dpop_proof", "DPoP proof replayed"));
                }
                Some(proof.jkt)
            }
            (None, _) => None,
        };
        Ok(Caller {
            sub: claims.sub.clone(),
            client_id: claims.client_id.clone(),
            scopes: claims.scopes().map(str::to_owned).collect(),
            jkt,
            claims,
        })
    }

    /// RFC 9068 §4: typ, alg, signature, iss, aud, exp, nbf.
    async fn validate_token(&self, scheme: &str, token: &str, now: i64) -> Result<AccessTokenClaims, Rejection> {
        let invalid = |reason| reject(scheme, "invalid_token", reason);
        if token.len() > 16 * 1024 {
            return Err(invalid("token too large"));
        }
        // Compact JWS, no duplicate members, no `crit`, NumericDates in seconds (RFC 8725, `crate::jose`).
        crate::jose::check_compact(token).map_err(|_| invalid("malformed token"))?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token"))?;
        if !typ_matches(header.typ.as_deref(), ACCESS_TOKEN_TYP) {
            return Err(invalid("typ is not at+jwt"));
        }
        let alg_name = format!("{:?}", header.alg);
        if !self.config.algorithms.contains(&alg_name) {
            return Err(invalid("algorithm not allowed"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no kid"))?;
        let jwk = self.key(&kid).await.ok_or_else(|| invalid("unknown signing key"))?;
        // The key's own alg, when published, must agree with the header (RFC 8725 §3.1).
        if jwk.alg.as_deref().is_some_and(|a| a != alg_name) {
            return Err(invalid("algorithm does not match the key"));
        }
        let key = jwk.decoding_key(header.alg).ok_or_else(|| invalid("key does not fit the algorithm"))?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<AccessTokenClaims>(token, &key, &validation)
            .map_err(|_| invalid("bad signature or claims"))?
            .claims;
        if claims.iss != self.config.issuer {
            return Err(invalid("wrong issuer"));
        }
        if !claims.aud.contains(&self.config.audience) {
            return Err(invalid("wrong audience"));
        }
        if claims.exp + self.config.leeway <= now {
            return Err(invalid("expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + self.config.leeway) || claims.iat > now + self.config.leeway + 60 {
            return Err(invalid("not yet valid"));
        }
        Ok(claims)
    }

    /// The JWK with `kid`, fetching the JWKS when it is unknown (OpenID Connect Core §10.1.1: an unfamiliar `kid`
    /// means the signer rotated), unless a fetch that found nothing was too recent (`may_fetch_for_unknown_kid`).
    async fn key(&self, kid: &str) -> Option<crate::Jwk> {
        if let Some(jwk) = self.keys.read().ok()?.find(kid) {
            return Some(jwk.clone());
        }
        let _guard = self.fetch_lock.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(jwk) = self.keys.read().ok()?.find(kid) {
            return Some(jwk.clone());
        }
        let last_fruitless = *self.last_fruitless_fetch.lock().ok()?;
        if !crate::jwk::may_fetch_for_unknown_kid(last_fruitless, Instant::now(), self.config.min_refresh_interval) {
            return None;
        }
        let found = match self.fetch().await {
            Ok(set) => {
                let found = set.find(kid).cloned();
                *self.keys.write().ok()? = Arc::new(set);
                found
            }
            Err(error) => {
                tracing::warn!(%error, uri = %self.config.jwks_uri, "JWKS fetch failed");
                None
            }
        };
        if found.is_none() {
            *self.last_fruitless_fetch.lock().ok()? = Some(Instant::now());
        }
        found
    }

    async fn fetch(&self) -> Result<JwkSet, reqwest::Error> {
        let response = self.http.get(&self.config.jwks_uri).send().await?.error_for_status()?;
        // Bound the body: a JWKS is small.
        let bytes = response.bytes().await?;
        if bytes.len() > 256 * 1024 {
            return Ok(JwkSet::default());
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or_default())
    }
}

#[cfg(feature = "axum")]
pub mod axum_layer {
    //! An axum middleware: verifies each request and puts the `Caller` in the request extensions, or answers
    //! the rejection. `X-Forwarded-Proto`/`Host` are not trusted: configure `public_base` for `htu`.
    //!
    //! ```ignore
    //! let app = Router::new().route("/", get(handler))
    //!     .layer(axum::middleware::from_fn_with_state(Arc::new(Protected { verifier, public_base }), require_caller));
    //! ```

    use std::sync::Arc;

    use axum::extract::{Request, State};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};

    use super::Verifier;

    /// The verifier and the public URL the API is reached at (scheme://host[:port]), for DPoP `htu`.
    pub struct Protected {
        pub verifier: Verifier,
        pub public_base: String,
    }

    pub async fn require_caller(State(protected): State<Arc<Protected>>, mut request: Request, next: Next) -> Response {
        let url = format!("{}{}", protected.public_base.trim_end_matches('/'), request.uri().path());
        match protected.verifier.verify(request.method().as_str(), &url, request.headers()).await {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                next.run(request).await
            }
            Err(rejection) => {
                tracing::info!(reason = rejection.reason, "request refused");
                let status =
                    axum::http::StatusCode::from_u16(rejection.status).unwrap_or(axum::http::StatusCode::UNAUTHORIZED);
                let mut response = (status, axum::Json(serde_json::json!({"error": rejection.error}))).into_response();
                if let Ok(value) = axum::http::HeaderValue::from_str(&rejection.www_authenticate) {
                    response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, value);
                }
                response
                    .headers_mut()
                    .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
                response
            }
        }
    }
}
