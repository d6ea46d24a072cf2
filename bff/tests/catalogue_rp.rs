//! The security catalogue's §B rows (the OpenID Foundation conformance suite's RP tests, applied to the gateway
//! as a relying party) as black-box tests over real sockets: a scriptable mock OpenID Provider
//! (`support/rp.rs`: real keys, answers changed per test), the gateway (pingora) pointed at it, and recording
//! upstream APIs. Each test is named after the row(s) it proves (`/work/shared/security/CATALOGUE.md`; the
//! coverage table is `SECURITY.md`).
//!
//! "Reject" (catalogue §B): the callback creates no session (no session `Set-Cookie`, `/bff/user` anonymous),
//! the gateway makes no further call (no token request after a bad authorization response; nothing forwarded
//! and no userinfo call after a bad ID token) and the user sees an error page.
//!
//! Run: `cargo test -p gatehouse-bff --test catalogue_rp`.

// `support` keeps its own copy private; this one serves `rp`.
#[allow(clippy::duplicate_mod)]
#[path = "../../tests/support/ports.rs"]
mod ports;
#[path = "support/rp.rs"]
mod rp;
mod support;

use std::time::Duration;

use rp::{IssParam, MockOp, Published, RpGateway, SignWith, TokenPlan};
use serde_json::{Value, json};
use support::{Browser, enc};

/// A token plan that edits the claims only.
fn claims(edit: impl Fn(&mut Value) + Send + Sync + 'static) -> TokenPlan {
    TokenPlan::edit(move |_, claims| edit(claims))
}

fn remove(name: &'static str) -> TokenPlan {
    claims(move |c| {
        c.as_object_mut().unwrap().remove(name);
    })
}

