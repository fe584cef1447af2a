//! The composition root: builds every context on its store, connects them
//! through the bus and the client traits, and serves the gateway.

use crate::config::Settings;
use anyhow::Context as _;
use mercato_contracts::clients::{
    CartClient, CatalogClient, IdentityClient, InventoryClient, OrdersClient, PaymentsClient,
    PricingClient,
};
use mercato_gateway::{ConnectionLimits, GatewayConfig, Probe, Probes};
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
    pub pricing: Arc<mercato_pricing::PricingService>,
    pub subscriptions: Arc<mercato_subscriptions::SubscriptionsService>,
    pub reviews: Arc<mercato_reviews::ReviewsService>,
    pub recommendations: Arc<mercato_recommendations::RecommendationsService>,
    pub analytics: Arc<mercato_analytics::AnalyticsService>,
    /// The built-in test payment provider (idle when a real one is configured).
    pub test_provider: mercato_payments::testprovider::TestProvider,
}

/// A built, not yet serving, Mercato.
pub struct Application {
    listener: TcpListener,
    limits: ConnectionLimits,
    router: axum::Router,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    stores: Vec<Db>,
    pub contexts: Contexts,
}

/// Connections of a context's SQLite file: a thread and a page cache each.
/// Writes take turns whatever their number; the contexts that serve many
/// reads or take part in every checkout get more.
fn sqlite_connections(context: &str) -> u32 {
    match context {
        "catalog" | "cart" | "inventory" | "orders" | "payments" | "identity" | "events" => 8,
        _ => 3,
    }
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
            max_connections: sqlite_connections(context),
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
pub(crate) async fn jetstream(url: &str, settings: &Settings) -> anyhow::Result<JetStreamBus> {
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
        StreamSpec::new("pricing", &["promotion"]),
        StreamSpec::new("subscriptions", &["subscription"]),
        StreamSpec::new("reviews", &["review", "rating"]),
        StreamSpec::new("recommendations", &["experiment"]),
        // Recorded by the gateway (see mercato_gateway::capture).
        StreamSpec::new("interactions", &["interaction"]).keeping(Duration::from_secs(
            settings
                .analytics
                .interactions_retention_days
                .clamp(1, 36_500)
                * 86_400,
        )),
    ];
    JetStreamBus::connect(config)
        .await
        .with_context(|| format!("connecting to NATS JetStream at {url}"))
}

