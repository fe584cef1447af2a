//! Cache-aside storage of bytes by key, with a time to live per entry.
//!
//! [`Cache`] is what a context sees; [`MemoryCache`] keeps the entries in
//! this process (embedded mode), [`RedisCache`] in Redis, shared by every
//! replica of a context (distributed mode). A cache is never the source of
//! truth: callers treat an error as a miss and go to their store, so every
//! call is bounded by a time-out and a slow or absent cache costs at most
//! that time-out, never a failed request.

use anyhow::Context as _;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The value under `key`, `None` when absent or expired.
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Stores `value` under `key` for `ttl` (rounded up to a millisecond).
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()>;
    /// Removes `key`; removing an absent key is not an error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
}

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

struct EntryExpiry;

impl moka::Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Entries in this process, bounded by their total size in bytes.
#[derive(Clone)]
pub struct MemoryCache {
    entries: moka::future::Cache<String, Entry>,
}

impl MemoryCache {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, entry: &Entry| {
                    u32::try_from(key.len() + entry.bytes.len()).unwrap_or(u32::MAX)
                })
                .expire_after(EntryExpiry)
                .build(),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.entries.get(key).await.map(|e| e.bytes.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        let entry = Entry {
            bytes: value.into(),
            ttl,
        };
        self.entries.insert(key.to_owned(), entry).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.entries.invalidate(key).await;
        Ok(())
    }
}

/// The shared, multiplexed connection to Redis (cheap to clone).
pub use redis::aio::ConnectionManager as RedisConnection;

/// A Redis connection for caches and limits: connected lazily (a service
/// starts while Redis is still coming up), reconnected in the background
/// after a failure, each command and connection attempt bounded by `timeout`.
pub fn redis_connection(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).context("invalid Redis URL")?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // Few quick retries: callers have their own time-out and a fallback,
        // so a long reconnect loop would only hold their requests.
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config).context("creating the Redis connection")
}

/// Runs one Redis call within `timeout`.
pub async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.context("redis"),
        Err(_) => anyhow::bail!("redis did not answer within {timeout:?}"),
    }
}

/// Entries in Redis under `<prefix>:<key>`.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl RedisCache {
    pub fn new(conn: ConnectionManager, prefix: &str, timeout: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        within(self.timeout, conn.get(self.key(key))).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        within(self.timeout, conn.pset_ex(self.key(key), value, ms)).await
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        within(self.timeout, conn.del(self.key(key))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_entries_are_set_read_deleted_and_expire() {
        let cache = MemoryCache::new(1024 * 1024);
        assert_eq!(cache.get("a").await.expect("get"), None);
        cache
            .set("a", b"one", Duration::from_secs(60))
            .await
            .expect("set");
        cache
            .set("b", b"two", Duration::from_millis(50))
            .await
            .expect("set");
        assert_eq!(cache.get("a").await.expect("get"), Some(b"one".to_vec()));
        assert_eq!(cache.get("b").await.expect("get"), Some(b"two".to_vec()));
        cache.delete("a").await.expect("delete");
        assert_eq!(cache.get("a").await.expect("get"), None);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.get("b").await.expect("get"), None, "expired");
    }

    #[tokio::test]
    async fn a_new_value_gets_its_own_time_to_live() {
        let cache = MemoryCache::new(1024 * 1024);
        cache
            .set("k", b"short", Duration::from_millis(50))
            .await
            .expect("set");
        cache
            .set("k", b"long", Duration::from_secs(60))
            .await
            .expect("set");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.get("k").await.expect("get"), Some(b"long".to_vec()));
    }

    fn redis_url() -> String {
        std::env::var("MERCATO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// Against the local Redis (`scripts/services`), under a prefix of its own.
    #[tokio::test]
    async fn redis_entries_are_set_read_deleted_and_expire() {
        let timeout = Duration::from_secs(2);
        let conn = redis_connection(&redis_url(), timeout).expect("redis client");
        let prefix = format!("test-{}", uuid::Uuid::now_v7().simple());
        let cache = RedisCache::new(conn.clone(), &prefix, timeout);

        assert_eq!(cache.get("a").await.expect("get"), None);
        cache
            .set("a", b"one", Duration::from_secs(60))
            .await
            .expect("set");
        cache
            .set("b", b"two", Duration::from_millis(100))
            .await
            .expect("set");
        assert_eq!(cache.get("a").await.expect("get"), Some(b"one".to_vec()));
        assert_eq!(cache.get("b").await.expect("get"), Some(b"two".to_vec()));

        let mut raw = conn.clone();
        let ttl: i64 = raw.pttl(format!("{prefix}:a")).await.expect("pttl");
        assert!(ttl > 50_000 && ttl <= 60_000, "stored with its ttl: {ttl}");

        cache.delete("a").await.expect("delete");
        cache.delete("a").await.expect("deleting an absent key");
        assert_eq!(cache.get("a").await.expect("get"), None);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.get("b").await.expect("get"), None, "expired");

        let left: Vec<String> = raw.keys(format!("{prefix}:*")).await.expect("keys");
        if !left.is_empty() {
            let _: () = raw.del(&left).await.expect("cleanup");
        }
        assert!(left.is_empty(), "nothing left behind: {left:?}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_within_the_timeout() {
        // Nothing listens on port 1.
        let timeout = Duration::from_millis(300);
        let conn = redis_connection("redis://127.0.0.1:1", timeout).expect("lazy client");
        let cache = RedisCache::new(conn, "unreachable", timeout);
        let started = Instant::now();
        assert!(cache.get("a").await.is_err());
        assert!(cache.set("a", b"x", Duration::from_secs(1)).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
