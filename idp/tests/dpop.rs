//! DPoP (RFC 9449) at the token and userinfo endpoints (catalogue §C token-endpoint and resource rows).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use gatehouse_proto::dpop_key::DpopKey;
use support::*;

const TOKEN_URL: &str = "https://id.test/token";
const USERINFO_URL: &str = "https://id.test/userinfo";

fn basic(client: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}")))
}

impl Harness {
    async fn token_dpop(&self, auth: Option<String>, form: &[(&str, &str)], proof: &str) -> Reply {
        let mut headers = vec![("dpop", proof.to_owned())];
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.post_form("/token", form, &headers).await
    }

    async fn userinfo_dpop(&self, scheme: &str, token: &str, proof: Option<&str>) -> Reply {
        let mut request = Request::get("/userinfo").header(header::AUTHORIZATION, format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    fn now(&self) -> i64 {
        use gatehouse_idp::clock::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn dpop_t01_client_credentials_with_proof_binds_the_token() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let proof = key.proof("POST", TOKEN_URL, None, None, h.now());
    let reply = h.token_dpop(Some(basic("m2m", M2M_SECRET)), &[("grant_type", "client_credentials")], &proof).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["token_type"], "DPoP");
    let (_, claims) = jwt_parts(reply.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["jkt"], key.jkt());
    // Without a proof: a Bearer token, no cnf.
    let plain = h.token_basic("m2m", M2M_SECRET, &[("grant_type", "client_credentials")]).await.json();
    assert_eq!(plain["token_type"], "Bearer");
    assert!(jwt_parts(plain["access_token"].as_str().unwrap()).1.get("cnf").is_none());
}

#[tokio::test]
async fn dpop_t02_replay_wrong_htu_htm_and_stale_proofs_are_refused() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let form = [("grant_type", "client_credentials")];
    let proof = key.proof("POST", TOKEN_URL, None, None, h.now());
    assert_eq!(h.token_dpop(Some(basic("m2m", M2M_SECRET)), &form, &proof).await.status, StatusCode::OK);
    let replay = h.token_dpop(Some(basic("m2m", M2M_SECRET)), &form, &proof).await;
    assert_eq!(replay.oauth_error(), "invalid_dpop_proof", "DD4: jti single use");
    for proof in [
        key.proof("POST", "https://id.test/par", None, None, h.now()),
        key.proof("GET", TOKEN_URL, None, None, h.now()),
        key.proof("POST", TOKEN_URL, None, None, h.now() - 3600),
        key.proof("POST", TOKEN_URL, None, None, h.now() + 3600),
        "not.a.jwt".to_owned(),
    ] {
        let reply = h.token_dpop(Some(basic("m2m", M2M_SECRET)), &form, &proof).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.oauth_error(), "invalid_dpop_proof");
    }
    // Two DPoP headers.
    let a = key.proof("POST", TOKEN_URL, None, None, h.now());
    let b = key.proof("POST", TOKEN_URL, None, None, h.now());
    let reply =
        h.post_form("/token", &form, &[("authorization", &basic("m2m", M2M_SECRET)), ("dpop", &a), ("dpop", &b)]).await;
    assert_eq!(reply.oauth_error(), "invalid_dpop_proof");
}

#[tokio::test]
async fn dpop_n01_server_nonce_required() {
    let h = Harness::with(|s| s.dpop.require_nonce = true, None).await;
    let key = DpopKey::generate().unwrap();
    let form = [("grant_type", "client_credentials")];
    let first =
        h.token_dpop(Some(basic("m2m", M2M_SECRET)), &form, &key.proof("POST", TOKEN_URL, None, None, h.now())).await;
    assert_eq!(first.status, StatusCode::BAD_REQUEST);
    assert_eq!(first.oauth_error(), "use_dpop_nonce");
    let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let second = h
        .token_dpop(Some(basic("m2m", M2M_SECRET)), &form, &key.proof("POST", TOKEN_URL, None, Some(&nonce), h.now()))
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let forged = h
        .token_dpop(Some(basic("m2m", M2M_SECRET)), &form, &key.proof("POST", TOKEN_URL, None, Some("AAAA"), h.now()))
        .await;
    assert_eq!(forged.oauth_error(), "use_dpop_nonce");
}

