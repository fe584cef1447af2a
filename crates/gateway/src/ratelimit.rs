//! Rate limits per client: a token bucket per client address. Over the
//! limit, a request is answered 429 with `Retry-After`.
//!
//! [`Limiter`] is the seam for a limit shared by several gateway replicas
//! (Redis); [`LocalLimiter`] keeps the buckets in this process.

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mercato_kernel::ApiError;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Decides whether a client may make one more request now; `Err` carries
/// how long it has to wait.
pub trait Limiter: Send + Sync + 'static {
    fn check<'a>(&'a self, client: &'a str) -> BoxFuture<'a, Result<(), Duration>>;
}

/// Token buckets in this process (embedded mode, or one gateway replica).
pub struct LocalLimiter {
    buckets: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl LocalLimiter {
    /// `per_second` sustained, `burst` at once. `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(Self {
            buckets: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        })
    }
}

impl Limiter for LocalLimiter {
    fn check<'a>(&'a self, client: &'a str) -> BoxFuture<'a, Result<(), Duration>> {
        let result = match self.buckets.check_key(&client.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        };
        // Buckets of clients that went quiet are dropped now and then.
        if self.buckets.len() > 100_000 {
            self.buckets.retain_recent();
        }
        Box::pin(std::future::ready(result))
    }
}

/// The limiter and how to tell clients apart.
#[derive(Clone)]
pub struct RateLimit {
    pub limiter: Arc<dyn Limiter>,
    /// Take the client from the first `X-Forwarded-For` address (only behind
    /// a proxy that sets it).
    pub trust_forwarded_for: bool,
}

fn client_of(req: &Request, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip.to_string();
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

pub async fn limit(State(rl): State<RateLimit>, req: Request, next: Next) -> Response {
    let client = client_of(&req, rl.trust_forwarded_for);
    match rl.limiter.check(&client).await {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            metrics::counter!("mercato_http_rate_limited_total").increment(1);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::too_many_requests(secs).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_empties_and_says_how_long_to_wait() {
        let l = LocalLimiter::new(1, 2).expect("limited");
        assert!(l.check("a").await.is_ok());
        assert!(l.check("a").await.is_ok());
        let wait = l.check("a").await.expect_err("over the limit");
        assert!(wait <= Duration::from_secs(1));
        assert!(l.check("b").await.is_ok(), "clients have their own buckets");
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(LocalLimiter::new(0, 10).is_none());
    }
}
