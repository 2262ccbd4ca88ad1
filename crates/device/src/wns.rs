//! A stand-in for Windows Push Notification Services (WNS), so that tests and demos push to
//! emulated PCs without a Microsoft Store app: the token endpoint and channel endpoints over
//! plain HTTP on a local address (the server allows it with a `channel_hosts` entry
//! `http://host:port`). It checks what Microsoft's "Push notification service request and
//! response headers" asks of a sender: a form POST with `grant_type=client_credentials`,
//! `client_id`, `client_secret` and `scope=notify.windows.com` gets a bearer token; a raw
//! notification is a POST to the channel with that token, `X-WNS-Type: wns/raw` and
//! `Content-Type: application/octet-stream`, answered 200 — or 401 for a token it did not
//! issue (or revoked), or whatever a test scripted (410 Gone, 406 throttled).
//!
//! A PC's channel is `<base>/channel/<pc id>`; a notification to it marks the PC pushed and
//! wakes it ([`StandInWns::register`], [`StandInWns::take_pushed`]): the emulated PC then
//! checks in at once, as Windows starts an OMA-DM session on a raw notification
//! (ITPRO push-notification-windows-mdm.md).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, Notify};

/// One raw notification the stand-in accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The `<pc id>` of the channel.
    pub channel: String,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Shared {
    issued: u32,
    /// The token a notification must carry; `None` until one was issued or after a revoke.
    valid: Option<String>,
    /// Answers for the next channel POSTs, before the normal ones.
    script: VecDeque<u16>,
    pushed: HashSet<String>,
    wakers: HashMap<String, Arc<Notify>>,
    posts: u32,
}

/// A running stand-in WNS (stops when dropped).
pub struct StandInWns {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    notifications: tokio::sync::Mutex<mpsc::UnboundedReceiver<Notification>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for StandInWns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandInWns")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for StandInWns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl StandInWns {
    /// Listens on `addr` (port 0 for any).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let serving = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (shared, tx) = (Arc::clone(&serving), tx.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (shared, tx) = (Arc::clone(&shared), tx.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer(req, &shared, &tx).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            shared,
            notifications: tokio::sync::Mutex::new(rx),
            task,
        })
    }

    /// `http://host:port`: the base of every URL, and the server's `channel_hosts` entry.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's `token_url`.
    pub fn token_url(&self) -> String {
        format!("{}/accesstoken.srf", self.base_url())
    }

    /// The channel URI of the PC `id`.
    pub fn channel_uri(&self, id: &str) -> String {
        channel_uri(&self.base_url(), id)
    }

    /// Wakes `woken` whenever PC `id`'s channel gets a notification.
    pub fn register(&self, id: &str, woken: Arc<Notify>) {
        lock(&self.shared).wakers.insert(id.to_owned(), woken);
    }

    /// Whether PC `id` was pushed since it last asked (and forgets it).
    pub fn take_pushed(&self, id: &str) -> bool {
        lock(&self.shared).pushed.remove(id)
    }

    /// The next channel POSTs are answered with these statuses, in order (e.g. 410).
    pub fn answer_next(&self, statuses: &[u16]) {
        lock(&self.shared).script.extend(statuses);
    }

    /// Every token issued so far stops being valid (the next notification gets 401).
    pub fn revoke_tokens(&self) {
        lock(&self.shared).valid = None;
    }

    /// How many tokens were issued.
    pub fn tokens_issued(&self) -> u32 {
        lock(&self.shared).issued
    }

    /// How many notifications were posted (whatever the answer).
    pub fn posts(&self) -> u32 {
        lock(&self.shared).posts
    }

    /// Waits for the next notification the stand-in accepted (200).
    pub async fn next_notification(&self) -> Option<Notification> {
        self.notifications.lock().await.recv().await
    }
}

/// `<base>/channel/<id>`.
pub fn channel_uri(base: &str, id: &str) -> String {
    format!("{}/channel/{id}", base.trim_end_matches('/'))
}

fn reply(status: u16, body: &str) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if body.starts_with('{') {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    r
}

async fn answer(
    req: http::Request<Incoming>,
    shared: &Mutex<Shared>,
    tx: &mpsc::UnboundedSender<Notification>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(400, ""),
    };
    if parts.method != http::Method::POST {
        return reply(405, "");
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let path = parts.uri.path();
    if path == "/accesstoken.srf" {
        let form: HashMap<String, String> = String::from_utf8_lossy(&body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let ok = field("grant_type") == "client_credentials"
            && field("scope") == "notify.windows.com"
            && !field("client_id").is_empty()
            && !field("client_secret").is_empty();
        if !ok {
            return reply(400, r#"{"error":"invalid_request"}"#);
        }
        let mut s = lock(shared);
        s.issued += 1;
        let token = format!("stand-in-token-{}", s.issued);
        s.valid = Some(token.clone());
        return reply(
            200,
            &format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":86400}}"#),
        );
    }
    let Some(channel) = path.strip_prefix("/channel/").filter(|c| !c.is_empty()) else {
        return reply(404, "");
    };
    let mut s = lock(shared);
    s.posts += 1;
    let bearer = header("authorization");
    let authorized = s
        .valid
        .as_ref()
        .is_some_and(|t| bearer == format!("Bearer {t}"));
    if !authorized {
        return reply(401, "");
    }
    if header("x-wns-type") != "wns/raw" || header("content-type") != "application/octet-stream" {
        return reply(400, "");
    }
    if let Some(status) = s.script.pop_front() {
        return reply(status, "");
    }
    s.pushed.insert(channel.to_owned());
    if let Some(w) = s.wakers.get(channel) {
        w.notify_one();
    }
    let _ = tx.send(Notification {
        channel: channel.to_owned(),
        at: std::time::Instant::now(),
    });
    reply(200, "")
}
