//! Waking PCs with Windows push notifications (WNS) when an action is queued: the dispatcher
//! task, the access-token cache and the HTTP client of WNS. The rules (which channel is good,
//! which attempt comes next, what an answer means for the channel) are `redeploy_core::push`.
//!
//! The wire follows Microsoft's "Push notification service request and response headers" and
//! "Windows Push Notification Services (WNS) overview": a form POST to the token endpoint
//! (`grant_type=client_credentials`, `client_id` = the package SID, `client_secret`,
//! `scope=notify.windows.com`) gives a bearer token; the notification is a POST to the PC's
//! channel URI with `Authorization: Bearer`, `X-WNS-Type: wns/raw` and
//! `Content-Type: application/octet-stream` (a raw notification: Windows ignores its payload
//! and starts an OMA-DM session, ITPRO push-notification-windows-mdm.md). Answers
//! ("Troubleshooting push notifications", WNS HTTP response codes): 200 accepted; 401 the token
//! is invalid or expired (fetch a new one, once); 404/410 the channel is not valid or expired
//! (the PC falls back to its poll until it reports a new channel); 406 throttled (429 treated
//! alike): back off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redeploy_core::push::{next_attempt, PushAttempt, PushOutcome};
use redeploy_core::{ActionId, Clock, DeviceId, Store};
use tokio::sync::{Mutex, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::settings::PushSettings;

/// How long one request to WNS may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Most pending actions one dispatch pass looks at.
const CANDIDATES_PER_PASS: u32 = 500;

/// An access token and how long WNS said it lives.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: Option<Duration>,
}

/// Why WNS could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum WnsError {
    /// No answer (connection, timeout) or an answer that is not what the doc says.
    #[error("{0}")]
    Transport(String),
    /// The token endpoint refused our credentials.
    #[error("token request refused with HTTP {0}")]
    TokenRefused(u16),
    /// The client secret file could not be read.
    #[error("client secret: {0}")]
    Secret(String),
}

/// The two requests of WNS: get a token, post a raw notification to a channel (its HTTP status).
#[async_trait]
pub trait Wns: Send + Sync {
    async fn request_token(&self) -> Result<AccessToken, WnsError>;
    async fn post_raw(&self, channel: &str, token: &str) -> Result<u16, WnsError>;
}

/// [`Wns`] over HTTPS with reqwest (rustls, the public web roots).
pub struct HttpWns {
    http: reqwest::Client,
    settings: PushSettings,
}

impl HttpWns {
    pub fn new(settings: PushSettings) -> Result<Self, WnsError> {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WnsError::Transport(e.to_string()))?;
        Ok(Self { http, settings })
    }

    fn secret(&self) -> Result<String, WnsError> {
        if let Some(secret) = &self.settings.client_secret {
            return Ok(secret.clone());
        }
        let path = self
            .settings
            .client_secret_file
            .as_ref()
            .ok_or_else(|| WnsError::Secret("none configured".into()))?;
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| WnsError::Secret(format!("{}: {e}", path.display())))
    }
}

#[async_trait]
impl Wns for HttpWns {
    async fn request_token(&self) -> Result<AccessToken, WnsError> {
        // "Access token request parameters": form-encoded, all four required.
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.settings.package_sid)
            .append_pair("client_secret", &self.secret()?)
            .append_pair("scope", "notify.windows.com")
            .finish();
        let answer = self
            .http
            .post(&self.settings.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| WnsError::Transport(e.to_string()))?;
        let status = answer.status().as_u16();
        if status != 200 {
            return Err(WnsError::TokenRefused(status));
        }
        let json: serde_json::Value = answer
            .json()
            .await
            .map_err(|e| WnsError::Transport(format!("token answer: {e}")))?;
        let token = json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| WnsError::Transport("token answer without access_token".into()))?;
        Ok(AccessToken {
            token: token.to_owned(),
            expires_in: json["expires_in"].as_u64().map(Duration::from_secs),
        })
    }

    async fn post_raw(&self, channel: &str, token: &str) -> Result<u16, WnsError> {
        let answer = self
            .http
            .post(channel)
            .bearer_auth(token)
            .header("X-WNS-Type", "wns/raw")
            .header("Content-Type", "application/octet-stream")
            // Keep it for a PC that is offline now (ITPRO push-notification-windows-mdm.md).
            .header("X-WNS-Cache-Policy", "cache")
            .header("X-WNS-TTL", self.settings.ttl.as_secs().to_string())
            .body(&b"redeploy: sync"[..])
            .send()
            .await
            .map_err(|e| WnsError::Transport(e.to_string()))?;
        Ok(answer.status().as_u16())
    }
}

/// Pushes through a [`Wns`] with a cached token (fetched again once on a 401) and wakes the
/// dispatcher when actions are queued.
pub struct Pusher {
    wns: Arc<dyn Wns>,
    token: Mutex<Option<(String, Option<Instant>)>>,
    wake: Notify,
    in_flight: Semaphore,
    lookback: Duration,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

impl Pusher {
    pub fn new(wns: Arc<dyn Wns>, settings: &PushSettings) -> Self {
        Self {
            wns,
            token: Mutex::new(None),
            wake: Notify::new(),
            in_flight: Semaphore::new(settings.max_in_flight.max(1)),
            lookback: settings.lookback,
        }
    }

