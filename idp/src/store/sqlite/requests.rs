//! SQLite implementation of the pushed-request and access-token revocation stores.

use async_trait::async_trait;
use sqlx::Row;

use super::super::{PushedRequestRecord, PushedRequestStore, RevocationStore, StoreError, StoreResult};
use super::SqliteStore;
use crate::store::Epoch;

fn err(operation: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{operation}: {error}"))
}

#[async_trait]
impl PushedRequestStore for SqliteStore {
    async fn insert_pushed(&self, record: PushedRequestRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO pushed_requests (request_uri_hash, client_id, request, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&record.request_uri_hash)
        .bind(&record.client_id)
        .bind(&record.request)
        .bind(record.expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| err("insert pushed request", e))?;
        Ok(())
    }

    async fn take_pushed(&self, request_uri_hash: &[u8], now: Epoch) -> StoreResult<Option<PushedRequestRecord>> {
        // One DELETE … RETURNING: exactly one caller gets the row.
        let row = sqlx::query(
            "DELETE FROM pushed_requests WHERE request_uri_hash = ? RETURNING client_id, request, expires_at",
        )
        .bind(request_uri_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| err("take pushed request", e))?;
        let Some(row) = row else { return Ok(None) };
        let record = PushedRequestRecord {
            request_uri_hash: request_uri_hash.to_vec(),
            client_id: row.try_get("client_id").map_err(|e| err("decode pushed request", e))?,
            request: row.try_get("request").map_err(|e| err("decode pushed request", e))?,
            expires_at: row.try_get("expires_at").map_err(|e| err("decode pushed request", e))?,
        };
        Ok((record.expires_at > now).then_some(record))
    }
}

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn revoke_access_token(&self, jti: &str, expires_at: Epoch) -> StoreResult<()> {
        sqlx::query("INSERT INTO revoked_access_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING")
            .bind(jti)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(|e| err("revoke access token", e))?;
        Ok(())
    }

    async fn access_token_denied(&self, jti: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 FROM revoked_access_tokens WHERE jti = ?")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| err("check access token revocation", e))?;
        Ok(row.is_some())
    }
}
