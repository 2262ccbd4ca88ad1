//! Token buckets per key: per client IP for the enrollment endpoints (a burst, then a steady
//! refill; over the limit → 429 with `Retry-After`: unauthenticated endpoints that sign
//! certificates are the cheapest way to load the server, so they are the ones limited), and per
//! account name and per IP for the console's failed password sign-ins.

use std::collections::HashMap;
use std::hash::Hash;
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

/// Buckets by key (`IpAddr` for the enrollment endpoints), shared by every request.
#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    limit: RateLimit,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Gives back the token `check` took for `key` (a sign-in that succeeded spends nothing).
    pub fn refund(&self, key: &K) {
        let burst = f64::from(self.limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(burst);
        }
    }

    /// Takes one token for `key` at `now`: `Ok(())`, or `Err(wait)` until one is available.
    pub fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        if self.limit.per_second <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, b| now.duration_since(b.at) < IDLE);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
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

/// The buckets of failed console password sign-ins: one per account name (as typed, lower
/// case) and one per client address; each attempt takes a token from both, a success gives them
/// back.
#[derive(Debug)]
pub struct SignInLimits {
    pub by_name: RateLimiter<String>,
    pub by_ip: RateLimiter<IpAddr>,
}

impl SignInLimits {
    pub fn new(limit: RateLimit) -> Self {
        SignInLimits {
            by_name: RateLimiter::new(limit),
            by_ip: RateLimiter::new(limit),
        }
    }
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
    fn a_refund_gives_the_token_back() {
        let limiter = RateLimiter::<String>::new(RateLimit {
            burst: 1,
            per_second: 0.001,
        });
        let t0 = Instant::now();
        assert!(limiter.check("ada".into(), t0).is_ok());
        assert!(limiter.check("ada".into(), t0).is_err());
        limiter.refund(&"ada".to_string());
        assert!(limiter.check("ada".into(), t0).is_ok());
        assert!(
            limiter.check("bob".into(), t0).is_ok(),
            "buckets are per key"
        );
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
