//! The composition root: builds every context on its store, connects them
//! through the bus and the client traits, and serves the gateway.

use crate::config::Settings;
use anyhow::Context as _;
use mercato_gateway::{GatewayConfig, Probe, Probes};
use mercato_kernel::auth::TokenKeys;
use mercato_kernel::bus::jetstream::{JetStreamBus, JetStreamConfig, StreamSpec};
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
    pub notifications: Arc<mercato_notifications::NotificationsService>,
    pub search: Arc<mercato_search::SearchService>,
    pub cart: Arc<mercato_cart::CartService>,
    pub inventory: Arc<mercato_inventory::InventoryService>,
    pub payments: Arc<mercato_payments::PaymentsService>,
    pub orders: Arc<mercato_orders::OrdersService>,
    /// The built-in test payment provider (idle when a real one is configured).
    pub test_provider: mercato_payments::testprovider::TestProvider,
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
            max_connections: 8,
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

/// The event bus on NATS JetStream: one stream per publishing context.
async fn jetstream(url: &str, settings: &Settings) -> anyhow::Result<JetStreamBus> {
    let mut config = JetStreamConfig::new(url);
    config.prefix = settings.bus.prefix.clone();
    config.replicas = settings.bus.replicas.max(1);
    config.streams = vec![
        StreamSpec::new("identity", &["user"]),
        StreamSpec::new("catalog", &["product", "price"]),
        StreamSpec::new("inventory", &["inventory", "stock"]),
        StreamSpec::new("cart", &["cart"]),
        StreamSpec::new("orders", &["order"]),
        StreamSpec::new("payments", &["payment"]),
        StreamSpec::new("notifications", &["notification"]),
    ];
    JetStreamBus::connect(config)
        .await
        .with_context(|| format!("connecting to NATS JetStream at {url}"))
}

/// The Redis connection of caches and rate limits, when configured.
fn redis_connection(
    settings: &Settings,
) -> anyhow::Result<Option<mercato_kernel::cache::RedisConnection>> {
    settings
        .cache
        .redis_url
        .as_deref()
        .map(|url| {
            mercato_kernel::cache::redis_connection(
                url,
                Duration::from_millis(settings.cache.timeout_ms),
            )
        })
        .transpose()
}

