//! The transactional outbox (invariant 2): a state change and the events it
//! causes are written in one transaction; a relay later hands the events to
//! the bus and marks them published. Delivery is at least once; consumers
//! de-duplicate by event id.

use crate::bus::EventBus;
use crate::db::{Db, Migration, Migrations, Tx};
use crate::event::Envelope;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Tables every context store has: outbox, inbox and idempotency keys.
pub const PLATFORM_MIGRATIONS: Migrations = Migrations {
    sqlite: &[Migration {
        version: 1,
        name: "outbox_inbox_idempotency",
        sql: "
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            envelope TEXT NOT NULL,
            created_at TEXT NOT NULL,
            published_at TEXT
        );
        CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
        CREATE TABLE inbox (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            processed_at TEXT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );
        CREATE TABLE idempotency_keys (
            scope TEXT NOT NULL,
            idem_key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            status BIGINT NOT NULL,
            response TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (scope, idem_key)
        );",
    }],
    postgres: &[Migration {
        version: 1,
        name: "outbox_inbox_idempotency",
        sql: "
        CREATE TABLE outbox (
            seq BIGSERIAL PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            envelope TEXT NOT NULL,
            created_at TEXT NOT NULL,
            published_at TEXT
        );
        CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
        CREATE TABLE inbox (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            processed_at TEXT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );
        CREATE TABLE idempotency_keys (
            scope TEXT NOT NULL,
            idem_key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            status BIGINT NOT NULL,
            response TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (scope, idem_key)
        );",
    }],
};

/// A context's outbox. Cloning shares the relay's wake-up signal.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records events in the caller's transaction; the relay is woken when it commits.
    pub async fn add(&self, tx: &mut Tx, events: &[Envelope]) -> Result<(), sqlx::Error> {
        for env in events {
            let json = serde_json::to_string(env)
                .map_err(|e| sqlx::Error::Protocol(format!("serialising event: {e}")))?;
            sqlx::query(
                "INSERT INTO outbox (event_id, event_type, envelope, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(env.id.to_string())
            .bind(&env.event_type)
            .bind(json)
            .bind(crate::time::to_db(&env.occurred_at))
            .execute(tx.conn())
            .await?;
        }
        if !events.is_empty() {
            tx.notify_on_commit(&self.wake);
        }
        Ok(())
    }

    /// Publishes what is pending, in order, until told to stop.
    pub fn spawn_relay(
        &self,
        name: &'static str,
        db: Db,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let wake = self.wake.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            let mut pruned_at = std::time::Instant::now();
            loop {
                if pruned_at.elapsed() >= PRUNE_EVERY {
                    pruned_at = std::time::Instant::now();
                    if let Err(e) = prune(&db, chrono::Duration::hours(24)).await {
                        tracing::warn!(context = name, error = %format!("{e:#}"), "pruning the outbox failed");
                    }
                }
                match relay_batch(&db, bus.as_ref()).await {
                    // A full batch: more may be waiting. After a partial one,
                    // rows committed since the read have woken the relay.
                    Ok(n) if n >= RELAY_BATCH as usize => {
                        failures = 0;
                        continue;
                    }
                    Ok(_) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(context = name, error = %format!("{e:#}"), "outbox relay failed; will retry");
                    }
                }
                let pause = if failures == 0 {
                    Duration::from_millis(500)
                } else {
                    crate::resilience::backoff(
                        failures,
                        Duration::from_millis(100),
                        Duration::from_secs(5),
                    )
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        })
    }
}

const RELAY_BATCH: i64 = 256;
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Publishes one batch of pending events; returns how many.
pub async fn relay_batch(db: &Db, bus: &dyn EventBus) -> anyhow::Result<usize> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, envelope FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(RELAY_BATCH)
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut events = Vec::with_capacity(rows.len());
    for (_, json) in &rows {
        events.push(serde_json::from_str::<Envelope>(json)?);
    }
    bus.publish(&events).await?;
    // Exactly the rows read, not their range: on PostgreSQL sequence numbers
    // are taken before commit, so a row inside the range may have committed
    // after the read and is not published yet.
    let placeholders: Vec<String> = (0..rows.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "UPDATE outbox SET published_at = $1 WHERE seq IN ({}) AND published_at IS NULL",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(crate::time::to_db(&crate::time::now()));
    for (seq, _) in &rows {
        query = query.bind(*seq);
    }
    db.execute(query).await?;
    Ok(rows.len())
}

/// Drops published rows older than `keep`: they stay a while for inspection.
/// Rows are deleted in sequence order, so the scan stops at the first row
/// that is still wanted.
pub async fn prune(db: &Db, keep: chrono::Duration) -> anyhow::Result<u64> {
    let horizon = crate::time::to_db(&(crate::time::now() - keep));
    let mut tx = db.begin().await?;
    let (upto,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM outbox WHERE published_at IS NOT NULL AND published_at < $1
           AND seq < (SELECT COALESCE(MIN(seq), 9223372036854775807) FROM outbox WHERE published_at IS NULL)",
    )
    .bind(&horizon)
    .fetch_one(tx.conn())
    .await?;
    let done = sqlx::query("DELETE FROM outbox WHERE seq <= $1 AND published_at IS NOT NULL")
        .bind(upto)
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Events recorded but not yet published, for readiness and tests.
pub async fn pending(db: &Db) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(db.pool())
        .await?;
    Ok(n)
}
