//! Security catalogue §D at the token service: RFC 9700 (OAuth 2.0 Security BCP), PAR (RFC 9126), PKCE
//! (RFC 7636), mix-up defence (RFC 9207), authorization codes, refresh tokens, client authentication, open
//! redirectors and the browser-facing pages. Each test is named after its row ID(s) in
//! `/work/shared/security/CATALOGUE.md`; the gateway-side rows of §D (OAUTH-PK11, AC07, MX02, UI03/UI04 for the
//! callback) are in `bff/tests/catalogue_dpop_client.rs`. The coverage table is `SECURITY.md`.
//!
//! Run: `cargo test -p gatehouse-idp --test catalogue_bcp`.

#[path = "support/attacks.rs"]
mod attacks;
mod support;

use std::sync::Arc;

use attacks::*;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gatehouse_proto::b64;
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::pkce::CodeChallenge;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType};
use serde_json::{Value, json};
use support::*;

include!("../../bff/tests/support/z2_payloads.rs");

// ---------------------------------------------------------------------------------------------------------------
// Helpers

fn code_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK), ("code_verifier", verifier)]
}

/// `/authorize` with every parameter given, `redirect_uri` included (percent-encoded here).
fn authorize(client_id: &str, redirect_uri: &str, challenge: &str, extra: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid&state=st&code_challenge={challenge}&code_challenge_method=S256{extra}",
        enc(redirect_uri)
    )
}

fn challenge() -> String {
    CodeChallenge::s256(&verifier()).as_str().to_owned()
}

