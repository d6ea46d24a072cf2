//! Administration of users, clients, signing keys and IdP sessions: what the CLI (`gatehouse
//! users|clients|keys|sessions`) and the start-up seeding from the configuration file call. Safe while a server
//! runs on the same store.

use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType};
use gatehouse_proto::{Secret, b64};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::backchannel::{self, Backchannel, DeliveryReport, HttpNotifier};
use crate::keys::{self, KeySet};
use crate::password;
use crate::settings::{MasterKey, SeedClient, SeedPassword, SeedUser};
use crate::store::{ClientRecord, Epoch, IdpSessionRecord, SigningKeyRecord, Store, StoreError, UserRecord};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Adds a user (or replaces the password and claims of an existing one with that username).
pub async fn add_user(
    store: &Store,
    username: &str,
    password: &Secret,
    claims: StandardClaims,
    now: Epoch,
) -> Result<UserRecord, AdminError> {
    let phc = password::hash(password).map_err(AdminError::Invalid)?;
    put_user(store, username, phc, claims, now).await
}

async fn put_user(
    store: &Store,
    username: &str,
    password_hash: String,
    claims: StandardClaims,
    now: Epoch,
) -> Result<UserRecord, AdminError> {
    check_username(username)?;
    let record = UserRecord { sub: new_id(), username: username.to_owned(), password_hash, claims, created_at: now };
    Ok(store.users.upsert_user(record).await?)
}

fn check_username(username: &str) -> Result<(), AdminError> {
    let ok = !username.is_empty()
        && username.len() <= 128
        && username.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "username {username:?} must be 1-128 characters of letters, digits and . _ - @ +"
        )))
    }
}

pub async fn list_users(store: &Store) -> Result<Vec<UserRecord>, AdminError> {
    Ok(store.users.list_users().await?)
}

pub async fn remove_user(store: &Store, username: &str) -> Result<bool, AdminError> {
    Ok(store.users.remove_user(username).await?)
}

/// Registers a client. For `client_secret_basic`/`client_secret_post` a secret with 256 bits of entropy is
/// generated and returned once; only its digest is stored.
pub async fn add_client(store: &Store, mut client: ClientRecord) -> Result<Option<Secret>, AdminError> {
    let problems = check_client(&client);
    if !problems.is_empty() {
        return Err(AdminError::Invalid(problems.join("; ")));
    }
    let secret = match client.auth_method {
        ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => Some(generate_client_secret()),
        ClientAuthMethod::PrivateKeyJwt | ClientAuthMethod::None => None,
    };
    client.secret_sha256 = secret.as_ref().map(secret_digest);
    store.clients.upsert_client(client).await?;
    Ok(secret)
}

pub async fn list_clients(store: &Store) -> Result<Vec<ClientRecord>, AdminError> {
    Ok(store.clients.list_clients().await?)
}

pub async fn remove_client(store: &Store, client_id: &str) -> Result<bool, AdminError> {
    Ok(store.clients.remove_client(client_id).await?)
}

/// A new client secret: 32 random bytes, base64url (43 characters, 256 bits of entropy).
pub fn generate_client_secret() -> Secret {
    Secret::new(b64::encode(crate::random::bytes::<32>()))
}

/// The stored form of a client secret: base64url(SHA-256(secret)). A fast hash is right here: the secret has
/// 256 bits of entropy, so no dictionary applies, and a slow hash would cap the token endpoint.
pub fn secret_digest(secret: &Secret) -> String {
    b64::encode(Sha256::digest(secret.expose().as_bytes()))
}

