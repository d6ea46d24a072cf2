//! The store conformance suite: every behaviour the protocol code relies on, proved through the `Store` trait
//! objects only, so every back-end runs the same checks. Each behaviour is one `async fn(&Store)` below; the
//! `conformance!` invocations at the top turn each into one `#[tokio::test]` per back-end, each on a fresh store.
//! SQLite runs twice: in memory (one connection) and on a file in a fresh temp directory (a pool of several
//! connections, where the concurrency checks bite). A new back-end adds one line here.
//!
//! The single-use checks are the security properties of RFC 6749 §4.1.2 (a code is redeemed once), RFC 9700
//! §4.14.2 (refresh-token rotation with reuse detection) and RFC 7523 §3 (a client assertion's `jti` is used once).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use gatehouse_proto::{Jwk, JwkSet};

use super::*;

conformance!(sqlite_memory, open_sqlite_memory);
conformance!(sqlite_file, open_sqlite_file);

/// Concurrent callers in the race checks.
const RACERS: usize = 20;

// ---------------------------------------------------------------------------------------------------------
// Users and clients

async fn users_upsert_by_username_keeps_sub(store: &Store) {
    let users = &store.users;
    let alice = user("sub-a", "alice", "hash-1");
    assert_eq!(users.upsert_user(alice.clone()).await.unwrap(), alice);
    users.upsert_user(user("sub-b", "bob", "hash-b")).await.unwrap();

    // Same username, new sub, hash, claims and created_at: sub and created_at stay, hash and claims change.
    let update = UserRecord {
        sub: "sub-other".into(),
        password_hash: "hash-2".into(),
        claims: StandardClaims { email: Some("alice@example.com".into()), ..Default::default() },
        created_at: 999,
        ..alice.clone()
    };
    let stored = users.upsert_user(update.clone()).await.unwrap();
    let expected = UserRecord { sub: "sub-a".into(), created_at: alice.created_at, ..update };
    assert_eq!(stored, expected);
    assert_eq!(users.user_by_username("alice").await.unwrap(), Some(expected.clone()));
    assert_eq!(users.user_by_sub("sub-a").await.unwrap(), Some(expected.clone()));
    assert_eq!(users.user_by_sub("sub-other").await.unwrap(), None, "the offered sub was not taken");

    let names: Vec<String> = users.list_users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["alice", "bob"]);
}

async fn users_remove_and_unknown_lookups(store: &Store) {
    let users = &store.users;
    users.upsert_user(user("sub-a", "alice", "hash")).await.unwrap();
    assert!(users.remove_user("alice").await.unwrap());
    assert!(!users.remove_user("alice").await.unwrap(), "second removal finds nothing");
    assert!(!users.remove_user("nobody").await.unwrap());
    assert_eq!(users.user_by_username("alice").await.unwrap(), None);
    assert_eq!(users.user_by_sub("sub-a").await.unwrap(), None);
    assert!(users.list_users().await.unwrap().is_empty());
}

