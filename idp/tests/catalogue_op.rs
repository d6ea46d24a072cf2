//! The security catalogue's §A (OpenID Foundation conformance suite, OP tests: Basic, Config, Dynamic, FAPI 2.0
//! Security Profile with its DPoP negative sub-tests) and §E (other OP endpoints) rows as black-box tests of the
//! token service, each named after the row(s) it proves (`/work/shared/security/CATALOGUE.md`; the coverage
//! table is `SECURITY.md`). Rows already proven by `flows.rs`, `dpop.rs`, `par_introspect_revoke.rs`,
//! `logout.rs` or `key_rotation.rs` are named in the table and not repeated here unless the catalogue's
//! Expected column asks for more than that test checks.
//!
//! Run: `cargo test -p gatehouse-idp --test catalogue_op`.

#[path = "support/op.rs"]
mod op;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::pkce::CodeChallenge;
use gatehouse_proto::vocab::SigningAlg;
use op::*;
use serde_json::{Value, json};
use support::*;

fn code_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK), ("code_verifier", verifier)]
}

/// c1 (client_secret_basic) redeems `code` with a proof of `key`.
async fn redeem_dpop(h: &Harness, code: &str, verifier: &str, key: &DpopKey) -> Reply {
    let proof = key.proof("POST", TOKEN_URL, None, None, now(h));
    token_with(h, &code_form(code, verifier), &[("authorization", &basic("c1", C1_SECRET)), ("dpop", &proof)]).await
}

/// Alice's DPoP-bound tokens for c1, from a PAR flow whose PAR request carried a proof of `key`.
async fn dpop_tokens(h: &Harness, key: &DpopKey) -> Value {
    let verifier = support::verifier();
    let proof = key.proof("POST", PAR_URL, None, None, now(h));
    let reply =
        par_login(h, "c1", &par_form(&verifier, &[]), &[("authorization", &basic("c1", C1_SECRET)), ("dpop", &proof)])
            .await;
    let tokens = redeem_dpop(h, &reply.param("code").unwrap(), verifier.expose(), key).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    tokens.json()
}

/// `GET /userinfo` with a correct proof of `key` for `token`.
async fn userinfo_dpop(h: &Harness, key: &DpopKey, token: &str) -> Reply {
    let proof = key.proof("GET", USERINFO_URL, Some(token), None, now(h));
    userinfo_with(h, "DPoP", token, "dpop", &[&proof], "").await
}

/// c2 (client_secret_post) logs alice in through the form and redeems the code.
async fn c2_tokens(h: &Harness, scope: &str) -> Value {
    let verifier = support::verifier();
    let (reply, _) = h.login("c2", &format!("scope={}", enc(scope)), &verifier).await;
    let code = reply.param("code").unwrap();
    let mut form = code_form(&code, verifier.expose());
    form.extend([("client_id", "c2"), ("client_secret", C2_SECRET)]);
    let reply = h.post_form("/token", &form, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

fn c1_auth() -> String {
    basic("c1", C1_SECRET)
}

// =========================================================================================================
// A1. Basic OP

#[tokio::test]
async fn cs_op_b02_missing_response_type_is_redirected_as_invalid_request() {
    let h = Harness::new().await;
    let uri = authorize_uri("c1", "state=s-b02", &verifier()).replace("response_type=code&", "");
    let reply = h.get(&uri, None).await;
    assert_redirected_error(&reply, CALLBACK, "invalid_request", Some("s-b02"), "no response_type");
}

#[tokio::test]
async fn cs_op_b03_the_id_token_is_rs256_and_verifies_with_the_jwks_key_of_its_kid() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let (header, claims) = jwt_parts(id_token);
    assert_eq!(header["alg"], "RS256", "the default without a registered alg");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(h.get("/jwks", None).await.json()).unwrap();
    let jwk = jwks.find(header["kid"].as_str().unwrap()).expect("the kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false; // the harness clock is not the wall clock
    validation.set_audience(&["c1"]);
    validation.set_issuer(&[ISSUER]);
    let verified =
        jsonwebtoken::decode::<Value>(id_token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .expect("signature verifies with the published key");
    assert_eq!(verified.claims, claims);
}

#[tokio::test]
async fn cs_op_b05_b06_b07_userinfo_by_get_and_post_header_but_not_in_the_body() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid profile").await;
    let at = tokens["access_token"].as_str().unwrap();
    let sub = jwt_parts(tokens["id_token"].as_str().unwrap()).1["sub"].clone();
    let get = h.userinfo(at).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_json(&get, "GET");
    assert_eq!(get.json()["sub"], sub);
    let post = h
        .send(
            Request::post("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {at}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(post.status, StatusCode::OK, "{}", post.text());
    assert_eq!(post.json()["sub"], sub);
    // B07: a token in the form body (RFC 6750 §2.2) is not accepted: 401 with a challenge, no claims.
    let body = h.post_form("/userinfo", &[("access_token", at)], &[]).await;
    assert_eq!(body.status, StatusCode::UNAUTHORIZED);
    assert!(body.headers.contains_key(header::WWW_AUTHENTICATE));
    assert!(body.json().get("sub").is_none());
}

#[tokio::test]
async fn cs_op_b09_to_b13_scopes_release_their_claims() {
    let h = Harness::new().await;
    let claims = |scope: &'static str| {
        let h = &h;
        async move {
            let tokens = h.tokens(scope).await;
            h.userinfo(tokens["access_token"].as_str().unwrap()).await.json()
        }
    };
    let profile = claims("openid profile").await;
    assert_eq!(profile["name"], "Alice Liddell");
    assert!(profile.get("email").is_none());
    let email = claims("openid email").await;
    assert_eq!(email["email"], "alice@example.com");
    assert_eq!(email["email_verified"], true);
    assert!(email.get("name").is_none());
    let all = claims("openid profile email").await;
    assert!(all["name"].is_string() && all["email"].is_string() && all["sub"].is_string());
    // address and phone are not offered (the suite skips scopes that discovery does not list).
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    let scopes = doc["scopes_supported"].as_array().unwrap();
    assert!(!scopes.iter().any(|s| s == "address" || s == "phone"));
}

#[tokio::test]
async fn cs_op_b14_cs_f2_09_b15_b16_b22_b24_b25_b26_other_orders_and_optional_parameters_change_nothing() {
    let h = Harness::new().await;
    // B14 / F2-09: scopes reversed and parameters reordered, through the login form and the token endpoint.
    let verifier = support::verifier();
    let challenge = CodeChallenge::s256(&verifier);
    let uri = format!(
        "/authorize?state=s&code_challenge_method=S256&scope=api%20offline_access%20openid&code_challenge={}&redirect_uri={}&client_id=c1&response_type=code",
        challenge.as_str(),
        enc(CALLBACK)
    );
    let page = h.get(&uri, None).await;
    let reply = submit_login(&h, &page).await;
    let session = cookie_pair(&reply.headers, "gh-session");
    let tokens = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    assert!(tokens.json()["refresh_token"].is_string());
    // B15, B16, B22, B24, B25, B26: page, popup, an unknown parameter, login_hint, locales, acr_values.
    for extra in [
        "display=page",
        "display=popup",
        "extra=foobar",
        "login_hint=alice",
        "ui_locales=se",
        "claims_locales=se",
        "acr_values=urn%3Amace%3Aincommon%3Aiap%3Asilver",
    ] {
        let fresh = h.get(&authorize_uri("c1", &format!("{extra}&state=x"), &verifier), None).await;
        assert_eq!(fresh.status, StatusCode::OK, "{extra}: the login page, no error");
        assert!(fresh.text().contains("name=\"password\""), "{extra}");
        let signed_in = h.get(&authorize_uri("c1", &format!("{extra}&state=x"), &verifier), Some(&session)).await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{extra}");
        assert!(signed_in.param("code").is_some(), "{extra}: {}", signed_in.location());
    }
}

#[tokio::test]
async fn cs_op_b18_b19_b20_b21_prompt_none_and_max_age_keep_or_renew_auth_time() {
    let h = Harness::new().await;
    // B18: prompt=none without an IdP session: login_required, redirected with state and iss.
    let reply = h.get(&authorize_uri("c1", "prompt=none&state=s-b18", &support::verifier()), None).await;
    assert_redirected_error(&reply, CALLBACK, "login_required", Some("s-b18"), "B18");
    let id_claims = |reply: Reply, verifier: gatehouse_proto::pkce::CodeVerifier| {
        let h = &h;
        async move {
            assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
            let code = reply.param("code").expect("a code");
            let tokens = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await.json();
            jwt_parts(tokens["id_token"].as_str().unwrap()).1
        }
    };
    let verifier = support::verifier();
    let (reply, session) = h.login("c1", "", &verifier).await;
    let first = id_claims(reply, verifier).await;
    // B19: prompt=none with the session: a code at once, same sub and auth_time.
    h.clock.advance(5);
    let verifier = support::verifier();
    let reply = h.get(&authorize_uri("c1", "prompt=none", &verifier), Some(&session)).await;
    let second = id_claims(reply, verifier).await;
    assert_eq!((&second["sub"], &second["auth_time"]), (&first["sub"], &first["auth_time"]), "B19");
    // B21: max_age=15000 then 10000: no login, auth_time present and equal.
    for max_age in [15000, 10000] {
        let verifier = support::verifier();
        let reply = h.get(&authorize_uri("c1", &format!("max_age={max_age}"), &verifier), Some(&session)).await;
        let claims = id_claims(reply, verifier).await;
        assert_eq!(claims["auth_time"], first["auth_time"], "B21 max_age={max_age}");
    }
    // B20: max_age=1 five seconds later: the login form, and a newer auth_time after it.
    let verifier = support::verifier();
    let page = h.get(&authorize_uri("c1", "max_age=1", &verifier), Some(&session)).await;
    assert!(page.text().contains("name=\"password\""), "B20: re-authentication");
    let claims = id_claims(submit_login(&h, &page).await, verifier).await;
    assert!(claims["auth_time"].as_i64().unwrap() > first["auth_time"].as_i64().unwrap(), "B20: newer auth_time");
}

#[tokio::test]
async fn cs_op_b30_an_authorization_request_by_post_completes() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let challenge = CodeChallenge::s256(&verifier);
    let form = [
        ("response_type", "code"),
        ("client_id", "c1"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid"),
        ("state", "s-b30"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let page = h.post_form("/authorize", &form, &[]).await;
    let reply = submit_login(&h, &page).await;
    assert_eq!(reply.param("state").as_deref(), Some("s-b30"));
    let tokens = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
}

#[tokio::test]
async fn cs_op_b23_id_token_hint_with_prompt_none_returns_the_same_sub() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let (reply, session) = h.login("c1", "nonce=n", &verifier).await;
    let first =
        h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await.json();
    let hint = first["id_token"].as_str().unwrap();
    let verifier2 = support::verifier();
    let reply = h
        .get(&authorize_uri("c1", &format!("prompt=none&id_token_hint={}", enc(hint)), &verifier2), Some(&session))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let second =
        h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier2.expose())).await.json();
    assert_eq!(jwt_parts(second["id_token"].as_str().unwrap()).1["sub"], jwt_parts(hint).1["sub"]);
}

#[tokio::test]
async fn cs_op_b27_a_code_redeemed_twice_at_once_is_invalid_grant_and_revokes() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let (reply, _) = h.login("c1", "scope=openid%20api", &verifier).await;
    let code = reply.param("code").unwrap();
    let first = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_as_400(&second, &["invalid_grant"], "second redemption");
    assert!(second.json().get("access_token").is_none());
    let info = h.userinfo(first.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::UNAUTHORIZED, "the first redemption's token is revoked");
}

#[tokio::test]
async fn cs_op_b31_client_secret_post_happy_flow() {
    let h = Harness::new().await;
    let tokens = c2_tokens(&h, "openid").await;
    let (_, id) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], "c2");
    assert_eq!(h.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cs_op_b32_a_request_object_by_reference_is_request_uri_not_supported() {
    let h = Harness::new().await;
    let uri = authorize_uri("c1", "state=s-b32&request_uri=https%3A%2F%2Fapp.test%2Frequest.jwt", &verifier());
    let reply = h.get(&uri, None).await;
    assert_redirected_error(&reply, CALLBACK, "request_uri_not_supported", Some("s-b32"), "request_uri by reference");
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["request_uri_parameter_supported"], false);
}