/// Every problem with a client registration, each naming its field. Empty when valid.
pub fn check_client(client: &ClientRecord) -> Vec<String> {
    let mut problems = Vec::new();
    if client.client_id.is_empty()
        || client.client_id.len() > 128
        || !client.client_id.chars().all(|c| c.is_ascii_graphic() && c != ':')
    {
        problems.push("client_id: 1-128 printable ASCII characters without ':'".to_owned());
    }
    if client.grant_types.is_empty() {
        problems.push("grant_types: at least one grant type".to_owned());
    }
    let uses_code = client.grant_types.contains(&GrantType::AuthorizationCode);
    if uses_code && client.redirect_uris.is_empty() {
        problems.push("redirect_uris: required for the authorization_code grant".to_owned());
    }
    for uri in client.redirect_uris.iter().chain(&client.post_logout_redirect_uris) {
        if let Err(why) = check_redirect_uri(uri) {
            problems.push(format!("redirect URI {uri:?}: {why}"));
        }
    }
    if client.auth_method == ClientAuthMethod::None && client.grant_types.contains(&GrantType::ClientCredentials) {
        problems.push("grant_types: a public client (auth_method = \"none\") cannot use client_credentials".into());
    }
    if client.auth_method == ClientAuthMethod::PrivateKeyJwt && client.jwks.as_ref().is_none_or(|s| s.keys.is_empty()) {
        problems.push("jwks: private_key_jwt needs at least one public key".to_owned());
    }
    if let Some(jwks) = &client.jwks
        && jwks.keys.iter().any(|k| !k.is_public())
    {
        problems.push("jwks: contains private key material; register public keys only".to_owned());
    }
    if let Some(uri) = &client.backchannel_logout_uri
        && let Err(why) = check_redirect_uri(uri)
    {
        problems.push(format!("backchannel_logout_uri: {why}"));
    }
    if !client.scopes.iter().all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'))
    {
        problems.push("scopes: each scope is a non-empty token of printable ASCII (RFC 6749 §3.3)".to_owned());
    }
    problems
}

/// A registrable redirect URI: absolute, no fragment (RFC 6749 §3.1.2), http(s) only — `https`, or `http` on
/// loopback for development and native apps (RFC 8252 §7.3).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|e| format!("not an absolute URL ({e})"))?;
    if url.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => match url.host() {
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => Ok(()),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => Err("http is allowed only on loopback hosts".into()),
        },
        other => Err(format!("scheme {other} is not allowed")),
    }
}

/// Seeds users and clients declared in the configuration file. Existing records with the same username or
/// client_id are updated, so the file stays the source of truth for what it declares.
pub async fn seed(store: &Store, users: &[SeedUser], clients: &[SeedClient], now: Epoch) -> Result<(), AdminError> {
    for user in users {
        let existing = store.users.user_by_username(&user.username).await?;
        let phc = match &user.password {
            SeedPassword::Hash(phc) => phc.clone(),
            // Keep the stored hash when the configured password still matches: avoids re-hashing at every start.
            SeedPassword::Plain(secret) => match &existing {
                Some(e) if password::verify(secret, Some(&e.password_hash)) => e.password_hash.clone(),
                _ => password::hash(secret).map_err(AdminError::Invalid)?,
            },
        };
        if existing.as_ref().is_some_and(|e| e.password_hash == phc && e.claims == user.claims) {
            continue;
        }
        put_user(store, &user.username, phc, user.claims.clone(), now).await?;
    }
    for client in clients {
        let problems = check_client(&client.record);
        if !problems.is_empty() {
            return Err(AdminError::Invalid(format!("client {}: {}", client.record.client_id, problems.join("; "))));
        }
        let mut record = client.record.clone();
        record.secret_sha256 = client.secret.as_ref().map(secret_digest);
        record.source = "config".into();
        store.clients.upsert_client(record).await?;
    }
    Ok(())
}

pub async fn list_keys(store: &Store) -> Result<Vec<SigningKeyRecord>, AdminError> {
    Ok(store.keys.list_keys().await?)
}

/// Forces a rotation: new keys for every algorithm become active now, the previous ones are retired (still
/// published, so tokens they signed keep verifying). Returns the new key ids.
pub async fn rotate_keys(store: &Store, master_key: &MasterKey, now: Epoch) -> Result<Vec<String>, AdminError> {
    keys::rotate_now(store, master_key, now).await.map_err(|e| AdminError::Invalid(e.to_string()))
}

// ---------------------------------------------------------------------------------------------------------
// IdP sessions (`gatehouse sessions list|revoke`)

/// A live IdP session as listed: the record, its user's name and the clients that got a grant in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionListing {
    pub session: IdpSessionRecord,
    /// `None` when the user has been removed since.
    pub username: Option<String>,
    /// Each client that got a grant in this session, once, in the order of its first grant.
    pub clients: Vec<String>,
}

