//! Shared server state handed to every handler: the store, the CA, the settings, the clock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use enroll::ca::CertificateAuthority;
use redeploy_core::{Clock, Store};

/// Typed server settings: defaults, then `redeploy.toml`, then `REDEPLOY_*`, then flags
/// (the binary builds this; the server only reads it).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTPS listener binds.
    pub listen: SocketAddr,
    /// Data folder: database (SQLite), CA, TLS certificate, first admin token.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` means `sqlite://<data_dir>/redeploy.db`.
    pub database: Option<String>,
    /// Extra DNS names for the TLS certificate and the URLs handed to devices.
    pub hostnames: Vec<String>,
    /// Base URL devices use to reach us (e.g. `https://mdm.example.org:8443`); derived from
    /// the first hostname and the listen port when not set.
    pub public_url: Option<String>,
    /// Largest request body accepted on any endpoint, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from("./redeploy-data"),
            database: None,
            hostnames: Vec::new(),
            public_url: None,
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ca: Arc<CertificateAuthority>,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    /// The base URL devices are told to use (discovery response, provisioning ADDR).
    pub public_url: String,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}
