//! The HTTPS transport against a tiny rustls server in the test: the CA is trusted, the
//! client certificate is presented, a wrong CA is refused, every request is a new connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use device::transport::{HttpsTransport, Identity, Transport};
use device::DeviceError;
use enroll::ca::CertificateAuthority;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct TestServer {
    url: String,
    connections: Arc<AtomicUsize>,
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Answers every request with `cert=<thumbprint|none> ua=<User-Agent> ct=<Content-Type>
/// path=<path> body=<len>`.
async fn start(ca: &CertificateAuthority) -> TestServer {
    let (cert_pem, key_pem) = ca
        .issue_server_certificate(&[], OffsetDateTime::now_utc())
        .unwrap();
    let key: PrivateKeyDer<'static> = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pem_certs(&cert_pem), key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let thumb = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| enroll::ca::thumbprint(c))
                    .unwrap_or_else(|| "none".into());
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body_len) = loop {
                    let n = tls.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = text[..end].to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let n = tls.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, len);
                    }
                };
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                        })
                        .unwrap_or_default()
                };
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let body = format!(
                    "cert={thumb} ua={} ct={} path={path} body={body_len}",
                    header("user-agent"),
                    header("content-type")
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TestServer {
        url: format!("https://localhost:{port}"),
        connections,
    }
}

#[tokio::test]
async fn https_trusts_the_ca_presents_the_client_certificate_and_reconnects_each_time() {
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate("Test CA", now).unwrap();
    let server = start(&ca).await;
    let transport = HttpsTransport::new(ca.cert_pem()).unwrap();

    let got = transport
        .get(&format!("{}/EnrollmentServer/Discovery.svc", server.url))
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.content_type, "text/plain");
    let text = String::from_utf8(got.body).unwrap();
    assert!(text.starts_with("cert=none ua=ENROLLClient"), "{text}");
    assert!(
        text.contains("path=/EnrollmentServer/Discovery.svc"),
        "{text}"
    );

    let (key_pem, csr_der) = enroll::ca::new_device_key_and_csr("DEVICE-1").unwrap();
    let csr = enroll::ca::verify_csr(&csr_der).unwrap();
    let issued = ca
        .issue_device_certificate(&csr, "DEVICE-1", now, 30)
        .unwrap();
    let identity = Identity {
        cert_pem: issued.pem.clone(),
        key_pem,
    };
    let url = format!(
        "{}/ManagementServer/MDM.svc?mode=Machine&Platform=WoA",
        server.url
    );
    let posted = transport
        .post(
            &url,
            syncml::codes::CONTENT_TYPE,
            b"<SyncML/>".to_vec(),
            Some(&identity),
        )
        .await
        .unwrap();
    let text = String::from_utf8(posted.body).unwrap();
    assert_eq!(
        text,
        format!(
            "cert={} ua=MSFT OMA DM Client/1.2.0.1 ct=application/vnd.syncml.dm+xml \
             path=/ManagementServer/MDM.svc?mode=Machine&Platform=WoA body=9",
            issued.thumbprint
        )
    );
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        2,
        "one connection per request"
    );
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused() {
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate("Server CA", now).unwrap();
    let other = CertificateAuthority::generate("Some other CA", now).unwrap();
    let server = start(&ca).await;
    let transport = HttpsTransport::new(other.cert_pem()).unwrap();
    let err = transport
        .get(&format!("{}/EnrollmentServer/Discovery.svc", server.url))
        .await
        .unwrap_err();
    assert!(matches!(err, DeviceError::Tls(_)), "{err:?}");
}

#[test]
fn a_ca_file_without_certificates_is_rejected() {
    let err = HttpsTransport::new("not a certificate").unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
    let err = HttpsTransport::new("").unwrap_err();
    assert!(matches!(err, DeviceError::Tls(_)));
}