/// The Redis connection of caches and rate limits, when configured.
pub(crate) fn redis_connection(
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

/// What every context is built with.
pub(crate) struct Shared {
    pub keys: Arc<TokenKeys>,
    pub bus: Arc<dyn EventBus>,
    pub shutdown: CancellationToken,
    pub redis: Option<mercato_kernel::cache::RedisConnection>,
}

/// One built context: its service and what the composition serves, runs
/// and closes for it.
pub(crate) struct Parts<S> {
    pub service: Arc<S>,
    pub db: Db,
    pub tasks: Vec<JoinHandle<()>>,
    /// Its public routes, relative to `/api/v1`.
    pub api: utoipa_axum::router::OpenApiRouter,
    /// The endpoints behind its client trait, relative to `/internal/v1`.
    pub internal: Option<utoipa_axum::router::OpenApiRouter>,
}

/// A context's store with its outbox relay running.
async fn store_with_relay(
    settings: &Settings,
    shared: &Shared,
    context: &'static str,
    migrations: &Migrations,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<(Db, Outbox)> {
    let db = open_store(settings, context, migrations).await?;
    let outbox = Outbox::new();
    tasks.push(outbox.spawn_relay(
        context,
        db.clone(),
        shared.bus.clone(),
        shared.shutdown.clone(),
    ));
    Ok((db, outbox))
}

/// Registers a user straight in identity's store, for `mercato admin
/// create-user`. Nothing else is opened or started: no other context, no
/// saga runner (which in embedded mode would void the leases of a running
/// server's sagas), no bus. `user.registered` waits in identity's outbox
/// until identity's relay, in the server or the identity service, publishes it.
pub async fn create_user(
    settings: &Settings,
    registration: mercato_identity::service::Registration,
) -> anyhow::Result<mercato_identity::domain::User> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    let db = open_store(
        settings,
        mercato_identity::NAME,
        &mercato_identity::MIGRATIONS,
    )
    .await?;
    let keys = Arc::new(TokenKeys::from_secret(
        &jwt_secret(settings)?,
        settings.auth.token_ttl_secs,
    ));
    let identity = identity_service(settings, db.clone(), Outbox::new(), keys)?;
    let session = identity
        .register(registration)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    db.close().await;
    Ok(session.user)
}

fn identity_service(
    settings: &Settings,
    db: Db,
    outbox: Outbox,
    keys: Arc<TokenKeys>,
) -> anyhow::Result<mercato_identity::IdentityService> {
    mercato_identity::IdentityService::new(
        mercato_identity::store::IdentityStore::new(db, outbox),
        keys,
        mercato_identity::domain::PasswordHasherConfig {
            memory_kib: settings.auth.password_memory_kib,
            iterations: settings.auth.password_iterations,
        },
        mercato_identity::service::LoginThrottle {
            max_failures: settings.auth.login_max_failures,
            window: Duration::from_secs(settings.auth.login_failure_window_secs),
        },
    )
}

pub(crate) async fn build_identity(
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<Parts<mercato_identity::IdentityService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_identity::NAME,
        &mercato_identity::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let identity = Arc::new(identity_service(
        settings,
        db.clone(),
        outbox,
        shared.keys.clone(),
    )?);
    Ok(Parts {
        api: mercato_identity::routes::router(identity.clone()),
        internal: Some(mercato_identity::routes::internal_router(identity.clone())),
        service: identity,
        db,
        tasks,
    })
}

pub(crate) async fn build_catalog(
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<Parts<mercato_catalog::CatalogService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_catalog::NAME,
        &mercato_catalog::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let store = mercato_catalog::store::CatalogStore::new(db.clone(), outbox);
    let filled = store
        .backfill_categories()
        .await
        .context("filling in the categories of earlier products")?;
    if filled > 0 {
        tracing::info!(
            products = filled,
            "categories of earlier products filled in"
        );
    }
    let catalog = mercato_catalog::CatalogService::new(store);
    // With Redis, products and SKU lookups are cached there for every
    // catalog replica (see mercato_catalog::cache).
    let catalog = Arc::new(match &shared.redis {
        Some(conn) => catalog.with_shared_cache(Arc::new(mercato_kernel::cache::RedisCache::new(
            conn.clone(),
            &settings.cache.key_prefix,
            Duration::from_millis(settings.cache.timeout_ms),
        ))),
        None => catalog,
    });
    if let Some(sub) = catalog.cache_subscription() {
        tasks.push(shared.bus.subscribe(sub, shared.shutdown.clone()));
    }
    tasks.push(
        shared
            .bus
            .subscribe(catalog.rating_subscription(), shared.shutdown.clone()),
    );
    Ok(Parts {
        api: mercato_catalog::routes::router(catalog.clone()),
        internal: Some(mercato_catalog::routes::internal_router(catalog.clone())),
        service: catalog,
        db,
        tasks,
    })
}

pub(crate) async fn build_pricing(
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<Parts<mercato_pricing::PricingService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_pricing::NAME,
        &mercato_pricing::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let pricing = Arc::new(mercato_pricing::PricingService::new(
        mercato_pricing::store::PricingStore::new(db.clone(), outbox),
    ));
    Ok(Parts {
        api: mercato_pricing::routes::router(pricing.clone()),
        internal: Some(mercato_pricing::routes::internal_router(pricing.clone())),
        service: pricing,
        db,
        tasks,
    })
}

pub(crate) async fn build_cart(
    settings: &Settings,
    shared: &Shared,
    catalog: Arc<dyn CatalogClient>,
    pricing: Arc<dyn PricingClient>,
) -> anyhow::Result<Parts<mercato_cart::CartService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_cart::NAME,
        &mercato_cart::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let currencies = settings.shop.resolved_currencies()?;
    let store = mercato_cart::store::CartStore::new(db.clone(), outbox);
    // Carts in Redis when configured (or by default when Redis is there).
    let store = match (
        settings.cart.resolved_store(&settings.cache)?,
        &shared.redis,
    ) {
        (crate::config::CartStore::Redis, Some(conn)) => store.with_redis(
            conn.clone(),
            &settings.cache.key_prefix,
            Duration::from_millis(settings.cart.redis_timeout_ms),
        ),
        (crate::config::CartStore::Redis, None) => {
            anyhow::bail!("cart.store = \"redis\" needs a Redis connection (cache.redis_url)")
        }
        (crate::config::CartStore::Database, _) => store,
    };
    tracing::info!(store = store.backend(), "cart lines");
    let cart = Arc::new(mercato_cart::CartService::new(
        store, catalog, pricing, currencies,
    ));
    tasks.push(
        shared
            .bus
            .subscribe(cart.subscription(), shared.shutdown.clone()),
    );
    Ok(Parts {
        api: mercato_cart::routes::router(cart.clone()),
        internal: Some(mercato_cart::routes::internal_router(cart.clone())),
        service: cart,
        db,
        tasks,
    })
}

