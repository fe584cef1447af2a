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
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Executor as _, Transaction};
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

/// A write transaction. On SQLite it also holds the in-process writer lock.
pub struct Tx {
    inner: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
    on_commit: Vec<Arc<Notify>>,
}

impl Tx {
    /// The connection to run statements on.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await?;
        for n in &self.on_commit {
            n.notify_one();
        }
        Ok(())
    }

    /// Wakes `n` once this transaction has committed (the outbox relay, say).
    pub fn notify_on_commit(&mut self, n: &Arc<Notify>) {
        if !self.on_commit.iter().any(|x| Arc::ptr_eq(x, n)) {
            self.on_commit.push(n.clone());
        }
    }
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
        if backend == Backend::Sqlite {
            spawn_checkpointer(pool.clone());
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

    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match &self.writer {
            Some(lock) => {
                let guard = lock.clone().lock_owned().await;
                let inner = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(Tx {
                    inner,
                    _writer: Some(guard),
                    on_commit: Vec::new(),
                })
            }
            None => Ok(Tx {
                inner: self.pool.begin().await?,
                _writer: None,
                on_commit: Vec::new(),
            }),
        }
    }

    /// Runs one write statement on its own, without `BEGIN` and `COMMIT`:
    /// as atomic as a transaction of that one statement, for two round trips
    /// less. On SQLite it takes its turn with the transactions of
    /// [`Db::begin`].
    pub async fn execute<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        let _turn = match &self.writer {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        query.execute(&self.pool).await
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

/// Copies the WAL back into the database file every half second without
/// blocking writers (a passive checkpoint), so that commits do not have to.
/// Ends when the pool is closed.
fn spawn_checkpointer(pool: AnyPool) {
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
        }
    });
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
    fn schema_names_are_plain_identifiers() {
        assert!(validate_identifier("orders").is_ok());
        assert!(validate_identifier("orders; DROP TABLE x").is_err());
        assert!(validate_identifier("1orders").is_err());
    }
}
