//! The gateway end to end over real sockets: a token service, the example API and a recording echo upstream on
//! free ports, the gateway (pingora) in front; a cookie-jar "browser" logs in through the real login form.
//! Catalogue §F (BFF) and §H (session) rows are named where a test covers one.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use support::{Browser, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_then_api_call_carries_a_dpop_bound_token_of_the_session_key() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    let landed = h.login(&mut b, "alice", "/app?tab=1").await;
    assert_eq!(landed, "/app?tab=1", "the callback returns to returnUrl");

    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let session = h.only_session().await;
    let key = gatehouse_proto::dpop_key::DpopKey::from_pkcs8(&session.dpop_key).unwrap();
    assert_eq!(seen["jkt"], key.jkt(), "the API verified a token bound to the session's DPoP key");
    assert_eq!(seen["sub"], session.sub);
    assert!(seen["scopes"].as_array().unwrap().iter().any(|s| s == "api"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_user_has_duendes_shape_and_needs_the_csrf_header() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    let anonymous = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(anonymous.status, 401, "anonymous /bff/user is 401 JSON");
    assert!(anonymous.header("content-type").unwrap().starts_with("application/json"));
    h.login(&mut b, "alice", "/").await;

    // F: the anti-forgery header is required.
    assert_eq!(b.get(&h.gw("/bff/user"), &[]).await.status, 401);
    let reply = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let claims: Vec<serde_json::Value> = serde_json::from_str(&reply.body).unwrap();
    let value = |t: &str| claims.iter().find(|c| c["type"] == t).map(|c| c["value"].clone());
    let session = h.only_session().await;
    assert_eq!(value("sub").unwrap(), session.sub);
    assert_eq!(value("name").unwrap(), "Alice Liddell");
    let logout = value("bff:logout_url").unwrap();
    assert!(logout.as_str().unwrap().starts_with("/bff/logout?sid="), "{logout}");
    assert!(value("bff:session_expires_in").unwrap().as_i64().unwrap() > 0);
    assert!(value("iss").is_none() && value("nonce").is_none(), "protocol claims are not shown");
    assert!(!reply.body.contains(&session.tokens.access_token), "no token in the browser");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_routes_refuse_without_csrf_header_or_session_and_never_redirect() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    let anonymous = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("location").is_none());
    h.login(&mut b, "alice", "/").await;
    let no_csrf = b.get(&h.gw("/api/whoami"), &[]).await;
    assert_eq!(no_csrf.status, 401, "missing X-CSRF");
    let wrong_csrf = b.get(&h.gw("/api/whoami"), &[("x-csrf", "0")]).await;
    assert_eq!(wrong_csrf.status, 401, "X-CSRF must be 1");
    assert_eq!(h.echo_count(), 0, "nothing reached an upstream");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookies_and_browser_credentials_never_reach_the_upstream() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let reply = b
        .get(
            &h.gw("/echo/x?y=1"),
            &[
                ("x-csrf", "1"),
                ("authorization", "Bearer stolen"),
                ("dpop", "forged"),
                ("connection", "x-secret"),
                ("x-secret", "1"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = h.last_echo();
    assert!(seen.get("cookie").is_none(), "Cookie stripped: {seen:?}");
    assert!(seen["authorization"].as_str().unwrap().starts_with("DPoP "), "{seen:?}");
    assert_ne!(seen["dpop"], "forged");
    assert!(seen.get("x-secret").is_none(), "headers named by Connection are hop-by-hop");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], h.gw_authority());
    assert_eq!(seen["path"], "/x?y=1", "the prefix is stripped on this route");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_truncated_or_foreign_cookies_are_anonymous() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let good = b.cookie(support::SESSION_COOKIE).unwrap();
    let mut variants = vec![
        good[..good.len() - 1].to_owned(),
        format!("{good}A"),
        good.replacen('.', "x", 1),
        "garbage".to_owned(),
        String::new(),
        "k1.".to_owned() + &"A".repeat(5000),
    ];
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 3;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    variants.push(String::from_utf8(flipped).unwrap());
    for value in variants {
        let mut other = Browser::new();
        other.set_cookie(support::SESSION_COOKIE, &value);
        let reply = other.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
        assert_eq!(reply.status, 401, "cookie {value:.20}… must be anonymous");
        let user = other.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
        assert_eq!(user.status, 401);
    }
    // The untouched cookie still works.
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_needs_the_sid_revokes_and_kills_the_old_cookie() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let old_cookie = b.cookie(support::SESSION_COOKIE).unwrap();
    let refresh_token = h.only_session().await.tokens.refresh_token.clone().unwrap();

    let forged = b.get(&h.gw("/bff/logout"), &[]).await;
    assert_eq!(forged.status, 400, "logout without sid is refused (logout CSRF)");
    let wrong = b.get(&h.gw("/bff/logout?sid=nope"), &[]).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(h.session_count().await, 1, "the session survives refused logouts");

    let user = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    let claims: Vec<serde_json::Value> = serde_json::from_str(&user.body).unwrap();
    let logout_url =
        claims.iter().find(|c| c["type"] == "bff:logout_url").unwrap()["value"].as_str().unwrap().to_owned();
    let reply = b.get(&h.gw(&logout_url), &[]).await;
    assert_eq!(reply.status, 302);
    let location = reply.header("location").unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/end_session?", h.issuer)), "RP-initiated logout: {location}");
    assert!(location.contains("id_token_hint="));
    assert!(reply.set_cookies().iter().any(|c| c.starts_with("__Host-gatehouse=;") && c.contains("Max-Age=0")));
    assert_eq!(h.session_count().await, 0);

    let mut replay = Browser::new();
    replay.set_cookie(support::SESSION_COOKIE, &old_cookie);
    assert_eq!(replay.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 401, "old cookie is dead");
    // The refresh token was revoked at the token service.
    assert_eq!(h.refresh_status(&refresh_token).await, 400);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_requests_share_one_refresh() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let before = h.only_session().await;
    h.expire_access_token_soon().await;
    let b = Arc::new(b);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let b = b.clone();
        let url = h.gw("/api/whoami");
        tasks.push(tokio::spawn(async move { b.get(&url, &[("x-csrf", "1")]).await.status }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(h.gateway.refresher.refreshes.load(Ordering::Relaxed), 1, "exactly one refresh");
    let after = h.only_session().await;
    assert_ne!(after.tokens.access_token, before.tokens.access_token);
    assert_ne!(after.tokens.refresh_token, before.tokens.refresh_token, "the refresh token rotated");
    assert!(after.tokens.access_token_expires_at > gatehouse_bff::now() + 60, "a fresh lifetime");
    h.stop().await;
}

/// A request that read the session before a refresh or a logout must not write its stale copy back when it
/// slides the idle time: the rotated refresh token stays, an ended session stays ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_copy_never_overwrites_a_refresh_or_revives_a_logged_out_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let stale = h.only_session().await;
    h.expire_access_token_soon().await;
    assert_eq!(b.get(&h.gw("/echo/refresh"), &[("x-csrf", "1")]).await.status, 200);
    let refreshed = h.only_session().await;
    assert_ne!(refreshed.tokens.refresh_token, stale.tokens.refresh_token);
    // The idle slide of a request that still holds the pre-refresh copy.
    let later = gatehouse_bff::now() + 120;
    let kept = h.gateway.touch(&stale, later).await.unwrap();
    assert_eq!(kept.tokens, refreshed.tokens, "the stored tokens win over the stale copy");
    assert_eq!(h.only_session().await.tokens.refresh_token, refreshed.tokens.refresh_token);
    assert_eq!(h.only_session().await.last_seen, later);
    // Logout, then the same stale slide: nothing comes back.
    let logout = h.logout_url(&b).await;
    assert_eq!(b.get(&h.gw(&logout), &[]).await.status, 302);
    h.gateway.touch(&stale, later + 60).await.unwrap();
    assert_eq!(h.session_count().await, 0, "a logged-out session is not revived");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_refresh_ends_the_session_with_401() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let refresh_token = h.only_session().await.tokens.refresh_token.clone().unwrap();
    h.revoke_at_token_service(&refresh_token).await;
    h.expire_access_token_soon().await;
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(h.session_count().await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_service_that_is_down_yields_503_and_keeps_the_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    h.expire_access_token_soon().await;
    h.stop_token_service();
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("temporarily_unavailable"));
    assert_eq!(h.session_count().await, 1, "the session is kept");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn back_channel_logout_from_the_token_service_ends_the_gateway_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    let reports = h.revoke_idp_sessions("alice").await;
    assert!(reports.iter().all(|r| r.contains("Delivered")), "{reports:?}");
    assert_eq!(h.session_count().await, 0);
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backchannel_refuses_invalid_logout_tokens() {
    let h = Harness::start(Default::default()).await;
    let b = Browser::new();
    for body in ["", "logout_token=", "logout_token=a.b.c", "logout_token=x&logout_token=y"] {
        let reply = b.post_form(&h.gw("/bff/backchannel"), body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
    }
    assert_eq!(b.get(&h.gw("/bff/backchannel"), &[]).await.status, 405);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_redirect_payloads_are_refused_by_login() {
    let h = Harness::start(Default::default()).await;
    let b = Browser::new();
    let payloads = [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "%2F%2Fevil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "javascript:alert(1)",
        "http:evil.example",
        "/x%0d%0aSet-Cookie:%20a=b",
        "%09/evil.example",
    ];
    for payload in payloads {
        let reply = b.get(&h.gw(&format!("/bff/login?returnUrl={}", enc(payload))), &[]).await;
        assert_eq!(reply.status, 400, "returnUrl {payload:?} must be refused");
        assert!(reply.header("location").is_none());
        assert!(reply.set_cookies().is_empty(), "no login transaction for a refused returnUrl");
    }
    let ok = b.get(&h.gw("/bff/login?returnUrl=%2Fapp"), &[]).await;
    assert_eq!(ok.status, 302);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_or_failed_callbacks_create_no_session() {
    let h = Harness::start(support::Options { use_par: false, ..Default::default() }).await;
    let mut b = Browser::new();
    let forged = b.get(&h.gw("/bff/callback?code=abc&state=unknown"), &[]).await;
    assert_eq!(forged.status, 400);
    assert!(forged.set_cookies().iter().all(|c| !c.starts_with("__Host-gatehouse=")));

    // A real transaction, then an error answer from the token service.
    let start = b.get(&h.gw("/bff/login"), &[]).await;
    assert_eq!(start.status, 302);
    b.absorb(&start);
    let state = b.last_tx_state(&h).await;
    let error =
        b.get(&h.gw(&format!("/bff/callback?error=access_denied&state={state}&iss={}", enc(&h.issuer))), &[]).await;
    assert_eq!(error.status, 400);
    assert_eq!(h.session_count().await, 0);

    // The wrong iss (RFC 9207 mix-up) with an otherwise fine response.
    let start = b.get(&h.gw("/bff/login"), &[]).await;
    b.absorb(&start);
    let state = b.last_tx_state(&h).await;
    let mixup = b.get(&h.gw(&format!("/bff/callback?code=x&state={state}&iss=https%3A%2F%2Fevil.example")), &[]).await;
    assert_eq!(mixup.status, 400);
    assert_eq!(h.session_count().await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_cookies_have_host_prefix_attributes() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    let start = b.get(&h.gw("/bff/login"), &[]).await;
    let tx = start.set_cookies().into_iter().find(|c| c.starts_with("__Host-gatehouse-tx-")).unwrap();
    for attribute in ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(tx.contains(attribute), "{tx} lacks {attribute}");
    }
    assert!(!tx.to_ascii_lowercase().contains("domain="));
    b.absorb(&start);
    let session_cookie = h.login_set_cookie(&mut b).await;
    for attribute in ["Secure", "HttpOnly", "Path=/", "SameSite=Strict"] {
        assert!(session_cookie.contains(attribute), "{session_cookie} lacks {attribute}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_id_rotates_at_login() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let first = b.cookie(support::SESSION_COOKIE).unwrap();
    let first_id = h.only_session().await.id.clone();
    h.login(&mut b, "alice", "/").await;
    let second = b.cookie(support::SESSION_COOKIE).unwrap();
    assert_ne!(first, second);
    let second_id = h.only_session().await.id.clone();
    assert_ne!(first_id, second_id, "a new login gets a new session id; the old session ended");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_login_posts_the_outcome_to_the_parent() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    // No token-service session yet: prompt=none ends with login_required → isLoggedIn false.
    let page = h.silent_login(&mut b).await;
    assert!(page.body.contains("isLoggedIn:false"), "{}", page.body);
    assert!(page.header("content-security-policy").unwrap().contains("frame-ancestors 'self'"));
    // After a login, a new silent login succeeds without a form.
    h.login(&mut b, "alice", "/").await;
    let page = h.silent_login(&mut b).await;
    assert!(page.body.contains("isLoggedIn:true"), "{}", page.body);
    assert!(page.body.contains("window.location.origin"), "posted to the same origin only");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_frontend_is_served_with_security_headers() {
    let h = Harness::start(Default::default()).await;
    let b = Browser::new();
    let index = b.get(&h.gw("/"), &[]).await;
    assert_eq!(index.status, 200);
    assert!(index.body.contains("<html"), "{}", index.body);
    let csp = index.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // The silent-login iframe is redirected to the token service: the app may frame it, and nothing else.
    let token_service = url::Url::parse(&h.issuer).unwrap().origin().ascii_serialization();
    assert!(csp.contains(&format!("frame-src 'self' {token_service};")), "{csp}");
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    let deep = b.get(&h.gw("/some/client/route"), &[]).await;
    assert_eq!(deep.status, 200, "client-side routes fall back to index.html");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_routes_forward_the_gateways_own_bound_token() {
    let h = Harness::start(Default::default()).await;
    let b = Browser::new();
    let reply = b.get(&h.gw("/svc/ping"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = h.last_echo();
    let token = seen["authorization"].as_str().unwrap().strip_prefix("DPoP ").unwrap();
    let claims = support::jwt_payload(token);
    assert_eq!(claims["client_id"], "bff");
    assert_eq!(claims["cnf"]["jkt"], h.gateway.refresher.client_key().jkt());
    // Cached: a second call gets the same token.
    b.get(&h.gw("/svc/ping"), &[("x-csrf", "1")]).await;
    assert_eq!(h.last_echo()["authorization"], seen["authorization"]);
    h.stop().await;
}

/// RFC 8707 per route (catalogue BFF-PX11): a route naming a `resource` forwards a token whose `aud` is that
/// API only, fetched once with the session's refresh token and reused; other routes keep the session's token;
/// a resource the token service refuses is a 403 on that route only, asked for once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_naming_a_resource_forward_a_token_for_that_api_only() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let csrf = [("x-csrf", "1")];
    assert_eq!(b.get(&h.gw("/echo/a"), &csrf).await.status, 200);
    let main = support::jwt_payload(h.last_echo()["authorization"].as_str().unwrap().strip_prefix("DPoP ").unwrap());
    assert_eq!(main["aud"], serde_json::json!([support::API_AUDIENCE, support::FILES_AUDIENCE]));
    let before = h.gateway.refresher.refreshes.load(std::sync::atomic::Ordering::Relaxed);

    let reply = b.get(&h.gw("/files/report"), &csrf).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = h.last_echo();
    let token = seen["authorization"].as_str().unwrap().strip_prefix("DPoP ").unwrap().to_owned();
    let narrow = support::jwt_payload(&token);
    assert_eq!(narrow["aud"], support::FILES_AUDIENCE, "only the route's API");
    assert_eq!(narrow["cnf"], main["cnf"], "bound to the same session key");
    assert_eq!(h.gateway.refresher.refreshes.load(std::sync::atomic::Ordering::Relaxed), before + 1);
    // Reused, not fetched again; the main token is untouched and the session's refresh token still works.
    assert_eq!(b.get(&h.gw("/files/again"), &csrf).await.status, 200);
    assert_eq!(h.last_echo()["authorization"], seen["authorization"]);
    assert_eq!(b.get(&h.gw("/echo/b"), &csrf).await.status, 200);
    assert_eq!(
        h.last_echo()["authorization"].as_str().unwrap().strip_prefix("DPoP "),
        Some(main_token(&h, &b).await.as_str())
    );
    assert_eq!(h.gateway.refresher.refreshes.load(std::sync::atomic::Ordering::Relaxed), before + 1);

    // Refused resource: 403 JSON on that route, asked once, the session goes on.
    let refused = b.get(&h.gw("/unknown/x"), &csrf).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("invalid_target"), "{}", refused.body);
    assert_eq!(b.get(&h.gw("/unknown/y"), &csrf).await.status, 403);
    assert_eq!(h.gateway.refresher.refreshes.load(std::sync::atomic::Ordering::Relaxed), before + 2);
    assert_eq!(b.get(&h.gw("/files/z"), &csrf).await.status, 200, "the rotated refresh token was kept");

    // The gateway's own client_credentials token for a resource route.
    assert_eq!(b.get(&h.gw("/svc-files/x"), &csrf).await.status, 200);
    let client = support::jwt_payload(h.last_echo()["authorization"].as_str().unwrap().strip_prefix("DPoP ").unwrap());
    assert_eq!(client["aud"], support::FILES_AUDIENCE);
    assert_eq!(client["client_id"], "bff");
    h.stop().await;
}

/// The session's main access token as the `/echo/` route forwards it.
async fn main_token(h: &Harness, b: &Browser) -> String {
    assert_eq!(b.get(&h.gw("/echo/main"), &[("x-csrf", "1")]).await.status, 200);
    h.last_echo()["authorization"].as_str().unwrap().strip_prefix("DPoP ").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route_rules_scope_body_size_websocket_and_public_routes() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let scope = b.get(&h.gw("/admin/x"), &[("x-csrf", "1")]).await;
    assert_eq!(scope.status, 403, "{}", scope.body);
    assert!(scope.body.contains("insufficient_scope"));
    let big = b.post_form(&h.gw("/small/x"), "0123456789abcdef").await;
    assert_eq!(big.status, 401, "POST without X-CSRF is refused first");
    let ws = b
        .get(
            &h.gw("/echo/ws"),
            &[
                ("x-csrf", "1"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .await;
    assert_eq!(ws.status, 403, "websockets are off on this route");
    let before = h.echo_count();
    let open = Browser::new().get(&h.gw("/open/x"), &[]).await;
    assert_eq!(open.status, 200, "a public route needs neither session nor header");
    assert!(h.last_echo().get("authorization").is_none(), "and forwards no token");
    let maybe = Browser::new().get(&h.gw("/maybe/x"), &[("x-csrf", "1")]).await;
    assert_eq!(maybe.status, 200);
    assert!(h.last_echo().get("authorization").is_none());
    b.get(&h.gw("/maybe/x"), &[("x-csrf", "1")]).await;
    assert!(h.last_echo()["authorization"].as_str().unwrap().starts_with("DPoP "), "with a session: the user's token");
    assert_eq!(h.echo_count(), before + 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_bodies_over_the_route_limit_are_refused() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let client = reqwest::Client::new();
    let cookie = format!("{}={}", support::SESSION_COOKIE, b.cookie(support::SESSION_COOKIE).unwrap());
    let reply = client
        .post(h.gw("/small/x"))
        .header("x-csrf", "1")
        .header("cookie", &cookie)
        .body("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
    let ok = client
        .post(h.gw("/small/x"))
        .header("x-csrf", "1")
        .header("cookie", &cookie)
        .body("0123")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(h.last_echo()["method"], "POST");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_asking_for_a_dpop_nonce_gets_one_retry_and_the_nonce_is_remembered() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let reply = b.get(&h.gw("/nonce/x"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let proofs = h.nonce_proofs.lock().unwrap().clone();
    assert_eq!(proofs.len(), 2, "one refusal, one retry");
    assert!(proofs[0].get("nonce").is_none());
    assert_eq!(proofs[1]["nonce"], "n-1");
    assert_ne!(proofs[0]["jti"], proofs[1]["jti"], "a fresh proof for the retry");
    let again = b.get(&h.gw("/nonce/y"), &[("x-csrf", "1")]).await;
    assert_eq!(again.status, 200);
    assert_eq!(h.nonce_proofs.lock().unwrap().len(), 3, "the nonce was remembered: no second refusal");
    h.stop().await;
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
