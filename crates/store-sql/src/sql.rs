//! One statement as the shared queries build it (text plus [`Arg`]s) and the typed row reads on
//! top of [`SqlRow`]: the vocabulary every concern file uses.

use redeploy_core::ids::{
    AccountId, ActionId, BatchId, CommandId, DeliveryId, DeviceId, EnrollmentId, GroupId,
    ScheduleId, TokenId, WebhookId,
};
use redeploy_core::store::{StoreError, StoreResult};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{Arg, Dialect, On, SqlRow};

/// A statement and its arguments, run on a pool or in a transaction through the dialect.
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// A statement and all its arguments.
    pub(crate) fn new(text: String, args: Vec<Arg>) -> Self {
        Self { text, args }
    }

    /// Runs it; how many rows it changed.
    pub(crate) async fn execute<D: Dialect>(self, on: On<'_, D>) -> StoreResult<u64> {
        D::execute(on, &self.text, self.args).await
    }

    /// Runs it; every row.
    pub(crate) async fn fetch_all<D: Dialect>(self, on: On<'_, D>) -> StoreResult<Vec<D::Row>> {
        D::fetch_all(on, &self.text, self.args).await
    }

    /// Runs it on `held`'s connection ([`Dialect::fetch_all_held`]); every row.
    pub(crate) async fn fetch_all_held<D: Dialect>(
        self,
        held: &D::Held,
        pool: &D::Pool,
    ) -> StoreResult<Vec<D::Row>> {
        D::fetch_all_held(held, pool, &self.text, self.args).await
    }

    /// Runs it planned for its own arguments ([`Dialect::fetch_all_planned_for_args`]); every
    /// row.
    pub(crate) async fn fetch_all_planned_for_args<D: Dialect>(
        self,
        on: On<'_, D>,
    ) -> StoreResult<Vec<D::Row>> {
        D::fetch_all_planned_for_args(on, &self.text, self.args).await
    }

    /// Runs it; the first row, if any.
    pub(crate) async fn fetch_optional<D: Dialect>(
        self,
        on: On<'_, D>,
    ) -> StoreResult<Option<D::Row>> {
        D::fetch_optional(on, &self.text, self.args).await
    }

    /// Runs it as a short query on its own ([`Dialect::fetch_short`]); the first row, if any.
    pub(crate) async fn fetch_short<D: Dialect>(
        self,
        pool: &D::Pool,
    ) -> StoreResult<Option<D::Row>> {
        D::fetch_short(pool, &self.text, self.args).await
    }

    /// Runs it; the first row, which must exist.
    pub(crate) async fn fetch_one<D: Dialect>(self, on: On<'_, D>) -> StoreResult<D::Row> {
        let text = self.text.clone();
        self.fetch_optional(on)
            .await?
            .ok_or_else(|| StoreError::Backend(format!("no row from {text:?}")))
    }
}

impl Arg {
    /// A JSON document.
    pub(crate) fn json(text: String) -> Self {
        Self::Json(Some(text))
    }
}

macro_rules! arg_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(
            impl From<$t> for Arg {
                fn from(v: $t) -> Self {
                    Self::$variant(Some(v.into()))
                }
            }
            impl From<Option<$t>> for Arg {
                fn from(v: Option<$t>) -> Self {
                    Self::$variant(v.map(Into::into))
                }
            }
        )*
    };
}

arg_from!(
    String => Text,
    &str => Text,
    i64 => Int,
    u32 => Int,
    u16 => Int,
    bool => Bool,
    OffsetDateTime => Time,
);

impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}

/// The core's UUID identifiers, as stored.
pub(crate) trait DbId: Copy {
    /// Wraps a stored UUID.
    fn from_db(uuid: Uuid) -> Self;
}

macro_rules! db_ids {
    ($($t:ty),* $(,)?) => {
        $(
            impl DbId for $t {
                fn from_db(uuid: Uuid) -> Self {
                    <$t>::from_uuid(uuid)
                }
            }
            impl From<$t> for Arg {
                fn from(v: $t) -> Self {
                    Self::Id(Some(v.as_uuid()))
                }
            }
            impl From<Option<$t>> for Arg {
                fn from(v: Option<$t>) -> Self {
                    Self::Id(v.map(|v| v.as_uuid()))
                }
            }
        )*
    };
}

db_ids!(
    AccountId,
    ActionId,
    BatchId,
    CommandId,
    DeliveryId,
    DeviceId,
    EnrollmentId,
    GroupId,
    ScheduleId,
    TokenId,
    WebhookId,
);

fn not_null(col: &str) -> StoreError {
    StoreError::Corrupt(format!("column {col}: NULL"))
}

/// Reads of NOT NULL columns and of typed values (ids, small integers) on any row.
pub(crate) trait RowExt: SqlRow {
    /// A NOT NULL text column.
    fn string(&self, col: &str) -> StoreResult<String> {
        self.text(col)?.ok_or_else(|| not_null(col))
    }

    /// A NOT NULL integer column.
    fn i64(&self, col: &str) -> StoreResult<i64> {
        self.int(col)?.ok_or_else(|| not_null(col))
    }

    /// A NOT NULL boolean column.
    fn flag(&self, col: &str) -> StoreResult<bool> {
        self.bool(col)?.ok_or_else(|| not_null(col))
    }

    /// A NOT NULL instant column.
    fn at(&self, col: &str) -> StoreResult<OffsetDateTime> {
        self.time(col)?.ok_or_else(|| not_null(col))
    }

    /// A NOT NULL id column.
    fn id<T: DbId>(&self, col: &str) -> StoreResult<T> {
        self.opt_id(col)?.ok_or_else(|| not_null(col))
    }

    /// An id column.
    fn opt_id<T: DbId>(&self, col: &str) -> StoreResult<Option<T>> {
        Ok(self.uuid(col)?.map(T::from_db))
    }

    /// An integer column holding a `u32` (an HRESULT, an index, a count).
    fn opt_u32(&self, col: &str) -> StoreResult<Option<u32>> {
        self.int(col)?
            .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} {v}"))))
            .transpose()
    }

    /// A NOT NULL integer column holding a `u32`.
    fn u32(&self, col: &str) -> StoreResult<u32> {
        self.opt_u32(col)?.ok_or_else(|| not_null(col))
    }

    /// An integer column holding a `u16` (a status code).
    fn opt_u16(&self, col: &str) -> StoreResult<Option<u16>> {
        self.int(col)?
            .map(|v| u16::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} {v}"))))
            .transpose()
    }

    /// A column of device ids joined by spaces (`Dialect::join_ids`, an audit event's targets);
    /// NULL holds none.
    fn joined_ids(&self, col: &str) -> StoreResult<Vec<DeviceId>> {
        self.text(col)?
            .unwrap_or_default()
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(|t| Ok(DeviceId::parse(t)?))
            .collect()
    }

    /// A `COUNT(*)` column.
    fn count(&self, col: &str) -> StoreResult<u64> {
        let n = self.i64(col)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n}")))
    }
}

impl<R: SqlRow + ?Sized> RowExt for R {}