/// A PAR request as c1 with `redirect_uri` and extra parameters.
async fn push(h: &Harness, redirect_uri: &str, extra: &[(&str, &str)]) -> Reply {
    let challenge = challenge();
    let mut form = vec![
        ("response_type", "code"),
        ("redirect_uri", redirect_uri),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    form.extend_from_slice(extra);
    h.post_form("/par", &form, &[("authorization", &basic("c1", C1_SECRET))]).await
}

/// Shows the login page at `uri`, submits alice's password, returns the answer to the form.
async fn log_in_at(h: &Harness, uri: &str) -> Reply {
    let page = h.get(uri, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    h.post_form(
        "/login",
        &[("username", "alice"), ("password", ALICE_PASSWORD), ("csrf", &csrf), ("request", &request)],
        &[("cookie", &cookie)],
    )
    .await
}

/// `AZ-REDIR(error)`: 303 to the registered URI with `error`, `state` echoed, `iss`, nothing in the fragment,
/// no code.
#[track_caller]
fn assert_az_redirect(reply: &Reply, error: &str, what: &str) {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{what}: {}", reply.text());
    let location = reply.location();
    assert!(location.as_str().starts_with(&format!("{CALLBACK}?")), "{what}: {location}");
    assert_eq!(reply.param("error").as_deref(), Some(error), "{what}");
    assert_eq!(reply.param("state").as_deref(), Some("st"), "{what}");
    assert_eq!(reply.param("iss").as_deref(), Some(ISSUER), "{what}");
    assert!(reply.param("code").is_none() && location.fragment().is_none(), "{what}");
}

async fn refresh(h: &Harness, client: &str, secret: &str, rt: &str) -> Reply {
    h.token_basic(client, secret, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await
}

async fn introspect(h: &Harness, token: &str) -> Value {
    h.post_form("/introspect", &[("token", token)], &[("authorization", &basic("c1", C1_SECRET))]).await.json()
}

fn at_of(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

fn rt_of(reply: &Reply) -> String {
    reply.json()["refresh_token"].as_str().expect("a refresh token").to_owned()
}

/// Every `redirect_uri` variant must get an error page at `/authorize` and `invalid_request` at PAR, with no
/// code and no request_uri.
async fn refuses_redirect_uris(h: &Harness, variants: &[&str]) {
    let challenge = challenge();
    for variant in variants {
        let reply = h.get(&authorize("c1", variant, &challenge, ""), None).await;
        assert_error_page(&reply, variant);
        assert!(!reply.text().contains("name=\"password\""), "{variant}: a login form was shown");
        let pushed = push(h, variant, &[]).await;
        assert_as400(&pushed, "invalid_request", variant);
        assert!(pushed.json().get("request_uri").is_none());
    }
    // The registered URI itself is fine.
    assert_eq!(h.get(&authorize("c1", CALLBACK, &challenge, ""), None).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------------------------
// D1. Redirect URI exact matching (registered: https://app.test/bff/callback)

#[tokio::test]
async fn oauth_ru01_slash_and_case_variants_are_refused() {
    let h = Harness::new().await;
    refuses_redirect_uris(
        &h,
        &[
            "https://app.test/bff/callback/",
            "https://app.test/bff/Callback",
            "https://APP.test/bff/callback",
            "HTTPS://app.test/bff/callback",
        ],
    )
    .await;
}

#[tokio::test]
async fn oauth_ru02_extra_segments_prefixes_and_path_parameters_are_refused() {
    let h = Harness::new().await;
    refuses_redirect_uris(
        &h,
        &[
            "https://app.test/bff/callback/x",
            "https://app.test/bff/callbackx",
            "https://app.test/bff/callback/..;/admin",
            "https://app.test/bff/callback;x",
        ],
    )
    .await;
}

#[tokio::test]
async fn oauth_ru03_dot_segments_plain_encoded_and_double_encoded_are_refused() {
    let h = Harness::new().await;
    refuses_redirect_uris(
        &h,
        &[
            "https://app.test/bff/callback/../evil",
            "https://app.test/bff/callback/%2e%2e/evil",
            "https://app.test/bff/callback/%252e%252e/evil",
            "https://app.test/bff/x/../callback",
        ],
    )
    .await;
}

#[tokio::test]
async fn oauth_ru04_userinfo_tricks_are_refused() {
    let h = Harness::new().await;
    refuses_redirect_uris(
        &h,
        &[
            "https://app.test@evil.example/",
            "https://app.test%25@evil.example/",
            "https://app.test@evil@evil.example/bff/callback",
            "https://evil.example\\@app.test/bff/callback",
            "https://app.test/bff/callback@evil.example",
            "https://user:pass@app.test/bff/callback",
        ],
    )
    .await;
}

#[tokio::test]
async fn oauth_ru05_added_or_changed_query_and_fragments_are_refused() {
    let h = Harness::new().await;
    refuses_redirect_uris(
        &h,
        &[
            "https://app.test/bff/callback?next=https://evil",
            "https://app.test/bff/callback?",
            "https://app.test/bff/callback#x",
            "https://app.test/bff/callback#",
        ],
    )
    .await;
}

#[tokio::test]
async fn oauth_ru06_scheme_port_idn_and_trailing_dot_variants_are_refused() {
    let h = Harness::new().await;
    refuses_redirect_uris(
        &h,
        &[
            "http://app.test/bff/callback",
            "https://app.test:443/bff/callback",
            "https://app.test:8443/bff/callback",
            "https://xn--pp-8ka.test/bff/callback",
            "https://аpp.test/bff/callback",
            "https://app.test./bff/callback",
        ],
    )
    .await;
}

#[tokio::test]
async fn oauth_ru07_an_omitted_redirect_uri_defaults_only_when_one_is_registered() {
    let h = Harness::new().await;
    let mut multi = client("multi", ClientAuthMethod::None, &[GrantType::AuthorizationCode], &["openid"]);
    multi.redirect_uris = vec![CALLBACK.into(), "https://app.test/other".into()];
    gatehouse_idp::admin::add_client(&h.store, multi).await.unwrap();
    let challenge = challenge();
    let without = |client: &str| {
        format!(
            "/authorize?response_type=code&client_id={client}&scope=openid&state=st&code_challenge={challenge}&code_challenge_method=S256"
        )
    };
    assert_error_page(&h.get(&without("multi"), None).await, "several registered, none named");
    let reply = log_in_at(&h, &without("c1")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.location().as_str().starts_with(&format!("{CALLBACK}?")), "{}", reply.location());
    assert!(reply.param("code").is_some());
}

#[tokio::test]
async fn oauth_ru08_the_token_requests_redirect_uri_must_be_the_authorize_one() {
    let h = Harness::new().await;
    let verifier = verifier();
    for (what, redirect_uri) in
        [("another URI", "https://app.test/other"), ("a variant", "https://app.test/bff/callback/")]
    {
        let (reply, _) = h.login("c1", "", &verifier).await;
        let code = reply.param("code").unwrap();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.expose()),
        ];
        assert_as400(&h.token_basic("c1", C1_SECRET, &form).await, "invalid_grant", what);
    }
}

/// RFC 9126 §2.4 (pushing an unregistered redirect URI) is deliberately not implemented: PAR validates like
/// `/authorize`, for authenticated and public clients alike.
#[tokio::test]
async fn oauth_ru09_par_never_registers_a_new_redirect_uri() {
    let h = Harness::new().await;
    assert_as400(&push(&h, "https://app.test/new", &[]).await, "invalid_request", "authenticated client");
    let challenge = challenge();
    let public = h
        .post_form(
            "/par",
            &[
                ("client_id", "pub"),
                ("response_type", "code"),
                ("redirect_uri", "https://app.test/new"),
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
            &[],
        )
        .await;
    assert_as400(&public, "invalid_request", "public client");
}

#[tokio::test]
async fn oauth_ru10_script_data_and_file_schemes_are_refused() {
    let h = Harness::new().await;
    refuses_redirect_uris(
        &h,
        &["javascript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "file:///etc/passwd", "JaVaScRiPt:alert(1)"],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// D2. PKCE

#[tokio::test]
async fn oauth_pk01_pk02_pk03_pk04_pk05_only_a_well_formed_s256_challenge_is_accepted() {
    let h = Harness::new().await;
    let good = challenge();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("PK01 no challenge", vec![]),
        ("PK01 empty challenge", vec![("code_challenge", String::new()), ("code_challenge_method", "S256".into())]),
        ("PK02 plain", vec![("code_challenge", good.clone()), ("code_challenge_method", "plain".into())]),
        ("PK03 method omitted", vec![("code_challenge", good.clone())]),
        ("PK04 S512", vec![("code_challenge", good.clone()), ("code_challenge_method", "S512".into())]),
        ("PK04 s256", vec![("code_challenge", good.clone()), ("code_challenge_method", "s256".into())]),
        ("PK05 42 characters", vec![("code_challenge", good[..42].into()), ("code_challenge_method", "S256".into())]),
        ("PK05 44 characters", vec![("code_challenge", format!("{good}A")), ("code_challenge_method", "S256".into())]),
        (
            "PK05 padding",
            vec![("code_challenge", format!("{}=", &good[..42])), ("code_challenge_method", "S256".into())],
        ),
        (
            "PK05 + and /",
            vec![("code_challenge", format!("+/{}", &good[2..])), ("code_challenge_method", "S256".into())],
        ),
    ];
    for (what, pkce) in cases {
        let query: String = pkce.iter().map(|(k, v)| format!("&{k}={}", enc(v))).collect();
        let uri = format!(
            "/authorize?response_type=code&client_id=c1&redirect_uri={}&scope=openid&state=st{query}",
            enc(CALLBACK)
        );
        assert_az_redirect(&h.get(&uri, None).await, "invalid_request", what);
        let mut form = vec![("response_type", "code"), ("redirect_uri", CALLBACK), ("scope", "openid")];
        form.extend(pkce.iter().map(|(k, v)| (*k, v.as_str())));
        let pushed = h.post_form("/par", &form, &[("authorization", &basic("c1", C1_SECRET))]).await;
        assert_as400(&pushed, "invalid_request", what);
    }
}

#[tokio::test]
async fn oauth_pk06_pk07_a_missing_wrong_or_malformed_verifier_gets_nothing() {
    let h = Harness::new().await;
    let verifier = verifier();
    let challenge = CodeChallenge::s256(&verifier).as_str().to_owned();
    let other = support::verifier();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("PK06 missing", None),
        ("PK07 another verifier", Some(other.expose().to_owned())),
        ("PK07 the challenge itself", Some(challenge.clone())),
        ("PK07 42 characters", Some(verifier.expose()[..42].to_owned())),
        ("PK07 129 characters", Some(format!("{}{}", verifier.expose(), "a".repeat(129 - verifier.expose().len())))),
        ("PK07 illegal characters", Some(format!("{}+/=", &verifier.expose()[..40]))),
        ("PK07 empty", Some(String::new())),
    ];
    for (what, bad) in cases {
        let (reply, _) = h.login("c1", "", &verifier).await;
        let code = reply.param("code").unwrap();
        let mut form = vec![("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)];
        if let Some(bad) = &bad {
            form.push(("code_verifier", bad));
        }
        let reply = h.token_basic("c1", C1_SECRET, &form).await;
        assert_as400(&reply, "invalid_grant", what);
        assert!(reply.json().get("access_token").is_none());
    }
}

/// PKCE cannot be downgraded: no client, public or confidential, front channel or PAR, gets a code without an
/// S256 challenge, so there is never a code to redeem "with a verifier the server never asked for".
#[tokio::test]
async fn oauth_pk08_there_is_no_code_without_pkce_to_downgrade() {
    let h = Harness::new().await;
    for client in ["c1", "c2", "pub"] {
        let uri = format!(
            "/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid&state=st",
            enc(CALLBACK)
        );
        assert_az_redirect(&h.get(&uri, None).await, "invalid_request", client);
    }
    let no_pkce = h
        .post_form(
            "/par",
            &[("response_type", "code"), ("redirect_uri", CALLBACK), ("scope", "openid")],
            &[("authorization", &basic("c1", C1_SECRET))],
        )
        .await;
    assert_as400(&no_pkce, "invalid_request", "PAR");
    // A verifier sent with a code that was issued with PKCE but for another verifier, or with no code at all.
    let verifier = verifier();
    let bogus = h.token_basic("c1", C1_SECRET, &code_form("not-a-code", verifier.expose())).await;
    assert_as400(&bogus, "invalid_grant", "no such code");
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
}

#[tokio::test]
async fn oauth_pk09_ac01_a_code_and_its_verifier_work_once() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, _) = h.login("c1", "", &verifier).await;
    let code = reply.param("code").unwrap();
    let first = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_as400(&second, "invalid_grant", "second redemption");
}

// ---------------------------------------------------------------------------------------------------------------
// D3. Authorization codes

#[tokio::test]
async fn oauth_ac01_ac02_a_reused_code_revokes_everything_it_issued() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, _) = h.login("c1", "scope=openid%20offline_access%20api", &verifier).await;
    let code = reply.param("code").unwrap();
    let first = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_eq!(first.status, StatusCode::OK);
    let rt = rt_of(&first);
    let at = at_of(&first.json());
    assert_eq!(introspect(&h, &at).await["active"], true);
    h.clock.advance(5);
    assert_as400(&h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await, "invalid_grant", "reuse");
    assert_eq!(introspect(&h, &at).await, json!({"active": false}));
    assert_eq!(introspect(&h, &rt).await, json!({"active": false}));
    let userinfo = h.userinfo(&at).await;
    assert_eq!(userinfo.status, StatusCode::UNAUTHORIZED);
    assert!(userinfo.headers[header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
    assert_as400(&refresh(&h, "c1", C1_SECRET, &rt).await, "invalid_grant", "the refresh token of the reused code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauth_ac03_twenty_concurrent_redemptions_give_exactly_one_success() {
    let h = Arc::new(Harness::new().await);
    let verifier = verifier();
    let (reply, _) = h.login("c1", "", &verifier).await;
    let code = reply.param("code").unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (h, code, verifier) = (h.clone(), code.clone(), verifier.expose().to_owned());
            tokio::spawn(async move { h.token_basic("c1", C1_SECRET, &code_form(&code, &verifier)).await })
        })
        .collect();
    let mut successes = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == StatusCode::OK {
            successes += 1;
        } else {
            assert_as400(&reply, "invalid_grant", "a concurrent redemption");
        }
    }
    assert_eq!(successes, 1, "exactly one redemption wins");
}

#[tokio::test]
async fn oauth_ac04_a_code_lives_at_most_sixty_seconds() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, _) = h.login("c1", "", &verifier).await;
    let code = reply.param("code").unwrap();
    h.clock.advance(59);
    assert_eq!(h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await.status, StatusCode::OK);
    let (reply, _) = h.login("c1", "", &verifier).await;
    let code = reply.param("code").unwrap();
    h.clock.advance(61);
    assert_as400(&h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await, "invalid_grant", "61 s");
}

#[tokio::test]
async fn oauth_ac05_a_code_is_bound_to_its_client() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, _) = h.login("c1", "", &verifier).await;
    let code = reply.param("code").unwrap();
    let mut form = code_form(&code, verifier.expose());
    form.extend([("client_id", "c2"), ("client_secret", C2_SECRET)]);
    assert_as400(&h.post_form("/token", &form, &[]).await, "invalid_grant", "c2 redeems c1's code");
}

