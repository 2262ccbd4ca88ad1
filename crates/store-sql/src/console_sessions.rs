//! Web console sessions: the hash of the cookie's session id, the API token it was opened with
//! (read back together), its CSRF secret and lifetime.

use async_trait::async_trait;
use redeploy_core::console_session::ConsoleSession;
use redeploy_core::enrollment::{ApiToken, SecretHash};
use redeploy_core::store::{ConsoleSessionStore, StoreResult};
use time::OffsetDateTime;

use crate::dialect::Dialect;
use crate::sql::{sql, RowExt};
use crate::tokens::{hash_col, row_api_token, API_TOKEN_COLS};
use crate::SqlStore;

#[async_trait]
impl<D: Dialect> ConsoleSessionStore for SqlStore<D> {
    async fn create_console_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        sql("INSERT INTO console_sessions (id_hash, token_id, csrf_secret, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)")
        .bind(session.id_hash.as_str())
        .bind(session.token)
        .bind(session.csrf_secret.clone())
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn console_session(
        &self,
        id_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> StoreResult<Option<(ConsoleSession, ApiToken)>> {
        let token_cols = API_TOKEN_COLS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sql(format!(
            "SELECT s.id_hash, s.token_id, s.csrf_secret, s.created_at AS session_created_at, \
             s.expires_at, {token_cols} FROM console_sessions s JOIN api_tokens t \
             ON t.id = s.token_id WHERE s.id_hash = $1 AND s.expires_at > $2"
        ))
        .bind(id_hash.as_str())
        .bind(now)
        .fetch_optional(self.db())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let session = ConsoleSession {
            id_hash: hash_col(&r, "id_hash")?,
            token: r.id("token_id")?,
            csrf_secret: r.string("csrf_secret")?,
            created_at: r.at("session_created_at")?,
            expires_at: r.at("expires_at")?,
        };
        Ok(Some((session, row_api_token(&r)?)))
    }

    async fn delete_console_session(&self, id_hash: &SecretHash) -> StoreResult<bool> {
        let deleted = sql("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash.as_str())
            .execute(self.db())
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_expired_console_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        sql("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.db())
            .await
    }
}
