//! Enrollment tokens (each use counted, never overspent under concurrency) and API tokens
//! (found by the hash of their secret, revoked once).

use async_trait::async_trait;
use redeploy_core::enrollment::{ApiToken, EnrollmentToken, Role, SecretHash, TokenRefusal};
use redeploy_core::ids::TokenId;
use redeploy_core::store::{StoreError, StoreResult, TokenStore};
use time::OffsetDateTime;

use crate::dialect::{Dialect, SqlRow};
use crate::sql::{placeholders, sql, RowExt};
use crate::SqlStore;

const ENROLLMENT_TOKEN_COLS: &str =
    "id, label, secret_hash, expires_at, max_uses, uses, created_at";
/// Every column of `api_tokens`, in the order [`row_api_token`] and the INSERT use.
pub(crate) const API_TOKEN_COLS: &str = "id, name, secret_hash, role, created_at, revoked_at";

/// A stored secret hash from column `col`.
pub(crate) fn hash_col(r: &impl SqlRow, col: &str) -> StoreResult<SecretHash> {
    SecretHash::from_stored(&r.string(col)?)
        .ok_or_else(|| StoreError::Corrupt(format!("column {col}: not a secret hash")))
}

fn row_enrollment_token(r: &impl SqlRow) -> StoreResult<EnrollmentToken> {
    Ok(EnrollmentToken {
        id: r.id("id")?,
        label: r.string("label")?,
        secret_hash: hash_col(r, "secret_hash")?,
        expires_at: r.time("expires_at")?,
        max_uses: r.int("max_uses")?,
        uses: r.i64("uses")?,
        created_at: r.at("created_at")?,
    })
}

/// An API token from a row holding [`API_TOKEN_COLS`].
pub(crate) fn row_api_token(r: &impl SqlRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: r.id("id")?,
        name: r.string("name")?,
        secret_hash: hash_col(r, "secret_hash")?,
        role: Role::parse(&r.string("role")?)?,
        created_at: r.at("created_at")?,
        revoked_at: r.time("revoked_at")?,
    })
}

#[async_trait]
impl<D: Dialect> TokenStore for SqlStore<D> {
    async fn create_enrollment_token(&self, token: &EnrollmentToken) -> StoreResult<()> {
        sql(format!(
            "INSERT INTO enrollment_tokens ({ENROLLMENT_TOKEN_COLS}) VALUES ({})",
            placeholders(1, 7)
        ))
        .bind(token.id)
        .bind(token.label.clone())
        .bind(token.secret_hash.as_str())
        .bind(token.expires_at)
        .bind(token.max_uses)
        .bind(token.uses)
        .bind(token.created_at)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn consume_enrollment_token(
        &self,
        secret_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> StoreResult<EnrollmentToken> {
        let mut tx = self.begin().await?;
        let row = sql(format!(
            "SELECT {ENROLLMENT_TOKEN_COLS} FROM enrollment_tokens WHERE secret_hash = $1{}",
            D::FOR_UPDATE
        ))
        .bind(secret_hash.as_str())
        .fetch_optional(tx.on())
        .await?
        .ok_or_else(|| StoreError::NotFound("enrollment token".into()))?;
        let mut token = row_enrollment_token(&row)?;
        match token.refusal(now) {
            Some(TokenRefusal::Expired) => return Err(StoreError::TokenExpired),
            Some(TokenRefusal::Exhausted) => return Err(StoreError::TokenExhausted),
            None => {}
        }
        sql("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1")
            .bind(token.id)
            .execute(tx.on())
            .await?;
        tx.commit().await?;
        token.uses += 1;
        Ok(token)
    }

    async fn list_enrollment_tokens(&self) -> StoreResult<Vec<EnrollmentToken>> {
        let rows = sql(format!(
            "SELECT {ENROLLMENT_TOKEN_COLS} FROM enrollment_tokens ORDER BY created_at, id"
        ))
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_enrollment_token).collect()
    }

    async fn create_api_token(&self, token: &ApiToken) -> StoreResult<()> {
        sql(format!(
            "INSERT INTO api_tokens ({API_TOKEN_COLS}) VALUES ({})",
            placeholders(1, 6)
        ))
        .bind(token.id)
        .bind(token.name.clone())
        .bind(token.secret_hash.as_str())
        .bind(token.role.as_str())
        .bind(token.created_at)
        .bind(token.revoked_at)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn api_token_by_hash(&self, secret_hash: &SecretHash) -> StoreResult<Option<ApiToken>> {
        let row = sql(format!(
            "SELECT {API_TOKEN_COLS} FROM api_tokens WHERE secret_hash = $1"
        ))
        .bind(secret_hash.as_str())
        .fetch_optional(self.db())
        .await?;
        row.as_ref().map(row_api_token).transpose()
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        let rows = sql(format!(
            "SELECT {API_TOKEN_COLS} FROM api_tokens ORDER BY created_at, id"
        ))
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_api_token).collect()
    }

    async fn revoke_api_token(&self, id: TokenId, at: OffsetDateTime) -> StoreResult<()> {
        let changed =
            sql("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(self.db())
                .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("api token {id}")));
        }
        Ok(())
    }
}
