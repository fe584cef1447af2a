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
use tokio::sync::{watch, Notify};
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
    /// Whether the consumer belongs to one process instance rather than to
    /// its context: its state lives with the instance (a search index on
    /// local disk), so every instance subscribes under a name of its own
    /// and reads every event. A bus that keeps consumers on a server
    /// removes such a consumer once its instance has been gone for a while
    /// ([`jetstream::JetStreamConfig::instance_inactive_threshold`]); an
    /// instance that comes back under the same name within that time goes
    /// on from its position. `false`: the replicas of the context share the
    /// consumer and its work, and it is kept.
    pub per_instance: bool,
}

impl Subscription {
    /// A consumer the replicas of a context share.
    pub fn shared(
        consumer: impl Into<String>,
        event_types: impl IntoIterator<Item = impl Into<String>>,
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        Self {
            consumer: consumer.into(),
            event_types: event_types.into_iter().map(Into::into).collect(),
            handler,
            per_instance: false,
        }
    }

    /// A consumer of one process instance (see [`Self::per_instance`]).
    pub fn of_instance(
        consumer: impl Into<String>,
        event_types: impl IntoIterator<Item = impl Into<String>>,
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        Self {
            per_instance: true,
            ..Self::shared(consumer, event_types, handler)
        }
    }

    pub fn wants(&self, event_type: &str) -> bool {
        wanted(&self.event_types, event_type)
    }
}

/// Whether `event_type` matches one of `patterns`: a name, or a prefix
/// ending in `.*`.
fn wanted(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => p == event_type,
    })
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

    /// Delivers a parked event again to the consumer that parked it
    /// ([`DeadLetter::consumer`]) and to no other, and forgets the dead
    /// letter; `false` when there is no dead letter `seq`.
    ///
    /// The other consumers of the event's type do not see it again: a
    /// consumer without an inbox (search overwrites its index with the
    /// event's state) would otherwise go back to an older state. The replay
    /// is queued durably for that consumer: a consumer that is not running
    /// gets it when it next starts, one with several replicas on one of
    /// them. It is a delivery like any other: failing every attempt again
    /// parks it again, as a new dead letter. A replayed event may arrive
    /// after newer events of the same subject.
    async fn replay(&self, seq: i64) -> anyhow::Result<bool>;
}

/// How often a busy consumer saves its offset.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// How often a failing event is tried before it is parked as a dead letter.
pub const MAX_ATTEMPTS: u32 = 6;

/// How often a busy consumer of the [`LogBus`] looks for replays queued
/// elsewhere than through its own bus (another process on the same store);
/// replays through its own bus wake it at once.
const REPLAY_POLL: Duration = Duration::from_secs(1);

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
    }, Migration {
        version: 2,
        name: "replays",
        // Dead letters get an id of their own (two consumers may park the
        // same event), and replays a queue per consumer.
        sql: "
        CREATE TABLE dead_letters_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            event_type TEXT NOT NULL,
            envelope TEXT NOT NULL,
            error TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            failed_at TEXT NOT NULL,
            UNIQUE (consumer, event_id)
        );
        INSERT INTO dead_letters_v2 (consumer, event_id, seq, event_type, envelope, error, attempts, failed_at)
            SELECT consumer, event_id, seq, event_type, envelope, error, attempts, failed_at
            FROM dead_letters ORDER BY failed_at;
        DROP TABLE dead_letters;
        ALTER TABLE dead_letters_v2 RENAME TO dead_letters;
        CREATE TABLE replays (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            consumer TEXT NOT NULL,
            seq BIGINT NOT NULL,
            envelope TEXT NOT NULL,
            queued_at TEXT NOT NULL
        );
        CREATE INDEX replays_by_consumer ON replays (consumer, id);",
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
    }, Migration {
        version: 2,
        name: "replays",
        sql: "
        ALTER TABLE dead_letters ADD COLUMN id BIGSERIAL;
        ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_id_key UNIQUE (id);
        CREATE TABLE replays (
            id BIGSERIAL PRIMARY KEY,
            consumer TEXT NOT NULL,
            seq BIGINT NOT NULL,
            envelope TEXT NOT NULL,
            queued_at TEXT NOT NULL
        );
        CREATE INDEX replays_by_consumer ON replays (consumer, id);",
    }],
};

/// The durable in-process bus.
///
/// Replays of dead letters do not go through the log, which every consumer
/// reads: they are queued per consumer (table `replays`), and each consumer
/// drains its own queue between batches of the log.
#[derive(Clone)]
pub struct LogBus {
    db: Db,
    /// The running consumers, each woken by appends of a type it wants.
    waiting: Arc<std::sync::Mutex<Vec<Waiting>>>,
    /// Bumped whenever a replay is queued, to wake the consumers.
    replayed: Arc<watch::Sender<u64>>,
}