async fn clients_round_trip_update_and_remove(store: &Store) {
    let clients = &store.clients;
    let web = client("web");
    let mut tool = client("tool");
    tool.auth_method = ClientAuthMethod::PrivateKeyJwt;
    tool.secret_sha256 = None;
    tool.jwks = Some(JwkSet { keys: vec![Jwk::ec("P-256", &[3; 32], &[4; 32])] });
    tool.grant_types = vec![GrantType::ClientCredentials];
    tool.id_token_signed_response_alg = SigningAlg::ES256;
    clients.upsert_client(web.clone()).await.unwrap();
    clients.upsert_client(tool.clone()).await.unwrap();
    assert_eq!(clients.client("web").await.unwrap(), Some(web.clone()));
    assert_eq!(clients.client("tool").await.unwrap(), Some(tool.clone()));
    assert_eq!(clients.client("nobody").await.unwrap(), None);

    let renamed = ClientRecord { name: Some("Web 2".into()), redirect_uris: vec!["https://b/cb".into()], ..web };
    clients.upsert_client(renamed.clone()).await.unwrap();
    assert_eq!(clients.list_clients().await.unwrap(), [tool, renamed]);

    assert!(clients.remove_client("web").await.unwrap());
    assert!(!clients.remove_client("web").await.unwrap());
    assert_eq!(clients.client("web").await.unwrap(), None);
    assert_eq!(clients.list_clients().await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------------------
// Signing keys

async fn keys_are_listed_by_age_and_change_state(store: &Store) {
    let keys = &store.keys;
    let newer = key("k-new", SigningAlg::ES256, 20);
    let older = key("k-old", SigningAlg::RS256, 10);
    keys.insert_key(newer.clone()).await.unwrap();
    keys.insert_key(older.clone()).await.unwrap();
    assert_eq!(keys.list_keys().await.unwrap(), [older.clone(), newer.clone()], "ordered by created_at");
    assert!(keys.insert_key(older.clone()).await.is_err(), "a kid is unique");

    keys.set_key_state("k-new", KeyState::Active, 30).await.unwrap();
    keys.set_key_state("k-old", KeyState::Retired, 31).await.unwrap();
    let listed = keys.list_keys().await.unwrap();
    let expected_old = SigningKeyRecord { state: KeyState::Retired, retired_at: Some(31), ..older };
    let expected_new = SigningKeyRecord { state: KeyState::Active, activated_at: Some(30), ..newer };
    assert_eq!(listed, [expected_old, expected_new.clone()]);

    // Retiring keeps the activation time.
    keys.set_key_state("k-new", KeyState::Retired, 40).await.unwrap();
    let retired = keys.list_keys().await.unwrap().pop().unwrap();
    assert_eq!((retired.state, retired.activated_at, retired.retired_at), (KeyState::Retired, Some(30), Some(40)));
    assert!(keys.set_key_state("k-none", KeyState::Active, 41).await.is_err(), "a lost state change is an error");

    keys.remove_key("k-old").await.unwrap();
    keys.remove_key("k-none").await.unwrap();
    let kids: Vec<String> = keys.list_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["k-new"]);
}

// ---------------------------------------------------------------------------------------------------------
// Authorization codes (RFC 6749 §4.1.2: a code is used once; a second use revokes what it issued)

/// RFC 6749 §4.1.2 (catalogue oauth_ac02): spent once; every later presentation is `AlreadyUsed`, so the caller
/// revokes what the code issued.
async fn code_is_consumed_once(store: &Store) {
    let grants = &store.grants;
    let (g, c) = (grant("g1", 5000), code(b"code-1", "g1", 200));
    grants.insert_code(g.clone(), c.clone()).await.unwrap();
    assert_eq!(grants.grant("g1").await.unwrap(), Some(g.clone()), "insert_code stores the grant");

    assert_eq!(grants.consume_code(b"code-1", 150).await.unwrap(), CodeOutcome::Consumed(c.clone(), g));
    assert_eq!(grants.consume_code(b"code-1", 151).await.unwrap(), CodeOutcome::AlreadyUsed(c.clone()));
    // Replayed after expiry, it is still reuse, so the caller still revokes the grant.
    assert_eq!(grants.consume_code(b"code-1", 9000).await.unwrap(), CodeOutcome::AlreadyUsed(c));
    assert_eq!(grants.consume_code(b"unknown", 150).await.unwrap(), CodeOutcome::Missing);
}

/// RFC 6749 §4.1.2: an expired code is refused, and spent so it can never be redeemed.
async fn expired_code_is_missing_but_spent(store: &Store) {
    let grants = &store.grants;
    let c = code(b"code-1", "g1", 200);
    grants.insert_code(grant("g1", 5000), c.clone()).await.unwrap();
    assert_eq!(grants.consume_code(b"code-1", 200).await.unwrap(), CodeOutcome::Missing, "expires_at <= now");
    assert_eq!(grants.consume_code(b"code-1", 100).await.unwrap(), CodeOutcome::AlreadyUsed(c), "spent anyway");
}

/// RFC 6749 §4.1.2 (catalogue oauth_ac03): of concurrent redemptions exactly one wins.
async fn code_is_consumed_once_under_concurrency(store: &Store) {
    store.grants.insert_code(grant("g1", 5000), code(b"code-1", "g1", 200)).await.unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let grants = store.grants.clone();
            tokio::spawn(async move { grants.consume_code(b"code-1", 150).await.unwrap() })
        })
        .collect();
    let (mut consumed, mut already_used) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            CodeOutcome::Consumed(c, g) => {
                assert_eq!((c.grant_id.as_str(), g.grant_id.as_str()), ("g1", "g1"));
                consumed += 1;
            }
            CodeOutcome::AlreadyUsed(c) => {
                assert_eq!(c.code_hash, b"code-1");
                already_used += 1;
            }
            CodeOutcome::Missing => panic!("a live code went missing"),
        }
    }
    assert_eq!((consumed, already_used), (1, RACERS - 1));
}