#[tokio::test]
async fn cs_op_b33_b35_request_objects_are_refused_and_never_send_the_browser_elsewhere() {
    let h = Harness::new().await;
    let unsigned = format!(
        "{}.{}.",
        gatehouse_proto::b64::encode(br#"{"alg":"none"}"#),
        gatehouse_proto::b64::encode(
            json!({"client_id":"c1","redirect_uri":CALLBACK,"response_type":"code","scope":"openid"}).to_string()
        )
    );
    let uri = authorize_uri("c1", &format!("state=s-b33&request={unsigned}"), &verifier());
    let reply = h.get(&uri, None).await;
    assert_redirected_error(&reply, CALLBACK, "request_not_supported", Some("s-b33"), "B33");
    // B35: an invalid redirect_uri next to a request object is an error page, never a fall-back to the
    // registered URI.
    let uri = uri.replace(&enc(CALLBACK), &enc("https://evil.test/cb"));
    assert_error_page(&h.get(&uri, None).await, "B35");
}

#[tokio::test]
async fn cs_op_b36_refresh_keeps_the_token_type_and_another_clients_token_is_invalid_grant() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let (reply, _) = h.login("c1", "scope=openid%20offline_access&prompt=consent", &verifier).await;
    let tokens =
        h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await.json();
    let rt = tokens["refresh_token"].as_str().unwrap();
    // RFC 6749 App. A.17: refresh-token = 1*VSCHAR.
    assert!(rt.bytes().all(|b| (0x20..=0x7e).contains(&b)));
    let refreshed = h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    assert_eq!(refreshed.json()["token_type"], tokens["token_type"]);
    assert_ne!(refreshed.json()["access_token"], tokens["access_token"]);
    // Client 2's refresh token with client 1's credentials.
    let c2 = c2_tokens(&h, "openid offline_access").await;
    let c2_rt = c2["refresh_token"].as_str().unwrap();
    let stolen = h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", c2_rt)]).await;
    assert_as_400(&stolen, &["invalid_grant"], "c2's refresh token at c1");
    // NO-SIDE-EFFECT: c2 still refreshes with it.
    let own = h
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", c2_rt),
                ("client_id", "c2"),
                ("client_secret", C2_SECRET),
            ],
            &[],
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
}

// =========================================================================================================
// A2. Config OP