#[tokio::test]
async fn oauth_ac06_a_thousand_codes_are_unique_random_and_opaque() {
    let h = Harness::new().await;
    let (_, session) = h.login("c1", "", &verifier()).await;
    let challenge = challenge();
    let mut codes = std::collections::HashSet::new();
    let mut ones = 0u64;
    for _ in 0..1000 {
        let reply = h.get(&authorize("c1", CALLBACK, &challenge, "&prompt=none"), Some(&session)).await;
        let code = reply.param("code").expect("a code by SSO");
        let bytes = b64::decode(&code).expect("base64url");
        assert!(bytes.len() * 8 >= 128, "≥ 128 bits");
        assert!(serde_json::from_slice::<Value>(&bytes).is_err(), "no structure");
        assert!(!code.contains("c1") || code.len() >= 43);
        ones += bytes.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        assert!(codes.insert(code), "a code repeated");
    }
    // 256 000 random bits: the share of ones is 0.5 within a few standard deviations (σ ≈ 0.001).
    let share = ones as f64 / (1000.0 * 256.0);
    assert!((0.49..0.51).contains(&share), "bit balance {share}");
}

// ---------------------------------------------------------------------------------------------------------------
// D4. Mix-up (RFC 9207)

#[tokio::test]
async fn oauth_mx01_every_authorization_response_names_the_issuer() {
    let h = Harness::new().await;
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["issuer"], ISSUER);
    let verifier = verifier();
    let (success, session) = h.login("c1", "state=st", &verifier).await;
    assert!(success.param("code").is_some());
    assert_eq!(success.param("iss").as_deref(), Some(ISSUER));
    let challenge = challenge();
    for (what, uri, error) in [
        (
            "invalid_scope",
            authorize("c1", CALLBACK, &challenge, "").replace("scope=openid", "scope=nope"),
            "invalid_scope",
        ),
        (
            "unsupported_response_type",
            authorize("c1", CALLBACK, &challenge, "").replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        ("login_required", authorize("c1", CALLBACK, &challenge, "&prompt=none"), "login_required"),
    ] {
        assert_az_redirect(&h.get(&uri, None).await, error, what);
    }
    // A silent success by SSO too.
    let sso = h.get(&authorize("c1", CALLBACK, &challenge, "&prompt=none"), Some(&session)).await;
    assert_eq!(sso.param("iss").as_deref(), Some(ISSUER));
}

// ---------------------------------------------------------------------------------------------------------------
// D5. Refresh tokens (DD1: a confidential client's previous token works again for 60 s; never for public ones)