pub(crate) async fn build_inventory(
    settings: &Settings,
    shared: &Shared,
    catalog: Arc<dyn CatalogClient>,
) -> anyhow::Result<Parts<mercato_inventory::InventoryService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_inventory::NAME,
        &mercato_inventory::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let inventory = Arc::new(mercato_inventory::InventoryService::new(
        mercato_inventory::store::InventoryStore::new(
            db.clone(),
            outbox,
            settings.inventory.low_stock_threshold,
        ),
        catalog,
    ));
    tasks.push(inventory.spawn_sweeper(
        Duration::from_millis(settings.inventory.reservation_sweep_ms),
        shared.shutdown.clone(),
    ));
    Ok(Parts {
        api: mercato_inventory::routes::router(inventory.clone()),
        internal: Some(mercato_inventory::routes::internal_router(
            inventory.clone(),
        )),
        service: inventory,
        db,
        tasks,
    })
}

/// Payments, with the built-in test provider unless a real one is configured.
pub(crate) async fn build_payments(
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<(
    Parts<mercato_payments::PaymentsService>,
    mercato_payments::testprovider::TestProvider,
)> {
    let mut tasks = Vec::new();
    let test_provider = mercato_payments::testprovider::TestProvider::default();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_payments::NAME,
        &mercato_payments::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let provider_url = match &settings.payments.provider_url {
        Some(url) => url.clone(),
        None => {
            let (addr, task) = test_provider
                .serve(
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    shared.shutdown.clone(),
                )
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
        mercato_payments::store::PaymentsStore::new(db.clone(), outbox),
        Arc::new(provider),
    ));
    let parts = Parts {
        api: mercato_payments::routes::router(payments.clone()),
        internal: Some(mercato_payments::routes::internal_router(payments.clone())),
        service: payments,
        db,
        tasks,
    };
    Ok((parts, test_provider))
}

/// The contexts orders calls.
pub(crate) struct OrdersDeps {
    pub cart: Arc<dyn CartClient>,
    pub catalog: Arc<dyn CatalogClient>,
    pub inventory: Arc<dyn InventoryClient>,
    pub payments: Arc<dyn PaymentsClient>,
    pub pricing: Arc<dyn PricingClient>,
    pub identity: Arc<dyn IdentityClient>,
}

/// Orders and the checkout saga. `sole_runner`: this process is the only one
/// driving this store's sagas, so leases left by an earlier process are void.
pub(crate) async fn build_orders(
    settings: &Settings,
    shared: &Shared,
    deps: OrdersDeps,
    sole_runner: bool,
) -> anyhow::Result<Parts<mercato_orders::OrdersService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_orders::NAME,
        &mercato_orders::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let store = mercato_orders::store::OrdersStore::new(db.clone(), outbox);
    let saga = Arc::new(mercato_orders::SagaRunner::new(
        store.clone(),
        mercato_orders::saga::SagaDeps {
            inventory: deps.inventory,
            payments: deps.payments,
            cart: deps.cart.clone(),
            pricing: deps.pricing.clone(),
        },
        mercato_orders::saga::SagaConfig {
            deadline: Duration::from_millis(settings.orders.saga_deadline_ms),
            step_timeout: Duration::from_millis(settings.orders.step_timeout_ms),
            // A charge and, after a time-out, its void.
            pay_timeout: Duration::from_millis(settings.payments.timeout_ms * 2 + 1000),
            reservation_ttl: Duration::from_secs(settings.orders.reservation_ttl_secs),
            poll_interval: Duration::from_millis(settings.orders.saga_poll_ms),
            // One runner (embedded) voids old leases at start and needs no
            // short ones; replicas take over a dead one's within the lease.
            lease: if sole_runner {
                Duration::from_secs(60)
            } else {
                Duration::from_secs(6)
            },
        },
    ));
    if sole_runner {
        saga.take_over().await?;
    }
    tasks.push(saga.spawn_recovery(shared.shutdown.clone()));
    let orders = Arc::new(
        mercato_orders::OrdersService::new(
            store,
            deps.cart,
            deps.catalog,
            deps.pricing,
            deps.identity,
            saga,
        )
        .with_return_window_days(settings.orders.return_window_days),
    );
    for sub in orders.subscriptions() {
        tasks.push(shared.bus.subscribe(sub, shared.shutdown.clone()));
    }
    Ok(Parts {
        api: mercato_orders::routes::router(orders.clone()),
        internal: Some(mercato_orders::routes::internal_router(orders.clone())),
        service: orders,
        db,
        tasks,
    })
}

