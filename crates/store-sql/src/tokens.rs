//! Enrollment tokens (each use counted, never overspent under concurrency) and API tokens
//! (found by the hash of their secret, revoked once).

use async_trait::async_trait;
use redeploy_core::enrollment::{ApiToken, EnrollmentToken, Role, SecretHash, TokenRefusal};
use redeploy_core::ids::TokenId;
use redeploy_core::store::{StoreError, StoreResult, TokenStore};
use sea_query::{Expr, LockType, Order, Query};
use time::OffsetDateTime;

use crate::dialect::{Dialect, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{ApiTokens as A, EnrollmentTokens as E};
use crate::sql::RowExt;
use crate::SqlStore;

const ENROLLMENT_TOKEN_COLS: [E; 8] = [
    E::Id,
    E::Label,
    E::SecretHash,
    E::ExpiresAt,
    E::MaxUses,
    E::Uses,
    E::CreatedAt,
    E::VouchesEntraJoin,
];
/// Every column of `api_tokens`, as [`row_api_token`] reads them.
pub(crate) const API_TOKEN_COLS: [A; 6] = [
    A::Id,
    A::Name,
    A::SecretHash,
    A::Role,
    A::CreatedAt,
    A::RevokedAt,
];

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
        vouches_entra_join: r.flag("vouches_entra_join")?,
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
        let insert = insert_row(
            E::Table,
            ENROLLMENT_TOKEN_COLS,
            [
                v(token.id),
                v(token.label.clone()),
                v(token.secret_hash.as_str()),
                v(token.expires_at),
                v(token.max_uses),
                v(token.uses),
                v(token.created_at),
                v(token.vouches_entra_join),
            ],
        )?;
        built::<D>(&insert)?.execute(self.db()).await?;
        Ok(())
    }

    async fn consume_enrollment_token(
        &self,
        secret_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> StoreResult<EnrollmentToken> {
        let mut tx = self.begin().await?;
        // FOR UPDATE on PostgreSQL (the SQLite builder writes none: its write transaction
        // already excludes every other writer).
        let select = Query::select()
            .columns(ENROLLMENT_TOKEN_COLS)
            .from(E::Table)
            .and_where(Expr::col(E::SecretHash).eq(v(secret_hash.as_str())))
            .lock(LockType::Update)
            .to_owned();
        let row = built::<D>(&select)?
            .fetch_optional(tx.on())
            .await?
            .ok_or_else(|| StoreError::NotFound("enrollment token".into()))?;
        let mut token = row_enrollment_token(&row)?;
        match token.refusal(now) {
            Some(TokenRefusal::Expired) => return Err(StoreError::TokenExpired),
            Some(TokenRefusal::Exhausted) => return Err(StoreError::TokenExhausted),
            None => {}
        }
        let update = Query::update()
            .table(E::Table)
            .value(E::Uses, Expr::col(E::Uses).add(1))
            .and_where(Expr::col(E::Id).eq(v(token.id)))
            .to_owned();
        built::<D>(&update)?.execute(tx.on()).await?;
        tx.commit().await?;
        token.uses += 1;
        Ok(token)
    }

    async fn list_enrollment_tokens(&self) -> StoreResult<Vec<EnrollmentToken>> {
        let select = Query::select()
            .columns(ENROLLMENT_TOKEN_COLS)
            .from(E::Table)
            .order_by(E::CreatedAt, Order::Asc)
            .order_by(E::Id, Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_enrollment_token).collect()
    }

    async fn create_api_token(&self, token: &ApiToken) -> StoreResult<()> {
        let insert = insert_row(
            A::Table,
            API_TOKEN_COLS,
            [
                v(token.id),
                v(token.name.clone()),
                v(token.secret_hash.as_str()),
                v(token.role.as_str()),
                v(token.created_at),
                v(token.revoked_at),
            ],
        )?;
        built::<D>(&insert)?.execute(self.db()).await?;
        Ok(())
    }

    async fn api_token_by_hash(&self, secret_hash: &SecretHash) -> StoreResult<Option<ApiToken>> {
        let select = Query::select()
            .columns(API_TOKEN_COLS)
            .from(A::Table)
            .and_where(Expr::col(A::SecretHash).eq(v(secret_hash.as_str())))
            .to_owned();
        let row = built::<D>(&select)?.fetch_optional(self.db()).await?;
        row.as_ref().map(row_api_token).transpose()
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        let select = Query::select()
            .columns(API_TOKEN_COLS)
            .from(A::Table)
            .order_by(A::CreatedAt, Order::Asc)
            .order_by(A::Id, Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_api_token).collect()
    }

    async fn revoke_api_token(&self, id: TokenId, at: OffsetDateTime) -> StoreResult<()> {
        let update = Query::update()
            .table(A::Table)
            .value(A::RevokedAt, Expr::col(A::RevokedAt).if_null(v(at)))
            .and_where(Expr::col(A::Id).eq(v(id)))
            .to_owned();
        if built::<D>(&update)?.execute(self.db()).await? == 0 {
            return Err(StoreError::NotFound(format!("api token {id}")));
        }
        Ok(())
    }
}
