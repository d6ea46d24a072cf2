//! Cookie-mode sessions end to end (`bff.session.mode = "cookie"`): the whole session sealed in `__Host-` cookie
//! chunks, no server-side session row, a server-side list of ended sessions. Same harness as `gateway.rs`: a
//! token service, the example API and an echo upstream on free ports, the gateway in front, a cookie-jar browser.
//! Catalogue rows (§F BFF-*, §H CRYPT-*) are named where a test covers one.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gatehouse_bff::settings::SessionMode;
use support::{Browser, Harness, Options, Reply, SESSION_COOKIE};

fn cookie_mode() -> Options {
    Options { session_mode: SessionMode::Cookie, ..Default::default() }
}

/// The session cookie chunks in the browser's jar: (name, value), the first chunk first.
fn chunks_of(b: &Browser) -> Vec<(String, String)> {
    let mut names: Vec<String> = b
        .cookie_names()
        .into_iter()
        .filter(|n| n == SESSION_COOKIE || n.strip_prefix(SESSION_COOKIE).is_some_and(|rest| rest.starts_with('.')))
        .collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), b.cookie(&n).unwrap())).collect()
}

/// A fresh browser holding exactly these cookies.
fn browser_with(cookies: &[(String, String)]) -> Browser {
    let mut b = Browser::new();
    for (name, value) in cookies {
        b.set_cookie(name, value);
    }
    b
}

/// The `Set-Cookie` lines of a reply that touch the session cookie or its chunks.
fn session_set_cookies(reply: &Reply) -> Vec<String> {
    reply
        .set_cookies()
        .into_iter()
        .filter(|c| c.starts_with(&format!("{SESSION_COOKIE}=")) || c.starts_with(&format!("{SESSION_COOKIE}.")))
        .collect()
}