async fn insert_code_is_all_or_nothing(store: &Store) {
    let grants = &store.grants;
    grants.insert_code(grant("g1", 5000), code(b"code-1", "g1", 200)).await.unwrap();
    // The code collides, so the new grant must not be left behind either.
    assert!(grants.insert_code(grant("g2", 5000), code(b"code-1", "g2", 200)).await.is_err());
    assert_eq!(grants.grant("g2").await.unwrap(), None);
    // And a grant that collides leaves no code.
    assert!(grants.insert_code(grant("g1", 5000), code(b"code-2", "g1", 200)).await.is_err());
    assert_eq!(grants.consume_code(b"code-2", 150).await.unwrap(), CodeOutcome::Missing);
}

// ---------------------------------------------------------------------------------------------------------
// Grant revocation

/// RFC 6749 §4.1.2 / RFC 9700 §4.14.2: revoking a grant revokes its refresh tokens and recorded access tokens.
async fn revoked_grant_revokes_its_tokens(store: &Store) {
    let grants = &store.grants;
    grants.insert_code(grant("g1", 5000), code(b"code-1", "g1", 200)).await.unwrap();
    grants.insert_code(grant("g2", 5000), code(b"code-2", "g2", 200)).await.unwrap();
    grants.insert_refresh(refresh(b"rt-1", "g1", 4000)).await.unwrap();
    grants.record_access_token("at-1", "g1", 400).await.unwrap();
    grants.record_access_token("at-2", "g2", 400).await.unwrap();
    assert!(!grants.access_token_revoked("at-1").await.unwrap());

    grants.revoke_grant("g1", 300).await.unwrap();
    grants.revoke_grant("g1", 350).await.unwrap();
    assert_eq!(grants.grant("g1").await.unwrap().unwrap().revoked_at, Some(300), "idempotent: the first time stays");
    assert!(grants.access_token_revoked("at-1").await.unwrap());
    assert!(!grants.access_token_revoked("at-2").await.unwrap(), "other grants are untouched");
    assert!(!grants.access_token_revoked("unknown").await.unwrap());

    // The token is still found (the protocol checks `revoked_at`), but cannot be rotated.
    let (token, g) = grants.refresh(b"rt-1").await.unwrap().unwrap();
    assert_eq!((token, g.revoked_at), (refresh(b"rt-1", "g1", 4000), Some(300)));
    assert_eq!(
        grants.rotate_refresh(b"rt-1", refresh(b"rt-2", "g1", 4000), 310, 60).await.unwrap(),
        RotateOutcome::Missing
    );
    assert_eq!(grants.refresh(b"rt-2").await.unwrap(), None, "no successor was stored");
    assert_eq!(grants.refresh(b"unknown").await.unwrap(), None);
    grants.revoke_grant("unknown", 300).await.unwrap();
}

// ---------------------------------------------------------------------------------------------------------
// Refresh-token rotation (RFC 9700 §4.14.2)

async fn rotation_supersedes_and_stores_the_successor(store: &Store) {
    let grants = &store.grants;
    let g = grant("g1", 5000);
    grants.insert_code(g.clone(), code(b"code-1", "g1", 200)).await.unwrap();
    grants.insert_refresh(refresh(b"rt-1", "g1", 4000)).await.unwrap();

    assert_eq!(
        grants.rotate_refresh(b"rt-1", refresh(b"rt-2", "g1", 4100), 150, 0).await.unwrap(),
        RotateOutcome::Rotated(g.clone())
    );
    let (old, _) = grants.refresh(b"rt-1").await.unwrap().unwrap();
    assert_eq!(old.superseded_at, Some(150));
    let (new, new_grant) = grants.refresh(b"rt-2").await.unwrap().unwrap();
    assert_eq!((new, new_grant), (refresh(b"rt-2", "g1", 4100), g.clone()));

    // The successor rotates in turn.
    assert_eq!(
        grants.rotate_refresh(b"rt-2", refresh(b"rt-3", "g1", 4200), 160, 0).await.unwrap(),
        RotateOutcome::Rotated(g)
    );
    // A successor must belong to the same grant: anything else is a caller bug, refused without side effects.
    assert!(grants.rotate_refresh(b"rt-3", refresh(b"rt-4", "other", 4200), 170, 0).await.is_err());
    assert_eq!(grants.refresh(b"rt-3").await.unwrap().unwrap().0.superseded_at, None);
    assert_eq!(grants.refresh(b"rt-4").await.unwrap(), None);
}

