//! Where a session's state travels: the one place that knows the session mode (`settings::SessionMode`).
//!
//! - **Server** (default): the session lives in the `SessionStore`; the browser's cookie carries only the sealed
//!   session id (`Gateway::session_cookie`). Logout deletes the row.
//! - **Cookie**: the whole `Session` (claims, ID token, tokens, the DPoP private key, `created_at`, `last_seen`)
//!   is serialized compactly (no compression before encryption: CRYPT-15), sealed with one AEAD and split over
//!   cookie chunks (`chunks`). Nothing is stored per session except (a) the list of ended sessions (`ended`), so
//!   a cookie copied before logout is dead afterwards (BFF-LO03, CRYPT-16), and (b) for a few minutes, the
//!   latest refreshed tokens per session id, so requests still carrying the pre-refresh cookie use them instead
//!   of refreshing again with a rotated refresh token (BFF-SESS12/13, CRYPT-18). Idle and absolute expiry come
//!   from the sealed `last_seen`/`created_at`, never from the browser's `Expires` (CRYPT-17).
//!
//! Endpoints and the proxy call the `Gateway` methods below and never look at the mode: `carried` reads the
//! request's session, `response_cookies` says which `Set-Cookie` lines the response needs (a re-sealed cookie
//! when the session changed, deletions when the cookie is dead), `establish` / `end_session` / `end_idp_sessions`
//! start and end sessions, `fresh` refreshes tokens.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_proto::b64;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::chunks;
use crate::cookies;
use crate::ended::{Ended, EndedSessions, MemoryEndedSessions};
use crate::refresh::{RefreshError, RefreshSessions, StoreSessions};
use crate::session::{ResourceToken, Session, StoreError, Tokens};
use crate::settings::{SessionMode, SessionSettings};
use crate::state::Gateway;

/// How long the latest refreshed tokens of a session are remembered for requests carrying an older cookie.
/// Longer than any burst of requests sent before the browser stored the re-sealed cookie; beyond it a stale
/// cookie refreshes with its own (rotated) refresh token, which the token service's reuse grace may refuse.
pub const LATEST_TOKENS_TTL: Duration = Duration::from_secs(300);

/// Longest cookie name in cookie mode (each chunk's `Set-Cookie` line must stay under 4096 bytes).
const MAX_COOKIE_NAME: usize = 64;

/// The session mode and what it needs.
pub enum SessionCarrier {
    /// Sessions in `Gateway::sessions`.
    Server,
    /// Sessions in sealed cookie chunks.
    Cookie(CookieCarrier),
}

/// Cookie mode's server-side parts.
pub struct CookieCarrier {
    /// Sessions that ended (logout, back-channel logout, refused refresh).
    pub ended: Arc<dyn EndedSessions>,
    /// The latest tokens per session id, newer than the cookie that asked for them.
    latest: moka::future::Cache<String, Arc<Tokens>>,
}

impl CookieCarrier {
    pub fn new(ended: Arc<dyn EndedSessions>) -> Self {
        Self {
            ended,
            latest: moka::future::Cache::builder().max_capacity(100_000).time_to_live(LATEST_TOKENS_TTL).build(),
        }
    }
}

impl SessionCarrier {
    /// The carrier for `settings.mode`; cookie mode starts with an in-memory (per process) ended-session list.
    pub fn new(settings: &SessionSettings, cookie_name: &str) -> anyhow::Result<Self> {
        Ok(match settings.mode {
            SessionMode::Server => Self::Server,
            SessionMode::Cookie => {
                if cookie_name.len() > MAX_COOKIE_NAME {
                    anyhow::bail!("cookie sessions need a cookie name of at most {MAX_COOKIE_NAME} characters");
                }
                Self::Cookie(CookieCarrier::new(Arc::new(MemoryEndedSessions::new())))
            }
        })
    }
}

