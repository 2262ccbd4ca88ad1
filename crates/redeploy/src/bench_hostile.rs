//! `redeploy bench --hostile SECONDS`: after the steady load, hostile sessions from enrolled PCs
//! (truncated and garbage SyncML, deep nesting, bodies at and over the size limit) and from
//! strangers (garbage enrollment SOAP), then normal sessions again and a quiet pause, with the
//! server's resident memory read at each step: the numbers of issue #14 item 4.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device::transport::{Identity, Transport};
use device::HttpsTransport;
use tokio::sync::Mutex;

/// One hostile request, by number: what it sends.
fn hostile_body(n: u64, limit: usize) -> (&'static str, Vec<u8>) {
    match n % 6 {
        0 => (
            "garbage",
            (0..4096u32).map(|i| (i * 31 + n as u32) as u8).collect(),
        ),
        1 => (
            "truncated SyncML",
            b"<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD><Ses".to_vec(),
        ),
        2 => ("deep nesting", {
            let depth = 20_000;
            let mut v = Vec::with_capacity(depth * 7);
            v.extend(b"<SyncML>".iter());
            for _ in 0..depth {
                v.extend(b"<a>".iter());
            }
            v
        }),
        3 => ("at the size limit", {
            let mut v = b"<SyncML><SyncBody><Data>".to_vec();
            v.resize(limit.saturating_sub(64), b'x');
            v
        }),
        4 => ("over the size limit", vec![b'<'; limit + 1024]),
        _ => ("many elements", {
            let mut v = b"<SyncML><SyncBody>".to_vec();
            for i in 0..20_000 {
                v.extend(format!("<Status><CmdID>{i}</CmdID></Status>").bytes());
            }
            v
        }),
    }
}

/// What the hostile phase did.
pub struct HostileReport {
    /// Requests sent, and how many got an answer (any status) rather than a transport error.
    pub sent: u64,
    pub answered: u64,
    /// Answers with a 5xx status that is not a SOAP fault (SOAP 1.2 sends its faults with 500;
    /// those are refusals): a hostile input must never make the server fail.
    pub server_errors: u64,
}

/// Sends hostile requests for `duration` from `concurrency` workers: PCs' identities from
/// `identities` (management endpoint), and no identity (enrollment endpoint).
pub async fn run(
    transport: Arc<HttpsTransport>,
    base: &str,
    identities: Vec<(String, Identity)>,
    duration: Duration,
    concurrency: usize,
    limit: usize,
) -> HostileReport {
    let counter = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let server_errors = Arc::new(AtomicU64::new(0));
    let identities = Arc::new(Mutex::new(identities));
    let deadline = Instant::now() + duration;
    let enroll_url = format!("{base}/EnrollmentServer/Enrollment.svc");
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (transport, counter, answered, server_errors, identities, enroll_url) = (
            transport.clone(),
            counter.clone(),
            answered.clone(),
            server_errors.clone(),
            identities.clone(),
            enroll_url.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let (_, body) = hostile_body(n, limit);
                let answer = if n % 7 == 6 {
                    transport
                        .post(
                            &enroll_url,
                            "application/soap+xml; charset=utf-8",
                            body,
                            None,
                        )
                        .await
                } else {
                    let (url, identity) = {
                        let ids = identities.lock().await;
                        ids[n as usize % ids.len()].clone()
                    };
                    transport
                        .post(&url, "application/vnd.syncml.dm+xml", body, Some(&identity))
                        .await
                };
                if let Ok(r) = answer {
                    answered.fetch_add(1, Ordering::Relaxed);
                    let soap_fault = r.content_type.contains("soap")
                        && String::from_utf8_lossy(&r.body).contains(":Fault>");
                    if r.status >= 500 && !soap_fault {
                        server_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    HostileReport {
        sent: counter.load(Ordering::Relaxed),
        answered: answered.load(Ordering::Relaxed),
        server_errors: server_errors.load(Ordering::Relaxed),
    }
}