fn deletes_the_session_cookie(reply: &Reply) -> bool {
    session_set_cookies(reply).iter().any(|c| c.starts_with(&format!("{SESSION_COOKIE}=;")) && c.contains("Max-Age=0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookie_mode_login_then_api_call_is_dpop_bound_with_no_server_side_session() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    let reply = h.login_reply(&mut b, "alice", "/app").await;
    assert_eq!(reply.status, 302, "{}", reply.body);
    assert_eq!(reply.header("location"), Some("/app"));

    // BFF-CK01…05, BFF-CK07: every chunk is a __Host- cookie, Secure, HttpOnly, Path=/, SameSite=Strict, no
    // Domain, and each Set-Cookie line is under 4096 bytes.
    let lines = session_set_cookies(&reply);
    let (deletions, chunks): (Vec<&String>, Vec<&String>) = lines.iter().partition(|l| l.contains("Max-Age=0"));
    assert!(!chunks.is_empty());
    // CRYPT-21 at login: the callback arrives cross-site, where a SameSite=Strict cookie is not sent, so every
    // chunk index the new set does not use is deleted blindly (with the same name, Path=/ and Secure: BFF-CK08).
    assert_eq!(chunks.len() + deletions.len(), gatehouse_bff::chunks::MAX_CHUNKS, "{lines:?}");
    for deletion in &deletions {
        assert!(deletion.starts_with(&format!("{SESSION_COOKIE}.")), "{deletion}");
        assert!(deletion.contains("Path=/") && deletion.contains("Secure"), "{deletion}");
    }
    for line in &chunks {
        assert!(line.len() < 4096, "{} bytes", line.len());
        assert!(line.starts_with("__Host-"), "{line:.40}");
        for attribute in ["Secure", "HttpOnly", "Path=/", "SameSite=Strict"] {
            assert!(line.contains(attribute), "{line:.40}… lacks {attribute}");
        }
        assert!(!line.to_ascii_lowercase().contains("domain="));
    }

    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let session = h.cookie_session(&b).await.expect("the cookie carries the session");
    let key = gatehouse_proto::dpop_key::DpopKey::from_pkcs8(&session.dpop_key).unwrap();
    assert_eq!(seen["jkt"], key.jkt(), "the API verified a token bound to the sealed DPoP key");
    assert_eq!(seen["sub"], session.sub);

    // No server-side session row.
    assert_eq!(h.gateway.sessions.count().await.unwrap(), 0);
    assert_eq!(h.session_count().await, 0);

    // BFF-CK09: the cookie shows no token or claim in the clear.
    let jar: String = chunks_of(&b).iter().map(|(_, v)| v.as_str()).collect();
    assert!(!jar.contains(&session.tokens.access_token[..20]));
    assert!(!jar.contains("alice"));

    // /bff/user answers from the sealed session.
    let user = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert!(user.body.contains("Alice Liddell"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_bff_lo03_crypt16_a_cookie_replayed_after_logout_is_dead() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let copied = chunks_of(&b);
    assert!(!copied.is_empty());
    let refresh_token = h.cookie_session(&b).await.unwrap().tokens.refresh_token.clone().unwrap();

    // Logout CSRF: no sid, no logout.
    assert_eq!(b.get(&h.gw("/bff/logout"), &[]).await.status, 400);
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "refused logouts end nothing");

    let logout = h.logout_url(&b).await;
    let reply = b.get(&h.gw(&logout), &[]).await;
    assert_eq!(reply.status, 302);
    assert!(reply.header("location").unwrap().starts_with(&format!("{}/end_session?", h.issuer)));
    // BFF-CK08: every chunk deleted with the same name, Path=/ and Secure.
    for (name, _) in &copied {
        let deletion = reply
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=;")))
            .unwrap_or_else(|| panic!("{name} not deleted"));
        assert!(deletion.contains("Max-Age=0") && deletion.contains("Path=/") && deletion.contains("Secure"));
    }
    b.absorb(&reply);
    assert!(chunks_of(&b).is_empty());

    // The copy taken before the logout: anonymous everywhere, and told to go away.
    let replay = browser_with(&copied);
    let api = replay.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(api.status, 401, "{}", api.body);
    assert!(deletes_the_session_cookie(&api), "the dead cookie's chunks are cleared");
    let user = replay.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(user.status, 401);
    assert!(deletes_the_session_cookie(&user));
    assert_eq!(h.echo_count(), 0);
    // The refresh token was revoked at the token service.
    assert_eq!(h.refresh_status(&refresh_token).await, 400);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_bff_bcl_back_channel_logout_kills_cookie_sessions() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    let reports = h.revoke_idp_sessions("alice").await;
    assert!(reports.iter().all(|r| r.contains("Delivered")), "{reports:?}");
    let api = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(api.status, 401, "{}", api.body);
    assert!(deletes_the_session_cookie(&api));
    assert_eq!(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_bff_sess12_twenty_concurrent_requests_share_one_refresh_and_carry_the_new_cookie() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    h.expire_cookie_access_token_soon(&mut b).await;
    let before = h.cookie_session(&b).await.unwrap();
    let old_cookies = chunks_of(&b);

    let b = Arc::new(b);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let b = b.clone();
        let url = h.gw("/api/whoami");
        tasks.push(tokio::spawn(async move { b.get(&url, &[("x-csrf", "1")]).await }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        replies.push(reply);
    }
    assert_eq!(h.gateway.refresher.refreshes.load(Ordering::Relaxed), 1, "exactly one refresh");
    for reply in &replies {
        assert!(
            session_set_cookies(reply).iter().any(|c| c.starts_with(&format!("{SESSION_COOKIE}=k1."))),
            "every response carries the re-sealed cookie"
        );
    }
    let mut b = Arc::try_unwrap(b).ok().unwrap();
    b.absorb(&replies[0]);
    let after = h.cookie_session(&b).await.unwrap();
    assert_eq!(after.id, before.id, "the same session");
    assert_ne!(after.tokens.access_token, before.tokens.access_token);
    assert_ne!(after.tokens.refresh_token, before.tokens.refresh_token, "the refresh token rotated");
    assert!(after.tokens.access_token_expires_at > gatehouse_bff::now() + 60);

    // BFF-SESS13 / CRYPT-18: the pre-refresh cookie, sent again, uses the newer tokens without a second refresh
    // (no refresh-token reuse at the token service) and is handed the new cookie.
    let stale = browser_with(&old_cookies);
    let reply = stale.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.gateway.refresher.refreshes.load(Ordering::Relaxed), 1, "no second refresh");
    assert!(!session_set_cookies(&reply).is_empty(), "the stale cookie is replaced");
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "the new cookie works too");
    assert_eq!(h.session_count().await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookie_mode_a_refused_refresh_is_401_and_ends_the_session() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let refresh_token = h.cookie_session(&b).await.unwrap().tokens.refresh_token.clone().unwrap();
    h.revoke_at_token_service(&refresh_token).await;
    h.expire_cookie_access_token_soon(&mut b).await;
    let copied = chunks_of(&b);
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(deletes_the_session_cookie(&reply), "the ended session's chunks are cleared");
    let refreshes = h.gateway.refresher.refreshes.load(Ordering::Relaxed);
    assert_eq!(refreshes, 1);
    // The same cookie again: listed as ended, so anonymous without another refresh attempt.
    let again = browser_with(&copied).get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(again.status, 401);
    assert_eq!(h.gateway.refresher.refreshes.load(Ordering::Relaxed), refreshes);
    assert_eq!(h.echo_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookie_mode_a_token_service_that_is_down_yields_503_and_keeps_the_cookie() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    h.expire_cookie_access_token_soon(&mut b).await;
    h.stop_token_service();
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("temporarily_unavailable"));
    assert!(!deletes_the_session_cookie(&reply), "the session is kept");
    assert!(h.cookie_session(&b).await.is_some());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_crypt17_idle_and_absolute_expiry_come_from_the_sealed_times() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let session = h.cookie_session(&b).await.unwrap();
    let cookie_header: String = chunks_of(&b).iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::COOKIE, cookie_header.parse().unwrap());
    let at = |now: i64| {
        let headers = headers.clone();
        let gateway = h.gateway.clone();
        async move { gateway.carried(&headers, now).await.unwrap().session.is_some() }
    };
    let now = gatehouse_bff::now();
    assert!(at(now).await);
    assert!(!at(session.last_seen + 3600).await, "idle timeout (1 h in the harness) from the sealed last_seen");
    assert!(!at(session.created_at + 86400).await, "absolute lifetime from the sealed created_at");

    // A session sealed long ago (same key, valid seal) is refused by the gateway, whatever the browser keeps.
    let mut old = (*session).clone();
    old.created_at = now - 86400 - 10;
    old.last_seen = now - 10;
    let lines = h.gateway.establish(old).await.unwrap();
    let mut set = reqwest::header::HeaderMap::new();
    for line in lines {
        set.append("set-cookie", line.parse().unwrap());
    }
    let mut past = Browser::new();
    past.absorb(&Reply { url: url::Url::parse(&h.gw("/")).unwrap(), status: 200, headers: set, body: String::new() });
    let reply = past.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(deletes_the_session_cookie(&reply));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookie_mode_login_again_rotates_the_session_and_silent_login_works() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let first = chunks_of(&b);
    let first_id = h.cookie_session(&b).await.unwrap().id.clone();
    h.login(&mut b, "alice", "/").await;
    let second_id = h.cookie_session(&b).await.unwrap().id.clone();
    assert_ne!(first_id, second_id, "a new login gets a new session id");
    let replay = browser_with(&first);
    assert_eq!(replay.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 401, "the old session ended");
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);

    let page = h.silent_login(&mut b).await;
    assert!(page.body.contains("isLoggedIn:true"), "{}", page.body);
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    assert_eq!(h.session_count().await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_crypt20_tampered_or_mixed_cookie_chunks_are_anonymous_and_cleared() {
    let h = Harness::start(cookie_mode()).await;
    let mut one = Browser::new();
    h.login(&mut one, "alice", "/").await;
    let mut two = Browser::new();
    h.login(&mut two, "alice", "/").await;
    let a = chunks_of(&one);
    let c = chunks_of(&two);
    let mut flipped = a.clone();
    let value = &mut flipped[0].1;
    let at = value.len() / 2;
    let replacement = if &value[at..at + 1] == "A" { "B" } else { "A" };
    value.replace_range(at..at + 1, replacement);
    let mut extra = a.clone();
    extra.push((format!("{SESSION_COOKIE}.4"), "A".repeat(100)));
    let mut variants = vec![flipped, extra];
    if a.len() > 1 && c.len() > 1 {
        let mut mixed = a.clone();
        mixed[1] = c[1].clone();
        variants.push(mixed);
    }
    // A chunk of one login under the other's name set (single-chunk sessions: the value of the other login).
    let value = &a[0].1;
    let last = if value.ends_with('x') { 'y' } else { 'x' };
    variants.push(vec![(SESSION_COOKIE.to_owned(), format!("{}{last}", &value[..value.len() - 1]))]);
    for cookies in variants {
        let b = browser_with(&cookies);
        let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert!(deletes_the_session_cookie(&reply));
    }
    // CRYPT-22: a cookie bomb is refused without a fault.
    let bomb: Vec<(String, String)> = (0..40).map(|i| (format!("{SESSION_COOKIE}.{i}"), "A".repeat(1000))).collect();
    let reply = browser_with(&bomb).get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert!(matches!(reply.status, 400 | 401 | 431), "{}", reply.status);
    // The genuine cookies still work.
    assert_eq!(one.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    assert_eq!(two.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookie_mode_the_idle_slide_reissues_the_cookie_at_most_every_slide_granularity() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let fresh = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(fresh.status, 200);
    assert!(session_set_cookies(&fresh).is_empty(), "a just-sealed session is not re-issued");

    // A session last seen longer ago than SLIDE_GRANULARITY: the answer carries it re-sealed with last_seen now.
    let session = h.cookie_session(&b).await.unwrap();
    let mut idle = (*session).clone();
    idle.last_seen = gatehouse_bff::now() - gatehouse_bff::state::SLIDE_GRANULARITY - 5;
    let lines = h.gateway.establish(idle).await.unwrap();
    let mut set = reqwest::header::HeaderMap::new();
    for line in lines {
        set.append("set-cookie", line.parse().unwrap());
    }
    b.absorb(&Reply { url: url::Url::parse(&h.gw("/")).unwrap(), status: 200, headers: set, body: String::new() });
    let slid = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(slid.status, 200);
    assert!(!session_set_cookies(&slid).is_empty(), "the slid session travels back");
    b.absorb(&slid);
    let after = h.cookie_session(&b).await.unwrap();
    assert!(after.last_seen >= gatehouse_bff::now() - 2, "last_seen slid to now");
    assert_eq!(after.created_at, session.created_at, "the absolute lifetime does not slide");
    let next = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(next.status, 200);
    assert!(session_set_cookies(&next).is_empty(), "within SLIDE_GRANULARITY: no new cookie");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_upstream_cannot_set_the_gateways_cookies() {
    for mode in [SessionMode::Server, SessionMode::Cookie] {
        let h = Harness::start(Options { session_mode: mode, ..Default::default() }).await;
        let mut b = Browser::new();
        h.login(&mut b, "alice", "/").await;
        let reply = b
            .get(
                &h.gw("/echo/x"),
                &[
                    ("x-csrf", "1"),
                    ("x-set-cookie", "__Host-gatehouse=forged; Path=/; Secure"),
                    ("x-set-cookie", "__Host-gatehouse.1=forged; Path=/; Secure"),
                    ("x-set-cookie", "__Host-gatehouse-tx-abc=forged; Path=/; Secure"),
                    ("x-set-cookie", "app-pref=dark; Path=/"),
                ],
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let lines = reply.set_cookies();
        assert!(lines.iter().all(|c| !c.contains("forged")), "{mode:?}: {lines:?}");
        assert!(lines.iter().any(|c| c.starts_with("app-pref=dark")), "{mode:?}: the app's own cookies pass");
        b.absorb(&reply);
        assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "{mode:?}");
        h.stop().await;
    }
}

/// RFC 8707 routes in cookie mode: the resource token (and the refresh token its grant rotated) travel back in
/// the re-sealed cookie; a request still carrying the previous cookie reuses them instead of asking again, so
/// the rotated refresh token is never lost (catalogue BFF-PX11, CRYPT-18).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookie_mode_resource_tokens_travel_in_the_resealed_cookie() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let before_cookie = chunks_of(&b);
    let login_rt = h.cookie_session(&b).await.unwrap().tokens.refresh_token.clone().unwrap();
    let grants = || h.gateway.refresher.refreshes.load(Ordering::Relaxed);
    let start = grants();
    let reply = b.get(&h.gw("/files/a"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!session_set_cookies(&reply).is_empty(), "the session gained a resource token: re-sealed");
    let first = h.last_echo()["authorization"].clone();
    let claims = support::jwt_payload(first.as_str().unwrap().strip_prefix("DPoP ").unwrap());
    assert_eq!(claims["aud"], support::FILES_AUDIENCE);
    assert_eq!(grants(), start + 1);
    b.absorb(&reply);
    let sealed = h.cookie_session(&b).await.expect("the new cookie opens");
    assert!(sealed.tokens.for_resource(support::FILES_AUDIENCE).is_some());

    // The cookie from before the resource grant: same token reused, no second grant.
    let old = browser_with(&before_cookie);
    assert_eq!(old.get(&h.gw("/files/b"), &[("x-csrf", "1")]).await.status, 200);
    assert_eq!(h.last_echo()["authorization"], first);
    assert_eq!(grants(), start + 1);
    // The re-sealed cookie holds the refresh token the resource grant rotated to, and it is the live one.
    let rotated = sealed.tokens.refresh_token.clone().unwrap();
    assert_ne!(rotated, login_rt);
    assert_eq!(h.refresh_status(&rotated).await, 200);
    h.stop().await;
}

/// CRYPT-12 in cookie mode: after a key rotation (new key first, the old one still in the ring) the chunks the
/// browser holds still open and the next answer re-seals them under the new key; once re-sealed, no further
/// re-issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_crypt12_cookie_chunks_under_the_previous_key_are_resealed() {
    use gatehouse_bff::settings::CookieKey;
    let old = CookieKey { id: "k1".into(), key: support::rand_key() };
    let new = CookieKey { id: "k2".into(), key: support::rand_key() };
    let h = Harness::start(Options { cookie_keys: Some(vec![old.clone()]), ..cookie_mode() }).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    assert!(b.cookie(SESSION_COOKIE).unwrap().starts_with("k1."));
    let h = h.restart_gateway_with(|settings| settings.cookie.keys = vec![new, old]).await;
    let reply = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "the previous key still opens: {}", reply.body);
    let resealed = session_set_cookies(&reply);
    assert!(resealed.iter().any(|c| c.starts_with(&format!("{SESSION_COOKIE}=k2."))), "{resealed:?}");
    b.absorb(&reply);
    let again = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(again.status, 200);
    assert!(session_set_cookies(&again).is_empty(), "already under the current key");
    h.stop().await;
}

/// An answer that carries the re-sealed session cookie is never cacheable, whatever the API said (a shared cache
/// would hand the session to everyone); an oversized Cookie header is refused with 431 and deletes the session
/// chunks so the browser is not locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resealed_cookies_are_never_cached_and_a_cookie_bomb_clears_the_chunks() {
    let h = Harness::start(cookie_mode()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    h.expire_cookie_access_token_soon(&mut b).await;
    let reply = b.get(&h.gw("/echo/cacheable"), &[("x-csrf", "1"), ("x-cache-control", "public, max-age=300")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!session_set_cookies(&reply).is_empty(), "the refresh re-sealed the cookie");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // Without a re-sealed cookie the API's own caching stands.
    b.absorb(&reply);
    let plain = b.get(&h.gw("/echo/cacheable"), &[("x-csrf", "1"), ("x-cache-control", "private, max-age=60")]).await;
    assert!(session_set_cookies(&plain).is_empty());
    assert_eq!(plain.header("cache-control"), Some("private, max-age=60"));

    let mut bomb = browser_with(&chunks_of(&b));
    bomb.set_cookie("junk", &"x".repeat(17 * 1024));
    let refused = bomb.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(refused.status, 431);
    assert!(deletes_the_session_cookie(&refused), "{:?}", refused.set_cookies());
    h.stop().await;
}