/// The live IdP sessions at `now`, oldest first: everyone's, or those of the user named `user` (an error when no
/// user has that name).
pub async fn list_sessions(store: &Store, user: Option<&str>, now: Epoch) -> Result<Vec<SessionListing>, AdminError> {
    let sub = match user {
        Some(username) => Some(user_sub(store, username).await?),
        None => None,
    };
    let mut listings = Vec::new();
    for session in store.sessions.list_sessions(sub.as_deref(), now).await? {
        let username = match user {
            Some(username) => Some(username.to_owned()),
            None => store.users.user_by_sub(&session.sub).await?.map(|u| u.username),
        };
        let mut clients: Vec<String> = Vec::new();
        for grant in store.grants.grants_of_session(&session.sid).await? {
            if !clients.contains(&grant.client_id) {
                clients.push(grant.client_id);
            }
        }
        listings.push(SessionListing { session, username, clients });
    }
    Ok(listings)
}

/// Which sessions `revoke_sessions` ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionSelector {
    /// Every live session of the user with this username.
    User(String),
    /// The session with this `sid` (its grants are revoked even if the session itself has expired).
    Sid(String),
}

/// What `revoke_sessions` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRevocation {
    /// Sessions ended (removed from the store).
    pub sessions: u64,
    /// Grants revoked (their refresh tokens stop working, their access tokens count as revoked).
    pub grants_revoked: u64,
    /// One per client told by back-channel logout, by `client_id`.
    pub notifications: Vec<DeliveryReport>,
}

/// Ends IdP sessions: each is removed, the grants issued under it are revoked, and every client of those grants
/// with a `backchannel_logout_uri` gets a logout token (Back-Channel Logout 1.0). Waits for the deliveries (a
/// CLI exits afterwards); a running server's users are signed out at their next request either way.
pub async fn revoke_sessions(
    store: &Store,
    backchannel: &Backchannel,
    by: SessionSelector,
    now: Epoch,
) -> Result<SessionRevocation, AdminError> {
    let sids = match by {
        SessionSelector::Sid(sid) => vec![sid],
        SessionSelector::User(username) => {
            let sub = user_sub(store, &username).await?;
            store.sessions.list_sessions(Some(&sub), now).await?.into_iter().map(|s| s.sid).collect()
        }
    };
    let mut revocation = SessionRevocation { sessions: 0, grants_revoked: 0, notifications: Vec::new() };
    let mut deliveries = Vec::new();
    for sid in sids {
        let ended = backchannel::end_session(store, backchannel, &sid, now).await?;
        revocation.sessions += u64::from(ended.removed);
        revocation.grants_revoked += ended.grants_revoked;
        deliveries.extend(ended.deliveries);
    }
    revocation.notifications = backchannel::deliver_all(backchannel.notifier.clone(), deliveries).await;
    Ok(revocation)
}

/// What `revoke_sessions` needs outside a running server (the CLI): the published issuer (`iss`, exactly as in
/// discovery), signing keys (unsealed with the master key) and an HTTP sender.
///
/// The logout tokens are signed with the keys in force `key_reload_interval` seconds before `now`
/// (`keys::as_of`): a key that `gatehouse keys rotate` activated moments ago is not yet published by the running
/// servers (they reload keys every `key_reload_interval`), so a relying party fetching their JWK Set could not
/// verify a logout token signed with it and the logout would be lost. Without keys that old (a fresh store), the
/// current keys sign.
pub async fn backchannel(
    store: &Store,
    issuer: &str,
    master_key: &MasterKey,
    now: Epoch,
    key_reload_interval: i64,
) -> Result<Backchannel, AdminError> {
    let records = store.keys.list_keys().await?;
    let unsealed = |records: &[SigningKeyRecord]| {
        KeySet::from_records(records, master_key).map_err(|e| AdminError::Invalid(e.to_string()))
    };
    let current = unsealed(&records)?;
    let published = unsealed(&keys::as_of(&records, now.saturating_sub(key_reload_interval.max(0))))?;
    let keys =
        if current.signing_algorithms().all(|alg| published.signer(alg).is_some()) { published } else { current };
    Ok(Backchannel { issuer: issuer.to_owned(), keys: Arc::new(keys), notifier: Arc::new(HttpNotifier::new()) })
}

async fn user_sub(store: &Store, username: &str) -> Result<String, AdminError> {
    match store.users.user_by_username(username).await? {
        Some(user) => Ok(user.sub),
        None => Err(AdminError::Invalid(format!("no user named {username:?}"))),
    }
}

/// A random identifier (128 bits, base64url) for `sub`, grant ids and session ids.
pub fn new_id() -> String {
    b64::encode(crate::random::bytes::<16>())
}
