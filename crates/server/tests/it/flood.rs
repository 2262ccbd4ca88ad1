//! Connection floods (issue #14 item 1): idle TCP connections, TLS connections that never send
//! a request, slowloris clients trickling a header and idle keep-alive connections are each
//! closed within their timeout, while an emulated PC keeps checking in and `/healthz` answers;
//! past the per-client cap a client's connections are closed at once and other clients are
//! still served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use device::HttpsTransport;
use testkit::app::{spawn_app_with, Backend, TestApp};
use testkit::on_both_backends;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::api_v1::{enrolled_pc, now};

on_both_backends!(
    idle_and_slow_connections_are_cut_while_check_ins_go_on,
    connections_over_the_per_client_cap_are_refused_and_others_served,
);

/// The timeouts of the flood test: short, so the test is quick, and long enough that the PC
/// checks in while the whole flood is open.
const HANDSHAKE: Duration = Duration::from_secs(3);
const HEADER_READ: Duration = Duration::from_secs(3);
const IDLE: Duration = Duration::from_secs(4);
/// How late a close may come on a loaded test machine.
const MARGIN: Duration = Duration::from_secs(5);

fn tls_connector(app: &TestApp) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in server::tls::certs_from_pem(&app.ca_pem).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(app: &TestApp) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tls_connector(app).connect(name, tcp).await.unwrap()
}

/// Reads until the server closes the connection (end of stream or an error such as a reset or
/// a TLS stream cut without close_notify) and returns when, or panics after `limit`.
async fn closed_by_server(mut conn: impl AsyncRead + Unpin, limit: Duration) -> Instant {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Instant::now(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
        }
    }
}

/// Polls `/metrics`' counter until `done` holds, within `limit` (no sleeps as synchronisation:
/// each round is one request).
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One flood connection: opened at `since`, it must be closed by the server no sooner than
/// `timeout` (less a little: the server's clock starts a moment earlier) and no later than
/// `timeout` plus [`MARGIN`].
async fn cut_after(conn: impl AsyncRead + Unpin, since: Instant, timeout: Duration) -> Duration {
    let took = closed_by_server(conn, timeout + MARGIN).await - since;
    assert!(
        took + Duration::from_millis(250) >= timeout,
        "closed after {took:?}, before its {timeout:?}"
    );
    took
}

async fn idle_and_slow_connections_are_cut_while_check_ins_go_on(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.connections.tls_handshake_timeout = HANDSHAKE;
        s.connections.header_read_timeout = HEADER_READ;
        s.connections.idle_timeout = IDLE;
        // Every client of this test is 127.0.0.1.
        s.connections.max_connections_per_ip = 0;
    })
    .await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, _) = enrolled_pc(&app, &transport, "pc-flood", 41, None).await;
    let metrics = Arc::clone(&app.server().state.metrics);

    let mut flood = tokio::task::JoinSet::new();
    // 10 keep-alive connections left idle after one request: the idle timeout.
    for _ in 0..10 {
        let mut tls = tls_connect(&app).await;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 12];
        tls.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        let since = Instant::now();
        flood.spawn(async move { ("idle keep-alive", cut_after(tls, since, IDLE).await) });
    }
    // 50 slowloris clients: a request line, then a header byte every 100 ms, never ending it.
    for _ in 0..50 {
        let tls = tls_connect(&app).await;
        let since = Instant::now();
        let (reader, mut writer) = tokio::io::split(tls);
        let trickle = async move {
            let _ = writer
                .write_all(b"POST /ManagementServer/MDM.svc HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if writer.write_all(b"a").await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
        };
        flood.spawn(async move {
            tokio::select! {
                took = cut_after(reader, since, HEADER_READ) => ("slowloris", took),
                () = trickle => ("slowloris", since.elapsed()),
            }
        });
    }
    // 50 TLS connections that never send a request: the header-read timeout.
    for _ in 0..50 {
        let tls = tls_connect(&app).await;
        let since = Instant::now();
        flood.spawn(async move { ("silent TLS", cut_after(tls, since, HEADER_READ).await) });
    }
    // 300 TCP connections that never start TLS: the handshake timeout.
    for _ in 0..300 {
        let tcp = TcpStream::connect(app.addr).await.unwrap();
        let since = Instant::now();
        flood.spawn(async move { ("idle TCP", cut_after(tcp, since, HANDSHAKE).await) });
    }

    // Meanwhile the PC checks in and /healthz answers, again and again (a new connection each
    // time: a pooled one the server cut for idleness would fail the next request on the client).
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(app.ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut open_during_check_ins = Vec::new();
    let mut closed = std::collections::BTreeMap::<&str, Duration>::new();
    while !flood.is_empty() {
        testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
        let health = client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        open_during_check_ins.push(metrics.connections_open());
        while let Some(done) = flood.try_join_next() {
            let (kind, took) = done.unwrap();
            let latest = closed.entry(kind).or_default();
            *latest = (*latest).max(took);
        }
    }
    assert_eq!(closed.len(), 4, "{closed:?}");
    assert!(
        open_during_check_ins.iter().any(|&open| open >= 300),
        "no check-in while the flood was open: {open_during_check_ins:?}"
    );

    until(Duration::from_secs(5), "the closes to be counted", || {
        metrics.connections_closed("tls_handshake") >= 300
            && metrics.connections_closed("header_read") >= 100
            && metrics.connections_closed("idle") >= 10
    })
    .await;
    // Still serving after the flood.
    testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
}

async fn connections_over_the_per_client_cap_are_refused_and_others_served(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.connections.max_connections_per_ip = 5;
        // Long enough that the held connections stay open through the test.
        s.connections.tls_handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let metrics = Arc::clone(&app.server().state.metrics);
    let held: Vec<TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(TcpStream::connect(app.addr).await.unwrap());
        }
        v
    };
    until(Duration::from_secs(5), "5 open connections", || {
        metrics.connections_open() == 5
    })
    .await;

    // The sixth from 127.0.0.1 is closed at once.
    let sixth = TcpStream::connect(app.addr).await.unwrap();
    closed_by_server(sixth, Duration::from_secs(5)).await;
    assert_eq!(metrics.connections_refused("max_connections_per_ip"), 1);
    let refused = app.client().get(app.url("/healthz")).send().await;
    assert!(
        refused.is_err(),
        "an HTTPS request from the capped client is refused too"
    );

    // Another client address is served (Linux routes all of 127/8 to the loopback).
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let other = socket.connect(app.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tls_connector(&app).connect(name, other).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Under the cap again, 127.0.0.1 is served.
    drop(held);
    until(
        Duration::from_secs(5),
        "the held connections to close",
        || metrics.connections_open() == 0,
    )
    .await;
    let health = app.client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