#[tokio::test]
async fn cs_op_c01_discovery_document_and_jwks_are_valid() {
    let h = Harness::new().await;
    let reply = h.get("/.well-known/openid-configuration", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_json(&reply, "discovery");
    let doc = reply.json();
    // OIDC Discovery §4.3: the issuer is the URL the document was fetched under (minus the well-known path).
    assert_eq!(doc["issuer"], ISSUER);
    assert!(ISSUER.starts_with("https://"));
    for endpoint in ["authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"] {
        let url = doc[endpoint].as_str().unwrap_or_else(|| panic!("{endpoint} missing"));
        assert!(url.starts_with("https://") && url.starts_with(ISSUER), "{endpoint}: {url}");
    }
    for (name, value) in doc.as_object().unwrap() {
        if name.ends_with("_endpoint") || name == "jwks_uri" {
            assert!(value.as_str().unwrap().starts_with("https://"), "{name} is https");
        }
    }
    assert!(doc["scopes_supported"].as_array().unwrap().iter().any(|s| s == "openid"));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    let algs = doc["id_token_signing_alg_values_supported"].as_array().unwrap();
    assert!(algs.iter().any(|a| a == "RS256") && !algs.iter().any(|a| a == "none"));
    assert!(doc["code_challenge_methods_supported"].is_array());
    // ValidateServerJWKs: every key well-formed, public, with kid, use and alg.
    let jwks = h.get("/jwks", None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_json(&jwks, "jwks");
    for key in jwks.json()["keys"].as_array().unwrap() {
        assert!(key["kid"].is_string() && key["use"] == "sig" && key["alg"].is_string(), "{key}");
        match key["kty"].as_str().unwrap() {
            "RSA" => assert!(key["n"].is_string() && key["e"].is_string()),
            "EC" => assert!(key["crv"] == "P-256" && key["x"].is_string() && key["y"].is_string()),
            other => panic!("unexpected kty {other}"),
        }
    }
}

// =========================================================================================================
// A3. Dynamic OP (the rows that apply without dynamic registration: clients are registered by the operator)

#[tokio::test]
async fn cs_op_d01_the_registered_id_token_alg_is_used() {
    let h = Harness::new().await;
    edit_client(&h, "c2", |c| c.id_token_signed_response_alg = SigningAlg::ES256).await;
    assert_eq!(jwt_parts(h.tokens("openid").await["id_token"].as_str().unwrap()).0["alg"], "RS256", "c1: RS256");
    assert_eq!(jwt_parts(c2_tokens(&h, "openid").await["id_token"].as_str().unwrap()).0["alg"], "ES256", "c2: ES256");
}

#[tokio::test]
async fn cs_op_d03_d04_d05_d06_redirect_uris_match_exactly_with_their_query() {
    let h = Harness::new().await;
    let with_query = "https://app.test/cb?foo=bar";
    edit_client(&h, "c1", |c| c.redirect_uris = vec![CALLBACK.into(), with_query.into()]).await;
    let verifier = support::verifier();
    let base = authorize_uri("c1", "state=s-d", &verifier);
    // D03: two registered, none sent.
    let none = base.replace(&format!("&redirect_uri={}", enc(CALLBACK)), "");
    assert_error_page(&h.get(&none, None).await, "D03");
    // D05: registered ?foo=bar, sent ?foo=baz. D06: registered without a query, sent with one.
    for (sent, row) in [
        ("https://app.test/cb?foo=baz", "D05"),
        ("https://app.test/cb?foo=bar&foo=baz", "D05 (added value)"),
        ("https://app.test/cb", "D05 (query dropped)"),
        (&format!("{CALLBACK}?foo=bar") as &str, "D06"),
    ] {
        let reply = h.get(&base.replace(&enc(CALLBACK), &enc(sent)), None).await;
        assert_error_page(&reply, row);
    }
    // D04: the registered URI with its query, sent identically: success, the query kept.
    let (_, session) = h.login("c1", "state=s-d04", &verifier).await; // a session first
    let reply = h.get(&base.replace(&enc(CALLBACK), &enc(with_query)), Some(&session)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let location = reply.location();
    assert!(location.as_str().starts_with("https://app.test/cb?foo=bar&code="), "{location}");
    assert_eq!(reply.param("foo").as_deref(), Some("bar"));
}

// =========================================================================================================
// A6. FAPI 2.0 Security Profile (PAR + PKCE + DPoP)

#[tokio::test]
async fn cs_f2_01_discovery_lists_fapi_algorithms_and_private_key_jwt() {
    let h = Harness::new().await;
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    let has = |member: &str, value: &str| doc[member].as_array().unwrap().iter().any(|v| v == value);
    assert!(has("token_endpoint_auth_methods_supported", "private_key_jwt"));
    for member in [
        "dpop_signing_alg_values_supported",
        "id_token_signing_alg_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
    ] {
        assert!(has(member, "ES256") || has(member, "PS256") || has(member, "EdDSA"), "{member}: a FAPI alg");
        assert!(!has(member, "none") && !has(member, "HS256"), "{member}");
    }
    assert!(has("code_challenge_methods_supported", "S256"));
    assert!(doc["jwks_uri"].is_string() && doc["token_endpoint"].is_string());
    assert!(doc["pushed_authorization_request_endpoint"].is_string());
}

#[tokio::test]
async fn cs_f2_02_happy_flow_with_par_pkce_dpop_and_the_resource() {
    let h = Harness::new().await;
    let base = serve(&h).await;
    let key = DpopKey::generate().unwrap();
    let verifier = support::verifier();
    let proof = key.proof("POST", PAR_URL, None, None, now(&h));
    let pushed = push(&h, &par_form(&verifier, &[]), &[("authorization", &c1_auth()), ("dpop", &proof)]).await;
    let request_uri = request_uri_of(&pushed);
    assert!((5..=600).contains(&pushed.json()["expires_in"].as_i64().unwrap()));
    let random = request_uri.strip_prefix("urn:ietf:params:oauth:request_uri:").unwrap();
    assert!(random.len() >= 43, "≥ 256 bits: {random}");
    let page = h.get(&par_authorize_uri("c1", &request_uri), None).await;
    let reply = submit_login(&h, &page).await;
    assert_eq!(reply.param("iss").as_deref(), Some(ISSUER), "RFC 9207");
    assert_eq!(reply.param("state").as_deref(), Some("st-par"));
    let code = reply.param("code").expect("code in the query");
    assert!(code.len() >= 43, "≥ 128 bits of length");
    let tokens = redeem_dpop(&h, &code, verifier.expose(), &key).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let tokens = tokens.json();
    assert_eq!(tokens["token_type"], "DPoP");
    let at = tokens["access_token"].as_str().unwrap();
    let (_, claims) = jwt_parts(at);
    assert!(claims["jti"].as_str().unwrap().len() >= 16, "≥ 96 bits of entropy");
    // The resource (userinfo) over a real socket: 200 with a Date header.
    let proof = key.proof("GET", USERINFO_URL, Some(at), None, now(&h));
    let resource = reqwest::Client::new()
        .get(format!("{base}/userinfo"))
        .header("authorization", format!("DPoP {at}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(resource.status(), 200);
    assert!(resource.headers().contains_key("date"), "the resource answer carries Date");
}

#[tokio::test]
async fn cs_f2_03_a_user_who_cancels_is_sent_back_with_access_denied() {
    let h = Harness::new().await;
    let page = h.get(&authorize_uri("c1", "state=s-cancel", &verifier()), None).await;
    assert!(page.text().contains("name=\"cancel\""), "the form has a Cancel button");
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    // A forged cancel (no CSRF cookie) is refused like any other forged form.
    let forged = h.post_form("/login", &[("csrf", &csrf), ("request", &request), ("cancel", "1")], &[]).await;
    assert_error_page(&forged, "cancel without the CSRF cookie");
    let reply =
        h.post_form("/login", &[("csrf", &csrf), ("request", &request), ("cancel", "1")], &[("cookie", &cookie)]).await;
    assert_redirected_error(&reply, CALLBACK, "access_denied", Some("s-cancel"), "cancel");
    assert!(cookie_pair(&reply.headers, "gh-session").is_empty(), "no IdP session started");
}

#[tokio::test]
async fn cs_f2_04_f2_05_par_without_state_or_nonce_succeeds_without_them() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let form = par_form(&verifier, &[("state", ""), ("nonce", "")]);
    let reply = par_login(&h, "c1", &form, &[("authorization", &c1_auth())]).await;
    assert!(reply.param("state").is_none(), "no state returned");
    let tokens = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    let (_, id) = jwt_parts(tokens.json()["id_token"].as_str().unwrap());
    assert!(id.get("nonce").is_none() && id.get("s_hash").is_none());
}

#[tokio::test]
async fn cs_f2_06_f2_07_f2_08_long_nonces_and_states_come_back_intact_or_are_refused() {
    let h = Harness::new().await;
    for (nonce, state) in [("N".repeat(64), "s".to_owned()), ("n".repeat(384), "S".repeat(2000))] {
        let verifier = support::verifier();
        let form = par_form(&verifier, &[("nonce", &nonce), ("state", &state)]);
        let reply = par_login(&h, "c1", &form, &[("authorization", &c1_auth())]).await;
        assert_eq!(reply.param("state").as_deref(), Some(state.as_str()), "state intact");
        let tokens = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
        assert_eq!(jwt_parts(tokens.json()["id_token"].as_str().unwrap()).1["nonce"], nonce.as_str(), "nonce intact");
    }
    // Longer than accepted: invalid_request at PAR, never truncated.
    let verifier = support::verifier();
    for (name, value) in [("state", "S".repeat(3000)), ("nonce", "n".repeat(600))] {
        let reply = push(&h, &par_form(&verifier, &[(name, &value)]), &[("authorization", &c1_auth())]).await;
        assert_as_400(&reply, &["invalid_request"], name);
    }
}

#[tokio::test]
async fn cs_f2_10_the_dpop_scheme_is_case_insensitive_at_the_resource() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let at = dpop_tokens(&h, &key).await["access_token"].as_str().unwrap().to_owned();
    for scheme in ["dPoP", "dpop", "DPOP"] {
        let proof = key.proof("GET", USERINFO_URL, Some(&at), None, now(&h));
        let reply = userinfo_with(&h, scheme, &at, "dpop", &[&proof], "").await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}: {}", reply.text());
    }
}

#[tokio::test]
async fn cs_f2_11_f2_12_f2_13_proofs_with_nbf_exp_or_10_seconds_of_skew_are_accepted() {
    let h = Harness::new().await;
    for (offset, extra) in [(0, true), (-10, false), (10, false)] {
        let key = DpopKey::generate().unwrap();
        let t = now(&h) + offset;
        let claims = |method: &str, htu: &str, at: Option<&str>| {
            let mut claims = proof_claims(method, htu, at, t);
            if extra {
                claims["nbf"] = now(&h).into();
                claims["exp"] = (now(&h) + 300).into();
            }
            claims
        };
        let verifier = support::verifier();
        let par_proof = forge_proof(&key, &proof_header(&key), &claims("POST", PAR_URL, None));
        let reply =
            par_login(&h, "c1", &par_form(&verifier, &[]), &[("authorization", &c1_auth()), ("dpop", &par_proof)])
                .await;
        let token_proof = forge_proof(&key, &proof_header(&key), &claims("POST", TOKEN_URL, None));
        let tokens = token_with(
            &h,
            &code_form(&reply.param("code").unwrap(), verifier.expose()),
            &[("authorization", &c1_auth()), ("dpop", &token_proof)],
        )
        .await;
        assert_eq!(tokens.status, StatusCode::OK, "offset {offset}: {}", tokens.text());
        let at = tokens.json()["access_token"].as_str().unwrap().to_owned();
        let proof = forge_proof(&key, &proof_header(&key), &claims("GET", USERINFO_URL, Some(&at)));
        let reply = userinfo_with(&h, "DPoP", &at, "dpop", &[&proof], "").await;
        assert_eq!(reply.status, StatusCode::OK, "offset {offset}: {}", reply.text());
    }
}

#[tokio::test]
async fn cs_f2_15_a_token_proof_of_another_key_than_the_par_proof_is_refused() {
    let h = Harness::new().await;
    let (k1, k2) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let verifier = support::verifier();
    let proof = k1.proof("POST", PAR_URL, None, None, now(&h));
    let reply =
        par_login(&h, "c1", &par_form(&verifier, &[]), &[("authorization", &c1_auth()), ("dpop", &proof)]).await;
    let code = reply.param("code").unwrap();
    let refused = redeem_dpop(&h, &code, verifier.expose(), &k2).await;
    assert_as_400(&refused, &["invalid_request", "invalid_grant", "invalid_dpop_proof"], "K2 at the token endpoint");
    assert!(refused.json().get("access_token").is_none(), "no token issued");
}

#[tokio::test]
async fn cs_f2_16_a_token_proof_of_another_key_than_dpop_jkt_is_refused() {
    let h = Harness::new().await;
    let (k1, k2) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let verifier = support::verifier();
    let form = par_form(&verifier, &[("dpop_jkt", k1.jkt())]);
    let reply = par_login(&h, "c1", &form, &[("authorization", &c1_auth())]).await;
    let code = reply.param("code").unwrap();
    let refused = redeem_dpop(&h, &code, verifier.expose(), &k2).await;
    assert_as_400(&refused, &["invalid_request", "invalid_grant", "invalid_dpop_proof"], "K2 for dpop_jkt K1");
    assert!(refused.json().get("access_token").is_none(), "no token issued");
    // Without any proof the bound code is refused too.
    let verifier = support::verifier();
    let reply =
        par_login(&h, "c1", &par_form(&verifier, &[("dpop_jkt", k1.jkt())]), &[("authorization", &c1_auth())]).await;
    let bare = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    assert_as_400(&bare, &["invalid_request", "invalid_grant", "invalid_dpop_proof"], "no proof for dpop_jkt");
}

#[tokio::test]
async fn cs_f2_17_f2_18_the_same_key_at_par_and_token_succeeds() {
    let h = Harness::new().await;
    // F2-17: a proof at PAR, the same key at the token endpoint.
    let key = DpopKey::generate().unwrap();
    let tokens = dpop_tokens(&h, &key).await;
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(jwt_parts(tokens["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());
    // F2-18: dpop_jkt at PAR, a proof of that key at the token endpoint.
    let verifier = support::verifier();
    let reply =
        par_login(&h, "c1", &par_form(&verifier, &[("dpop_jkt", key.jkt())]), &[("authorization", &c1_auth())]).await;
    let tokens = redeem_dpop(&h, &reply.param("code").unwrap(), verifier.expose(), &key).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    assert_eq!(jwt_parts(tokens.json()["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn cs_f2_19_par_without_redirect_uri_uses_the_only_registered_one() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let reply =
        par_login(&h, "c1", &par_form(&verifier, &[("redirect_uri", "")]), &[("authorization", &c1_auth())]).await;
    assert!(reply.location().as_str().starts_with(CALLBACK));
    let tokens = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    // RFC 6749 §4.1.3: the request named no redirect_uri, so the token request may leave it out too.
    let verifier = support::verifier();
    let reply =
        par_login(&h, "c1", &par_form(&verifier, &[("redirect_uri", "")]), &[("authorization", &c1_auth())]).await;
    let code = reply.param("code").unwrap();
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("code_verifier", verifier.expose())];
    let tokens = h.token_basic("c1", C1_SECRET, &form).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    // With two registered URIs there is no default: invalid_request at PAR.
    edit_client(&h, "c2", |c| c.redirect_uris.push("https://app.test/other".into())).await;
    let form = par_form(&verifier, &[("redirect_uri", "")]);
    let reply = push(&h, &form, &[("authorization", &basic("c2", C2_SECRET))]).await;
    // c2 authenticates with client_secret_post: use its own method.
    let mut with_secret = form.clone();
    with_secret.extend([("client_id".to_owned(), "c2".to_owned()), ("client_secret".to_owned(), C2_SECRET.to_owned())]);
    assert_invalid_client(&reply, "c2 is registered for client_secret_post");
    assert_as_400(&push(&h, &with_secret, &[]).await, &["invalid_request"], "no default among two");
}

#[tokio::test]
async fn cs_f2_20_f2_21_an_unregistered_redirect_uri_in_par_is_invalid_request() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    for uri in ["https://evil.test/cb", "https://app.test/bff/callback/", "https://app.test/bff/callback?x=1"] {
        let reply = push(&h, &par_form(&verifier, &[("redirect_uri", uri)]), &[("authorization", &c1_auth())]).await;
        assert_as_400(&reply, &["invalid_request"], uri);
        assert!(reply.json().get("request_uri").is_none());
    }
}

#[tokio::test]
async fn cs_f2_22_front_channel_requests_are_refused_when_par_is_required() {
    let h = Harness::with(|s| s.require_pushed_authorization_requests = true, None).await;
    let reply = h.get(&authorize_uri("c1", "state=s-22", &verifier()), None).await;
    assert_redirected_error(&reply, CALLBACK, "invalid_request", Some("s-22"), "PAR required globally");
    // Per client, too.
    let h = Harness::new().await;
    edit_client(&h, "c2", |c| c.require_pushed_authorization_requests = true).await;
    let reply = h.get(&authorize_uri("c2", "state=s-22", &verifier()), None).await;
    assert_redirected_error(&reply, CALLBACK, "invalid_request", Some("s-22"), "PAR required for c2");
    assert_eq!(h.get(&authorize_uri("c1", "", &verifier()), None).await.status, StatusCode::OK, "c1 may still");
}

#[tokio::test]
async fn cs_f2_23_f2_24_only_response_type_code_is_accepted() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    for response_type in ["code id_token", "token", "id_token", "code token"] {
        let reply =
            push(&h, &par_form(&verifier, &[("response_type", response_type)]), &[("authorization", &c1_auth())]).await;
        assert_as_400(&reply, &["unsupported_response_type"], response_type);
        let uri = authorize_uri("c1", "state=s-23", &verifier)
            .replace("response_type=code", &format!("response_type={}", enc(response_type)));
        let front = h.get(&uri, None).await;
        assert_redirected_error(&front, CALLBACK, "unsupported_response_type", Some("s-23"), response_type);
    }
}

#[tokio::test]
async fn cs_f2_25_front_channel_values_never_replace_the_pushed_ones() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    for (extra, what) in [("&nonce=B", "another nonce"), ("&state=B", "another state"), ("&scope=openid", "scope")] {
        let request_uri = request_uri_of(&push(&h, &par_form(&verifier, &[]), &[("authorization", &c1_auth())]).await);
        let reply = h.get(&format!("{}{extra}", par_authorize_uri("c1", &request_uri)), None).await;
        assert_error_page(&reply, what);
    }
    // State only outside: the pushed request has none, the URL adds one.
    let request_uri =
        request_uri_of(&push(&h, &par_form(&verifier, &[("state", "")]), &[("authorization", &c1_auth())]).await);
    assert_error_page(
        &h.get(&format!("{}&state=B", par_authorize_uri("c1", &request_uri)), None).await,
        "state outside",
    );
    // The pushed values are the ones used.
    let reply = par_login(&h, "c1", &par_form(&verifier, &[]), &[("authorization", &c1_auth())]).await;
    assert_eq!(reply.param("state").as_deref(), Some("st-par"));
    let tokens = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    assert_eq!(jwt_parts(tokens.json()["id_token"].as_str().unwrap()).1["nonce"], "n-par");
}

#[tokio::test]
async fn cs_f2_26_f2_28_a_code_is_bound_to_its_client() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    // F2-28: client 1's code redeemed by client 2 with client 2's valid credentials.
    let (reply, _) = h.login("c1", "", &verifier).await;
    let code = reply.param("code").unwrap();
    let mut form = code_form(&code, verifier.expose());
    form.extend([("client_id", "c2"), ("client_secret", C2_SECRET)]);
    let stolen = h.post_form("/token", &form, &[]).await;
    assert_as_400(&stolen, &["invalid_grant"], "c2 redeems c1's code");
    assert!(stolen.json().get("access_token").is_none());
    // F2-26: client 1's client_id with client 2's credentials.
    let (reply, _) = h.login("c1", "", &verifier).await;
    let code = reply.param("code").unwrap();
    let mut form = code_form(&code, verifier.expose());
    form.push(("client_id", "c1"));
    let mixed = h.post_form("/token", &form, &[("authorization", &basic("c2", C2_SECRET))]).await;
    assert_invalid_client(&mixed, "c1's client_id with c2's credentials");
}

#[tokio::test]
async fn cs_f2_27_ep_dcr09_a_client_that_must_use_dpop_gets_nothing_without_a_proof() {
    let h = Harness::new().await;
    edit_client(&h, "c1", |c| c.require_dpop = true).await;
    let key = DpopKey::generate().unwrap();
    let verifier = support::verifier();
    // PAR without a proof or dpop_jkt is refused too.
    let reply = push(&h, &par_form(&verifier, &[]), &[("authorization", &c1_auth())]).await;
    assert_as_400(&reply, &["invalid_dpop_proof"], "PAR without DPoP");
    let proof = key.proof("POST", PAR_URL, None, None, now(&h));
    let reply =
        par_login(&h, "c1", &par_form(&verifier, &[]), &[("authorization", &c1_auth()), ("dpop", &proof)]).await;
    let code = reply.param("code").unwrap();
    let bare = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await;
    assert_as_400(&bare, &["invalid_request", "invalid_grant", "invalid_dpop_proof"], "token request without DPoP");
    assert!(bare.json().get("access_token").is_none());
    // NO-SIDE-EFFECT: refused before the code was looked at, so the client's proper request still works.
    let tokens = redeem_dpop(&h, &code, verifier.expose(), &key).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    assert_eq!(tokens.json()["token_type"], "DPoP");
}

#[tokio::test]
async fn cs_f2_29_code_reuse_after_a_second_revokes_the_dpop_bound_token() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let verifier = support::verifier();
    let proof = key.proof("POST", PAR_URL, None, None, now(&h));
    let reply =
        par_login(&h, "c1", &par_form(&verifier, &[]), &[("authorization", &c1_auth()), ("dpop", &proof)]).await;
    let code = reply.param("code").unwrap();
    let first = redeem_dpop(&h, &code, verifier.expose(), &key).await.json();
    let at = first["access_token"].as_str().unwrap();
    assert_eq!(userinfo_dpop(&h, &key, at).await.status, StatusCode::OK);
    h.clock.advance(1);
    let again = redeem_dpop(&h, &code, verifier.expose(), &key).await;
    assert_as_400(&again, &["invalid_grant"], "second redemption");
    assert_dpop_401(&userinfo_dpop(&h, &key, at).await, &["invalid_token"], "first token revoked");
    let refresh = redeem_refresh(&h, first["refresh_token"].as_str().unwrap(), &key).await;
    assert_as_400(&refresh, &["invalid_grant"], "first refresh token revoked");
}

/// c1 refreshes `rt` with a proof of `key`.
async fn redeem_refresh(h: &Harness, rt: &str, key: &DpopKey) -> Reply {
    let proof = key.proof("POST", TOKEN_URL, None, None, now(h));
    token_with(
        h,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        &[("authorization", &c1_auth()), ("dpop", &proof)],
    )
    .await
}

#[tokio::test]
async fn cs_f2_30_a_code_older_than_60_seconds_is_invalid_grant() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let (reply, _) = h.login("c1", "", &verifier).await;
    h.clock.advance(61);
    let reply = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    assert_as_400(&reply, &["invalid_grant"], "expired code");
}

#[tokio::test]
async fn cs_f2_32_to_f2_40_cs_op_d15_client_assertions_at_par_accept_only_the_issuer_as_aud() {
    let key = ClientKey::generate();
    let h = pkjwt_harness(&key).await;
    let verifier = support::verifier();
    let form = par_form(&verifier, &[("scope", "openid")]);
    let t = now(&h);
    let par_with = |claims: Value| {
        let form = with_assertion(&form, &key.assertion(&claims));
        let h = &h;
        async move { push(h, &form, &[]).await }
    };
    // D15 / positive control: aud = the issuer, as a string.
    assert_eq!(par_with(assertion_claims(ISSUER.into(), t)).await.status, StatusCode::CREATED);
    // F2-39: iat and nbf 8 s ahead are within the tolerated skew.
    let mut ahead = assertion_claims(ISSUER.into(), t);
    ahead["iat"] = (t + 8).into();
    ahead["nbf"] = (t + 8).into();
    assert_eq!(par_with(ahead).await.status, StatusCode::CREATED, "F2-39");
    let mut refused: Vec<(&str, Value)> = vec![
        ("F2-36 aud as an array", assertion_claims(json!([ISSUER]), t)),
        ("F2-37 aud = PAR endpoint", assertion_claims(PAR_URL.into(), t)),
        ("F2-38 aud = token endpoint", assertion_claims(TOKEN_URL.into(), t)),
        ("F2-34 aud of another server", assertion_claims("https://other.test".into(), t)),
    ];
    let mut expired = assertion_claims(ISSUER.into(), t);
    expired["iat"] = (t - 360).into();
    expired["exp"] = (t - 300).into();
    refused.push(("F2-33 exp 5 minutes ago", expired));
    let mut future = assertion_claims(ISSUER.into(), t);
    future["iat"] = (t + 70).into();
    future["nbf"] = (t + 70).into();
    future["exp"] = (t + 130).into();
    refused.push(("F2-40 iat/nbf/exp more than 60 s ahead", future));
    let mut no_sub = assertion_claims(ISSUER.into(), t);
    no_sub.as_object_mut().unwrap().remove("sub");
    refused.push(("F2-35 no sub", no_sub.clone()));
    for (what, claims) in refused {
        let reply = par_with(claims).await;
        assert_invalid_client(&reply, what);
        assert!(reply.json().get("request_uri").is_none(), "{what}: nothing pushed");
    }
    // F2-35 with client_id in the body too, and F2-32: no assertion at all.
    let mut body = with_assertion(&form, &key.assertion(&no_sub));
    body.push(("client_id".into(), "pkjwt".into()));
    assert_invalid_client(&push(&h, &body, &[]).await, "F2-35 with client_id");
    let mut bare = form.clone();
    bare.push(("client_id".into(), "pkjwt".into()));
    assert_invalid_client(&push(&h, &bare, &[]).await, "F2-32 no assertion");
    // DD8 at the token endpoint too: only the issuer.
    for aud in [json!(PAR_URL), json!(TOKEN_URL), json!([ISSUER])] {
        let assertion = key.assertion(&assertion_claims(aud.clone(), t));
        let reply = token_with(
            &h,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
            ],
            &[],
        )
        .await;
        assert_invalid_client(&reply, &format!("token endpoint, aud {aud}"));
    }
}