#[tokio::test]
async fn oauth_rt01_rt02_rt03_another_client_no_authentication_or_a_wider_scope_change_nothing() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid offline_access").await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let by_c2 = h
        .post_form(
            "/token",
            &[
                ("client_id", "c2"),
                ("client_secret", C2_SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
            ],
            &[],
        )
        .await;
    assert_as400(&by_c2, "invalid_grant", "RT01 c2 uses c1's token");
    let anonymous = h.post_form("/token", &[("grant_type", "refresh_token"), ("refresh_token", &rt)], &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "RT02");
    assert_eq!(anonymous.oauth_error(), "invalid_client");
    let wrong = refresh(&h, "c1", "wrong-secret", &rt).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "RT02 wrong secret");
    assert_eq!(wrong.oauth_error(), "invalid_client");
    assert!(wrong.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic"));
    let wider = h
        .token_basic(
            "c1",
            C1_SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("scope", "openid api")],
        )
        .await;
    assert_as400(&wider, "invalid_scope", "RT03");
    // NO-SIDE-EFFECT: the token was neither rotated nor revoked by any of that.
    assert_eq!(introspect(&h, &rt).await["active"], true);
    assert_eq!(refresh(&h, "c1", C1_SECRET, &rt).await.status, StatusCode::OK);
}

