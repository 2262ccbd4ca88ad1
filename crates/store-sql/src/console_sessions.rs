//! Web console sessions: the hash of the cookie's session id, the API token it was opened with
//! (read back together), its CSRF secret and lifetime.

use async_trait::async_trait;
use redeploy_core::console_session::ConsoleSession;
use redeploy_core::enrollment::{ApiToken, SecretHash};
use redeploy_core::store::{ConsoleSessionStore, StoreResult};
use sea_query::{Alias, Expr, Query};
use time::OffsetDateTime;

use crate::dialect::Dialect;
use crate::query::{built, insert_row, v};
use crate::schema::{ApiTokens, ConsoleSessions as S};
use crate::sql::RowExt;
use crate::tokens::{hash_col, row_api_token, API_TOKEN_COLS};
use crate::SqlStore;

#[async_trait]
impl<D: Dialect> ConsoleSessionStore for SqlStore<D> {
    async fn create_console_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        let insert = insert_row(
            S::Table,
            [
                S::IdHash,
                S::TokenId,
                S::CsrfSecret,
                S::CreatedAt,
                S::ExpiresAt,
            ],
            [
                v(session.id_hash.as_str()),
                v(session.token),
                v(session.csrf_secret.clone()),
                v(session.created_at),
                v(session.expires_at),
            ],
        )?;
        built::<D>(&insert)?.execute(self.db()).await?;
        Ok(())
    }

    async fn console_session(
        &self,
        id_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> StoreResult<Option<(ConsoleSession, ApiToken)>> {
        let select = Query::select()
            .columns([
                (S::Table, S::IdHash),
                (S::Table, S::TokenId),
                (S::Table, S::CsrfSecret),
                (S::Table, S::ExpiresAt),
            ])
            .expr_as(
                Expr::col((S::Table, S::CreatedAt)),
                Alias::new("session_created_at"),
            )
            .columns(API_TOKEN_COLS.map(|c| (ApiTokens::Table, c)))
            .from(S::Table)
            .inner_join(
                ApiTokens::Table,
                Expr::col((ApiTokens::Table, ApiTokens::Id)).equals((S::Table, S::TokenId)),
            )
            .and_where(Expr::col((S::Table, S::IdHash)).eq(v(id_hash.as_str())))
            .and_where(Expr::col((S::Table, S::ExpiresAt)).gt(v(now)))
            .to_owned();
        let Some(r) = built::<D>(&select)?.fetch_optional(self.db()).await? else {
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
        let delete = Query::delete()
            .from_table(S::Table)
            .and_where(Expr::col(S::IdHash).eq(v(id_hash.as_str())))
            .to_owned();
        Ok(built::<D>(&delete)?.execute(self.db()).await? > 0)
    }

    async fn delete_expired_console_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let delete = Query::delete()
            .from_table(S::Table)
            .and_where(Expr::col(S::ExpiresAt).lte(v(now)))
            .to_owned();
        built::<D>(&delete)?.execute(self.db()).await
    }
}
