//! The security catalogue's §F (BFF cookies, CSRF, sessions, logout, return URLs, proxying, headers) and §H
//! (cookie tampering and cryptography) rows as black-box tests over real sockets: a token service, the example
//! API and a recording echo upstream on free ports, the gateway (pingora) in front. Each test is named after
//! the row(s) it proves (`/work/shared/security/CATALOGUE.md`; the coverage table is `bff/CATALOGUE-COVERAGE.md`).
//! Rows already proven by `tests/gateway.rs` are named there and not repeated here unless the catalogue's
//! Expected column asks for more than that test checks.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_bff::seal::KeyRing;
use gatehouse_bff::session::Session;
use gatehouse_bff::settings::CookieKey;
use gatehouse_bff::transaction::LoginTransaction;
use support::{Browser, Harness, Options, Reply, SESSION_COOKIE, enc};

const TX_PREFIX: &str = "__Host-gatehouse-tx-";
const EVIL: &str = "https://evil.example";

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/// Runs a login up to the token service's redirect back to `/bff/callback`, without following it. `start` is
/// the `/bff/login…` path and query; `headers` go on that first request.
async fn login_until_callback(
    h: &Harness,
    b: &mut Browser,
    start: &str,
    headers: &[(&str, &str)],
    user: &str,
) -> String {
    let first = b.get(&h.gw(start), headers).await;
    assert_eq!(first.status, 302, "{}", first.body);
    b.absorb(&first);
    let authorize = first.header("location").unwrap().to_owned();
    let page = b.get(&authorize, &[]).await;
    b.absorb(&page);
    let callback = if matches!(page.status, 302 | 303) {
        page.header("location").unwrap().to_owned()
    } else {
        assert_eq!(page.status, 200, "{}", page.body);
        let (csrf, request) = support::form_fields(&page.body);
        let password = format!("{user}-password");
        let form = [("username", user), ("password", &password), ("csrf", &csrf), ("request", &request)];
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let posted = b.post_form(&format!("{}/login", h.issuer), &body).await;
        assert!(matches!(posted.status, 302 | 303), "{} {}", posted.status, posted.body);
        b.absorb(&posted);
        posted.header("location").unwrap().to_owned()
    };
    assert!(callback.starts_with(&h.gw("/bff/callback?")), "{callback}");
    callback
}