#[tokio::test]
async fn oauth_rt04_dd1_a_confidential_client_may_retry_with_its_previous_token_for_a_while() {
    let h = Harness::new().await;
    let rt1 = h.tokens("openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    let second = refresh(&h, "c1", C1_SECRET, &rt1).await;
    assert_eq!(second.status, StatusCode::OK);
    let rt2 = rt_of(&second);
    h.clock.advance(30);
    let retry = refresh(&h, "c1", C1_SECRET, &rt1).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    assert_eq!(refresh(&h, "c1", C1_SECRET, &rt2).await.status, StatusCode::OK, "the successor stays good");
}

async fn public_tokens(h: &Harness) -> Reply {
    let verifier = verifier();
    let (reply, _) = h.login("pub", "scope=openid%20offline_access", &verifier).await;
    let code = reply.param("code").unwrap();
    let mut form = code_form(&code, verifier.expose());
    form.push(("client_id", "pub"));
    let reply = h.post_form("/token", &form, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply
}

async fn refresh_public(h: &Harness, rt: &str) -> Reply {
    h.post_form("/token", &[("client_id", "pub"), ("grant_type", "refresh_token"), ("refresh_token", rt)], &[]).await
}

#[tokio::test]
async fn oauth_rt05_reuse_outside_the_grace_window_revokes_the_whole_family() {
    // Public client: no grace at all.
    let h = Harness::new().await;
    let rt1 = rt_of(&public_tokens(&h).await);
    let second = refresh_public(&h, &rt1).await;
    let (rt2, at2) = (rt_of(&second), at_of(&second.json()));
    assert_as400(&refresh_public(&h, &rt1).await, "invalid_grant", "public reuse");
    assert_as400(&refresh_public(&h, &rt2).await, "invalid_grant", "the successor is revoked");
    assert_eq!(h.userinfo(&at2).await.status, StatusCode::UNAUTHORIZED, "and its access token");
    // Confidential client, after the 60 s window.
    let tokens = h.tokens("openid offline_access").await;
    let rt1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    let second = refresh(&h, "c1", C1_SECRET, &rt1).await;
    let (rt2, at2) = (rt_of(&second), at_of(&second.json()));
    h.clock.advance(61);
    assert_as400(&refresh(&h, "c1", C1_SECRET, &rt1).await, "invalid_grant", "confidential reuse after the window");
    assert_eq!(introspect(&h, &rt2).await, json!({"active": false}));
    assert_eq!(introspect(&h, &at2).await, json!({"active": false}));
    assert_as400(&refresh(&h, "c1", C1_SECRET, &rt2).await, "invalid_grant", "the successor is revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauth_rt06_twenty_concurrent_refreshes_never_fork_the_family() {
    let h = Arc::new(Harness::new().await);
    // Confidential: all succeed within the grace window, every successor in the one grant.
    let rt = h.tokens("openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (h, rt) = (h.clone(), rt.clone());
            tokio::spawn(async move { refresh(&h, "c1", C1_SECRET, &rt).await })
        })
        .collect();
    let mut successors = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        successors.push(rt_of(&reply));
    }
    // One family: revoking any one successor revokes them all.
    let revoked =
        h.post_form("/revoke", &[("token", &successors[7])], &[("authorization", &basic("c1", C1_SECRET))]).await;
    assert_eq!(revoked.status, StatusCode::OK);
    for successor in &successors {
        assert_as400(&refresh(&h, "c1", C1_SECRET, successor).await, "invalid_grant", "a successor after revocation");
    }
    // Public: exactly one success, the rest invalid_grant.
    let rt = rt_of(&public_tokens(&h).await);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (h, rt) = (h.clone(), rt.clone());
            tokio::spawn(async move { refresh_public(&h, &rt).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_as400(&reply, "invalid_grant", "a concurrent public refresh");
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn oauth_rt07_rt08_refresh_ends_at_the_absolute_and_the_idle_lifetime() {
    let h = Harness::with(
        |s| {
            s.tokens.refresh_token_absolute_ttl = 1000;
            s.tokens.refresh_token_idle_ttl = 600;
        },
        None,
    )
    .await;
    // RT07: used every 400 s (never idle), still over after 1000 s.
    let mut rt = h.tokens("openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        h.clock.advance(400);
        let reply = refresh(&h, "c1", C1_SECRET, &rt).await;
        assert_eq!(reply.status, StatusCode::OK);
        rt = rt_of(&reply);
    }
    h.clock.advance(400);
    assert_as400(&refresh(&h, "c1", C1_SECRET, &rt).await, "invalid_grant", "past the absolute lifetime");
    // RT08: unused for longer than the idle lifetime.
    let rt = h.tokens("openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    h.clock.advance(601);
    assert_as400(&refresh(&h, "c1", C1_SECRET, &rt).await, "invalid_grant", "idle");
}

#[tokio::test]
async fn oauth_rt09_revocation_logout_and_session_revocation_end_refresh() {
    let h = Harness::new().await;
    // RFC 7009.
    let rt = h.tokens("openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.post_form("/revoke", &[("token", &rt)], &[("authorization", &basic("c1", C1_SECRET))]).await.status,
        StatusCode::OK
    );
    assert_as400(&refresh(&h, "c1", C1_SECRET, &rt).await, "invalid_grant", "revoked");
    // Logout at the token service (RP-Initiated Logout with the ID token as hint).
    let verifier = verifier();
    let (reply, session) = h.login("c1", "scope=openid%20offline_access", &verifier).await;
    let tokens =
        h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await.json();
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let logout = format!(
        "/end_session?id_token_hint={}&post_logout_redirect_uri={}",
        tokens["id_token"].as_str().unwrap(),
        enc(C1_POST_LOGOUT)
    );
    let reply = h.get(&logout, Some(&session)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_as400(&refresh(&h, "c1", C1_SECRET, &rt).await, "invalid_grant", "after logout");
    // The operator ends the user's sessions (`gatehouse sessions revoke --user alice`).
    let rt = h.tokens("openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    use gatehouse_idp::clock::Clock as _;
    let master = gatehouse_idp::settings::MasterKey([7; 32]);
    let backchannel = gatehouse_idp::admin::backchannel(&h.store, ISSUER, &master, h.clock.now(), 0).await.unwrap();
    gatehouse_idp::admin::revoke_sessions(
        &h.store,
        &backchannel,
        gatehouse_idp::admin::SessionSelector::User("alice".into()),
        now(&h),
    )
    .await
    .unwrap();
    assert_as400(&refresh(&h, "c1", C1_SECRET, &rt).await, "invalid_grant", "after the sessions were revoked");
}

#[tokio::test]
async fn oauth_rt10_tampered_truncated_or_foreign_refresh_tokens_are_invalid_grant() {
    let h = Harness::new().await;
    let rt = h.tokens("openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    let other = Harness::new().await;
    let foreign = other.tokens("openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    let mut flipped = rt.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    for (what, token) in [
        ("one character changed", String::from_utf8(flipped).unwrap()),
        ("truncated", rt[..rt.len() - 1].to_owned()),
        ("extended", format!("{rt}A")),
        ("another deployment's", foreign),
        ("empty", String::new()),
        ("long", "A".repeat(4000)),
    ] {
        assert_as400(
            &refresh(&h, "c1", C1_SECRET, &token).await,
            if token.is_empty() { "invalid_request" } else { "invalid_grant" },
            what,
        );
    }
    // Larger than a token endpoint body may be: 413, before any parsing.
    assert_eq!(refresh(&h, "c1", C1_SECRET, &"A".repeat(100_000)).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(refresh(&h, "c1", C1_SECRET, &rt).await.status, StatusCode::OK, "the real one still works");
}

#[tokio::test]
async fn oauth_rt11_the_refreshed_id_token_keeps_iss_sub_and_auth_time_and_drops_the_nonce() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid offline_access").await;
    let (_, first) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(first["nonce"], "n-1");
    h.clock.advance(100);
    let reply = refresh(&h, "c1", C1_SECRET, tokens["refresh_token"].as_str().unwrap()).await;
    let (_, second) = jwt_parts(reply.json()["id_token"].as_str().unwrap());
    for claim in ["iss", "sub", "auth_time", "aud", "sid"] {
        assert_eq!(first[claim], second[claim], "{claim}");
    }
    assert!(second.get("nonce").is_none());
    assert!(second["iat"].as_i64() > first["iat"].as_i64());
}

// ---------------------------------------------------------------------------------------------------------------
// D6. PAR

#[tokio::test]
async fn oauth_par01_pushing_needs_client_authentication() {
    let h = Harness::new().await;
    let challenge = challenge();
    let form = [
        ("response_type", "code"),
        ("client_id", "c1"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let none = h.post_form("/par", &form, &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.oauth_error(), "invalid_client");
    let wrong = h.post_form("/par", &form[1..], &[("authorization", &basic("c1", "wrong"))]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.oauth_error(), "invalid_client");
    assert!(wrong.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic"));
}

#[tokio::test]
async fn oauth_par02_a_request_uri_cannot_be_pushed() {
    let h = Harness::new().await;
    assert_as400(
        &push(&h, CALLBACK, &[("request_uri", "urn:ietf:params:oauth:request_uri:x")]).await,
        "invalid_request",
        "request_uri",
    );
}

#[tokio::test]
async fn oauth_par03_the_answer_is_201_json_no_store_with_a_random_request_uri() {
    let h = Harness::new().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let reply = push(&h, CALLBACK, &[]).await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_json(&reply, "PAR");
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-cache, no-store");
        let body = reply.json();
        let request_uri = body["request_uri"].as_str().unwrap().to_owned();
        let random = request_uri.strip_prefix("urn:ietf:params:oauth:request_uri:").expect("the RFC 9126 prefix");
        assert!(b64::decode(random).is_some_and(|bytes| bytes.len() * 8 >= 96), "≥ 96 random bits: {random}");
        assert!((5..=600).contains(&body["expires_in"].as_i64().unwrap()));
        assert!(seen.insert(request_uri));
    }
}

#[tokio::test]
async fn oauth_par04_a_pushed_request_is_validated_in_full() {
    let h = Harness::new().await;
    let challenge = challenge();
    let c1 = basic("c1", C1_SECRET);
    for (what, form, error) in [
        (
            "scope",
            vec![
                ("response_type", "code"),
                ("redirect_uri", CALLBACK),
                ("scope", "openid admin"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
            "invalid_scope",
        ),
        (
            "redirect_uri",
            vec![
                ("response_type", "code"),
                ("redirect_uri", "https://evil.test/cb"),
                ("scope", "openid"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        ("PKCE", vec![("response_type", "code"), ("redirect_uri", CALLBACK), ("scope", "openid")], "invalid_request"),
        (
            "response_type",
            vec![
                ("response_type", "token"),
                ("redirect_uri", CALLBACK),
                ("scope", "openid"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
            "unsupported_response_type",
        ),
        (
            "prompt",
            vec![
                ("response_type", "code"),
                ("redirect_uri", CALLBACK),
                ("scope", "openid"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("prompt", "none login"),
            ],
            "invalid_request",
        ),
    ] {
        assert_as400(&h.post_form("/par", &form, &[("authorization", &c1)]).await, error, what);
    }
}

#[tokio::test]
async fn oauth_par05_par06_other_methods_are_405_and_huge_bodies_413() {
    let h = Harness::new().await;
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let reply = h.send(Request::builder().method(method).uri("/par").body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let big = format!("response_type=code&scope={}", "a".repeat(2 * 1024 * 1024));
    let reply = h
        .send(
            Request::post("/par")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, basic("c1", C1_SECRET))
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

async fn pushed_uri(h: &Harness) -> String {
    push(h, CALLBACK, &[]).await.json()["request_uri"].as_str().unwrap().to_owned()
}

fn use_uri(client: &str, request_uri: &str) -> String {
    format!("/authorize?client_id={client}&request_uri={}", enc(request_uri))
}

/// PAR08, PAR09, PAR10, PAR13: another client's, an expired, a used and a guessed `request_uri` all get the same
/// error page (the pushed request, and with it the validated redirect URI, is gone: nothing to redirect to).
#[tokio::test]
async fn oauth_par08_par09_par10_par13_foreign_expired_used_or_guessed_request_uris_get_one_error_page() {
    let h = Harness::new().await;
    let mut pages = Vec::new();
    // PAR08
    let uri = pushed_uri(&h).await;
    pages.push(("another client", h.get(&use_uri("c2", &uri), None).await));
    // PAR09
    let uri = pushed_uri(&h).await;
    h.clock.advance(61);
    pages.push(("expired", h.get(&use_uri("c1", &uri), None).await));
    // PAR10: after a completed flow.
    let uri = pushed_uri(&h).await;
    let done = log_in_at(&h, &use_uri("c1", &uri)).await;
    assert!(done.param("code").is_some());
    pages.push(("used", h.get(&use_uri("c1", &uri), None).await));
    // PAR13
    let guess = format!("urn:ietf:params:oauth:request_uri:{}", b64::encode([42u8; 32]));
    pages.push(("guessed", h.get(&use_uri("c1", &guess), None).await));
    let reference = pages[1].1.text();
    for (what, page) in &pages {
        assert_error_page(page, what);
        assert_eq!(page.text(), reference, "{what}: one constant answer");
    }
}

#[tokio::test]
async fn oauth_par11_front_channel_parameters_never_change_a_pushed_request() {
    let h = Harness::new().await;
    let uri = pushed_uri(&h).await;
    let other = challenge();
    for extra in [
        "&scope=openid%20api".to_owned(),
        format!("&redirect_uri={}", enc("https://evil.test/cb")),
        format!("&code_challenge={other}&code_challenge_method=S256"),
        "&prompt=none".to_owned(),
    ] {
        let reply = h.get(&format!("{}{extra}", use_uri("c1", &uri)), None).await;
        assert_error_page(&reply, &extra);
    }
    // NO-SIDE-EFFECT: the pushed request is still there, unchanged.
    let reply = log_in_at(&h, &use_uri("c1", &uri)).await;
    assert_eq!(reply.param("state").as_deref(), Some("st"));
    assert!(reply.location().as_str().starts_with(&format!("{CALLBACK}?")));
}

#[tokio::test]
async fn oauth_par12_required_par_refuses_front_channel_requests() {
    let h = Harness::with(|s| s.require_pushed_authorization_requests = true, None).await;
    assert_az_redirect(&h.get(&authorize("c1", CALLBACK, &challenge(), ""), None).await, "invalid_request", "global");
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["require_pushed_authorization_requests"], true);
    // Per client.
    let h = Harness::new().await;
    let mut record = client("parc", ClientAuthMethod::None, &[GrantType::AuthorizationCode], &["openid"]);
    record.require_pushed_authorization_requests = true;
    gatehouse_idp::admin::add_client(&h.store, record).await.unwrap();
    assert_az_redirect(
        &h.get(&authorize("parc", CALLBACK, &challenge(), ""), None).await,
        "invalid_request",
        "per client",
    );
    assert_eq!(h.get(&authorize("c1", CALLBACK, &challenge(), ""), None).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------------------------
// D7. Client authentication (private_key_jwt)

struct Pkjwt {
    h: Harness,
    key: DpopKey,
}

impl Pkjwt {
    async fn new() -> Self {
        let key = DpopKey::generate().unwrap();
        let mut jwk = key.jwk().clone();
        jwk.kid = Some("k1".into());
        let h = Harness::with(|_| {}, Some(gatehouse_proto::JwkSet { keys: vec![jwk] })).await;
        Self { h, key }
    }

    fn claims(&self) -> Value {
        json!({"iss": "pkjwt", "sub": "pkjwt", "aud": ISSUER, "jti": jti(), "exp": now(&self.h) + 60, "iat": now(&self.h)})
    }

    fn assertion(&self, claims: &Value) -> String {
        sign(&self.key, &json!({"alg": "ES256", "kid": "k1"}), claims)
    }

    async fn present(&self, path: &str, assertion: &str) -> Reply {
        let mut form = vec![
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
        ];
        let challenge = challenge();
        match path {
            "/token" => form.push(("grant_type", "client_credentials")),
            "/par" => form.extend([
                ("response_type", "code"),
                ("redirect_uri", CALLBACK),
                ("scope", "openid"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ]),
            _ => form.push(("token", "anything")),
        }
        self.h.post_form(path, &form, &[]).await
    }

    #[track_caller]
    fn assert_invalid_client(reply: &Reply, what: &str) {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.text());
        assert_eq!(reply.oauth_error(), "invalid_client", "{what}");
        assert_eq!(
            reply.json()["error_description"],
            "client authentication failed",
            "{what}: one generic description"
        );
    }
}

#[tokio::test]
async fn oauth_ca01_ca02_dd8_only_the_issuer_as_one_string_is_an_accepted_audience() {
    let p = Pkjwt::new().await;
    let ok = p.present("/token", &p.assertion(&p.claims())).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    for path in ["/token", "/introspect", "/revoke"] {
        for aud in [
            json!("https://id.test/token"),
            json!("https://id.test/par"),
            json!("https://id.test/"),
            json!([ISSUER]),
            json!([ISSUER, "https://id.test/token"]),
            json!("https://evil.test"),
        ] {
            let mut claims = p.claims();
            claims["aud"] = aud.clone();
            Pkjwt::assert_invalid_client(&p.present(path, &p.assertion(&claims)).await, &format!("{path} aud {aud}"));
        }
    }
}

#[tokio::test]
async fn oauth_ca03_an_assertion_is_good_once() {
    let p = Pkjwt::new().await;
    let assertion = p.assertion(&p.claims());
    assert_eq!(p.present("/token", &assertion).await.status, StatusCode::OK);
    Pkjwt::assert_invalid_client(&p.present("/token", &assertion).await, "replay");
}

#[tokio::test]
async fn oauth_ca04_ca05_iss_sub_and_lifetime_are_checked() {
    let p = Pkjwt::new().await;
    let change = |name: &str, value: Value| {
        let mut claims = p.claims();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value;
        }
        claims
    };
    for (what, claims) in [
        ("CA04 iss is another client", change("iss", "c1".into())),
        ("CA04 sub is another client", change("sub", "c1".into())),
        ("CA04 no sub", change("sub", Value::Null)),
        ("CA04 no iss", change("iss", Value::Null)),
        ("CA05 exp a year ahead", change("exp", (now(&p.h) + 365 * 86_400).into())),
        ("CA05 no exp", change("exp", Value::Null)),
        ("CA05 expired", change("exp", (now(&p.h) - 600).into())),
        ("CA05 no jti", change("jti", Value::Null)),
    ] {
        Pkjwt::assert_invalid_client(&p.present("/token", &p.assertion(&claims)).await, what);
    }
}

/// RFC 8725 §3.11: a JWT of another kind is no client assertion, even signed by the client's key with
/// assertion-shaped claims.
#[tokio::test]
async fn oauth_ca06_other_kinds_of_jwt_are_not_client_assertions() {
    let p = Pkjwt::new().await;
    let typed = |typ: &str| sign(&p.key, &json!({"alg": "ES256", "kid": "k1", "typ": typ}), &p.claims());
    let id_token = p.h.tokens("openid").await["id_token"].as_str().unwrap().to_owned();
    let dpop_proof = p.key.proof("POST", TOKEN_URL, None, None, now(&p.h));
    for (what, assertion) in [
        ("an ID token of the token service", id_token),
        ("a DPoP proof by the client's key", dpop_proof),
        ("typed dpop+jwt", typed("dpop+jwt")),
        ("typed as a request object", typed("oauth-authz-req+jwt")),
        ("typed at+jwt", typed("at+jwt")),
        ("typed logout+jwt", typed("logout+jwt")),
    ] {
        Pkjwt::assert_invalid_client(&p.present("/token", &assertion).await, what);
    }
    // The expected spellings are fine.
    for typ in ["JWT", "client-authentication+jwt"] {
        assert_eq!(p.present("/token", &typed(typ)).await.status, StatusCode::OK, "{typ}");
    }
}

#[tokio::test]
async fn oauth_ca07_two_authentication_methods_at_once_are_invalid_request() {
    let p = Pkjwt::new().await;
    let reply =
        p.h.post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &p.assertion(&p.claims())),
            ],
            &[("authorization", &basic("pkjwt", "x"))],
        )
        .await;
    assert_as400(&reply, "invalid_request", "Basic and client_assertion");
    let both_secrets =
        p.h.post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", "m2m"), ("client_secret", M2M_SECRET)],
            &[("authorization", &basic("m2m", M2M_SECRET))],
        )
        .await;
    assert_as400(&both_secrets, "invalid_request", "Basic and client_secret");
}

#[tokio::test]
async fn oauth_ca08_grant_and_response_types_are_limited_per_client() {
    let h = Harness::new().await;
    assert_as400(
        &h.token_basic(
            "c1",
            C1_SECRET,
            &[("grant_type", "password"), ("username", "alice"), ("password", ALICE_PASSWORD)],
        )
        .await,
        "unsupported_grant_type",
        "password",
    );
    assert_as400(
        &h.token_basic("c1", C1_SECRET, &[("grant_type", "client_credentials")]).await,
        "unauthorized_client",
        "client_credentials",
    );
    assert_as400(
        &h.token_basic("c1", C1_SECRET, &[("grant_type", "urn:ietf:params:oauth:grant-type:device_code")]).await,
        "unsupported_grant_type",
        "device code",
    );
    for response_type in ["token", "id_token", "code id_token", "code token"] {
        let uri = authorize("c1", CALLBACK, &challenge(), "")
            .replace("response_type=code", &format!("response_type={}", enc(response_type)));
        assert_az_redirect(&h.get(&uri, None).await, "unsupported_response_type", response_type);
    }
    // m2m may not use the code flow.
    let mut m2m_uri = authorize("m2m", CALLBACK, &challenge(), "");
    m2m_uri.push_str("&x=1");
    assert!(h.get(&m2m_uri, None).await.headers.get(header::LOCATION).is_none(), "no registered redirect URI: a page");
}

// ---------------------------------------------------------------------------------------------------------------
// D8. Open redirectors

#[tokio::test]
async fn oauth_or01_an_unknown_client_never_redirects() {
    let h = Harness::new().await;
    for client in ["nope", "", "c1%00"] {
        let reply = h.get(&authorize(client, "https://evil.example/cb", &challenge(), ""), None).await;
        assert_error_page(&reply, client);
    }
    let reply =
        h.get(&format!("/authorize?redirect_uri={}&response_type=code", enc("https://evil.example/cb")), None).await;
    assert_error_page(&reply, "no client_id");
}

#[tokio::test]
async fn oauth_or02_errors_of_a_valid_request_go_only_to_the_registered_uri() {
    let h = Harness::new().await;
    let uri = authorize("c1", CALLBACK, &challenge(), "").replace("scope=openid", "scope=nonexistent");
    assert_az_redirect(&h.get(&uri, None).await, "invalid_scope", "invalid scope");
    let uri = authorize("c1", "https://evil.example/cb", &challenge(), "").replace("scope=openid", "scope=nonexistent");
    assert_error_page(&h.get(&uri, None).await, "invalid scope and an unregistered redirect");
}

#[tokio::test]
async fn oauth_or04_post_logout_redirects_go_only_to_registered_uris() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, session) = h.login("c1", "", &verifier).await;
    let id_token = h
        .token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose()))
        .await
        .json()["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for target in
        ["https://evil.example/", "https://app.test/signed-out/", "https://app.test/signed-out?x=1", "//evil.example"]
    {
        let reply = h
            .get(
                &format!("/end_session?id_token_hint={id_token}&post_logout_redirect_uri={}", enc(target)),
                Some(&session),
            )
            .await;
        assert_error_page(&reply, target);
        let reply = h.get(&format!("/end_session?client_id=c1&post_logout_redirect_uri={}", enc(target)), None).await;
        assert_error_page(&reply, target);
    }
    let reply = h
        .get(
            &format!("/end_session?id_token_hint={id_token}&post_logout_redirect_uri={}&state=s", enc(C1_POST_LOGOUT)),
            Some(&session),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location().as_str(), format!("{C1_POST_LOGOUT}?state=s"));
}

/// The token service's pages take no return target: `return_to`, `next`, `continue`, … are ignored, whatever
/// their value (the §Z.2 payloads), and never become a `Location` or a link.
#[tokio::test]
async fn oauth_or05_no_op_page_follows_a_return_parameter() {
    let h = Harness::new().await;
    let challenge = challenge();
    for payload in Z2_PAYLOADS {
        for name in ["return_to", "next", "continue", "returnUrl", "redirect", "goto"] {
            let extra = format!("&{name}={}", enc(payload));
            for uri in [
                authorize("c1", CALLBACK, &challenge, &extra),
                format!("/end_session?client_id=c1{extra}"),
                format!("/authorize?client_id=nope{extra}"),
                format!("/nowhere?x=1{extra}"),
            ] {
                let reply = h.get(&uri, None).await;
                if let Some(location) = reply.headers.get(header::LOCATION) {
                    let location = location.to_str().unwrap();
                    assert!(location.starts_with(CALLBACK), "{uri} → {location}");
                }
                assert!(!reply.text().contains("evil.example"), "{uri} reflected the payload");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// D9. Browser-facing pages

/// The token service's HTML pages: the login form, an error page, the sign-out confirmation and the signed-out
/// page.
async fn op_pages(h: &Harness) -> Vec<(&'static str, Reply)> {
    let login = h.get(&authorize("c1", CALLBACK, &challenge(), ""), None).await;
    let error = h.get(&authorize("nope", CALLBACK, &challenge(), ""), None).await;
    let (_, session) = h.login("c1", "", &verifier()).await;
    let confirm = h.get("/end_session", Some(&session)).await;
    let signed_out = h.get("/end_session", None).await;
    vec![("login", login), ("error", error), ("logout confirmation", confirm), ("signed out", signed_out)]
}

#[tokio::test]
async fn oauth_ui01_ui03_op_pages_cannot_be_framed_and_send_no_referrer() {
    let h = Harness::new().await;
    for (what, page) in op_pages(&h).await {
        assert!(page.text().contains("<html") || page.text().contains("<!DOCTYPE"), "{what}: a page");
        let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY", "{what}");
        assert_eq!(page.headers[header::REFERRER_POLICY], "no-referrer", "{what}");
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store", "{what}");
    }
    // The redirect that carries the code.
    let (reply, _) = h.login("c1", "", &verifier()).await;
    assert_eq!(reply.headers[header::REFERRER_POLICY], "no-referrer");
    // No third-party resources on the login page.
    let login = h.get(&authorize("c1", CALLBACK, &challenge(), ""), None).await.text();
    for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!login.contains(attribute), "a third-party resource: {attribute}");
    }
}

/// RFC 9700 §4.12: credentials are posted; the answer is a 303 (never 307/308, which would re-post them).
/// (The sign-out confirmation's POST answers 303 too: `idp/tests/logout.rs`.)
#[tokio::test]
async fn oauth_ui05_the_login_post_answers_303() {
    let h = Harness::new().await;
    let (reply, _) = h.login("c1", "", &verifier()).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let (reply, _) = h.login("c1", "prompt=login", &verifier()).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    // A failed login is a page, not a redirect of any kind.
    let page = h.get(&authorize("c1", CALLBACK, &challenge(), ""), None).await;
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    let failed = h
        .post_form(
            "/login",
            &[("username", "alice"), ("password", "wrong"), ("csrf", &csrf), ("request", &request)],
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    assert!(failed.headers.get(header::LOCATION).is_none());
}

#[tokio::test]
async fn oauth_ui06_ui07_no_cors_anywhere_on_the_token_service() {
    let h = Harness::new().await;
    for (method, path) in [
        ("OPTIONS", "/authorize"),
        ("GET", "/authorize?client_id=c1"),
        ("OPTIONS", "/token"),
        ("POST", "/token"),
        ("GET", "/jwks"),
        ("GET", "/.well-known/openid-configuration"),
        ("OPTIONS", "/userinfo"),
        ("GET", "/userinfo"),
        ("OPTIONS", "/par"),
    ] {
        for origin in ["https://evil.example", "null"] {
            let reply = h
                .send(
                    Request::builder()
                        .method(method)
                        .uri(path)
                        .header(header::ORIGIN, origin)
                        .header("access-control-request-method", "POST")
                        .header("access-control-request-headers", "authorization, dpop")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            // The public documents (JWKS, discovery) may be read by any origin: `*`, never with credentials and
            // never a reflected origin; everything else has no CORS at all.
            let public = path == "/jwks" || path.starts_with("/.well-known/");
            match reply.headers.get("access-control-allow-origin") {
                Some(value) if public => assert_eq!(value, "*", "{path} from {origin}"),
                Some(value) => panic!("{method} {path} from {origin}: access-control-allow-origin {value:?}"),
                None => {}
            }
            for name in
                ["access-control-allow-credentials", "access-control-allow-headers", "access-control-allow-methods"]
            {
                assert!(reply.headers.get(name).is_none(), "{method} {path} from {origin}: {name}");
            }
        }
    }
}

/// RFC 9700 §2.1.2, §4.3.2: no token in any URL; only `response_type=code` with the query response mode.
#[tokio::test]
async fn oauth_ui08_no_token_ever_travels_in_a_url() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, session) = h.login("c1", "scope=openid%20offline_access%20api", &verifier).await;
    let mut locations = vec![reply.location().to_string()];
    let tokens =
        h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await.json();
    locations.push(
        h.get(&authorize("c1", CALLBACK, &challenge(), "&prompt=none"), Some(&session)).await.location().to_string(),
    );
    locations.push(h.get(&authorize("c1", CALLBACK, &challenge(), "&prompt=none"), None).await.location().to_string());
    let logout = h
        .get(
            &format!(
                "/end_session?id_token_hint={}&post_logout_redirect_uri={}",
                tokens["id_token"].as_str().unwrap(),
                enc(C1_POST_LOGOUT)
            ),
            Some(&session),
        )
        .await;
    locations.push(logout.location().to_string());
    for location in &locations {
        for name in ["access_token", "id_token", "refresh_token", "token_type"] {
            assert!(!location.contains(name), "{location}");
        }
        for token in ["access_token", "id_token", "refresh_token"] {
            assert!(!location.contains(tokens[token].as_str().unwrap()), "{location}");
        }
    }
    for (what, extra) in [("implicit", "response_type=token"), ("hybrid", "response_type=code%20id_token")] {
        let uri = authorize("c1", CALLBACK, &challenge(), "").replace("response_type=code", extra);
        assert_az_redirect(&h.get(&uri, None).await, "unsupported_response_type", what);
    }
    let fragment = h.get(&authorize("c1", CALLBACK, &challenge(), "&response_mode=fragment"), None).await;
    assert_az_redirect(&fragment, "invalid_request", "response_mode=fragment");
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["response_types_supported"], json!(["code"]));
}
