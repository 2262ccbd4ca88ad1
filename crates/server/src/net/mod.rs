//! The listener: accepts TCP connections, admits them under the connection caps
//! ([`caps`]), runs the TLS handshake under its timeout, and serves HTTP on each with the
//! header-read and idle timeouts ([`watch`]); `accept()` failures back off ([`backoff`]).
//! Handlers get the verified client certificate ([`PeerCertificate`]) and the peer address
//! (`axum::extract::ConnectInfo`) as request extensions. Issue #14 item 1: idle and slow
//! connections used to be held forever, and a full file-descriptor table made the loop spin.

pub mod backoff;
pub mod caps;
pub mod watch;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::settings::ConnectionLimits;
use crate::tls::PeerCertificate;
use backoff::AcceptBackoff;
use caps::{Admission, ConnectionCaps};
use watch::{Activity, Protocol, Verdict, Watched};

/// Everything the listener needs besides the socket.
#[derive(Clone)]
pub struct Serving {
    pub tls: Arc<ServerConfig>,
    pub app: Router,
    pub limits: ConnectionLimits,
    /// Addresses exempt from the per-client cap (the trusted reverse proxies).
    pub exempt: Vec<IpAddr>,
    pub metrics: Arc<Metrics>,
}

/// Bind `addr` (port 0 picks a free port) and return the listener with its real address.
/// `reuse_port` sets `SO_REUSEPORT` first (Linux: every process binding the address with it
/// gets its own accept queue and the kernel hashes new connections over them), so several
/// `serve` processes on one database share one address without a proxy.
pub async fn bind(
    addr: SocketAddr,
    reuse_port: bool,
) -> std::io::Result<(TcpListener, SocketAddr)> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    if reuse_port {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "reuse_port needs SO_REUSEPORT (Linux, BSD, macOS)",
        ));
    }
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Accepts connections on `listener` forever. A connection over a cap is closed as soon as it
/// is accepted (it never waits in the kernel's backlog, where its client could only time out);
/// a failed or slow handshake, a slow header or an idle connection ends only that connection.
pub async fn serve(listener: TcpListener, serving: Serving) {
    let acceptor = TlsAcceptor::from(Arc::clone(&serving.tls));
    let caps = ConnectionCaps::new(
        serving.limits.max_connections,
        serving.limits.max_connections_per_ip,
        &serving.exempt,
    );
    let mut backoff = AcceptBackoff::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => {
                backoff.succeeded();
                conn
            }
            Err(err) => {
                serving.metrics.record_accept_error();
                let next = backoff.failed(Instant::now());
                if let Some(suppressed) = next.log {
                    // `suppressed`: failures since the previous line that were not logged.
                    tracing::warn!(
                        %err,
                        pause_ms = next.pause.as_millis() as u64,
                        suppressed,
                        "accept failed; pausing before accepting again"
                    );
                }
                tokio::time::sleep(next.pause).await;
                continue;
            }
        };
        let admission = match caps.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(refusal) => {
                serving.metrics.record_connection_refused(refusal.label());
                tracing::debug!(%peer, cap = refusal.label(), "connection refused over a cap");
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(
            Accepted {
                tcp,
                peer,
                admission,
            },
            acceptor.clone(),
            serving.app.clone(),
            serving.limits,
            Arc::clone(&serving.metrics),
        ));
    }
}

/// A connection the caps admitted.
struct Accepted {
    tcp: TcpStream,
    peer: SocketAddr,
    admission: Admission,
}

/// One admitted connection, from the handshake to its end.
async fn connection(
    accepted: Accepted,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
) {
    let Accepted {
        tcp,
        peer,
        admission,
    } = accepted;
    metrics.connection_opened();
    let _open = OpenConnection {
        _admission: admission,
        metrics: Arc::clone(&metrics),
    };
    let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%err, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics.record_connection_closed("tls_handshake");
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let session = tls.get_ref().1;
    let protocol = match session.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    let peer_cert = PeerCertificate(
        session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.clone().into_owned()),
    );
    let activity = Activity::new();
    let requests = Arc::clone(&activity);
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let in_flight = requests.request_started();
            req.extensions_mut().insert(peer_cert.clone());
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let answer = app.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let response = answer.await;
                drop(in_flight);
                response
            }
        });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(
        TokioIo::new(Watched::new(tls, Arc::clone(&activity))),
        service,
    );
    tokio::pin!(conn);
    let timeouts = watch::Limits {
        header_read: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    loop {
        let verdict = watch::judge(&activity.snapshot(), protocol, timeouts, activity.now());
        let ended = match verdict {
            Verdict::Close(timeout) => {
                // Dropping the connection closes the socket; no request is in flight.
                metrics.record_connection_closed(timeout.label());
                tracing::debug!(%peer, timeout = timeout.label(), "connection closed");
                return;
            }
            Verdict::WaitForChange => tokio::select! {
                ended = conn.as_mut() => Some(ended),
                () = activity.changed() => None,
            },
            Verdict::WaitUntil(at) => tokio::select! {
                ended = conn.as_mut() => Some(ended),
                () = activity.changed() => None,
                () = tokio::time::sleep_until(activity.instant(at)) => None,
            },
        };
        if let Some(ended) = ended {
            if let Err(err) = ended {
                tracing::debug!(%err, %peer, "connection ended with an error");
            }
            return;
        }
    }
}

/// An admitted connection as the caps and `/metrics` count it, until it is dropped.
struct OpenConnection {
    /// Held for its `Drop`: gives the connection's place back to the caps.
    _admission: Admission,
    metrics: Arc<Metrics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connection_ended();
    }
}
