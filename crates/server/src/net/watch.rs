//! When a connection has waited too long for a request: the header-read and idle timeouts.
//!
//! hyper's own `http1().header_read_timeout` cannot tell the two apart: its timer starts when
//! the connection begins waiting for the next request head (hyper 1.x `proto/h1/conn.rs`,
//! `poll_read_head`), so a keep-alive connection between requests would get the header-read
//! limit as its idle limit. So the connection's bytes and requests are watched here
//! ([`Watched`], [`Activity`]) and a pure rule ([`judge`]) says when to close it:
//!
//! - HTTP/1.1: a request head that began arriving (its first byte, or for the first request the
//!   end of the TLS handshake) must be complete within `header_read_timeout` — a client
//!   trickling a header a byte at a time (slowloris) is closed then; with no request in flight
//!   and no head begun, the connection is closed after `idle_timeout` without a byte either
//!   way (a response the client reads slowly keeps it open while it moves).
//! - HTTP/2 (client frames such as PING would otherwise keep an unused connection forever): the
//!   first request must come within `header_read_timeout` of the handshake, and a connection
//!   with no request in flight is closed `idle_timeout` after its last request ended.
//!
//! A request in flight is never cut here: its time is bounded by `request_timeout`
//! (`crate::app`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// "No instant" in an [`Activity`] field.
const NONE: u64 = u64::MAX;

/// The HTTP version a connection speaks (from ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Why a connection was closed (the label on `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    HeaderRead,
    Idle,
}

impl Timeout {
    /// `redeploy_connections_closed_total{timeout}`.
    pub fn label(self) -> &'static str {
        match self {
            Timeout::HeaderRead => "header_read",
            Timeout::Idle => "idle",
        }
    }
}

/// The two limits [`judge`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
}

/// What a connection has done, as times since it started (after the TLS handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests handed to the application and not answered yet.
    pub in_flight: usize,
    /// Whether any request was handed over yet.
    pub served_any: bool,
    /// Since when no request has been in flight (0: since the start).
    pub quiet_since: Duration,
    /// HTTP/1.1: when the head now expected began (its first byte; 0 for the first request);
    /// `None` while none has begun.
    pub head_since: Option<Duration>,
    /// The last byte read or written.
    pub last_byte: Duration,
}

/// What to do with a connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Look again when the connection changes (a request is in flight).
    WaitForChange,
    /// Look again at this time since the start, or sooner if the connection changes.
    WaitUntil(Duration),
    /// Close it.
    Close(Timeout),
}

/// The rule of this module (see its documentation), at `now` since the connection started.
pub fn judge(s: &Snapshot, protocol: Protocol, limits: Limits, now: Duration) -> Verdict {
    if s.in_flight > 0 {
        return Verdict::WaitForChange;
    }
    let (deadline, timeout) = match (protocol, s.head_since) {
        (Protocol::Http1, Some(since)) => (since + limits.header_read, Timeout::HeaderRead),
        (Protocol::Http1, None) => (s.quiet_since.max(s.last_byte) + limits.idle, Timeout::Idle),
        (Protocol::Http2, _) if !s.served_any => (limits.header_read, Timeout::HeaderRead),
        (Protocol::Http2, _) => (s.quiet_since + limits.idle, Timeout::Idle),
    };
    if now >= deadline {
        Verdict::Close(timeout)
    } else {
        Verdict::WaitUntil(deadline)
    }
}

/// The live counterpart of [`Snapshot`], updated by [`Watched`] and [`InFlight`] (times in
/// milliseconds since `started`).
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    quiet_since: AtomicU64,
    head_since: AtomicU64,
    last_byte: AtomicU64,
    /// Woken when a deadline may have moved earlier (a head began) or a request ended.
    changed: Notify,
}

impl Activity {
    /// A connection whose TLS handshake just ended: waiting for its first request.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            quiet_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            last_byte: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The instant `since` after the start.
    pub fn instant(&self, since: Duration) -> Instant {
        self.started + since
    }

    /// What the connection has done so far.
    pub fn snapshot(&self) -> Snapshot {
        let at = |v: &AtomicU64| match v.load(Ordering::Acquire) {
            NONE => None,
            ms => Some(Duration::from_millis(ms)),
        };
        Snapshot {
            in_flight: self.in_flight.load(Ordering::Acquire),
            served_any: self.served.load(Ordering::Acquire) > 0,
            quiet_since: at(&self.quiet_since).unwrap_or_default(),
            head_since: at(&self.head_since),
            last_byte: at(&self.last_byte).unwrap_or_default(),
        }
    }

