//! Many rows per statement: [`insert_rows`] writes rows as multi-row INSERTs sized to the
//! databases' limit on bound parameters, and [`BulkLoad`] loads enrolled PCs with it
//! (`redeploy seed`). A request plan of a whole group uses it too (`actions`, `audit`).

use async_trait::async_trait;
use redeploy_core::inventory::InventoryValue;
use redeploy_core::store::{BulkLoad, SeedDevice, StoreError, StoreResult};
use sea_query::{Iden, OnConflict, Query, SimpleExpr};

use crate::devices::{device_values, DEVICE_COLS};
use crate::dialect::Dialect;
use crate::enrollments::{enrollment_values, ENROLLMENT_COLS};
use crate::inventory::INVENTORY_COLS;
use crate::query::{built, v};
use crate::schema::{Devices as Dv, Enrollments as E, Inventory as I};
use crate::{SqlStore, Tx};

/// Bound parameters per statement: under SQLite's limit (32,766 since 3.32) and PostgreSQL's
/// (65,535), large enough that a statement's round trip is a small share of its work.
pub(crate) const PARAMS_PER_STATEMENT: usize = 30_000;

/// `items` in chunks of at most `max` whose lengths come from a small set — `max` itself, then
/// powers of two for the rest — so that a multi-row statement has few distinct shapes. Each
/// shape is a statement the database prepares once per connection and keeps (sqlx's statement
/// cache); a new length each time would be parsed and planned again, and push the check-ins'
/// own statements out of that cache (seen on PostgreSQL: the support trail's batches).
pub(crate) fn shaped_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let max = max.max(1);
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let take = if rest.len() >= max {
            max
        } else {
            // The largest power of two that fits.
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (chunk, after) = rest.split_at(take);
        rest = after;
        Some(chunk)
    })
}

/// Inserts a row per item of `items` (its `values`, in the order of `columns`) into `table` in
/// `tx`, as few multi-row INSERTs as the parameter limit allows. Nothing happens for no items.
/// (`values` is a plain function so that the statement built from it may cross an `.await`.)
pub(crate) async fn insert_rows<D: Dialect, C: Iden + Copy + 'static, T: Sync, const N: usize>(
    tx: &mut Tx<D>,
    table: C,
    columns: [C; N],
    items: &[T],
    values: fn(&T) -> [SimpleExpr; N],
) -> StoreResult<()> {
    insert_rows_or(tx, table, columns, items, values, None).await
}

/// [`insert_rows`] with an `ON CONFLICT` clause (`None`: none).
pub(crate) async fn insert_rows_or<
    D: Dialect,
    C: Iden + Copy + 'static,
    T: Sync,
    const N: usize,
>(
    tx: &mut Tx<D>,
    table: C,
    columns: [C; N],
    items: &[T],
    values: fn(&T) -> [SimpleExpr; N],
    on_conflict: Option<OnConflict>,
) -> StoreResult<()> {
    for chunk in shaped_chunks(items, (PARAMS_PER_STATEMENT / N).max(1)) {
        let mut insert = Query::insert();
        insert.into_table(table).columns(columns);
        if let Some(c) = &on_conflict {
            insert.on_conflict(c.clone());
        }
        for item in chunk {
            insert
                .values(values(item))
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        let statement = built::<D>(&insert)?;
        statement.execute(tx.on()).await?;
    }
    Ok(())
}

#[async_trait]
impl<D: Dialect> BulkLoad for SqlStore<D> {
    async fn bulk_load(&self, devices: &[SeedDevice]) -> StoreResult<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let inventory: Vec<&InventoryValue> = devices.iter().flat_map(|s| &s.inventory).collect();
        let mut tx = self.begin().await?;
        insert_rows(&mut tx, Dv::Table, DEVICE_COLS, devices, |s| {
            device_values(&s.device)
        })
        .await?;
        insert_rows(&mut tx, E::Table, ENROLLMENT_COLS, devices, |s| {
            enrollment_values(&s.enrollment)
        })
        .await?;
        insert_rows(&mut tx, I::Table, INVENTORY_COLS, &inventory, |val| {
            [
                v(val.device),
                v(val.uri.clone()),
                v(val.value.clone()),
                v(val.format.clone()),
                v(val.at),
            ]
        })
        .await?;
        tx.commit().await
    }

    async fn refresh_statistics(&self) -> StoreResult<()> {
        match D::ANALYZE {
            Some(statement) => {
                crate::sql::Sql::new(statement.to_owned(), Vec::new())
                    .execute(self.db())
                    .await?;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shaped_chunks;

    #[test]
    fn chunks_cover_everything_in_order_in_few_shapes() {
        for len in 0..300usize {
            let items: Vec<usize> = (0..len).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&items, 100).collect();
            assert_eq!(chunks.concat(), items, "{len}");
            for c in &chunks {
                assert!(
                    c.len() == 100 || c.len().is_power_of_two(),
                    "{len}: {}",
                    c.len()
                );
            }
            assert!(
                chunks.len() <= len / 100 + 7,
                "{len}: {} chunks",
                chunks.len()
            );
        }
    }
}
