//! Web console sessions: the hash of the cookie's session id, who holds it (an API token or an
//! account, read back together with the session; or an OpenID Connect user, kept in the row), its
//! CSRF secret and lifetime.

use async_trait::async_trait;
use redeploy_core::account::{OpenIdUser, Principal};
use redeploy_core::console_session::{ConsoleSession, SessionHolder};
use redeploy_core::enrollment::{Role, SecretHash};
use redeploy_core::ids::{AccountId, TokenId};
use redeploy_core::store::{ConsoleSessionStore, StoreError, StoreResult};
use sea_query::{Alias, Expr, Iden, Query};
use time::OffsetDateTime;

use crate::accounts::{row_account, ACCOUNT_COLS};
use crate::dialect::{Dialect, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{Accounts, ApiTokens, ConsoleSessions as S};
use crate::sql::RowExt;
use crate::tokens::{hash_col, row_api_token, API_TOKEN_COLS};
use crate::SqlStore;

/// The account columns of a session's row are read under this prefix (the token's keep their
/// own names).
const ACCOUNT_PREFIX: &str = "account_";

/// Who holds the session of row `r`: its token or account (joined), or its OpenID user.
fn row_principal(r: &impl SqlRow) -> StoreResult<Principal> {
    if r.opt_id::<TokenId>("token_id")?.is_some() {
        return Ok(Principal::Token(row_api_token(r)?));
    }
    if r.opt_id::<AccountId>("account_id")?.is_some() {
        return Ok(Principal::Account(row_account(r, ACCOUNT_PREFIX)?));
    }
    match r.text("openid_subject")? {
        Some(subject) => Ok(Principal::OpenId(OpenIdUser {
            subject,
            name: r.string("openid_name")?,
            role: Role::parse(&r.string("openid_role")?)?,
        })),
        None => Err(StoreError::Corrupt(
            "a console session without a holder".into(),
        )),
    }
}

#[async_trait]
impl<D: Dialect> ConsoleSessionStore for SqlStore<D> {
    async fn create_console_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        let (token, account, openid) = match &session.holder {
            SessionHolder::Token(id) => (Some(*id), None, None),
            SessionHolder::Account(id) => (None, Some(*id), None),
            SessionHolder::OpenId(user) => (None, None, Some(user)),
        };
        let insert = insert_row(
            S::Table,
            [
                S::IdHash,
                S::TokenId,
                S::AccountId,
                S::OpenidSubject,
                S::OpenidName,
                S::OpenidRole,
                S::CsrfSecret,
                S::CreatedAt,
                S::ExpiresAt,
            ],
            [
                v(session.id_hash.as_str()),
                v(token),
                v(account),
                v(openid.map(|u| u.subject.clone())),
                v(openid.map(|u| u.name.clone())),
                v(openid.map(|u| u.role.as_str())),
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
    ) -> StoreResult<Option<(ConsoleSession, Principal)>> {
        let mut select = Query::select();
        select
            .columns([
                (S::Table, S::IdHash),
                (S::Table, S::TokenId),
                (S::Table, S::AccountId),
                (S::Table, S::OpenidSubject),
                (S::Table, S::OpenidName),
                (S::Table, S::OpenidRole),
                (S::Table, S::CsrfSecret),
                (S::Table, S::ExpiresAt),
            ])
            .expr_as(
                Expr::col((S::Table, S::CreatedAt)),
                Alias::new("session_created_at"),
            )
            .columns(API_TOKEN_COLS.map(|c| (ApiTokens::Table, c)));
        for c in ACCOUNT_COLS {
            select.expr_as(
                Expr::col((Accounts::Table, c)),
                Alias::new(format!("{ACCOUNT_PREFIX}{}", Iden::to_string(&c))),
            );
        }
        select
            .from(S::Table)
            .left_join(
                ApiTokens::Table,
                Expr::col((ApiTokens::Table, ApiTokens::Id)).equals((S::Table, S::TokenId)),
            )
            .left_join(
                Accounts::Table,
                Expr::col((Accounts::Table, Accounts::Id)).equals((S::Table, S::AccountId)),
            )
            .and_where(Expr::col((S::Table, S::IdHash)).eq(v(id_hash.as_str())))
            .and_where(Expr::col((S::Table, S::ExpiresAt)).gt(v(now)));
        let Some(r) = built::<D>(&select)?.fetch_optional(self.db()).await? else {
            return Ok(None);
        };
        let principal = row_principal(&r)?;
        let session = ConsoleSession {
            id_hash: hash_col(&r, "id_hash")?,
            holder: SessionHolder::from(&principal),
            csrf_secret: r.string("csrf_secret")?,
            created_at: r.at("session_created_at")?,
            expires_at: r.at("expires_at")?,
        };
        Ok(Some((session, principal)))
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
