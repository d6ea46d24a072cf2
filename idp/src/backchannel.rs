//! Ending an IdP session and telling its clients (OpenID Connect Back-Channel Logout 1.0).
//!
//! `end_session` is what every way of ending a session shares (the end-session endpoint, `gatehouse sessions
//! revoke`): it removes the session, revokes the grants issued under its `sid` and signs one logout token for
//! each client of those grants that registered a `backchannel_logout_uri`. It does not send them: the caller
//! either spawns the delivery (`spawn_delivery`: a user's response never waits for a client) or awaits it
//! (`deliver_all`: the CLI, which exits afterwards). Idle or absolute expiry notifies no one.
//!
//! Sending goes through a `LogoutNotifier`: `HttpNotifier` POSTs the token (§2.5) through one shared client with
//! a timeout, no redirect following and a few retries; `RecordingNotifier` keeps what it was given, for tests.
//! `logout_token_claims` builds the token's claims (§2.4) without I/O.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_proto::Secret;

use crate::keys::KeySet;
use crate::server::Inner;
use crate::store::{Epoch, GrantRecord, Store, StoreResult};
use crate::tokens;

pub use gatehouse_proto::claims::{
    BACKCHANNEL_LOGOUT_EVENT, EmptyObject, LOGOUT_TOKEN_TYP, LogoutEvents, LogoutTokenClaims,
};

/// A logout token's lifetime (`exp - iat`): long enough for the retries, short enough to be useless later.
pub const LOGOUT_TOKEN_LIFETIME: Epoch = 120;

/// The claims of the logout token telling `client_id` that session `sid` of `sub` ended at `now`. `jti` is a
/// fresh random identifier (the caller draws it, so this stays pure).
pub fn logout_token_claims(
    issuer: &str,
    client_id: &str,
    sub: &str,
    sid: &str,
    jti: String,
    now: Epoch,
) -> LogoutTokenClaims {
    LogoutTokenClaims {
        iss: issuer.to_owned(),
        aud: client_id.to_owned(),
        iat: now,
        exp: now + LOGOUT_TOKEN_LIFETIME,
        jti,
        sub: sub.to_owned(),
        sid: sid.to_owned(),
        events: LogoutEvents::default(),
    }
}

/// One logout token to deliver to one client.
#[derive(Clone, Debug)]
pub struct LogoutDelivery {
    pub client_id: String,
    /// The client's registered `backchannel_logout_uri`.
    pub uri: String,
    pub logout_token: Secret,
}

