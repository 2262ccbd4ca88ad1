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
mod graph;
mod mgmt;
mod newest_first;
mod ops;
mod router;
mod webhooks;
mod worker;

/// Stamps out `sqlite` and `postgres` tests from one `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(testkit::app::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(testkit::app::Backend::Postgres).await;
                }
            }
        )*
    };
}
