//! Whether the database can do the store's work right now: the readiness check (`/readyz`).

use async_trait::async_trait;
use redeploy_core::store::{HealthCheck, StoreResult};

use crate::dialect::Dialect;
use crate::SqlStore;

#[async_trait]
impl<D: Dialect> HealthCheck for SqlStore<D> {
    async fn ping(&self) -> StoreResult<()> {
        // A write transaction, not a bare `SELECT 1`: on SQLite a bare statement answers from an
        // open connection even while another process holds the write lock every check-in
        // needs; `BEGIN IMMEDIATE` takes that lock. Dropping the transaction rolls it back, so
        // nothing is written.
        let mut tx = self.begin().await?;
        D::fetch_optional(tx.on(), "SELECT 1", Vec::new()).await?;
        Ok(())
    }
}
