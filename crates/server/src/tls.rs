//! TLS with optional mutual authentication: one port serves enrollment (no client certificate
//! yet) and management (the device's CA-issued client certificate); `crate::net` accepts the
//! connections and hands the verified peer certificate ([`PeerCertificate`]) to handlers.

use std::sync::Arc;

use redeploy_core::Clock;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::time_provider::TimeProvider;
use rustls::{RootCertStore, ServerConfig};

mod chain_cache;

/// The client certificate a device presented during the TLS handshake, already verified against
/// our CA by rustls. `None` when the client sent none (enrollment, the console, the API).
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<CertificateDer<'static>>);

/// Errors while building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading PEM: {0}")]
    Pem(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The handshake's cryptography: aws-lc-rs, whose ECDSA P-256 and X25519 cost a check-in less
/// CPU than ring's, with the TLS 1.3 suites on SHA-256 first (docs/benchmarks.md, session 15):
/// a full handshake hashes its transcript and derives its keys (HKDF, a few dozen HMACs) with
/// the suite's hash, and SHA-256 runs on the CPU's SHA extensions where SHA-384 has none — it
/// was 7 % of the server's CPU with TLS_AES_256_GCM_SHA384, the suite rustls and Windows list
/// first. AES-128-GCM is as strong a choice for TLS 1.3 (RFC 8446 §9.1 makes it the one suite
/// every implementation must have).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Parse all certificates in a PEM string.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))
}

/// Parse the first private key in a PEM string.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Pem("no private key found".into()),
        e => TlsError::Pem(e.to_string()),
    })
}

/// The server's [`Clock`] as rustls' notion of "now", so a client certificate's validity is
/// judged on the same clock as everything else (the system clock in production; a test's
/// manual clock lets a PC live through several certificate lifetimes in a second).
#[derive(Clone)]
struct ClockTime(Arc<dyn Clock>);

impl std::fmt::Debug for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockTime")
    }
}

impl TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        let secs = u64::try_from(self.0.now().unix_timestamp()).ok()?;
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            secs,
        )))
    }
}

/// [`server_config_at`] on the system clock.
pub fn server_config(
    cert_chain_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_at(
        cert_chain_pem,
        key_pem,
        client_ca_pem,
        Arc::new(redeploy_core::SystemClock),
    )
}

/// Server TLS configuration: our server certificate, and client certificates *optionally*
/// verified against `client_ca_pem` (the device CA), their validity judged at `clock`'s now.
/// Offers h2 and http/1.1; Windows' OMA-DM client speaks HTTP/1.1 (fixture headers), some
/// captures show HTTP/2.
pub fn server_config_at(
    cert_chain_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
    clock: Arc<dyn Clock>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(client_ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = Arc::new(chain_cache::CachedChains::new(webpki, Arc::default()));
    let mut config = ServerConfig::builder_with_details(provider, Arc::new(ClockTime(clock)))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs_from_pem(cert_chain_pem)?, key_from_pem(key_pem)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Our order of suites, not the client's (see `provider`).
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}