async fn rotation_of_dead_tokens_is_missing(store: &Store) {
    let grants = &store.grants;
    grants.insert_code(grant("live", 5000), code(b"code-1", "live", 200)).await.unwrap();
    grants.insert_code(grant("ended", 300), code(b"code-2", "ended", 200)).await.unwrap();
    grants.insert_refresh(refresh(b"expired", "live", 300)).await.unwrap();
    grants.insert_refresh(refresh(b"of-ended", "ended", 4000)).await.unwrap();

    let rotate = |old: &'static [u8], new: &'static [u8], grant_id: &'static str| {
        let grants = grants.clone();
        async move { grants.rotate_refresh(old, refresh(new, grant_id, 4000), 300, 60).await.unwrap() }
    };
    assert_eq!(rotate(b"unknown", b"n-1", "live").await, RotateOutcome::Missing);
    assert_eq!(rotate(b"expired", b"n-2", "live").await, RotateOutcome::Missing, "token expires_at <= now");
    assert_eq!(rotate(b"of-ended", b"n-3", "ended").await, RotateOutcome::Missing, "grant expires_at <= now");
    for successor in [b"n-1", b"n-2", b"n-3"] {
        assert_eq!(grants.refresh(successor).await.unwrap(), None, "no successor was stored");
    }
    for old in [b"expired" as &[u8], b"of-ended"] {
        assert_eq!(grants.refresh(old).await.unwrap().unwrap().0.superseded_at, None, "not superseded");
    }
}

/// RFC 9700 §4.14.2 with the retry window of catalogue DD1 (FAPI 2.0 §5.3.2.1-10).
async fn rotation_retry_within_grace_then_reuse_revokes_the_family(store: &Store) {
    let grants = &store.grants;
    let g = grant("g1", 5000);
    grants.insert_code(g.clone(), code(b"code-1", "g1", 200)).await.unwrap();
    grants.insert_refresh(refresh(b"rt-1", "g1", 4000)).await.unwrap();
    grants.record_access_token("at-1", "g1", 4000).await.unwrap();

    let rotated = RotateOutcome::Rotated(g);
    assert_eq!(grants.rotate_refresh(b"rt-1", refresh(b"rt-2", "g1", 4000), 150, 60).await.unwrap(), rotated);
    // A retry (the response was lost) inside the window, up to and including `grace` seconds later.
    assert_eq!(grants.rotate_refresh(b"rt-1", refresh(b"rt-3", "g1", 4000), 180, 60).await.unwrap(), rotated);
    assert_eq!(grants.rotate_refresh(b"rt-1", refresh(b"rt-4", "g1", 4000), 210, 60).await.unwrap(), rotated);
    assert_eq!(grants.refresh(b"rt-1").await.unwrap().unwrap().0.superseded_at, Some(150), "the window does not slide");
    assert!(grants.refresh(b"rt-4").await.unwrap().is_some());

    // One second after the window: reuse. The whole grant goes.
    assert_eq!(
        grants.rotate_refresh(b"rt-1", refresh(b"rt-5", "g1", 4000), 211, 60).await.unwrap(),
        RotateOutcome::ReuseDetected
    );
    assert_eq!(grants.refresh(b"rt-5").await.unwrap(), None, "reuse stores no successor");
    assert_eq!(grants.grant("g1").await.unwrap().unwrap().revoked_at, Some(211));
    assert!(grants.access_token_revoked("at-1").await.unwrap());
    for successor in [b"rt-2", b"rt-3", b"rt-4"] {
        let outcome = grants.rotate_refresh(successor, refresh(b"rt-6", "g1", 4000), 212, 60).await.unwrap();
        assert_eq!(outcome, RotateOutcome::Missing, "family revoked");
    }
}

/// RFC 9700 §4.14.2 for public clients (grace 0, catalogue oauth_rt05): no retry window, not even the same second.
async fn rotation_without_grace_treats_any_second_use_as_reuse(store: &Store) {
    let grants = &store.grants;
    grants.insert_code(grant("g1", 5000), code(b"code-1", "g1", 200)).await.unwrap();
    grants.insert_refresh(refresh(b"rt-1", "g1", 4000)).await.unwrap();
    assert!(matches!(
        grants.rotate_refresh(b"rt-1", refresh(b"rt-2", "g1", 4000), 150, 0).await.unwrap(),
        RotateOutcome::Rotated(_)
    ));
    // The same second: with no grace window this is still reuse.
    assert_eq!(
        grants.rotate_refresh(b"rt-1", refresh(b"rt-3", "g1", 4000), 150, 0).await.unwrap(),
        RotateOutcome::ReuseDetected
    );
    assert_eq!(
        grants.rotate_refresh(b"rt-2", refresh(b"rt-4", "g1", 4000), 151, 0).await.unwrap(),
        RotateOutcome::Missing
    );
}