/// The session a request carries, and what is needed to answer it.
#[derive(Default)]
pub struct Carried {
    /// The live session, with the newest known tokens.
    pub session: Option<Arc<Session>>,
    /// Cookie mode: the chunk indices the request carries. Server mode: `[0]` when it carries the session
    /// cookie at all (a dead one is then deleted).
    present: Vec<usize>,
    /// The cookie (cookie mode: its first chunk) was sealed under an older key of the ring; the answer re-seals
    /// it under the current one (catalogue CRYPT-12), so the old key can be retired once every active session
    /// was seen.
    reseal: bool,
    /// Cookie mode: the session exactly as sealed in the request's cookie.
    sealed: Option<Arc<Session>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EstablishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the session is too large for cookie chunks")]
    TooLarge,
}

impl Gateway {
    /// The live session of the request. Anything wrong with the cookie (does not open, unknown id, idle or past
    /// its absolute lifetime, ended) is simply "no session"; in cookie mode such a cookie's chunks are cleared by
    /// `response_cookies`.
    pub async fn carried(&self, headers: &HeaderMap, now: i64) -> Result<Carried, StoreError> {
        match &self.carrier {
            SessionCarrier::Server => {
                let pairs = cookies::from_headers(headers);
                let present = if pairs.iter().any(|(n, _)| n == self.cookie_name()) { vec![0] } else { Vec::new() };
                let dead = |present| Ok(Carried { present, ..Carried::default() });
                let Some((id, key_id)) = self.opened_session_cookie(&pairs) else { return dead(present) };
                let Some(session) = self.sessions.get(&id).await? else { return dead(present) };
                if !session.is_live(self.lifetimes, now) {
                    self.sessions.remove(&id).await?;
                    return dead(present);
                }
                let reseal = key_id != self.ring().current_id();
                Ok(Carried { session: Some(session), present, reseal, sealed: None })
            }
            SessionCarrier::Cookie(carrier) => {
                let pairs = cookies::from_headers(headers);
                let name = self.cookie_name();
                let present = chunks::present(name, &pairs);
                let dead = |present| Ok(Carried { present, ..Carried::default() });
                let plaintext = match chunks::open(&self.ring(), name, &pairs) {
                    Ok(Some(plaintext)) => plaintext,
                    Ok(None) => return dead(present),
                    Err(e) => {
                        tracing::debug!(error = %e, "session cookie chunks refused");
                        return dead(present);
                    }
                };
                let Some(session) = decode_session(&plaintext) else { return dead(present) };
                // CRYPT-17: expiry from the sealed times, whatever the browser's cookie lifetime said.
                if !session.is_live(self.lifetimes, now) || carrier.ended.is_ended(&session).await? {
                    return dead(present);
                }
                let sealed = Arc::new(session);
                let mut current = sealed.clone();
                if let Some(latest) = carrier.latest.get(&sealed.id).await
                    && is_newer(&latest, &sealed.tokens)
                {
                    current = Arc::new(Session { tokens: (*latest).clone(), ..(*sealed).clone() });
                }
                // CRYPT-12: chunks sealed under an older key of the ring are re-sealed under the current one.
                let reseal = pairs
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, value)| value.split_once('.'))
                    .is_some_and(|(key_id, _)| key_id != self.ring().current_id());
                Ok(Carried { session: Some(current), present, sealed: Some(sealed), reseal })
            }
        }
    }

    /// The `Set-Cookie` lines a response needs, given the session as the request leaves it (`None`: none). Server
    /// mode: a deletion when the request's cookie is dead, the cookie re-sealed under the current key when it
    /// was sealed under an older one, else none (the store has the session). Cookie mode: the re-sealed chunks when the session changed (refreshed
    /// tokens, slid idle time), deleting chunks the new set no longer uses; deletions when the request's cookie
    /// is dead.
    pub fn response_cookies(&self, carried: &Carried, current: Option<&Session>) -> Vec<String> {
        let name = self.cookie_name();
        if let SessionCarrier::Server = &self.carrier {
            return match current {
                None if carried.present.is_empty() => Vec::new(),
                None => vec![cookies::clear(name)],
                Some(session) if carried.reseal => vec![self.session_cookie(&session.id)],
                Some(_) => Vec::new(),
            };
        }
        match current {
            None if carried.present.is_empty() => Vec::new(),
            None => chunks::clear_cookies(name, &carried.present),
            Some(session) => {
                let unchanged = !carried.reseal
                    && carried.sealed.as_deref().is_some_and(|sealed| {
                        sealed.id == session.id
                            && sealed.tokens == session.tokens
                            && sealed.last_seen == session.last_seen
                    });
                if unchanged {
                    return Vec::new();
                }
                // Past the chunk limit (large tokens), the per-resource tokens are left out (they are fetched
                // again when needed): the rotated refresh token must reach the browser, or the next refresh after
                // `latest` forgets it would present a spent one and the token service would revoke the grant.
                let sealed = chunks::seal(&self.ring(), name, &encode_session(session)).or_else(|_| {
                    let mut lean = session.clone();
                    lean.tokens.resources.clear();
                    chunks::seal(&self.ring(), name, &encode_session(&lean))
                });
                match sealed {
                    Ok(values) => chunks::set_cookies(name, &values, self.settings.cookie.same_site, &carried.present),
                    Err(e) => {
                        // Even the main tokens do not fit: keep the browser's cookie; its tokens come from
                        // `latest` while that remembers them.
                        tracing::warn!(error = %e, "cannot re-seal the session cookie");
                        Vec::new()
                    }
                }
            }
        }
    }

    /// `Set-Cookie` lines deleting the session cookie: in cookie mode every possible chunk, not only those the
    /// request shows (BFF-CK08: all chunks deleted).
    pub fn clear_session_cookies(&self) -> Vec<String> {
        match &self.carrier {
            SessionCarrier::Server => vec![cookies::clear(self.cookie_name())],
            SessionCarrier::Cookie(_) => chunks::clear_cookies(self.cookie_name(), &all_chunks()),
        }
    }

    /// Starts a new session; the `Set-Cookie` lines that carry it (replacing whatever chunks the browser has).
    pub async fn establish(&self, session: Session) -> Result<Vec<String>, EstablishError> {
        match &self.carrier {
            SessionCarrier::Server => {
                let cookie = self.session_cookie(&session.id);
                self.sessions.put(Arc::new(session)).await?;
                Ok(vec![cookie])
            }
            SessionCarrier::Cookie(_) => {
                let name = self.cookie_name();
                let values = chunks::seal(&self.ring(), name, &encode_session(&session))
                    .map_err(|_| EstablishError::TooLarge)?;
                // The callback is a cross-site navigation from the token service: a `SameSite=Strict` cookie is
                // not sent with it, so the chunks an earlier session left cannot be seen. Delete every index the
                // new set does not use (CRYPT-21), or a stale `.1` would spoil the new set.
                Ok(chunks::set_cookies(name, &values, self.settings.cookie.same_site, &all_chunks()))
            }
        }
    }

    /// Ends one session: its row is deleted, or (cookie mode) its id is listed as ended until its absolute expiry.
    pub async fn end_session(&self, session: &Session, now: i64) -> Result<(), StoreError> {
        match &self.carrier {
            SessionCarrier::Server => {
                // After any write in flight (refresh, slide), so none can put the session back.
                let lock = self.refresher.session_lock(&session.id);
                let _one_writer = lock.lock().await;
                self.sessions.remove(&session.id).await.map(|_| ())
            }
            SessionCarrier::Cookie(carrier) => {
                carrier.latest.invalidate(&session.id).await;
                let keep_for = remaining(session.created_at.saturating_add(self.lifetimes.absolute), now);
                carrier.ended.record(Ended::Session { id: session.id.clone() }, keep_for).await
            }
        }
    }

    /// Back-channel logout: ends the sessions of token-service session `sid`, or else every session of `sub`
    /// created until now. Returns how many ended when known (cookie mode cannot count browsers' cookies).
    pub async fn end_idp_sessions(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        now: i64,
    ) -> Result<Option<usize>, StoreError> {
        match &self.carrier {
            SessionCarrier::Server => match (sid, sub) {
                // Back-Channel Logout §2.6 steps 9–11 (catalogue BFF-BCL06): with both claims, only sessions
                // matching both.
                (Some(sid), Some(sub)) => {
                    let mut ended = 0;
                    for session in self.sessions.list(Some(sub)).await? {
                        if session.idp_sid.as_deref() == Some(sid) && self.sessions.remove(&session.id).await?.is_some()
                        {
                            ended += 1;
                        }
                    }
                    Ok(Some(ended))
                }
                (Some(sid), None) => self.sessions.remove_by_idp_sid(sid).await.map(Some),
                (None, Some(sub)) => self.sessions.remove_by_sub(sub).await.map(Some),
                (None, None) => Ok(Some(0)),
            },
            SessionCarrier::Cookie(carrier) => {
                // No session that exists now outlives its absolute lifetime from now.
                let keep_for = remaining(now.saturating_add(self.lifetimes.absolute), now);
                // Cookie mode lists the token-service session as ended: `sid`s are unique to one user.
                let ended = match (sid, sub) {
                    (Some(sid), _) => Ended::IdpSession { sid: sid.to_owned() },
                    (None, Some(sub)) => Ended::UserUntil { sub: sub.to_owned(), at: now },
                    (None, None) => return Ok(Some(0)),
                };
                carrier.ended.record(ended, keep_for).await.map(|()| None)
            }
        }
    }

    /// Keeps a session whose `last_seen` slid (`Gateway::touch`): stored in server mode; in cookie mode the
    /// response re-seals it (`response_cookies`).
    ///
    /// Server mode writes under the session's lock and from the stored state (only `last_seen` changes): a copy
    /// read before a refresh or a logout must not put back a spent refresh token or an ended session. Returns
    /// the session as kept (`None`: it ended meanwhile).
    pub(crate) async fn keep_touched(&self, session: Arc<Session>) -> Result<Option<Arc<Session>>, StoreError> {
        match &self.carrier {
            SessionCarrier::Server => {
                let lock = self.refresher.session_lock(&session.id);
                let _one_writer = lock.lock().await;
                let Some(stored) = self.sessions.get(&session.id).await? else { return Ok(None) };
                let next = Arc::new(Session { last_seen: session.last_seen, ..(*stored).clone() });
                self.sessions.put(next.clone()).await?;
                Ok(Some(next))
            }
            SessionCarrier::Cookie(_) => Ok(Some(session)),
        }
    }

    /// The session with a usable access token (and one for `resource`, RFC 8707, when the route names one): as
    /// is, or after the single shared refresh of its tokens.
    pub async fn fresh(
        &self,
        session: Arc<Session>,
        resource: Option<&str>,
        now: i64,
    ) -> Result<Arc<Session>, RefreshError> {
        match &self.carrier {
            SessionCarrier::Server => {
                let sessions = StoreSessions(self.sessions.as_ref());
                self.refresher.fresh_in(&self.oidc, &sessions, session, resource, now).await
            }
            SessionCarrier::Cookie(carrier) => {
                let sessions = CookieRefresh { carrier, absolute: self.lifetimes.absolute };
                self.refresher.fresh_in(&self.oidc, &sessions, session, resource, now).await
            }
        }
    }
}