fn set(name: &'static str, value: Value) -> TokenPlan {
    claims(move |c| c[name] = value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_01_to_cs_rp_13_id_tokens_failing_a_check_create_no_session_and_nothing_follows() {
    let op = MockOp::start().await;
    let gw = RpGateway::start(op.clone()).await;
    // The control: the mock OP's default answer logs in.
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "default plan").await;
    // CS-RP-05: aud as a one-element array is accepted.
    op.plan(|p| p.login = set("aud", json!(["bff"])));
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "CS-RP-05 aud [client_id]").await;
    let now = gatehouse_bff::now();
    let cases: Vec<(&str, TokenPlan)> = vec![
        ("CS-RP-01 iss of another issuer", set("iss", "https://evil.example".into())),
        ("CS-RP-01 iss with a trailing slash", set("iss", format!("{}/", op.issuer).into())),
        ("CS-RP-02 no iss", remove("iss")),
        ("CS-RP-03 aud of another client", set("aud", "other-client".into())),
        ("CS-RP-04 a secondary aud without azp", set("aud", json!(["bff", "other"]))),
        ("CS-RP-04 azp of another client", claims(|c| c["azp"] = "other".into())),
        ("CS-RP-06 no aud", remove("aud")),
        ("CS-RP-07 alg none", TokenPlan::signed(SignWith::Unsigned)),
        ("CS-RP-08 PS256, not configured", TokenPlan::signed(SignWith::Ps256)),
        (
            "CS-RP-08 ES256 signature under an RS256 header",
            TokenPlan { sign: SignWith::Es256, edit: std::sync::Arc::new(|h, _| h["alg"] = "RS256".into()) },
        ),
        ("CS-RP-09 bad signature", TokenPlan::signed(SignWith::Tampered)),
        ("CS-RP-09 signed by a key not in the JWK Set", TokenPlan::signed(SignWith::Foreign)),
        (
            "CS-RP-10 expired 6 minutes ago",
            claims(move |c| {
                c["iat"] = (now - 660).into();
                c["exp"] = (now - 360).into();
            }),
        ),
        ("CS-RP-10 no exp", remove("exp")),
        ("CS-RP-11 no iat", remove("iat")),
        ("CS-RP-12 no sub", remove("sub")),
        ("CS-RP-12 empty sub", set("sub", "".into())),
        ("CS-RP-13 wrong nonce", set("nonce", "not-the-nonce".into())),
        ("CS-RP-13 no nonce", remove("nonce")),
    ];
    for (what, plan) in cases {
        op.plan(|p| p.login = plan);
        let forwarded = gw.echo_count();
        let mut b = Browser::new();
        let reply = gw.login(&mut b).await;
        gw.assert_rejected(&b, &reply, what).await;
        assert_eq!(gw.api(&b, "/echo/after").await.status, 401, "{what}: no session for the API either");
        assert_eq!(gw.echo_count(), forwarded, "{what}: nothing forwarded");
    }
    assert_eq!(op.count("GET /userinfo"), 0, "the gateway never calls userinfo");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_14_cs_rp_15_cs_rp_16_bad_authorization_responses_are_refused_before_the_token_endpoint() {
    let op = MockOp::start().await;
    let gw = RpGateway::start(op.clone()).await;
    let cases: Vec<(&str, IssParam, Option<&str>)> = vec![
        ("CS-RP-14 iss of another issuer", IssParam::Value("https://evil.example".into()), None),
        ("CS-RP-14 iss with a trailing slash", IssParam::Value(format!("{}/", op.issuer)), None),
        ("CS-RP-15 no iss though advertised", IssParam::Missing, None),
        ("CS-RP-16 another state", IssParam::Correct, Some("forged-state")),
        ("CS-RP-16 no state", IssParam::Correct, Some("")),
    ];
    for (what, iss, state) in cases {
        op.plan(|p| {
            p.authorization_iss = iss;
            p.authorization_state = state.map(str::to_owned);
        });
        let token_calls = op.count("POST /token");
        let mut b = Browser::new();
        let reply = gw.login(&mut b).await;
        gw.assert_rejected(&b, &reply, what).await;
        assert_eq!(op.count("POST /token"), token_calls, "{what}: the code never reached the token endpoint");
    }
    // The control: the same gateway logs in once the answers are right.
    op.plan(|p| {
        p.authorization_iss = IssParam::Correct;
        p.authorization_state = None;
    });
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "control").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_17_a_discovery_document_naming_another_issuer_is_not_used() {
    let op = MockOp::start().await;
    op.plan(|p| p.discovery_issuer = Some("https://evil.example".into()));
    let gw = RpGateway::start(op.clone()).await;
    let b = Browser::new();
    let start = b.get(&gw.gw("/bff/login?returnUrl=%2F"), &[]).await;
    assert_eq!(start.status, 503, "{}", start.body);
    assert!(start.header("location").is_none(), "no authorization request is started");
    assert!(start.set_cookies().is_empty());
    assert_eq!(op.count("GET /authorize") + op.count("GET /jwks") + op.count("POST"), 0);
    // Nothing of that document was kept: once it names the right issuer, logins work.
    op.plan(|p| p.discovery_issuer = None);
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "control").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_19_without_kid_the_single_published_key_is_used() {
    let op = MockOp::start().await;
    op.plan(|p| {
        p.published = Published::OnlyRs256;
        p.login = TokenPlan::edit(|h, _| {
            h.as_object_mut().unwrap().remove("kid");
        });
    });
    let gw = RpGateway::start(op.clone()).await;
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "CS-RP-19 no kid, one key").await;
    // Still verified: a tampered token without kid is refused.
    op.plan(|p| {
        p.login = TokenPlan {
            sign: SignWith::Tampered,
            edit: std::sync::Arc::new(|h, _| {
                h.as_object_mut().unwrap().remove("kid");
            }),
        }
    });
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_rejected(&b, &reply, "no kid, bad signature").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_20_cs_rp_21_several_keys_need_a_kid_and_a_new_kid_refetches_the_jwks_once() {
    let op = MockOp::start().await;
    let gw = RpGateway::start(op.clone()).await;
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "control").await;
    // CS-RP-20: no kid while two keys are published.
    op.plan(|p| {
        p.login = TokenPlan::edit(|h, _| {
            h.as_object_mut().unwrap().remove("kid");
        })
    });
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_rejected(&b, &reply, "CS-RP-20 no kid, two keys").await;
    // CS-RP-21: the OP rotates to a key the gateway has not seen: one JWK Set fetch, then accepted.
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the refetch floor (jwks_min_refresh = 1 s)
    op.plan(|p| {
        p.published = Published::WithRotated;
        p.login = TokenPlan::signed(SignWith::Rotated);
    });
    let fetches = op.count("GET /jwks");
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "CS-RP-21 rotated key").await;
    assert_eq!(op.count("GET /jwks"), fetches + 1, "the JWK Set was fetched again, once");
    // An unknown kid after a fetch that found its key is looked up once (OIDC Core 10.1.1: the OP may have
    // rotated again) …
    op.plan(|p| p.login = TokenPlan::signed(SignWith::Foreign));
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_rejected(&b, &reply, "unknown kid").await;
    assert_eq!(op.count("GET /jwks"), fetches + 2, "one lookup for an unknown kid");
    // … but after a fetch that found nothing, another unknown kid within the floor causes no fetch.
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_rejected(&b, &reply, "unknown kid right after a fruitless fetch").await;
    assert_eq!(op.count("GET /jwks"), fetches + 2, "no fetch within the floor");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_08_an_algorithm_the_gateway_was_not_configured_for_is_refused() {
    let op = MockOp::start().await;
    let gw = RpGateway::start_with(op.clone(), vec!["RS256".into()]).await;
    op.plan(|p| p.login = TokenPlan::signed(SignWith::Es256));
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_rejected(&b, &reply, "ES256 for an RS256-only client").await;
    op.plan(|p| p.login = TokenPlan::signed(SignWith::Rs256));
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "control").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_22_a_refresh_answer_about_another_user_or_issuer_ends_the_session() {
    let op = MockOp::start().await;
    op.plan(|p| p.expires_in = Some(10)); // inside the 30 s refresh skew: every API call refreshes
    let gw = RpGateway::start(op.clone()).await;
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "login").await;
    // The control: a refresh answer with a proper ID token.
    let refreshes = op.count("POST /token refresh_token");
    assert_eq!(gw.api(&b, "/echo/one").await.status, 200);
    assert_eq!(op.count("POST /token refresh_token"), refreshes + 1, "the call refreshed");
    // OIDC Core §12.2 allows a refresh answer without an ID token.
    op.plan(|p| p.refresh = None);
    assert_eq!(gw.api(&b, "/echo/two").await.status, 200);
    let cases: Vec<(&str, TokenPlan)> = vec![
        ("another sub", set("sub", "mallory-sub".into())),
        ("another iss", set("iss", "https://evil.example".into())),
        ("another aud", set("aud", "other-client".into())),
        ("unsigned", TokenPlan::signed(SignWith::Unsigned)),
        ("bad signature", TokenPlan::signed(SignWith::Tampered)),
    ];
    for (what, plan) in cases {
        op.plan(|p| p.refresh = None);
        let mut b = Browser::new();
        let reply = gw.login(&mut b).await;
        gw.assert_accepted(&b, &reply, what).await;
        op.plan(|p| p.refresh = Some(plan));
        let forwarded = gw.echo_count();
        let refreshes = op.count("POST /token refresh_token");
        let reply = gw.api(&b, "/echo/after-refresh").await;
        assert_eq!(op.count("POST /token refresh_token"), refreshes + 1, "{what}: a refresh was made");
        assert_eq!(reply.status, 401, "{what}: the refresh answer is not used: {}", reply.body);
        assert_eq!(gw.echo_count(), forwarded, "{what}: nothing forwarded with the new token");
        assert_eq!(gw.user_status(&b).await, 401, "{what}: the session ended, the user never switched");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_23_cs_rp_25_cs_rp_26_token_type_in_any_case_no_nonces_and_no_expires_in() {
    let op = MockOp::start().await;
    op.plan(|p| {
        p.token_type = "dPOP".into();
        p.expires_in = None;
    });
    let gw = RpGateway::start(op.clone()).await;
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "token_type dPOP, no expires_in").await;
    for path in ["/echo/a", "/echo/b"] {
        let reply = gw.api(&b, path).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let seen: Value = serde_json::from_str(&reply.body).unwrap();
        assert!(seen["authorization"].as_str().unwrap().starts_with("DPoP at-"), "{seen}");
        assert!(seen["dpop"]["jti"].is_string() && seen["dpop"].get("nonce").is_none(), "{seen}");
    }
    // CS-RP-26: a sane default lifetime (60 s, beyond the 30 s skew): no refresh on every call.
    assert_eq!(op.count("POST /token refresh_token"), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_24_an_api_asking_for_a_nonce_with_a_lower_case_dpop_scheme_gets_one_retry() {
    let op = MockOp::start().await;
    let gw = RpGateway::start(op.clone()).await;
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "login").await;
    let reply = gw.api(&b, "/nonce/x").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let proofs = gw.nonce_proofs.lock().unwrap().clone();
    assert_eq!(proofs.len(), 2, "one retry: {proofs:?}");
    assert!(proofs[0].get("nonce").is_none() && proofs[1]["nonce"] == "n-rp");
    assert_ne!(proofs[0]["jti"], proofs[1]["jti"], "a fresh proof for the retry");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_27_to_cs_rp_34_back_channel_logout_tokens_are_checked_and_a_valid_one_ends_the_session() {
    let op = MockOp::start().await;
    let gw = RpGateway::start(op.clone()).await;
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "login").await;
    let post = |token: String| {
        let url = gw.gw("/bff/backchannel");
        async move { Browser::new().post_form(&url, &format!("logout_token={}", enc(&token))).await }
    };
    let events = |value: Value| claims(move |c| c["events"] = value.clone());
    let cases: Vec<(&str, TokenPlan)> = vec![
        ("CS-RP-28 alg none", TokenPlan::signed(SignWith::Unsigned)),
        ("CS-RP-29 PS256, not configured", TokenPlan::signed(SignWith::Ps256)),
        (
            "CS-RP-29 ES256 signature under an RS256 header",
            TokenPlan { sign: SignWith::Es256, edit: std::sync::Arc::new(|h, _| h["alg"] = "RS256".into()) },
        ),
        ("CS-RP-29 signed by a key not in the JWK Set", TokenPlan::signed(SignWith::Foreign)),
        ("CS-RP-30 aud of another client", set("aud", "other-client".into())),
        ("CS-RP-31 iss of another issuer", set("iss", "https://evil.example".into())),
        ("CS-RP-32 no events", remove("events")),
        ("CS-RP-33 another event", events(json!({"http://example.com/other": {}}))),
        ("CS-RP-33 an extra member", events(json!({rp::LOGOUT_EVENT: {}, "http://example.com/other": {}}))),
        ("CS-RP-33 a non-empty event object", events(json!({rp::LOGOUT_EVENT: {"reason": "x"}}))),
        ("CS-RP-34 a nonce", set("nonce", "n".into())),
    ];
    for (what, plan) in cases {
        let reply = post(op.logout_token(&plan)).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert_eq!(gw.user_status(&b).await, 200, "{what}: the session is kept");
    }
    // CS-RP-27: a valid token: 200, no-store, the session is gone.
    let reply = post(op.logout_token(&TokenPlan::default())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(gw.user_status(&b).await, 401, "the session ended");
    assert_eq!(gw.api(&b, "/echo/after-logout").await.status, 401);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cs_rp_35_coming_back_from_logout_with_another_state_is_harmless() {
    let op = MockOp::start().await;
    let gw = RpGateway::start(op.clone()).await;
    let mut b = Browser::new();
    let reply = gw.login(&mut b).await;
    gw.assert_accepted(&b, &reply, "login").await;
    let user = b.get(&gw.gw("/bff/user"), &[("x-csrf", "1")]).await;
    let claims: Vec<Value> = serde_json::from_str(&user.body).unwrap();
    let logout = claims.iter().find(|c| c["type"] == "bff:logout_url").unwrap()["value"].as_str().unwrap().to_owned();
    let reply = b.get(&gw.gw(&logout), &[]).await;
    b.absorb(&reply);
    assert_eq!(reply.status, 302);
    let end_session = url::Url::parse(reply.header("location").unwrap()).unwrap();
    assert!(end_session.as_str().starts_with(&format!("{}/end_session?", op.issuer)), "{end_session}");
    let post_logout = end_session.query_pairs().find(|(k, _)| k == "post_logout_redirect_uri").unwrap().1.into_owned();
    assert_eq!(post_logout, gw.gw("/"), "the gateway's own origin");
    assert_eq!(op.count("POST /revoke"), 1, "the refresh token was revoked");
    // The OP comes back with a state the gateway never sent: a plain page, no redirect, no session.
    let token_calls = op.count("POST /token");
    for path in ["/?state=forged", "/?state=forged&code=stolen-code", "/bff/callback?state=forged&code=stolen-code"] {
        let reply = b.get(&gw.gw(path), &[]).await;
        b.absorb(&reply);
        assert!(matches!(reply.status, 200 | 400), "{path}: {}", reply.status);
        assert!(reply.header("location").is_none(), "{path}: no redirect");
        assert!(
            !reply
                .set_cookies()
                .iter()
                .any(|c| c.starts_with("__Host-gatehouse=") && !c.starts_with("__Host-gatehouse=;")),
            "{path}: no session"
        );
        assert_eq!(gw.user_status(&b).await, 401, "{path}");
    }
    assert_eq!(op.count("POST /token"), token_calls, "no code was redeemed");
    gw.stop().await;
}