/// RFC 9700 §4.14.2: of concurrent rotations without grace exactly one wins; the rest are reuse.
async fn rotation_without_grace_has_one_winner_under_concurrency(store: &Store) {
    store.grants.insert_code(grant("g1", 5000), code(b"code-1", "g1", 200)).await.unwrap();
    store.grants.insert_refresh(refresh(b"rt-1", "g1", 4000)).await.unwrap();
    let outcomes = race_rotations(store, 0).await;
    let rotated = outcomes.iter().filter(|o| matches!(o, RotateOutcome::Rotated(_))).count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    // The losers presented a superseded token: the first of them revoked the grant.
    assert!(outcomes.contains(&RotateOutcome::ReuseDetected), "{outcomes:?}");
    assert!(store.grants.grant("g1").await.unwrap().unwrap().revoked_at.is_some());
}

/// Catalogue DD1: concurrent retries inside the window all succeed, each with a fresh member of the same grant.
async fn rotation_within_grace_lets_every_concurrent_retry_through(store: &Store) {
    store.grants.insert_code(grant("g1", 5000), code(b"code-1", "g1", 200)).await.unwrap();
    store.grants.insert_refresh(refresh(b"rt-1", "g1", 4000)).await.unwrap();
    let outcomes = race_rotations(store, 60).await;
    assert!(outcomes.iter().all(|o| matches!(o, RotateOutcome::Rotated(g) if g.grant_id == "g1")), "{outcomes:?}");
    for i in 0..RACERS {
        let (successor, _) = store.grants.refresh(&racer_hash(i)).await.unwrap().unwrap();
        assert_eq!((successor.grant_id.as_str(), successor.superseded_at), ("g1", None));
    }
    assert_eq!(store.grants.grant("g1").await.unwrap().unwrap().revoked_at, None);
}

// ---------------------------------------------------------------------------------------------------------
// Single-use identifiers (RFC 7523 §3: a client assertion's `jti` is used once)

/// RFC 7523 §3: a client assertion's `jti` is accepted once while it could still be replayed.
async fn jti_is_single_use_until_it_expires(store: &Store) {
    let grants = &store.grants;
    assert_eq!(grants.consume_jti("assertion", "j1", 200, 100).await.unwrap(), ReplayOutcome::Consumed);
    assert_eq!(grants.consume_jti("assertion", "j1", 200, 150).await.unwrap(), ReplayOutcome::AlreadyUsed);
    assert_eq!(grants.consume_jti("assertion", "j1", 300, 199).await.unwrap(), ReplayOutcome::AlreadyUsed);
    assert_eq!(grants.consume_jti("other", "j1", 200, 150).await.unwrap(), ReplayOutcome::Consumed, "per namespace");
    // Once expired (expires_at <= now) the entry may be taken again, and then it is spent again.
    assert_eq!(grants.consume_jti("assertion", "j1", 400, 200).await.unwrap(), ReplayOutcome::Consumed);
    assert_eq!(grants.consume_jti("assertion", "j1", 400, 300).await.unwrap(), ReplayOutcome::AlreadyUsed);
}

async fn jti_is_single_use_under_concurrency(store: &Store) {
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let grants = store.grants.clone();
            tokio::spawn(async move { grants.consume_jti("assertion", "j1", 200, 100).await.unwrap() })
        })
        .collect();
    let mut consumed = 0;
    for task in tasks {
        if task.await.unwrap() == ReplayOutcome::Consumed {
            consumed += 1;
        }
    }
    assert_eq!(consumed, 1);
}

// ---------------------------------------------------------------------------------------------------------
// IdP sessions

async fn sessions_expire_touch_and_list(store: &Store) {
    let sessions = &store.sessions;
    let first = session("s1", "alice", 10, 100);
    let second = session("s2", "alice", 20, 300);
    sessions.insert_session(first.clone()).await.unwrap();
    sessions.insert_session(second.clone()).await.unwrap();
    sessions.insert_session(session("s3", "bob", 30, 300)).await.unwrap();
    assert!(sessions.insert_session(first.clone()).await.is_err(), "a sid is unique");

    assert_eq!(sessions.session("s1", 99).await.unwrap(), Some(first.clone()));
    assert_eq!(sessions.session("s1", 100).await.unwrap(), None, "expires_at <= now");
    assert_eq!(sessions.session("unknown", 50).await.unwrap(), None);
    assert_eq!(sessions.sessions_of("alice", 50).await.unwrap(), [first.clone(), second.clone()]);
    assert_eq!(sessions.sessions_of("alice", 100).await.unwrap(), std::slice::from_ref(&second), "only live ones");

    sessions.touch_session("s1", 90, 500).await.unwrap();
    let touched = IdpSessionRecord { last_seen: 90, expires_at: 500, ..first };
    assert_eq!(sessions.session("s1", 400).await.unwrap(), Some(touched));

    assert!(sessions.remove_session("s1").await.unwrap());
    assert!(!sessions.remove_session("s1").await.unwrap());
    assert_eq!(sessions.sessions_of("alice", 50).await.unwrap(), [second]);
}