#[tokio::test]
async fn cs_f2_42_refresh_new_key_grace_reuse_and_the_refusals() {
    let h = Harness::new().await;
    edit_client(&h, "c1", |c| c.require_dpop = true).await;
    edit_client(&h, "c2", |c| c.require_dpop = true).await;
    let key = DpopKey::generate().unwrap();
    let tokens = dpop_tokens(&h, &key).await;
    let rt1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    // (a) a new DPoP key at refresh (DD2, confidential client): 200, bound to the new key.
    let new_key = DpopKey::generate().unwrap();
    let second = redeem_refresh(&h, &rt1, &new_key).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let second = second.json();
    assert_eq!(second["token_type"], "DPoP");
    assert_eq!(jwt_parts(second["access_token"].as_str().unwrap()).1["cnf"]["jkt"], new_key.jkt());
    // (b) the previous refresh token 30 s later (a lost response): 200 (DD1 grace window).
    h.clock.advance(30);
    let retry = redeem_refresh(&h, &rt1, &new_key).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    let rt3 = retry.json()["refresh_token"].as_str().unwrap().to_owned();
    // (c) without client authentication.
    let proof = new_key.proof("POST", TOKEN_URL, None, None, now(&h));
    let anonymous =
        token_with(&h, &[("grant_type", "refresh_token"), ("refresh_token", &rt3)], &[("dpop", &proof)]).await;
    assert_invalid_client(&anonymous, "(c) no client authentication");
    // (d) without a DPoP proof.
    let bare = h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", &rt3)]).await;
    assert_as_400(&bare, &["invalid_request", "invalid_grant", "invalid_dpop_proof"], "(d) no proof");
    // (e) client 2's refresh token used by client 1.
    let c2 = {
        let verifier = support::verifier();
        let (reply, _) = h.login("c2", "scope=openid%20offline_access", &verifier).await;
        let code = reply.param("code").unwrap();
        let mut form = code_form(&code, verifier.expose());
        form.extend([("client_id", "c2"), ("client_secret", C2_SECRET)]);
        let proof = key.proof("POST", TOKEN_URL, None, None, now(&h));
        token_with(&h, &form, &[("dpop", &proof)]).await.json()
    };
    let c2_rt = c2["refresh_token"].as_str().unwrap();
    assert_as_400(&redeem_refresh(&h, c2_rt, &key).await, &["invalid_grant"], "(e) c2's token at c1");
    // NO-SIDE-EFFECT: the refusals above spent nothing: rt3 still refreshes.
    assert_eq!(redeem_refresh(&h, &rt3, &new_key).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cs_f2_44_f2_53_client_id_and_request_uri_suffice_and_a_used_request_uri_is_dead() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let request_uri = request_uri_of(&push(&h, &par_form(&verifier, &[]), &[("authorization", &c1_auth())]).await);
    // F2-53: only client_id and request_uri on the authorization request.
    let page = h.get(&par_authorize_uri("c1", &request_uri), None).await;
    let reply = submit_login(&h, &page).await;
    let session = cookie_pair(&reply.headers, "gh-session");
    let tokens = h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    assert_eq!(tokens.status, StatusCode::OK);
    // F2-44: the same request_uri after the flow completed, with and without the IdP session.
    assert_error_page(&h.get(&par_authorize_uri("c1", &request_uri), None).await, "reuse");
    assert_error_page(&h.get(&par_authorize_uri("c1", &request_uri), Some(&session)).await, "reuse, signed in");
}

#[tokio::test]
async fn cs_f2_45_an_expired_request_uri_is_an_error_page() {
    let h = Harness::new().await;
    let pushed = push(&h, &par_form(&verifier(), &[]), &[("authorization", &c1_auth())]).await;
    let expires_in = pushed.json()["expires_in"].as_i64().unwrap();
    let request_uri = request_uri_of(&pushed);
    h.clock.advance(expires_in + 1);
    assert_error_page(&h.get(&par_authorize_uri("c1", &request_uri), None).await, "expired request_uri");
}

#[tokio::test]
async fn cs_f2_46_a_request_uri_is_bound_to_its_client() {
    let h = Harness::new().await;
    let request_uri = request_uri_of(&push(&h, &par_form(&verifier(), &[]), &[("authorization", &c1_auth())]).await);
    let reply = h.get(&par_authorize_uri("c2", &request_uri), None).await;
    assert_error_page(&reply, "c1's request_uri with client_id c2");
    assert!(!reply.text().contains("name=\"password\""), "no login for it either");
}

#[tokio::test]
async fn cs_f2_47_f2_48_par_refuses_a_pushed_request_uri_and_other_methods() {
    let h = Harness::new().await;
    let form = par_form(&verifier(), &[("request_uri", "urn:ietf:params:oauth:request_uri:abc")]);
    let reply = push(&h, &form, &[("authorization", &c1_auth())]).await;
    assert_as_400(&reply, &["invalid_request"], "request_uri in the PAR body");
    for method in ["GET", "PUT", "DELETE"] {
        let reply = h.send(Request::builder().method(method).uri("/par").body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test]
async fn cs_f2_49_f2_50_par_requires_s256_pkce() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let challenge = CodeChallenge::s256(&verifier);
    for (extra, what) in [
        (vec![("code_challenge", ""), ("code_challenge_method", "")], "no PKCE"),
        (vec![("code_challenge_method", "")], "no method"),
        (vec![("code_challenge", verifier.expose()), ("code_challenge_method", "plain")], "plain"),
        (vec![("code_challenge", challenge.as_str()), ("code_challenge_method", "S512")], "unknown method"),
    ] {
        let reply = push(&h, &par_form(&verifier, &extra), &[("authorization", &c1_auth())]).await;
        assert_as_400(&reply, &["invalid_request"], what);
        assert!(reply.json().get("request_uri").is_none(), "{what}");
    }
}

#[tokio::test]
async fn cs_f2_51_f2_52_the_token_request_needs_the_right_code_verifier() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let reply = par_login(&h, "c1", &par_form(&verifier, &[]), &[("authorization", &c1_auth())]).await;
    let code = reply.param("code").unwrap();
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)];
    let missing = h.token_basic("c1", C1_SECRET, &form).await;
    assert_as_400(&missing, &["invalid_grant"], "F2-51 no code_verifier");
    assert!(missing.json().get("access_token").is_none());
    let other = support::verifier();
    let wrong = h.token_basic("c1", C1_SECRET, &code_form(&code, other.expose())).await;
    assert_as_400(&wrong, &["invalid_grant"], "F2-52 wrong code_verifier");
    assert!(wrong.json().get("access_token").is_none());
}

