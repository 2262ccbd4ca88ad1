//! How the emulated PC reaches a server: the [`Transport`] trait (HTTPS for real runs, an
//! in-process router or a scripted replay for tests) and [`HttpsTransport`], which opens a new
//! TLS connection for every request as the Windows DM client does for every check-in, trusts
//! one CA and presents the PC's MDM client certificate when it has one.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::error::{DeviceError, Result};

/// Largest server answer the PC reads (SyncML or SOAP); bigger ones are refused.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The client certificate (chain) and private key the PC presents in the TLS handshake, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// One HTTP answer: status, `Content-Type` (empty when absent) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A request/response channel to the server. Implementations refuse bodies above
/// [`MAX_RESPONSE_BYTES`] with [`DeviceError::TooLarge`].
#[async_trait]
pub trait Transport: Send + Sync {
    /// `POST url` with `Content-Type: content_type`, presenting `client_identity` if given.
    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        client_identity: Option<&Identity>,
    ) -> Result<Response>;

    /// `GET url` (enrollment discovery).
    async fn get(&self, url: &str) -> Result<Response>;
}

/// How long one request may take, connection included, before the PC gives up on it (a server
/// that accepted the connection and never answers, e.g. a stopped process). INFERENCE: the
/// Windows DM client's own timeout is not documented; one minute keeps a hung server from
/// holding a PC (and its fleet slot) forever.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// HTTPS/1.1 on hyper + rustls (ring), one TLS connection per request.
#[derive(Clone)]
pub struct HttpsTransport {
    roots: Arc<RootCertStore>,
    anonymous: Arc<ClientConfig>,
    timeout: std::time::Duration,
    /// TLS configurations with a client certificate, built once per identity instead of on
    /// every request (parsing the PEM and the key is a good part of a client's handshake cost
    /// in `redeploy bench`); bounded, emptied when full.
    with_identity: Arc<std::sync::Mutex<IdentityConfigs>>,
}

/// The most client configurations [`HttpsTransport`] keeps (a large emulated fleet would
/// otherwise hold one per PC).
const MAX_IDENTITY_CONFIGS: usize = 1024;

/// Client configurations by a hash of the identity's PEM (certificate and key).
#[derive(Default)]
struct IdentityConfigs(std::collections::HashMap<u64, Arc<ClientConfig>>);

impl IdentityConfigs {
    fn key(identity: &Identity) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        hasher.hash_one((&identity.cert_pem, &identity.key_pem))
    }
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTransport")
            .field("roots", &self.roots.len())
            .finish()
    }
}

/// The User-Agent of the Windows OMA-DM client (fixture 09 headers).
pub const DM_USER_AGENT: &str = "MSFT OMA DM Client/1.2.0.1";
/// The User-Agent of the Windows enrollment client (fixture 01/03 headers).
pub const ENROLL_USER_AGENT: &str = "ENROLLClient";

impl HttpsTransport {
    /// Trusts the certificates in `ca_pem` (and only those).
    pub fn new(ca_pem: &str) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| DeviceError::Tls(format!("CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| DeviceError::Tls(format!("CA certificate: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(DeviceError::Tls("the CA file holds no certificate".into()));
        }
        let roots = Arc::new(roots);
        let anonymous = Arc::new(Self::config(&roots, None)?);
        Ok(HttpsTransport {
            with_identity: Arc::default(),
            roots,
            anonymous,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Gives up on a request after `timeout` (real time) instead of [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// [`Self::send_once`] within the request timeout; running out of time is a transport
    /// error like a dropped connection.
    async fn send(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        identity: Option<&Identity>,
    ) -> Result<Response> {
        tokio::time::timeout(
            self.timeout,
            self.send_once(method, url, content_type, body, identity),
        )
        .await
        .unwrap_or_else(|_| {
            Err(DeviceError::Connect(format!(
                "{url}: no answer within {} s",
                self.timeout.as_secs_f64()
            )))
        })
    }

    fn config(roots: &Arc<RootCertStore>, identity: Option<&Identity>) -> Result<ClientConfig> {
        // aws-lc-rs, as the server: the emulator is also the benchmark's load generator, on the
        // same cores as the server it measures (docs/benchmarks.md, session 15).
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DeviceError::Tls(e.to_string()))?
            .with_root_certificates(roots.clone());
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|e| DeviceError::Tls(format!("client certificate PEM: {e}")))?;
                let key: PrivateKeyDer<'static> =
                    PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).map_err(|e| match e {
                        pem::Error::NoItemsFound => {
                            DeviceError::Tls("client key PEM holds no key".into())
                        }
                        e => DeviceError::Tls(format!("client key PEM: {e}")),
                    })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| DeviceError::Tls(format!("client certificate: {e}")))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every connection is a full handshake, as a Windows PC's check-in is (and as before the
        // configurations were kept: a new one had an empty session cache).
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    /// The configuration presenting `identity`, from the cache or built and kept.
    fn config_for(&self, identity: &Identity) -> Result<Arc<ClientConfig>> {
        let key = IdentityConfigs::key(identity);
        if let Some(config) = self.lock_configs().0.get(&key) {
            return Ok(config.clone());
        }
        let config = Arc::new(Self::config(&self.roots, Some(identity))?);
        let mut configs = self.lock_configs();
        if configs.0.len() >= MAX_IDENTITY_CONFIGS {
            configs.0.clear();
        }
        configs.0.insert(key, config.clone());
        Ok(config)
    }

    fn lock_configs(&self) -> std::sync::MutexGuard<'_, IdentityConfigs> {
        // The map holds no invariant a panic could break: a poisoned lock is still usable.
        self.with_identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn send_once(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        identity: Option<&Identity>,
    ) -> Result<Response> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| DeviceError::Url(format!("{url}: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(DeviceError::Url(format!("{url}: only https is supported")));
        }
        let host = uri
            .host()
            .ok_or_else(|| DeviceError::Url(format!("{url}: no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let config = match identity {
            None => self.anonymous.clone(),
            Some(id) => self.config_for(id)?,
        };
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| DeviceError::Url(format!("{url}: {e}")))?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| DeviceError::Connect(format!("{host}:{port}: {e}")))?;
        let tls = TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| DeviceError::Tls(format!("handshake with {host}:{port}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| DeviceError::Connect(format!("HTTP/1.1 with {host}:{port}: {e}")))?;
        let conn = tokio::spawn(conn);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONNECTION, "close");
        let agent = if content_type == Some(syncml::codes::CONTENT_TYPE) {
            DM_USER_AGENT
        } else {
            ENROLL_USER_AGENT
        };
        req = req.header(http::header::USER_AGENT, agent);
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
            if ct == syncml::codes::CONTENT_TYPE {
                // As the Windows DM client sends them (fixture 09 headers).
                req = req
                    .header(
                        http::header::ACCEPT,
                        "application/vnd.syncml.dm+xml, application/vnd.syncml.dm+wbxml, application/octet-stream",
                    )
                    .header(http::header::ACCEPT_CHARSET, "UTF-8");
            }
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeviceError::Url(format!("{url}: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| DeviceError::Connect(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if let Some(len) = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > MAX_RESPONSE_BYTES {
                return Err(DeviceError::TooLarge {
                    size: len,
                    limit: MAX_RESPONSE_BYTES,
                });
            }
        }
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    DeviceError::TooLarge {
                        size: MAX_RESPONSE_BYTES + 1,
                        limit: MAX_RESPONSE_BYTES,
                    }
                } else {
                    DeviceError::Connect(format!("{url}: reading the answer: {e}"))
                }
            })?
            .to_bytes()
            .to_vec();
        conn.abort();
        Ok(Response {
            status,
            content_type,
            body,
        })
    }
}