/// Logs alice in as c1 and redeems the code with a DPoP proof of `key`.
async fn dpop_tokens(h: &Harness, key: &DpopKey, scope: &str) -> serde_json::Value {
    let verifier = verifier();
    let (reply, _) = h.login("c1", &format!("scope={}", enc(scope)), &verifier).await;
    let code = reply.param("code").unwrap();
    let proof = key.proof("POST", TOKEN_URL, None, None, h.now());
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    let reply = h.token_dpop(Some(basic("c1", C1_SECRET)), &form, &proof).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

#[tokio::test]
async fn dpop_r_userinfo_requires_the_bound_key_and_ath() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let tokens = dpop_tokens(&h, &key, "openid profile").await;
    assert_eq!(tokens["token_type"], "DPoP");
    let at = tokens["access_token"].as_str().unwrap();
    let good = key.proof("GET", USERINFO_URL, Some(at), None, h.now());
    let ok = h.userinfo_dpop("DPoP", at, Some(&good)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["name"], "Alice Liddell");
    // Bound token as Bearer (DPOP-R downgrade).
    let bearer = h.userinfo_dpop("Bearer", at, None).await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED);
    let challenge = bearer.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP") && challenge.contains("invalid_token") && challenge.contains("algs="),
        "{challenge}"
    );
    // No proof, replayed proof, other key, no ath, wrong method.
    let other = DpopKey::generate().unwrap();
    for (proof, what) in [
        (None, "no proof"),
        (Some(good.clone()), "replayed"),
        (Some(other.proof("GET", USERINFO_URL, Some(at), None, h.now())), "other key"),
        (Some(key.proof("GET", USERINFO_URL, None, None, h.now())), "no ath"),
        (Some(key.proof("POST", USERINFO_URL, Some(at), None, h.now())), "wrong htm"),
    ] {
        let reply = h.userinfo_dpop("DPoP", at, proof.as_deref()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(reply.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("DPoP"), "{what}");
    }
    // A Bearer token under the DPoP scheme.
    let plain = h.tokens("openid").await;
    let plain_at = plain["access_token"].as_str().unwrap();
    let proof = key.proof("GET", USERINFO_URL, Some(plain_at), None, h.now());
    assert_eq!(h.userinfo_dpop("DPoP", plain_at, Some(&proof)).await.status, StatusCode::UNAUTHORIZED);
    // No credentials: both schemes offered.
    let none = h.get("/userinfo", None).await;
    let offered: Vec<_> =
        none.headers.get_all(header::WWW_AUTHENTICATE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(
        offered.iter().any(|c| c.starts_with("Bearer")) && offered.iter().any(|c| c.starts_with("DPoP")),
        "{offered:?}"
    );
}

#[tokio::test]
async fn dpop_t11_dd2_confidential_refresh_may_change_key() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let tokens = dpop_tokens(&h, &key, "openid offline_access").await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let new_key = DpopKey::generate().unwrap();
    let reply = h
        .token_dpop(
            Some(basic("c1", C1_SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            &new_key.proof("POST", TOKEN_URL, None, None, h.now()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (_, claims) = jwt_parts(reply.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["jkt"], new_key.jkt());
}

#[tokio::test]
async fn dpop_t10_public_client_refresh_token_is_bound_to_its_key() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let verifier = verifier();
    let (reply, _) = h.login("pub", "scope=openid%20offline_access", &verifier).await;
    let code = reply.param("code").unwrap();
    let form = [
        ("client_id", "pub"),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    let tokens = h.token_dpop(None, &form, &key.proof("POST", TOKEN_URL, None, None, h.now())).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let rt = tokens.json()["refresh_token"].as_str().unwrap().to_owned();
    let refresh = [("client_id", "pub"), ("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
    let other = DpopKey::generate().unwrap();
    let wrong = h.token_dpop(None, &refresh, &other.proof("POST", TOKEN_URL, None, None, h.now())).await;
    assert_eq!(wrong.oauth_error(), "invalid_dpop_proof");
    let without = h.post_form("/token", &refresh, &[]).await;
    assert_eq!(without.oauth_error(), "invalid_dpop_proof");
    let right = h.token_dpop(None, &refresh, &key.proof("POST", TOKEN_URL, None, None, h.now())).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text());
    assert_eq!(jwt_parts(right.json()["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn discovery_advertises_dpop_algs() {
    let h = Harness::new().await;
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    let algs = doc["dpop_signing_alg_values_supported"].as_array().unwrap();
    assert!(algs.iter().any(|a| a == "ES256") && !algs.iter().any(|a| a == "none" || a == "HS256"));
}
