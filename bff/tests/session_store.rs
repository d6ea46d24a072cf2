//! Gateway sessions in the embedded store, end to end: a logged-in browser keeps its session across a gateway
//! restart on the same store file and cookie key; logout and back-channel logout remove the session from the
//! file, not only from memory; a restart with another cookie key starts cleanly and the old rows are gone; cookie
//! keys replaced while the gateway runs (SIGHUP in `gatehouse serve`) keep every session.

mod support;

use std::path::Path;
use std::sync::Arc;

use gatehouse_bff::seal::KeyRing;
use gatehouse_bff::session::{Lifetimes, SessionStore, SqliteSessionStore};
use gatehouse_bff::settings::{CookieKey, SessionStoreSettings};
use support::{Browser, Harness, Options};

async fn start_on(file: &Path) -> Harness {
    Harness::start(Options {
        session_store: SessionStoreSettings::Sqlite { path: file.to_path_buf() },
        ..Default::default()
    })
    .await
}

/// The file's rows as a second process would see them, opened with the harness gateway's cookie keys.
async fn durable(h: &Harness, file: &Path) -> SqliteSessionStore {
    let ring = KeyRing::new(&h.settings.cookie.keys).unwrap();
    let lifetimes = Lifetimes { idle: 3600, absolute: 86_400 };
    SqliteSessionStore::open(file, ring, lifetimes).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logged_in_session_survives_a_gateway_restart_on_the_same_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway-sessions.db");
    let h = start_on(&file).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    let before = h.only_session().await;
    assert_eq!(durable(&h, &file).await.count().await.unwrap(), 1, "written to the file at login");

    let h = h.restart_gateway().await;
    assert!(h.gateway.sessions.get(&before.id).await.unwrap().is_some(), "the new gateway reads the file");
    let user = b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await;
    assert_eq!(user.status, 200, "the browser is still logged in: {}", user.body);
    // The restored session still holds its DPoP key: the API accepts the token bound to it.
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let key = gatehouse_proto::dpop_key::DpopKey::from_pkcs8(&before.dpop_key).unwrap();
    assert_eq!(seen["jkt"], key.jkt());
    assert_eq!(seen["sub"], before.sub);

    // An access token refreshed after the restart is written back, so a second restart keeps it.
    h.expire_access_token_soon().await;
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    let refreshed = h.only_session().await;
    assert_ne!(refreshed.tokens.access_token, before.tokens.access_token, "refreshed");
    let h = h.restart_gateway().await;
    let after = h.gateway.sessions.get(&before.id).await.unwrap().expect("still there");
    assert_eq!(after.tokens, refreshed.tokens, "the rotated refresh token survived, not the spent one");
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_removes_the_session_from_the_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway-sessions.db");
    let h = start_on(&file).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let old_cookie = b.cookie(support::SESSION_COOKIE).unwrap();
    let session = h.only_session().await;
    let logout = h.logout_url(&b).await;
    let reply = b.get(&h.gw(&logout), &[]).await;
    assert_eq!(reply.status, 302, "{}", reply.body);

    let file_view = durable(&h, &file).await;
    assert!(file_view.get(&session.id).await.unwrap().is_none(), "gone from the file");
    assert_eq!(file_view.count().await.unwrap(), 0);
    // Nor does a restart bring it back for the old cookie.
    let h = h.restart_gateway().await;
    let mut replay = Browser::new();
    replay.set_cookie(support::SESSION_COOKIE, &old_cookie);
    assert_eq!(replay.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn back_channel_logout_removes_the_session_from_the_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway-sessions.db");
    let h = start_on(&file).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    // Cached in memory by this use, so the removal must reach both the cache and the file.
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    let session = h.only_session().await;
    assert!(session.idp_sid.is_some(), "the token service names the session by sid");

    let reports = h.revoke_idp_sessions("alice").await;
    assert!(reports.iter().all(|r| r.contains("Delivered")), "{reports:?}");
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 401, "gone from memory");
    let file_view = durable(&h, &file).await;
    assert!(file_view.get(&session.id).await.unwrap().is_none(), "gone from the file");
    assert_eq!(file_view.count().await.unwrap(), 0);
    let h = h.restart_gateway().await;
    assert_eq!(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401);
    h.stop().await;
}

