//! The event bus. [`EventBus`] is what contexts see; [`LogBus`] is the
//! embedded implementation: a durable, append-only log in its own store with
//! a persisted offset per consumer, so delivery resumes where it stopped
//! after a restart. [`jetstream::JetStreamBus`] is the distributed
//! implementation behind the same trait.

use crate::db::{Backend, Db, Migration, Migrations};
use crate::event::{with_correlation, Envelope};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub mod jetstream;

/// Handles one event. Must be idempotent (see [`crate::inbox`]): an event
/// may be delivered more than once.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()>;
}

/// A durable consumer: a name that keeps its position, the event types it
/// wants (exact names, or a prefix ending in `.*`), and its handler.
pub struct Subscription {
    pub consumer: String,
    pub event_types: Vec<String>,
    pub handler: Arc<dyn EventHandler>,
}

impl Subscription {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|p| match p.strip_suffix(".*") {
            Some(prefix) => event_type
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.')),
            None => p == event_type,
        })
    }
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Appends events; an event whose id was already published is dropped.
    async fn publish(&self, events: &[Envelope]) -> anyhow::Result<()>;

    /// Starts delivering to a durable consumer until `shutdown`.
    fn subscribe(
        &self,
        sub: Subscription,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()>;

    /// Readiness: the bus can be written.
    async fn ping(&self) -> anyhow::Result<()>;

    /// Moves a durable consumer back to the start of the retained history,
    /// so that its next run sees every event again (rebuilding a read
    /// model). Takes effect when the consumer next starts.
    async fn rewind(&self, consumer: &str) -> anyhow::Result<()>;

    /// Events parked after failing every attempt, oldest first.
    async fn parked(&self, limit: usize) -> anyhow::Result<Vec<DeadLetter>>;

    /// Publishes a parked event again and forgets it; `false` when `seq` is
    /// not parked. Every consumer of its type sees it again: those that
    /// processed it already drop it through their inbox.
    async fn replay(&self, seq: i64) -> anyhow::Result<bool>;
}

/// How often a busy consumer saves its offset.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// How often a failing event is tried before it is parked as a dead letter.
pub const MAX_ATTEMPTS: u32 = 6;

const LOG_MIGRATIONS: Migrations = Migrations {
    sqlite: &[Migration {
        version: 1,
        name: "event_log",
        sql: "
        CREATE TABLE event_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            envelope TEXT NOT NULL,
            appended_at TEXT NOT NULL
        );
        CREATE TABLE consumer_offsets (
            consumer TEXT PRIMARY KEY,
            position BIGINT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE dead_letters (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            event_type TEXT NOT NULL,
            envelope TEXT NOT NULL,
            error TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            failed_at TEXT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );",
    }],
    postgres: &[Migration {
        version: 1,
        name: "event_log",
        sql: "
        CREATE TABLE event_log (
            seq BIGSERIAL PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            envelope TEXT NOT NULL,
            appended_at TEXT NOT NULL
        );
        CREATE TABLE consumer_offsets (
            consumer TEXT PRIMARY KEY,
            position BIGINT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE dead_letters (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            event_type TEXT NOT NULL,
            envelope TEXT NOT NULL,
            error TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            failed_at TEXT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );",
    }],
};

/// The durable in-process bus.
#[derive(Clone)]
pub struct LogBus {
    db: Db,
    head: Arc<watch::Sender<i64>>,
}

/// A parked event that exhausted its attempts.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub consumer: String,
    pub seq: i64,
    pub envelope: Envelope,
    pub error: String,
    pub attempts: i64,
}

