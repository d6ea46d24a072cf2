//! The store conformance suite: every behaviour the protocol code relies on, exercised through the `Store`
//! trait objects only, so each back-end (SQLite in memory and on file today) runs the same checks.

use std::sync::Arc;

use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};

use super::*;

async fn backends() -> Vec<(&'static str, Store)> {
    let dir = std::env::temp_dir().join(format!("gatehouse-store-{}", crate::random::token::<8>()));
    let file = format!("sqlite://{}", dir.join("test.db").display());
    vec![("memory", Store::open("sqlite::memory:").await.unwrap()), ("file", Store::open(&file).await.unwrap())]
}

fn grant(id: &str, expires_at: Epoch) -> GrantRecord {
    GrantRecord {
        grant_id: id.into(),
        client_id: "c1".into(),
        sub: "s1".into(),
        scope: "openid".into(),
        auth_time: 100,
        sid: Some("sid".into()),
        created_at: 100,
        expires_at,
        revoked_at: None,
    }
}

fn code(hash: &[u8], grant_id: &str, expires_at: Epoch) -> CodeRecord {
    CodeRecord {
        code_hash: hash.to_vec(),
        grant_id: grant_id.into(),
        client_id: "c1".into(),
        redirect_uri: "https://a/cb".into(),
        code_challenge: "x".into(),
        nonce: None,
        dpop_jkt: None,
        expires_at,
    }
}

fn refresh(hash: &[u8], grant_id: &str) -> RefreshRecord {
    RefreshRecord {
        token_hash: hash.to_vec(),
        grant_id: grant_id.into(),
        client_id: "c1".into(),
        scope: "openid".into(),
        dpop_jkt: None,
        issued_at: 100,
        expires_at: 10_000,
        superseded_at: None,
    }
}

