//! Rate limits per client: a token bucket per client address. Over the
//! limit, a request is answered 429 with `Retry-After`.
//!
//! [`Limiter`] is the seam: [`LocalLimiter`] keeps the buckets in this
//! process; [`RedisLimiter`] keeps them in Redis, so that every gateway
//! replica draws on one bucket per client.

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

/// GCRA (the token bucket as one "theoretical arrival time" per client),
/// decided in Redis on its own clock so replicas with skewed clocks agree.
/// KEYS[1]: the client's key. ARGV[1]: microseconds between requests at the
/// sustained rate. ARGV[2]: the burst, in requests. Returns 0 when the
/// request may go, else the microseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - tolerance - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], next_tat, 'PX', math.floor((next_tat - now) / 1000) + 1)
return 0
";

/// Token buckets in Redis under `<prefix>:rl:<client>`, shared by all
/// gateway replicas. A key lives only until its bucket would be full again.
///
/// When Redis is unreachable or slow, requests are let through (fail open),
/// logged and counted in `mercato_ratelimit_fail_open_total`. The limit
/// guards against a client hogging the shop; refusing everyone while Redis
/// is away would turn an outage of an auxiliary store into an outage of the
/// whole shop, while the other guards (request time-out, body limit, the
/// services' own bounds) still hold. Each check waits at most `timeout`.
pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
    interval_us: u64,
    burst: u32,
    timeout: Duration,
    /// Unix second of the last fail-open warning, so an outage logs once a
    /// second rather than once a request.
    last_warning: std::sync::atomic::AtomicU64,
}

impl RedisLimiter {
    /// Same `per_second` and `burst` as [`LocalLimiter::new`]; `None` when
    /// `per_second` is 0 (no limit).
    pub fn new(
        conn: redis::aio::ConnectionManager,
        prefix: &str,
        per_second: u32,
        burst: u32,
        timeout: Duration,
    ) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        Some(Self {
            conn,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
            interval_us: (1_000_000 / u64::from(rate.get())).max(1),
            burst: burst.max(per_second),
            timeout,
            last_warning: std::sync::atomic::AtomicU64::new(0),
        })
    }

    async fn decide(&self, client: &str) -> anyhow::Result<u64> {
        let mut conn = self.conn.clone();
        let key = format!("{}:rl:{client}", self.prefix);
        let mut call = self.script.key(key);
        call.arg(self.interval_us).arg(self.burst);
        // EVALSHA, and EVAL when Redis does not know the script (yet).
        mercato_kernel::cache::within(self.timeout, call.invoke_async(&mut conn)).await
    }

    fn fail_open(&self, error: &anyhow::Error) {
        use std::sync::atomic::Ordering;
        metrics::counter!("mercato_ratelimit_fail_open_total").increment(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        if self.last_warning.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(error = %format!("{error:#}"), "rate limit unavailable, letting requests through");
        }
    }
}

impl Limiter for RedisLimiter {
    fn check<'a>(&'a self, client: &'a str) -> BoxFuture<'a, Result<(), Duration>> {
        Box::pin(async move {
            match self.decide(client).await {
                Ok(0) => Ok(()),
                Ok(wait_us) => Err(Duration::from_micros(wait_us)),
                Err(e) => {
                    self.fail_open(&e);
                    Ok(())
                }
            }
        })
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

    fn redis_url() -> String {
        std::env::var("MERCATO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// A limiter on the local Redis (`scripts/services`) under a prefix of its own.
    fn redis_limiter(prefix: &str, per_second: u32, burst: u32) -> RedisLimiter {
        let timeout = Duration::from_secs(2);
        let conn =
            mercato_kernel::cache::redis_connection(&redis_url(), timeout).expect("redis client");
        RedisLimiter::new(conn, prefix, per_second, burst, timeout).expect("limited")
    }

    fn test_prefix() -> String {
        format!("test-{}", uuid::Uuid::now_v7().simple())
    }

    async fn delete_keys(limiter: &RedisLimiter, prefix: &str) {
        use redis::AsyncCommands as _;
        let mut conn = limiter.conn.clone();
        let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.expect("keys");
        if !keys.is_empty() {
            let _: () = conn.del(&keys).await.expect("cleanup");
        }
    }

    #[tokio::test]
    async fn a_redis_bucket_allows_the_burst_then_says_how_long_to_wait() {
        let prefix = test_prefix();
        let l = redis_limiter(&prefix, 2, 3);
        for n in 0..3 {
            assert!(l.check("a").await.is_ok(), "request {n} of the burst");
        }
        let wait = l.check("a").await.expect_err("over the limit");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "about one interval at 2/s: {wait:?}"
        );
        assert!(l.check("b").await.is_ok(), "clients have their own buckets");

        let ttl: i64 = {
            use redis::AsyncCommands as _;
            let mut conn = l.conn.clone();
            conn.pttl(format!("{prefix}:rl:a")).await.expect("pttl")
        };
        assert!(
            ttl > 0 && ttl <= 2_000,
            "the key lives until the bucket is full again: {ttl}"
        );

        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        assert!(l.check("a").await.is_ok(), "a token came back");
        delete_keys(&l, &prefix).await;
    }

    #[tokio::test]
    async fn two_redis_limiters_share_one_bucket_per_client() {
        let prefix = test_prefix();
        let one = redis_limiter(&prefix, 1, 4);
        let two = redis_limiter(&prefix, 1, 4);
        assert!(one.check("c").await.is_ok());
        assert!(two.check("c").await.is_ok());
        assert!(one.check("c").await.is_ok());
        assert!(two.check("c").await.is_ok());
        assert!(
            one.check("c").await.is_err(),
            "the burst is spent across both"
        );
        assert!(
            two.check("c").await.is_err(),
            "the burst is spent across both"
        );
        delete_keys(&one, &prefix).await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_lets_requests_through_within_the_timeout() {
        // Nothing listens on port 1.
        let timeout = Duration::from_millis(300);
        let conn = mercato_kernel::cache::redis_connection("redis://127.0.0.1:1", timeout)
            .expect("lazy client");
        let l = RedisLimiter::new(conn, "unreachable", 1, 1, timeout).expect("limited");
        let started = std::time::Instant::now();
        for _ in 0..5 {
            assert!(l.check("d").await.is_ok(), "fails open");
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_silent_redis_lets_requests_through_after_the_timeout() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let timeout = Duration::from_millis(200);
        let conn = mercato_kernel::cache::redis_connection(&format!("redis://{addr}"), timeout)
            .expect("lazy client");
        let l = RedisLimiter::new(conn, "silent", 1, 1, timeout).expect("limited");
        let started = std::time::Instant::now();
        assert!(l.check("e").await.is_ok(), "fails open");
        assert!(l.check("e").await.is_ok(), "fails open");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "bounded by the timeout"
        );
        held.abort();
    }
}
