use mercato_kernel::db::{Backend, Db, Migrations, StoreConfig};
use mercato_kernel::outbox::PLATFORM_MIGRATIONS;
use sqlx::Connection as _;

/// A store under test, and what it takes to clean it up.
pub struct TestStore {
    pub db: Db,
    pub backend: Backend,
    /// How to open the same store again, with a pool of its own.
    pub config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

/// A throw-away PostgreSQL database, dropped when this is.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

fn postgres_url() -> Option<String> {
    if std::env::var("MERCATO_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        return None;
    }
    Some(
        std::env::var("MERCATO_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
}

async fn migrated(db: Db, scope: &str, migrations: &Migrations) -> Db {
    db.migrate("platform", &PLATFORM_MIGRATIONS)
        .await
        .expect("platform migrations");
    db.migrate(scope, migrations)
        .await
        .expect("context migrations");
    // Migrating twice is a no-op.
    db.migrate(scope, migrations)
        .await
        .expect("migrations are idempotent");
    db
}

/// The context's store on every backend, migrated and empty.
pub async fn stores(scope: &str, migrations: &Migrations) -> Vec<TestStore> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join(format!("{scope}.db")).display()
        ),
        schema: None,
        max_connections: 8,
    };
    let db = Db::connect(&config).await.expect("sqlite opens");
    out.push(TestStore {
        db: migrated(db, scope, migrations).await,
        backend: Backend::Sqlite,
        config,
        _dir: Some(dir),
        _pg: None,
    });
    if let Some(admin_url) = postgres_url() {
        let name = format!("mercato_t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed by the store suite (scripts/services starts it): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let _ = admin.close().await;
        let guard = PgDatabase {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let url = match admin_url.rfind('/') {
            Some(i) => format!("{}/{name}", &admin_url[..i]),
            None => panic!("MERCATO_TEST_POSTGRES_URL needs a database path"),
        };
        let config = StoreConfig {
            url,
            schema: Some(scope.to_owned()),
            max_connections: 5,
        };
        let db = Db::connect(&config).await.expect("postgres opens");
        out.push(TestStore {
            db: migrated(db, scope, migrations).await,
            backend: Backend::Postgres,
            config,
            _dir: None,
            _pg: Some(guard),
        });
    }
    out
}

pub async fn pending_events(db: &Db) -> Vec<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT event_type FROM outbox WHERE published_at IS NULL ORDER BY seq")
            .fetch_all(db.pool())
            .await
            .expect("outbox readable");
    rows.into_iter().map(|r| r.0).collect()
}

pub fn redis_url() -> String {
    std::env::var("MERCATO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis key prefix of a test's own (on the Redis named by
/// `MERCATO_TEST_REDIS_URL`, the local one by default); its keys are deleted
/// when this is dropped, panics included.
pub struct RedisKeys {
    pub prefix: String,
    conn: redis::Connection,
}

impl RedisKeys {
    pub fn new() -> RedisKeys {
        let url = redis_url();
        let conn = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(5)))
            .unwrap_or_else(|e| {
                panic!(
                    "Redis at {url} is needed by the store suite (scripts/services starts it): {e}"
                )
            });
        RedisKeys {
            prefix: format!("test-{}", uuid::Uuid::now_v7().simple()),
            conn,
        }
    }

    /// The connection the code under test uses.
    pub fn connection(&self) -> mercato_kernel::cache::RedisConnection {
        mercato_kernel::cache::redis_connection(&redis_url(), std::time::Duration::from_secs(2))
            .expect("redis client")
    }

    /// The keys under the prefix, without it, sorted.
    pub fn keys(&mut self) -> Vec<String> {
        use redis::Commands as _;
        let stored: Vec<String> = self
            .conn
            .keys(format!("{}:*", self.prefix))
            .expect("redis keys");
        let skip = self.prefix.len() + 1;
        let mut keys: Vec<String> = stored.into_iter().map(|k| k[skip..].to_owned()).collect();
        keys.sort();
        keys
    }

    /// The hash under `<prefix>:<key>`.
    pub fn hash(&mut self, key: &str) -> std::collections::HashMap<String, String> {
        use redis::Commands as _;
        self.conn
            .hgetall(format!("{}:{key}", self.prefix))
            .expect("redis hgetall")
    }
}

impl RedisKeys {
    /// Seconds `<prefix>:<key>` has left to live (-1 without expiry, -2 when absent).
    pub fn ttl(&mut self, key: &str) -> i64 {
        use redis::Commands as _;
        self.conn
            .ttl(format!("{}:{key}", self.prefix))
            .expect("redis ttl")
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        use redis::Commands as _;
        let keys: Vec<String> = self
            .conn
            .keys(format!("{}:*", self.prefix))
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = self.conn.del(&keys);
        }
    }
}