/// A running consumer of the [`LogBus`]: what it wants and how to wake it.
struct Waiting {
    event_types: Vec<String>,
    wake: Arc<Notify>,
}

/// Takes a consumer off the [`LogBus`]'s list when it stops.
struct Registered {
    waiting: Arc<std::sync::Mutex<Vec<Waiting>>>,
    wake: Arc<Notify>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.retain(|w| !Arc::ptr_eq(&w.wake, &self.wake));
        }
    }
}

/// Rows in one statement appending to the log (4 parameters each).
const APPEND_CHUNK: usize = 100;

/// A parked event that exhausted its attempts.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The consumer that gave up on it, and the only one a replay reaches.
    pub consumer: String,
    /// What [`EventBus::replay`] takes: unique per dead letter (the id of
    /// the dead letter in the [`LogBus`], its position in the dead-letter
    /// stream on JetStream).
    pub seq: i64,
    pub envelope: Envelope,
    pub error: String,
    pub attempts: i64,
}

impl LogBus {
    pub async fn open(db: Db) -> anyhow::Result<Self> {
        db.migrate("event_log", &LOG_MIGRATIONS).await?;
        let (replayed, _) = watch::channel(0);
        Ok(Self {
            db,
            waiting: Arc::default(),
            replayed: Arc::new(replayed),
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
        self.db
            .execute(
                sqlx::query(
                    "INSERT INTO consumer_offsets (consumer, position, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (consumer) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                )
                .bind(consumer)
                .bind(position)
                .bind(crate::time::to_db(&crate::time::now())),
            )
            .await?;
        Ok(())
    }

    pub async fn dead_letters(&self) -> anyhow::Result<Vec<DeadLetter>> {
        let rows: Vec<(String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT consumer, id, envelope, error, attempts FROM dead_letters ORDER BY failed_at, id",
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
        let query = sqlx::query(
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
        .bind(crate::time::to_db(&crate::time::now()));
        self.db.execute(query).await?;
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

    /// The oldest replays queued for `consumer`: id, log position, envelope.
    async fn queued_replays(
        &self,
        consumer: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<(i64, i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, seq, envelope FROM replays WHERE consumer = $1 ORDER BY id LIMIT $2",
        )
        .bind(consumer)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?)
    }

    async fn forget_replay(&self, id: i64) -> anyhow::Result<()> {
        let query = sqlx::query("DELETE FROM replays WHERE id = $1").bind(id);
        self.db.execute(query).await?;
        Ok(())
    }

    /// Delivers the replays queued for `sub` until none is left; `false`
    /// when shutting down. A replay is forgotten once delivered (or parked
    /// again): after a crash in between it is delivered once more, which
    /// the consumer's idempotence absorbs.
    async fn drain_replays(
        &self,
        sub: &Subscription,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        loop {
            let queued = self.queued_replays(&sub.consumer, 32).await?;
            if queued.is_empty() {
                return Ok(true);
            }
            for (id, seq, json) in queued {
                match serde_json::from_str::<Envelope>(&json) {
                    Ok(env) if sub.wants(&env.event_type) => {
                        tracing::info!(consumer = %sub.consumer, event_id = %env.id, event_type = %env.event_type, "delivering a replayed dead letter");
                        if !self.deliver(sub, seq, &env, shutdown).await {
                            return Ok(false);
                        }
                    }
                    Ok(env) => {
                        tracing::warn!(consumer = %sub.consumer, event_id = %env.id, event_type = %env.event_type, "replay of an event type the consumer no longer wants dropped")
                    }
                    Err(e) => {
                        tracing::error!(consumer = %sub.consumer, replay = id, error = %e, "undecodable replay dropped")
                    }
                }
                self.forget_replay(id).await?;
            }
        }
    }

    /// Puts a consumer of `event_types` on the list [`EventBus::publish`]
    /// wakes; it stays there until the returned guard is dropped.
    fn register(&self, event_types: &[String]) -> Registered {
        let wake = Arc::new(Notify::new());
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.push(Waiting {
                event_types: event_types.to_vec(),
                wake: wake.clone(),
            });
        }
        Registered {
            waiting: self.waiting.clone(),
            wake,
        }
    }

    async fn consume(self, sub: Subscription, shutdown: CancellationToken) {
        // Appends of types this consumer wants wake it; a wake-up while it
        // reads is kept for its next wait, so none is lost.
        let registered = self.register(&sub.event_types);
        let wake = &registered.wake;
        let mut replayed = self.replayed.subscribe();
        // Replays queued while the consumer was stopped are looked for at once.
        let mut replays_checked: Option<std::time::Instant> = None;
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
        // The offset is saved at most every SAVE_EVERY, and when stopping.
        // Consumers are idempotent, so after a crash the events since the
        // last save are simply delivered again.
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
            let replays_due = replayed.has_changed().unwrap_or(false)
                || replays_checked.is_none_or(|at| at.elapsed() >= REPLAY_POLL);
            if replays_due {
                replayed.mark_unchanged();
                match self.drain_replays(&sub, &shutdown).await {
                    Ok(true) => replays_checked = Some(std::time::Instant::now()),
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(consumer = %sub.consumer, error = %format!("{e:#}"), "reading the consumer's replays failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
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
                if saved != position && saved_at.elapsed() >= SAVE_EVERY && save(position).await {
                    saved = position;
                    saved_at = std::time::Instant::now();
                }
                // Idle with an unsaved offset: look again when it is due.
                let wait = if saved == position {
                    REPLAY_POLL
                } else {
                    SAVE_EVERY
                        .saturating_sub(saved_at.elapsed())
                        .max(Duration::from_millis(10))
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = wake.notified() => {}
                    _ = replayed.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
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
        // Rows of one statement take their sequence numbers in the order given.
        for chunk in events.chunks(APPEND_CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = 4 * i;
                    format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4)
                })
                .collect();
            let sql = format!(
                "INSERT INTO event_log (event_id, event_type, envelope, appended_at) VALUES {}
                 ON CONFLICT (event_id) DO NOTHING",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for env in chunk {
                query = query
                    .bind(env.id.to_string())
                    .bind(env.event_type.as_str())
                    .bind(serde_json::to_string(env)?)
                    .bind(now.as_str());
            }
            query.execute(tx.conn()).await?;
        }
        tx.commit().await?;
        if let Ok(waiting) = self.waiting.lock() {
            for w in waiting.iter() {
                if events.iter().any(|e| wanted(&w.event_types, &e.event_type)) {
                    w.wake.notify_one();
                }
            }
        }
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
        // Taken and queued in one transaction: of two concurrent replays of
        // one dead letter, one queues it and the other finds nothing.
        let row: Option<(String, i64, String)> = sqlx::query_as(
            "DELETE FROM dead_letters WHERE id = $1 RETURNING consumer, seq, envelope",
        )
        .bind(seq)
        .fetch_optional(tx.conn())
        .await?;
        let Some((consumer, log_seq, json)) = row else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO replays (consumer, seq, envelope, queued_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&consumer)
        .bind(log_seq)
        .bind(&json)
        .bind(crate::time::to_db(&crate::time::now()))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        self.replayed.send_modify(|n| *n = n.wrapping_add(1));
        tracing::info!(consumer = %consumer, dead_letter = seq, "dead letter queued for replay");
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
            per_instance: false,
        }
    }

    /// The log as the first release created it.
    const FIRST_LAYOUT: Migrations = Migrations {
        sqlite: LOG_MIGRATIONS.sqlite.split_at(1).0,
        postgres: LOG_MIGRATIONS.postgres.split_at(1).0,
    };

    #[tokio::test]
    async fn dead_letters_of_the_first_layout_survive_the_upgrade() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::sqlite_file(&dir.path().join("events.db"))
            .await
            .expect("sqlite");
        db.migrate("event_log", &FIRST_LAYOUT)
            .await
            .expect("first layout");
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Ticked {
            n: u32,
        }
        impl crate::event::DomainEvent for Ticked {
            const TYPE: &'static str = "test.ticked";
        }
        let env = Envelope::new("test", "x", &Ticked { n: 1 }).expect("event");
        for consumer in ["a", "b"] {
            sqlx::query(
                "INSERT INTO dead_letters (consumer, event_id, seq, event_type, envelope, error, attempts, failed_at)
                 VALUES ($1, $2, 7, 'test.ticked', $3, 'boom', 6, $4)",
            )
            .bind(consumer)
            .bind(env.id.to_string())
            .bind(serde_json::to_string(&env).expect("json"))
            .bind(crate::time::to_db(&crate::time::now()))
            .execute(db.pool())
            .await
            .expect("dead letter");
        }

        let bus = LogBus::open(db.clone()).await.expect("upgraded");
        let dead = bus.dead_letters().await.expect("dead letters");
        assert_eq!(dead.len(), 2);
        assert_ne!(dead[0].seq, dead[1].seq, "each dead letter has its own id");
        assert!(dead.iter().all(|d| d.envelope == env && d.error == "boom"));

        // One of the two is replayed, for its own consumer only.
        let replayed = dead[0].clone();
        assert!(bus.replay(replayed.seq).await.expect("replay"));
        let rest = bus.dead_letters().await.expect("dead letters");
        assert_eq!(rest.len(), 1);
        assert_ne!(rest[0].consumer, replayed.consumer);
        let queued = bus
            .queued_replays(&replayed.consumer, 10)
            .await
            .expect("queue");
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].1, 7, "the log position travels with the replay");
        assert!(bus
            .queued_replays(&rest[0].consumer, 10)
            .await
            .expect("queue")
            .is_empty());
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