    /// Over HTTPS to the configured endpoints.
    pub fn http(settings: &PushSettings) -> Result<Self, WnsError> {
        Ok(Self::new(
            Arc::new(HttpWns::new(settings.clone())?),
            settings,
        ))
    }

    /// Tells the dispatcher that actions were queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn token(&self, fresh: bool) -> Result<String, WnsError> {
        let mut cached = self.token.lock().await;
        if let (false, Some((token, until))) = (fresh, cached.as_ref()) {
            if until.is_none_or(|u| Instant::now() < u) {
                return Ok(token.clone());
            }
        }
        let got = self.wns.request_token().await?;
        // A minute's margin before WNS's own expiry.
        let until = got
            .expires_in
            .map(|e| Instant::now() + e.saturating_sub(Duration::from_secs(60)));
        *cached = Some((got.token.clone(), until));
        Ok(got.token)
    }

    /// Sends one raw notification to `channel`: what came of it.
    pub async fn push(&self, channel: &str) -> PushOutcome {
        let _permit = self.in_flight.acquire().await;
        let mut refreshed = false;
        loop {
            let token = match self.token(refreshed).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "no WNS access token");
                    return PushOutcome::Failed;
                }
            };
            match self.wns.post_raw(channel, &token).await {
                Ok(200) => return PushOutcome::Delivered,
                // The token expired or was revoked: one new token, one more try.
                Ok(401) if !refreshed => refreshed = true,
                Ok(404 | 410) => return PushOutcome::ChannelGone,
                Ok(406 | 429) => return PushOutcome::Throttled,
                Ok(status) => {
                    tracing::warn!(status, "WNS refused a notification");
                    return PushOutcome::Failed;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "WNS did not answer");
                    return PushOutcome::Failed;
                }
            }
        }
    }
}

/// What one [`dispatch`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub delivered: usize,
    pub gone: usize,
    pub retry: usize,
}

/// One pass: every pending action (created within the lookback) whose device has an active
/// channel and whose next attempt is due is claimed (once across processes); each device is
/// pushed once for all its claimed actions; outcomes are recorded and a gone channel expired.
pub async fn dispatch(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    pusher: &Arc<Pusher>,
) -> Result<DispatchReport, String> {
    let now = clock.now();
    let lookback = time::Duration::try_from(pusher.lookback).unwrap_or(time::Duration::HOUR);
    let candidates = store
        .push_candidates(now - lookback, CANDIDATES_PER_PASS)
        .await
        .map_err(|e| e.to_string())?;
    let mut by_device: HashMap<DeviceId, (String, Vec<(ActionId, u32)>)> = HashMap::new();
    for c in candidates {
        let Some(n) = next_attempt(c.last.as_ref(), now) else {
            continue;
        };
        let attempt = PushAttempt {
            action: c.action,
            attempt: n,
            device: c.device,
            claimed_at: now,
            outcome: None,
            finished_at: None,
        };
        if store
            .claim_push_attempt(&attempt)
            .await
            .map_err(|e| e.to_string())?
        {
            by_device
                .entry(c.device)
                .or_insert_with(|| (c.channel.clone(), Vec::new()))
                .1
                .push((c.action, n));
        }
    }
    let mut sends = tokio::task::JoinSet::new();
    for (device, (channel, actions)) in by_device {
        let (store, clock, pusher) = (Arc::clone(store), Arc::clone(clock), Arc::clone(pusher));
        sends.spawn(async move {
            let outcome = pusher.push(&channel).await;
            let at = clock.now();
            for (action, n) in &actions {
                if let Err(e) = store.finish_push_attempt(*action, *n, outcome, at).await {
                    tracing::warn!(error = %e, %action, "push outcome not recorded");
                }
            }
            if outcome == PushOutcome::ChannelGone {
                if let Err(e) = store.expire_push_channel(device, &channel, at).await {
                    tracing::warn!(error = %e, %device, "gone push channel not marked expired");
                }
            }
            tracing::debug!(%device, outcome = outcome.as_str(), "push");
            outcome
        });
    }
    let mut report = DispatchReport::default();
    while let Some(done) = sends.join_next().await {
        match done {
            Ok(PushOutcome::Delivered) => report.delivered += 1,
            Ok(PushOutcome::ChannelGone) => report.gone += 1,
            Ok(_) => report.retry += 1,
            Err(e) => tracing::warn!(error = %e, "push task failed"),
        }
    }
    Ok(report)
}

/// Runs [`dispatch`] whenever actions are queued ([`Pusher::wake`]) and every `every` (at most
/// 10 s: actions queued by another server process, retries after a back-off). Ends when
/// aborted.
pub fn spawn(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    every: Duration,
    pusher: Arc<Pusher>,
) -> JoinHandle<()> {
    let period = every.clamp(Duration::from_millis(100), Duration::from_secs(10));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = pusher.wake.notified() => {}
                () = tokio::time::sleep(period) => {}
            }
            match dispatch(&store, &clock, &pusher).await {
                Ok(r) if r == DispatchReport::default() => {}
                Ok(r) => tracing::info!(
                    delivered = r.delivered,
                    gone = r.gone,
                    retry = r.retry,
                    "push pass"
                ),
                Err(e) => tracing::warn!(error = %e, "push pass failed; trying again"),
            }
        }
    })
}