/// How a delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The client answered 2xx (Back-Channel Logout §2.8).
    Delivered { attempts: u32 },
    /// The client answered a status that retrying cannot change (4xx, or a redirect, which is never followed).
    Refused { status: u16 },
    /// Network errors or 5xx on every attempt, or no HTTP client.
    GaveUp { attempts: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReport {
    pub client_id: String,
    pub outcome: DeliveryOutcome,
}

/// Sends logout tokens. Injected (`Inner::logout_notifier`) so tests can record instead of sending.
#[async_trait]
pub trait LogoutNotifier: Send + Sync {
    /// Delivers one logout token, retrying as the implementation sees fit, and says how it ended.
    async fn deliver(&self, delivery: &LogoutDelivery) -> DeliveryOutcome;
}

/// Everything signing logout tokens needs: who we are and the keys that sign; and how they are sent.
#[derive(Clone)]
pub struct Backchannel {
    /// The issuer exactly as published (`Inner::issuer`).
    pub issuer: String,
    pub keys: Arc<KeySet>,
    pub notifier: Arc<dyn LogoutNotifier>,
}

impl Backchannel {
    /// The running server's: its issuer, its current keys, its notifier.
    pub fn of(state: &Inner) -> Self {
        Self { issuer: state.issuer.clone(), keys: state.keys.current(), notifier: state.logout_notifier.clone() }
    }
}

/// What ending one IdP session did, and the logout tokens still to deliver.
#[derive(Debug)]
pub struct EndedSession {
    pub sid: String,
    /// Whether the session was still stored (false: it had expired and been purged, or never existed).
    pub removed: bool,
    /// Grants revoked now (earlier revocations are not counted).
    pub grants_revoked: u64,
    pub deliveries: Vec<LogoutDelivery>,
}

/// Ends IdP session `sid`: removes it (no new code is issued under it), revokes every grant issued under it
/// (refresh tokens stop working, recorded access tokens become revoked: catalogue EP-ES05, OAUTH-RT09), and
/// signs a logout token for each client of those grants with a `backchannel_logout_uri` (Back-Channel Logout
/// §2.7: one per client, the session's `sid` and `sub`). Works for a session that has already expired too: its
/// grants are still revoked.
pub async fn end_session(store: &Store, backchannel: &Backchannel, sid: &str, now: Epoch) -> StoreResult<EndedSession> {
    let removed = store.sessions.remove_session(sid).await?;
    let grants_revoked = store.grants.revoke_session_grants(sid, now).await?;
    // Listed after the revocation, so a grant issued meanwhile is revoked and its client told too.
    let grants = store.grants.grants_of_session(sid).await?;
    let deliveries = deliveries(store, backchannel, sid, &grants, now).await?;
    tracing::info!(sid, removed, grants_revoked, notified = deliveries.len(), "IdP session ended");
    Ok(EndedSession { sid: sid.to_owned(), removed, grants_revoked, deliveries })
}

/// One signed logout token per client of `grants` that registered a back-channel logout URI.
async fn deliveries(
    store: &Store,
    backchannel: &Backchannel,
    sid: &str,
    grants: &[GrantRecord],
    now: Epoch,
) -> StoreResult<Vec<LogoutDelivery>> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for grant in grants {
        if seen.contains(&grant.client_id.as_str()) {
            continue;
        }
        seen.push(&grant.client_id);
        let Some(client) = store.clients.client(&grant.client_id).await? else { continue };
        let Some(uri) = client.backchannel_logout_uri.clone() else { continue };
        let claims = logout_token_claims(
            &backchannel.issuer,
            &client.client_id,
            &grant.sub,
            sid,
            crate::random::token::<16>(),
            now,
        );
        // Back-Channel Logout §2.6: signed like the client's ID tokens.
        match tokens::sign(&backchannel.keys, client.id_token_signed_response_alg, LOGOUT_TOKEN_TYP, &claims) {
            Ok(token) => {
                out.push(LogoutDelivery { client_id: client.client_id, uri, logout_token: Secret::new(token) });
            }
            // Logged by `sign`; the session still ends.
            Err(_) => tracing::warn!(client_id = %client.client_id, "no logout token: signing failed"),
        }
    }
    Ok(out)
}

/// Delivers in a background task, so the caller (a user's response) never waits; the outcomes are logged.
pub fn spawn_delivery(
    notifier: Arc<dyn LogoutNotifier>,
    deliveries: Vec<LogoutDelivery>,
) -> Option<tokio::task::JoinHandle<Vec<DeliveryReport>>> {
    if deliveries.is_empty() {
        return None;
    }
    Some(tokio::spawn(deliver_all(notifier, deliveries)))
}

