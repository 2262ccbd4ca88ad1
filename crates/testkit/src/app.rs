//! `spawn_app()`: the real server on 127.0.0.1 port 0 with its own data folder and a fresh
//! database (a SQLite file in a temp dir, or a new PostgreSQL database), for end-to-end tests.
//! Dropping the [`TestApp`] stops the server and drops its PostgreSQL database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use redeploy_core::{Clock, Store, SystemClock};
use server::{RunningServer, Settings};
use sqlx::Connection;

/// Which database the server under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `redeploy.db` in the temp data folder.
    Sqlite,
    /// A new database `redeploy_test_<random>` on `REDEPLOY_TEST_POSTGRES`
    /// (default `postgres://postgres@127.0.0.1:5432`), dropped afterwards.
    Postgres,
}

/// The PostgreSQL server tests use (no trailing slash, no database name).
pub fn postgres_base_url() -> String {
    std::env::var("REDEPLOY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

async fn postgres_maintenance(statement: &str) {
    let url = format!("{}/postgres", postgres_base_url());
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {url}: {e}"));
    sqlx::query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    let _ = conn.close().await;
}

/// Creates an empty database and returns its name and URL.
pub async fn fresh_postgres_database() -> (String, String) {
    let name = format!("redeploy_test_{}", uuid::Uuid::new_v4().simple());
    postgres_maintenance(&format!("CREATE DATABASE {name}")).await;
    let url = format!("{}/{name}", postgres_base_url());
    (name, url)
}

/// Drops a database made by [`fresh_postgres_database`], closing its connections first.
pub async fn drop_postgres_database(name: &str) {
    postgres_maintenance(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    /// `https://127.0.0.1:<port>`.
    pub base_url: String,
    pub addr: SocketAddr,
    /// `ca.pem`: what clients must trust.
    pub ca_pem: String,
    /// The first admin API token (from `admin-token`).
    pub admin_token: String,
    /// An enrollment token that vouches for the Entra join of the PCs enrolling with it
    /// (`vouches_entra_join`), so that the tests' Entra-joined PCs are eligible for Autopilot
    /// Reset without an issuer (issue #13 item 2). Created by the test app, not the server.
    pub enrollment_token: String,
    /// The server's first enrollment token (from `enrollment-token`): it vouches for nothing,
    /// so a PC enrolled with it rests on its own claim.
    pub claim_only_enrollment_token: String,
    /// The server's store.
    pub store: Arc<dyn Store>,
    /// The data folder (inside the temp dir).
    pub data_dir: PathBuf,
    /// The settings the server was started with (for a restart on the same data).
    pub settings: Settings,
    pub backend: Backend,
    /// The server's clock.
    pub clock: Arc<dyn Clock>,
    server: Option<RunningServer>,
    postgres_db: Option<String>,
    // Last: removed after the server stopped.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp")
            .field("base_url", &self.base_url)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Starts the server with default settings on `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the server after `configure` adjusted its settings (listen address, data folder and
/// database are already set; a test may change limits, federation, …).
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(backend, Arc::new(SystemClock), configure).await
}

/// [`spawn_app_with`] on `clock` (e.g. a [`redeploy_core::ManualClock`] the test moves), for
/// tests that drive time step by step with [`TestApp::tick`]. As in every test app the
/// background worker's interval is a day, so it never ticks on its own during a test (set
/// `worker_interval` in `configure` to see the loop run).
pub async fn spawn_app_with_clock(
    backend: Backend,
    clock: Arc<dyn Clock>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let (postgres_db, database) = match backend {
        Backend::Sqlite => (None, None),
        Backend::Postgres => {
            let (name, url) = fresh_postgres_database().await;
            (Some(name), Some(url))
        }
    };
    let mut settings = Settings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.clone(),
        database,
        worker_interval: std::time::Duration::from_secs(24 * 3600),
        ..Settings::default()
    };
    configure(&mut settings);
    let server = server::start_with_clock(settings.clone(), Arc::clone(&clock))
        .await
        .unwrap_or_else(|e| panic!("server did not start: {e}"));
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    let vouching = format!("rdp_enroll_vouching_{}", redeploy_core::TokenId::generate());
    server
        .store()
        .create_enrollment_token(&redeploy_core::EnrollmentToken {
            id: redeploy_core::TokenId::generate(),
            label: "test lab (vouches for Entra join)".into(),
            secret_hash: redeploy_core::SecretHash::of_secret(&vouching),
            expires_at: None,
            max_uses: None,
            uses: 0,
            created_at: clock.now(),
            vouches_entra_join: true,
        })
        .await
        .expect("vouching enrollment token");
    TestApp {
        base_url: format!("https://127.0.0.1:{}", server.local_addr.port()),
        addr: server.local_addr,
        ca_pem: read(&server.ca_cert_path),
        admin_token: read(&server.admin_token_path),
        enrollment_token: vouching,
        claim_only_enrollment_token: read(&server.enrollment_token_path),
        store: server.store(),
        data_dir,
        settings,
        backend,
        clock,
        server: Some(server),
        postgres_db,
        _dir: dir,
    }
}

impl TestApp {
    /// An HTTPS client that trusts this server's CA (and nothing else).
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA PEM");
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .expect("HTTPS client")
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The running server (its state holds the metrics, CA and settings).
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    /// One background-worker tick at the server clock's now (expiry, waves, schedules), as the
    /// server's own loop would run it; panics if a step failed.
    pub async fn tick(&self) -> server::worker::TickReport {
        server::worker::tick(&self.server().state)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Stops the server and waits until it no longer listens; its data folder and database stay
    /// until the app is dropped (a test may copy them, or start another server in their place).
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Stops the server and starts a new one on the same data folder and database (a new port).
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let server = server::start_with_clock(self.settings.clone(), Arc::clone(&self.clock))
            .await
            .unwrap_or_else(|e| panic!("server did not restart: {e}"));
        self.addr = server.local_addr;
        self.base_url = format!("https://127.0.0.1:{}", server.local_addr.port());
        self.store = server.store();
        self.server = Some(server);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(name) = self.postgres_db.take() {
            // Drop runs inside the test's runtime, where we cannot block on a future: use a
            // short-lived runtime on its own thread. FORCE closes the server's pooled connections.
            let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let cleanup = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(postgres_maintenance(&statement));
                }
            });
            let _ = cleanup.join();
        }
    }
}

/// State for router tests (`server::app(state).oneshot(request)`): a private in-memory SQLite
/// store, a new CA, default settings, the system clock, public URL `https://redeploy.test`.
pub async fn router_state() -> server::AppState {
    let store = store_sqlite::SqliteStore::connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite");
    let ca = server::enroll_ca("Redeploy test CA").expect("test CA");
    server::AppState::new(
        Arc::new(store),
        Arc::new(ca),
        Settings::default(),
        Arc::new(redeploy_core::SystemClock),
        "https://redeploy.test",
    )
}
