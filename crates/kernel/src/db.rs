//! Stores: one database per context, on SQLite (embedded) or PostgreSQL
//! (distributed), through sqlx's `Any` driver so that every store is written
//! once and runs on both.
//!
//! Portable SQL rules the stores follow: `$n` placeholders, `BIGINT`/`TEXT`
//! columns only (times as RFC 3339 text, ids as text, money as minor units),
//! `CAST(SUM(..) AS BIGINT)` for sums, `ON CONFLICT` for upserts.
//!
//! On SQLite, write transactions are serialised in process (one writer at a
//! time, in arrival order) and begin with `BEGIN IMMEDIATE`, so a
//! transaction never fails half-way on a lock upgrade; readers run
//! concurrently thanks to WAL.

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Executor as _};
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to reach a context's store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// PostgreSQL only: the schema this context's tables live in.
    pub schema: Option<String>,
    pub max_connections: u32,
}

/// A connection pool to one context's database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    writer: Option<Arc<Mutex<()>>>,
}

/// A write transaction. On SQLite it also holds the in-process writer turn.
///
/// Cancel-safe: a transaction dropped anywhere short of a successful commit
/// (its request cancelled because the client hung up, an error returned
/// with `?`, a time-out) is rolled back by a task of its own before its
/// connection goes back to the pool, and the writer turn is handed on only
/// once the store has left the transaction. A connection that cannot be
/// brought back to a clean state is closed, never pooled.
pub struct Tx {
    lease: Lease,
    on_commit: Vec<Arc<Notify>>,
}

impl Tx {
    /// The connection to run statements on.
    pub fn conn(&mut self) -> &mut AnyConnection {
        self.lease.conn()
    }

    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        // Dropped while COMMIT is in flight, the lease rolls back after it:
        // on a committed transaction that is a no-op.
        match self.lease.conn().execute("COMMIT").await {
            Ok(_) => {
                self.lease.settled();
                let on_commit = std::mem::take(&mut self.on_commit);
                drop(self);
                for n in &on_commit {
                    n.notify_one();
                }
                Ok(())
            }
            // A failed COMMIT (SQLite's SQLITE_BUSY, say) can leave the
            // transaction open: roll it back before anyone else gets the
            // connection or the writer turn.
            Err(e) => {
                self.lease.leave().await;
                Err(e)
            }
        }
    }

    /// Rolls back, and answers once the store has left the transaction
    /// (dropping a `Tx` rolls back too, but in a task of its own).
    pub async fn rollback(mut self) {
        self.lease.leave().await;
    }

    /// Wakes `n` once this transaction has committed (the outbox relay, say).
    pub fn notify_on_commit(&mut self, n: &Arc<Notify>) {
        if !self.on_commit.iter().any(|x| Arc::ptr_eq(x, n)) {
            self.on_commit.push(n.clone());
        }
    }
}

/// A pooled connection and, on SQLite, the writer turn, held together until
/// the connection is known to be idle outside any transaction.
struct Lease {
    conn: Option<PoolConnection<Any>>,
    writer: Option<OwnedMutexGuard<()>>,
    state: LeaseState,
    /// Already handed to a cleanup task: if that task is dropped unrun (the
    /// runtime shutting down), the connection is closed, not handed on again.
    cleanup: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LeaseState {
    /// A statement may still be running on the connection.
    Busy,
    /// The connection may be inside a transaction.
    InTransaction,
    /// Idle, outside any transaction: fit for the pool.
    Settled,
}

/// How many connections [`Db::begin`] tries when the first is found lost.
const BEGIN_ATTEMPTS: u32 = 3;

/// How long cleaning up after a cancelled statement may take before the
/// connection is given up and closed.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

impl Lease {
    fn conn(&mut self) -> &mut AnyConnection {
        // Present until the lease is dropped or left: both take `self`.
        self.conn
            .as_deref_mut()
            .expect("a lease holds its connection until it ends")
    }

    fn settled(&mut self) {
        self.state = LeaseState::Settled;
    }

