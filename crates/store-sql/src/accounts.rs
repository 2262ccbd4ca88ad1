//! Named local accounts of the web console: found by name, listed, disabled once.

use async_trait::async_trait;
use redeploy_core::account::{Account, AccountName};
use redeploy_core::enrollment::Role;
use redeploy_core::store::{AccountStore, StoreError, StoreResult};
use sea_query::{Expr, Order, Query};
use time::OffsetDateTime;

use crate::dialect::{Dialect, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::Accounts as A;
use crate::sql::RowExt;
use crate::SqlStore;

/// Every column of `accounts`, as [`row_account`] reads them.
pub(crate) const ACCOUNT_COLS: [A; 6] = [
    A::Id,
    A::Name,
    A::PasswordHash,
    A::Role,
    A::CreatedAt,
    A::DisabledAt,
];

/// An account from a row holding [`ACCOUNT_COLS`] (under their own names, or `prefix`ed).
pub(crate) fn row_account(r: &impl SqlRow, prefix: &str) -> StoreResult<Account> {
    let col = |c: &str| format!("{prefix}{c}");
    Ok(Account {
        id: r.id(&col("id"))?,
        name: AccountName::parse(&r.string(&col("name"))?)?,
        password_hash: r.string(&col("password_hash"))?,
        role: Role::parse(&r.string(&col("role"))?)?,
        created_at: r.at(&col("created_at"))?,
        disabled_at: r.time(&col("disabled_at"))?,
    })
}

impl<D: Dialect> SqlStore<D> {
    async fn account_where_name(&self, name: &AccountName) -> StoreResult<Option<Account>> {
        let select = Query::select()
            .columns(ACCOUNT_COLS)
            .from(A::Table)
            .and_where(Expr::col(A::Name).eq(v(name.as_str())))
            .to_owned();
        let row = built::<D>(&select)?.fetch_optional(self.db()).await?;
        row.as_ref().map(|r| row_account(r, "")).transpose()
    }
}

#[async_trait]
impl<D: Dialect> AccountStore for SqlStore<D> {
    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        let insert = insert_row(
            A::Table,
            ACCOUNT_COLS,
            [
                v(account.id),
                v(account.name.as_str()),
                v(account.password_hash.clone()),
                v(account.role.as_str()),
                v(account.created_at),
                v(account.disabled_at),
            ],
        )?;
        built::<D>(&insert)?.execute(self.db()).await?;
        Ok(())
    }

    async fn account_by_name(&self, name: &AccountName) -> StoreResult<Option<Account>> {
        self.account_where_name(name).await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let select = Query::select()
            .columns(ACCOUNT_COLS)
            .from(A::Table)
            .order_by(A::CreatedAt, Order::Asc)
            .order_by(A::Id, Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(|r| row_account(r, "")).collect()
    }

    async fn disable_account(
        &self,
        name: &AccountName,
        at: OffsetDateTime,
    ) -> StoreResult<Account> {
        let update = Query::update()
            .table(A::Table)
            .value(A::DisabledAt, Expr::col(A::DisabledAt).if_null(v(at)))
            .and_where(Expr::col(A::Name).eq(v(name.as_str())))
            .to_owned();
        if built::<D>(&update)?.execute(self.db()).await? == 0 {
            return Err(StoreError::NotFound(format!("account {name}")));
        }
        self.account_where_name(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {name}")))
    }
}