// =========================================================================================================
// A7. FAPI2 DPoP negative sub-tests, at the protected resource (userinfo)

/// A DPoP-bound access token of alice (scope openid) and its key.
async fn bound_token(h: &Harness) -> (DpopKey, String) {
    let key = DpopKey::generate().unwrap();
    let at = dpop_tokens(h, &key).await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo_dpop(h, &key, &at).await.status, StatusCode::OK, "a correct call works first");
    (key, at)
}

#[tokio::test]
async fn cs_f2_dp01_dp18_dp19_dp27_dp28_dp29_dp32_tolerated_variants_are_accepted() {
    let h = Harness::new().await;
    let (key, at) = bound_token(&h).await;
    let good = |htu: &str| forge_proof(&key, &proof_header(&key), &proof_claims("GET", htu, Some(&at), now(&h)));
    // DP01: the header name in capitals.
    assert_eq!(userinfo_with(&h, "DPoP", &at, "DPOP", &[&good(USERINFO_URL)], "").await.status, StatusCode::OK, "DP01");
    // DP18: htu with a query and a fragment. DP19: the request has a query, htu does not.
    let with_query = good(&format!("{USERINFO_URL}?a=b#frag"));
    assert_eq!(userinfo_with(&h, "DPoP", &at, "dpop", &[&with_query], "").await.status, StatusCode::OK, "DP18");
    assert_eq!(
        userinfo_with(&h, "DPoP", &at, "dpop", &[&good(USERINFO_URL)], "?x=1").await.status,
        StatusCode::OK,
        "DP19"
    );
    // DP27: unknown header parameters and claims are ignored.
    let mut header = proof_header(&key);
    header["x-extra"] = "ignored".into();
    let mut claims = proof_claims("GET", USERINFO_URL, Some(&at), now(&h));
    claims["x-extra"] = json!({"any": 1});
    let extra = forge_proof(&key, &header, &claims);
    assert_eq!(userinfo_with(&h, "DPoP", &at, "dpop", &[&extra], "").await.status, StatusCode::OK, "DP27");
    // DP28: scheme and host in capitals. DP29: the default port spelt out.
    for (htu, row) in [("HTTPS://ID.TEST/userinfo", "DP28"), ("https://id.test:443/userinfo", "DP29")] {
        assert_eq!(userinfo_with(&h, "DPoP", &at, "dpop", &[&good(htu)], "").await.status, StatusCode::OK, "{row}");
    }
    // DP32: a correct proof again.
    assert_eq!(userinfo_dpop(&h, &key, &at).await.status, StatusCode::OK, "DP32");
}