#[async_trait]
impl Transport for HttpsTransport {
    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        client_identity: Option<&Identity>,
    ) -> Result<Response> {
        self.send(
            http::Method::POST,
            url,
            Some(content_type),
            body,
            client_identity,
        )
        .await
    }

    async fn get(&self, url: &str) -> Result<Response> {
        self.send(http::Method::GET, url, None, Vec::new(), None)
            .await
    }
}

/// An in-process transport over any HTTP `tower::Service` (an axum `Router` in tests): no TCP,
/// no TLS. The client certificate a real handshake would carry is put in the request's
/// extensions as a [`CertificateDer<'static>`] (the leaf of the identity's chain), where a server
/// handler that reads the TLS peer certificate from the same extension finds it.
#[derive(Debug, Clone)]
pub struct ServiceTransport<S> {
    service: S,
}

impl<S> ServiceTransport<S> {
    pub fn new(service: S) -> Self {
        ServiceTransport { service }
    }
}

impl<S, B> ServiceTransport<S>
where
    S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display,
    B: hyper::body::Body + Send,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async fn call(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        identity: Option<&Identity>,
    ) -> Result<Response> {
        use tower::ServiceExt;
        let uri: http::Uri = url
            .parse()
            .map_err(|e| DeviceError::Url(format!("{url}: {e}")))?;
        let mut req = http::Request::builder().method(method).uri(uri.clone());
        if let Some(authority) = uri.authority() {
            req = req.header(http::header::HOST, authority.as_str());
        }
        let agent = if content_type == Some(syncml::codes::CONTENT_TYPE) {
            DM_USER_AGENT
        } else {
            ENROLL_USER_AGENT
        };
        req = req.header(http::header::USER_AGENT, agent);
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let mut req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeviceError::Url(format!("{url}: {e}")))?;
        if let Some(id) = identity {
            let leaf = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                .next()
                .ok_or_else(|| {
                    DeviceError::Tls("client certificate PEM holds no certificate".into())
                })?
                .map_err(|e| DeviceError::Tls(format!("client certificate PEM: {e}")))?;
            req.extensions_mut().insert(leaf);
        }
        let resp = self
            .service
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| DeviceError::Connect(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    DeviceError::TooLarge {
                        size: MAX_RESPONSE_BYTES + 1,
                        limit: MAX_RESPONSE_BYTES,
                    }
                } else {
                    DeviceError::Connect(format!("{url}: reading the answer: {e}"))
                }
            })?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            content_type,
            body,
        })
    }
}

#[async_trait]
impl<S, B> Transport for ServiceTransport<S>
where
    S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display,
    B: hyper::body::Body + Send,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        client_identity: Option<&Identity>,
    ) -> Result<Response> {
        self.call(
            http::Method::POST,
            url,
            Some(content_type),
            body,
            client_identity,
        )
        .await
    }

    async fn get(&self, url: &str) -> Result<Response> {
        self.call(http::Method::GET, url, None, Vec::new(), None)
            .await
    }
}