/// Session administration (`gatehouse sessions list`): every user's live sessions, or one user's, oldest first.
async fn sessions_are_listed_for_everyone_or_one_user(store: &Store) {
    let sessions = &store.sessions;
    let (bob, alice_old, alice_new) =
        (session("s-b", "bob", 5, 300), session("s-a1", "alice", 10, 100), session("s-a2", "alice", 20, 300));
    for s in [&alice_new, &bob, &alice_old] {
        sessions.insert_session(s.clone()).await.unwrap();
    }
    assert_eq!(sessions.list_sessions(None, 50).await.unwrap(), [bob.clone(), alice_old.clone(), alice_new.clone()]);
    assert_eq!(sessions.list_sessions(Some("alice"), 50).await.unwrap(), [alice_old, alice_new.clone()]);
    assert_eq!(sessions.list_sessions(None, 100).await.unwrap(), [bob, alice_new], "expires_at <= now is not live");
    assert!(sessions.list_sessions(Some("nobody"), 50).await.unwrap().is_empty());
    assert!(sessions.list_sessions(None, 300).await.unwrap().is_empty());
}

/// OIDC Back-Channel Logout §2.7 / catalogue EP-ES05: ending a session finds and revokes every grant issued
/// under its `sid`, and only those.
async fn session_grants_are_listed_and_revoked_together(store: &Store) {
    let grants = &store.grants;
    let in_session = |grant_id: &str, sid: Option<&str>, created_at: Epoch| GrantRecord {
        sid: sid.map(str::to_owned),
        created_at,
        ..grant(grant_id, 5000)
    };
    let (first, second) = (in_session("g-1", Some("s1"), 100), in_session("g-2", Some("s1"), 90));
    let other = in_session("g-other", Some("s2"), 100);
    let sessionless = in_session("g-none", None, 100);
    for (i, g) in [&first, &second, &other, &sessionless].into_iter().enumerate() {
        grants.insert_code(g.clone(), code(format!("code-{i}").as_bytes(), &g.grant_id, 200)).await.unwrap();
    }
    grants.insert_refresh(refresh(b"rt-1", "g-1", 4000)).await.unwrap();
    grants.record_access_token("at-1", "g-1", 4000).await.unwrap();
    grants.record_access_token("at-other", "g-other", 4000).await.unwrap();
    grants.revoke_grant("g-2", 150).await.unwrap();

    let second = GrantRecord { revoked_at: Some(150), ..second };
    assert_eq!(grants.grants_of_session("s1").await.unwrap(), [second, first], "oldest first, revoked or not");
    assert!(grants.grants_of_session("unknown").await.unwrap().is_empty());

    assert_eq!(grants.revoke_session_grants("s1", 300).await.unwrap(), 1, "g-2 was revoked already");
    let listed = grants.grants_of_session("s1").await.unwrap();
    let revoked: Vec<_> = listed.iter().map(|g| (g.grant_id.as_str(), g.revoked_at)).collect();
    assert_eq!(revoked, [("g-2", Some(150)), ("g-1", Some(300))], "the first revocation time stays");
    assert!(grants.access_token_revoked("at-1").await.unwrap());
    assert_eq!(
        grants.rotate_refresh(b"rt-1", refresh(b"rt-2", "g-1", 4000), 310, 60).await.unwrap(),
        RotateOutcome::Missing
    );
    assert!(!grants.access_token_revoked("at-other").await.unwrap(), "other sessions are untouched");
    assert_eq!(grants.grant("g-other").await.unwrap().unwrap().revoked_at, None);
    assert_eq!(grants.grant("g-none").await.unwrap().unwrap().revoked_at, None);
    assert_eq!(grants.revoke_session_grants("s1", 400).await.unwrap(), 0, "idempotent");
    assert_eq!(grants.revoke_session_grants("unknown", 400).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------------------
// Purging

async fn purge_removes_what_has_expired_and_nothing_else(store: &Store) {
    let (grants, sessions) = (&store.grants, &store.sessions);
    let now = 1000;
    // A live grant with an expired and a live member of each kind.
    grants.insert_code(grant("live", 5000), code(b"code-old", "live", now)).await.unwrap();
    grants.insert_code(grant("live-2", 5000), code(b"code-new", "live-2", now + 1)).await.unwrap();
    grants.insert_refresh(refresh(b"rt-old", "live", now)).await.unwrap();
    grants.insert_refresh(refresh(b"rt-new", "live", now + 1)).await.unwrap();
    grants.record_access_token("at-old", "live", now).await.unwrap();
    grants.record_access_token("at-new", "live", now + 1).await.unwrap();
    // A grant past its end, with a refresh token that would otherwise still live.
    grants.insert_code(grant("ended", now), code(b"code-ended", "ended", now + 1)).await.unwrap();
    grants.insert_refresh(refresh(b"rt-ended", "ended", 4000)).await.unwrap();
    // A revoked grant past its end whose access token still lives: the revocation must outlive the grant.
    grants.insert_code(grant("revoked", now), code(b"code-revoked", "revoked", now)).await.unwrap();
    grants.record_access_token("at-revoked", "revoked", now + 60).await.unwrap();
    grants.revoke_grant("revoked", 900).await.unwrap();
    grants.consume_jti("assertion", "j-old", now, 900).await.unwrap();
    grants.consume_jti("assertion", "j-new", now + 1, 900).await.unwrap();
    sessions.insert_session(session("s-old", "alice", 1, now)).await.unwrap();
    sessions.insert_session(session("s-new", "alice", 1, now + 1)).await.unwrap();

    grants.purge_expired(now).await.unwrap();

    assert_eq!(grants.consume_code(b"code-old", 0).await.unwrap(), CodeOutcome::Missing, "expired code purged");
    assert!(matches!(grants.consume_code(b"code-new", now).await.unwrap(), CodeOutcome::Consumed(..)));
    assert_eq!(grants.refresh(b"rt-old").await.unwrap(), None);
    assert!(grants.refresh(b"rt-new").await.unwrap().is_some());
    assert!(grants.grant("live").await.unwrap().is_some());
    assert_eq!(grants.grant("ended").await.unwrap(), None, "grant past its end purged");
    assert_eq!(grants.refresh(b"rt-ended").await.unwrap(), None, "with its tokens");
    assert_eq!(grants.consume_code(b"code-ended", 0).await.unwrap(), CodeOutcome::Missing);
    assert!(grants.access_token_revoked("at-revoked").await.unwrap(), "a live access token stays revoked");
    assert_eq!(grants.consume_jti("assertion", "j-old", now + 10, 0).await.unwrap(), ReplayOutcome::Consumed);
    assert_eq!(grants.consume_jti("assertion", "j-new", now + 10, 0).await.unwrap(), ReplayOutcome::AlreadyUsed);
    assert_eq!(sessions.session("s-old", 0).await.unwrap(), None);
    assert!(sessions.session("s-new", 0).await.unwrap().is_some());

    // Once the last access token has expired, the revoked grant goes too.
    grants.purge_expired(now + 60).await.unwrap();
    assert_eq!(grants.grant("revoked").await.unwrap(), None);
    assert!(!grants.access_token_revoked("at-revoked").await.unwrap());
}

// ---------------------------------------------------------------------------------------------------------
// Back-ends, the test generator, fixtures

/// A store for one test; a file back-end's directory is removed when the test ends.
struct Fixture {
    store: Store,
    directory: Option<PathBuf>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(directory) = &self.directory {
            let _ = std::fs::remove_dir_all(directory);
        }
    }
}

async fn open_sqlite_memory() -> Fixture {
    Fixture { store: Store::open("sqlite::memory:").await.unwrap(), directory: None }
}

/// A file database in a fresh directory that does not exist yet (so `open` must create it).
async fn open_sqlite_file() -> Fixture {
    let directory = unique_temp_directory();
    let url = format!("sqlite://{}", directory.join("nested").join("store.db").display());
    let store = Store::open(&url).await.unwrap();
    Fixture { store, directory: Some(directory) }
}

/// A temp directory name no other test (in this or a concurrent process) uses.
pub(crate) fn unique_temp_directory() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let name = format!("gatehouse-store-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    std::env::temp_dir().join(name)
}

/// `conformance!(module, open_fn)`: one multi-threaded `#[tokio::test]` per behaviour, each on a fresh store.
macro_rules! conformance {
    ($backend:ident, $open:ident) => {
        conformance!(@tests $backend, $open;
            users_upsert_by_username_keeps_sub,
            users_remove_and_unknown_lookups,
            clients_round_trip_update_and_remove,
            keys_are_listed_by_age_and_change_state,
            code_is_consumed_once,
            expired_code_is_missing_but_spent,
            code_is_consumed_once_under_concurrency,
            insert_code_is_all_or_nothing,
            revoked_grant_revokes_its_tokens,
            rotation_supersedes_and_stores_the_successor,
            rotation_of_dead_tokens_is_missing,
            rotation_retry_within_grace_then_reuse_revokes_the_family,
            rotation_without_grace_treats_any_second_use_as_reuse,
            rotation_without_grace_has_one_winner_under_concurrency,
            rotation_within_grace_lets_every_concurrent_retry_through,
            jti_is_single_use_until_it_expires,
            jti_is_single_use_under_concurrency,
            sessions_expire_touch_and_list,
            sessions_are_listed_for_everyone_or_one_user,
            session_grants_are_listed_and_revoked_together,
            purge_removes_what_has_expired_and_nothing_else,
        );
    };
    (@tests $backend:ident, $open:ident; $($behaviour:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $behaviour() {
                    let fixture = super::$open().await;
                    super::$behaviour(&fixture.store).await;
                }
            )*
        }
    };
}
use conformance;