#[tokio::test]
async fn cs_f2_dp02_dp03_dp15_several_headers_a_missing_or_a_corrupt_signature_fail() {
    let h = Harness::new().await;
    let (key, at) = bound_token(&h).await;
    let proof = || key.proof("GET", USERINFO_URL, Some(&at), None, now(&h));
    let (a, b) = (proof(), proof());
    assert_dpop_401(&userinfo_with(&h, "DPoP", &at, "dpop", &[&a, &b], "").await, &["invalid_dpop_proof"], "DP02");
    let p = proof();
    let unsigned = p.rsplit_once('.').unwrap().0.to_owned();
    for (variant, row) in [(unsigned.clone(), "DP03"), (format!("{unsigned}."), "DP03 (empty signature)")] {
        assert_dpop_401(&userinfo_with(&h, "DPoP", &at, "dpop", &[&variant], "").await, &["invalid_dpop_proof"], row);
    }
    let (input, signature) = p.rsplit_once('.').unwrap();
    let mut bytes = gatehouse_proto::b64::decode(signature).unwrap();
    bytes[7] ^= 0x40;
    let corrupt = format!("{input}.{}", gatehouse_proto::b64::encode(&bytes));
    assert_dpop_401(&userinfo_with(&h, "DPoP", &at, "dpop", &[&corrupt], "").await, &["invalid_dpop_proof"], "DP15");
    assert_eq!(userinfo_dpop(&h, &key, &at).await.status, StatusCode::OK, "DP32 after them");
}

#[tokio::test]
async fn cs_f2_dp04_to_dp12_dp14_dp16_bad_headers_and_missing_claims_fail() {
    let h = Harness::new().await;
    let (key, at) = bound_token(&h).await;
    let claims = || proof_claims("GET", USERINFO_URL, Some(&at), now(&h));
    let mut cases: Vec<(&str, String)> = Vec::new();
    for (row, member) in [("DP04", "typ"), ("DP05", "alg"), ("DP06", "jwk")] {
        let mut header = proof_header(&key);
        header.as_object_mut().unwrap().remove(member);
        cases.push((row, forge_proof(&key, &header, &claims())));
    }
    for (row, member) in [("DP07", "jti"), ("DP08", "htm"), ("DP09", "htu"), ("DP10", "iat"), ("DP11", "ath")] {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove(member);
        cases.push((row, forge_proof(&key, &proof_header(&key), &claims)));
    }
    let mut header = proof_header(&key);
    header["typ"] = "dpop+jwt+wrongyousee".into();
    cases.push(("DP12", forge_proof(&key, &header, &claims())));
    let none_header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk()});
    let none = format!(
        "{}.{}.",
        gatehouse_proto::b64::encode(none_header.to_string()),
        gatehouse_proto::b64::encode(claims().to_string())
    );
    cases.push(("DP14", none));
    let mut header = proof_header(&key);
    header["jwk"]["d"] = private_d(&key).into();
    cases.push(("DP16", forge_proof(&key, &header, &claims())));
    for (row, proof) in cases {
        assert_dpop_401(&userinfo_with(&h, "DPoP", &at, "dpop", &[&proof], "").await, &["invalid_dpop_proof"], row);
    }
    assert_eq!(userinfo_dpop(&h, &key, &at).await.status, StatusCode::OK, "DP32 after them");
}

#[tokio::test]
async fn cs_f2_dp17_dp20_dp21_dp22_dp25_proofs_for_another_request_time_or_token_fail() {
    let h = Harness::new().await;
    let (key, at) = bound_token(&h).await;
    let t = now(&h);
    let forged = |claims: Value| forge_proof(&key, &proof_header(&key), &claims);
    let mut dp25 = proof_claims("GET", USERINFO_URL, None, t);
    dp25["ath"] = gatehouse_proto::dpop::ath("another value").into();
    for (row, proof) in [
        ("DP17", forged(proof_claims("PUT", USERINFO_URL, Some(&at), t))),
        ("DP20", forged(proof_claims("GET", "https://id.test/userinfo/ohnonotagain", Some(&at), t))),
        ("DP21", forged(proof_claims("GET", USERINFO_URL, Some(&at), t + 3600))),
        ("DP22", forged(proof_claims("GET", USERINFO_URL, Some(&at), t - 3600))),
        ("DP25", forged(dp25)),
    ] {
        assert_dpop_401(&userinfo_with(&h, "DPoP", &at, "dpop", &[&proof], "").await, &["invalid_dpop_proof"], row);
    }
    assert_eq!(userinfo_dpop(&h, &key, &at).await.status, StatusCode::OK, "DP32 after them");
}

