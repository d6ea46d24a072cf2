//! Component tests of logout over the real router on a loopback socket: RP-Initiated Logout 1.0 at `/end_session`,
//! Back-Channel Logout 1.0 (tokens captured by a `RecordingNotifier`), session administration (`admin`) and
//! the purge of expired IdP sessions. Test names carry catalogue IDs (§A4, §A5, §E EP-ES*, EP-BCS*).
//!
//! Run with `cargo test -p gatehouse-idp --test logout`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use base64::Engine;
use gatehouse_idp::admin::{self, SessionSelector};
use gatehouse_idp::backchannel::{Backchannel, DeliveryOutcome, LogoutDelivery, RecordingNotifier};
use gatehouse_idp::clock::Clock;
use gatehouse_idp::keys::{self, KeySet};
use gatehouse_idp::settings::{MasterKey, Settings};
use gatehouse_idp::store::{ClientRecord, KeyState};
use gatehouse_idp::{Idp, tokens};
use gatehouse_proto::claims::{Audience, IdTokenClaims};
use gatehouse_proto::vocab::SigningAlg;
use serde_json::{Value, json};
use support::*;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

// ---------------------------------------------------------------------------------------------------------
// RP-Initiated Logout with an id_token_hint (§A4) and its effects (EP-ES05, §A5)

/// CS-OP-L01, CS-OP-L12, EP-ES05, EP-BCS01/02, OAUTH-RT09: a hint of the current session with a registered
/// post-logout URI ends the session at once, revokes the grants of every client of the session, tells the
/// clients with a back-channel logout URI, and redirects with `state` only.
#[tokio::test]
async fn cs_op_l01_ep_es05_hint_ends_the_session_revokes_its_grants_and_notifies() {
    let (h, recorder) = harness().await;
    let signed_in = sign_in(&h).await;
    let c2 = sso_c2(&h, &signed_in.session).await;
    let (_, id_token) = jwt_parts(signed_in.id_token());
    assert_eq!(introspect_c1(&h, signed_in.access_token()).await["active"], true);

    let reply = h
        .get(&end_session_uri(Some(signed_in.id_token()), Some(C1_POST_LOGOUT), Some("xyz")), Some(&signed_in.session))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.location().as_str(), format!("{C1_POST_LOGOUT}?state=xyz"), "state and nothing else");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_session_cookie_deleted(&reply);

    // The IdP session is gone: prompt=none needs a login again.
    assert_eq!(prompt_none(&h, &signed_in.session).await.param("error").as_deref(), Some("login_required"));
    // OAUTH-RT09: the refresh tokens of both clients of the session are dead, and c1's access token too.
    assert_eq!(refresh_c1(&h, signed_in.refresh_token()).await.oauth_error(), "invalid_grant");
    let c2_refresh = c2["refresh_token"].as_str().unwrap();
    let reply = h
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", c2_refresh),
                ("client_id", "c2"),
                ("client_secret", C2_SECRET),
            ],
            &[],
        )
        .await;
    assert_eq!(reply.oauth_error(), "invalid_grant");
    assert_eq!(introspect_c1(&h, signed_in.access_token()).await["active"], false);

    // Back-Channel Logout §2.7: one token, to c1 (c2 registered no back-channel logout URI).
    let delivered = recorder.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!((delivered[0].client_id.as_str(), delivered[0].uri.as_str()), ("c1", C1_BACKCHANNEL_LOGOUT));
    let logout_token = delivered[0].logout_token.expose();
    let claims = verify_logout_token(&h, logout_token, "c1").await;
    assert_eq!(claims["sid"], id_token["sid"], "the ID token's session");
    assert_eq!(claims["sub"], id_token["sub"]);

    // RFC 8725 §2.8 (EP-UI03): a logout token is neither an ID token hint nor an access token.
    let reply = h.get(&end_session_uri(Some(logout_token), None, None), None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.userinfo(logout_token).await.status, StatusCode::UNAUTHORIZED);
}

