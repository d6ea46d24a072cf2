//! The embedded SQLite back-end of every token-service store (the default). WAL mode with a busy timeout, so
//! the CLI and a running server share the file safely. Single-use things are consumed with one conditional
//! `UPDATE … RETURNING` or inside a `BEGIN IMMEDIATE` transaction, so they stay atomic with many connections.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_proto::vocab::SigningAlg;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::*;

pub struct SqliteStore {
    pool: SqlitePool,
}

fn err(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

impl SqliteStore {
    /// Opens `sqlite://PATH` (creating the file and its directory) or `sqlite::memory:`, and migrates.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let memory = url.contains(":memory:");
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(err)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if !memory {
            let path = options.get_filename().to_owned();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| err(format!("creating {}: {e}", parent.display())))?;
            }
            options = options.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal);
        }
        // An in-memory database lives in one connection: keep exactly one, forever.
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
            .max_lifetime(if memory { None } else { Some(Duration::from_secs(3600)) })
            .connect_with(options)
            .await
            .map_err(err)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(err)?;
        Ok(Self { pool })
    }
}

fn user_from(row: &SqliteRow) -> StoreResult<UserRecord> {
    let claims: String = row.try_get("claims").map_err(err)?;
    Ok(UserRecord {
        sub: row.try_get("sub").map_err(err)?,
        username: row.try_get("username").map_err(err)?,
        password_hash: row.try_get("password_hash").map_err(err)?,
        claims: serde_json::from_str(&claims).map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
    })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_by_sub(&self, sub: &str) -> StoreResult<Option<UserRecord>> {
        let row =
            sqlx::query("SELECT * FROM users WHERE sub = ?").bind(sub).fetch_optional(&self.pool).await.map_err(err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn upsert_user(&self, user: UserRecord) -> StoreResult<UserRecord> {
        let claims = serde_json::to_string(&user.claims).map_err(err)?;
        let row = sqlx::query(
            "INSERT INTO users (sub, username, password_hash, claims, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, claims = excluded.claims
             RETURNING *",
        )
        .bind(&user.sub)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(claims)
        .bind(user.created_at)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        user_from(&row)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username").fetch_all(&self.pool).await.map_err(err)?;
        rows.iter().map(user_from).collect()
    }

    async fn remove_user(&self, username: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE username = ?")
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT document FROM clients WHERE client_id = ?")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(|(doc,)| serde_json::from_str(&doc).map_err(err)).transpose()
    }

    async fn upsert_client(&self, client: ClientRecord) -> StoreResult<()> {
        let doc = serde_json::to_string(&client).map_err(err)?;
        sqlx::query("INSERT INTO clients (client_id, document) VALUES (?, ?) ON CONFLICT (client_id) DO UPDATE SET document = excluded.document")
            .bind(&client.client_id)
            .bind(doc)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT document FROM clients ORDER BY client_id")
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.into_iter().map(|(doc,)| serde_json::from_str(&doc).map_err(err)).collect()
    }

    async fn remove_client(&self, client_id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM clients WHERE client_id = ?")
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }
}

fn key_from(row: &SqliteRow) -> StoreResult<SigningKeyRecord> {
    let alg: String = row.try_get("alg").map_err(err)?;
    let state: String = row.try_get("state").map_err(err)?;
    let jwk: String = row.try_get("public_jwk").map_err(err)?;
    Ok(SigningKeyRecord {
        kid: row.try_get("kid").map_err(err)?,
        alg: SigningAlg::parse(&alg).ok_or_else(|| err(format!("unknown key algorithm {alg}")))?,
        state: KeyState::parse(&state).ok_or_else(|| err(format!("unknown key state {state}")))?,
        private_sealed: row.try_get("private_sealed").map_err(err)?,
        public_jwk: serde_json::from_str(&jwk).map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
        activated_at: row.try_get("activated_at").map_err(err)?,
        retired_at: row.try_get("retired_at").map_err(err)?,
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn list_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(key_from).collect()
    }

    async fn insert_key(&self, key: SigningKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, private_sealed, public_jwk, created_at, activated_at, retired_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(key.state.as_str())
        .bind(&key.private_sealed)
        .bind(serde_json::to_string(&key.public_jwk).map_err(err)?)
        .bind(key.created_at)
        .bind(key.activated_at)
        .bind(key.retired_at)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn set_key_state(&self, kid: &str, state: KeyState, at: Epoch) -> StoreResult<()> {
        let sql = match state {
            KeyState::Active => "UPDATE signing_keys SET state = ?, activated_at = ? WHERE kid = ?",
            KeyState::Retired => "UPDATE signing_keys SET state = ?, retired_at = ? WHERE kid = ?",
            KeyState::Pending => {
                "UPDATE signing_keys SET state = ?, activated_at = NULL, retired_at = NULLIF(?, ?) WHERE kid = ?"
            }
        };
        let query = sqlx::query(sql).bind(state.as_str()).bind(at);
        let query = if state == KeyState::Pending { query.bind(at) } else { query };
        query.bind(kid).execute(&self.pool).await.map_err(err)?;
        Ok(())
    }

    async fn remove_key(&self, kid: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = ?").bind(kid).execute(&self.pool).await.map_err(err)?;
        Ok(())
    }
}

fn grant_from(row: &SqliteRow) -> StoreResult<GrantRecord> {
    Ok(GrantRecord {
        grant_id: row.try_get("grant_id").map_err(err)?,
        client_id: row.try_get("client_id").map_err(err)?,
        sub: row.try_get("sub").map_err(err)?,
        scope: row.try_get("scope").map_err(err)?,
        auth_time: row.try_get("auth_time").map_err(err)?,
        sid: row.try_get("sid").map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
        expires_at: row.try_get("expires_at").map_err(err)?,
        revoked_at: row.try_get("revoked_at").map_err(err)?,
    })
}

fn code_from(row: &SqliteRow) -> StoreResult<CodeRecord> {
    Ok(CodeRecord {
        code_hash: row.try_get("code_hash").map_err(err)?,
        grant_id: row.try_get("grant_id").map_err(err)?,
        client_id: row.try_get("client_id").map_err(err)?,
        redirect_uri: row.try_get("redirect_uri").map_err(err)?,
        code_challenge: row.try_get("code_challenge").map_err(err)?,
        nonce: row.try_get("nonce").map_err(err)?,
        dpop_jkt: row.try_get("dpop_jkt").map_err(err)?,
        expires_at: row.try_get("expires_at").map_err(err)?,
    })
}

fn refresh_from(row: &SqliteRow) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        token_hash: row.try_get("token_hash").map_err(err)?,
        grant_id: row.try_get("grant_id").map_err(err)?,
        client_id: row.try_get("client_id").map_err(err)?,
        scope: row.try_get("scope").map_err(err)?,
        dpop_jkt: row.try_get("dpop_jkt").map_err(err)?,
        issued_at: row.try_get("issued_at").map_err(err)?,
        expires_at: row.try_get("expires_at").map_err(err)?,
        superseded_at: row.try_get("superseded_at").map_err(err)?,
    })
}

async fn insert_refresh_in<'e, E>(executor: E, token: &RefreshRecord) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, scope, dpop_jkt, issued_at, expires_at, superseded_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&token.token_hash)
    .bind(&token.grant_id)
    .bind(&token.client_id)
    .bind(&token.scope)
    .bind(&token.dpop_jkt)
    .bind(token.issued_at)
    .bind(token.expires_at)
    .bind(token.superseded_at)
    .execute(executor)
    .await
    .map_err(err)?;
    Ok(())
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn insert_code(&self, grant: GrantRecord, code: CodeRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO grants (grant_id, client_id, sub, scope, auth_time, sid, created_at, expires_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&grant.grant_id)
        .bind(&grant.client_id)
        .bind(&grant.sub)
        .bind(&grant.scope)
        .bind(grant.auth_time)
        .bind(&grant.sid)
        .bind(grant.created_at)
        .bind(grant.expires_at)
        .bind(grant.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, grant_id, client_id, redirect_uri, code_challenge, nonce, dpop_jkt, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&code.code_hash)
        .bind(&code.grant_id)
        .bind(&code.client_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(&code.nonce)
        .bind(&code.dpop_jkt)
        .bind(code.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn consume_code(&self, code_hash: &[u8], now: Epoch) -> StoreResult<CodeOutcome> {
        // One conditional UPDATE: exactly one caller sees the row come back.
        let spent = sqlx::query(
            "UPDATE auth_codes SET consumed_at = ? WHERE code_hash = ? AND consumed_at IS NULL RETURNING *",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        if let Some(row) = spent {
            let code = code_from(&row)?;
            if code.expires_at <= now {
                return Ok(CodeOutcome::Missing);
            }
            let Some(grant) = self.grant(&code.grant_id).await? else { return Ok(CodeOutcome::Missing) };
            return Ok(CodeOutcome::Consumed(code, grant));
        }
        let row = sqlx::query("SELECT * FROM auth_codes WHERE code_hash = ?")
            .bind(code_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match row {
            Some(row) => Ok(CodeOutcome::AlreadyUsed(code_from(&row)?)),
            None => Ok(CodeOutcome::Missing),
        }
    }

    async fn grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let row = sqlx::query("SELECT * FROM grants WHERE grant_id = ?")
            .bind(grant_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(grant_from).transpose()
    }

    async fn revoke_grant(&self, grant_id: &str, now: Epoch) -> StoreResult<()> {
        sqlx::query("UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(grant_id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn insert_refresh(&self, token: RefreshRecord) -> StoreResult<()> {
        insert_refresh_in(&self.pool, &token).await
    }

    async fn refresh(&self, token_hash: &[u8]) -> StoreResult<Option<(RefreshRecord, GrantRecord)>> {
        let Some(row) = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
        else {
            return Ok(None);
        };
        let token = refresh_from(&row)?;
        Ok(self.grant(&token.grant_id).await?.map(|grant| (token, grant)))
    }

    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new: RefreshRecord,
        now: Epoch,
        grace: i64,
    ) -> StoreResult<RotateOutcome> {
        // BEGIN IMMEDIATE takes the write lock first, so concurrent rotations of one token are serialised.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
        let Some(row) = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(old_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
        else {
            return Ok(RotateOutcome::Missing);
        };
        let old = refresh_from(&row)?;
        let Some(grant_row) = sqlx::query("SELECT * FROM grants WHERE grant_id = ?")
            .bind(&old.grant_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
        else {
            return Ok(RotateOutcome::Missing);
        };
        let grant = grant_from(&grant_row)?;
        if old.expires_at <= now || grant.revoked_at.is_some() || grant.expires_at <= now {
            return Ok(RotateOutcome::Missing);
        }
        match old.superseded_at {
            Some(at) if now - at >= grace => {
                sqlx::query("UPDATE grants SET revoked_at = ? WHERE grant_id = ?")
                    .bind(now)
                    .bind(&grant.grant_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await.map_err(err)?;
                return Ok(RotateOutcome::ReuseDetected);
            }
            Some(_) => {}
            None => {
                sqlx::query("UPDATE refresh_tokens SET superseded_at = ? WHERE token_hash = ?")
                    .bind(now)
                    .bind(old_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
        }
        let new = RefreshRecord { grant_id: grant.grant_id.clone(), superseded_at: None, ..new };
        insert_refresh_in(&mut *tx, &new).await?;
        tx.commit().await.map_err(err)?;
        Ok(RotateOutcome::Rotated(grant))
    }

    async fn record_access_token(&self, jti: &str, grant_id: &str, expires_at: Epoch) -> StoreResult<()> {
        sqlx::query("INSERT OR IGNORE INTO access_tokens (jti, grant_id, expires_at) VALUES (?, ?, ?)")
            .bind(jti)
            .bind(grant_id)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn access_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT g.revoked_at FROM access_tokens a JOIN grants g ON g.grant_id = a.grant_id WHERE a.jti = ?",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        Ok(matches!(row, Some((Some(_),))))
    }

    async fn consume_jti(
        &self,
        namespace: &str,
        jti: &str,
        expires_at: Epoch,
        now: Epoch,
    ) -> StoreResult<ReplayOutcome> {
        // Insert, or take over an expired entry; exactly one caller changes a row.
        let done = sqlx::query(
            "INSERT INTO used_jtis (namespace, jti, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (namespace, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE used_jtis.expires_at <= ?",
        )
        .bind(namespace)
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(if done.rows_affected() == 1 { ReplayOutcome::Consumed } else { ReplayOutcome::AlreadyUsed })
    }

    async fn purge_expired(&self, now: Epoch) -> StoreResult<u64> {
        let mut removed = 0;
        for sql in [
            "DELETE FROM auth_codes WHERE expires_at <= ?",
            "DELETE FROM refresh_tokens WHERE expires_at <= ?",
            "DELETE FROM access_tokens WHERE expires_at <= ?",
            "DELETE FROM used_jtis WHERE expires_at <= ?",
            "DELETE FROM idp_sessions WHERE expires_at <= ?",
            "DELETE FROM grants WHERE expires_at <= ?",
        ] {
            removed += sqlx::query(sql).bind(now).execute(&self.pool).await.map_err(err)?.rows_affected();
        }
        Ok(removed)
    }
}

fn session_from(row: &SqliteRow) -> StoreResult<IdpSessionRecord> {
    Ok(IdpSessionRecord {
        sid: row.try_get("sid").map_err(err)?,
        sub: row.try_get("sub").map_err(err)?,
        auth_time: row.try_get("auth_time").map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
        last_seen: row.try_get("last_seen").map_err(err)?,
        expires_at: row.try_get("expires_at").map_err(err)?,
    })
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, session: IdpSessionRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO idp_sessions (sid, sub, auth_time, created_at, last_seen, expires_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&session.sid)
            .bind(&session.sub)
            .bind(session.auth_time)
            .bind(session.created_at)
            .bind(session.last_seen)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn session(&self, sid: &str, now: Epoch) -> StoreResult<Option<IdpSessionRecord>> {
        let row = sqlx::query("SELECT * FROM idp_sessions WHERE sid = ? AND expires_at > ?")
            .bind(sid)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(session_from).transpose()
    }

    async fn touch_session(&self, sid: &str, now: Epoch, expires_at: Epoch) -> StoreResult<()> {
        sqlx::query("UPDATE idp_sessions SET last_seen = ?, expires_at = ? WHERE sid = ?")
            .bind(now)
            .bind(expires_at)
            .bind(sid)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn remove_session(&self, sid: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("DELETE FROM idp_sessions WHERE sid = ?").bind(sid).execute(&self.pool).await.map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn sessions_of(&self, sub: &str, now: Epoch) -> StoreResult<Vec<IdpSessionRecord>> {
        let rows = sqlx::query("SELECT * FROM idp_sessions WHERE sub = ? AND expires_at > ? ORDER BY created_at")
            .bind(sub)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(session_from).collect()
    }
}