#[tokio::test]
async fn cs_f2_dp23_dp24_a_jti_is_accepted_once() {
    let h = Harness::new().await;
    let (key, at) = bound_token(&h).await;
    let mut claims = proof_claims("GET", USERINFO_URL, Some(&at), now(&h));
    claims["jti"] = "fixed-jti-for-dp23".into();
    let first = forge_proof(&key, &proof_header(&key), &claims);
    assert_eq!(userinfo_with(&h, "DPoP", &at, "dpop", &[&first], "").await.status, StatusCode::OK, "DP23");
    // The same jti in a proof that differs otherwise (a later iat), and the very same proof.
    claims["iat"] = (now(&h) + 1).into();
    let second = forge_proof(&key, &proof_header(&key), &claims);
    for (proof, what) in [(&second, "DP24 same jti"), (&first, "DP24 same proof")] {
        assert_dpop_401(&userinfo_with(&h, "DPoP", &at, "dpop", &[proof], "").await, &["invalid_dpop_proof"], what);
    }
}

#[tokio::test]
async fn cs_f2_dp26_dp30_dp31_another_key_no_proof_or_bearer_fail_and_the_token_still_works() {
    let h = Harness::new().await;
    let (key, at) = bound_token(&h).await;
    let other = DpopKey::generate().unwrap();
    let by_other = other.proof("GET", USERINFO_URL, Some(&at), None, now(&h));
    let reply = userinfo_with(&h, "DPoP", &at, "dpop", &[&by_other], "").await;
    assert_dpop_401(&reply, &["invalid_token", "invalid_dpop_proof"], "DP26");
    let reply = userinfo_with(&h, "DPoP", &at, "dpop", &[], "").await;
    assert_dpop_401(&reply, &["invalid_token", "invalid_dpop_proof"], "DP30");
    let reply = userinfo_with(&h, "Bearer", &at, "dpop", &[], "").await;
    assert_dpop_401(&reply, &["invalid_token"], "DP31 downgrade to Bearer");
    // Bearer with a valid proof alongside is still a downgrade.
    let proof = key.proof("GET", USERINFO_URL, Some(&at), None, now(&h));
    assert_dpop_401(&userinfo_with(&h, "Bearer", &at, "dpop", &[&proof], "").await, &["invalid_token"], "DP31 + proof");
    assert_eq!(userinfo_dpop(&h, &key, &at).await.status, StatusCode::OK, "DP32");
}

// =========================================================================================================
// E. Other OP endpoints

#[tokio::test]
async fn ep_tok01_every_token_answer_is_json_no_store_and_no_token_travels_in_a_header() {
    let h = Harness::new().await;
    let verifier = support::verifier();
    let (reply, _) = h.login("c1", "scope=openid%20offline_access", &verifier).await;
    let code_answer =
        h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await;
    let rt = code_answer.json()["refresh_token"].as_str().unwrap().to_owned();
    let refresh_answer =
        h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
    let m2m_answer = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials")]).await;
    let errors = [
        h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", "nope")]).await,
        h.token_basic("c1", "wrong", &[("grant_type", "client_credentials")]).await,
        h.post_form("/token", &[("grant_type", "authorization_code")], &[]).await,
    ];
    for (reply, what) in [(&code_answer, "code"), (&refresh_answer, "refresh"), (&m2m_answer, "client_credentials")] {
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store", "{what}");
        assert_eq!(reply.headers[header::PRAGMA], "no-cache", "{what}");
        assert_json(reply, what);
        let at = reply.json()["access_token"].as_str().unwrap().to_owned();
        for (name, value) in &reply.headers {
            assert!(!value.to_str().unwrap_or("").contains(&at), "{what}: token in header {name}");
        }
    }
    for reply in &errors {
        assert!(reply.status.is_client_error());
        assert_json(reply, "error");
        reply.oauth_error(); // no-store and a clean error_description
    }
}

#[tokio::test]
async fn ep_tok02_ep_tok03_ep_tok04_malformed_token_requests_are_clean_errors() {
    let h = Harness::new().await;
    let auth = basic("m2m", M2M_SECRET);
    let unsupported = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "password")]).await;
    assert_as_400(&unsupported, &["unsupported_grant_type"], "unsupported grant");
    let missing = h.token_basic("m2m", M2M_SECRET, &[("scope", "api")]).await;
    assert_as_400(&missing, &["invalid_request"], "missing grant_type");
    let raw = |uri: &str, content_type: &str, body: &str| {
        Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::AUTHORIZATION, auth.clone())
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let form = "application/x-www-form-urlencoded";
    let duplicated = h.send(raw("/token", form, "grant_type=authorization_code&code=a&code=b")).await;
    assert_as_400(&duplicated, &["invalid_request"], "code=a&code=b");
    // TOK03: parameters in the query string, or a JSON body.
    let in_query = h.send(raw("/token?grant_type=client_credentials", form, "")).await;
    assert_as_400(&in_query, &["invalid_request"], "parameters in the query");
    let json_body = h.send(raw("/token", "application/json", r#"{"grant_type":"client_credentials"}"#)).await;
    assert_as_400(&json_body, &["invalid_request"], "JSON body");
    // TOK04: GET /token never issues anything.
    let get = h
        .send(
            Request::get("/token?grant_type=client_credentials")
                .header(header::AUTHORIZATION, auth.clone())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!get.text().contains("access_token"));
}

#[tokio::test]
async fn ep_tok05_tokens_and_codes_have_enough_entropy_and_access_tokens_are_typed() {
    let h = Harness::new().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let verifier = support::verifier();
        let (reply, _) = h.login("c1", "scope=openid%20offline_access%20api", &verifier).await;
        let code = reply.param("code").unwrap();
        assert!(code.len() >= 43 && seen.insert(code.clone()), "code: 256 random bits, base64url");
        let tokens = h.token_basic("c1", C1_SECRET, &code_form(&code, verifier.expose())).await.json();
        let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
        assert!(rt.len() >= 43 && gatehouse_proto::b64::decode(&rt).is_some_and(|b| b.len() >= 32), "RT ≥ 256 bits");
        assert!(seen.insert(rt));
        let (header, claims) = jwt_parts(tokens["access_token"].as_str().unwrap());
        assert_eq!(header["typ"], "at+jwt", "RFC 9068 §2.1");
        let jti = claims["jti"].as_str().unwrap().to_owned();
        assert!(gatehouse_proto::b64::decode(&jti).is_some_and(|b| b.len() >= 12), "jti ≥ 96 bits");
        assert!(seen.insert(jti));
    }
}

