//! Check-in views of many PCs read by one statement where each statement is a round trip to
//! another process ([`crate::dialect::Dialect::BATCHED_READS`]: PostgreSQL). A check-in's first
//! read is a few index probes; on PostgreSQL the round trip around them — the protocol's
//! messages, two context switches, the executor's start — cost more than the probes
//! (docs/benchmarks.md, session 13). Reads arriving while one is in flight wait for it, then
//! the next of them reads for all of them: `WHERE devices.id IN (…)`, one row per device.
//! Batches are gathered as [`crate::gather`] does. An error fails every read of its
//! statement, as it would have failed each.

use std::collections::HashMap;

use redeploy_core::ids::DeviceId;
use redeploy_core::store::{CheckInView, StoreError, StoreResult};

use crate::check_in::{row_view, select_view, view_args};
use crate::dialect::Dialect;
use crate::gather::{self, Gather};
use crate::query::written;
use crate::sql::RowExt;
use crate::SqlStore;

/// Most devices one statement reads.
const MAX_BATCH: usize = 64;

/// The reads waiting: a device and the inventory nodes its view holds.
pub(crate) type ViewBatches = Gather<(DeviceId, Vec<String>), Option<CheckInView>>;

type Waiting = gather::Waiting<(DeviceId, Vec<String>), Option<CheckInView>>;

impl<D: Dialect> SqlStore<D> {
    /// [`crate::SqlStore::read_check_in_view`] in a batch with the reads waiting alongside it.
    pub(crate) async fn view_in_batch(
        &self,
        id: DeviceId,
        uris: &[&str],
    ) -> StoreResult<Option<CheckInView>> {
        let uris = uris.iter().map(|u| (*u).to_owned()).collect();
        let store = self.clone();
        self.views
            .submit((id, uris), MAX_BATCH, |batch| async move {
                store.read_views(batch).await
            })
            .await
    }

    /// One statement per distinct list of nodes in `batch` (in practice one: the nodes are the
    /// server's), each read's row handed to it.
    async fn read_views(&self, mut batch: Vec<Waiting>) {
        while let Some(first) = batch.first() {
            let uris = first.item.1.clone();
            let (same, rest): (Vec<_>, Vec<_>) = batch.into_iter().partition(|w| w.item.1 == uris);
            batch = rest;
            let uris: Vec<&str> = uris.iter().map(String::as_str).collect();
            let mut ids: Vec<DeviceId> = same.iter().map(|w| w.item.0).collect();
            ids.sort_unstable();
            ids.dedup();
            match self.read_many(&ids, &uris).await {
                Ok(views) => {
                    for w in same {
                        // A device read twice in one batch: each read gets the row.
                        let view = match views.get(&w.item.0) {
                            Some(Ok(view)) => Ok(Some(view.clone())),
                            Some(Err(e)) => Err(StoreError::Corrupt(e.clone())),
                            None => Ok(None),
                        };
                        let _ = w.done.send(view);
                    }
                }
                Err(e) => {
                    for w in same {
                        let _ = w.done.send(Err(copy(&e)));
                    }
                }
            }
        }
    }

    async fn read_many(
        &self,
        ids: &[DeviceId],
        uris: &[&str],
    ) -> StoreResult<HashMap<DeviceId, Result<CheckInView, String>>> {
        // The list padded to a power of two with its last id again (`IN` reads a device once
        // however often it is named): each length is a statement prepared and planned (2–3 ms)
        // on the connection it runs on and kept in its statement cache, so 7 lengths, not 64.
        let mut ids = ids.to_vec();
        if let Some(&last) = ids.last() {
            ids.resize(ids.len().next_power_of_two(), last);
        }
        let shape = (uris.len() as u64) << 16 | ids.len() as u64;
        let rows = self
            .shapes
            .sql(("check_in_views", shape), view_args(&ids, uris), || {
                written::<D>(&select_view(&ids, uris))
            })?
            .fetch_all_held::<D>(&self.held.views, self.pool())
            .await?;
        let mut views = HashMap::with_capacity(rows.len());
        for r in &rows {
            let id = r.id("id")?;
            // A row that cannot be read fails its own read only.
            views.insert(id, row_view(r, id, uris).map_err(|e| e.to_string()));
        }
        Ok(views)
    }
}

/// The same error again, for each read of a failed statement.
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound(m) => StoreError::NotFound(m.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::TokenExpired => StoreError::TokenExpired,
        StoreError::TokenExhausted => StoreError::TokenExhausted,
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Backend(m) => StoreError::Backend(m.clone()),
        StoreError::SequenceMoved => StoreError::SequenceMoved,
    }
}
