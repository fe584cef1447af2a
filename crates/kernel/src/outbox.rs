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
            let mut pruned_at: Option<std::time::Instant> = None;
            let mut marks = PublishedMarks::default();
            let mut measured_at: Option<std::time::Instant> = None;
            loop {
                if measured_at.is_none_or(|at| at.elapsed() >= MEASURE_EVERY) {
                    measured_at = Some(std::time::Instant::now());
                    if let Err(e) = measure(name, &db).await {
                        tracing::debug!(context = name, error = %e, "measuring the outbox failed");
                    }
                }
                if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    pruned_at = Some(std::time::Instant::now());
                    if let Err(e) = marks.prune(&db, KEEP_PUBLISHED).await {
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
const PRUNE_EVERY: Duration = Duration::from_secs(30);
const MEASURE_EVERY: Duration = Duration::from_secs(1);

// The relay's statements. Each finds its rows by an index (the sequence
// number, or the partial index of unpublished rows), so none slows down as
// published rows pile up; a unit test holds SQLite's plans to that.
const READ_PENDING_SQL: &str =
    "SELECT seq, envelope FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1";
const MEASURE_SQL: &str = "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE published_at IS NULL";
const NEWEST_PUBLISHED_SQL: &str = "SELECT MAX(seq) FROM outbox WHERE published_at IS NOT NULL";
const PRUNE_SQL: &str = "DELETE FROM outbox WHERE seq IN (
    SELECT seq FROM outbox WHERE seq <= $1 AND published_at IS NOT NULL ORDER BY seq LIMIT $2)";

fn mark_published_sql(rows: usize) -> String {
    let placeholders: Vec<String> = (0..rows).map(|i| format!("${}", i + 2)).collect();
    format!(
        "UPDATE outbox SET published_at = $1 WHERE seq IN ({}) AND published_at IS NULL",
        placeholders.join(", ")
    )
}

/// The relay's backlog as gauges: `mercato_outbox_pending` (events recorded,
/// not yet published) and `mercato_outbox_lag_seconds` (age of the oldest).
async fn measure(context: &'static str, db: &Db) -> Result<(), sqlx::Error> {
    let (pending, oldest): (i64, Option<String>) =
        sqlx::query_as(MEASURE_SQL).fetch_one(db.pool()).await?;
    let lag = oldest
        .and_then(|t| crate::time::from_db(&t).ok())
        .map(|t| (crate::time::now() - t).num_milliseconds())
        .map_or(0.0, |ms| ms.max(0) as f64 / 1000.0);
    metrics::gauge!("mercato_outbox_pending", "context" => context).set(pending as f64);
    metrics::gauge!("mercato_outbox_lag_seconds", "context" => context).set(lag);
    Ok(())
}

/// Publishes one batch of pending events; returns how many.
pub async fn relay_batch(db: &Db, bus: &dyn EventBus) -> anyhow::Result<usize> {
    let rows: Vec<(i64, String)> = sqlx::query_as(READ_PENDING_SQL)
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
    let sql = mark_published_sql(rows.len());
    let mut query = sqlx::query(&sql).bind(crate::time::to_db(&crate::time::now()));
    for (seq, _) in &rows {
        query = query.bind(*seq);
    }
    db.execute(query).await?;
    Ok(rows.len())
}

/// How long published rows stay, for inspection.
const KEEP_PUBLISHED: Duration = Duration::from_secs(3600);
/// Rows deleted per statement, so that pruning never holds the writer long.
const PRUNE_BATCH: i64 = 2_000;

/// Where the published rows stood at past moments: the newest mark older
/// than the retention tells which rows may go, by sequence number, so that
/// pruning never has to scan rows by time, however large the outbox is.
#[derive(Default)]
struct PublishedMarks(std::collections::VecDeque<(std::time::Instant, i64)>);

impl PublishedMarks {
    async fn prune(&mut self, db: &Db, keep: Duration) -> Result<u64, sqlx::Error> {
        let (newest,): (Option<i64>,) = sqlx::query_as(NEWEST_PUBLISHED_SQL)
            .fetch_one(db.pool())
            .await?;
        if let Some(seq) = newest {
            self.0.push_back((std::time::Instant::now(), seq));
        }
        let mut upto = None;
        while let Some(&(at, seq)) = self.0.front() {
            if at.elapsed() < keep {
                break;
            }
            upto = Some(seq);
            self.0.pop_front();
        }
        match upto {
            Some(seq) => prune_upto(db, seq).await,
            None => Ok(0),
        }
    }
}

/// Deletes the published rows up to sequence number `upto`, a batch per
/// statement; rows not yet published stay whatever their number.
pub async fn prune_upto(db: &Db, upto: i64) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let done = db
            .execute(sqlx::query(PRUNE_SQL).bind(upto).bind(PRUNE_BATCH))
            .await?
            .rows_affected();
        total += done;
        if done < PRUNE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Events recorded but not yet published, for readiness and tests.
pub async fn pending(db: &Db) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(db.pool())
        .await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On SQLite, every statement of the relay reaches its rows through the
    /// sequence number or the index of unpublished rows, never a table scan.
    #[tokio::test]
    async fn the_relay_never_scans_the_outbox() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::sqlite_file(&dir.path().join("o.db"))
            .await
            .expect("sqlite");
        db.migrate("platform", &PLATFORM_MIGRATIONS)
            .await
            .expect("migrations");
        let mark = mark_published_sql(3);
        for sql in [
            READ_PENDING_SQL,
            MEASURE_SQL,
            NEWEST_PUBLISHED_SQL,
            PRUNE_SQL,
            mark.as_str(),
        ] {
            let explain = format!("EXPLAIN QUERY PLAN {}", sql.replace('$', "?"));
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&explain)
                .fetch_all(db.pool())
                .await
                .expect("plan");
            for (_, _, _, step) in rows {
                // A bare SEARCH is MAX(seq) walking back from the newest row.
                let by_key = step == "SEARCH outbox"
                    || step.contains("INTEGER PRIMARY KEY")
                    || step.contains("USING INDEX outbox_unpublished")
                    || step.contains("USING COVERING INDEX outbox_unpublished");
                assert!(!step.contains("outbox") || by_key, "{sql}: {step}");
            }
        }
        db.close().await;
    }
}