#[tokio::test]
async fn the_certificate_from_enrollment_is_what_the_pc_presents_on_check_in() {
    let now = OffsetDateTime::now_utc();
    let fake = crate::fake::FakeServer::new_at(crate::fake::Mdm::Idle, now);
    let mut pc = device::DeviceProfile::default().build_seeded("pc-0009", 9, now);
    device::client::enroll(
        &fake,
        &mut pc,
        &device::client::EnrollOptions {
            server: crate::fake::SERVER.into(),
            token: crate::fake::TOKEN.into(),
            issuer: None,
        },
        now,
    )
    .await
    .unwrap();
    let e = pc.mdm_enrollment.clone().unwrap();
    let server = start(&fake.ca).await;
    // The root the provisioning document installed is the CA the PC now trusts.
    let transport = HttpsTransport::new(&e.root_cert_pem).unwrap();
    let identity = Identity {
        cert_pem: e.client_cert_pem.clone(),
        key_pem: e.client_key_pem.clone(),
    };
    let got = transport
        .post(
            &device::client::check_in_url(&format!("{}/ManagementServer/MDM.svc", server.url)),
            syncml::codes::CONTENT_TYPE,
            Vec::new(),
            Some(&identity),
        )
        .await
        .unwrap();
    let text = String::from_utf8(got.body).unwrap();
    assert!(
        text.starts_with(&format!("cert={} ", e.thumbprint)),
        "{text}"
    );
}

#[tokio::test]
async fn in_process_service_transport_hands_the_client_certificate_to_the_handler() {
    use bytes::Bytes;
    use device::transport::ServiceTransport;
    use http_body_util::{BodyExt, Full};

    let service = tower::service_fn(|req: http::Request<Full<Bytes>>| async move {
        let cert = req
            .extensions()
            .get::<CertificateDer<'static>>()
            .map(|c| enroll::ca::thumbprint(c))
            .unwrap_or_else(|| "none".into());
        let path = req.uri().path_and_query().unwrap().to_string();
        let ct = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let len = req.into_body().collect().await.unwrap().to_bytes().len();
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .header(http::header::CONTENT_TYPE, "text/plain")
                .body(Full::new(Bytes::from(format!(
                    "cert={cert} ct={ct} path={path} body={len}"
                ))))
                .unwrap(),
        )
    });
    let transport = ServiceTransport::new(service);
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate("Test CA", now).unwrap();
    let (key_pem, csr_der) = enroll::ca::new_device_key_and_csr("DEVICE-2").unwrap();
    let csr = enroll::ca::verify_csr(&csr_der).unwrap();
    let issued = ca
        .issue_device_certificate(&csr, "DEVICE-2", now, 30)
        .unwrap();
    let identity = Identity {
        cert_pem: issued.pem.clone(),
        key_pem,
    };
    let got = transport
        .post(
            "https://mdm.example.test/ManagementServer/MDM.svc?mode=Machine&Platform=WoA",
            syncml::codes::CONTENT_TYPE,
            b"abc".to_vec(),
            Some(&identity),
        )
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        String::from_utf8(got.body).unwrap(),
        format!(
            "cert={} ct=application/vnd.syncml.dm+xml \
             path=/ManagementServer/MDM.svc?mode=Machine&Platform=WoA body=3",
            issued.thumbprint
        )
    );
    let anonymous = transport
        .get("https://mdm.example.test/EnrollmentServer/Discovery.svc")
        .await
        .unwrap();
    assert!(String::from_utf8(anonymous.body)
        .unwrap()
        .starts_with("cert=none"));
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_transport_error_after_the_timeout() {
    let ca = CertificateAuthority::generate("Test CA", OffsetDateTime::now_utc()).unwrap();
    // Accepts the connection and then says nothing (a stopped server process).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            open.push(tcp);
        }
    });
    let transport = HttpsTransport::new(ca.cert_pem())
        .unwrap()
        .with_timeout(std::time::Duration::from_millis(200));
    let err = transport
        .get(&format!(
            "https://127.0.0.1:{port}/EnrollmentServer/Discovery.svc"
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, DeviceError::Connect(_)), "{err}");
    assert!(err.to_string().contains("no answer within 0.2 s"), "{err}");
    held.abort();
    assert!(
        held.await.unwrap_err().is_cancelled(),
        "the listener is closed"
    );

    // Nothing listening: refused at once, the same kind of error.
    let refused = transport
        .get(&format!(
            "https://127.0.0.1:{port}/EnrollmentServer/Discovery.svc"
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), "connect", "{refused}");
}