/// EP-BCS01 (Back-Channel Logout §2.4): `typ: logout+jwt`, signed with the client's ID-token algorithm by a key
/// in our JWK Set; `iss`, `aud` = client_id, `iat`, `exp` two minutes later, a unique `jti`, `events` exactly
/// the back-channel logout event, `sid` and `sub`, and no `nonce`.
async fn verify_logout_token(h: &Harness, token: &str, client_id: &str) -> Value {
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["alg"], "RS256", "c1's id_token_signed_response_alg");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(h.get("/jwks", None).await.json()).unwrap();
    let jwk = jwks.find(header["kid"].as_str().unwrap()).expect("the signing key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false; // the test clock is not the wall clock; checked below
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[ISSUER]);
    let verified = jsonwebtoken::decode::<Value>(token, &key, &validation).expect("signature verifies").claims;
    assert_eq!(verified, claims);
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(iat, h.clock.now());
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 120);
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 16));
    assert_eq!(claims["events"], json!({ EVENT: {} }));
    assert!(claims["sid"].is_string() && claims["sub"].is_string());
    assert!(claims.get("nonce").is_none(), "a logout token never carries a nonce");
    let mut names: Vec<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["aud", "events", "exp", "iat", "iss", "jti", "sid", "sub"]);
    claims
}

/// CS-OP-L08, CS-OP-L09: a hint alone signs out and shows the signed-out page; no state, no state added.
#[tokio::test]
async fn cs_op_l08_l09_hint_without_redirect_shows_the_signed_out_page() {
    let (h, _) = harness().await;
    let signed_in = sign_in(&h).await;
    let reply = h.get(&end_session_uri(Some(signed_in.id_token()), None, None), Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get(header::LOCATION).is_none());
    assert!(reply.text().contains("You are signed out"), "{}", reply.text());
    assert_session_cookie_deleted(&reply);
    assert_eq!(prompt_none(&h, &signed_in.session).await.param("error").as_deref(), Some("login_required"));

    let signed_in = sign_in(&h).await;
    let reply =
        h.get(&end_session_uri(Some(signed_in.id_token()), Some(C1_POST_LOGOUT), None), Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location().as_str(), C1_POST_LOGOUT, "no state parameter");
}