/// The refresher's view of cookie-mode sessions.
struct CookieRefresh<'a> {
    carrier: &'a CookieCarrier,
    absolute: i64,
}

#[async_trait]
impl RefreshSessions for CookieRefresh<'_> {
    async fn current(&self, session: &Arc<Session>) -> Result<Option<Arc<Session>>, StoreError> {
        if self.carrier.ended.is_ended(session).await? {
            return Ok(None);
        }
        match self.carrier.latest.get(&session.id).await {
            Some(latest) if is_newer(&latest, &session.tokens) => {
                Ok(Some(Arc::new(Session { tokens: (*latest).clone(), ..(**session).clone() })))
            }
            _ => Ok(Some(session.clone())),
        }
    }

    async fn save(&self, session: Arc<Session>) -> Result<(), StoreError> {
        self.carrier.latest.insert(session.id.clone(), Arc::new(session.tokens.clone())).await;
        Ok(())
    }

    async fn end(&self, session: &Session, now: i64) -> Result<(), StoreError> {
        self.carrier.latest.invalidate(&session.id).await;
        let keep_for = remaining(session.created_at.saturating_add(self.absolute), now);
        self.carrier.ended.record(Ended::Session { id: session.id.clone() }, keep_for).await
    }
}

/// True when `latest` (what a refresh flight saved) supersedes `carried`: a later main token, or the same one
/// with a rotated refresh token and more resource tokens (a resource-only refresh).
fn is_newer(latest: &Tokens, carried: &Tokens) -> bool {
    latest.access_token_expires_at > carried.access_token_expires_at
        || (latest.access_token_expires_at == carried.access_token_expires_at && latest != carried)
}

