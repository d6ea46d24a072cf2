//! Component tests of the token service over its real router on a loopback socket: discovery, authorize + login,
//! token grants, client authentication, userinfo. Test names carry catalogue IDs where one applies.

mod support;

use axum::http::{StatusCode, header};
use gatehouse_idp::settings::ApiResource;
use gatehouse_proto::pkce::CodeChallenge;
use support::*;

fn code_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK), ("code_verifier", verifier)]
}

#[tokio::test]
async fn discovery_tells_the_truth() {
    let h = Harness::new().await;
    let reply = h.get("/.well-known/openid-configuration", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["token_endpoint"], "https://id.test/token");
    assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert!(!doc["id_token_signing_alg_values_supported"].as_array().unwrap().iter().any(|a| a == "none"));
    let jwks = h.get("/jwks", None).await.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(keys.iter().any(|k| k["alg"] == "RS256") && keys.iter().any(|k| k["alg"] == "ES256"));
    assert!(keys.iter().all(|k| k.get("d").is_none()), "no private material in JWKS");
}

#[tokio::test]
async fn cs_op_b01_code_flow_happy_path_with_id_token_and_userinfo() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, session) = h.login("c1", "scope=openid%20profile%20email%20api&nonce=n-1&state=s-1", &verifier).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.location().as_str().starts_with(CALLBACK));
    assert_eq!(reply.param("state").as_deref(), Some("s-1"));
    assert_eq!(reply.param("iss").as_deref(), Some(ISSUER), "RFC 9207 iss");
    assert!(session.starts_with("__Host-gh-session="), "secure __Host- session cookie: {session}");
    let set_cookie =
        reply.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
    let session_cookie = set_cookie.iter().find(|c| c.starts_with("__Host-gh-session")).unwrap();
    assert!(
        session_cookie.contains("HttpOnly")
            && session_cookie.contains("Secure")
            && session_cookie.contains("SameSite=Lax")
    );
    let code = reply.param("code").unwrap();
    assert!(code.len() >= 43, "≥ 256 bits of entropy");
    let reply = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens.get("refresh_token").is_none(), "no offline_access requested");
    let (id_header, id) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_header["alg"], "RS256");
    assert!(id_header["kid"].is_string());
    assert_eq!(id["iss"], ISSUER);
    assert_eq!(id["aud"], "c1");
    assert_eq!(id["azp"], "c1");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["auth_time"], START);
    assert!(id["sid"].is_string());
    assert_eq!(id["name"], "Alice Liddell");
    let (at_header, at) = jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(at_header["typ"], "at+jwt");
    assert_eq!(at_header["alg"], "ES256");
    assert_eq!(at["aud"], "https://api.test");
    assert_eq!(at["client_id"], "c1");
    assert_eq!(at["sub"], id["sub"]);
    assert!(at["jti"].is_string() && at["exp"].as_i64().unwrap() > at["iat"].as_i64().unwrap());
    let info = h.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::OK);
    let info = info.json();
    assert_eq!(info["sub"], id["sub"]);
    assert_eq!(info["email"], "alice@example.com");
}

#[tokio::test]
async fn cs_op_b08_no_nonce_means_no_nonce_claim_and_b22_unknown_params_ignored() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, _) = h.login("c1", "scope=openid&extra=foobar&display=popup&ui_locales=se", &verifier).await;
    let code = reply.param("code").unwrap();
    let tokens = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await.json();
    let (_, id) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert!(id.get("nonce").is_none());
    assert!(id.get("name").is_none(), "profile not granted");
}

