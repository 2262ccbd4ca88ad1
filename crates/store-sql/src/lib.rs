//! The SQL store, written once for SQLite and PostgreSQL: [`SqlStore`] implements every `Store`
//! trait of `redeploy_core` with the queries in this crate, one file per concern, and runs them
//! through a [`Dialect`] that the backend crates (`store-sqlite`, `store-postgres`) supply.
//! Holds no business rules: the rules it applies are functions of `redeploy_core`.

mod accounts;
mod actions;
mod audit;
mod autopilot;
mod batches;
mod bulk;
mod bulk_queue;
mod check_in;
mod commands;
mod console_sessions;
mod devices;
mod dialect;
mod enrollments;
mod gather;
mod groups;
mod health;
mod idle_batch;
mod inventory;
mod push;
mod query;
mod renewal;
pub mod run;
mod schedules;
mod schema;
mod sql;
mod step_batch;
mod tokens;
mod trail;
mod view_batch;
mod waves;
mod webhooks;

use redeploy_core::store::StoreResult;

pub use dialect::{backend, corrupt, Arg, ConnectOptions, Dialect, On, SqlRow};

/// The newest migration `migrator` carries (0 when none): the schema version `connect` brings
/// a database up to, and the newest one a backup this build restores may be at.
pub fn newest_migration(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or_default()
}

/// `Store` on the database family `D`.
pub struct SqlStore<D: Dialect> {
    pool: D::Pool,
    /// The text of the statements a check-in runs, written once per shape.
    shapes: std::sync::Arc<query::Shapes>,
    /// Idle check-in steps waiting to be written together (`step_batch`).
    steps: std::sync::Arc<step_batch::StepBatches>,
    /// Check-in reads waiting to be read together (`view_batch`).
    views: std::sync::Arc<view_batch::ViewBatches>,
    /// Idle steps waiting to be written by one statement (`idle_batch`).
    idle_steps: std::sync::Arc<idle_batch::IdleBatches>,
    /// The connections the batched check-in reads and idle steps keep ([`Dialect::Held`]).
    held: std::sync::Arc<Held<D>>,
}

/// The connections kept by the batch kinds that run one batch at a time.
struct Held<D: Dialect> {
    views: D::Held,
    idle_steps: D::Held,
}

impl<D: Dialect> Default for Held<D> {
    fn default() -> Self {
        Self {
            views: Default::default(),
            idle_steps: Default::default(),
        }
    }
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            shapes: self.shapes.clone(),
            steps: self.steps.clone(),
            views: self.views.clone(),
            idle_steps: self.idle_steps.clone(),
            held: self.held.clone(),
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("pool", &self.pool)
            .finish()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Connects to `url` in the dialect's way with the default [`ConnectOptions`] and runs its
    /// migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects to `url`, waiting on the database as `options` say, and runs its migrations.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        Ok(Self {
            pool: D::connect(url, options).await?,
            shapes: Default::default(),
            steps: Default::default(),
            views: Default::default(),
            idle_steps: Default::default(),
            held: Default::default(),
        })
    }

    /// The underlying pool (for health checks and tools).
    pub fn pool(&self) -> &D::Pool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        D::release_held(&self.held.views).await;
        D::release_held(&self.held.idle_steps).await;
        D::close(&self.pool).await;
    }

    /// Statements on their own, each on any pooled connection.
    fn db(&self) -> On<'_, D> {
        On::Pool(&self.pool)
    }

    async fn begin(&self) -> StoreResult<Tx<D>> {
        Ok(Tx(D::begin(&self.pool).await?))
    }
}

/// An open transaction of `D`; dropping it uncommitted rolls back everything written in it.
struct Tx<D: Dialect>(D::Tx);

impl<D: Dialect> Tx<D> {
    /// Statements inside this transaction.
    fn on(&mut self) -> On<'_, D> {
        On::Tx(&mut self.0)
    }

    async fn commit(self) -> StoreResult<()> {
        D::commit(self.0).await
    }
}