/// The demo's case: no cookie key configured, so each start generates one. The sessions of the earlier run stay
/// in the file but no longer open; the gateway starts anyway and treats them as absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_with_a_new_cookie_key_starts_cleanly_and_old_sessions_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway-sessions.db");
    let h = start_on(&file).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let old = h.only_session().await;

    let h = h
        .restart_gateway_with(|settings| {
            settings.cookie.keys = vec![CookieKey { id: "gen".into(), key: support::rand_key() }];
        })
        .await;
    assert_eq!(b.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401, "the old cookie does not open");
    assert!(h.gateway.sessions.get(&old.id).await.unwrap().is_none(), "nor does the old row");
    assert_eq!(h.session_count().await, 0);
    assert_eq!(h.gateway.sessions.count().await.unwrap(), 0, "unopenable rows were deleted when seen");

    // Logging in again works as on a fresh store.
    let mut again = Browser::new();
    h.login(&mut again, "alice", "/").await;
    assert_eq!(again.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    assert_eq!(h.session_count().await, 1);
    let fresh: Vec<Arc<_>> = h.sessions().await;
    assert_ne!(fresh[0].id, old.id);
    h.stop().await;
}

/// Cookie key rotation without a restart (`Gateway::replace_cookie_keys`, what SIGHUP does): with a new key in
/// front the session goes on, its cookie is re-sealed under the new key (CRYPT-12) and its row in the file too;
/// once the old key is dropped the session still goes on, the file opens with the new key alone, and a cookie
/// still sealed under the retired key is anonymous.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookie_keys_replaced_while_running_keep_the_session_and_re_seal_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway-sessions.db");
    let h = start_on(&file).await;
    let mut b = Browser::new();
    h.login(&mut b, "alice", "/").await;
    let first = b.cookie(support::SESSION_COOKIE).unwrap();
    let old_id = h.settings.cookie.keys[0].id.clone();
    assert!(first.starts_with(&format!("{old_id}.")), "{first}");
    let old = h.settings.cookie.keys[0].clone();
    let new = CookieKey { id: "rotated".into(), key: support::rand_key() };

    let replaced = h.gateway.replace_cookie_keys(&[new.clone(), old.clone()]).unwrap();
    assert_eq!((replaced.sealing_before.as_str(), replaced.sealing_now.as_str()), (old_id.as_str(), "rotated"));
    assert!(replaced.retired.is_empty());
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "the old key still opens: {}", reply.body);
    b.absorb(&reply);
    assert!(b.cookie(support::SESSION_COOKIE).unwrap().starts_with("rotated."), "re-sealed under the new key");
    // A refresh writes the row again, now under the new key.
    h.expire_access_token_soon().await;
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);

    let replaced = h.gateway.replace_cookie_keys(std::slice::from_ref(&new)).unwrap();
    assert_eq!(replaced.retired, [old_id]);
    let reply = b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = h.only_session().await;
    let lifetimes = Lifetimes { idle: 3600, absolute: 86_400 };
    let new_only = SqliteSessionStore::open(&file, KeyRing::new(std::slice::from_ref(&new)).unwrap(), lifetimes);
    assert!(new_only.await.unwrap().get(&session.id).await.unwrap().is_some(), "the row opens with the new key");
    let mut replay = Browser::new();
    replay.set_cookie(support::SESSION_COOKIE, &first);
    assert_eq!(replay.get(&h.gw("/bff/user"), &[("x-csrf", "1")]).await.status, 401, "the retired key opens nothing");
    // An invalid list changes nothing.
    assert!(h.gateway.replace_cookie_keys(&[]).is_err());
    assert_eq!(b.get(&h.gw("/api/whoami"), &[("x-csrf", "1")]).await.status, 200);
    h.stop().await;
}
