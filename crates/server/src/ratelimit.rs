//! Per-client-IP token buckets for the enrollment endpoints: a burst, then a steady refill;
//! over the limit → 429 with `Retry-After`. Unauthenticated endpoints that sign certificates
//! are the cheapest way to load the server, so they are the ones limited.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::problem::Problem;
use crate::settings::RateLimit;

/// Buckets idle longer than this are forgotten (they would be full again anyway).
const IDLE: Duration = Duration::from_secs(600);
/// Sweep idle buckets once the table holds this many addresses.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limiter shared by every enrollment request.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip` at `now`: `Ok(())`, or `Err(wait)` until one is available.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.limit.per_second <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, b| now.duration_since(b.at) < IDLE);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.limit.per_second,
            ))
        }
    }
}

/// Middleware: 429 problem document with `Retry-After` (whole seconds, at least 1) when the
/// client's bucket is empty. Requests without a peer address (in-process tests) pass.
pub async fn limit_by_ip(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer {
        if let Err(wait) = limiter.check(ip, Instant::now()) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::info!(%ip, retry_after = secs, "enrollment rate limit");
            let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS)
                .detail(format!(
                    "too many enrollment requests from {ip}; retry in {secs} s"
                ))
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 2,
            per_second: 1.0,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(limiter.check(ip, t0).is_ok());
        assert!(limiter.check(ip, t0).is_ok());
        let wait = limiter.check(ip, t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(limiter.check(other, t0).is_ok(), "buckets are per address");
        assert!(limiter.check(ip, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn zero_rate_disables() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 0,
            per_second: 0.0,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert!(limiter.check(ip, Instant::now()).is_ok());
        }
    }
}