#[tokio::test]
async fn cs_op_b30_authorize_by_post() {
    let h = Harness::new().await;
    let verifier = verifier();
    let challenge = CodeChallenge::s256(&verifier);
    let reply = h
        .post_form(
            "/authorize",
            &[
                ("response_type", "code"),
                ("client_id", "c1"),
                ("redirect_uri", CALLBACK),
                ("scope", "openid"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("name=\"password\""));
}

#[tokio::test]
async fn cs_op_b29_unregistered_redirect_uri_is_an_error_page_not_a_redirect() {
    let h = Harness::new().await;
    let verifier = verifier();
    let uri = authorize_uri("c1", "", &verifier).replace(&enc(CALLBACK), &enc("https://evil.test/cb"));
    let reply = h.get(&uri, None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
    assert!(reply.text().contains("not registered"));
    let reply = h.get(&authorize_uri("nobody", "", &verifier), None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
}

#[tokio::test]
async fn duplicate_authorize_parameters_are_refused_on_a_page() {
    let h = Harness::new().await;
    let uri = format!("{}&redirect_uri={}", authorize_uri("c1", "", &verifier()), enc("https://evil.test/cb"));
    let reply = h.get(&uri, None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
}

#[tokio::test]
async fn oauth_pk01_missing_pkce_is_redirected_with_iss_and_state() {
    let h = Harness::new().await;
    let uri =
        format!("/authorize?response_type=code&client_id=c1&redirect_uri={}&scope=openid&state=xyz", enc(CALLBACK));
    let reply = h.get(&uri, None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.param("error").as_deref(), Some("invalid_request"));
    assert_eq!(reply.param("state").as_deref(), Some("xyz"));
    assert_eq!(reply.param("iss").as_deref(), Some(ISSUER));
    assert!(reply.location().fragment().is_none(), "errors in the query, never the fragment");
}

#[tokio::test]
async fn cs_op_b18_prompt_none_without_session_is_login_required() {
    let h = Harness::new().await;
    let reply = h.get(&authorize_uri("c1", "prompt=none&state=s", &verifier()), None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.param("error").as_deref(), Some("login_required"));
    assert_eq!(reply.param("iss").as_deref(), Some(ISSUER));
}

#[tokio::test]
async fn cs_op_b19_b17_b20_b21_sso_prompt_and_max_age() {
    let h = Harness::new().await;
    let (_, session) = h.login("c1", "", &verifier()).await;
    // B19: prompt=none with a session → immediate code.
    h.clock.advance(5);
    let reply = h.get(&authorize_uri("c1", "prompt=none", &verifier()), Some(&session)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.param("code").is_some(), "{:?}", reply.location());
    // B21: a generous max_age needs no login.
    let reply = h.get(&authorize_uri("c1", "max_age=10000", &verifier()), Some(&session)).await;
    assert!(reply.param("code").is_some());
    // B20: max_age=1 after 5 s forces a login (the form), and with prompt=none it is login_required.
    let reply = h.get(&authorize_uri("c1", "max_age=1", &verifier()), Some(&session)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("name=\"password\""));
    let reply = h.get(&authorize_uri("c1", "max_age=1&prompt=none", &verifier()), Some(&session)).await;
    assert_eq!(reply.param("error").as_deref(), Some("login_required"));
    // B17: prompt=login shows the form even with a session.
    let reply = h.get(&authorize_uri("c1", "prompt=login", &verifier()), Some(&session)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn cs_op_b17_prompt_login_gives_a_newer_auth_time() {
    let h = Harness::new().await;
    let first = h.tokens("openid").await;
    h.clock.advance(10);
    let verifier = verifier();
    let (reply, _) = h.login("c1", "prompt=login", &verifier).await;
    let code = reply.param("code").unwrap();
    let second = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await.json();
    let auth_time = |t: &serde_json::Value| jwt_parts(t["id_token"].as_str().unwrap()).1["auth_time"].as_i64().unwrap();
    assert!(auth_time(&second) > auth_time(&first));
}

#[tokio::test]
async fn tampered_or_foreign_session_cookie_is_ignored() {
    let h = Harness::new().await;
    let (_, session) = h.login("c1", "", &verifier()).await;
    let tampered = format!("{}A", session);
    let reply = h.get(&authorize_uri("c1", "prompt=none", &verifier()), Some(&tampered)).await;
    assert_eq!(reply.param("error").as_deref(), Some("login_required"));
}

#[tokio::test]
async fn login_failures_are_generic_and_throttled() {
    let h = Harness::with(|s| s.login.max_failures_per_username = 3, None).await;
    let page = h.get(&authorize_uri("c1", "", &verifier()), None).await;
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    let attempt = |user: &'static str, password: &'static str| {
        let (csrf, request, cookie) = (csrf.clone(), request.clone(), cookie.clone());
        let h = &h;
        async move {
            h.post_form(
                "/login",
                &[("username", user), ("password", password), ("csrf", &csrf), ("request", &request)],
                &[("cookie", &cookie)],
            )
            .await
        }
    };
    let wrong = attempt("alice", "nope").await;
    let unknown = attempt("mallory", "nope").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains("Invalid username or password."));
    assert!(unknown.text().contains("Invalid username or password."), "no user enumeration");
    attempt("alice", "nope").await;
    attempt("alice", "nope").await;
    let locked = attempt("alice", ALICE_PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "locked even with the right password");
}

#[tokio::test]
async fn login_csrf_is_enforced() {
    let h = Harness::new().await;
    let page = h.get(&authorize_uri("c1", "", &verifier()), None).await;
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    let form = |csrf: &str| {
        vec![
            ("username", "alice".to_owned()),
            ("password", ALICE_PASSWORD.to_owned()),
            ("csrf", csrf.to_owned()),
            ("request", request.clone()),
        ]
    };
    let post = |form: Vec<(&'static str, String)>, cookie: Option<String>| {
        let h = &h;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
            h.post_form("/login", &form, &headers).await
        }
    };
    assert_eq!(post(form(&csrf), None).await.status, StatusCode::BAD_REQUEST, "missing cookie");
    assert_eq!(post(form("forged"), Some(cookie.clone())).await.status, StatusCode::BAD_REQUEST, "wrong form token");
    assert_eq!(post(form(&csrf), Some("__Host-gh-csrf=forged".into())).await.status, StatusCode::BAD_REQUEST);
    let mut tampered = form(&csrf);
    tampered[3].1.push('A');
    assert_eq!(post(tampered, Some(cookie.clone())).await.status, StatusCode::BAD_REQUEST, "tampered request");
    assert_eq!(post(form(&csrf), Some(cookie)).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn login_page_headers_forbid_framing_and_caching() {
    let h = Harness::new().await;
    let page = h.get(&authorize_uri("c1", "login_hint=alice", &verifier()), None).await;
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(page.text().contains("value=\"alice\""), "login_hint prefills the username");
    let csrf = page
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.contains("gh-csrf"))
        .unwrap();
    assert!(csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"));
}

#[tokio::test]
async fn cs_op_b28_oauth_ac02_code_reuse_revokes_what_it_issued() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, _) = h.login("c1", "scope=openid%20offline_access%20api", &verifier).await;
    let code = reply.param("code").unwrap();
    let first = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_eq!(first.status, StatusCode::OK);
    let first = first.json();
    h.clock.advance(30);
    let second = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.oauth_error(), "invalid_grant");
    let info = h.userinfo(first["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::UNAUTHORIZED, "access token from the reused code is revoked");
    assert!(info.headers[header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
    let refresh = h
        .token_basic(
            "c1",
            C1_SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(refresh.oauth_error(), "invalid_grant", "refresh token from the reused code is revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauth_ac03_concurrent_redemption_yields_one_success() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, _) = h.login("c1", "", &verifier).await;
    let code = reply.param("code").unwrap();
    let body = serde_urlencoded::to_string(code_form(&code, verifier.expose())).unwrap();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("c1:{C1_SECRET}"))
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let router = h.router.clone();
            let request = axum::http::Request::post("/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", basic.clone())
                .body(axum::body::Body::from(body.clone()))
                .unwrap();
            tokio::spawn(async move { support::socket::exchange(router, request).await.status() })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn oauth_ac04_ac05_ru08_pk06_pk07_code_bindings() {
    let h = Harness::new().await;
    // Expired code (61 s).
    let v = verifier();
    let (reply, _) = h.login("c1", "", &v).await;
    let code = reply.param("code").unwrap();
    h.clock.advance(61);
    assert_eq!(h.token_basic("c1", C1_SECRET, &code_form(&code, v.expose())).await.oauth_error(), "invalid_grant");
    // Another client redeems c1's code.
    let (reply, _) = h.login("c1", "", &v).await;
    let code = reply.param("code").unwrap();
    let stolen = h
        .post_form(
            "/token",
            &[
                ("client_id", "c2"),
                ("client_secret", C2_SECRET),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", v.expose()),
            ],
            &[],
        )
        .await;
    assert_eq!(stolen.oauth_error(), "invalid_grant");
    // Different redirect_uri.
    let (reply, _) = h.login("c1", "", &v).await;
    let code = reply.param("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.test/other"),
        ("code_verifier", v.expose()),
    ];
    assert_eq!(h.token_basic("c1", C1_SECRET, &form).await.oauth_error(), "invalid_grant");
    // Missing and wrong verifiers.
    for bad in [
        None,
        Some("short"),
        Some(CodeChallenge::s256(&v).as_str().to_owned().leak() as &str),
        Some(verifier().expose().to_owned().leak() as &str),
    ] {
        let (reply, _) = h.login("c1", "", &v).await;
        let code = reply.param("code").unwrap();
        let mut form = vec![("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)];
        if let Some(bad) = bad {
            form.push(("code_verifier", bad));
        }
        let reply = h.token_basic("c1", C1_SECRET, &form).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.oauth_error(), "invalid_grant", "verifier {bad:?}");
    }
}

#[tokio::test]
async fn oauth_rt_refresh_rotation_grace_reuse_and_binding() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid offline_access api").await;
    let rt1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |rt: String, client: &'static str, secret: &'static str| {
        let h = &h;
        async move { h.token_basic(client, secret, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await }
    };
    // RT01: another client cannot use (or burn) it.
    let other = h
        .post_form(
            "/token",
            &[
                ("client_id", "c2"),
                ("client_secret", C2_SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt1),
            ],
            &[],
        )
        .await;
    assert_eq!(other.oauth_error(), "invalid_grant");
    // RT02: no client authentication.
    let anonymous = h.post_form("/token", &[("grant_type", "refresh_token"), ("refresh_token", &rt1)], &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // Rotation: RT1 → RT2, with a fresh access token and ID token (same sub, auth_time kept, no nonce).
    let second = refresh(rt1.clone(), "c1", C1_SECRET).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let second = second.json();
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let (_, id1) = jwt_parts(tokens["id_token"].as_str().unwrap());
    let (_, id2) = jwt_parts(second["id_token"].as_str().unwrap());
    assert_eq!(id1["sub"], id2["sub"]);
    assert_eq!(id1["auth_time"], id2["auth_time"]);
    assert!(id2.get("nonce").is_none());
    assert_eq!(h.userinfo(second["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
    // RT04 (DD1): a confidential client's retry with RT1 inside the grace window succeeds.
    h.clock.advance(30);
    let retry = refresh(rt1.clone(), "c1", C1_SECRET).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    let rt3 = retry.json()["refresh_token"].as_str().unwrap().to_owned();
    // RT03: scope can only shrink.
    let wider = h
        .token_basic(
            "c1",
            C1_SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt3), ("scope", "openid email")],
        )
        .await;
    assert_eq!(wider.oauth_error(), "invalid_scope");
    // RT05: RT1 again after the grace window → family revoked, RT3 dead too.
    h.clock.advance(120);
    assert_eq!(refresh(rt1, "c1", C1_SECRET).await.oauth_error(), "invalid_grant");
    assert_eq!(refresh(rt3, "c1", C1_SECRET).await.oauth_error(), "invalid_grant", "family revoked");
    // RT10: tampered token.
    assert_eq!(refresh(format!("{rt2}x"), "c1", C1_SECRET).await.oauth_error(), "invalid_grant");
}

#[tokio::test]
async fn oauth_rt05_public_client_reuse_revokes_immediately() {
    let h = Harness::new().await;
    let verifier = verifier();
    let (reply, _) = h.login("pub", "scope=openid%20offline_access", &verifier).await;
    let code = reply.param("code").unwrap();
    let mut form = code_form(&code, verifier.expose());
    form.push(("client_id", "pub"));
    let tokens = h.post_form("/token", &form, &[]).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let rt1 = tokens.json()["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |rt: &str| {
        let form = [("client_id", "pub"), ("grant_type", "refresh_token"), ("refresh_token", rt)]
            .map(|(k, v)| (k, v.to_owned()));
        let h = &h;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.post_form("/token", &form, &[]).await
        }
    };
    let second = refresh(&rt1).await;
    assert_eq!(second.status, StatusCode::OK);
    let rt2 = second.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh(&rt1).await.oauth_error(), "invalid_grant", "no grace for public clients");
    assert_eq!(refresh(&rt2).await.oauth_error(), "invalid_grant", "family revoked");
}

#[tokio::test]
async fn oauth_rt07_absolute_lifetime_ends_refresh() {
    let h = Harness::with(
        |s| {
            s.tokens.refresh_token_absolute_ttl = 1000;
            s.tokens.refresh_token_idle_ttl = 600;
        },
        None,
    )
    .await;
    let tokens = h.tokens("openid offline_access").await;
    let mut rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        h.clock.advance(400);
        let reply = h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
        assert_eq!(reply.status, StatusCode::OK);
        rt = reply.json()["refresh_token"].as_str().unwrap().to_owned();
    }
    h.clock.advance(400); // 1200 s after login: past the absolute lifetime though used within the idle time
    let reply = h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
    assert_eq!(reply.oauth_error(), "invalid_grant");
}

#[tokio::test]
async fn client_credentials_issue_api_tokens_only() {
    let h = Harness::new().await;
    let reply = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials"), ("scope", "api")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let (header, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["sub"], "m2m");
    assert_eq!(claims["client_id"], "m2m");
    assert_eq!(claims["aud"], "https://api.test");
    let default_scope = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials")]).await;
    assert_eq!(default_scope.json()["scope"], "api");
    let openid = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials"), ("scope", "openid")]).await;
    assert_eq!(openid.oauth_error(), "invalid_scope");
    let not_allowed = h.token_basic("c1", C1_SECRET, &[("grant_type", "client_credentials")]).await;
    assert_eq!(not_allowed.oauth_error(), "unauthorized_client");
    let unknown = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "password")]).await;
    assert_eq!(unknown.oauth_error(), "unsupported_grant_type");
    let missing = h.token_basic("m2m", M2M_SECRET, &[]).await;
    assert_eq!(missing.oauth_error(), "invalid_request");
}

#[tokio::test]
async fn client_authentication_failures() {
    let h = Harness::new().await;
    let form = [("grant_type", "client_credentials")];
    let wrong = h.token_basic("m2m", "wrong-secret", &form).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.oauth_error(), "invalid_client");
    assert!(wrong.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic"), "RFC 6749 §5.2");
    let unknown = h.token_basic("ghost", "x", &form).await;
    assert_eq!(unknown.oauth_error(), "invalid_client");
    // m2m is registered for client_secret_basic: the same secret in the body is refused.
    let post = h
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", "m2m"), ("client_secret", M2M_SECRET)],
            &[],
        )
        .await;
    assert_eq!(post.oauth_error(), "invalid_client");
    // A confidential client cannot pretend to be public.
    let none = h.post_form("/token", &[("grant_type", "client_credentials"), ("client_id", "m2m")], &[]).await;
    assert_eq!(none.oauth_error(), "invalid_client");
    // Two methods at once.
    let both = h
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", "m2m"), ("client_secret", "x")],
            &[("authorization", "Basic bTJtOng=")],
        )
        .await;
    assert_eq!(both.oauth_error(), "invalid_request");
    // Not a form; duplicate parameters.
    let json = h
        .send(
            axum::http::Request::post("/token")
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(json.oauth_error(), "invalid_request");
    let dup = h
        .token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials"), ("grant_type", "client_credentials")])
        .await;
    assert_eq!(dup.oauth_error(), "invalid_request");
}

#[tokio::test]
async fn userinfo_refuses_bad_tokens_with_bearer_challenges() {
    let h = Harness::new().await;
    let none = h.get("/userinfo", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.headers.contains_key(header::WWW_AUTHENTICATE));
    for bad in ["garbage", "a.b.c", "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0."] {
        let reply = h.userinfo(bad).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(reply.oauth_error(), "invalid_token");
    }
    // A client-credentials token has no openid scope.
    let m2m = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials")]).await.json();
    assert_eq!(h.userinfo(m2m["access_token"].as_str().unwrap()).await.status, StatusCode::FORBIDDEN);
    // Expired.
    let tokens = h.tokens("openid").await;
    h.clock.advance(301);
    assert_eq!(h.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    // An ID token is not an access token (typ).
    assert_eq!(h.userinfo(tokens["id_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn private_key_jwt_assertions() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let doc =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let mut jwk = gatehouse_proto::Jwk::ec("P-256", &point[1..33], &point[33..]);
    jwk.kid = Some("k1".into());
    let h = Harness::with(|_| {}, Some(gatehouse_proto::JwkSet { keys: vec![jwk] })).await;
    let key = jsonwebtoken::EncodingKey::from_ec_der(doc.as_ref());
    let sign = |claims: serde_json::Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let assertion = |aud: serde_json::Value, jti: &str, exp: i64| {
        sign(serde_json::json!({"iss": "pkjwt", "sub": "pkjwt", "aud": aud, "jti": jti, "exp": exp, "iat": START}))
    };
    let call = |assertion: String| {
        let h = &h;
        async move {
            h.post_form(
                "/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", &assertion),
                ],
                &[],
            )
            .await
        }
    };
    let ok = call(assertion(ISSUER.into(), "j1", START + 60)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    // OAUTH-CA (jti replay): the same assertion again.
    assert_eq!(call(assertion(ISSUER.into(), "j1", START + 60)).await.oauth_error(), "invalid_client");
    // CA02 / DD8: token endpoint URL or an array as aud.
    assert_eq!(call(assertion("https://id.test/token".into(), "j2", START + 60)).await.oauth_error(), "invalid_client");
    assert_eq!(call(assertion(serde_json::json!([ISSUER]), "j3", START + 60)).await.oauth_error(), "invalid_client");
    // Expired, and too long-lived.
    assert_eq!(call(assertion(ISSUER.into(), "j4", START - 120)).await.oauth_error(), "invalid_client");
    assert_eq!(call(assertion(ISSUER.into(), "j5", START + 86_400)).await.oauth_error(), "invalid_client");
    // alg none and HS256 signed with a guessable key.
    let none = format!(
        "{}.{}.",
        gatehouse_proto::b64::encode(br#"{"alg":"none","kid":"k1"}"#),
        gatehouse_proto::b64::encode(
            serde_json::json!({"iss":"pkjwt","sub":"pkjwt","aud":ISSUER,"jti":"j6","exp":START+60}).to_string()
        )
    );
    assert_eq!(call(none).await.oauth_error(), "invalid_client");
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"iss":"pkjwt","sub":"pkjwt","aud":ISSUER,"jti":"j7","exp":START+60}),
        &jsonwebtoken::EncodingKey::from_secret(b"k1"),
    )
    .unwrap();
    assert_eq!(call(hs).await.oauth_error(), "invalid_client");
}

#[tokio::test]
async fn unknown_paths_and_oversized_bodies_are_clean_errors() {
    let h = Harness::new().await;
    assert_eq!(h.get("/nope", None).await.status, StatusCode::NOT_FOUND);
    let big = "a=".to_owned() + &"x".repeat(200 * 1024);
    let reply = h
        .send(
            axum::http::Request::post("/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// RFC 8707: `resource` at the token endpoint narrows the access token to the named API(s); an unknown,
/// relative or fragment-carrying resource is `invalid_target` and costs the client nothing (the refresh token
/// still works).
#[tokio::test]
async fn rfc8707_resource_indicators_narrow_the_audience() {
    let files = "https://files.test";
    let h =
        Harness::with(|s| s.apis.push(ApiResource { audience: files.into(), scopes: vec!["api".into()] }), None).await;
    let tokens = h.tokens("openid offline_access api").await;
    let (_, wide) = jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(wide["aud"], serde_json::json!(["https://api.test", files]), "no resource: every API of the scope");
    let mut rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    for bad in ["https://evil.test", "/files", "https://files.test#x", "https://files.test/"] {
        let reply = h
            .token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("resource", bad)])
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.oauth_error(), "invalid_target", "{bad}");
    }
    let narrow = h
        .token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("resource", files)])
        .await;
    assert_eq!(narrow.status, StatusCode::OK, "{}", narrow.text());
    let narrow = narrow.json();
    let (_, claims) = jwt_parts(narrow["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], files);
    assert_eq!(narrow["scope"], "openid offline_access api");
    rt = narrow["refresh_token"].as_str().unwrap().to_owned();
    // The next refresh without `resource` is wide again: the grant keeps its scope.
    let again = h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
    let (_, claims) = jwt_parts(again.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], serde_json::json!(["https://api.test", files]));
    // client_credentials too, with `resource` repeated.
    let m2m = h
        .token_basic(
            "m2m",
            M2M_SECRET,
            &[("grant_type", "client_credentials"), ("resource", files), ("resource", files)],
        )
        .await;
    assert_eq!(m2m.status, StatusCode::OK, "{}", m2m.text());
    let (_, claims) = jwt_parts(m2m.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], files);
}