/// Subscriptions, with the scheduler that renews them on every replica.
pub(crate) async fn build_subscriptions(
    settings: &Settings,
    shared: &Shared,
    orders: Arc<dyn OrdersClient>,
) -> anyhow::Result<Parts<mercato_subscriptions::SubscriptionsService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_subscriptions::NAME,
        &mercato_subscriptions::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let subscriptions = Arc::new(mercato_subscriptions::SubscriptionsService::new(
        mercato_subscriptions::store::SubscriptionsStore::new(db.clone(), outbox),
        orders,
        mercato_subscriptions::service::SchedulerConfig {
            poll: Duration::from_millis(settings.subscriptions.poll_ms.max(10)),
            retry_backoff: Duration::from_millis(settings.subscriptions.retry_backoff_ms),
            ..Default::default()
        },
    ));
    for sub in subscriptions.subscriptions() {
        tasks.push(shared.bus.subscribe(sub, shared.shutdown.clone()));
    }
    tasks.push(subscriptions.spawn_scheduler(shared.shutdown.clone()));
    Ok(Parts {
        api: mercato_subscriptions::routes::router(subscriptions.clone()),
        internal: None,
        service: subscriptions,
        db,
        tasks,
    })
}

/// Reviews, with the consumers that tell it who bought, sells and is what.
pub(crate) async fn build_reviews(
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<Parts<mercato_reviews::ReviewsService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_reviews::NAME,
        &mercato_reviews::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let moderation = mercato_reviews::domain::Moderation::new(
        settings.reviews.moderation == crate::config::Moderation::Pre,
        &settings.reviews.block_list,
    );
    let reviews = Arc::new(mercato_reviews::ReviewsService::new(
        mercato_reviews::store::ReviewsStore::new(db.clone(), outbox),
        moderation,
    ));
    for sub in reviews.subscriptions() {
        tasks.push(shared.bus.subscribe(sub, shared.shutdown.clone()));
    }
    Ok(Parts {
        api: mercato_reviews::routes::router(reviews.clone()),
        internal: Some(mercato_reviews::routes::internal_router(reviews.clone())),
        service: reviews,
        db,
        tasks,
    })
}

/// Recommendations and experiments, with the consumer that builds the model.
pub(crate) async fn build_recommendations(
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<Parts<mercato_recommendations::RecommendationsService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_recommendations::NAME,
        &mercato_recommendations::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let service = Arc::new(mercato_recommendations::RecommendationsService::new(
        mercato_recommendations::store::RecommendationsStore::new(db.clone(), outbox),
    ));
    tasks.push(
        shared
            .bus
            .subscribe(service.subscription(), shared.shutdown.clone()),
    );
    Ok(Parts {
        api: mercato_recommendations::routes::router(service.clone()),
        internal: Some(mercato_recommendations::routes::internal_router(
            service.clone(),
        )),
        service,
        db,
        tasks,
    })
}