    /// Waits until [`Self::snapshot`] may give another verdict.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn bytes_read(&self) {
        let now = self.millis();
        self.last_byte.store(now, Ordering::Release);
        // With no request in flight, these bytes begin the next request's head.
        if self.in_flight.load(Ordering::Acquire) == 0
            && self
                .head_since
                .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn bytes_written(&self) {
        self.last_byte.store(self.millis(), Ordering::Release);
    }

    /// The application got a request (its head is complete); in flight until the guard drops.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        InFlight(Arc::clone(self))
    }
}

/// A request in flight; dropping it (answered, or abandoned with its connection) ends it.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity
                .quiet_since
                .store(activity.millis(), Ordering::Release);
            activity.changed.notify_one();
        }
    }
}

/// A connection's byte stream (above TLS: HTTP bytes only) that tells its [`Activity`] when
/// bytes move.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn fresh() -> Snapshot {
        Snapshot {
            in_flight: 0,
            served_any: false,
            quiet_since: s(0),
            head_since: Some(s(0)),
            last_byte: s(0),
        }
    }

    #[test]
    fn http1_rules() {
        use Verdict::*;
        let between_requests = Snapshot {
            served_any: true,
            quiet_since: s(5),
            head_since: None,
            last_byte: s(6),
            ..fresh()
        };
        let trickling = Snapshot {
            head_since: Some(s(70)),
            last_byte: s(79),
            ..between_requests
        };
        let table = [
            // (snapshot, now, verdict)
            (fresh(), s(9), WaitUntil(s(10))),
            (fresh(), s(10), Close(Timeout::HeaderRead)),
            (
                Snapshot {
                    last_byte: s(9),
                    ..fresh()
                },
                s(10),
                Close(Timeout::HeaderRead),
            ),
            (
                Snapshot {
                    in_flight: 1,
                    ..fresh()
                },
                s(500),
                WaitForChange,
            ),
            // The last byte written (a response being read) counts from the end of the request.
            (between_requests, s(65), WaitUntil(s(66))),
            (between_requests, s(66), Close(Timeout::Idle)),
            // Bytes every second do not keep a head from timing out.
            (trickling, s(79), WaitUntil(s(80))),
            (trickling, s(80), Close(Timeout::HeaderRead)),
        ];
        for (i, (snapshot, now, verdict)) in table.into_iter().enumerate() {
            assert_eq!(
                judge(&snapshot, Protocol::Http1, LIMITS, now),
                verdict,
                "row {i}"
            );
        }
    }

    #[test]
    fn http2_rules() {
        use Verdict::*;
        let unused = Snapshot {
            last_byte: s(9),
            ..fresh()
        };
        assert_eq!(
            judge(&unused, Protocol::Http2, LIMITS, s(10)),
            Close(Timeout::HeaderRead),
            "frames without a request do not keep it open"
        );
        let between = Snapshot {
            served_any: true,
            quiet_since: s(30),
            head_since: None,
            last_byte: s(89),
            ..fresh()
        };
        assert_eq!(
            judge(&between, Protocol::Http2, LIMITS, s(89)),
            WaitUntil(s(90))
        );
        assert_eq!(
            judge(&between, Protocol::Http2, LIMITS, s(90)),
            Close(Timeout::Idle),
            "pings do not keep it open either"
        );
    }

    #[tokio::test]
    async fn activity_follows_heads_and_requests() {
        let a = Activity::new();
        assert_eq!(a.snapshot().head_since, Some(Duration::ZERO));
        let request = a.request_started();
        let snap = a.snapshot();
        assert_eq!((snap.in_flight, snap.head_since), (1, None));
        a.bytes_read();
        assert_eq!(
            a.snapshot().head_since,
            None,
            "a body's bytes begin no head"
        );
        drop(request);
        a.changed().await;
        let snap = a.snapshot();
        assert_eq!((snap.in_flight, snap.served_any), (0, true));
        a.bytes_read();
        a.changed().await;
        assert!(a.snapshot().head_since.is_some(), "the next head began");
    }
}