/// Every chunk index a cookie set may use.
fn all_chunks() -> Vec<usize> {
    (0..chunks::MAX_CHUNKS).collect()
}

/// Seconds from `now` until `end`, at least one.
fn remaining(end: i64, now: i64) -> Duration {
    Duration::from_secs(end.saturating_sub(now).max(1) as u64)
}

/// The sealed form of a session: short field names, the DPoP key as base64url, a format version. JSON without
/// compression (compressing before encrypting would let sizes leak secrets, CRYPT-15).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedSession {
    v: u8,
    id: String,
    sub: String,
    sid: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    isid: Option<String>,
    cl: serde_json::Map<String, serde_json::Value>,
    idt: String,
    at: String,
    ate: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    rt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    sc: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    res: Vec<ResourceToken>,
    key: String,
    ca: i64,
    ls: i64,
}

const SEALED_VERSION: u8 = 1;

fn encode_session(session: &Session) -> Vec<u8> {
    let sealed = SealedSession {
        v: SEALED_VERSION,
        id: session.id.clone(),
        sub: session.sub.clone(),
        sid: session.sid.clone(),
        isid: session.idp_sid.clone(),
        cl: session.claims.clone(),
        idt: session.id_token.clone(),
        at: session.tokens.access_token.clone(),
        ate: session.tokens.access_token_expires_at,
        rt: session.tokens.refresh_token.clone(),
        sc: session.tokens.scope.clone(),
        res: session.tokens.resources.clone(),
        key: b64::encode(&session.dpop_key),
        ca: session.created_at,
        ls: session.last_seen,
    };
    serde_json::to_vec(&sealed).unwrap_or_default()
}