/// Analytics, with the consumer that keeps what its reports are computed
/// from. It publishes nothing: no outbox relay.
pub(crate) async fn build_analytics(
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<Parts<mercato_analytics::AnalyticsService>> {
    let db = open_store(
        settings,
        mercato_analytics::NAME,
        &mercato_analytics::MIGRATIONS,
    )
    .await?;
    let service = Arc::new(mercato_analytics::AnalyticsService::new(
        mercato_analytics::store::AnalyticsStore::new(db.clone()),
    ));
    let tasks = vec![shared
        .bus
        .subscribe(service.subscription(), shared.shutdown.clone())];
    Ok(Parts {
        api: mercato_analytics::routes::router(service.clone()),
        internal: None,
        service,
        db,
        tasks,
    })
}

/// Interaction capture at the public edge: a recorder publishing to the
/// bus `bus` resolves to, unless `analytics.capture` is off.
pub(crate) fn edge_capture(
    settings: &Settings,
    bus: impl Future<Output = Arc<dyn EventBus>> + Send + 'static,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> mercato_gateway::capture::Capture {
    if !settings.analytics.capture {
        return mercato_gateway::capture::Capture::Edge(None);
    }
    let (recorder, task) = mercato_gateway::capture::Recorder::start(
        bus,
        settings.analytics.capture_buffer,
        shutdown.clone(),
    );
    tasks.push(task);
    mercato_gateway::capture::Capture::Edge(Some(recorder))
}

/// JetStream, once it can be reached: tried again with backoff (1 s, at
/// most 30 s between attempts) until it answers.
pub(crate) async fn jetstream_eventually(url: String, settings: Settings) -> Arc<dyn EventBus> {
    let mut pause = Duration::from_secs(1);
    loop {
        match jetstream(&url, &settings).await {
            Ok(bus) => return Arc::new(bus),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64, "the bus is not reachable yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Search: a read model on local disk in every mode (one index per replica).
/// `instance` names the replica in distributed mode, where each reads
/// through a consumer of its own (`search-<instance>`); `None` in embedded
/// mode, where the one index reads as `search`.
pub(crate) async fn build_search(
    settings: &Settings,
    shared: &Shared,
    instance: Option<&str>,
) -> anyhow::Result<Parts<mercato_search::SearchService>> {
    let search = Arc::new(
        mercato_search::SearchService::open(&settings.data_dir.join(mercato_search::NAME))
            .await
            .context("opening the search index")?,
    );
    let started = match instance {
        Some(instance) => {
            search
                .start_instance(instance, shared.bus.clone(), shared.shutdown.clone())
                .await?
        }
        None => {
            search
                .start(shared.bus.clone(), shared.shutdown.clone())
                .await?
        }
    };
    let tasks = vec![started];
    Ok(Parts {
        api: mercato_search::routes::router(search.clone()),
        internal: None,
        db: search.store().db().clone(),
        service: search,
        tasks,
    })
}

pub(crate) async fn build_notifications(
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<Parts<mercato_notifications::NotificationsService>> {
    let mut tasks = Vec::new();
    let (db, outbox) = store_with_relay(
        settings,
        shared,
        mercato_notifications::NAME,
        &mercato_notifications::MIGRATIONS,
        &mut tasks,
    )
    .await?;
    let notifications = Arc::new(mercato_notifications::NotificationsService::new(
        mercato_notifications::store::NotificationsStore::new(db.clone(), outbox),
    )?);
    for sub in notifications.subscriptions() {
        tasks.push(shared.bus.subscribe(sub, shared.shutdown.clone()));
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
        shared.shutdown.clone(),
    ));
    Ok(Parts {
        api: mercato_notifications::routes::router(notifications.clone()),
        internal: None,
        service: notifications,
        db,
        tasks,
    })
}

/// What the built contexts add up to: the routers, the background work,
/// the stores to close and the readiness checks.
pub(crate) struct Assembly {
    pub api: utoipa_axum::router::OpenApiRouter,
    pub internal: utoipa_axum::router::OpenApiRouter,
    pub tasks: Vec<JoinHandle<()>>,
    pub stores: Vec<Db>,
    pub probes: Vec<(String, Probe)>,
}

impl Assembly {
    pub fn new(bus: &Arc<dyn EventBus>) -> Self {
        let bus_for_admin = bus.clone();
        let bus = bus.clone();
        let bus_probe: Probe = Arc::new(move || {
            let bus = bus.clone();
            Box::pin(async move { bus.ping().await.map_err(|e| e.to_string()) })
        });
        Self {
            api: crate::admin::router(bus_for_admin),
            internal: utoipa_axum::router::OpenApiRouter::new(),
            tasks: Vec::new(),
            stores: Vec::new(),
            probes: vec![("bus".into(), bus_probe)],
        }
    }

    /// Takes in a built context and hands back its service.
    pub fn add<S>(&mut self, name: &str, parts: Parts<S>) -> Arc<S> {
        self.tasks.extend(parts.tasks);
        self.probes.push((name.to_owned(), store_probe(&parts.db)));
        self.stores.push(parts.db);
        let api = std::mem::replace(&mut self.api, utoipa_axum::router::OpenApiRouter::new());
        self.api = api.merge(parts.api);
        if let Some(internal) = parts.internal {
            let all = std::mem::replace(
                &mut self.internal,
                utoipa_axum::router::OpenApiRouter::new(),
            );
            self.internal = all.merge(internal);
        }
        parts.service
    }

    /// Serves the storefront's product pages, made of the contexts it names.
    pub fn add_storefront(&mut self, storefront: mercato_gateway::storefront::Storefront) {
        let api = std::mem::replace(&mut self.api, utoipa_axum::router::OpenApiRouter::new());
        self.api = api.merge(mercato_gateway::storefront::router(Arc::new(storefront)));
    }

    /// Takes in the cart context. With its lines in Redis, no cart can be
    /// read or changed without Redis, so a `PING` to it is part of the
    /// readiness (`cart_redis`): a replica that cannot reach Redis leaves
    /// the gateway's rotation and its Service. The product cache and the
    /// rate limits do without Redis and are not checked.
    pub fn add_cart(
        &mut self,
        parts: Parts<mercato_cart::CartService>,
    ) -> Arc<mercato_cart::CartService> {
        let cart = self.add(mercato_cart::NAME, parts);
        if cart.store().backend() == "redis" {
            let store = cart.store().clone();
            let probe: Probe = Arc::new(move || {
                let store = store.clone();
                Box::pin(async move { store.ping_lines().await.map_err(|e| format!("{e:#}")) })
            });
            self.probes.push(("cart_redis".into(), probe));
        }
        cart
    }

    /// The public router with the gateway's middleware, plus the internal
    /// endpoints when a service token is configured.
    pub fn router(
        self,
        settings: &Settings,
        gateway: &GatewayConfig,
        keys: Arc<TokenKeys>,
    ) -> anyhow::Result<(axum::Router, Vec<JoinHandle<()>>, Vec<Db>)> {
        let router =
            mercato_gateway::build(gateway, self.api, keys, Probes::new(self.probes), None);
        // The endpoints behind the client traits, for other processes: only
        // with a service token configured, and never in the public OpenAPI.
        let router = match &settings.internal.token {
            Some(token) => {
                anyhow::ensure!(
                    token.len() >= 16,
                    "internal.token must be at least 16 bytes"
                );
                let (internal, _) = self.internal.split_for_parts();
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
        Ok((router, self.tasks, self.stores))
    }
}

/// The limits on what clients may hold of the server, from `http.*`.
pub(crate) fn connection_limits(settings: &Settings) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: settings.http.max_connections,
        header_read_timeout: Duration::from_millis(settings.http.header_read_timeout_ms),
        idle_timeout: Duration::from_millis(settings.http.idle_timeout_ms),
        ..ConnectionLimits::default()
    }
}

pub(crate) fn gateway_config(
    settings: &Settings,
    redis: Option<&mercato_kernel::cache::RedisConnection>,
) -> GatewayConfig {
    GatewayConfig {
        body_limit_bytes: settings.http.body_limit_bytes,
        request_timeout: Duration::from_millis(settings.http.request_timeout_ms),
        body_read_timeout: Duration::from_millis(settings.http.body_read_timeout_ms),
        cors_origins: settings.http.cors_origins.clone(),
        cors_allow_credentials: settings.http.cors_allow_credentials,
        rate_limit: rate_limit(settings, redis),
        capture: mercato_gateway::capture::Capture::Edge(None),
        pages: settings.web.enabled.then(|| web_pages(settings)),
    }
}

/// The storefront and the admin console, given the gateway's API router.
fn web_pages(settings: &Settings) -> mercato_gateway::Pages {
    let mut currencies = vec![settings.shop.currency.clone()];
    currencies.extend(
        settings
            .shop
            .currencies
            .iter()
            .filter(|c| **c != settings.shop.currency)
            .cloned(),
    );
    let config = mercato_web::WebConfig {
        secure_cookies: settings.web.secure_cookies,
        currency: settings.shop.currency.clone(),
        currencies,
        low_stock_threshold: settings.inventory.low_stock_threshold,
    };
    Arc::new(move |api, prefix| mercato_web::router(api, prefix, config.clone()))
}

impl Application {
    /// Embedded mode: every context in this process, calling each other in
    /// process, on the embedded event log unless `bus.nats_url` is set.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.check()?;
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
        let keys = Arc::new(TokenKeys::from_secret(
            &jwt_secret(&settings)?,
            settings.auth.token_ttl_secs,
        ));
        let shutdown = CancellationToken::new();

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
        let shared = Shared {
            keys: keys.clone(),
            bus: bus.clone(),
            shutdown: shutdown.clone(),
            redis: redis_connection(&settings)?,
        };
        let mut all = Assembly::new(&bus);
        all.stores.push(bus_db);

        let identity = all.add("identity", build_identity(&settings, &shared).await?);
        keys.check_access_with(Arc::new(crate::access::CachedAccess::new(
            identity.clone(),
            Duration::from_millis(settings.auth.access_cache_ms),
        )));
        let catalog = all.add("catalog", build_catalog(&settings, &shared).await?);
        let pricing = all.add("pricing", build_pricing(&settings, &shared).await?);
        let cart =
            all.add_cart(build_cart(&settings, &shared, catalog.clone(), pricing.clone()).await?);
        let inventory = all.add(
            "inventory",
            build_inventory(&settings, &shared, catalog.clone()).await?,
        );
        let (payments, test_provider) = build_payments(&settings, &shared).await?;
        let payments = all.add("payments", payments);
        let orders = build_orders(
            &settings,
            &shared,
            OrdersDeps {
                cart: cart.clone(),
                catalog: catalog.clone(),
                inventory: inventory.clone(),
                payments: payments.clone(),
                pricing: pricing.clone(),
                identity: identity.clone(),
            },
            // Embedded mode runs the only saga runner of this store.
            true,
        )
        .await?;
        let orders = all.add("orders", orders);
        let subscriptions = all.add(
            "subscriptions",
            build_subscriptions(&settings, &shared, orders.clone()).await?,
        );
        let reviews = all.add("reviews", build_reviews(&settings, &shared).await?);
        let recommendations = all.add(
            "recommendations",
            build_recommendations(&settings, &shared).await?,
        );
        let analytics = all.add("analytics", build_analytics(&settings, &shared).await?);
        let search = all.add("search", build_search(&settings, &shared, None).await?);
        let notifications = all.add(
            "notifications",
            build_notifications(&settings, &shared).await?,
        );

        all.add_storefront(mercato_gateway::storefront::Storefront {
            catalog: catalog.clone(),
            inventory: inventory.clone(),
            reviews: reviews.clone(),
            recommendations: recommendations.clone(),
            part_timeout: Duration::from_millis(settings.storefront.part_timeout_ms),
        });
        let mut gateway = gateway_config(&settings, shared.redis.as_ref());
        let capture_bus = bus.clone();
        gateway.capture = edge_capture(
            &settings,
            async move { capture_bus },
            &shutdown,
            &mut all.tasks,
        );
        let (router, tasks, stores) = all.router(&settings, &gateway, keys)?;
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("listening on {}", settings.addr))?;
        Ok(Application {
            listener,
            limits: connection_limits(&settings),
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
                pricing,
                subscriptions,
                reviews,
                recommendations,
                analytics,
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
        serve(
            self.listener,
            self.limits,
            self.router,
            self.shutdown,
            self.tasks,
            self.stores,
            signal,
        )
        .await
    }
}

/// Serves `router` until `signal` resolves, then drains requests, stops the
/// background work and closes the stores.
pub(crate) async fn serve(
    listener: TcpListener,
    limits: ConnectionLimits,
    router: axum::Router,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    stores: Vec<Db>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server_shutdown = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        server_shutdown.cancel();
    });
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    tracing::info!(%addr, "mercato is listening");
    mercato_gateway::server::serve(listener, router, limits, shutdown.clone()).await;
    shutdown.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    for db in &stores {
        db.close().await;
    }
    tracing::info!("mercato stopped");
    Ok(())
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