/// The gateway's limit per client: in Redis, one bucket shared by every
/// gateway replica, when Redis is configured; else in this process.
fn rate_limit(
    settings: &Settings,
    redis: Option<&mercato_kernel::cache::RedisConnection>,
) -> Option<mercato_gateway::ratelimit::RateLimit> {
    use mercato_gateway::ratelimit::{Limiter, LocalLimiter, RateLimit, RedisLimiter};
    let http = &settings.http;
    let limiter: Arc<dyn Limiter> = match redis {
        Some(conn) => Arc::new(RedisLimiter::new(
            conn.clone(),
            &settings.cache.key_prefix,
            http.rate_limit_per_second,
            http.rate_limit_burst,
            Duration::from_millis(settings.cache.timeout_ms),
        )?),
        None => Arc::new(LocalLimiter::new(
            http.rate_limit_per_second,
            http.rate_limit_burst,
        )?),
    };
    Some(RateLimit {
        limiter,
        trust_forwarded_for: http.trust_forwarded_for,
    })
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
        let bus: Arc<dyn EventBus> = match &settings.bus.nats_url {
            None => Arc::new(log.clone()),
            Some(url) => Arc::new(jetstream(url, &settings).await?),
        };

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
        let catalog = mercato_catalog::CatalogService::new(
            mercato_catalog::store::CatalogStore::new(catalog_db.clone(), catalog_outbox),
        );
        // With Redis, products are cached there for every catalog replica.
        let redis = redis_connection(&settings)?;
        let catalog = Arc::new(match &redis {
            Some(conn) => {
                catalog.with_shared_cache(Arc::new(mercato_kernel::cache::RedisCache::new(
                    conn.clone(),
                    &settings.cache.key_prefix,
                    Duration::from_millis(settings.cache.timeout_ms),
                )))
            }
            None => catalog,
        });
        if let Some(sub) = catalog.cache_subscription() {
            tasks.push(bus.subscribe(sub, shutdown.clone()));
        }

        // cart
        let cart_db = open_store(&settings, mercato_cart::NAME, &mercato_cart::MIGRATIONS).await?;
        let cart_outbox = Outbox::new();
        tasks.push(cart_outbox.spawn_relay(
            mercato_cart::NAME,
            cart_db.clone(),
            bus.clone(),
            shutdown.clone(),
        ));
        let cart_currency = mercato_kernel::Currency::parse(&settings.shop.currency)
            .map_err(|e| anyhow::anyhow!("invalid shop.currency: {e}"))?;
        let cart = Arc::new(mercato_cart::CartService::new(
            mercato_cart::store::CartStore::new(cart_db.clone(), cart_outbox),
            catalog.clone(),
            cart_currency,
        ));
        tasks.push(bus.subscribe(cart.subscription(), shutdown.clone()));

        // inventory
        let inventory_db = open_store(
            &settings,
            mercato_inventory::NAME,
            &mercato_inventory::MIGRATIONS,
        )
        .await?;
        let inventory_outbox = Outbox::new();
        tasks.push(inventory_outbox.spawn_relay(
            mercato_inventory::NAME,
            inventory_db.clone(),
            bus.clone(),
            shutdown.clone(),
        ));
        let inventory = Arc::new(mercato_inventory::InventoryService::new(
            mercato_inventory::store::InventoryStore::new(
                inventory_db.clone(),
                inventory_outbox,
                settings.inventory.low_stock_threshold,
            ),
            catalog.clone(),
        ));
        tasks.push(inventory.spawn_sweeper(
            Duration::from_millis(settings.inventory.reservation_sweep_ms),
            shutdown.clone(),
        ));

        let test_provider = mercato_payments::testprovider::TestProvider::default();
        // payments, with the built-in test provider unless a real one is configured
        let payments_db = open_store(
            &settings,
            mercato_payments::NAME,
            &mercato_payments::MIGRATIONS,
        )
        .await?;
        let payments_outbox = Outbox::new();
        tasks.push(payments_outbox.spawn_relay(
            mercato_payments::NAME,
            payments_db.clone(),
            bus.clone(),
            shutdown.clone(),
        ));
        let provider_url = match &settings.payments.provider_url {
            Some(url) => url.clone(),
            None => {
                let (addr, task) = test_provider
                    .serve(SocketAddr::from(([127, 0, 0, 1], 0)), shutdown.clone())
                    .await
                    .context("starting the built-in test payment provider")?;
                tasks.push(task);
                tracing::info!(%addr, "built-in test payment provider listening");
                format!("http://{addr}")
            }
        };
        let provider = mercato_payments::provider::HttpProvider::new(
            &provider_url,
            Duration::from_millis(settings.payments.timeout_ms),
        )?;
        let payments = Arc::new(mercato_payments::PaymentsService::new(
            mercato_payments::store::PaymentsStore::new(payments_db.clone(), payments_outbox),
            Arc::new(provider),
        ));

        // orders and the checkout saga
        let orders_db =
            open_store(&settings, mercato_orders::NAME, &mercato_orders::MIGRATIONS).await?;
        let orders_outbox = Outbox::new();
        tasks.push(orders_outbox.spawn_relay(
            mercato_orders::NAME,
            orders_db.clone(),
            bus.clone(),
            shutdown.clone(),
        ));
        let orders_store =
            mercato_orders::store::OrdersStore::new(orders_db.clone(), orders_outbox);
        let saga = Arc::new(mercato_orders::SagaRunner::new(
            orders_store.clone(),
            inventory.clone(),
            payments.clone(),
            cart.clone(),
            mercato_orders::saga::SagaConfig {
                deadline: Duration::from_millis(settings.orders.saga_deadline_ms),
                step_timeout: Duration::from_millis(settings.orders.step_timeout_ms),
                // A charge and, after a time-out, its void.
                pay_timeout: Duration::from_millis(settings.payments.timeout_ms * 2 + 1000),
                reservation_ttl: Duration::from_secs(settings.orders.reservation_ttl_secs),
                poll_interval: Duration::from_millis(settings.orders.saga_poll_ms),
            },
        ));
        // Embedded mode runs the only saga runner of this store.
        saga.take_over().await?;
        tasks.push(saga.spawn_recovery(shutdown.clone()));
        let orders = Arc::new(mercato_orders::OrdersService::new(
            orders_store,
            cart.clone(),
            catalog.clone(),
            saga,
        ));

        // search: a read model on local disk in every mode (one index per replica)
        let search = Arc::new(
            mercato_search::SearchService::open(&settings.data_dir.join(mercato_search::NAME))
                .await
                .context("opening the search index")?,
        );
        tasks.push(search.start(bus.clone(), shutdown.clone()).await?);

        // notifications
        let notifications_db = open_store(
            &settings,
            mercato_notifications::NAME,
            &mercato_notifications::MIGRATIONS,
        )
        .await?;
        let notifications_outbox = Outbox::new();
        tasks.push(notifications_outbox.spawn_relay(
            mercato_notifications::NAME,
            notifications_db.clone(),
            bus.clone(),
            shutdown.clone(),
        ));
        let notifications = Arc::new(mercato_notifications::NotificationsService::new(
            mercato_notifications::store::NotificationsStore::new(
                notifications_db.clone(),
                notifications_outbox,
            ),
        )?);
        for sub in notifications.subscriptions() {
            tasks.push(bus.subscribe(sub, shutdown.clone()));
        }
        let email = mercato_notifications::channel::email_channel(
            settings.notifications.smtp_url.as_deref(),
            &settings.notifications.from,
            Duration::from_millis(settings.notifications.smtp_timeout_ms),
            &settings.data_dir,
        )?;
        tasks.push(notifications.spawn_dispatcher(
            email,
            mercato_notifications::DispatcherConfig {
                max_attempts: settings.notifications.max_attempts,
                ..Default::default()
            },
            shutdown.clone(),
        ));

        let api = utoipa_axum::router::OpenApiRouter::new()
            .merge(mercato_identity::routes::router(identity.clone()))
            .merge(mercato_catalog::routes::router(catalog.clone()))
            .merge(mercato_cart::routes::router(cart.clone()));
        let api = api.merge(mercato_inventory::routes::router(inventory.clone()));
        let api = api
            .merge(mercato_payments::routes::router(payments.clone()))
            .merge(mercato_orders::routes::router(orders.clone()));

        let api = api.merge(mercato_search::routes::router(search.clone()));
        let mut stores = vec![bus_db.clone(), identity_db.clone(), catalog_db.clone()];
        stores.push(search.store().db().clone());
        stores.push(cart_db.clone());
        stores.push(inventory_db.clone());
        stores.push(payments_db.clone());
        stores.push(orders_db.clone());
        let api = api.merge(mercato_notifications::routes::router(notifications.clone()));
        stores.push(notifications_db.clone());
        let mut probes: Vec<(String, Probe)> = vec![("bus".into(), {
            let bus = bus.clone();
            Arc::new(move || {
                let bus = bus.clone();
                Box::pin(async move { bus.ping().await.map_err(|e| e.to_string()) })
            })
        })];
        probes.push(("identity".into(), store_probe(&identity_db)));
        probes.push(("catalog".into(), store_probe(&catalog_db)));
        probes.push(("notifications".into(), store_probe(&notifications_db)));
        probes.push(("search".into(), store_probe(search.store().db())));
        probes.push(("cart".into(), store_probe(&cart_db)));
        probes.push(("inventory".into(), store_probe(&inventory_db)));
        probes.push(("payments".into(), store_probe(&payments_db)));
        probes.push(("orders".into(), store_probe(&orders_db)));

        let gateway = GatewayConfig {
            body_limit_bytes: settings.http.body_limit_bytes,
            request_timeout: Duration::from_millis(settings.http.request_timeout_ms),
            cors_origins: settings.http.cors_origins.clone(),
            rate_limit: rate_limit(&settings, redis.as_ref()),
        };
        let router = mercato_gateway::build(&gateway, api, keys, Probes::new(probes));
        // The endpoints behind the client traits, for other processes: only
        // with a service token configured, and never in the public OpenAPI.
        let router = match &settings.internal.token {
            Some(token) => {
                anyhow::ensure!(
                    token.len() >= 16,
                    "internal.token must be at least 16 bytes"
                );
                let (internal, _) = utoipa_axum::router::OpenApiRouter::new()
                    .merge(mercato_catalog::routes::internal_router(catalog.clone()))
                    .merge(mercato_inventory::routes::internal_router(
                        inventory.clone(),
                    ))
                    .merge(mercato_payments::routes::internal_router(payments.clone()))
                    .merge(mercato_cart::routes::internal_router(cart.clone()))
                    .split_for_parts();
                let internal = axum::Router::new()
                    .nest(mercato_contracts::internal::PREFIX, internal)
                    .layer(axum::middleware::from_fn_with_state(
                        mercato_kernel::internal::ServiceToken::new(token),
                        mercato_kernel::internal::require_service_token,
                    ));
                router.merge(internal)
            }
            None => router,
        };
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
                notifications,
                search,
                cart,
                inventory,
                payments,
                orders,
                test_provider,
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
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
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
