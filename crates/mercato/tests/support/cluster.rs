//! A distributed Mercato for tests: every context its own process of the
//! real binary (`serve --service <context>`), a gateway in front, events on
//! JetStream under a subject prefix of its own, and optionally state in a
//! PostgreSQL database of its own and caches, carts and rate limits under a
//! Redis key prefix of its own. Everything it created is removed when it is
//! dropped, however the test ends.

#![allow(dead_code)]

#[path = "ports.rs"]
mod ports;

pub use ports::{claim_port, PortClaim};
use reqwest::StatusCode;
use sqlx::Connection as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SERVICES: [&str; 13] = [
    "identity",
    "catalog",
    "search",
    "cart",
    "inventory",
    "orders",
    "payments",
    "notifications",
    "pricing",
    "subscriptions",
    "reviews",
    "recommendations",
    "analytics",
];

pub const JWT_SECRET: &str = "a-jwt-secret-shared-by-every-service";
pub const SERVICE_TOKEN: &str = "a-service-token-for-tests";

pub fn nats_url() -> String {
    std::env::var("MERCATO_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn postgres_admin_url() -> String {
    std::env::var("MERCATO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("MERCATO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// What a cluster runs on.
pub struct Options {
    /// Two replicas of orders, inventory and payments, as `scripts/cluster` runs.
    pub replicated: bool,
    /// State in PostgreSQL (a fresh database, a schema per context) rather
    /// than in SQLite files of each process.
    pub postgres: bool,
    /// Carts, product cache and rate limits in Redis.
    pub redis: bool,
    /// Search processes (`search-0`, `search-1`, ...), each with its own
    /// index and its own consumer (`MERCATO_SEARCH__INSTANCE` = its name).
    pub search_replicas: usize,
    pub nats_url: String,
    /// More environment for every process (a failpoint, say).
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            replicated: false,
            postgres: false,
            redis: false,
            search_replicas: 1,
            nats_url: nats_url(),
            env: Vec::new(),
        }
    }
}

/// One process of the cluster.
pub struct Proc {
    /// `orders-1`, `gateway`.
    pub name: String,
    pub service: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
    /// Held for the cluster's life, so a killed process restarts on its port.
    port: PortClaim,
}

impl Proc {
    pub fn port(&self) -> u16 {
        self.port.port
    }
}

pub struct Cluster {
    pub procs: Vec<Proc>,
    /// `http://127.0.0.1:<port>`.
    pub gateway: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    pub nats_url: String,
    pub prefix: String,
    /// The cluster's PostgreSQL database, when it has one.
    pub database: Option<String>,
    redis_prefix: Option<String>,
    /// Stops the cluster's test card network with the cluster.
    _provider: tokio_util::sync::DropGuard,
}

impl Cluster {
    pub async fn start(options: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
        let mut env: Vec<(String, String)> = vec![
            ("MERCATO_BUS__NATS_URL".into(), options.nats_url.clone()),
            ("MERCATO_BUS__PREFIX".into(), prefix.clone()),
            ("MERCATO_INTERNAL__TOKEN".into(), SERVICE_TOKEN.into()),
            ("MERCATO_AUTH__JWT_SECRET".into(), JWT_SECRET.into()),
            ("MERCATO_AUTH__PASSWORD_MEMORY_KIB".into(), "1024".into()),
            ("MERCATO_AUTH__PASSWORD_ITERATIONS".into(), "1".into()),
            ("MERCATO_HTTP__RATE_LIMIT_PER_SECOND".into(), "0".into()),
            ("MERCATO_LOG".into(), "warn".into()),
            // Some 16 processes per cluster, and two clusters may run at
            // once, on one PostgreSQL of 100 connections.
            ("MERCATO_STORE__MAX_CONNECTIONS".into(), "3".into()),
            // Renewals and their retries within a test's patience.
            ("MERCATO_SUBSCRIPTIONS__POLL_MS".into(), "100".into()),
            (
                "MERCATO_SUBSCRIPTIONS__RETRY_BACKOFF_MS".into(),
                "200".into(),
            ),
        ];
        let mut database = None;
        if options.postgres {
            let admin_url = postgres_admin_url();
            let name = format!("mercato_f_{}", uuid::Uuid::now_v7().simple());
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| {
                    panic!("PostgreSQL at {admin_url} (scripts/services starts it): {e}")
                });
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("create database");
            let _ = admin.close().await;
            env.push(("MERCATO_STORE__URL".into(), database_url(&admin_url, &name)));
            database = Some(name);
        }
        // One test card network for every payments replica, as
        // scripts/cluster runs it: a charge made through one replica is
        // refunded through the other.
        let provider_stop = tokio_util::sync::CancellationToken::new();
        let (provider, _) = mercato_payments::testprovider::TestProvider::default()
            .serve(([127, 0, 0, 1], 0).into(), provider_stop.clone())
            .await
            .expect("test provider");
        env.push((
            "MERCATO_PAYMENTS__PROVIDER_URL".into(),
            format!("http://{provider}"),
        ));
        let redis_prefix = options.redis.then(|| prefix.clone());
        if let Some(p) = &redis_prefix {
            env.push(("MERCATO_CACHE__REDIS_URL".into(), redis_url()));
            env.push(("MERCATO_CACHE__KEY_PREFIX".into(), p.clone()));
        }

        let mut procs = Vec::new();
        for service in SERVICES {
            let replicas = match service {
                "orders" | "inventory" | "payments" | "subscriptions" if options.replicated => 2,
                "search" => options.search_replicas.max(1),
                _ => 1,
            };
            for i in 0..replicas {
                let name = format!("{service}-{i}");
                procs.push(Proc {
                    data_dir: dir.path().join(&name),
                    name,
                    service: service.into(),
                    child: None,
                    port: claim_port(),
                });
            }
        }
        for service in SERVICES {
            let urls: Vec<String> = procs
                .iter()
                .filter(|p| p.service == service)
                .map(|p| format!("http://127.0.0.1:{}", p.port()))
                .collect();
            env.push((
                format!("MERCATO_SERVICES__{}", service.to_uppercase()),
                urls.join(","),
            ));
        }
        let gateway = claim_port();
        let gateway_port = gateway.port;
        procs.push(Proc {
            name: "gateway".into(),
            service: "gateway".into(),
            data_dir: dir.path().join("gateway"),
            child: None,
            port: gateway,
        });
        env.extend(options.env);
        let mut cluster = Cluster {
            procs,
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            env,
            dir,
            nats_url: options.nats_url,
            prefix,
            database,
            redis_prefix,
            _provider: provider_stop.drop_guard(),
        };
        for i in 0..cluster.procs.len() {
            cluster.spawn(i);
        }
        cluster
    }

    /// The binary with the cluster's configuration, for admin commands.
    pub fn mercato(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mercato"));
        cmd.env_remove("MERCATO_STORE__URL")
            .env_remove("MERCATO_CACHE__REDIS_URL")
            .env_remove("MERCATO_FAILPOINT")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn spawn(&mut self, i: usize) {
        let log_path = self.log_path(&self.procs[i].name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("log file");
        let proc = &self.procs[i];
        let mut cmd = self.mercato();
        cmd.args([
            "serve",
            "--service",
            &proc.service,
            "--addr",
            &format!("127.0.0.1:{}", proc.port()),
            "--data-dir",
        ])
        .arg(&proc.data_dir)
        .stdout(Stdio::null())
        .stderr(log);
        if proc.service == "search" {
            // The processes share a host name: each search replica is named,
            // the same again when it restarts.
            cmd.env("MERCATO_SEARCH__INSTANCE", &proc.name);
        }
        let child = cmd.spawn().expect("mercato starts");
        self.procs[i].child = Some(child);
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn index(&self, name: &str) -> usize {
        self.procs
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    pub fn proc(&self, name: &str) -> &Proc {
        &self.procs[self.index(name)]
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for p in &self.procs {
            let text = std::fs::read_to_string(self.log_path(&p.name)).unwrap_or_default();
            if !text.is_empty() {
                all.push_str(&format!("--- {}\n{text}\n", p.name));
            }
        }
        all
    }

    /// The notification sink of the notifications process.
    pub fn sent_notifications(&self) -> PathBuf {
        self.proc("notifications-0")
            .data_dir
            .join("notifications/sent.jsonl")
    }

    /// Waits until every running process and the gateway are ready.
    pub async fn ready(&mut self) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let started = Instant::now();
        // The gateway last: its readiness needs a ready replica of each context.
        let mut order: Vec<usize> = (0..self.procs.len()).collect();
        order.sort_by_key(|i| self.procs[*i].service == "gateway");
        for i in order {
            if self.procs[i].child.is_none() {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/readyz", self.procs[i].port());
            loop {
                if let Ok(r) = client.get(&url).send().await {
                    if r.status() == StatusCode::OK {
                        break;
                    }
                }
                for p in &mut self.procs {
                    if let Some(Ok(Some(status))) = p.child.as_mut().map(Child::try_wait) {
                        let name = p.name.clone();
                        panic!("{name} exited ({status}):\n{}", self.logs());
                    }
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{} did not become ready:\n{}",
                    self.procs[i].name,
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self, name: &str) {
        let i = self.index(name);
        if let Some(mut child) = self.procs[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed process again, on its port and data dir.
    pub async fn restart(&mut self, name: &str) {
        let i = self.index(name);
        assert!(self.procs[i].child.is_none(), "{name} is running");
        self.spawn(i);
        self.ready().await;
    }

    /// Creates an admin in the cluster's stores and returns its email and password.
    pub fn create_admin(&self) -> (String, String) {
        let email = format!("admin-{}@mercato.test", uuid::Uuid::now_v7().simple());
        let password = "admin password for tests".to_owned();
        // Without PostgreSQL, identity's store is a file in its data dir.
        let data_dir = match &self.database {
            Some(_) => self.dir.path().join("admin"),
            None => self.proc("identity-0").data_dir.clone(),
        };
        let out = self
            .mercato()
            .args([
                "admin",
                "create-user",
                "--email",
                &email,
                "--password",
                &password,
                "--role",
                "admin",
                "--data-dir",
            ])
            .arg(&data_dir)
            .output()
            .expect("admin command runs");
        assert!(
            out.status.success(),
            "admin create-user: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (email, password)
    }

    /// Closes, from the server side, every PostgreSQL connection of the
    /// cluster's database; returns how many there were.
    pub async fn drop_postgres_connections(&self) -> i64 {
        let name = self.database.as_ref().expect("a cluster on PostgreSQL");
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .expect("PostgreSQL");
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
        )
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("terminate backends");
        let _ = admin.close().await;
        n
    }
}

fn database_url(admin_url: &str, name: &str) -> String {
    match admin_url.rfind('/') {
        Some(i) => format!("{}/{name}", &admin_url[..i]),
        None => panic!("MERCATO_TEST_POSTGRES_URL needs a database path"),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let nats_url = self.nats_url.clone();
        let prefix = self.prefix.clone();
        let database = self.database.clone();
        let redis_prefix = self.redis_prefix.clone();
        // A thread of its own, so that this also runs while a test panics
        // inside a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let mut config = mercato_kernel::bus::jetstream::JetStreamConfig::new(&nats_url);
                config.prefix = prefix;
                if let Ok(Ok(bus)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    mercato_kernel::bus::jetstream::JetStreamBus::connect(config),
                )
                .await
                {
                    let _ = bus.delete_streams().await;
                }
                if let Some(name) = database {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                }
            });
            if let Some(prefix) = redis_prefix {
                delete_redis_keys(&prefix);
            }
        })
        .join();
    }
}

fn delete_redis_keys(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let keys: Vec<String> = match redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
    {
        Ok(keys) => keys,
        Err(_) => return,
    };
    for chunk in keys.chunks(500) {
        let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
}

/// A NATS server with JetStream of a test's own, on a free port with its
/// store in a temporary directory, so that the test can stop and restart it.
pub struct NatsServer {
    port: PortClaim,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    pub fn port(&self) -> u16 {
        self.port.port
    }

    /// `None` when no `nats-server` binary is installed.
    pub async fn start() -> Option<NatsServer> {
        let binary = nats_binary()?;
        let mut server = NatsServer {
            port: claim_port(),
            store: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.spawn(&binary).await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port())
    }

    async fn spawn(&mut self, binary: &Path) {
        let child = Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port().to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port())).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not listen on {}",
                self.port()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL; the store stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on its port and store.
    pub async fn restart(&mut self) {
        self.kill();
        let binary = nats_binary().expect("nats-server");
        self.spawn(&binary).await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn nats_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}
