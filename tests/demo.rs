//! The demo as a system test: `gatehouse serve --config config/gatehouse.toml` (token service, gateway, demo API
//! in one process, on free ports via environment overrides), then what a user does in a browser — open the SPA,
//! log in as alice through the real login form, call the API through the gateway, log out; and the admin
//! listener's health and readiness answers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

struct Demo {
    child: Child,
    gateway: String,
    issuer: String,
    admin: String,
    _data: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

async fn start_demo() -> Demo {
    start_demo_with(&[]).await
}

/// The demo with extra `GATEHOUSE_*` overrides; it is up when the gateway serves `/` (and the token service its
/// JWKS, unless `GATEHOUSE_IDP__ENABLED=false` is among them).
async fn start_demo_with(overrides: &[(&str, &str)]) -> Demo {
    let (idp, gw, api, admin) = (free_port(), free_port(), free_port(), free_port());
    let token_service_here = !overrides.contains(&("GATEHOUSE_IDP__ENABLED", "false"));
    let issuer = format!("http://127.0.0.1:{idp}");
    let gateway = format!("http://127.0.0.1:{gw}");
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GATEHOUSE_") {
            command.env_remove(name);
        }
    }
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gatehouse.toml");
    let child = command
        .args(["serve", "--config", config])
        .env("GATEHOUSE_IDP__LISTEN", format!("127.0.0.1:{idp}"))
        .env("GATEHOUSE_IDP__ISSUER", &issuer)
        .env("GATEHOUSE_IDP__DATA_DIR", data.path())
        .env("GATEHOUSE_IDP__CLIENTS__0__REDIRECT_URIS", format!("[\"{gateway}/bff/callback\"]"))
        .env("GATEHOUSE_IDP__CLIENTS__0__POST_LOGOUT_REDIRECT_URIS", format!("[\"{gateway}/\"]"))
        .env("GATEHOUSE_IDP__CLIENTS__0__BACKCHANNEL_LOGOUT_URI", format!("\"{gateway}/bff/backchannel\""))
        .env("GATEHOUSE_BFF__LISTEN", format!("127.0.0.1:{gw}"))
        .env("GATEHOUSE_BFF__PUBLIC_ORIGIN", &gateway)
        .env("GATEHOUSE_BFF__ROUTES__0__UPSTREAMS", format!("[\"http://127.0.0.1:{api}\"]"))
        .env("GATEHOUSE_BFF__ROUTES__0__PUBLIC_BASE", &gateway)
        .env("GATEHOUSE_DEMO_API__LISTEN", format!("127.0.0.1:{api}"))
        .env("GATEHOUSE_DEMO_API__PUBLIC_BASE", &gateway)
        .env("GATEHOUSE_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .envs(overrides.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin = format!("http://127.0.0.1:{admin}");
    let mut demo = Demo { child, gateway, issuer, admin, _data: data };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(demo.child.try_wait().unwrap().is_none(), "gatehouse serve exited early");
        let up = http.get(format!("{}/", demo.gateway)).send().await.is_ok_and(|r| r.status() == 200);
        let idp_up = !token_service_here
            || http.get(format!("{}/jwks", demo.issuer)).send().await.is_ok_and(|r| r.status() == 200);
        if up && idp_up {
            break;
        }
        assert!(Instant::now() < deadline, "the demo did not come up in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = &mut demo;
    demo
}

/// Cookies by host:port; Secure cookies are sent over http as browsers do for localhost.
#[derive(Default)]
struct Jar(std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>);

impl Jar {
    fn site(url: &str) -> String {
        let url = url::Url::parse(url).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let site = self.0.entry(Self::site(url)).or_default();
        let cookie: Vec<String> = site.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let request = if cookie.is_empty() { request } else { request.header("cookie", cookie.join("; ")) };
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        for set in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            if let Some((name, value)) = set.split(';').next().and_then(|p| p.split_once('=')) {
                if set.contains("Max-Age=0") {
                    site.remove(name);
                } else {
                    site.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        (status, headers, response.text().await.unwrap_or_default())
    }
}

fn location(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("location").unwrap().to_str().unwrap().to_owned()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&#x2B;", "+").replace("&#x3D;", "=").replace("&amp;", "&")
}

#[tokio::test]
async fn the_demo_logs_alice_in_and_calls_the_api_through_the_gateway() {
    let demo = start_demo().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar = Jar::default();
    let gw = |path: &str| format!("{}{path}", demo.gateway);

    let (status, _, body) = jar.send(http.get(gw("/")), &gw("/")).await;
    assert_eq!(status, 200);
    assert!(body.contains("id=\"login\""), "the demo SPA is served: {body}");
    let (status, _, _) = jar.send(http.get(gw("/bff/user")).header("x-csrf", "1"), &gw("/bff/user")).await;
    assert_eq!(status, 401, "anonymous at first");

    let (status, headers, _) = jar.send(http.get(gw("/bff/login?returnUrl=/")), &gw("/bff/login")).await;
    assert_eq!(status, 302);
    let authorize = location(&headers);
    assert!(authorize.starts_with(&format!("{}/authorize?", demo.issuer)), "{authorize}");
    assert!(authorize.contains("request_uri="), "the gateway pushed the request (PAR): {authorize}");
    let (status, _, page) = jar.send(http.get(&authorize), &authorize).await;
    assert_eq!(status, 200, "{page}");
    let login = format!("{}/login", demo.issuer);
    let form = [
        ("username", "alice".to_owned()),
        ("password", "alice-password".to_owned()),
        ("csrf", hidden(&page, "csrf")),
        ("request", hidden(&page, "request")),
    ];
    let (status, headers, body) = jar.send(http.post(&login).form(&form), &login).await;
    assert!(matches!(status, 302 | 303), "{status} {body}");
    let callback = location(&headers);
    let (status, headers, body) = jar.send(http.get(&callback), &callback).await;
    assert_eq!(status, 302, "{body}");
    assert_eq!(location(&headers), "/");

    let (status, _, user) = jar.send(http.get(gw("/bff/user")).header("x-csrf", "1"), &gw("/bff/user")).await;
    assert_eq!(status, 200, "{user}");
    assert!(user.contains("Alice Liddell"), "{user}");
    let (status, _, api) = jar.send(http.get(gw("/api/whoami")).header("x-csrf", "1"), &gw("/api/whoami")).await;
    assert_eq!(status, 200, "{api}");
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert!(api["jkt"].as_str().is_some_and(|j| j.len() == 43), "the API verified a DPoP-bound token: {api}");
    assert_eq!(api["client_id"], "gatehouse-bff");

    let claims: Vec<serde_json::Value> = serde_json::from_str(&user).unwrap();
    let logout = claims.iter().find(|c| c["type"] == "bff:logout_url").unwrap()["value"].as_str().unwrap().to_owned();
    let (status, headers, _) = jar.send(http.get(gw(&logout)), &gw("/bff/logout")).await;
    assert_eq!(status, 302);
    assert!(location(&headers).starts_with(&format!("{}/end_session?", demo.issuer)));
    let (status, _, _) = jar.send(http.get(gw("/api/whoami")).header("x-csrf", "1"), &gw("/api/whoami")).await;
    assert_eq!(status, 401, "logged out");
}

async fn get_json(url: &str) -> (u16, Option<String>, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let cache = response.headers().get("cache-control").map(|v| v.to_str().unwrap().to_owned());
    (status, cache, response.json().await.unwrap())
}

#[tokio::test]
async fn the_admin_listener_answers_liveness_and_readiness() {
    let demo = start_demo().await;
    let (status, cache, body) = get_json(&format!("{}/healthz", demo.admin)).await;
    assert_eq!((status, cache.as_deref()), (200, Some("no-store")));
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
    let (status, _, body) = get_json(&format!("{}/readyz", demo.admin)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "status": "ready", "checks": {
            "token_service_store_and_signing_keys": "ok",
            "gateway_session_store": "ok",
            "token_service_reachable": "ok",
        } })
    );
}

#[tokio::test]
async fn a_gateway_that_cannot_reach_its_token_service_is_not_ready() {
    // The token service is off in this process and nothing else listens on the issuer's port.
    let demo = start_demo_with(&[("GATEHOUSE_IDP__ENABLED", "false")]).await;
    let (status, _, body) = get_json(&format!("{}/healthz", demo.admin)).await;
    assert_eq!(status, 200, "alive all the same: {body}");
    let (status, _, body) = get_json(&format!("{}/readyz", demo.admin)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["gateway_session_store"], "ok");
    let reason = body["checks"]["token_service_reachable"].as_str().unwrap();
    assert_ne!(reason, "ok");
    assert!(body["checks"].get("token_service_store_and_signing_keys").is_none(), "not run here: {body}");
}