impl LogBus {
    pub async fn open(db: Db) -> anyhow::Result<Self> {
        db.migrate("event_log", &LOG_MIGRATIONS).await?;
        let (head,): (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM event_log")
                .fetch_one(db.pool())
                .await?;
        let (tx, _) = watch::channel(head);
        Ok(Self {
            db,
            head: Arc::new(tx),
        })
    }

    /// Every event in the log after `after`, in order (replays, rebuilds).
    pub async fn read(&self, after: i64, limit: i64) -> anyhow::Result<Vec<(i64, Envelope)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, envelope FROM event_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(seq, json)| Ok((seq, serde_json::from_str(&json)?)))
            .collect()
    }

    pub async fn position(&self, consumer: &str) -> anyhow::Result<i64> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT position FROM consumer_offsets WHERE consumer = $1")
                .bind(consumer)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|r| r.0).unwrap_or(0))
    }

    async fn save_position(&self, consumer: &str, position: i64) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO consumer_offsets (consumer, position, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (consumer) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(consumer)
        .bind(position)
        .bind(crate::time::to_db(&crate::time::now()))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn dead_letters(&self) -> anyhow::Result<Vec<DeadLetter>> {
        let rows: Vec<(String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT consumer, seq, envelope, error, attempts FROM dead_letters ORDER BY failed_at",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(consumer, seq, json, error, attempts)| {
                Ok(DeadLetter {
                    consumer,
                    seq,
                    envelope: serde_json::from_str(&json)?,
                    error,
                    attempts,
                })
            })
            .collect()
    }

    async fn park(
        &self,
        consumer: &str,
        seq: i64,
        env: &Envelope,
        error: &str,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO dead_letters (consumer, event_id, seq, event_type, envelope, error, attempts, failed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(consumer)
        .bind(env.id.to_string())
        .bind(seq)
        .bind(&env.event_type)
        .bind(serde_json::to_string(env)?)
        .bind(error)
        .bind(i64::from(MAX_ATTEMPTS))
        .bind(crate::time::to_db(&crate::time::now()))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rows after `after`, with only the envelopes `sub` wants parsed.
    async fn read_for(
        &self,
        sub: &Subscription,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(i64, Option<Envelope>)>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, event_type, envelope FROM event_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(seq, event_type, json)| {
                let env = if sub.wants(&event_type) {
                    Some(serde_json::from_str(&json)?)
                } else {
                    None
                };
                Ok((seq, env))
            })
            .collect()
    }

    async fn consume(self, sub: Subscription, shutdown: CancellationToken) {
        let mut head = self.head.subscribe();
        let mut position = loop {
            match self.position(&sub.consumer).await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!(consumer = %sub.consumer, error = %format!("{e:#}"), "reading consumer offset failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        // The offset is saved at most every SAVE_EVERY while busy, and at
        // once when idle or stopping. Consumers are idempotent, so after a
        // crash the events since the last save are simply delivered again.
        let mut saved = position;
        let mut saved_at = std::time::Instant::now();
        let save = |position: i64| {
            let bus = self.clone();
            let consumer = sub.consumer.clone();
            async move {
                if let Err(e) = bus.save_position(&consumer, position).await {
                    tracing::warn!(consumer = %consumer, error = %format!("{e:#}"), "saving consumer offset failed");
                    false
                } else {
                    true
                }
            }
        };
        while !shutdown.is_cancelled() {
            head.mark_unchanged();
            let batch = match self.read_for(&sub, position, 128).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(consumer = %sub.consumer, error = %format!("{e:#}"), "reading the event log failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                if saved != position && save(position).await {
                    saved = position;
                    saved_at = std::time::Instant::now();
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = head.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            for (seq, env) in batch {
                if let Some(env) = env {
                    if !self.deliver(&sub, seq, &env, &shutdown).await {
                        break;
                    }
                }
                position = seq;
            }
            if saved_at.elapsed() >= SAVE_EVERY && save(position).await {
                saved = position;
                saved_at = std::time::Instant::now();
            }
        }
        if saved != position {
            save(position).await;
        }
    }

    /// Delivers one event with bounded retries; `false` when shutting down.
    async fn deliver(
        &self,
        sub: &Subscription,
        seq: i64,
        env: &Envelope,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let result = with_correlation(env.caused_correlation(), sub.handler.handle(env)).await;
            metrics::histogram!("mercato_event_handle_seconds", "consumer" => sub.consumer.clone())
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    metrics::counter!("mercato_events_consumed_total", "consumer" => sub.consumer.clone(), "outcome" => "ok").increment(1);
                    return true;
                }
                Err(e) if attempt >= MAX_ATTEMPTS => {
                    let error = format!("{e:#}");
                    tracing::error!(consumer = %sub.consumer, event_id = %env.id, event_type = %env.event_type, error = %error, "event parked as a dead letter");
                    metrics::counter!("mercato_events_consumed_total", "consumer" => sub.consumer.clone(), "outcome" => "dead_letter").increment(1);
                    if let Err(e) = self.park(&sub.consumer, seq, env, &error).await {
                        tracing::error!(consumer = %sub.consumer, error = %format!("{e:#}"), "parking a dead letter failed");
                    }
                    return true;
                }
                Err(e) => {
                    tracing::warn!(consumer = %sub.consumer, event_id = %env.id, attempt, error = %format!("{e:#}"), "event handling failed; retrying");
                    let pause = crate::resilience::backoff(
                        attempt,
                        Duration::from_millis(50),
                        Duration::from_secs(5),
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

#[async_trait]
impl EventBus for LogBus {
    async fn publish(&self, events: &[Envelope]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        if self.db.backend() == Backend::Postgres {
            // Sequence numbers must become visible in order, or a consumer
            // could pass over one that commits late.
            sqlx::query("SELECT pg_advisory_xact_lock(7420012)")
                .execute(tx.conn())
                .await?;
        }
        let now = crate::time::to_db(&crate::time::now());
        for env in events {
            sqlx::query(
                "INSERT INTO event_log (event_id, event_type, envelope, appended_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(env.id.to_string())
            .bind(&env.event_type)
            .bind(serde_json::to_string(env)?)
            .bind(&now)
            .execute(tx.conn())
            .await?;
        }
        let (head,): (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM event_log")
                .fetch_one(tx.conn())
                .await?;
        tx.commit().await?;
        self.head.send_replace(head);
        Ok(())
    }

    fn subscribe(
        &self,
        sub: Subscription,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().consume(sub, shutdown))
    }

    async fn ping(&self) -> anyhow::Result<()> {
        Ok(self.db.ping().await?)
    }

    async fn rewind(&self, consumer: &str) -> anyhow::Result<()> {
        self.save_position(consumer, 0).await
    }

    async fn parked(&self, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let mut all = self.dead_letters().await?;
        all.truncate(limit);
        Ok(all)
    }

    async fn replay(&self, seq: i64) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let row: Option<(String,)> =
            sqlx::query_as("SELECT envelope FROM dead_letters WHERE seq = $1 LIMIT 1")
                .bind(seq)
                .fetch_optional(tx.conn())
                .await?;
        let Some((json,)) = row else {
            return Ok(false);
        };
        let env: Envelope = serde_json::from_str(&json)?;
        if self.db.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7420012)")
                .execute(tx.conn())
                .await?;
        }
        // The log keys rows by event id; a replay is a row of its own that
        // carries the original envelope, so consumers de-duplicate it by its id.
        sqlx::query(
            "INSERT INTO event_log (event_id, event_type, envelope, appended_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(format!("{}-replay-{seq}", env.id))
        .bind(&env.event_type)
        .bind(&json)
        .bind(crate::time::to_db(&crate::time::now()))
        .execute(tx.conn())
        .await?;
        sqlx::query("DELETE FROM dead_letters WHERE seq = $1")
            .bind(seq)
            .execute(tx.conn())
            .await?;
        let (head,): (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM event_log")
                .fetch_one(tx.conn())
                .await?;
        tx.commit().await?;
        self.head.send_replace(head);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(types: &[&str]) -> Subscription {
        struct Nop;
        #[async_trait]
        impl EventHandler for Nop {
            async fn handle(&self, _: &Envelope) -> anyhow::Result<()> {
                Ok(())
            }
        }
        Subscription {
            consumer: "t".into(),
            event_types: types.iter().map(|s| s.to_string()).collect(),
            handler: Arc::new(Nop),
        }
    }

    #[test]
    fn subscriptions_match_exact_names_and_prefixes() {
        let s = sub(&["order.*", "product.created"]);
        assert!(s.wants("order.confirmed"));
        assert!(s.wants("product.created"));
        assert!(!s.wants("product.updated"));
        assert!(!s.wants("orders.confirmed"));
        assert!(!s.wants("order"));
    }
}
