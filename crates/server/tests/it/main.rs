//! End-to-end tests of the server over real HTTPS on port 0, each on SQLite and PostgreSQL
//! (`REDEPLOY_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432`).

mod api_v1;
mod browser;
mod common;
mod console;
mod datadir;
mod enrollment;
mod federated;
mod fleet;
mod flood;
mod graph;
mod mgmt;
mod newest_first;
mod notifications;
mod ops;
mod outage;
mod push;
mod router;
mod sign_in;
mod webhooks;
mod worker;