#[tokio::test]
async fn users_upsert_keeps_sub() {
    for (name, store) in backends().await {
        let user = UserRecord {
            sub: "sub-1".into(),
            username: "alice".into(),
            password_hash: "h1".into(),
            claims: StandardClaims { name: Some("A".into()), ..Default::default() },
            created_at: 1,
        };
        store.users.upsert_user(user.clone()).await.unwrap();
        let again = store
            .users
            .upsert_user(UserRecord { sub: "sub-2".into(), password_hash: "h2".into(), ..user })
            .await
            .unwrap();
        assert_eq!(again.sub, "sub-1", "{name}");
        assert_eq!(again.password_hash, "h2", "{name}");
        assert_eq!(store.users.user_by_sub("sub-1").await.unwrap().unwrap().username, "alice");
        assert_eq!(store.users.list_users().await.unwrap().len(), 1);
        assert!(store.users.remove_user("alice").await.unwrap());
        assert!(!store.users.remove_user("alice").await.unwrap());
        assert!(store.users.user_by_username("alice").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn clients_and_keys_round_trip() {
    for (name, store) in backends().await {
        let client = ClientRecord {
            client_id: "c1".into(),
            name: None,
            auth_method: ClientAuthMethod::ClientSecretBasic,
            secret_sha256: Some("d".into()),
            jwks: None,
            redirect_uris: vec!["https://a/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".into()],
            id_token_signed_response_alg: SigningAlg::RS256,
            backchannel_logout_uri: None,
            source: "cli".into(),
        };
        store.clients.upsert_client(client.clone()).await.unwrap();
        assert_eq!(store.clients.client("c1").await.unwrap(), Some(client), "{name}");
        assert!(store.clients.remove_client("c1").await.unwrap());
        assert_eq!(store.clients.client("c1").await.unwrap(), None);

        let key = crate::keys::generate(&crate::settings::MasterKey([1; 32]), SigningAlg::ES256, KeyState::Pending, 5)
            .unwrap();
        store.keys.insert_key(key.clone()).await.unwrap();
        store.keys.set_key_state(&key.kid, KeyState::Active, 7).await.unwrap();
        store.keys.set_key_state(&key.kid, KeyState::Retired, 9).await.unwrap();
        let stored = store.keys.list_keys().await.unwrap().remove(0);
        assert_eq!((stored.state, stored.activated_at, stored.retired_at), (KeyState::Retired, Some(7), Some(9)));
        assert_eq!(stored.public_jwk, key.public_jwk);
        store.keys.remove_key(&key.kid).await.unwrap();
        assert!(store.keys.list_keys().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn codes_are_consumed_once_even_concurrently() {
    for (name, store) in backends().await {
        store.grants.insert_code(grant("g1", 5000), code(b"h1", "g1", 200)).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let grants = store.grants.clone();
                tokio::spawn(async move { grants.consume_code(b"h1", 150).await.unwrap() })
            })
            .collect();
        let mut consumed = 0;
        for task in tasks {
            match task.await.unwrap() {
                CodeOutcome::Consumed(_, grant) => {
                    assert_eq!(grant.grant_id, "g1");
                    consumed += 1;
                }
                CodeOutcome::AlreadyUsed(code) => assert_eq!(code.grant_id, "g1"),
                CodeOutcome::Missing => panic!("{name}: missing"),
            }
        }
        assert_eq!(consumed, 1, "{name}");
        assert_eq!(store.grants.consume_code(b"nope", 150).await.unwrap(), CodeOutcome::Missing);
        // Expired codes are Missing, and spent.
        store.grants.insert_code(grant("g2", 5000), code(b"h2", "g2", 200)).await.unwrap();
        assert_eq!(store.grants.consume_code(b"h2", 200).await.unwrap(), CodeOutcome::Missing);
        assert!(matches!(store.grants.consume_code(b"h2", 200).await.unwrap(), CodeOutcome::AlreadyUsed(_)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_rotation_is_atomic_with_grace_and_reuse_detection() {
    for (name, store) in backends().await {
        store.grants.insert_code(grant("g", 5000), code(b"c", "g", 200)).await.unwrap();
        store.grants.insert_refresh(refresh(b"r1", "g")).await.unwrap();
        // grace 0: exactly one of 20 concurrent rotations wins.
        let tasks: Vec<_> = (0..20u8)
            .map(|i| {
                let grants = store.grants.clone();
                tokio::spawn(
                    async move { grants.rotate_refresh(b"r1", refresh(&[b'n', i], "g"), 150, 0).await.unwrap() },
                )
            })
            .collect();
        let mut rotated = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), RotateOutcome::Rotated(_)) {
                rotated += 1;
            }
        }
        assert_eq!(rotated, 1, "{name}");
        // The losers at grace 0 were reuse: the grant is revoked, so everything is Missing now.
        assert!(store.grants.grant("g").await.unwrap().unwrap().revoked_at.is_some());
        assert_eq!(
            store.grants.rotate_refresh(b"n\x00", refresh(b"z", "g"), 151, 0).await.unwrap(),
            RotateOutcome::Missing
        );
    }
}

#[tokio::test]
async fn refresh_grace_window_then_reuse_revokes_family() {
    for (name, store) in backends().await {
        store.grants.insert_code(grant("g", 5000), code(b"c", "g", 200)).await.unwrap();
        store.grants.insert_refresh(refresh(b"r1", "g")).await.unwrap();
        store.grants.record_access_token("at1", "g", 5000).await.unwrap();
        assert!(matches!(
            store.grants.rotate_refresh(b"r1", refresh(b"r2", "g"), 150, 60).await.unwrap(),
            RotateOutcome::Rotated(_)
        ));
        assert!(
            matches!(
                store.grants.rotate_refresh(b"r1", refresh(b"r3", "g"), 200, 60).await.unwrap(),
                RotateOutcome::Rotated(_)
            ),
            "{name}: retry in grace"
        );
        assert_eq!(
            store.grants.rotate_refresh(b"r1", refresh(b"r4", "g"), 300, 60).await.unwrap(),
            RotateOutcome::ReuseDetected
        );
        assert_eq!(
            store.grants.rotate_refresh(b"r3", refresh(b"r5", "g"), 301, 60).await.unwrap(),
            RotateOutcome::Missing,
            "family revoked"
        );
        assert!(store.grants.access_token_revoked("at1").await.unwrap(), "{name}");
        assert!(!store.grants.access_token_revoked("unknown").await.unwrap());
        let (token, grant) = store.grants.refresh(b"r3").await.unwrap().unwrap();
        assert_eq!(token.grant_id, "g");
        assert!(grant.revoked_at.is_some());
        // Expired token or grant → Missing.
        store.grants.insert_code(grant_rec("h", 400), code(b"c2", "h", 200)).await.unwrap();
        store.grants.insert_refresh(refresh(b"q1", "h")).await.unwrap();
        assert_eq!(
            store.grants.rotate_refresh(b"q1", refresh(b"q2", "h"), 400, 60).await.unwrap(),
            RotateOutcome::Missing
        );
    }
}

fn grant_rec(id: &str, expires_at: Epoch) -> GrantRecord {
    grant(id, expires_at)
}

#[tokio::test]
async fn jtis_are_single_use_until_expiry() {
    for (name, store) in backends().await {
        let grants: Arc<dyn GrantStore> = store.grants.clone();
        assert_eq!(grants.consume_jti("ns", "j", 200, 100).await.unwrap(), ReplayOutcome::Consumed, "{name}");
        assert_eq!(grants.consume_jti("ns", "j", 200, 150).await.unwrap(), ReplayOutcome::AlreadyUsed);
        assert_eq!(grants.consume_jti("other", "j", 200, 150).await.unwrap(), ReplayOutcome::Consumed);
        assert_eq!(
            grants.consume_jti("ns", "j", 400, 200).await.unwrap(),
            ReplayOutcome::Consumed,
            "expired entry reusable"
        );
    }
}

#[tokio::test]
async fn sessions_expire_and_purge_cleans_up() {
    for (name, store) in backends().await {
        let session = IdpSessionRecord {
            sid: "s".into(),
            sub: "u".into(),
            auth_time: 1,
            created_at: 1,
            last_seen: 1,
            expires_at: 100,
        };
        store.sessions.insert_session(session.clone()).await.unwrap();
        assert_eq!(store.sessions.session("s", 50).await.unwrap(), Some(session), "{name}");
        assert_eq!(store.sessions.session("s", 100).await.unwrap(), None);
        store.sessions.touch_session("s", 60, 200).await.unwrap();
        assert_eq!(store.sessions.session("s", 150).await.unwrap().unwrap().last_seen, 60);
        assert_eq!(store.sessions.sessions_of("u", 150).await.unwrap().len(), 1);
        store.grants.insert_code(grant("g", 300), code(b"c", "g", 250)).await.unwrap();
        store.grants.insert_refresh(refresh(b"r", "g")).await.unwrap();
        assert!(store.grants.purge_expired(10_001).await.unwrap() >= 4, "{name}");
        assert_eq!(store.sessions.session("s", 150).await.unwrap(), None);
        assert!(store.grants.grant("g").await.unwrap().is_none());
        assert!(store.sessions.remove_session("nope").await.is_ok());
    }
}
