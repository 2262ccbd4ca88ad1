//! Reaching the server: one clear line when it cannot be reached (which URL, what failed, what
//! to check), and the retries of `--wait` while the server is down or restarting.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

/// How long `--wait` goes on trying while the server cannot be reached, counted from the first
/// failed call since the last answer (README, "Admin CLI").
pub(crate) const RECONNECT_FOR: Duration = Duration::from_secs(300);
/// The pause after the first failed call, doubled after each further one up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What kept a call from getting an answer.
enum Failure {
    /// Nothing listens there (the server is stopped, or another port).
    Refused,
    /// The TLS handshake failed: most often the server's certificate is not trusted.
    Tls(String),
    TimedOut,
    /// Anything else on the way (DNS, a cut connection): the innermost cause.
    Other(String),
}

/// The failure and the server's URL (scheme, host and port), when `err` is a call that never
/// got an answer rather than a refusal by the server.
fn failure(err: &api::Error) -> Option<(Failure, String)> {
    let api::Error::Http(http) = err else {
        return None;
    };
    let server = http
        .url()
        .map_or_else(|| "?".to_owned(), |u| u.origin().ascii_serialization());
    if http.is_timeout() {
        return Some((Failure::TimedOut, server));
    }
    // The causes, outermost first. An `io::Error`'s `source()` skips the error it wraps, and
    // tokio-rustls hands rustls' error over inside `io::Error`s (two deep through reqwest):
    // look inside each of those too.
    let mut innermost = http.to_string();
    let mut causes: Vec<&(dyn std::error::Error + 'static)> = vec![http];
    while let Some(e) = causes.pop() {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some((Failure::Tls(tls.to_string()), server));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some((Failure::Refused, server)),
                std::io::ErrorKind::TimedOut => return Some((Failure::TimedOut, server)),
                _ => {}
            }
            if let Some(inner) = io.get_ref() {
                causes.push(inner);
                continue;
            }
        }
        innermost = e.to_string();
        causes.extend(e.source());
    }
    Some((Failure::Other(innermost), server))
}

/// The one line that says the server could not be reached, when that is what `err` is: the URL,
/// what failed and what to check.
pub(crate) fn unreachable_line(err: &anyhow::Error) -> Option<String> {
    let (failure, server) = err
        .chain()
        .find_map(|e| e.downcast_ref::<api::Error>())
        .and_then(failure)?;
    let not_running = "is `redeploy serve` running there? Point the CLI at the right server \
                       with --server URL or REDEPLOY_SERVER";
    Some(match failure {
        Failure::Refused => {
            format!("cannot reach the server at {server}: connection refused; {not_running}")
        }
        Failure::Tls(detail) => format!(
            "cannot reach the server at {server}: the TLS handshake failed ({detail}); give the \
             CA certificate the server's certificate chains to with --ca-file FILE or \
             REDEPLOY_CA_FILE (the server writes it as redeploy-data/ca.pem)"
        ),
        Failure::TimedOut => format!(
            "cannot reach the server at {server}: no answer in time (timed out); is it up, and \
             reachable from here? (--server URL or REDEPLOY_SERVER)"
        ),
        Failure::Other(detail) => {
            format!("cannot reach the server at {server}: {detail}; {not_running}")
        }
    })
}

/// Whether `err` means the server could not be reached at all (so no other device or page is
/// worth trying either).
pub(crate) fn is_unreachable(err: &anyhow::Error) -> bool {
    unreachable_line(err).is_some()
}

/// Whether a retry may succeed: no answer (except a TLS refusal, which a retry does not mend),
/// or a gateway or a server saying it is not ready yet (502, 503, 504).
fn transient(err: &api::Error) -> bool {
    match err {
        api::Error::Problem { status, .. } => matches!(
            *status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        ),
        other => matches!(failure(other), Some((f, _)) if !matches!(f, Failure::Tls(_))),
    }
}

/// Polls with `call` for `--wait`, through a server that stops or restarts: a transient failure
/// is said on standard error and retried after 1 s, then 2, 4, 8 and every 10 s, for at most
/// [`RECONNECT_FOR`] in a row and never past `deadline`; then its error is returned. `say`
/// writes a line to standard error (around a progress bar, if one is drawn).
pub(crate) async fn with_reconnects<T, F, Fut>(
    server: &str,
    deadline: Instant,
    say: &dyn Fn(&str),
    mut call: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = api::client::Result<T>>,
{
    let mut down_since: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match call().await {
            Ok(answer) => {
                if down_since.is_some() {
                    say(&format!(
                        "redeploy: the server at {server} answers again; still waiting"
                    ));
                }
                return Ok(answer);
            }
            Err(err) if transient(&err) => {
                let since = *down_since.get_or_insert_with(Instant::now);
                let now = Instant::now();
                let down_for = now.duration_since(since);
                if down_for + backoff > RECONNECT_FOR || now + backoff > deadline {
                    let limit = if now + backoff > deadline {
                        "--timeout"
                    } else {
                        "the reconnection limit"
                    };
                    say(&format!(
                        "redeploy: gave up waiting ({limit}): the server at {server} did not \
                         answer for {} s",
                        down_for.as_secs()
                    ));
                    return Err(err.into());
                }
                let what = match failure(&err) {
                    Some((Failure::Refused, _)) => "connection refused".to_owned(),
                    Some((Failure::TimedOut, _)) => "timed out".to_owned(),
                    Some((Failure::Tls(detail) | Failure::Other(detail), _)) => detail,
                    None => err.to_string(),
                };
                say(&format!(
                    "redeploy: no answer from the server at {server} ({what}); retrying in {} s \
                     (giving up after {} s without an answer)",
                    backoff.as_secs(),
                    RECONNECT_FOR.as_secs()
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// [`with_reconnects`]'s `say` when no progress bar is drawn.
pub(crate) fn to_stderr(line: &str) {
    eprintln!("{line}");
}