    /// Brings the connection back to a clean state, then returns it to the
    /// pool (or closes it if that fails), then hands on the writer turn.
    /// Cancelled half-way, the lease's drop starts over in a task of its own.
    async fn leave(&mut self) {
        let Some(conn) = self.conn.as_deref_mut() else {
            return;
        };
        let clean = match self.state {
            LeaseState::Settled => true,
            // Waits for the statement in flight: a connection's commands run in order.
            LeaseState::Busy => {
                matches!(
                    tokio::time::timeout(CLEANUP_TIMEOUT, conn.ping()).await,
                    Ok(Ok(()))
                )
            }
            LeaseState::InTransaction => {
                match tokio::time::timeout(CLEANUP_TIMEOUT, conn.execute("ROLLBACK")).await {
                    Ok(Ok(_)) => true,
                    // The transaction had ended (its COMMIT ran) or never begun.
                    Ok(Err(e)) if no_transaction_active(&e) => true,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "rolling back a cancelled transaction failed; closing its connection");
                        false
                    }
                    Err(_) => {
                        tracing::warn!("rolling back a cancelled transaction timed out; closing its connection");
                        false
                    }
                }
            }
        };
        self.state = LeaseState::Settled;
        if !clean {
            if let Some(conn) = self.conn.take() {
                // Closing a connection ends its transaction on either backend.
                let _ = tokio::time::timeout(CLEANUP_TIMEOUT, conn.close()).await;
            }
        }
        // Back to the pool, then the writer turn to the next in line.
        self.conn.take();
        self.writer.take();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.state == LeaseState::Settled || self.conn.is_none() {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
        match runtime {
            Some(rt) if !self.cleanup => {
                let mut rest = Lease {
                    conn: self.conn.take(),
                    writer: self.writer.take(),
                    state: self.state,
                    cleanup: true,
                };
                rt.spawn(async move { rest.leave().await });
            }
            // No runtime to roll back on: close the connection instead, which
            // ends the transaction, rather than pool it.
            _ => {
                if let Some(conn) = self.conn.take() {
                    drop(conn.detach());
                }
            }
        }
        self.state = LeaseState::Settled;
    }
}

/// SQLite's answer to a ROLLBACK outside a transaction (PostgreSQL only warns).
fn no_transaction_active(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.message().contains("no transaction is active"))
}

static DRIVERS: Once = Once::new();

