//! Pushed authorization requests (RFC 9126), introspection (RFC 7662) and revocation (RFC 7009): catalogue
//! §D6 OAUTH-PAR rows and §E EP-INT / EP-REV rows.

mod support;

use axum::http::{StatusCode, header};
use base64::Engine;
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::pkce::CodeChallenge;
use support::*;

fn basic(client: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}")))
}

async fn push(h: &Harness, extra: &[(&str, &str)], auth: &[(&str, &str)], challenge: &str) -> Reply {
    let mut form = vec![
        ("response_type", "code"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid offline_access"),
        ("state", "st"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    form.extend_from_slice(extra);
    h.post_form("/par", &form, auth).await
}

#[tokio::test]
async fn oauth_par03_push_then_authorize_then_redeem() {
    let h = Harness::new().await;
    let verifier = verifier();
    let challenge = CodeChallenge::s256(&verifier);
    let reply = push(&h, &[], &[("authorization", &basic("c1", C1_SECRET))], challenge.as_str()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-cache, no-store");
    let request_uri = reply.json()["request_uri"].as_str().unwrap().to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:") && request_uri.len() > 60);
    let expires_in = reply.json()["expires_in"].as_i64().unwrap();
    assert!((5..=600).contains(&expires_in));
    let uri = format!("/authorize?client_id=c1&request_uri={}", enc(&request_uri));
    let page = h.get(&uri, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    let reply = h
        .post_form(
            "/login",
            &[("username", "alice"), ("password", ALICE_PASSWORD), ("csrf", &csrf), ("request", &request)],
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(reply.param("state").as_deref(), Some("st"));
    let code = reply.param("code").unwrap();
    let tokens = h
        .token_basic(
            "c1",
            C1_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", verifier.expose()),
            ],
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK);
    // OAUTH-PAR10: single use.
    let again = h.get(&uri, None).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.headers.get(header::LOCATION).is_none());
}

#[tokio::test]
async fn oauth_par01_02_04_08_09_11_13_refusals() {
    let h = Harness::new().await;
    let challenge = CodeChallenge::s256(&verifier());
    let c1 = [("authorization", basic("c1", C1_SECRET))];
    let c1: Vec<(&str, &str)> = c1.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // PAR01: no / wrong client authentication.
    assert_eq!(push(&h, &[], &[], challenge.as_str()).await.oauth_error(), "invalid_client");
    assert_eq!(
        push(&h, &[], &[("authorization", &basic("c1", "wrong"))], challenge.as_str()).await.status,
        StatusCode::UNAUTHORIZED
    );
    // PAR02: request_uri in the body.
    assert_eq!(push(&h, &[("request_uri", "urn:x")], &c1, challenge.as_str()).await.oauth_error(), "invalid_request");
    // PAR04: validated at push time.
    assert_eq!(push(&h, &[("scope", "admin")], &c1, challenge.as_str()).await.status, StatusCode::BAD_REQUEST);
    let bad_redirect = h
        .post_form(
            "/par",
            &[
                ("response_type", "code"),
                ("redirect_uri", "https://evil.test/cb"),
                ("scope", "openid"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
            &c1,
        )
        .await;
    assert_eq!(bad_redirect.oauth_error(), "invalid_request");
    let no_pkce =
        h.post_form("/par", &[("response_type", "code"), ("redirect_uri", CALLBACK), ("scope", "openid")], &c1).await;
    assert_eq!(no_pkce.oauth_error(), "invalid_request");
    // PAR05: wrong method.
    assert_eq!(h.get("/par", None).await.status, StatusCode::METHOD_NOT_ALLOWED);
    let ok = push(&h, &[], &c1, challenge.as_str()).await.json()["request_uri"].as_str().unwrap().to_owned();
    // PAR11: front-channel parameters may not override the pushed ones.
    let overridden =
        h.get(&format!("/authorize?client_id=c1&request_uri={}&scope=openid%20email", enc(&ok)), None).await;
    assert_eq!(overridden.status, StatusCode::BAD_REQUEST);
    // PAR08: another client_id.
    let ok = push(&h, &[], &c1, challenge.as_str()).await.json()["request_uri"].as_str().unwrap().to_owned();
    assert_eq!(
        h.get(&format!("/authorize?client_id=c2&request_uri={}", enc(&ok)), None).await.status,
        StatusCode::BAD_REQUEST
    );
    // PAR09: expiry.
    let ok = push(&h, &[], &c1, challenge.as_str()).await.json()["request_uri"].as_str().unwrap().to_owned();
    h.clock.advance(61);
    assert_eq!(
        h.get(&format!("/authorize?client_id=c1&request_uri={}", enc(&ok)), None).await.status,
        StatusCode::BAD_REQUEST
    );
    // PAR13: guessing.
    let guess = "urn:ietf:params:oauth:request_uri:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        h.get(&format!("/authorize?client_id=c1&request_uri={}", enc(guess)), None).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn oauth_par12_required_par_refuses_front_channel_requests() {
    let h = Harness::with(|s| s.require_pushed_authorization_requests = true, None).await;
    let reply = h.get(&authorize_uri("c1", "state=s", &verifier()), None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.param("error").as_deref(), Some("invalid_request"));
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["require_pushed_authorization_requests"], true);
    assert_eq!(doc["pushed_authorization_request_endpoint"], "https://id.test/par");
}

#[tokio::test]
async fn dpop_par_binds_the_code_to_the_key() {
    let h = Harness::new().await;
    let verifier = verifier();
    let challenge = CodeChallenge::s256(&verifier);
    let key = DpopKey::generate().unwrap();
    use gatehouse_idp::clock::Clock;
    let proof = key.proof("POST", "https://id.test/par", None, None, h.clock.now());
    let reply =
        push(&h, &[], &[("authorization", &basic("c1", C1_SECRET)), ("dpop", &proof)], challenge.as_str()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let request_uri = reply.json()["request_uri"].as_str().unwrap().to_owned();
    let page = h.get(&format!("/authorize?client_id=c1&request_uri={}", enc(&request_uri)), None).await;
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    let reply = h
        .post_form(
            "/login",
            &[("username", "alice"), ("password", ALICE_PASSWORD), ("csrf", &csrf), ("request", &request)],
            &[("cookie", &cookie)],
        )
        .await;
    let code = reply.param("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    // Without a proof of the same key the code is refused (and spent).
    let other = DpopKey::generate().unwrap();
    let wrong = h
        .post_form(
            "/token",
            &form,
            &[
                ("authorization", &basic("c1", C1_SECRET)),
                ("dpop", &other.proof("POST", "https://id.test/token", None, None, h.clock.now())),
            ],
        )
        .await;
    assert_eq!(wrong.oauth_error(), "invalid_dpop_proof");
}

#[tokio::test]
async fn cs_f2_14_dpop_jkt_must_match_the_par_proof() {
    let h = Harness::new().await;
    let challenge = CodeChallenge::s256(&verifier());
    let key = DpopKey::generate().unwrap();
    let other = DpopKey::generate().unwrap();
    use gatehouse_idp::clock::Clock;
    let proof = key.proof("POST", "https://id.test/par", None, None, h.clock.now());
    let reply = push(
        &h,
        &[("dpop_jkt", other.jkt())],
        &[("authorization", &basic("c1", C1_SECRET)), ("dpop", &proof)],
        challenge.as_str(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.oauth_error(), "invalid_dpop_proof");
}

#[tokio::test]
async fn jwt_02_case_variant_none_is_refused_at_userinfo() {
    let h = Harness::new().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = gatehouse_proto::b64::encode(format!(r#"{{"alg":"{alg}","typ":"at+jwt"}}"#));
        let body =
            gatehouse_proto::b64::encode(r#"{"iss":"https://id.test","sub":"x","scope":"openid","exp":4000000000}"#);
        for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
            assert_eq!(h.userinfo(&token).await.status, StatusCode::UNAUTHORIZED, "{alg}");
        }
    }
}

#[tokio::test]
async fn ep_int_introspection() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid offline_access api").await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let introspect = |client: &'static str, secret: &'static str, token: String, hint: Option<&'static str>| {
        let h = &h;
        async move {
            let mut form = vec![("token", token.as_str())];
            if let Some(hint) = hint {
                form.push(("token_type_hint", hint));
            }
            h.post_form("/introspect", &form, &[("authorization", &basic(client, secret))]).await
        }
    };
    let answer = introspect("c1", C1_SECRET, at.to_owned(), None).await;
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    let answer = answer.json();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "c1");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["iss"], ISSUER);
    // EP-INT05: a lying hint changes nothing.
    assert_eq!(introspect("c1", C1_SECRET, at.to_owned(), Some("refresh_token")).await.json()["active"], true);
    let answer = introspect("c1", C1_SECRET, rt.to_owned(), Some("access_token")).await.json();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "refresh_token");
    // EP-INT03: c2 is not the owner, but it may request the api scope, so it may introspect the access token
    // (a resource-server role) — not the refresh token.
    let by_c2 =
        h.post_form("/introspect", &[("token", rt), ("client_id", "c2"), ("client_secret", C2_SECRET)], &[]).await;
    assert_eq!(by_c2.json(), serde_json::json!({"active": false}));
    // The m2m client is registered for api: access token visible; refresh token not.
    assert_eq!(introspect("m2m", M2M_SECRET, at.to_owned(), None).await.json()["active"], true);
    // EP-INT02: garbage, ID token, expired.
    for token in ["garbage".to_owned(), tokens["id_token"].as_str().unwrap().to_owned()] {
        assert_eq!(introspect("c1", C1_SECRET, token, None).await.json(), serde_json::json!({"active": false}));
    }
    // EP-INT01: no credentials.
    assert_eq!(h.post_form("/introspect", &[("token", at)], &[]).await.status, StatusCode::UNAUTHORIZED);
    h.clock.advance(301);
    assert_eq!(introspect("c1", C1_SECRET, at.to_owned(), None).await.json(), serde_json::json!({"active": false}));
}

#[tokio::test]
async fn ep_int04_dpop_metadata() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    use gatehouse_idp::clock::Clock;
    let proof = key.proof("POST", "https://id.test/token", None, None, h.clock.now());
    let reply = h
        .post_form(
            "/token",
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic("m2m", M2M_SECRET)), ("dpop", &proof)],
        )
        .await;
    let at = reply.json()["access_token"].as_str().unwrap().to_owned();
    let answer =
        h.post_form("/introspect", &[("token", &at)], &[("authorization", &basic("m2m", M2M_SECRET))]).await.json();
    assert_eq!(answer["token_type"], "DPoP");
    assert_eq!(answer["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn ep_rev_revocation() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid offline_access api").await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let c1 = basic("c1", C1_SECRET);
    // EP-REV01: client authentication required.
    assert_eq!(h.post_form("/revoke", &[("token", rt)], &[]).await.status, StatusCode::UNAUTHORIZED);
    // EP-REV02: unknown token → 200.
    assert_eq!(h.post_form("/revoke", &[("token", "garbage")], &[("authorization", &c1)]).await.status, StatusCode::OK);
    // EP-REV05: unknown hint ignored.
    assert_eq!(
        h.post_form("/revoke", &[("token", "garbage"), ("token_type_hint", "foo")], &[("authorization", &c1)])
            .await
            .status,
        StatusCode::OK
    );
    // EP-REV03: another client cannot revoke it.
    assert_eq!(
        h.post_form("/revoke", &[("token", rt), ("client_id", "c2"), ("client_secret", C2_SECRET)], &[]).await.status,
        StatusCode::OK
    );
    let still = h.post_form("/introspect", &[("token", rt)], &[("authorization", &c1)]).await.json();
    assert_eq!(still["active"], true, "not revoked by another client");
    // EP-REV04: revoking the refresh token kills the grant's access tokens.
    assert_eq!(h.post_form("/revoke", &[("token", rt)], &[("authorization", &c1)]).await.status, StatusCode::OK);
    assert_eq!(h.post_form("/introspect", &[("token", rt)], &[("authorization", &c1)]).await.json()["active"], false);
    assert_eq!(h.post_form("/introspect", &[("token", at)], &[("authorization", &c1)]).await.json()["active"], false);
    assert_eq!(h.userinfo(at).await.status, StatusCode::UNAUTHORIZED);
    let refresh = h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!(refresh.oauth_error(), "invalid_grant");
    // Access-token revocation: deny list.
    let m2m = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials")]).await.json();
    let m2m_at = m2m["access_token"].as_str().unwrap();
    let m2m_auth = basic("m2m", M2M_SECRET);
    assert_eq!(
        h.post_form("/introspect", &[("token", m2m_at)], &[("authorization", &m2m_auth)]).await.json()["active"],
        true
    );
    assert_eq!(
        h.post_form("/revoke", &[("token", m2m_at)], &[("authorization", &m2m_auth)]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.post_form("/introspect", &[("token", m2m_at)], &[("authorization", &m2m_auth)]).await.json()["active"],
        false
    );
}