/// A request with arbitrary method, headers and body, carrying `b`'s gateway cookies.
async fn send(b: &Browser, h: &Harness, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = url::Url::parse(&h.gw(path)).unwrap();
    let mut request = client.request(method.parse().unwrap(), url.clone()).body(body.to_owned());
    if let Some(cookie) = b.cookie(SESSION_COOKIE) {
        request = request.header("cookie", format!("{SESSION_COOKIE}={cookie}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Reply { url, status, headers, body }
}

/// Sends raw bytes to the gateway and returns everything it answers until it closes (or 3 s pass).
async fn raw_async(h: &Harness, request: String) -> String {
    let h_authority = h.gw_authority();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(h_authority).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buffer[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}

fn status_of(raw_response: &str) -> u16 {
    raw_response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn cookie_header(b: &Browser) -> String {
    format!("{SESSION_COOKIE}={}", b.cookie(SESSION_COOKIE).unwrap())
}

/// The `sub` `/bff/user` reports, or None when anonymous.
async fn user_sub(h: &Harness, b: &Browser) -> Option<String> {
    let user = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    if user.status != 200 {
        return None;
    }
    let claims: Vec<serde_json::Value> = serde_json::from_str(&user.body).unwrap();
    claims.iter().find(|c| c["type"] == "sub").map(|c| c["value"].as_str().unwrap().to_owned())
}

/// The session cookie value a response set.
fn session_cookie_set_by(reply: &Reply) -> String {
    let set = reply.set_cookies().into_iter().find(|c| c.starts_with("__Host-gatehouse=")).expect("a session cookie");
    cookie::Cookie::parse(set.as_str()).unwrap().value().to_owned()
}

/// A browser holding only `value` as its session cookie.
fn browser_with_cookie(value: &str) -> Browser {
    let mut b = Browser::new();
    b.set_cookie(SESSION_COOKIE, value);
    b
}

/// The catalogue §H outcome for a cookie that must not open: anonymous, cookie cleared.
fn assert_anonymous_and_cleared(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    assert!(reply.header("location").is_none(), "{what}: never a redirect");
    let cleared = reply.set_cookies();
    assert_eq!(cleared.len(), 1, "{what}: exactly one Set-Cookie, the deletion: {cleared:?}");
    assert_deletion(&cleared[0], SESSION_COOKIE);
}

/// BFF-CK08: a deletion of a `__Host-` cookie must carry the same name, `Path=/` and `Secure`.
fn assert_deletion(set_cookie: &str, name: &str) {
    let cookie = cookie::Cookie::parse(set_cookie).unwrap();
    assert_eq!(cookie.name(), name, "{set_cookie}");
    assert_eq!(cookie.value(), "", "{set_cookie}");
    assert_eq!(cookie.max_age(), Some(cookie::time::Duration::ZERO), "{set_cookie}");
    assert_eq!(cookie.path(), Some("/"), "{set_cookie}");
    assert_eq!(cookie.secure(), Some(true), "{set_cookie}");
    assert_eq!(cookie.domain(), None, "{set_cookie}");
}

/// Flips one base64url character of a sealed value at `index` (in the part after the key id).
fn flip(sealed: &str, index: usize) -> String {
    let (id, body) = sealed.split_once('.').unwrap();
    let mut bytes = body.as_bytes().to_vec();
    let i = index.min(bytes.len() - 1);
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    format!("{id}.{}", String::from_utf8(bytes).unwrap())
}

fn rebuild(sealed: &str, edit: impl Fn(&mut Vec<u8>)) -> String {
    let (id, body) = sealed.split_once('.').unwrap();
    let mut blob = gatehouse_proto::b64::decode(body).unwrap();
    edit(&mut blob);
    format!("{id}.{}", gatehouse_proto::b64::encode(&blob))
}

fn other_ring(id: &str) -> KeyRing {
    KeyRing::new(&[CookieKey { id: id.into(), key: support::rand_key() }]).unwrap()
}

// ---------------------------------------------------------------------------------------------------------------
// F1. Cookie attributes

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_ck01_ck02_ck03_ck04_ck05_ck07_ck08_every_set_cookie_has_host_prefix_attributes() {
    let h = Harness::start(Options { use_par: false, ..Default::default() }).await;
    let mut all: Vec<String> = Vec::new();
    let mut b = Browser::new();

    // Login start (transaction cookie), and a second start that clears a forged stale transaction cookie.
    b.set_cookie(&format!("{TX_PREFIX}AAAAAAAAAAAAAAAA"), "k1.garbage");
    let callback = login_until_callback(&h, &mut b, "/bff/login", &[], "alice").await;
    let reply = b.get(&callback, &[]).await;
    assert_eq!(reply.status, 302);
    b.absorb(&reply);
    // Callback: clears the transaction, sets the session.
    all.extend(reply.set_cookies());
    let start = Browser::new().get(&h.gw("/bff/login"), &[]).await;
    all.extend(start.set_cookies());
    let mut stale = Browser::new();
    stale.set_cookie(&format!("{TX_PREFIX}AAAAAAAAAAAAAAAA"), "k1.garbage");
    let cleaned = stale.get(&h.gw("/bff/login"), &[]).await;
    assert!(cleaned.set_cookies().iter().any(|c| c.starts_with(&format!("{TX_PREFIX}AAAAAAAAAAAAAAAA=;"))));
    all.extend(cleaned.set_cookies());

    // An error response: a callback with an error from the token service clears its transaction.
    let mut failing = Browser::new();
    let start = failing.get(&h.gw("/bff/login"), &[]).await;
    failing.absorb(&start);
    let state = failing.last_tx_state(&h).await;
    let error = failing
        .get(&h.gw(&format!("/bff/callback?error=access_denied&state={state}&iss={}", enc(&h.issuer))), &[])
        .await;
    assert_eq!(error.status, 400);
    assert_eq!(error.set_cookies().len(), 1);
    all.extend(error.set_cookies());

    // A refusal for a dead cookie clears it; logout clears the live one.
    let dead = browser_with_cookie("k1.dead").get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    all.extend(dead.set_cookies());
    let logout = b.get(&h.gw(&h.logout_url(&b).await), &[]).await;
    assert_eq!(logout.status, 302);
    all.extend(logout.set_cookies());

    assert!(all.len() >= 7, "{all:?}");
    let mut saw = (false, false, false);
    for set in &all {
        let cookie = cookie::Cookie::parse(set.as_str()).unwrap();
        let name = cookie.name();
        assert!(name.starts_with("__Host-"), "CK01 prefix: {set}");
        assert_eq!(cookie.secure(), Some(true), "CK02 Secure: {set}");
        assert_eq!(cookie.http_only(), Some(true), "CK03 HttpOnly: {set}");
        assert_eq!(cookie.path(), Some("/"), "CK05 Path=/: {set}");
        assert_eq!(cookie.domain(), None, "CK05 no Domain: {set}");
        assert!(set.len() <= 4096, "CK07 size: {} bytes", set.len());
        if cookie.value().is_empty() {
            assert_deletion(set, name);
            saw.2 = true;
        } else if name == SESSION_COOKIE {
            assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict), "CK04 session Strict: {set}");
            saw.0 = true;
        } else {
            assert!(name.starts_with(TX_PREFIX), "{set}");
            assert_eq!(cookie.same_site(), Some(cookie::SameSite::Lax), "CK04 transaction Lax (DD6): {set}");
            assert_eq!(cookie.max_age(), Some(cookie::time::Duration::seconds(600)), "{set}");
            saw.1 = true;
        }
    }
    assert_eq!(saw, (true, true, true), "session, transaction and deletion cookies were all checked");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_ck03_ck06_ck09_ck10_session_cookie_is_a_sealed_browser_session_id_never_shown_elsewhere() {
    let h = Harness::start(Options { use_par: false, ..Default::default() }).await;
    let mut b = Browser::new();
    let mut locations = Vec::new();
    let first = b.get(&h.gw("/bff/login?returnUrl=%2Fapp"), &[]).await;
    locations.push(first.header("location").unwrap().to_owned());
    let tx_cookie = first.set_cookies()[0].clone();
    let tx_value = cookie::Cookie::parse(tx_cookie.as_str()).unwrap().value().to_owned();
    let callback = login_until_callback(&h, &mut b, "/bff/login?returnUrl=%2Fapp", &[], "alice").await;
    locations.push(callback.clone());
    let reply = b.get(&callback, &[]).await;
    b.absorb(&reply);
    locations.push(reply.header("location").unwrap().to_owned());
    let set = reply.set_cookies().into_iter().find(|c| c.starts_with("__Host-gatehouse=")).unwrap();
    let session_cookie = cookie::Cookie::parse(set.as_str()).unwrap();
    // CK06: a browser-session cookie (no Max-Age/Expires); the server enforces idle and absolute expiry
    // (BFF-SESS05/06 below).
    assert_eq!(session_cookie.max_age(), None, "{set}");
    assert_eq!(session_cookie.expires(), None, "{set}");

    let session = h.only_session().await;
    let value = session_cookie.value().to_owned();
    // CK09: AEAD-sealed, not readable: no JSON, no id, no token.
    let (key_id, body) = value.split_once('.').unwrap();
    assert_eq!(key_id, "k1");
    let blob = gatehouse_proto::b64::decode(body).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&blob).is_err());
    assert!(blob.len() >= 12 + 16, "nonce and tag");
    let plain = String::from_utf8_lossy(&blob);
    for secret in [session.id.as_str(), session.tokens.access_token.as_str(), session.sub.as_str()] {
        assert!(!value.contains(secret) && !plain.contains(secret), "the cookie reveals a secret");
    }
    assert!(!value.contains("eyJ"), "no JWT in the cookie");

    // CK03: the value is never delivered anywhere JS could read it.
    let user = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert!(!user.body.contains(&value) && !user.body.contains(&session.id), "{}", user.body);
    // CK10: no session or transaction identifier in any URL.
    let logout = b.get(&h.gw(&h.logout_url(&b).await), &[]).await;
    locations.push(logout.header("location").unwrap().to_owned());
    for location in &locations {
        for secret in [value.as_str(), session.id.as_str(), tx_value.as_str()] {
            assert!(!location.contains(secret), "identifier in {location}");
        }
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// F2. CSRF and cross-origin defences

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf01_csrf02_every_user_route_and_method_needs_the_header_and_nothing_is_forwarded() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let routes = ["/api/x", "/echo/x", "/svc/x", "/admin/x", "/small/x", "/maybe/x", "/nonce/x"];
    for route in routes {
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let reply = send(&b, &h, method, route, &[("content-type", "application/json")], "{}").await;
            assert_eq!(reply.status, 401, "{method} {route}");
            if method != "HEAD" {
                assert!(reply.body.contains("X-CSRF"), "{method} {route}: {}", reply.body);
            }
            assert!(reply.header("location").is_none());
        }
    }
    assert_eq!(h.echo_count(), 0, "CSRF01: nothing reached the echo upstream");
    assert!(h.nonce_proofs.lock().unwrap().is_empty(), "nor the nonce upstream");
    // The only route without the header requirement is the configured public one, which forwards no token.
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf03_cors_simple_requests_from_another_origin_are_refused() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    for content_type in ["text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"] {
        let headers = [("content-type", content_type), ("origin", EVIL), ("sec-fetch-site", "cross-site")];
        let reply = send(&b, &h, "POST", "/echo/orders", &headers, "a=1").await;
        assert_eq!(reply.status, 401, "{content_type}: no X-CSRF");
        // Even a forged header (only possible without a browser) does not pass the origin check.
        let with_header = [headers.as_slice(), &[("x-csrf", "1")]].concat();
        let reply = send(&b, &h, "POST", "/echo/orders", &with_header, "a=1").await;
        assert_eq!(reply.status, 403, "{content_type}: foreign origin");
    }
    assert_eq!(h.echo_count(), 0, "nothing forwarded");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf04_preflight_from_a_foreign_origin_gets_no_cors_grant() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let preflight = [
        ("origin", EVIL),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "x-csrf"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "cross-site"),
    ];
    // API routes: no X-CSRF on a preflight → 401; `/bff/user` only answers GET → 405. Never a CORS grant.
    for (path, status) in [("/api/x", 401), ("/echo/x", 401), ("/bff/user", 405)] {
        let reply = send(&b, &h, "OPTIONS", path, &preflight, "").await;
        assert_eq!(reply.status, status, "{path}");
        for header in
            ["access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-headers"]
        {
            assert!(reply.header(header).is_none(), "{path}: {header}");
        }
    }
    assert_eq!(h.echo_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf05_csrf07_null_sibling_and_cross_site_origins_are_refused_same_origin_passes() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let sibling = h.gw_origin.replace("127.0.0.1", "other.localhost");
    let refused: Vec<Vec<(&str, &str)>> = vec![
        vec![("origin", "null")],
        vec![("origin", sibling.as_str())],
        vec![("origin", EVIL)],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site"), ("origin", sibling.as_str())],
        vec![("sec-fetch-site", "same-site")],
    ];
    for headers in &refused {
        for (method, path) in [("POST", "/echo/orders"), ("GET", "/echo/orders"), ("GET", "/bff/user")] {
            let with_csrf = [headers.as_slice(), &[("x-csrf", "1")]].concat();
            let reply = send(&b, &h, method, path, &with_csrf, "").await;
            assert_eq!(reply.status, 403, "{method} {path} {headers:?}: {}", reply.body);
            assert!(reply.body.contains("\"forbidden\""), "{}", reply.body);
        }
    }
    assert_eq!(h.echo_count(), 0, "nothing forwarded");
    let same_origin = [
        ("x-csrf", "1"),
        ("origin", h.gw_origin.as_str()),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
    ];
    let reply = send(&b, &h, "POST", "/echo/orders", &same_origin, "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.echo_count(), 1);
    assert_eq!(send(&b, &h, "GET", "/bff/user", &same_origin, "").await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf06_a_navigation_to_an_api_route_is_refused() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let navigation = [
        ("x-csrf", "1"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-site", "same-origin"),
    ];
    for path in ["/api/whoami", "/echo/x", "/maybe/x", "/bff/user"] {
        let reply = send(&b, &h, "GET", path, &navigation, "").await;
        assert_eq!(reply.status, 403, "{path}");
        assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    }
    for dest in ["iframe", "embed", "object"] {
        let reply = send(&b, &h, "GET", "/echo/x", &[("x-csrf", "1"), ("sec-fetch-dest", dest)], "").await;
        assert_eq!(reply.status, 403, "{dest}");
    }
    assert_eq!(h.echo_count(), 0);
    // The frontend itself is a page: navigations to it are fine.
    let index = send(&b, &h, "GET", "/", &navigation[1..], "").await;
    assert_eq!(index.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf08_a_callback_for_someone_elses_login_creates_no_session() {
    let h = Harness::start(Options { use_par: false, ..Default::default() }).await;
    let mut attacker = Browser::new();
    let callback = login_until_callback(&h, &mut attacker, "/bff/login", &[], "bob").await;
    let mut victim = Browser::new();
    let own = victim.get(&h.gw("/bff/login"), &[]).await;
    victim.absorb(&own);
    let reply = victim.get(&callback, &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.set_cookies().iter().all(|c| !c.starts_with("__Host-gatehouse=")), "no session cookie");
    assert_eq!(h.session_count().await, 0, "no session created");
    assert!(victim.cookie_names().iter().any(|n| n.starts_with(TX_PREFIX)), "the victim's own login is untouched");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf09_a_cross_site_login_link_starts_a_flow_but_keeps_the_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let before = h.only_session().await.id.clone();
    let reply = b
        .get(&h.gw("/bff/login?returnUrl=%2Fx"), &[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")])
        .await;
    assert_eq!(reply.status, 302);
    assert!(reply.header("location").unwrap().starts_with(&format!("{}/authorize?", h.issuer)));
    let set = reply.set_cookies();
    assert!(set.iter().all(|c| c.starts_with(TX_PREFIX)), "only a transaction cookie: {set:?}");
    b.absorb(&reply);
    assert_eq!(h.only_session().await.id, before, "the session is not replaced without the user finishing a login");
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf10_logout_without_the_sessions_sid_keeps_the_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let good = h.logout_url(&b).await;
    let sid = good.split("sid=").nth(1).unwrap().to_owned();
    for path in [
        "/bff/logout".to_owned(),
        "/bff/logout?sid=".to_owned(),
        "/bff/logout?sid=guess".to_owned(),
        format!("/bff/logout?sid={sid}x"),
        format!("/bff/logout?sid={sid}&sid={sid}"),
    ] {
        let reply = b.get(&h.gw(&path), &[("sec-fetch-site", "cross-site")]).await;
        assert_eq!(reply.status, 400, "{path}");
        assert!(reply.set_cookies().is_empty(), "{path}: no cookie touched");
        assert!(reply.header("location").is_none());
    }
    let post = send(&b, &h, "POST", &good, &[], "").await;
    assert_eq!(post.status, 405, "logout is a GET with the sid");
    assert_eq!(h.session_count().await, 1);
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_csrf11_the_backchannel_endpoint_needs_a_valid_logout_token_not_a_csrf_header() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    for body in ["", "logout_token=", "logout_token=garbage", "logout_token=eyJhbGciOiJub25lIn0.e30."] {
        let reply =
            send(&b, &h, "POST", "/bff/backchannel", &[("content-type", "application/x-www-form-urlencoded")], body)
                .await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["error"], "invalid_request");
    }
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "no session affected");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// F3. Session lifecycle

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess01_an_attacker_chosen_or_planted_session_cookie_is_never_adopted() {
    let h = Harness::start(Default::default()).await;
    // An attacker-chosen raw id.
    let chosen = Session::new_id();
    let mut victim = browser_with_cookie(&chosen);
    let issued = session_cookie_set_by(&h.login_reply(&mut victim, "alice", "/").await);
    assert_ne!(issued, chosen);
    assert!(h.sessions().await.iter().all(|s| s.id != chosen), "the chosen id never names a session");

    // The attacker's own valid cookie, planted before the victim logs in.
    let mut attacker = Browser::new();
    h.login(&mut attacker, "bob", "/").await;
    let planted = attacker.cookie(SESSION_COOKIE).unwrap();
    let mut victim = browser_with_cookie(&planted);
    let issued = session_cookie_set_by(&h.login_reply(&mut victim, "alice", "/").await);
    assert_ne!(issued, planted, "a new session cookie after login");
    assert_eq!(user_sub(&h, &browser_with_cookie(&issued)).await.unwrap(), h.sub_of("alice").await);
    assert_eq!(user_sub(&h, &browser_with_cookie(&planted)).await, None, "the planted session was not upgraded");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess03_a_replayed_callback_is_refused_and_creates_no_second_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    let callback = login_until_callback(&h, &mut b, "/bff/login", &[], "alice").await;
    let tx_name = b.cookie_names().into_iter().find(|n| n.starts_with(TX_PREFIX)).unwrap();
    let tx_value = b.cookie(&tx_name).unwrap();
    let first = b.get(&callback, &[]).await;
    assert_eq!(first.status, 302);
    b.absorb(&first);
    let mut replay = Browser::new();
    replay.set_cookie(&tx_name, &tx_value);
    let second = replay.get(&callback, &[]).await;
    assert_eq!(second.status, 400, "{}", second.body);
    assert!(second.body.contains("already completed"), "refused as a used state, before the token service");
    assert!(second.set_cookies().iter().all(|c| !c.starts_with("__Host-gatehouse=")));
    assert_eq!(h.session_count().await, 1, "no second session");
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "the first login is unharmed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess04_a_login_transaction_older_than_its_lifetime_is_refused() {
    let h = Harness::start(Default::default()).await;
    let now = gatehouse_bff::now();
    let iss = enc(&h.issuer);
    for (age, expect_expired) in [(15 * 60, true), (601, true), (60, false)] {
        let tx = LoginTransaction::new("/".into(), false, now - age);
        let mut b = Browser::new();
        b.set_cookie(&LoginTransaction::cookie_name(&tx.state), &tx.seal(&h.gateway.ring()));
        let reply = b.get(&h.gw(&format!("/bff/callback?code=bogus&state={}&iss={iss}", enc(&tx.state))), &[]).await;
        assert_eq!(reply.status, 400, "age {age}");
        assert_eq!(reply.body.contains("unknown or has expired"), expect_expired, "age {age}: {}", reply.body);
    }
    assert_eq!(h.session_count().await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess05_an_idle_session_ends_and_its_cookie_is_cleared() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let session = h.only_session().await;
    let mut idle = (*session).clone();
    idle.last_seen = gatehouse_bff::now() - 3600 - 60;
    h.gateway.sessions.put(Arc::new(idle)).await.unwrap();
    let reply = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_anonymous_and_cleared(&reply, "idle session");
    assert_eq!(h.session_count().await, 0, "removed from the store");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess06_crypt_17_the_absolute_lifetime_is_enforced_by_the_server_and_refresh_does_not_extend_it() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let created = h.only_session().await.created_at;
    h.expire_access_token_soon().await;
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    assert_eq!(h.gateway.refresher.refreshes.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(h.only_session().await.created_at, created, "a refresh does not extend the absolute lifetime");

    // Busy (last_seen now) but past the absolute limit: the server's own created_at decides.
    let mut old = (*h.only_session().await).clone();
    old.created_at = gatehouse_bff::now() - 86400 - 1;
    old.last_seen = gatehouse_bff::now();
    h.gateway.sessions.put(Arc::new(old)).await.unwrap();
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_anonymous_and_cleared(&reply, "past the absolute lifetime");
    assert_eq!(user_sub(&h, &b).await, None);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess07_a_refused_refresh_ends_the_session_and_clears_the_cookie() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let refresh_token = h.only_session().await.tokens.refresh_token.clone().unwrap();
    h.revoke_at_token_service(&refresh_token).await;
    h.expire_access_token_soon().await;
    let before = h.echo_count();
    let reply = b.get(&h.gw("/echo/x"), &[("x-csrf", "1")]).await;
    assert_anonymous_and_cleared(&reply, "refresh refused");
    assert_eq!(h.echo_count(), before, "the stale access token was not forwarded");
    assert_eq!(h.session_count().await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess08_sess09_logging_in_again_as_another_user_replaces_the_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let alice_cookie = b.cookie(SESSION_COOKIE).unwrap();
    let alice_session = h.only_session().await;
    let callback = login_until_callback(&h, &mut b, "/bff/login?prompt=login", &[], "bob").await;
    let reply = b.get(&callback, &[]).await;
    assert_eq!(reply.status, 302, "{}", reply.body);
    b.absorb(&reply);
    let bob_cookie = b.cookie(SESSION_COOKIE).unwrap();
    assert_ne!(bob_cookie, alice_cookie, "SESS08: a new session token");
    let session = h.only_session().await;
    assert_ne!(session.id, alice_session.id);
    assert_eq!(session.sub, h.sub_of("bob").await, "SESS09: the session is bob's");
    assert_eq!(user_sub(&h, &b).await.unwrap(), h.sub_of("bob").await);
    let old = browser_with_cookie(&alice_cookie).get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_anonymous_and_cleared(&old, "alice's old cookie");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess10_a_deleted_account_ends_the_session_at_the_next_refresh() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    h.remove_idp_user("alice").await;
    h.expire_access_token_soon().await;
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_anonymous_and_cleared(&reply, "deleted account");
    assert_eq!(h.session_count().await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_sess14_sess15_anonymous_or_expired_calls_get_401_json_never_a_redirect_or_a_session() {
    let h = Harness::start(Default::default()).await;
    let b = Browser::new();
    for path in ["/bff/user", "/api/whoami", "/echo/x"] {
        let reply = b.get(&h.gw(path), &[("x-csrf", "1")]).await;
        assert_eq!(reply.status, 401, "{path}");
        assert!(reply.header("content-type").unwrap().starts_with("application/json"));
        assert!(reply.header("location").is_none(), "{path}: never a redirect to the token service");
        assert!(reply.set_cookies().is_empty(), "{path}: no Set-Cookie at all for a browser without a cookie");
    }
    // SESS15: an expired session on an API route.
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let mut old = (*h.only_session().await).clone();
    old.created_at -= 86400;
    h.gateway.sessions.put(Arc::new(old)).await.unwrap();
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1"), ("accept", "application/json")]).await;
    assert_anonymous_and_cleared(&reply, "expired session");
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// F4. Logout and back-channel logout

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_lo01_lo02_logout_ends_the_session_revokes_and_goes_to_end_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let session = h.only_session().await;
    let refresh_token = session.tokens.refresh_token.clone().unwrap();
    let user = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(user.header("cache-control"), Some("no-store"), "LO02: /bff/user is never cached");
    let api = b.get(&h.gw("/echo/x"), &[("x-csrf", "1")]).await;
    assert_eq!(api.header("cache-control"), Some("no-store"), "LO02: personal API answers are never cached");

    let reply = b.get(&h.gw(&h.logout_url(&b).await), &[]).await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let location = url::Url::parse(reply.header("location").unwrap()).unwrap();
    assert_eq!(location.as_str().split('?').next().unwrap(), format!("{}/end_session", h.issuer));
    let query: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["id_token_hint"], session.id_token);
    assert_eq!(query["client_id"], "bff");
    assert_eq!(query["post_logout_redirect_uri"], format!("{}/", h.gw_origin));
    let cleared = reply.set_cookies();
    assert_eq!(cleared.len(), 1);
    assert_deletion(&cleared[0], SESSION_COOKIE);
    b.absorb(&reply);
    assert_eq!(h.session_count().await, 0, "the server-side session is gone");
    assert_eq!(h.refresh_status(&refresh_token).await, 400, "the refresh token was revoked (RFC 7009)");
    assert_eq!(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401, "LO02");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_lo03_crypt_16_the_pre_logout_cookie_is_dead_after_logout() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let copy = b.cookie(SESSION_COOKIE).unwrap();
    let reply = b.get(&h.gw(&h.logout_url(&b).await), &[]).await;
    assert_eq!(reply.status, 302);
    let replay = browser_with_cookie(&copy);
    assert_anonymous_and_cleared(&replay.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await, "replay /bff/user");
    let before = h.echo_count();
    assert_anonymous_and_cleared(&replay.get(&h.gw("/echo/x"), &[("x-csrf", "1")]).await, "replay /echo");
    assert_eq!(h.echo_count(), before);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_lo04_a_logout_at_the_token_service_ends_the_gateway_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let copy = b.cookie(SESSION_COOKIE).unwrap();
    let reports = h.revoke_idp_sessions("alice").await;
    assert!(reports.iter().all(|r| r.contains("Delivered")), "{reports:?}");
    let replay = browser_with_cookie(&copy);
    assert_anonymous_and_cleared(&replay.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await, "after IdP logout");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_lo05_logout_never_redirects_to_a_return_url() {
    let h = Harness::start(Default::default()).await;
    let payloads =
        ["//evil.example", "https://evil.example", "/\\evil.example", "javascript:alert(1)", "/%2F%2Fevil.example"];
    // Without a session: home, whatever the parameters.
    for payload in payloads {
        for name in ["returnUrl", "post_logout_redirect_uri", "redirect_uri"] {
            let reply = Browser::new().get(&h.gw(&format!("/bff/logout?{name}={}", enc(payload))), &[]).await;
            assert_eq!(reply.status, 302);
            assert_eq!(reply.header("location"), Some("/"), "{name}={payload}");
        }
    }
    // With a session: the registered post-logout URI only.
    for payload in &payloads[..2] {
        let mut b = Browser::new();
        h.login(&mut b, "alice", "/").await;
        let url = format!("{}&returnUrl={}", h.logout_url(&b).await, enc(payload));
        let reply = b.get(&h.gw(&url), &[]).await;
        assert_eq!(reply.status, 302);
        let location = url::Url::parse(reply.header("location").unwrap()).unwrap();
        let target = location.query_pairs().find(|(k, _)| k == "post_logout_redirect_uri").unwrap().1.into_owned();
        assert_eq!(target, format!("{}/", h.gw_origin), "{payload}");
        assert!(!location.as_str().contains("evil"), "{location}");
    }
    h.stop().await;
}

/// Logout-token claims for `sub`/`sid` as the token service would send them, for editing.
fn logout_claims(h: &Harness, sub: &str, sid: Option<&str>) -> serde_json::Value {
    let now = gatehouse_bff::now();
    let mut claims = serde_json::json!({
        "iss": h.issuer, "aud": "bff", "iat": now, "exp": now + 120,
        "jti": Session::new_id(), "sub": sub,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    if let Some(sid) = sid {
        claims["sid"] = sid.into();
    }
    claims
}

async fn post_logout_token(h: &Harness, token: &str) -> Reply {
    Browser::new().post_form(&h.gw("/bff/backchannel"), &format!("logout_token={}", enc(token))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_bcl01_bcl04_a_valid_logout_token_ends_that_session_and_a_replay_is_refused() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let mut other = Browser::new();
    h.login(&mut other, "bob", "/").await;
    let alice_sub = h.sub_of("alice").await;
    let session = h.sessions().await.into_iter().find(|s| s.sub == alice_sub).unwrap();
    let claims = logout_claims(&h, &session.sub, session.idp_sid.as_deref());
    let token = h.sign_with_token_service_key("logout+jwt", claims).await;
    let reply = post_logout_token(&h, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_anonymous_and_cleared(&b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await, "BCL01");
    assert_eq!(other.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "other sessions live on");
    // BCL04: the same token again is a replay: 400, nothing else happens.
    let again = post_logout_token(&h, &token).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(other.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_bcl02_a_sub_only_logout_token_ends_every_session_of_that_user() {
    let h = Harness::start(Default::default()).await;
    let mut first = Browser::new();
    h.login(&mut first, "alice", "/").await;
    let mut second = Browser::new();
    h.login(&mut second, "alice", "/").await;
    let mut bob = Browser::new();
    h.login(&mut bob, "bob", "/").await;
    assert_eq!(h.session_count().await, 3);
    let token = h.sign_with_token_service_key("logout+jwt", logout_claims(&h, &h.sub_of("alice").await, None)).await;
    assert_eq!(post_logout_token(&h, &token).await.status, 200);
    assert_eq!(first.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 401);
    assert_eq!(second.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 401);
    assert_eq!(bob.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_bcl03_invalid_logout_tokens_are_400_and_end_nothing() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let session = h.only_session().await;
    let good = || logout_claims(&h, &session.sub, session.idp_sid.as_deref());
    let now = gatehouse_bff::now();
    let mut cases: Vec<(String, String)> = Vec::new();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut claims = good();
        f(&mut claims);
        claims
    };
    let signed = [
        ("wrong iss", edit(&|c| c["iss"] = EVIL.into())),
        ("wrong aud", edit(&|c| c["aud"] = "other-client".into())),
        ("missing events", edit(&|c| c.as_object_mut().unwrap().remove("events").map(drop).unwrap_or(()))),
        ("wrong events", edit(&|c| c["events"] = serde_json::json!({"http://example.com/other": {}}))),
        ("nonce present", edit(&|c| c["nonce"] = "n".into())),
        (
            "neither sub nor sid",
            edit(&|c| {
                let object = c.as_object_mut().unwrap();
                object.remove("sub");
                object.remove("sid");
            }),
        ),
        (
            "expired",
            edit(&|c| {
                c["iat"] = (now - 3600).into();
                c["exp"] = (now - 3000).into();
            }),
        ),
        (
            "iat far future",
            edit(&|c| {
                c["iat"] = (now + 3600).into();
                c["exp"] = (now + 3720).into();
            }),
        ),
    ];
    for (name, claims) in signed {
        cases.push((name.into(), h.sign_with_token_service_key("logout+jwt", claims).await));
    }
    let id_token = session.id_token.clone();
    cases.push(("ID token as logout token".into(), id_token));
    cases.push(("typ JWT".into(), h.sign_with_token_service_key("JWT", good()).await));
    let valid = h.sign_with_token_service_key("logout+jwt", good()).await;
    let parts: Vec<&str> = valid.split('.').collect();
    let b64 = |v: serde_json::Value| gatehouse_proto::b64::encode(serde_json::to_vec(&v).unwrap());
    cases.push((
        "alg none".into(),
        format!("{}.{}.", b64(serde_json::json!({"alg":"none","typ":"logout+jwt"})), parts[1]),
    ));
    cases.push((
        "alg HS256".into(),
        format!("{}.{}.{}", b64(serde_json::json!({"alg":"HS256","typ":"logout+jwt"})), parts[1], parts[2]),
    ));
    let mut signature = gatehouse_proto::b64::decode(parts[2]).unwrap();
    signature[10] ^= 1;
    cases.push((
        "bad signature".into(),
        format!("{}.{}.{}", parts[0], parts[1], gatehouse_proto::b64::encode(&signature)),
    ));
    for (name, token) in cases {
        let reply = post_logout_token(&h, &token).await;
        assert_eq!(reply.status, 400, "{name}: {}", reply.body);
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"], "invalid_request", "{name}");
    }
    assert_eq!(h.session_count().await, 1, "no session affected");
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    // And the untouched valid token still works (nothing above consumed it).
    assert_eq!(post_logout_token(&h, &valid).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_bcl05_transport_get_json_missing_repeated_and_huge_bodies_are_refused() {
    let h = Harness::start(Default::default()).await;
    let b = Browser::new();
    assert_eq!(b.get(&h.gw("/bff/backchannel"), &[]).await.status, 405);
    let json =
        send(&b, &h, "POST", "/bff/backchannel", &[("content-type", "application/json")], "{\"logout_token\":\"x\"}")
            .await;
    assert_eq!(json.status, 400);
    assert_eq!(b.post_form(&h.gw("/bff/backchannel"), "other=1").await.status, 400);
    assert_eq!(b.post_form(&h.gw("/bff/backchannel"), "logout_token=a&logout_token=b").await.status, 400);
    let huge = format!("logout_token={}", "A".repeat(1024 * 1024));
    let reply = b.post_form(&h.gw("/bff/backchannel"), &huge).await;
    assert_eq!(reply.status, 413);
    // The gateway is still fine.
    assert_eq!(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_bcl06_a_logout_token_ends_only_sessions_matching_both_sid_and_sub() {
    let h = Harness::start(Default::default()).await;
    let mut alice = Browser::new();
    h.login(&mut alice, "alice", "/").await;
    let alice_session = h.only_session().await;
    let mut bob = Browser::new();
    h.login(&mut bob, "bob", "/").await;
    let bob_sub = h.sub_of("bob").await;
    // alice's sid with bob's sub: matches no session.
    let token = h
        .sign_with_token_service_key("logout+jwt", logout_claims(&h, &bob_sub, alice_session.idp_sid.as_deref()))
        .await;
    assert_eq!(post_logout_token(&h, &token).await.status, 200);
    assert_eq!(alice.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "alice's session survives");
    assert_eq!(bob.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "bob's too (other sid)");
    assert_eq!(h.session_count().await, 2);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// F5. Return URLs

include!("support/z2_payloads.rs");

/// BFF-RU03 payloads beyond §Z.2.
const RU03_EXTRAS: &[&str] = &["/.//evil.com", "/%2F%2Fevil.com"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_ru01_ru03_login_refuses_every_z2_payload_raw_and_percent_encoded() {
    let h = Harness::start(Default::default()).await;
    let b = Browser::new();
    for payload in Z2_PAYLOADS.iter().chain(RU03_EXTRAS) {
        let encoded_once = enc(payload);
        for value in [encoded_once.clone(), enc(&encoded_once)] {
            let reply = b.get(&h.gw(&format!("/bff/login?returnUrl={value}")), &[]).await;
            assert_eq!(reply.status, 400, "returnUrl {value:?} must be refused");
            assert!(reply.header("location").is_none(), "{value}");
            assert!(reply.set_cookies().is_empty(), "{value}: no login transaction");
        }
    }
    // RU03's `/%E3%80%82evil.com` is a path on the gateway's own origin (U+3002 becomes '.' only inside a host
    // name, UTS #46, and after a single '/' no host can follow): accepted as the local path it is.
    let reply = b.get(&h.gw(&format!("/bff/login?returnUrl={}", enc("/%E3%80%82evil.com"))), &[]).await;
    assert_eq!(reply.status, 302);
    // A local path survives the whole round trip and lands relative to the gateway.
    let mut b = Browser::new();
    assert_eq!(h.login(&mut b, "alice", "/orders/7?tab=items#top").await, "/orders/7?tab=items#top");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_ru02_a_tampered_or_forged_transaction_cookie_is_refused() {
    let h = Harness::start(Options { use_par: false, ..Default::default() }).await;
    let mut b = Browser::new();
    let callback = login_until_callback(&h, &mut b, "/bff/login?returnUrl=%2Fapp", &[], "alice").await;
    let tx_name = b.cookie_names().into_iter().find(|n| n.starts_with(TX_PREFIX)).unwrap();
    let genuine = b.cookie(&tx_name).unwrap();
    let state = url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    // An attacker-sealed transaction for the same state, returning to evil.example.
    let mut forged = LoginTransaction::new("//evil.example".into(), false, gatehouse_bff::now());
    forged.state = state.clone();
    let variants = [
        flip(&genuine, 20),
        flip(&genuine, genuine.len()),
        forged.seal(&other_ring("k1")),
        // A genuine transaction of another login under this login's cookie name.
        LoginTransaction::new("/x".into(), false, gatehouse_bff::now()).seal(&h.gateway.ring()),
    ];
    for value in variants {
        let mut attacker = Browser::new();
        attacker.set_cookie(&tx_name, &value);
        let reply = attacker.get(&callback, &[]).await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert!(reply.header("location").is_none());
    }
    assert_eq!(h.session_count().await, 0);
    let reply = b.get(&callback, &[]).await;
    assert_eq!(reply.header("location"), Some("/app"), "the genuine transaction still works");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_ru04_header_based_return_targets_are_ignored() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    let headers = [
        ("x-auth-request-redirect", "https://evil.example/"),
        ("referer", "https://evil.example/page"),
        ("x-forwarded-uri", "//evil.example"),
        ("x-original-url", "//evil.example"),
    ];
    let callback = login_until_callback(&h, &mut b, "/bff/login", &headers, "alice").await;
    let reply = b.get(&callback, &[("referer", "https://evil.example/")]).await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("location"), Some("/"), "only returnUrl (validated) decides; the default is /");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// F6. Proxy restrictions and token confinement

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px01_path_traversal_never_leaves_the_route_map() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let cookie = cookie_header(&b);
    let host = h.gw_authority();
    for target in [
        "/echo/../admin/x",
        "/echo/%2e%2e/admin/x",
        "/echo/%252e%252e/admin/x",
        "/echo//evil.example/",
        "/echo/%2f%2fevil.example/",
        "/echo/..%5c..%5cadmin",
        "/api/../bff/user",
        "/echo/./x",
    ] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        );
        let response = raw_async(&h, request).await;
        assert_eq!(status_of(&response), 400, "{target}: {response}");
    }
    assert_eq!(h.echo_count(), 0, "nothing forwarded");

    // `@` in a path stays a path on the route's own upstream.
    let request = format!(
        "GET /echo/@evil.example HTTP/1.1\r\nHost: {host}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(status_of(&raw_async(&h, request).await), 200);
    let seen = h.last_echo();
    assert_eq!(seen["path"], "/@evil.example");
    assert!(seen["host"].as_str().unwrap().starts_with("127.0.0.1:"), "{seen}");

    // Absolute-form request targets: routed by path only, to the route map's upstream.
    let request = format!(
        "GET http://evil.example/echo/abs HTTP/1.1\r\nHost: evil.example\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(status_of(&raw_async(&h, request).await), 200);
    let seen = h.last_echo();
    assert_eq!(seen["path"], "/abs");
    assert!(seen["host"].as_str().unwrap().starts_with("127.0.0.1:"), "{seen}");
    let before = h.echo_count();
    let request = "GET https://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_owned();
    let response = raw_async(&h, request).await;
    assert_eq!(status_of(&response), 200, "the frontend's own index");
    assert!(response.contains("<html"), "{response}");
    assert_eq!(h.echo_count(), before);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px02_host_and_forwarding_headers_steer_neither_routing_nor_htu() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let cookie = cookie_header(&b);
    let injected = "Host: evil.example\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /admin\r\nX-Original-URL: /admin/x\r\nX-Rewrite-URL: /admin/x\r\nForwarded: host=evil.example;proto=https\r\n";
    // The example API verifies the DPoP proof's htu against its own URL: 200 means htu was not steered.
    let request =
        format!("GET /api/whoami HTTP/1.1\r\n{injected}X-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    let response = raw_async(&h, request).await;
    assert_eq!(status_of(&response), 200, "{response}");
    let request =
        format!("GET /echo/x HTTP/1.1\r\n{injected}X-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&raw_async(&h, request).await), 200);
    let seen = h.last_echo();
    assert_eq!(seen["path"], "/x");
    assert!(seen["host"].as_str().unwrap().starts_with("127.0.0.1:"), "{seen}");
    assert_eq!(seen["x-forwarded-host"], h.gw_authority(), "the public origin's host, not the request's");
    assert_eq!(seen["x-forwarded-proto"], "http", "the listener's scheme");
    for stripped in ["x-original-url", "x-rewrite-url", "x-forwarded-prefix", "forwarded"] {
        assert!(seen.get(stripped).is_none(), "{stripped}: {seen}");
    }
    let proof = seen["dpop"].as_str().unwrap();
    let htu = support::jwt_payload(proof)["htu"].as_str().unwrap().to_owned();
    assert!(htu.starts_with("http://127.0.0.1:") && htu.ends_with("/x"), "{htu}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px03_px04_px05_only_the_gateways_credentials_reach_the_upstream() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let session = h.only_session().await;
    let key = gatehouse_proto::dpop_key::DpopKey::from_pkcs8(&session.dpop_key).unwrap();
    for connection in ["close, Authorization", "DPoP", "authorization, dpop, cookie"] {
        let reply = send(
            &b,
            &h,
            "GET",
            "/echo/x",
            &[
                ("x-csrf", "1"),
                ("authorization", "Bearer stolen"),
                ("dpop", "forged"),
                ("proxy-authorization", "Basic YTpi"),
                ("x-forwarded-user", "admin"),
                ("x-user-id", "1"),
                ("x-remote-user", "admin"),
                ("connection", connection),
            ],
            "",
        )
        .await;
        assert_eq!(reply.status, 200, "{connection}: {}", reply.body);
        let seen = h.last_echo();
        assert!(seen.get("cookie").is_none(), "PX03: {seen}");
        for stripped in ["proxy-authorization", "x-forwarded-user", "x-user-id", "x-remote-user"] {
            assert!(seen.get(stripped).is_none(), "PX04 {stripped}: {seen}");
        }
        assert_eq!(seen["authorization"], format!("DPoP {}", session.tokens.access_token), "PX05 {connection}");
        let proof = seen["dpop"].as_str().expect("PX05: the proof survives hop-by-hop processing");
        let header: serde_json::Value =
            serde_json::from_slice(&gatehouse_proto::b64::decode(proof.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["jwk"], serde_json::to_value(key.jwk()).unwrap(), "signed by the session's key");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px06_trace_track_and_connect_are_405_and_never_forwarded() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let cookie = cookie_header(&b);
    let host = h.gw_authority();
    // An authority-form CONNECT target is refused by pingora's parser (400) before the gateway sees it.
    for (method, target, status) in [
        ("TRACE", "/echo/x", 405),
        ("TRACE", "/", 405),
        ("TRACE", "/bff/user", 405),
        ("TRACK", "/echo/x", 405),
        ("CONNECT", "evil.example:443", 400),
        ("CONNECT", "/echo/x", 405),
    ] {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        );
        let response = raw_async(&h, request).await;
        assert_eq!(status_of(&response), status, "{method} {target}: {response}");
        assert!(!response.contains(&cookie), "TRACE must not reflect the request");
    }
    assert_eq!(h.echo_count(), 0);
    h.stop().await;
}

/// BFF-PX06, the other half: a route limited to `GET` (a read-only API) answers any other method 405 with
/// `Allow`, without forwarding it; `GET` still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px06_a_read_only_route_refuses_other_methods_with_405_and_allow() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let client = reqwest::Client::new();
    let cookie = cookie_header(&b);
    for method in ["DELETE", "POST", "PUT", "PATCH"] {
        let reply = client
            .request(http::Method::from_bytes(method.as_bytes()).unwrap(), h.gw("/readonly/items/1"))
            .header("x-csrf", "1")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 405, "{method}");
        assert_eq!(reply.headers()["allow"], "GET", "{method}");
    }
    assert_eq!(h.echo_count(), 0, "nothing forwarded");
    assert_eq!(b.get(&h.gw("/readonly/items/1"), &[("x-csrf", "1")]).await.status, 200);
    assert_eq!(h.echo_count(), 1);
    h.stop().await;
}

/// A chunked body (no `Content-Length`) is held to the route's body limit as it streams: 413, never forwarded
/// whole; one under the limit goes through. (The `Content-Length` case: `gateway::request_bodies_over_the_route_limit_are_refused`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px09_chunked_bodies_are_held_to_the_route_limit() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let cookie = cookie_header(&b);
    let host = h.gw_authority();
    let request = |body: &str| {
        format!(
            "POST /small/x HTTP/1.1\r\nHost: {host}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    let over = raw_async(&h, request("0123456789abcdefghij")).await;
    assert_eq!(status_of(&over), 413, "{over}");
    let under = raw_async(&h, request("0123")).await;
    assert_eq!(status_of(&under), 200, "{under}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px07_an_upstream_cannot_set_or_delete_the_gateways_cookies() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let reply = b.get(&h.gw("/echo/set-cookie"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.set_cookies(), ["app-pref=dark; Path=/; Secure; SameSite=Lax"], "only the app's own cookie");
    b.absorb(&reply);
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "the session is intact");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px08_an_upstream_redirect_reaches_the_browser_unfollowed_and_without_tokens() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let session = h.only_session().await;
    let before = h.echo_count();
    let reply = b.get(&h.gw("/echo/redirect"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("location"), Some("https://evil.example/steal"));
    assert_eq!(h.echo_count(), before + 1, "one upstream call, not followed");
    let everything = format!("{:?}", reply.headers);
    assert!(!everything.contains(&session.tokens.access_token), "no token in the redirect's headers");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px09_ambiguous_framing_is_refused_or_closed_and_nothing_is_smuggled() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let cookie = cookie_header(&b);
    let host = h.gw_authority();
    let smuggled = format!("GET /echo/smuggled HTTP/1.1\r\nHost: {host}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\n\r\n");
    let head = format!("POST /echo/x HTTP/1.1\r\nHost: {host}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\n");
    // CL.TE and TE.CL: pingora's parser lets Transfer-Encoding win, drops Content-Length and closes the connection
    // after the answer (RFC 9112 §6.1, §6.3 (3)), so the upstream gets one unambiguous chunked request and the
    // bytes after it are never read as a request.
    for request in [
        format!("{head}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("{head}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n{smuggled}"),
    ] {
        let response = raw_async(&h, request.clone()).await;
        assert_eq!(status_of(&response), 200, "{request:?}\n→ {response}");
        assert_eq!(response.matches("HTTP/1.1").count(), 1, "one answer: {response}");
        assert!(response.to_ascii_lowercase().contains("connection: close"), "{response}");
        let seen = h.last_echo();
        assert_eq!(seen["path"], "/x");
        assert!(seen.get("content-length").is_none(), "one framing upstream: {seen}");
        assert_eq!(seen["transfer-encoding"], "chunked");
    }
    let forwarded = h.echo_count();
    assert_eq!(forwarded, 2);
    let cases = [
        format!("{head}Transfer-Encoding: chunked , identity\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("{head}Transfer-Encoding: identity\r\n\r\n{smuggled}"),
        format!("{head}Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello{smuggled}"),
        format!("{head}Content-Length: 5, 5\r\n\r\nhello{smuggled}"),
    ];
    for request in cases {
        let response = raw_async(&h, request.clone()).await;
        assert_eq!(status_of(&response), 400, "{request:?}\n→ {response}");
        assert_eq!(response.matches("HTTP/1.1").count(), 1, "one answer, the connection is closed: {response}");
    }
    assert_eq!(h.echo_count(), forwarded, "neither these requests nor a smuggled one reached the upstream");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px10_no_token_or_key_ever_reaches_the_browser() {
    let h = Harness::start(Options { use_par: false, ..Default::default() }).await;
    let mut b = Browser::new();
    let mut seen: Vec<Reply> = Vec::new();
    let callback = login_until_callback(&h, &mut b, "/bff/login", &[], "alice").await;
    let reply = b.get(&callback, &[]).await;
    b.absorb(&reply);
    seen.push(reply);
    seen.push(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await);
    seen.push(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await);
    seen.push(b.get(&h.gw("/admin/x"), &[("x-csrf", "1")]).await);
    seen.push(b.get(&h.gw("/bff/callback?state=x&code=y"), &[]).await);
    seen.push(b.get(&h.gw("/bff/logout?sid=wrong"), &[]).await);
    h.expire_access_token_soon().await;
    seen.push(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await);
    let session = h.only_session().await;
    let logout = b.get(&h.gw(&h.logout_url(&b).await), &[]).await;

    let pkcs8 = gatehouse_proto::b64::encode(&session.dpop_key);
    let secrets = [
        session.tokens.access_token.as_str(),
        session.tokens.refresh_token.as_deref().unwrap(),
        session.id_token.as_str(),
        pkcs8.as_str(),
        support::CLIENT_SECRET,
        "refresh_token",
        "access_token",
        "eyJ",
    ];
    for reply in &seen {
        let visible = format!("{:?} {}", reply.headers, reply.body);
        for secret in secrets {
            assert!(!visible.contains(secret), "{} {} shows {secret:.12}…", reply.status, reply.url);
        }
    }
    // Logout: RP-initiated logout sends the ID token as id_token_hint (OpenID RP-Initiated Logout §2, which
    // BFF-LO01 requires); nothing else.
    let location = logout.header("location").unwrap();
    let without_hint = location.replace(&session.id_token, "");
    for secret in secrets {
        assert!(!without_hint.contains(secret), "logout shows {secret:.12}…");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_px12_an_upstream_invalid_token_answer_is_passed_back_once_without_a_loop() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let before = h.echo_count();
    let reply = b.get(&h.gw("/echo/invalid-token"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), Some("DPoP error=\"invalid_token\", algs=\"ES256\""));
    assert_eq!(h.echo_count(), before + 1, "exactly one upstream call");
    // The session itself is untouched.
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// F7. Security headers

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_hd01_hd03_hd04_hd06_hd07_every_response_carries_the_baseline_headers() {
    let h = Harness::start(Options { use_par: false, ..Default::default() }).await;
    let mut b = Browser::new();
    let mut replies: Vec<(&str, Reply)> = Vec::new();
    replies.push(("anonymous user", b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await));
    replies.push(("login", b.get(&h.gw("/bff/login"), &[]).await));
    let callback = login_until_callback(&h, &mut b, "/bff/login", &[], "alice").await;
    let reply = b.get(&callback, &[]).await;
    b.absorb(&reply);
    replies.push(("callback", reply));
    replies.push(("user", b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await));
    replies.push(("api", b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await));
    replies.push(("echo", b.get(&h.gw("/echo/x"), &[("x-csrf", "1")]).await));
    replies.push(("refusal", b.get(&h.gw("/echo/x"), &[]).await));
    replies.push(("error page", b.get(&h.gw("/bff/callback?state=x"), &[]).await));
    replies.push(("static", b.get(&h.gw("/"), &[]).await));
    replies.push(("not found", b.get(&h.gw("/bff/nothing"), &[]).await));
    replies.push(("bad path", b.get(&h.gw("/echo/%2e%2e/x"), &[("x-csrf", "1")]).await));
    let logout = b.get(&h.gw(&h.logout_url(&b).await), &[]).await;
    replies.push(("logout", logout));
    for (what, reply) in &replies {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "HD03 {what}");
        assert_eq!(reply.header("cross-origin-resource-policy"), Some("same-origin"), "HD07 {what}");
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"), "HD04 {what}");
        assert!(reply.header("strict-transport-security").is_none(), "HD01: never over plain HTTP ({what})");
    }
    for (what, reply) in &replies {
        if matches!(*what, "user" | "anonymous user" | "callback" | "logout" | "api" | "echo" | "login") {
            assert_eq!(reply.header("cache-control"), Some("no-store"), "HD06 {what}");
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bff_hd02_hd05_html_documents_carry_csp_and_coop() {
    let h = Harness::start(Default::default()).await;
    let b = Browser::new();
    let pages = [
        b.get(&h.gw("/"), &[]).await,
        b.get(&h.gw("/some/client/route"), &[]).await,
        b.get(&h.gw("/bff/callback?state=unknown"), &[]).await,
        b.get(&h.gw("/bff/login?returnUrl=%2F%2Fevil"), &[]).await,
    ];
    for page in &pages {
        assert!(page.header("content-type").unwrap().starts_with("text/html"), "{}", page.url);
        let csp = page.header("content-security-policy").unwrap();
        let directive = |name: &str| csp.split(';').map(str::trim).find(|d| d.starts_with(name)).map(str::to_owned);
        assert_eq!(directive("frame-ancestors").as_deref(), Some("frame-ancestors 'none'"), "{csp}");
        let objects = directive("object-src").or_else(|| directive("default-src")).unwrap();
        assert!(objects.ends_with("'none'"), "object-src 'none' (directly or via default-src): {csp}");
        let base = directive("base-uri").expect("base-uri");
        assert!(base == "base-uri 'none'" || base == "base-uri 'self'", "{csp}");
        assert_eq!(page.header("cross-origin-opener-policy"), Some("same-origin"), "HD05 {}", page.url);
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// H. Cookie tampering and cryptography

/// Every failure class must look the same: status, body and headers (except Date).
fn fingerprint(reply: &Reply) -> String {
    let mut headers: Vec<String> = reply
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("")))
        .collect();
    headers.sort();
    format!("{} {} {}", reply.status, headers.join("|"), reply.body)
}

async fn assert_all_anonymous(h: &Harness, variants: &[(String, String)]) {
    let baseline_api = browser_with_cookie("garbage").get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    let baseline_user = browser_with_cookie("garbage").get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    for (what, value) in variants {
        let b = browser_with_cookie(value);
        let api = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
        assert_anonymous_and_cleared(&api, what);
        assert_eq!(fingerprint(&api), fingerprint(&baseline_api), "{what}: no oracle between failure classes");
        let user = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
        assert_anonymous_and_cleared(&user, what);
        assert_eq!(fingerprint(&user), fingerprint(&baseline_user), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_01_02_03_04_flipped_truncated_or_extended_cookies_are_anonymous_and_cleared() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let good = b.cookie(SESSION_COOKIE).unwrap();
    let blob_len = gatehouse_proto::b64::decode(good.split_once('.').unwrap().1).unwrap().len();
    let mut variants: Vec<(String, String)> = Vec::new();
    for (name, index) in
        [("ciphertext first byte", 12), ("ciphertext middle", blob_len / 2), ("ciphertext last", blob_len - 17)]
    {
        variants.push((format!("CRYPT-01 {name}"), rebuild(&good, |blob| blob[index] ^= 0x01)));
    }
    variants.push(("CRYPT-02 nonce".into(), rebuild(&good, |blob| blob[0] ^= 0x80)));
    variants.push(("CRYPT-02 tag".into(), rebuild(&good, |blob| *blob.last_mut().unwrap() ^= 0x01)));
    for drop in [1, 4, 16] {
        variants.push((format!("CRYPT-03 drop {drop}"), rebuild(&good, |blob| blob.truncate(blob.len() - drop))));
    }
    variants.push(("CRYPT-03 nonce only".into(), rebuild(&good, |blob| blob.truncate(12))));
    variants.push(("CRYPT-03 empty".into(), String::new()));
    variants.push(("CRYPT-03 key id only".into(), "k1.".into()));
    variants.push(("CRYPT-03 padding only".into(), "k1.====".into()));
    variants.push(("CRYPT-04 append byte".into(), rebuild(&good, |blob| blob.push(0))));
    let second = h.gateway.ring().seal(SESSION_COOKIE, b"another-id");
    variants.push(("CRYPT-04 second ciphertext".into(), format!("{good}{}", second.split_once('.').unwrap().1)));
    variants.push(("CRYPT-04 appended value".into(), format!("{good}.{second}")));
    assert_all_anonymous(&h, &variants).await;
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200, "the genuine cookie still works");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_05_encoding_variants_never_open_as_another_value() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let good = b.cookie(SESSION_COOKIE).unwrap();
    let (id, body) = good.split_once('.').unwrap();
    let standard = body.replace('-', "+").replace('_', "/");
    let padded = format!("{body}{}", "=".repeat((4 - body.len() % 4) % 4));
    let mut variants = vec![
        ("quoted".to_owned(), format!("\"{good}\"")),
        ("padded".to_owned(), format!("{id}.{padded}=")),
        ("embedded %-encoding".to_owned(), format!("{id}%2E{body}")),
        ("embedded whitespace".to_owned(), format!("{id}.{}%20{}", &body[..10], &body[10..])),
        ("upper-case key id".to_owned(), format!("K1.{body}")),
    ];
    if standard != body {
        variants.push(("standard base64 alphabet".to_owned(), format!("{id}.{standard}")));
    }
    assert_all_anonymous(&h, &variants).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_06_07_09_13_downgraded_foreign_or_retired_keys_never_open_a_live_session() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let good = b.cookie(SESSION_COOKIE).unwrap();
    let id = h.only_session().await.id.clone();
    let body = good.split_once('.').unwrap().1;
    let variants = vec![
        ("CRYPT-06 no key id".to_owned(), body.to_owned()),
        ("CRYPT-06 empty key id".to_owned(), format!(".{body}")),
        ("CRYPT-06 key id none".to_owned(), format!("none.{body}")),
        ("CRYPT-06 older key id".to_owned(), format!("k0.{body}")),
        ("CRYPT-06 plaintext id".to_owned(), id.clone()),
        ("CRYPT-06 plaintext with key id".to_owned(), format!("k1.{id}")),
        // An attacker's key under the server's key id (key substitution / another instance).
        ("CRYPT-07/09 foreign key, same id".to_owned(), other_ring("k1").seal(SESSION_COOKIE, id.as_bytes())),
        ("CRYPT-07 foreign key id".to_owned(), other_ring("attacker").seal(SESSION_COOKIE, id.as_bytes())),
        // A key that has been removed from the ring (CRYPT-13 retirement; CRYPT-14 emergency rotation is the same
        // lever applied at once).
        ("CRYPT-13 retired key".to_owned(), other_ring("k0").seal(SESSION_COOKIE, id.as_bytes())),
        // And, for the no-oracle comparison, a genuine seal of an id that names no session.
        ("unknown session id".to_owned(), h.gateway.ring().seal(SESSION_COOKIE, Session::new_id().as_bytes())),
    ];
    assert_all_anonymous(&h, &variants).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_08_a_value_sealed_for_one_cookie_never_opens_as_another() {
    let h = Harness::start(Options { use_par: false, ..Default::default() }).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let session_value = b.cookie(SESSION_COOKIE).unwrap();
    let id = h.only_session().await.id.clone();
    let mut other = Browser::new();
    let start = other.get(&h.gw("/bff/login"), &[]).await;
    other.absorb(&start);
    let tx_name = other.cookie_names().into_iter().find(|n| n.starts_with(TX_PREFIX)).unwrap();
    let tx_value = other.cookie(&tx_name).unwrap();
    let state = other.last_tx_state(&h).await;
    // Transaction value as session cookie, and the session id sealed for a transaction name.
    let variants = vec![
        ("tx value under the session name".to_owned(), tx_value.clone()),
        ("session id sealed for a tx name".to_owned(), h.gateway.ring().seal(&tx_name, id.as_bytes())),
    ];
    assert_all_anonymous(&h, &variants).await;
    // Session value under the transaction name: the callback refuses it.
    let mut swapped = Browser::new();
    swapped.set_cookie(&tx_name, &session_value);
    let reply =
        swapped.get(&h.gw(&format!("/bff/callback?code=x&state={}&iss={}", enc(&state), enc(&h.issuer))), &[]).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("unknown or has expired"), "{}", reply.body);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_11_a_hundred_thousand_seals_never_repeat_a_nonce() {
    let ring = other_ring("k1");
    let mut nonces = std::collections::HashSet::new();
    for _ in 0..100_000 {
        let sealed = ring.seal(SESSION_COOKIE, b"0123456789abcdef0123456789abcdef0123456789a");
        let blob = gatehouse_proto::b64::decode(sealed.split_once('.').unwrap().1).unwrap();
        assert!(nonces.insert(blob[..12].to_vec()), "a nonce repeated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_12_a_cookie_sealed_with_the_previous_key_is_accepted_and_resealed() {
    let old = CookieKey { id: "k1".into(), key: support::rand_key() };
    let new = CookieKey { id: "k2".into(), key: support::rand_key() };
    let h = Harness::start(Options { cookie_keys: Some(vec![new, old.clone()]), ..Default::default() }).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    assert!(b.cookie(SESSION_COOKIE).unwrap().starts_with("k2."), "the newest key seals");
    let id = h.only_session().await.id.clone();
    let old_cookie = KeyRing::new(&[old]).unwrap().seal(SESSION_COOKIE, id.as_bytes());
    for path in ["/bff/user", "/echo/x"] {
        let reply = browser_with_cookie(&old_cookie).get(&h.gw(path), &[("x-csrf", "1")]).await;
        assert_eq!(reply.status, 200, "{path}: the previous key still opens");
        let set = reply.set_cookies().into_iter().find(|c| c.starts_with("__Host-gatehouse=")).expect("re-issued");
        let value = cookie::Cookie::parse(set.as_str()).unwrap().value().to_owned();
        assert!(value.starts_with("k2."), "{path}: re-sealed under the current key: {set}");
        assert_eq!(user_sub(&h, &browser_with_cookie(&value)).await.unwrap(), h.sub_of("alice").await);
    }
    // A cookie under the current key is not re-issued.
    let current = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert!(current.set_cookies().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_15_session_cookies_have_one_length_whatever_the_user() {
    let h = Harness::start(Default::default()).await;
    let mut lengths = std::collections::BTreeSet::new();
    for user in ["alice", "bob", "alice"] {
        let mut b = Browser::new();
        lengths.insert(session_cookie_set_by(&h.login_reply(&mut b, user, "/").await).len());
    }
    // The sealed plaintext is the fixed-length session id: nothing about the user, the tokens or the claims.
    assert_eq!(lengths.len(), 1, "{lengths:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_22_cookie_bombs_are_refused_quickly() {
    let h = Harness::start(Default::default()).await;
    let host = h.gw_authority();
    let single = format!("{SESSION_COOKIE}=k1.{}", "A".repeat(64 * 1024));
    let chunks: Vec<String> = (0..50).map(|i| format!("{SESSION_COOKIE}.{i}={}", "A".repeat(4000))).collect();
    let many: Vec<String> = (0..1000).map(|i| format!("c{i}=xxxxxxxxxxxxxx")).collect();
    for cookie in [single, chunks.join("; "), many.join("; ")] {
        let started = Instant::now();
        let request = format!(
            "GET /bff/user HTTP/1.1\r\nHost: {host}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        );
        let response = raw_async(&h, request).await;
        assert_eq!(status_of(&response), 431, "{response:.200}");
        assert!(started.elapsed() < Duration::from_secs(1), "quickly");
    }
    let ordinary: Vec<String> = (0..100).map(|i| format!("c{i}=x")).collect();
    let reply =
        browser_with_cookie("x").get(&h.gw("/bff/user"), &[("x-csrf", "1"), ("cookie", &ordinary.join("; "))]).await;
    assert_eq!(reply.status, 401, "ordinary cookie headers are fine");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_23_fifty_abandoned_logins_keep_the_cookie_header_bounded() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    for _ in 0..50 {
        let start = b.get(&h.gw("/bff/login"), &[]).await;
        assert_eq!(start.status, 302);
        b.absorb(&start);
    }
    let pending = b.cookie_names().iter().filter(|n| n.starts_with(TX_PREFIX)).count();
    assert!(pending <= 3, "{pending} transaction cookies kept");
    // And a login afterwards works (no 431 lock-out).
    assert_eq!(h.login(&mut b, "alice", "/").await, "/");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_24_session_ids_are_256_random_bits_and_never_repeat() {
    let mut ids = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let id = Session::new_id();
        let bytes = gatehouse_proto::b64::decode(&id).unwrap();
        assert_eq!(bytes.len(), 32, "256 bits");
        assert!(ids.insert(id), "an id repeated");
    }
    // Bits are balanced (a broken generator of constants or counters fails this by far).
    let ones: u32 = ids
        .iter()
        .map(|id| gatehouse_proto::b64::decode(id).unwrap().iter().map(|b| b.count_ones()).sum::<u32>())
        .sum();
    let ratio = f64::from(ones) / (10_000.0 * 256.0);
    assert!((0.49..0.51).contains(&ratio), "{ratio}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crypt_25_no_key_material_in_any_response() {
    let h = Harness::start(Default::default()).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let session = h.only_session().await;
    let cookie_key = h.gateway.settings.cookie.keys[0].key;
    let hex: String = cookie_key.iter().map(|b| format!("{b:02x}")).collect();
    let secrets = [
        gatehouse_proto::b64::encode(cookie_key),
        hex,
        gatehouse_proto::b64::encode(&session.dpop_key),
        gatehouse_proto::b64::encode(h.gateway.refresher.client_key().pkcs8()),
        support::CLIENT_SECRET.to_owned(),
    ];
    let paths = [
        "/debug",
        "/metrics",
        "/config",
        "/.env",
        "/bff",
        "/bff/",
        "/bff/debug",
        "/bff/config",
        "/bff/metrics",
        "/bff/diagnostics",
        "/bff/user",
        "/bff/callback",
        "/bff/logout?sid=x",
        "/echo/%00",
        "/small/x",
    ];
    for path in paths {
        for headers in [&[][..], &[("x-csrf", "1")]] {
            let reply = b.get(&h.gw(path), headers).await;
            assert!(reply.status < 500, "{path}: {}", reply.status);
            let visible = format!("{:?} {}", reply.headers, reply.body);
            for secret in &secrets {
                assert!(!visible.contains(secret.as_str()), "{path} shows key material");
            }
        }
    }
    h.stop().await;
}