/// Delivers every token, to all clients at once, and logs each outcome (never the token).
pub async fn deliver_all(notifier: Arc<dyn LogoutNotifier>, deliveries: Vec<LogoutDelivery>) -> Vec<DeliveryReport> {
    let mut tasks = tokio::task::JoinSet::new();
    for delivery in deliveries {
        let notifier = notifier.clone();
        tasks.spawn(async move {
            let outcome = notifier.deliver(&delivery).await;
            match outcome {
                DeliveryOutcome::Delivered { attempts } => {
                    tracing::info!(client_id = %delivery.client_id, attempts, "back-channel logout delivered");
                }
                DeliveryOutcome::Refused { status } => {
                    tracing::warn!(client_id = %delivery.client_id, status, "back-channel logout refused");
                }
                DeliveryOutcome::GaveUp { attempts } => {
                    tracing::warn!(client_id = %delivery.client_id, attempts, "back-channel logout not delivered");
                }
            }
            DeliveryReport { client_id: delivery.client_id, outcome }
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            Err(error) => tracing::error!(%error, "back-channel logout task failed"),
        }
    }
    reports.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    reports
}

// ---------------------------------------------------------------------------------------------------------
// Senders

/// Each attempt's time limit (connect, send, response headers).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// POSTs `logout_token=…` (`application/x-www-form-urlencoded`, Back-Channel Logout §2.5) through one shared
/// client: 5 s per attempt, redirects never followed (a 3xx counts as refused), the response body never read.
/// Network errors and 5xx are retried after each `backoff` pause (1 s, then 3 s: three attempts in all).
pub struct HttpNotifier {
    /// `None` when the HTTP client could not be built (logged once); every delivery then gives up.
    client: Option<reqwest::Client>,
    backoff: Vec<Duration>,
}

impl HttpNotifier {
    pub fn new() -> Self {
        Self::with_backoff(vec![Duration::from_secs(1), Duration::from_secs(3)])
    }

    /// Retries once after each pause in `backoff` (so `backoff.len() + 1` attempts).
    pub fn with_backoff(backoff: Vec<Duration>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .inspect_err(|error| tracing::error!(%error, "no HTTP client: back-channel logout is disabled"))
            .ok();
        Self { client, backoff }
    }
}

impl Default for HttpNotifier {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl LogoutNotifier for HttpNotifier {
    async fn deliver(&self, delivery: &LogoutDelivery) -> DeliveryOutcome {
        let Some(client) = &self.client else { return DeliveryOutcome::GaveUp { attempts: 0 } };
        let form = [("logout_token", delivery.logout_token.expose())];
        let mut attempts = 0;
        let mut pauses = self.backoff.iter();
        loop {
            attempts += 1;
            match client.post(&delivery.uri).form(&form).send().await {
                Ok(response) if response.status().is_success() => return DeliveryOutcome::Delivered { attempts },
                Ok(response) if !response.status().is_server_error() => {
                    return DeliveryOutcome::Refused { status: response.status().as_u16() };
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    tracing::debug!(client_id = %delivery.client_id, status, attempts, "back-channel logout: retrying");
                }
                Err(error) => {
                    let error = error.without_url(); // the cause only; the URL is configuration
                    tracing::debug!(client_id = %delivery.client_id, %error, attempts, "back-channel logout: retrying");
                }
            }
            match pauses.next() {
                Some(pause) => tokio::time::sleep(*pause).await,
                None => return DeliveryOutcome::GaveUp { attempts },
            }
        }
    }
}

/// Keeps every delivery it is given and reports it delivered. For tests.
#[derive(Default)]
pub struct RecordingNotifier {
    delivered: Mutex<Vec<LogoutDelivery>>,
}

impl RecordingNotifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// What was delivered so far.
    pub fn deliveries(&self) -> Vec<LogoutDelivery> {
        self.delivered.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (up to `timeout`) until at least `count` deliveries arrived (delivery runs in a spawned task).
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<LogoutDelivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let delivered = self.deliveries();
            if delivered.len() >= count || tokio::time::Instant::now() >= deadline {
                return delivered;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl LogoutNotifier for RecordingNotifier {
    async fn deliver(&self, delivery: &LogoutDelivery) -> DeliveryOutcome {
        self.delivered.lock().unwrap_or_else(|e| e.into_inner()).push(delivery.clone());
        DeliveryOutcome::Delivered { attempts: 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Back-Channel Logout §2.4 (catalogue EP-BCS01): the claims, exactly.
    #[test]
    fn logout_token_claims_are_exactly_the_specified_ones() {
        let claims = logout_token_claims("https://id.example.com", "web", "sub-a", "sid-1", "jti-1".into(), 1000);
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "iss": "https://id.example.com",
                "aud": "web",
                "iat": 1000,
                "exp": 1120,
                "jti": "jti-1",
                "sub": "sub-a",
                "sid": "sid-1",
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            })
        );
        assert!(json.get("nonce").is_none(), "§2.4: a logout token never carries a nonce");
        let round_trip: LogoutTokenClaims = serde_json::from_value(json).unwrap();
        assert_eq!(round_trip, claims);
        let extra_event = serde_json::json!({BACKCHANNEL_LOGOUT_EVENT: {}, "urn:other": {}});
        assert!(serde_json::from_value::<LogoutEvents>(extra_event).is_err(), "events is exactly one member");
        assert!(
            serde_json::from_value::<LogoutEvents>(serde_json::json!({BACKCHANNEL_LOGOUT_EVENT: {"a": 1}})).is_err()
        );
    }

    /// A stub client endpoint on a free port: answers the given statuses in turn (then 200) and records bodies.
    async fn stub(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/backchannel-logout", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let recorded = bodies.clone();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Read headers, then the body by Content-Length.
                let body = loop {
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        break String::new();
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break format!("{}\n{}", &text[..end], &text[end + 4..end + 4 + length]);
                        }
                    }
                };
                recorded.lock().unwrap().push(body);
                let status = statuses.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nlocation: /elsewhere\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (uri, bodies)
    }

    fn delivery(uri: &str) -> LogoutDelivery {
        LogoutDelivery { client_id: "web".into(), uri: uri.into(), logout_token: Secret::new("header.payload.sig") }
    }

    fn fast() -> HttpNotifier {
        HttpNotifier::with_backoff(vec![Duration::from_millis(10), Duration::from_millis(30)])
    }

    /// Back-Channel Logout §2.5 (catalogue EP-BCS02): a form POST of `logout_token`; 5xx is retried.
    #[tokio::test]
    async fn http_notifier_posts_the_form_and_retries_server_errors() {
        let (uri, bodies) = stub(vec![503, 500]).await;
        assert_eq!(fast().deliver(&delivery(&uri)).await, DeliveryOutcome::Delivered { attempts: 3 });
        let bodies = bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 3);
        for body in bodies {
            let lower = body.to_ascii_lowercase();
            assert!(lower.starts_with("post /backchannel-logout "), "{body}");
            assert!(lower.contains("content-type: application/x-www-form-urlencoded"), "{body}");
            assert!(body.ends_with("\nlogout_token=header.payload.sig"), "{body}");
        }
    }

    #[tokio::test]
    async fn http_notifier_gives_up_after_three_attempts_and_never_follows_redirects() {
        let (uri, bodies) = stub(vec![502, 502, 502, 502]).await;
        assert_eq!(fast().deliver(&delivery(&uri)).await, DeliveryOutcome::GaveUp { attempts: 3 });
        assert_eq!(bodies.lock().unwrap().len(), 3);

        let (uri, bodies) = stub(vec![302]).await;
        assert_eq!(fast().deliver(&delivery(&uri)).await, DeliveryOutcome::Refused { status: 302 });
        let (uri, _) = stub(vec![400]).await;
        assert_eq!(fast().deliver(&delivery(&uri)).await, DeliveryOutcome::Refused { status: 400 }, "not retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(bodies.lock().unwrap().len(), 1, "the redirect was not followed");

        // Nothing listens there: a network error on every attempt.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/x", closed.local_addr().unwrap());
        drop(closed);
        assert_eq!(fast().deliver(&delivery(&uri)).await, DeliveryOutcome::GaveUp { attempts: 3 });
    }

    #[test]
    fn a_delivery_never_prints_its_token() {
        let printed = format!("{:?}", delivery("https://app.example.com/bcl"));
        assert!(!printed.contains("header.payload.sig"), "{printed}");
    }
}