/// RP-Initiated Logout §2: the same request sent as a form POST.
#[tokio::test]
async fn end_session_by_form_post() {
    let (h, recorder) = harness().await;
    let signed_in = sign_in(&h).await;
    let form = [("id_token_hint", signed_in.id_token()), ("post_logout_redirect_uri", C1_POST_LOGOUT), ("state", "s")];
    let reply = h.post_form("/end_session", &form, &[("cookie", &signed_in.session)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.location().as_str(), format!("{C1_POST_LOGOUT}?state=s"));
    assert_eq!(prompt_none(&h, &signed_in.session).await.param("error").as_deref(), Some("login_required"));
    assert_eq!(recorder.wait_for(1, Duration::from_secs(5)).await.len(), 1);
}

/// EP-ES02: RP-Initiated Logout §2 says the OP SHOULD accept an expired hint of a live session.
#[tokio::test]
async fn ep_es02_expired_hint_is_accepted() {
    let (h, _) = harness().await;
    let signed_in = sign_in(&h).await;
    h.clock.advance(3600); // the ID token lived 300 s; the session is idle for 8 h
    let reply =
        h.get(&end_session_uri(Some(signed_in.id_token()), Some(C1_POST_LOGOUT), None), Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(prompt_none(&h, &signed_in.session).await.param("error").as_deref(), Some("login_required"));
}

/// A hint without a session in the browser (the IdP cookie is gone) still ends the session it names.
#[tokio::test]
async fn hint_without_a_browser_session_ends_the_hinted_session() {
    let (h, recorder) = harness().await;
    let signed_in = sign_in(&h).await;
    let reply = h.get(&end_session_uri(Some(signed_in.id_token()), Some(C1_POST_LOGOUT), None), None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(prompt_none(&h, &signed_in.session).await.param("error").as_deref(), Some("login_required"));
    assert_eq!(refresh_c1(&h, signed_in.refresh_token()).await.oauth_error(), "invalid_grant");
    assert_eq!(recorder.wait_for(1, Duration::from_secs(5)).await.len(), 1);
}

/// EP-BCS03: a user signed in at two browsers who signs out in one ends only that session; the logout token
/// names that session's `sid`.
#[tokio::test]
async fn ep_bcs03_logout_is_scoped_to_the_session() {
    let (h, recorder) = harness().await;
    let first = sign_in(&h).await;
    let second = sign_in(&h).await;
    let reply = h.get(&end_session_uri(Some(first.id_token()), None, None), Some(&first.session)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let delivered = recorder.wait_for(1, Duration::from_secs(5)).await;
    let (_, claims) = jwt_parts(delivered[0].logout_token.expose());
    assert_eq!(claims["sid"], jwt_parts(first.id_token()).1["sid"]);
    assert_ne!(claims["sid"], jwt_parts(second.id_token()).1["sid"]);
    assert!(prompt_none(&h, &second.session).await.param("code").is_some(), "the other browser stays signed in");
    assert_eq!(refresh_c1(&h, second.refresh_token()).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(recorder.deliveries().len(), 1);
}

/// RP-Initiated Logout §2: a hint of another session than the browser's is not proof enough: confirm first.
#[tokio::test]
async fn hint_of_another_session_asks_first() {
    let (h, recorder) = harness().await;
    let first = sign_in(&h).await;
    let second = sign_in(&h).await;
    let reply = h.get(&end_session_uri(Some(first.id_token()), None, None), Some(&second.session)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("name=\"logout_request\""), "the confirmation form");
    assert!(prompt_none(&h, &second.session).await.param("code").is_some());
    assert!(prompt_none(&h, &first.session).await.param("code").is_some());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(recorder.deliveries().is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// Refusals: never a redirect (CS-OP-L02…L06, EP-ES01, EP-ES03)

/// CS-OP-L04, CS-OP-L05, OAUTH-OR04: an unregistered post-logout URI, or the registered one with a query added,
/// is an error page without `Location`, and nobody is signed out.
#[tokio::test]
async fn cs_op_l04_l05_unregistered_post_logout_redirect_uri_is_an_error_page() {
    let (h, recorder) = harness().await;
    let signed_in = sign_in(&h).await;
    for uri in ["https://evil.test/", &format!("{C1_POST_LOGOUT}?foo=bar"), &format!("{C1_POST_LOGOUT}/"), CALLBACK] {
        let reply =
            h.get(&end_session_uri(Some(signed_in.id_token()), Some(uri), Some("xyz")), Some(&signed_in.session)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(reply.headers.get(header::LOCATION).is_none(), "{uri}");
        assert!(reply.text().contains("not registered"), "{}", reply.text());
    }
    assert!(prompt_none(&h, &signed_in.session).await.param("code").is_some(), "still signed in");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(recorder.deliveries().is_empty());
}

/// CS-OP-L02, CS-OP-L03, EP-ES01: a hint signed by a foreign key, re-encoded as `alg: none`, or from another
/// issuer is an error page: no redirect, nobody signed out.
#[tokio::test]
async fn cs_op_l02_l03_foreign_or_unsigned_hint_is_refused() {
    let (h, _) = harness().await;
    let signed_in = sign_in(&h).await;
    let (_, ours) = jwt_parts(signed_in.id_token());
    let foreign_master = MasterKey([42; 32]);
    let foreign_key = keys::generate(&foreign_master, SigningAlg::RS256, KeyState::Active, START).unwrap();
    let foreign = KeySet::from_records(&[foreign_key], &foreign_master).unwrap();
    let claims = IdTokenClaims {
        iss: ISSUER.into(),
        sub: ours["sub"].as_str().unwrap().into(),
        aud: Audience::One("c1".into()),
        exp: START + 300,
        iat: START,
        auth_time: None,
        nonce: None,
        sid: ours["sid"].as_str().map(str::to_owned),
        azp: None,
        profile: Default::default(),
    };
    let by_foreign_key = tokens::sign_id_token(&foreign, SigningAlg::RS256, &claims).unwrap();
    let payload = signed_in.id_token().split('.').nth(1).unwrap();
    let alg_none = format!("{}.{payload}.", gatehouse_proto::b64::encode(br#"{"alg":"none","typ":"JWT"}"#));
    let other_issuer = tokens::sign_id_token(
        &h.idp.state().keys.current(),
        SigningAlg::RS256,
        &IdTokenClaims { iss: "https://evil.test".into(), ..claims.clone() },
    )
    .unwrap();
    for hint in [by_foreign_key.as_str(), alg_none.as_str(), other_issuer.as_str(), "garbage"] {
        let reply =
            h.get(&end_session_uri(Some(hint), Some(C1_POST_LOGOUT), Some("x")), Some(&signed_in.session)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{hint}");
        assert!(reply.headers.get(header::LOCATION).is_none());
        assert!(reply.text().contains("could not be verified"), "{}", reply.text());
    }
    assert!(prompt_none(&h, &signed_in.session).await.param("code").is_some(), "still signed in");
}

/// EP-ES03 (RP-Initiated Logout §2-§3): `client_id` must be the hint's audience, and the post-logout URI must be
/// registered by that client, not by another one.
#[tokio::test]
async fn ep_es03_hint_for_another_client_is_refused() {
    let (h, _) = harness().await;
    let other_out = "https://other.test/signed-out";
    let c2 = h.store.clients.client("c2").await.unwrap().unwrap();
    h.store
        .clients
        .upsert_client(ClientRecord { post_logout_redirect_uris: vec![other_out.into()], ..c2 })
        .await
        .unwrap();
    let signed_in = sign_in(&h).await;
    let with_client_id = format!("{}&client_id=c2", end_session_uri(Some(signed_in.id_token()), None, None));
    let reply = h.get(&with_client_id, Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("two different applications"), "{}", reply.text());
    let with_both = format!("{}&client_id=c2", end_session_uri(Some(signed_in.id_token()), Some(other_out), None));
    let reply = h.get(&with_both, Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
    let reply =
        h.get(&end_session_uri(Some(signed_in.id_token()), Some(other_out), None), Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "registered by c2, hint for c1");
    assert!(reply.headers.get(header::LOCATION).is_none());
    // An unknown client_id is refused too.
    let reply = h.get("/end_session?client_id=nobody", Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(prompt_none(&h, &signed_in.session).await.param("code").is_some(), "still signed in");
}

/// CS-OP-L06: a post-logout URI without a hint or client_id has no client to check it against.
#[tokio::test]
async fn cs_op_l06_redirect_without_a_client_is_refused() {
    let (h, _) = harness().await;
    let signed_in = sign_in(&h).await;
    let reply = h.get(&end_session_uri(None, Some(C1_POST_LOGOUT), Some("x")), Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
    let reply = h.get("/end_session?state=a&state=b", Some(&signed_in.session)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "RFC 6749 §3.1: no repeated parameters");
}

// ---------------------------------------------------------------------------------------------------------
// Confirmation (CS-OP-L07, CS-OP-L10, EP-ES04, OAUTH-UI01)

/// CS-OP-L07, EP-ES04 (ASVS 5.0 10.6.2): without a hint nobody is signed out until they confirm; a forged or
/// cookie-less confirmation is refused; a real one signs out and shows the signed-out page.
#[tokio::test]
async fn cs_op_l07_ep_es04_no_hint_asks_first_and_only_a_real_confirmation_signs_out() {
    let (h, recorder) = harness().await;
    let signed_in = sign_in(&h).await;
    let page = h.get("/end_session", Some(&signed_in.session)).await;
    assert_eq!(page.status, StatusCode::OK);
    // OAUTH-UI01: the confirmation page cannot be framed.
    assert!(page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(prompt_none(&h, &signed_in.session).await.param("code").is_some(), "asking signs nobody out");
    let (csrf, request) = confirmation_fields(&page.text());
    let csrf_cookie = cookie_pair(&page.headers, "gh-csrf");
    assert!(csrf_cookie.starts_with("__Host-gh-csrf="));
    let both = format!("{}; {csrf_cookie}", signed_in.session);

    for (form_csrf, cookie, why) in [
        ("wrong", both.as_str(), "a forged form token"),
        (csrf.as_str(), signed_in.session.as_str(), "no CSRF cookie (a cross-site POST)"),
        ("", both.as_str(), "no form token"),
    ] {
        let reply = h
            .post_form("/end_session", &[("csrf", form_csrf), ("logout_request", &request)], &[("cookie", cookie)])
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{why}");
        assert!(reply.headers.get(header::LOCATION).is_none(), "{why}");
    }
    // A different last character (replacing it with a fixed one left the ticket intact 1 time in 64).
    let last = if request.ends_with('A') { 'B' } else { 'A' };
    let tampered = format!("{}{last}", &request[..request.len() - 1]);
    let reply =
        h.post_form("/end_session", &[("csrf", &csrf), ("logout_request", &tampered)], &[("cookie", &both)]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "a tampered ticket");
    assert!(prompt_none(&h, &signed_in.session).await.param("code").is_some(), "still signed in");

    let reply =
        h.post_form("/end_session", &[("csrf", &csrf), ("logout_request", &request)], &[("cookie", &both)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.text().contains("You are signed out"));
    assert_session_cookie_deleted(&reply);
    assert_eq!(prompt_none(&h, &signed_in.session).await.param("error").as_deref(), Some("login_required"));
    assert_eq!(refresh_c1(&h, signed_in.refresh_token()).await.oauth_error(), "invalid_grant");
    assert_eq!(recorder.wait_for(1, Duration::from_secs(5)).await[0].client_id, "c1");
}

/// The confirmation page expires (15 minutes).
#[tokio::test]
async fn a_stale_confirmation_is_refused() {
    let (h, _) = harness().await;
    let signed_in = sign_in(&h).await;
    let page = h.get("/end_session", Some(&signed_in.session)).await;
    let (csrf, request) = confirmation_fields(&page.text());
    let both = format!("{}; {}", signed_in.session, cookie_pair(&page.headers, "gh-csrf"));
    h.clock.advance(16 * 60);
    let reply =
        h.post_form("/end_session", &[("csrf", &csrf), ("logout_request", &request)], &[("cookie", &both)]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(prompt_none(&h, &signed_in.session).await.param("code").is_some(), "still signed in");
}

/// `client_id` without a hint: the post-logout URI is checked against that client, the user confirms, and
/// then the browser goes there with `state`. CS-OP-L10: `state` alone asks and then shows the page.
#[tokio::test]
async fn cs_op_l10_client_id_without_hint_redirects_after_confirmation() {
    let (h, _) = harness().await;
    let signed_in = sign_in(&h).await;
    let uri = format!("{}&client_id=c1", end_session_uri(None, Some(C1_POST_LOGOUT), Some("st")));
    let page = h.get(&uri, Some(&signed_in.session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("c1 app"), "names the client: {}", page.text());
    let (csrf, request) = confirmation_fields(&page.text());
    let both = format!("{}; {}", signed_in.session, cookie_pair(&page.headers, "gh-csrf"));
    let reply =
        h.post_form("/end_session", &[("csrf", &csrf), ("logout_request", &request)], &[("cookie", &both)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location().as_str(), format!("{C1_POST_LOGOUT}?state=st"));
    assert_eq!(prompt_none(&h, &signed_in.session).await.param("error").as_deref(), Some("login_required"));

    let signed_in = sign_in(&h).await;
    let page = h.get("/end_session?state=only", Some(&signed_in.session)).await;
    let (csrf, request) = confirmation_fields(&page.text());
    let both = format!("{}; {}", signed_in.session, cookie_pair(&page.headers, "gh-csrf"));
    let reply =
        h.post_form("/end_session", &[("csrf", &csrf), ("logout_request", &request)], &[("cookie", &both)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get(header::LOCATION).is_none());
    assert!(reply.text().contains("You are signed out"));
}

/// Without any session there is nothing to protect: the signed-out page at once.
#[tokio::test]
async fn without_a_session_end_session_just_says_signed_out() {
    let (h, _) = harness().await;
    let reply = h.get("/end_session", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("You are signed out"));
}

// ---------------------------------------------------------------------------------------------------------
// Discovery, administration, expiry

/// CS-OP-L11, EP-META04: discovery advertises the end-session endpoint and back-channel logout with `sid`.
#[tokio::test]
async fn cs_op_l11_discovery_advertises_logout() {
    let (h, _) = harness().await;
    let doc = h.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["end_session_endpoint"], format!("{ISSUER}/end_session"));
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
}

/// `gatehouse sessions list|revoke`: listing by user, revoking by sid and by user ends the sessions, revokes
/// their grants and sends back-channel logout tokens (awaited: the CLI exits afterwards).
#[tokio::test]
async fn admin_lists_and_revokes_sessions_with_backchannel_logout() {
    let (h, recorder) = harness().await;
    let first = sign_in(&h).await;
    h.clock.advance(1);
    let second = sign_in(&h).await;
    let now = h.clock.now();
    let sid = |s: &SignedIn| jwt_parts(s.id_token()).1["sid"].as_str().unwrap().to_owned();

    let listed = admin::list_sessions(&h.store, None, now).await.unwrap();
    assert_eq!(listed.iter().map(|l| l.session.sid.clone()).collect::<Vec<_>>(), [sid(&first), sid(&second)]);
    assert!(listed.iter().all(|l| l.username.as_deref() == Some("alice") && l.clients == ["c1"]));
    assert_eq!(admin::list_sessions(&h.store, Some("alice"), now).await.unwrap(), listed);
    assert!(admin::list_sessions(&h.store, Some("nobody"), now).await.is_err());

    let backchannel = Backchannel::of(h.idp.state());
    let revoked = admin::revoke_sessions(&h.store, &backchannel, SessionSelector::Sid(sid(&first)), now).await.unwrap();
    assert_eq!((revoked.sessions, revoked.grants_revoked), (1, 1));
    assert_eq!(revoked.notifications.len(), 1);
    assert_eq!(revoked.notifications[0].outcome, DeliveryOutcome::Delivered { attempts: 1 });
    assert_eq!(prompt_none(&h, &first.session).await.param("error").as_deref(), Some("login_required"));
    assert!(prompt_none(&h, &second.session).await.param("code").is_some(), "the other session lives");

    let revoked =
        admin::revoke_sessions(&h.store, &backchannel, SessionSelector::User("alice".into()), now).await.unwrap();
    assert_eq!(revoked.sessions, 1);
    assert_eq!(revoked.grants_revoked, 2, "the SSO code just issued under the session too");
    assert_eq!(prompt_none(&h, &second.session).await.param("error").as_deref(), Some("login_required"));
    assert_eq!(refresh_c1(&h, second.refresh_token()).await.oauth_error(), "invalid_grant");
    assert!(admin::list_sessions(&h.store, None, now).await.unwrap().is_empty());
    let delivered: Vec<LogoutDelivery> = recorder.deliveries();
    assert_eq!(delivered.len(), 2, "delivered before revoke_sessions returned");
    for (delivery, signed_in) in delivered.iter().zip([&first, &second]) {
        let claims = verify_logout_token(&h, delivery.logout_token.expose(), "c1").await;
        assert_eq!(claims["sid"], sid(signed_in));
    }
    assert!(admin::revoke_sessions(&h.store, &backchannel, SessionSelector::User("nobody".into()), now).await.is_err());
}

/// `gatehouse sessions revoke` right after `gatehouse keys rotate`: the running server publishes the new key only
/// at its next reload, so the CLI signs logout tokens with the key in force `key_reload_interval` ago, which the
/// served JWK Set has (found by scripts/soak.sh: the gateway refused such logout tokens, 400, and the logout was
/// lost); a reload interval later it signs with the new key.
#[tokio::test]
async fn admin_logout_tokens_are_signed_with_a_key_the_running_server_publishes() {
    let (h, _) = harness().await;
    let master = &h.idp.state().settings.master_key;
    // The server's keys were made at start; the rotation comes later.
    h.clock.advance(100);
    let now = h.clock.now();
    let cli_kid = |backchannel: Backchannel| backchannel.keys.signer(SigningAlg::RS256).unwrap().kid.clone();
    let served = async || -> Vec<String> {
        let jwks = h.get("/jwks", None).await.json();
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    };
    let before = cli_kid(admin::backchannel(&h.store, ISSUER, master, now, 10).await.unwrap());

    admin::rotate_keys(&h.store, master, now).await.unwrap();
    let right_after = cli_kid(admin::backchannel(&h.store, ISSUER, master, now, 10).await.unwrap());
    assert_eq!(right_after, before, "the key the server still signs with");
    assert!(served().await.contains(&right_after), "and publishes");
    let later = cli_kid(admin::backchannel(&h.store, ISSUER, master, now + 10, 10).await.unwrap());
    assert_ne!(later, before, "a reload interval later: the new key");
    h.idp.state().keys.reload(&h.store, master).await.unwrap();
    assert!(served().await.contains(&later));
}

/// Idle timeout and absolute lifetime end sessions, and the background purge (`purge_expired`) deletes them.
#[tokio::test]
async fn expired_sessions_are_purged() {
    let (h, recorder) = harness_with(|s| {
        s.session.idle_timeout = 100;
        s.session.absolute_lifetime = 250;
    })
    .await;
    let stored = |h: &Harness| {
        let store = h.store.clone();
        async move { store.sessions.list_sessions(None, i64::MIN).await.unwrap().len() }
    };
    let active = sign_in(&h).await; // t = 0
    for _ in 0..2 {
        h.clock.advance(90); // t = 90, 180: activity extends the idle expiry, never past the absolute end
        assert!(prompt_none(&h, &active.session).await.param("code").is_some());
    }
    let idle = sign_in(&h).await; // t = 180: idle until 280
    assert_eq!(stored(&h).await, 2);

    h.clock.advance(70); // t = 250: the absolute lifetime of the first session is over
    assert_eq!(prompt_none(&h, &active.session).await.param("error").as_deref(), Some("login_required"));
    h.store.grants.purge_expired(h.clock.now()).await.unwrap();
    assert_eq!(stored(&h).await, 1, "the first session was purged");
    assert!(prompt_none(&h, &idle.session).await.param("code").is_some());

    h.clock.advance(101); // idle for 101 s > 100
    assert_eq!(prompt_none(&h, &idle.session).await.param("error").as_deref(), Some("login_required"));
    h.store.grants.purge_expired(h.clock.now()).await.unwrap();
    assert_eq!(stored(&h).await, 0, "the idle session was purged");
    // Expiry is not a logout: nobody is told, and refresh tokens live on their own lifetimes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(recorder.deliveries().is_empty());
    assert_eq!(refresh_c1(&h, idle.refresh_token()).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

/// The shared harness, restarted over the same store and clock with a recording back-channel notifier.
async fn harness() -> (Harness, Arc<RecordingNotifier>) {
    harness_with(|_| {}).await
}

async fn harness_with(adjust: impl Fn(&mut Settings)) -> (Harness, Arc<RecordingNotifier>) {
    let mut h = Harness::with(&adjust, None).await;
    let recorder = Arc::new(RecordingNotifier::new());
    let settings = h.idp.state().settings.clone();
    h.idp = Idp::start_with_notifier(settings, h.store.clone(), h.clock.clone(), recorder.clone()).await.unwrap();
    h.router = h.idp.router();
    (h, recorder)
}

/// Alice signed in at c1 in one browser: the IdP session cookie and c1's tokens (with a refresh token).
struct SignedIn {
    session: String,
    tokens: Value,
}

impl SignedIn {
    fn id_token(&self) -> &str {
        self.tokens["id_token"].as_str().unwrap()
    }

    fn access_token(&self) -> &str {
        self.tokens["access_token"].as_str().unwrap()
    }

    fn refresh_token(&self) -> &str {
        self.tokens["refresh_token"].as_str().unwrap()
    }
}

async fn sign_in(h: &Harness) -> SignedIn {
    let verifier = verifier();
    let (reply, session) = h.login("c1", "scope=openid%20offline_access%20api&nonce=n-1&state=s-1", &verifier).await;
    let code = reply.param("code").expect("code");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    let reply = h.token_basic("c1", C1_SECRET, &form).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    SignedIn { session, tokens: reply.json() }
}

/// c2 signs in through the same IdP session (single sign-on) and gets tokens with a refresh token.
async fn sso_c2(h: &Harness, session: &str) -> Value {
    let verifier = verifier();
    let reply =
        h.get(&authorize_uri("c2", "scope=openid%20offline_access&prompt=none", &verifier), Some(session)).await;
    let code = reply.param("code").expect("code by SSO");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
        ("client_id", "c2"),
        ("client_secret", C2_SECRET),
    ];
    let reply = h.post_form("/token", &form, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

async fn prompt_none(h: &Harness, session: &str) -> Reply {
    let reply = h.get(&authorize_uri("c1", "prompt=none", &verifier()), Some(session)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    reply
}

async fn refresh_c1(h: &Harness, refresh_token: &str) -> Reply {
    h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

async fn introspect_c1(h: &Harness, token: &str) -> Value {
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("c1:{C1_SECRET}")));
    h.post_form("/introspect", &[("token", token)], &[("authorization", &basic)]).await.json()
}

fn end_session_uri(hint: Option<&str>, post_logout_redirect_uri: Option<&str>, state: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in
        [("id_token_hint", hint), ("post_logout_redirect_uri", post_logout_redirect_uri), ("state", state)]
    {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    format!("/end_session?{}", query.finish())
}

/// The `csrf` and `logout_request` hidden inputs of the confirmation form.
fn confirmation_fields(html: &str) -> (String, String) {
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {html}")) + marker.len();
        let end = html[start..].find('"').unwrap() + start;
        html[start..end].to_owned()
    };
    (field("csrf"), field("logout_request"))
}

/// BFF-CK08 on the OP side: the deletion uses the same name and attributes (`__Host-` needs `Path=/; Secure`).
fn assert_session_cookie_deleted(reply: &Reply) {
    let deletion = reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-gh-session="))
        .expect("the session cookie is deleted");
    assert!(deletion.starts_with("__Host-gh-session=;"), "{deletion}");
    for attribute in ["Max-Age=0", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(deletion.contains(attribute), "{attribute} in {deletion}");
    }
}
