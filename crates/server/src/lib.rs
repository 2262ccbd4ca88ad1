//! The Redeploy server: enrollment (MS-MDE2) and management (MS-MDM) endpoints, the admin REST API
//! and console, metrics — the only crate that knows HTTP. Business rules live in `redeploy_core`.

pub mod api;
pub mod app;
pub mod bootstrap;
pub mod config;
pub mod console;
pub mod crash;
pub mod dto;
pub mod enrollment;
pub mod federated;
pub mod graph;
pub(crate) mod kept;
pub mod metrics;
pub mod mgmt;
pub mod net;
pub mod notifications;
pub mod oidc;
pub mod ops;
pub mod problem;
pub mod push;
pub mod ratelimit;
pub mod service;
pub mod settings;
pub mod state;
pub mod tls;
pub mod trail_buffer;
pub mod webhook_delivery;
pub mod worker;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use redeploy_core::{Clock, Store, SystemClock};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use app::app;
pub use state::{AppState, FederatedSettings, JwksSource, RateLimit, Settings};

/// Everything that can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("certificates: {0}")]
    Certificate(#[from] enroll::Error),
    #[error("database: {0}")]
    Store(#[from] redeploy_core::StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A server accepting connections. Dropping it (or calling [`RunningServer::shutdown`]) stops
/// accepting new connections.
#[derive(Debug)]
pub struct RunningServer {
    /// The address the listener is bound to (the real port when `listen` had port 0).
    pub local_addr: SocketAddr,
    /// The plain-HTTP `/metrics` listener's address, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The base URL handed to devices.
    pub public_url: String,
    /// The data folder in use.
    pub data_dir: PathBuf,
    /// `ca.pem`: the certificate clients must trust.
    pub ca_cert_path: PathBuf,
    /// `admin-token` (written on the first start against an empty database).
    pub admin_token_path: PathBuf,
    /// `enrollment-token` (written on the first start against an empty database).
    pub enrollment_token_path: PathBuf,
    /// What this start created.
    pub first_tokens: bootstrap::FirstTokens,
    /// The state the handlers share (store, CA, metrics…).
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    worker: JoinHandle<()>,
    /// The push dispatcher, when `[push]` is configured.
    push: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The discovery URL a Windows PC is pointed at.
    pub fn discovery_url(&self) -> String {
        format!("{}{}", self.public_url, enrollment::DISCOVERY_PATH)
    }

    /// The store the server uses.
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.worker.abort();
        if let Some(push) = &self.push {
            push.abort();
        }
        self.state.trail.flush().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the server stops (it only stops through [`RunningServer::shutdown`] or drop,
    /// so this is "serve forever" for the binary).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.worker.abort();
        if let Some(push) = &self.push {
            push.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A new CA valid from now (for router tests and tools; `start` loads or creates `ca.pem`).
pub fn enroll_ca(common_name: &str) -> Result<enroll::ca::CertificateAuthority> {
    Ok(enroll::ca::CertificateAuthority::generate(
        common_name,
        SystemClock.now(),
    )?)
}

/// The base URL devices use: `settings.public_url`, else `https://<first hostname or listen
/// IP>:<bound port>` (an unspecified listen address becomes `localhost`).
fn public_url(settings: &Settings, bound: SocketAddr) -> String {
    if let Some(url) = &settings.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = match settings.hostnames.first() {
        Some(h) => match h.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => h.clone(),
        },
        None => match bound.ip() {
            ip if ip.is_unspecified() => "localhost".into(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        },
    };
    format!("https://{host}:{}", bound.port())
}

/// Starts the server with the system clock. See [`start_with_clock`].
pub async fn start(settings: Settings) -> Result<RunningServer> {
    start_with_clock(settings, Arc::new(SystemClock)).await
}

/// Prepares the data folder (CA, TLS certificate, first tokens), opens the store (running
/// migrations), binds the listener and serves HTTPS in a background task.
pub async fn start_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> Result<RunningServer> {
    let now = clock.now();
    if !settings.crash_points.is_empty() {
        tracing::warn!(crash_points = %settings.crash_points, "test-only crash points armed");
    }
    let dir = settings.data_dir.clone();
    bootstrap::ensure_data_dir(&dir)?;
    let ca = bootstrap::load_or_create_ca(&dir, now)?;
    let (cert_chain, key) =
        bootstrap::load_or_issue_server_cert(&dir, &ca, &settings.hostnames, now)?;
    let tls_config = tls::server_config_at(&cert_chain, &key, ca.cert_pem(), Arc::clone(&clock))?;
    let store = bootstrap::open_store(
        settings.database.as_deref(),
        &dir,
        settings.database_timeout,
    )
    .await?;
    let first_tokens = bootstrap::ensure_first_tokens(store.as_ref(), &dir, now).await?;
    let federated = match &settings.federated {
        Some(f) => Some(federated::FederatedAuth::load(f, Arc::clone(&clock))?),
        None => None,
    };

    let (listener, local_addr) = net::bind(settings.listen, settings.reuse_port)
        .await
        .map_err(|source| Error::Bind {
            addr: settings.listen,
            source,
        })?;
    let public_url = public_url(&settings, local_addr);
    let mut state = AppState::new(store, Arc::new(ca), settings, clock, public_url.clone());
    if let Some(f) = federated {
        state = state.with_federated(f);
    }
    if let Some(o) = state.settings.oidc.clone() {
        let config = oidc::ClientConfig {
            issuer: o.issuer,
            client_id: o.client_id,
            client_secret: o.client_secret,
            redirect_uri: format!("{}{}", state.public_url, service::openid::CALLBACK_PATH),
        };
        let client = oidc::Client::new(config, Arc::clone(&state.clock))?;
        state = state.with_openid(client);
    }
    let (metrics_addr, metrics) = match state.settings.metrics_listen {
        Some(addr) => {
            let (bound, serve) = metrics_listener(addr, state.clone()).await?;
            (Some(bound), Some(serve))
        }
        None => (None, None),
    };
    let serving = net::Serving {
        tls: tls_config,
        app: app(state.clone()),
        limits: state.settings.connections,
        exempt: state.settings.trusted_proxies.clone(),
        metrics: Arc::clone(&state.metrics),
    };
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let metrics = async {
            match metrics {
                Some(serve) => serve.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = net::serve(listener, serving) => {}
            () = metrics => {}
            _ = shutdown_rx => {}
        }
    });
    let worker = worker::spawn(state.clone());
    let push = state.push.clone().map(|pusher| {
        push::spawn(
            state.store.clone(),
            state.clock.clone(),
            state.settings.worker_interval,
            pusher,
        )
    });
    tracing::info!(%local_addr, %public_url, data_dir = %dir.display(), "server started");
    Ok(RunningServer {
        local_addr,
        metrics_addr,
        public_url,
        ca_cert_path: dir.join(bootstrap::CA_CERT),
        admin_token_path: dir.join(bootstrap::ADMIN_TOKEN),
        enrollment_token_path: dir.join(bootstrap::ENROLLMENT_TOKEN),
        data_dir: dir,
        first_tokens,
        state,
        shutdown: Some(shutdown_tx),
        task: Some(task),
        worker,
        push,
    })
}

/// Binds `metrics_listen`: its address, and the future serving [`app::metrics_only`] on it
/// (plain HTTP), run beside the main listener until the server stops.
async fn metrics_listener(
    addr: SocketAddr,
    state: AppState,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let router = app::metrics_only(state);
    tracing::info!(%bound, "metrics listener (plain HTTP, /metrics only)");
    Ok((bound, async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::warn!(%err, "the metrics listener stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_prefers_setting_then_hostname_then_listen() {
        let bound: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let mut s = Settings::default();
        assert_eq!(public_url(&s, bound), "https://localhost:8443");
        assert_eq!(
            public_url(&s, "127.0.0.1:9000".parse().unwrap()),
            "https://127.0.0.1:9000"
        );
        s.hostnames = vec!["mdm.example.org".into()];
        assert_eq!(public_url(&s, bound), "https://mdm.example.org:8443");
        s.public_url = Some("https://mdm.example.org/".into());
        assert_eq!(public_url(&s, bound), "https://mdm.example.org");
    }
}
