//! Distributed mode: `serve --service <context>` runs one context in this
//! process and reaches the contexts it calls over HTTP; `serve --service
//! gateway` runs the public entry point that routes to them (see
//! [`crate::proxy`]).

use crate::access::CachedAccess;
use crate::app::{self, Assembly, OrdersDeps, Shared};
use crate::config::{Settings, CONTEXTS};
use anyhow::Context as _;
use mercato_contracts::http::{
    HttpCartClient, HttpCatalogClient, HttpIdentityClient, HttpInventoryClient, HttpOrdersClient,
    HttpPaymentsClient, HttpPricingClient, ServiceClient, ServiceConfig,
};
use mercato_gateway::ConnectionLimits;
use mercato_kernel::auth::TokenKeys;
use mercato_kernel::bus::EventBus;
use mercato_kernel::db::Db;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `--service` accepts.
pub const SERVICES: [&str; 14] = [
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
    "gateway",
];

/// One context, or the gateway, built and not yet serving.
pub struct Service {
    listener: TcpListener,
    limits: ConnectionLimits,
    router: axum::Router,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    stores: Vec<Db>,
}

impl Service {
    pub async fn build(settings: Settings, name: &str) -> anyhow::Result<Service> {
        settings.check()?;
        let shutdown = CancellationToken::new();
        let (router, tasks, stores) = if name == "gateway" {
            let (router, tasks) = crate::proxy::build(&settings, shutdown.clone())?;
            (router, tasks, Vec::new())
        } else {
            build_context(&settings, name, shutdown.clone()).await?
        };
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("listening on {}", settings.addr))?;
        tracing::info!(service = name, "distributed mode");
        Ok(Service {
            listener,
            limits: app::connection_limits(&settings),
            router,
            shutdown,
            tasks,
            stores,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        app::serve(
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

/// The signing secret of access tokens: every process must verify the tokens
/// identity issues, so it cannot be generated per process.
pub(crate) fn shared_jwt_secret(settings: &Settings) -> anyhow::Result<&str> {
    let secret = settings.auth.jwt_secret.as_deref().ok_or_else(|| {
        anyhow::anyhow!("distributed mode needs auth.jwt_secret (MERCATO_AUTH__JWT_SECRET), the same in every service")
    })?;
    anyhow::ensure!(
        secret.len() >= 32,
        "auth.jwt_secret must be at least 32 bytes"
    );
    Ok(secret)
}

/// The HTTP client of `target`'s internal endpoints, for `caller`.
pub(crate) fn client(
    settings: &Settings,
    caller: &str,
    target: &'static str,
    config: ServiceConfig,
) -> anyhow::Result<ServiceClient> {
    let urls = settings.services.urls(target);
    anyhow::ensure!(
        !urls.is_empty(),
        "{caller} calls {target}: set services.{target} (MERCATO_SERVICES__{}) to its replicas' URLs",
        target.to_uppercase()
    );
    let token = settings.internal.token.as_deref().unwrap_or_default();
    Ok(ServiceClient::new(target, &urls, token, config)?)
}

async fn build_context(
    settings: &Settings,
    name: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<(axum::Router, Vec<JoinHandle<()>>, Vec<Db>)> {
    anyhow::ensure!(
        CONTEXTS.contains(&name),
        "unknown service {name:?}; one of {}",
        crate::distributed::SERVICES.join(", ")
    );
    let token = settings.internal.token.as_deref().ok_or_else(|| {
        anyhow::anyhow!("distributed mode needs internal.token (MERCATO_INTERNAL__TOKEN)")
    })?;
    anyhow::ensure!(
        token.len() >= 16,
        "internal.token must be at least 16 bytes"
    );
    // The embedded event log lives in one process's data dir; services share
    // their events through JetStream.
    let nats_url = settings.bus.nats_url.as_deref().ok_or_else(|| {
        anyhow::anyhow!("distributed mode needs bus.nats_url (MERCATO_BUS__NATS_URL)")
    })?;
    let needs: &[&'static str] = match name {
        "cart" => &["catalog", "pricing"],
        "inventory" => &["catalog"],
        "orders" => &["cart", "catalog", "inventory", "payments", "pricing"],
        "subscriptions" => &["orders"],
        _ => &[],
    };
    for target in needs {
        anyhow::ensure!(
            !settings.services.urls(target).is_empty(),
            "{name} calls {target}: set services.{target} (MERCATO_SERVICES__{}) to its replicas' URLs",
            target.to_uppercase()
        );
    }
    let keys = Arc::new(TokenKeys::from_secret(
        shared_jwt_secret(settings)?.as_bytes(),
        settings.auth.token_ttl_secs,
    ));
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    let bus: Arc<dyn EventBus> = Arc::new(app::jetstream(nats_url, settings).await?);
    let shared = Shared {
        keys: keys.clone(),
        bus: bus.clone(),
        shutdown,
        redis: app::redis_connection(settings)?,
    };
    let mut all = Assembly::new(&bus);
    let calls = ServiceConfig::default();
    // Every context refuses the tokens of disabled accounts (see crate::access).
    let access_ttl = Duration::from_millis(settings.auth.access_cache_ms);
    if name != "identity" {
        let identity = HttpIdentityClient(client(settings, name, "identity", calls.clone())?);
        keys.check_access_with(Arc::new(CachedAccess::new(Arc::new(identity), access_ttl)));
    }
    match name {
        "identity" => {
            let identity = all.add(name, app::build_identity(settings, &shared).await?);
            keys.check_access_with(Arc::new(CachedAccess::new(identity, access_ttl)));
        }
        "catalog" => {
            if shared.redis.is_none() {
                // See mercato_catalog::cache: the caches are then per process.
                tracing::warn!("catalog without cache.redis_url: each replica caches products and SKU prices for itself; run a single catalog replica");
            }
            all.add(name, app::build_catalog(settings, &shared).await?);
        }
        "cart" => {
            let catalog = HttpCatalogClient(client(settings, name, "catalog", calls.clone())?);
            let pricing = HttpPricingClient(client(settings, name, "pricing", calls)?);
            all.add_cart(
                app::build_cart(settings, &shared, Arc::new(catalog), Arc::new(pricing)).await?,
            );
        }
        "pricing" => {
            all.add(name, app::build_pricing(settings, &shared).await?);
        }
        "inventory" => {
            let catalog = HttpCatalogClient(client(settings, name, "catalog", calls)?);
            all.add(
                name,
                app::build_inventory(settings, &shared, Arc::new(catalog)).await?,
            );
        }
        "payments" => {
            let (parts, _test_provider) = app::build_payments(settings, &shared).await?;
            all.add(name, parts);
        }
        "orders" => {
            // A charge may take a provider call and its void.
            let pay = ServiceConfig {
                timeout: Duration::from_millis(settings.payments.timeout_ms * 2 + 500),
                ..calls.clone()
            };
            let deps = OrdersDeps {
                cart: Arc::new(HttpCartClient(client(
                    settings,
                    name,
                    "cart",
                    calls.clone(),
                )?)),
                catalog: Arc::new(HttpCatalogClient(client(
                    settings,
                    name,
                    "catalog",
                    calls.clone(),
                )?)),
                inventory: Arc::new(HttpInventoryClient(client(
                    settings,
                    name,
                    "inventory",
                    calls.clone(),
                )?)),
                payments: Arc::new(HttpPaymentsClient(client(settings, name, "payments", pay)?)),
                pricing: Arc::new(HttpPricingClient(client(
                    settings,
                    name,
                    "pricing",
                    calls.clone(),
                )?)),
                identity: Arc::new(HttpIdentityClient(client(
                    settings,
                    name,
                    "identity",
                    calls.clone(),
                )?)),
            };
            // Replicas share the store: none may void the others' leases.
            all.add(
                name,
                app::build_orders(settings, &shared, deps, false).await?,
            );
        }
        "search" => {
            // Every replica keeps its own index and reads every event.
            let instance = settings.search.resolved_instance()?;
            all.add(
                name,
                app::build_search(settings, &shared, Some(&instance)).await?,
            );
        }
        "notifications" => {
            all.add(name, app::build_notifications(settings, &shared).await?);
        }
        "recommendations" => {
            all.add(name, app::build_recommendations(settings, &shared).await?);
        }
        "reviews" => {
            all.add(name, app::build_reviews(settings, &shared).await?);
        }
        "analytics" => {
            all.add(name, app::build_analytics(settings, &shared).await?);
        }
        "subscriptions" => {
            // Placing an order prices it first: catalog and pricing calls.
            let place = ServiceConfig {
                timeout: Duration::from_secs(5),
                ..calls
            };
            let orders = HttpOrdersClient(client(settings, name, "orders", place)?);
            all.add(
                name,
                app::build_subscriptions(settings, &shared, Arc::new(orders)).await?,
            );
        }
        other => anyhow::bail!("unknown service {other:?}"),
    }
    let mut gateway = app::gateway_config(settings, shared.redis.as_ref());
    // Every request here comes from a gateway, which limits each client;
    // limiting by address here would throttle all clients as one; and it
    // records the interactions this context observes.
    gateway.rate_limit = None;
    gateway.capture = mercato_gateway::capture::Capture::Relay;
    // People reach the pages through the gateway, which serves them.
    gateway.pages = None;
    all.router(settings, &gateway, keys)
}