/// Fires `RACERS` concurrent rotations of `rt-1` at the same second; racer `i` offers successor `racer_hash(i)`.
async fn race_rotations(store: &Store, grace: i64) -> Vec<RotateOutcome> {
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let grants = store.grants.clone();
            tokio::spawn(async move {
                grants.rotate_refresh(b"rt-1", refresh(&racer_hash(i), "g1", 4000), 150, grace).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(RACERS);
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn racer_hash(i: usize) -> Vec<u8> {
    format!("racer-{i}").into_bytes()
}

fn user(sub: &str, username: &str, password_hash: &str) -> UserRecord {
    UserRecord {
        sub: sub.into(),
        username: username.into(),
        password_hash: password_hash.into(),
        claims: StandardClaims { name: Some(username.into()), email_verified: Some(false), ..Default::default() },
        created_at: 1,
    }
}

fn client(client_id: &str) -> ClientRecord {
    ClientRecord {
        client_id: client_id.into(),
        name: Some(format!("{client_id} app")),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        secret_sha256: Some("ab".repeat(32)),
        jwks: None,
        redirect_uris: vec!["https://a/cb".into()],
        post_logout_redirect_uris: vec!["https://a/".into()],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["openid".into(), "profile".into()],
        id_token_signed_response_alg: SigningAlg::RS256,
        backchannel_logout_uri: None,
        source: "cli".into(),
        require_dpop: false,
        require_dpop_nonce: false,
        require_pushed_authorization_requests: false,
    }
}

fn key(kid: &str, alg: SigningAlg, created_at: Epoch) -> SigningKeyRecord {
    let mut public_jwk = match alg {
        SigningAlg::ES256 => Jwk::ec("P-256", &[1; 32], &[2; 32]),
        SigningAlg::RS256 => Jwk::rsa(&[0xc5; 256], &[1, 0, 1]),
    };
    public_jwk.kid = Some(kid.into());
    SigningKeyRecord {
        kid: kid.into(),
        alg,
        state: KeyState::Pending,
        private_sealed: vec![0, 1, 2, 0xff, 0],
        public_jwk,
        created_at,
        activated_at: None,
        retired_at: None,
    }
}

fn grant(grant_id: &str, expires_at: Epoch) -> GrantRecord {
    GrantRecord {
        grant_id: grant_id.into(),
        client_id: "web".into(),
        sub: "sub-a".into(),
        scope: "openid offline_access".into(),
        auth_time: 100,
        sid: Some("s1".into()),
        created_at: 100,
        expires_at,
        revoked_at: None,
    }
}

fn code(code_hash: &[u8], grant_id: &str, expires_at: Epoch) -> CodeRecord {
    CodeRecord {
        code_hash: code_hash.to_vec(),
        grant_id: grant_id.into(),
        client_id: "web".into(),
        redirect_uri: "https://a/cb".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        dpop_jkt: None,
        expires_at,
    }
}

fn refresh(token_hash: &[u8], grant_id: &str, expires_at: Epoch) -> RefreshRecord {
    RefreshRecord {
        token_hash: token_hash.to_vec(),
        grant_id: grant_id.into(),
        client_id: "web".into(),
        scope: "openid offline_access".into(),
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        issued_at: 100,
        expires_at,
        superseded_at: None,
    }
}

fn session(sid: &str, sub: &str, created_at: Epoch, expires_at: Epoch) -> IdpSessionRecord {
    IdpSessionRecord {
        sid: sid.into(),
        sub: sub.into(),
        auth_time: created_at,
        created_at,
        last_seen: created_at,
        expires_at,
    }
}