fn decode_session(bytes: &[u8]) -> Option<Session> {
    let s: SealedSession = serde_json::from_slice(bytes).ok()?;
    if s.v != SEALED_VERSION {
        return None;
    }
    Some(Session {
        id: s.id,
        sub: s.sub,
        sid: s.sid,
        idp_sid: s.isid,
        claims: s.cl,
        id_token: s.idt,
        tokens: Tokens {
            access_token: s.at,
            access_token_expires_at: s.ate,
            refresh_token: s.rt,
            scope: s.sc,
            resources: s.res,
        },
        dpop_key: b64::decode(&s.key)?,
        created_at: s.ca,
        last_seen: s.ls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::seal::KeyRing;
    use crate::settings::{CookieKey, SameSite};

    fn session(id_token_len: usize) -> Session {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "alice".into());
        claims.insert("email".into(), "alice@example.com".into());
        Session {
            id: Session::new_id(),
            sub: "alice".into(),
            sid: "sid-1".into(),
            idp_sid: Some("sid-1".into()),
            claims,
            id_token: "h.".to_owned() + &"p".repeat(id_token_len) + ".s",
            tokens: Tokens {
                access_token: "a".repeat(900),
                access_token_expires_at: 1_000_300,
                refresh_token: Some("r".repeat(43)),
                scope: Some("openid api".into()),
                resources: Vec::new(),
            },
            dpop_key: gatehouse_proto::dpop_key::DpopKey::generate().unwrap().pkcs8().to_vec(),
            created_at: 1_000_000,
            last_seen: 1_000_010,
        }
    }

    fn same(a: &Session, b: &Session) -> bool {
        a.id == b.id
            && a.sub == b.sub
            && a.sid == b.sid
            && a.idp_sid == b.idp_sid
            && a.claims == b.claims
            && a.id_token == b.id_token
            && a.tokens == b.tokens
            && a.dpop_key == b.dpop_key
            && a.created_at == b.created_at
            && a.last_seen == b.last_seen
    }

    #[test]
    fn session_codec_round_trips_every_field() {
        let mut s = session(800);
        assert!(same(&decode_session(&encode_session(&s)).unwrap(), &s));
        s.idp_sid = None;
        s.tokens.refresh_token = None;
        s.tokens.scope = None;
        assert!(same(&decode_session(&encode_session(&s)).unwrap(), &s));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The sealed session codec: any session (any text in every field, any times, any key bytes, any
        /// resource tokens) encodes and decodes to itself.
        #[test]
        fn session_codec_encode_decode(
            texts in prop::array::uniform5(any::<String>()),
            optional in prop::array::uniform3(prop::option::of(any::<String>())),
            times in prop::array::uniform3(any::<i64>()),
            claims in prop::collection::btree_map(any::<String>(), any::<String>(), 0..4),
            resources in prop::collection::vec((any::<String>(), any::<String>(), any::<i64>()), 0..3),
            dpop_key in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let [id, sub, sid, id_token, access_token] = texts;
            let [idp_sid, refresh_token, scope] = optional;
            let resources = resources
                .into_iter()
                .map(|(resource, access_token, expires_at)| ResourceToken { resource, access_token, expires_at })
                .collect();
            let session = Session {
                id,
                sub,
                sid,
                idp_sid,
                claims: claims.into_iter().map(|(name, value)| (name, value.into())).collect(),
                id_token,
                tokens: Tokens { access_token, access_token_expires_at: times[0], refresh_token, scope, resources },
                dpop_key,
                created_at: times[1],
                last_seen: times[2],
            };
            let decoded = decode_session(&encode_session(&session));
            prop_assert!(decoded.as_ref().is_some_and(|decoded| same(decoded, &session)));
        }
    }

    #[test]
    fn session_codec_refuses_other_versions_and_junk() {
        let s = session(10);
        let mut json: serde_json::Value = serde_json::from_slice(&encode_session(&s)).unwrap();
        json["v"] = 2.into();
        assert!(decode_session(&serde_json::to_vec(&json).unwrap()).is_none());
        json["v"] = 1.into();
        json["extra"] = true.into();
        assert!(decode_session(&serde_json::to_vec(&json).unwrap()).is_none(), "unknown fields are refused");
        for junk in [&b""[..], b"{}", b"null", b"[1,2]", &[0xff, 0xfe]] {
            assert!(decode_session(junk).is_none());
        }
    }

    #[test]
    fn catalogue_crypt19_sessions_beyond_4_kib_travel_in_chunks() {
        let ring = KeyRing::new(&[CookieKey { id: "k1".into(), key: [5; 32] }]).unwrap();
        for id_token_len in [500, 3000, 6000] {
            let s = session(id_token_len);
            let plaintext = encode_session(&s);
            let values = chunks::seal(&ring, "__Host-gatehouse", &plaintext).unwrap();
            if plaintext.len() > 4096 {
                assert!(values.len() > 1, "{} bytes in {} chunk(s)", plaintext.len(), values.len());
            }
            let lines = chunks::set_cookies("__Host-gatehouse", &values, SameSite::Strict, &[]);
            assert!(lines.iter().all(|l| l.len() < 4096));
            let pairs: Vec<(String, String)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (chunks::chunk_name("__Host-gatehouse", i), v.clone()))
                .collect();
            let opened = chunks::open(&ring, "__Host-gatehouse", &pairs).unwrap().unwrap();
            assert!(same(&decode_session(&opened).unwrap(), &s));
        }
    }

    #[test]
    fn catalogue_crypt15_the_sealed_form_is_not_compressed() {
        // The sealed size follows the plaintext size byte for byte: nothing squeezes repetitive content.
        let small = encode_session(&session(100));
        let large = encode_session(&session(1100));
        assert_eq!(large.len() - small.len(), 1000);
    }
}
