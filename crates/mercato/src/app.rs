//! The composition root: builds every context on its store, connects them
//! through the bus and the client traits, and serves the gateway.

use crate::config::Settings;
use anyhow::Context as _;
use mercato_gateway::{GatewayConfig, Probe, Probes};
use mercato_kernel::auth::TokenKeys;
use mercato_kernel::bus::{EventBus, LogBus};
use mercato_kernel::db::{Db, Migrations, StoreConfig};
use mercato_kernel::outbox::{Outbox, PLATFORM_MIGRATIONS};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The services of every context, for the server, admin commands and demo data.
#[derive(Clone)]
pub struct Contexts {
    /// The bus every context publishes to and consumes from.
    pub bus: Arc<dyn EventBus>,
    /// The embedded bus's log, for inspection (dead letters, replays).
    pub log: LogBus,
    pub identity: Arc<mercato_identity::IdentityService>,
    pub catalog: Arc<mercato_catalog::CatalogService>,
}

/// A built, not yet serving, Mercato.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    stores: Vec<Db>,
    pub contexts: Contexts,
}

/// Opens a context's store and brings its schema up to date.
async fn open_store(
    settings: &Settings,
    context: &str,
    migrations: &Migrations,
) -> anyhow::Result<Db> {
    let config = match &settings.store.url {
        Some(url) => StoreConfig {
            url: url.clone(),
            schema: Some(context.to_owned()),
            max_connections: settings.store.max_connections,
        },
        None => StoreConfig {
            url: format!(
                "sqlite://{}?mode=rwc",
                settings.data_dir.join(format!("{context}.db")).display()
            ),
            schema: None,
            max_connections: 4,
        },
    };
    let db = Db::connect(&config)
        .await
        .with_context(|| format!("opening the {context} store"))?;
    db.migrate("platform", &PLATFORM_MIGRATIONS).await?;
    db.migrate(context, migrations)
        .await
        .with_context(|| format!("migrating the {context} store"))?;
    Ok(db)
}

/// The token signing secret: configured, or generated once and kept in the data dir.
fn jwt_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &settings.auth.jwt_secret {
        anyhow::ensure!(
            secret.len() >= 32,
            "auth.jwt_secret must be at least 32 bytes"
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let path = settings.data_dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(hex_secret) => {
            hex::decode(hex_secret.trim()).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            write_private(&path, &hex::encode(secret))?;
            tracing::info!(path = %path.display(), "generated a token signing secret");
            Ok(secret.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn store_probe(db: &Db) -> Probe {
    let db = db.clone();
    Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
    })
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
        let keys = Arc::new(TokenKeys::from_secret(
            &jwt_secret(&settings)?,
            settings.auth.token_ttl_secs,
        ));
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        let bus_db = open_store(
            &settings,
            "events",
            &Migrations {
                sqlite: &[],
                postgres: &[],
            },
        )
        .await?;
        let log = LogBus::open(bus_db.clone()).await?;
        let bus: Arc<dyn EventBus> = Arc::new(log.clone());

        // identity
        let identity_db = open_store(
            &settings,
            mercato_identity::NAME,
            &mercato_identity::MIGRATIONS,
        )
        .await?;
        let identity_outbox = Outbox::new();
        tasks.push(identity_outbox.spawn_relay(
            mercato_identity::NAME,
            identity_db.clone(),
            bus.clone(),
            shutdown.clone(),
        ));
        let identity = Arc::new(mercato_identity::IdentityService::new(
            mercato_identity::store::IdentityStore::new(identity_db.clone(), identity_outbox),
            keys.clone(),
            mercato_identity::domain::PasswordHasherConfig {
                memory_kib: settings.auth.password_memory_kib,
                iterations: settings.auth.password_iterations,
            },
        )?);

        // catalog
        let catalog_db = open_store(
            &settings,
            mercato_catalog::NAME,
            &mercato_catalog::MIGRATIONS,
        )
        .await?;
        let catalog_outbox = Outbox::new();
        tasks.push(catalog_outbox.spawn_relay(
            mercato_catalog::NAME,
            catalog_db.clone(),
            bus.clone(),
            shutdown.clone(),
        ));
        let catalog = Arc::new(mercato_catalog::CatalogService::new(
            mercato_catalog::store::CatalogStore::new(catalog_db.clone(), catalog_outbox),
        ));

        let api = utoipa_axum::router::OpenApiRouter::new()
            .merge(mercato_identity::routes::router(identity.clone()))
            .merge(mercato_catalog::routes::router(catalog.clone()));

        let stores = vec![bus_db.clone(), identity_db.clone(), catalog_db.clone()];
        let mut probes: Vec<(String, Probe)> = vec![("bus".into(), {
            let bus = bus.clone();
            Arc::new(move || {
                let bus = bus.clone();
                Box::pin(async move { bus.ping().await.map_err(|e| e.to_string()) })
            })
        })];
        probes.push(("identity".into(), store_probe(&identity_db)));
        probes.push(("catalog".into(), store_probe(&catalog_db)));

        let gateway = GatewayConfig {
            body_limit_bytes: settings.http.body_limit_bytes,
            request_timeout: Duration::from_millis(settings.http.request_timeout_ms),
            cors_origins: settings.http.cors_origins.clone(),
        };
        let router = mercato_gateway::build(&gateway, api, keys, Probes::new(probes));
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("listening on {}", settings.addr))?;
        Ok(Application {
            listener,
            router,
            shutdown,
            tasks,
            stores,
            contexts: Contexts {
                bus,
                log,
                identity,
                catalog,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `signal` resolves, then drains requests, stops the
    /// background work and closes the stores.
    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let server_shutdown = shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            server_shutdown.cancel();
        });
        tracing::info!(addr = %self.local_addr(), "mercato is listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving HTTP")?;
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        for db in &self.stores {
            db.close().await;
        }
        tracing::info!("mercato stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