#[tokio::test]
async fn ep_int01_ep_rev01_introspection_and_revocation_need_client_authentication() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid offline_access api").await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    for endpoint in ["/introspect", "/revoke"] {
        let anonymous = h.post_form(endpoint, &[("token", rt)], &[]).await;
        assert_invalid_client(&anonymous, &format!("{endpoint} without credentials"));
        let wrong = h.post_form(endpoint, &[("token", rt)], &[("authorization", &basic("c1", "wrong"))]).await;
        assert_invalid_client(&wrong, &format!("{endpoint} with a wrong secret"));
        assert!(wrong.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic"), "RFC 6749 §5.2");
    }
    // NO-SIDE-EFFECT: the refresh token still works.
    let reply = h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn ep_int02_inactive_tokens_are_active_false_and_nothing_else() {
    let h = Harness::new().await;
    let tokens = h.tokens("openid offline_access api").await;
    let c2 = c2_tokens(&h, "openid offline_access").await;
    let revoked = h.tokens("openid offline_access api").await;
    let revoked_rt = revoked["refresh_token"].as_str().unwrap();
    assert_eq!(
        h.post_form("/revoke", &[("token", revoked_rt)], &[("authorization", &c1_auth())]).await.status,
        StatusCode::OK
    );
    let introspect = |token: String| {
        let h = &h;
        async move { h.post_form("/introspect", &[("token", &token)], &[("authorization", &c1_auth())]).await }
    };
    let mut inactive = vec![
        ("garbage", "garbage".to_owned()),
        ("ID token", tokens["id_token"].as_str().unwrap().to_owned()),
        ("another client's refresh token", c2["refresh_token"].as_str().unwrap().to_owned()),
        ("revoked refresh token", revoked_rt.to_owned()),
        ("access token of a revoked grant", revoked["access_token"].as_str().unwrap().to_owned()),
    ];
    for (what, token) in inactive.drain(..) {
        let reply = introspect(token).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(reply.json(), json!({"active": false}), "{what}");
    }
    h.clock.advance(301);
    let expired = introspect(tokens["access_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(expired.json(), json!({"active": false}), "expired access token");
}

#[tokio::test]
async fn ep_ui01_to_ep_ui04_userinfo_refusals() {
    let h = Harness::new().await;
    let bearer_error = |reply: &Reply, error: &str, what: &str| {
        let challenge = reply.headers[header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains(&format!("error=\"{error}\"")),
            "{what}: {challenge}"
        );
        assert!(reply.json().get("sub").is_none(), "{what}: no claims");
    };
    // UI01: no token (RFC 6750 §3.1: a challenge without an error code), expired, revoked.
    let none = h.get("/userinfo", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.headers.get_all(header::WWW_AUTHENTICATE).iter().any(|v| v.to_str().unwrap().starts_with("Bearer")));
    let tokens = h.tokens("openid offline_access api").await;
    let at = tokens["access_token"].as_str().unwrap();
    h.post_form("/revoke", &[("token", tokens["refresh_token"].as_str().unwrap())], &[("authorization", &c1_auth())])
        .await;
    let revoked = h.userinfo(at).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    bearer_error(&revoked, "invalid_token", "revoked");
    let live = h.tokens("openid").await;
    h.clock.advance(301);
    let expired = h.userinfo(live["access_token"].as_str().unwrap()).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    bearer_error(&expired, "invalid_token", "expired");
    // UI02: an access token without openid.
    let m2m = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials")]).await.json();
    let scope = h.userinfo(m2m["access_token"].as_str().unwrap()).await;
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    bearer_error(&scope, "insufficient_scope", "no openid scope");
    // UI03: an ID token, a refresh token, a logout-token-shaped JWT are not access tokens.
    let fresh = h.tokens("openid offline_access").await;
    let logout_like = {
        let keys = h.idp.state().keys.current();
        gatehouse_idp::tokens::sign(
            &keys,
            SigningAlg::RS256,
            "logout+jwt",
            &json!({"iss": ISSUER, "sub": "x", "aud": "c1",
            "scope": "openid", "exp": now(&h) + 60, "iat": now(&h), "jti": "j",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
        )
        .unwrap()
    };
    for (what, token) in [
        ("ID token", fresh["id_token"].as_str().unwrap()),
        ("refresh token", fresh["refresh_token"].as_str().unwrap()),
        ("logout token", logout_like.as_str()),
    ] {
        let reply = h.userinfo(token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        bearer_error(&reply, "invalid_token", what);
    }
    // UI04: the access token in the query string.
    let query = h.get(&format!("/userinfo?access_token={}", fresh["access_token"].as_str().unwrap()), None).await;
    assert_eq!(query.status, StatusCode::UNAUTHORIZED);
    assert!(query.json().get("sub").is_none());
}

#[tokio::test]
async fn ep_meta01_ep_meta02_the_jwks_holds_only_public_strong_keys_with_unique_kids() {
    let h = Harness::new().await;
    let jwks = h.get("/jwks", None).await.json();
    let keys = jwks["keys"].as_array().unwrap();
    let mut kids = std::collections::HashSet::new();
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "{private} in {key}");
        }
        assert!(kids.insert(key["kid"].as_str().unwrap().to_owned()), "kid unique");
        assert_eq!(key["use"], "sig");
        match key["kty"].as_str().unwrap() {
            "RSA" => {
                let n = gatehouse_proto::b64::decode(key["n"].as_str().unwrap()).unwrap();
                assert!(n.len() * 8 >= 2048, "RSA ≥ 2048 bits");
                assert_eq!(key["alg"], "RS256");
            }
            "EC" => {
                assert_eq!(key["crv"], "P-256");
                assert_eq!(key["alg"], "ES256");
            }
            other => panic!("{other}"),
        }
    }
}

#[tokio::test]
async fn ep_meta03_one_issuer_in_discovery_id_tokens_access_tokens_and_authorization_responses() {
    let h = Harness::new().await;
    let issuer = h.get("/.well-known/openid-configuration", None).await.json()["issuer"].clone();
    let verifier = support::verifier();
    let (reply, _) = h.login("c1", "", &verifier).await;
    assert_eq!(reply.param("iss").as_deref(), issuer.as_str());
    let tokens =
        h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await.json();
    assert_eq!(jwt_parts(tokens["id_token"].as_str().unwrap()).1["iss"], issuer);
    assert_eq!(jwt_parts(tokens["access_token"].as_str().unwrap()).1["iss"], issuer);
    let error = h.get(&authorize_uri("c1", "prompt=none", &verifier), None).await;
    assert_eq!(error.param("iss").as_deref(), issuer.as_str(), "error responses too");
}

#[tokio::test]
async fn ep_meta04_metadata_tells_the_truth() {
    let h = Harness::with(|s| s.require_pushed_authorization_requests = true, None).await;
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
    assert_eq!(doc["require_pushed_authorization_requests"], true);
    // require_pushed_authorization_requests is enforced.
    let front = h.get(&authorize_uri("c1", "state=m", &verifier()), None).await;
    assert_redirected_error(&front, CALLBACK, "invalid_request", Some("m"), "PAR required");
    // dpop_signing_alg_values_supported: the advertised ES256 is accepted, and what is not advertised is not.
    let algs = doc["dpop_signing_alg_values_supported"].as_array().unwrap();
    assert!(algs.iter().any(|a| a == "ES256"));
    let key = DpopKey::generate().unwrap();
    let proof = key.proof("POST", TOKEN_URL, None, None, now(&h));
    let ok = token_with(
        &h,
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic("m2m", M2M_SECRET)), ("dpop", &proof)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    for alg in ["HS256", "ES512", "none"] {
        assert!(!algs.iter().any(|a| a == alg));
        let mut header = proof_header(&key);
        header["alg"] = alg.into();
        let proof = forge_proof(&key, &header, &proof_claims("POST", TOKEN_URL, None, now(&h)));
        let reply = token_with(
            &h,
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic("m2m", M2M_SECRET)), ("dpop", &proof)],
        )
        .await;
        assert_as_400(&reply, &["invalid_dpop_proof"], alg);
    }
    // Every advertised client authentication method exists: a basic client refused with post says so.
    let methods = doc["token_endpoint_auth_methods_supported"].as_array().unwrap();
    for method in ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"] {
        assert!(methods.iter().any(|m| m == method), "{method}");
    }
}

/// Counts TCP connections to a loopback port: an SSRF canary.
async fn canary() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (base, hits)
}

#[tokio::test]
async fn ep_dcr05_no_url_a_client_or_a_token_names_is_ever_fetched() {
    let key = ClientKey::generate();
    let h = pkjwt_harness(&key).await;
    let (canary, hits) = canary().await;
    // There is no registration endpoint (clients are registered by the operator).
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert!(doc.get("registration_endpoint").is_none());
    let register = h
        .send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"redirect_uris": [canary], "jwks_uri": canary, "logo_uri": canary}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(register.status, StatusCode::NOT_FOUND);
    // A request object by reference.
    let uri =
        authorize_uri("c1", &format!("state=s&request_uri={}", enc(&format!("{canary}/request.jwt"))), &verifier());
    assert_redirected_error(&h.get(&uri, None).await, CALLBACK, "request_uri_not_supported", Some("s"), "request_uri");
    // A client assertion whose header points at keys elsewhere (jku, x5u): refused, never fetched.
    for member in ["jku", "x5u"] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("unknown-kid".into());
        match member {
            "jku" => header.jku = Some(format!("{canary}/jwks")),
            _ => header.x5u = Some(format!("{canary}/cert")),
        }
        let other = ClientKey::generate();
        let assertion = jsonwebtoken::encode(
            &header,
            &assertion_claims(ISSUER.into(), now(&h)),
            &jsonwebtoken::EncodingKey::from_ec_der(&other.pkcs8),
        )
        .unwrap();
        let reply = token_with(
            &h,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
            ],
            &[],
        )
        .await;
        assert_invalid_client(&reply, member);
    }
    // A DPoP proof with a jku next to its jwk: the embedded key is the only one used.
    let dpop = DpopKey::generate().unwrap();
    let mut proof_head = proof_header(&dpop);
    proof_head["jku"] = format!("{canary}/jwks").into();
    let proof = forge_proof(&dpop, &proof_head, &proof_claims("POST", TOKEN_URL, None, now(&h)));
    let reply = token_with(
        &h,
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic("m2m", M2M_SECRET)), ("dpop", &proof)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the token service fetched a client-supplied URL");
}

#[tokio::test]
async fn ep_bcs02_an_unresponsive_back_channel_endpoint_never_holds_up_the_logout() {
    // The real HTTP notifier, towards an endpoint that accepts the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = format!("http://127.0.0.1:{}/bcl", listener.local_addr().unwrap().port());
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket); // keep it open, say nothing
        }
    });
    let h = Harness::new().await;
    edit_client(&h, "c1", |c| c.backchannel_logout_uri = Some(sink.clone())).await;
    let verifier = support::verifier();
    let (reply, session) = h.login("c1", "nonce=n", &verifier).await;
    let tokens =
        h.token_basic("c1", C1_SECRET, &code_form(&reply.param("code").unwrap(), verifier.expose())).await.json();
    let hint = tokens["id_token"].as_str().unwrap();
    let started = Instant::now();
    let reply = h
        .get(
            &format!("/end_session?id_token_hint={}&post_logout_redirect_uri={}&state=z", hint, enc(C1_POST_LOGOUT)),
            Some(&session),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(2), "the logout answered at once: {:?}", started.elapsed());
    // The delivery was attempted (a connection reached the endpoint).
    for _ in 0..100 {
        if !held.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!held.lock().unwrap().is_empty(), "the logout token was being delivered");
    let prompt = h.get(&authorize_uri("c1", "prompt=none", &verifier), Some(&session)).await;
    assert_eq!(prompt.param("error").as_deref(), Some("login_required"), "the session ended");
}
