//! The simulated users: each logs in through the real login form, then calls the API through the gateway
//! (`GET /api/whoami`, `X-CSRF: 1`) with a random pause, until the soak ends, and classifies every answer.
//! A revoked user's 401 is expected and followed by a new login; any other 401 from the gateway is a session
//! lost; a 503 is expected only while the token service is down.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use url::Url;

use crate::browser::{self, Browser};
use crate::report::{Outages, Tally, lock};

/// What the fault injector and the session share about one session.
#[derive(Default)]
pub struct SessionState {
    /// Logins completed; a revocation names the login it ends.
    pub epoch: u64,
    pub logged_in: bool,
    /// The login that a revocation ended (`epoch` at the time), and when the revoke command returned.
    pub revoked_epoch: Option<u64>,
    pub revocation_done: Option<Instant>,
}

/// Everything the sessions share.
pub struct Shared {
    pub http: reqwest::Client,
    pub gateway: Url,
    pub cookie_name: String,
    pub user_prefix: String,
    pub think: Duration,
    pub tally: Mutex<Tally>,
    pub outages: Outages,
    pub roster: Vec<Mutex<SessionState>>,
}

impl Shared {
    pub fn username(&self, index: usize) -> String {
        format!("{}{index:04}", self.user_prefix)
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        lock(&self.tally)
    }
}

/// Logs session `index` in, retrying every 500 ms until it works or `deadline` passes (false then). A failure
/// that overlaps a token-service outage is expected; others are counted as login failures.
pub async fn log_in(shared: &Shared, index: usize, browser: &mut Browser, deadline: Instant) -> bool {
    let username = shared.username(index);
    let password = format!("{username}-password");
    while Instant::now() < deadline {
        let start = Instant::now();
        let outcome = browser.login(&shared.http, &shared.gateway, &username, &password, &shared.cookie_name).await;
        let end = Instant::now();
        match outcome {
            Ok(()) => {
                let mut state = lock(&shared.roster[index]);
                state.epoch += 1;
                state.logged_in = true;
                drop(state);
                shared.tally().logins += 1;
                return true;
            }
            Err(error) => {
                if shared.outages.overlaps(start, end) {
                    shared.tally().login_failures_while_down += 1;
                } else {
                    *shared.tally().login_failures.entry(error.to_string()).or_default() += 1;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    false
}

/// Session `index`, already logged in (`log_in`), calling the API until `deadline`; its browser at the end.
pub async fn run(shared: Arc<Shared>, index: usize, mut browser: Browser, deadline: Instant) -> Browser {
    let api = shared.gateway.join("/api/whoami").expect("a valid URL");
    // The sub and DPoP key thumbprint this login's answers carry: they must never change within one login.
    let mut identity: Option<(String, String)> = None;
    while Instant::now() < deadline {
        if !lock(&shared.roster[index]).logged_in {
            browser.forget(&shared.gateway);
            identity = None;
            if !log_in(&shared, index, &mut browser, deadline).await {
                return browser;
            }
        }
        let start = Instant::now();
        let result = browser.get(&shared.http, &api, &[("x-csrf", "1")]).await;
        let end = Instant::now();
        classify(&shared, index, result, start, end, &mut identity);
        let jitter = 0.5 + rand::random::<f64>();
        tokio::time::sleep(shared.think.mul_f64(jitter)).await;
    }
    browser
}

fn classify(
    shared: &Shared,
    index: usize,
    result: Result<browser::Reply, reqwest::Error>,
    start: Instant,
    end: Instant,
    identity: &mut Option<(String, String)>,
) {
    let mut state = lock(&shared.roster[index]);
    let revoked = state.revoked_epoch == Some(state.epoch);
    let mut tally = shared.tally();
    tally.requests += 1;
    let reply = match result {
        Ok(reply) => reply,
        Err(error) => {
            *tally.errors.entry(browser::describe(&error)).or_default() += 1;
            return;
        }
    };
    match reply.status {
        200 => {
            tally.ok += 1;
            tally.ok_latency_micros.push(u32::try_from(end.duration_since(start).as_micros()).unwrap_or(u32::MAX));
            if revoked && state.revocation_done.is_some_and(|done| start > done) {
                tally.served_after_revocation += 1;
            }
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
            let seen = (
                body["sub"].as_str().unwrap_or_default().to_owned(),
                body["jkt"].as_str().unwrap_or_default().to_owned(),
            );
            match identity {
                Some(known) if *known != seen => tally.identity_changed += 1,
                Some(_) => {}
                None => *identity = Some(seen),
            }
        }
        401 if browser::error_code(&reply.body).as_deref() == Some("unauthorized") => {
            // The gateway's own refusal: the session is over.
            if revoked {
                tally.logged_out_expected += 1;
                if let Some(done) = state.revocation_done {
                    tally.revocation_to_401.push(end.saturating_duration_since(done));
                }
            } else {
                let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
                let why = body["error_description"].as_str().unwrap_or("(no description)").to_owned();
                *tally.lost.entry(format!("401 {why}")).or_default() += 1;
            }
            state.logged_in = false;
        }
        503 if shared.outages.overlaps(start, end) => tally.unavailable_while_down += 1,
        503 => {
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
            let why = body["error_description"].as_str().unwrap_or("(no description)");
            let when = shared.outages.nearest(start, end);
            *tally.unavailable_otherwise.entry(format!("{why} ({when})")).or_default() += 1;
        }
        401 => *tally.errors.entry(format!("401 from the API: {}", browser::status_text(&reply))).or_default() += 1,
        _ => *tally.errors.entry(browser::status_text(&reply)).or_default() += 1,
    }
}