impl Db {
    pub async fn connect(config: &StoreConfig) -> anyhow::Result<Db> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if config.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!(
                "unsupported store url {:?}: expected sqlite: or postgres:",
                config.url
            );
        };
        if let (Backend::Postgres, Some(schema)) = (backend, config.schema.as_deref()) {
            validate_identifier(schema)?;
            let mut conn = AnyConnection::connect(&config.url)
                .await
                .with_context(|| format!("connecting to {}", redact(&config.url)))?;
            // Replicas starting together race on this; the loser's unique
            // violation means the schema is there, which is all it wanted.
            match conn
                .execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
                .await
            {
                Ok(_) => {}
                Err(e) if crate::error::is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
            conn.close().await?;
        }
        let options = AnyConnectOptions::from_str(&config.url)
            .with_context(|| format!("parsing store url {}", redact(&config.url)))?;
        let schema = config.schema.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            // A SQLite file cannot drop its connection; checking one before
            // each use would be a round trip to its thread for nothing.
            .test_before_acquire(backend == Backend::Postgres)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // Checkpoints run in the background (see
                            // `spawn_checkpointer`); the automatic one stays
                            // as a backstop at a size commits rarely reach, so
                            // that a commit seldom pays for copying the WAL back.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                                 PRAGMA wal_autocheckpoint = 20000; \
                                 PRAGMA journal_size_limit = 67108864; \
                                 PRAGMA mmap_size = 268435456;",
                            )
                            .await?;
                        }
                        Backend::Postgres => {
                            if let Some(schema) = schema {
                                conn.execute(format!("SET search_path TO {schema}").as_str())
                                    .await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("opening store {}", redact(&config.url)))?;
        let writer = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        if let Some(writer) = &writer {
            spawn_checkpointer(pool.clone(), writer.clone(), sqlite_path(&config.url));
        }
        Ok(Db {
            pool,
            backend,
            writer,
        })
    }

    /// Opens (creating if needed) a SQLite file.
    pub async fn sqlite_file(path: &std::path::Path) -> anyhow::Result<Db> {
        Self::connect(&StoreConfig {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            schema: None,
            max_connections: 8,
        })
        .await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Takes the writer turn (SQLite) and a connection, in that order.
    async fn lease(&self, state: LeaseState) -> Result<Lease, sqlx::Error> {
        let writer = match &self.writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let conn = self.pool.acquire().await?;
        Ok(Lease {
            conn: Some(conn),
            writer,
            state,
            cleanup: false,
        })
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite, so that it
    /// never fails half-way on a lock upgrade).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        // Counted as inside a transaction from before BEGIN is sent: if this
        // future is dropped while BEGIN is in flight, the lease rolls it back.
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        let mut attempt = 1;
        loop {
            let mut lease = self.lease(LeaseState::InTransaction).await?;
            match lease.conn().execute(begin).await {
                Ok(_) => {
                    return Ok(Tx {
                        lease,
                        on_commit: Vec::new(),
                    })
                }
                Err(e) => {
                    lease.leave().await;
                    // A connection lost between its check out of the pool
                    // and BEGIN (the server dropped it while idle) has done
                    // nothing yet: begin again on another.
                    if attempt < BEGIN_ATTEMPTS && crate::error::is_connection_lost(&e) {
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Runs one write statement on its own, without `BEGIN` and `COMMIT`:
    /// as atomic as a transaction of that one statement, for two round trips
    /// less. On SQLite it takes its turn with the transactions of
    /// [`Db::begin`], and keeps it until the statement has finished, even if
    /// the caller is cancelled.
    pub async fn execute<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        let mut lease = self.lease(LeaseState::Busy).await?;
        let done = query.execute(lease.conn()).await;
        lease.settled();
        done
    }

    /// Readiness: the store answers a trivial query.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Applies this scope's migrations that have not run yet, each in its own
    /// transaction. On PostgreSQL an advisory lock makes concurrent replicas
    /// wait for each other instead of racing.
    pub async fn migrate(&self, scope: &str, migrations: &Migrations) -> anyhow::Result<()> {
        let steps = match self.backend {
            Backend::Sqlite => migrations.sqlite,
            Backend::Postgres => migrations.postgres,
        };
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7420011)")
                .execute(tx.conn())
                .await?;
        }
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                scope TEXT NOT NULL,
                version BIGINT NOT NULL,
                name TEXT NOT NULL,
                applied_at TEXT NOT NULL,
                PRIMARY KEY (scope, version)
            )",
        )
        .execute(tx.conn())
        .await?;
        for m in steps {
            let done: Option<(i64,)> = sqlx::query_as(
                "SELECT version FROM schema_migrations WHERE scope = $1 AND version = $2",
            )
            .bind(scope)
            .bind(m.version)
            .fetch_optional(tx.conn())
            .await?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(m.sql)
                .execute(tx.conn())
                .await
                .with_context(|| format!("migration {scope} {} {}", m.version, m.name))?;
            sqlx::query(
                "INSERT INTO schema_migrations (scope, version, name, applied_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(scope)
            .bind(m.version)
            .bind(m.name)
            .bind(crate::time::to_db(&crate::time::now()))
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A WAL larger than this is copied back and emptied at once.
const WAL_TRUNCATE_BYTES: u64 = 32 * 1024 * 1024;

/// Copies the WAL back into the database file every half second without
/// blocking writers (a passive checkpoint), so that commits do not have to,
/// and reports the WAL's size as `mercato_store_wal_bytes{store}`. Once a
/// checkpoint has caught up, the next commit starts the WAL over and
/// `journal_size_limit` trims the file; but readers that never stop can
/// keep it from starting over, so a WAL past [`WAL_TRUNCATE_BYTES`] is
/// emptied by a truncating checkpoint, with the writer turn held so that
/// writers wait in line rather than on the busy handler. Ends when the pool
/// is closed.
fn spawn_checkpointer(pool: AnyPool, writer: Arc<Mutex<()>>, path: Option<std::path::PathBuf>) {
    let wal = path.as_ref().map(|p| {
        let mut wal = p.clone().into_os_string();
        wal.push("-wal");
        std::path::PathBuf::from(wal)
    });
    let store = path
        .as_ref()
        .and_then(|p| p.file_stem())
        .map_or_else(|| "sqlite".to_owned(), |s| s.to_string_lossy().into_owned());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                if pool.is_closed() {
                    return;
                }
                tracing::debug!(error = %e, "background checkpoint failed");
            }
            let Some(wal) = &wal else {
                continue;
            };
            let mut bytes = tokio::fs::metadata(wal).await.map_or(0, |m| m.len());
            if bytes > WAL_TRUNCATE_BYTES {
                let _turn = writer.lock().await;
                match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&pool)
                    .await
                {
                    Ok(_) => bytes = tokio::fs::metadata(wal).await.map_or(0, |m| m.len()),
                    Err(e) => tracing::debug!(error = %e, "truncating checkpoint failed"),
                }
            }
            metrics::gauge!("mercato_store_wal_bytes", "store" => store.clone()).set(bytes as f64);
        }
    });
}

/// The file of a `sqlite:` url.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or(rest);
    (!file.is_empty() && file != ":memory:").then(|| std::path::PathBuf::from(file))
}

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A context's migrations, one list per backend.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static [Migration],
    pub postgres: &'static [Migration],
}

fn validate_identifier(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    anyhow::ensure!(ok, "invalid schema name {name:?}");
    Ok(())
}

/// A store url without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/shop"),
            "postgres://app:***@db:5432/shop"
        );
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://data/orders.db?mode=rwc"),
            Some(std::path::PathBuf::from("data/orders.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(validate_identifier("orders").is_ok());
        assert!(validate_identifier("orders; DROP TABLE x").is_err());
        assert!(validate_identifier("1orders").is_err());
    }
}
