//! Settings: defaults, then an optional TOML file, then `MERCATO_`
//! environment variables (nested keys joined by `__`, e.g.
//! `MERCATO_AUTH__TOKEN_TTL_SECS`), then command-line flags.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address the public API listens on.
    pub addr: SocketAddr,
    /// Where embedded mode keeps its databases, event log, index and secrets.
    pub data_dir: PathBuf,
    /// `json` (default) or `pretty`.
    pub log_format: String,
    pub auth: AuthSettings,
    pub http: HttpSettings,
    pub store: StoreSettings,
    pub bus: BusSettings,
    pub shop: ShopSettings,
    pub inventory: InventorySettings,
    pub payments: PaymentsSettings,
    pub orders: OrdersSettings,
    pub subscriptions: SubscriptionsSettings,
    pub reviews: ReviewsSettings,
    pub analytics: AnalyticsSettings,
    pub storefront: StorefrontSettings,
    pub web: WebSettings,
    pub notifications: NotificationsSettings,
    pub cache: CacheSettings,
    pub cart: CartSettings,
    pub search: SearchSettings,
    pub internal: InternalSettings,
    pub services: ServicesSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BusSettings {
    /// `nats://host:4222`: events go through NATS JetStream instead of the
    /// embedded event log in the data dir.
    pub nats_url: Option<String>,
    /// First token of every subject and (upper-cased) of every stream name.
    pub prefix: String,
    /// JetStream stream replicas: 1 for one server, 3 in a cluster.
    pub replicas: usize,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            nats_url: None,
            prefix: "mercato".into(),
            replicas: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ShopSettings {
    /// ISO 4217 code of the shop's currency (empty carts are priced in it).
    pub currency: String,
    /// Every currency carts may be in (`PUT /cart/currency`); a list, or in
    /// the environment comma-separated (`MERCATO_SHOP__CURRENCIES=EUR,USD`).
    /// Empty: `[currency]`.
    #[serde(deserialize_with = "list_or_csv")]
    pub currencies: Vec<String>,
}

impl Default for ShopSettings {
    fn default() -> Self {
        Self {
            currency: "EUR".into(),
            currencies: Vec::new(),
        }
    }
}

impl ShopSettings {
    /// The shop's currency and every currency it sells in (its own first).
    pub fn resolved_currencies(&self) -> anyhow::Result<mercato_cart::service::Currencies> {
        let shop = mercato_kernel::Currency::parse(&self.currency)
            .map_err(|e| anyhow::anyhow!("invalid shop.currency: {e}"))?;
        let mut sold = vec![shop.clone()];
        for raw in &self.currencies {
            let c = mercato_kernel::Currency::parse(raw.trim())
                .map_err(|e| anyhow::anyhow!("invalid shop.currencies entry {raw:?}: {e}"))?;
            if !sold.contains(&c) {
                sold.push(c);
            }
        }
        Ok(mercato_cart::service::Currencies { shop, sold })
    }
}

/// A list, or one string of comma-separated items (as environment
/// variables hold lists).
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(items) => items,
        Raw::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InventorySettings {
    /// `stock.low` is published when available stock falls below this.
    pub low_stock_threshold: i64,
    /// How often expired reservations are looked for and released.
    pub reservation_sweep_ms: u64,
}

impl Default for InventorySettings {
    fn default() -> Self {
        Self {
            low_stock_threshold: 5,
            reservation_sweep_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PaymentsSettings {
    /// Base URL of the payment provider. Unset: the built-in test provider is
    /// started on a loopback port.
    pub provider_url: Option<String>,
    /// Time-out of one call to the provider.
    pub timeout_ms: u64,
}

impl Default for PaymentsSettings {
    fn default() -> Self {
        Self {
            provider_url: None,
            timeout_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OrdersSettings {
    /// A checkout's forward steps give up and compensate after this long.
    pub saga_deadline_ms: u64,
    /// Time-out of one saga call to inventory or cart.
    pub step_timeout_ms: u64,
    /// How long stock stays reserved for a pending order.
    pub reservation_ttl_secs: u64,
    /// How often unfinished sagas are looked for.
    pub saga_poll_ms: u64,
    /// How many days after delivery items may be returned.
    pub return_window_days: u32,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        Self {
            saga_deadline_ms: 4000,
            step_timeout_ms: 3000,
            reservation_ttl_secs: 900,
            saga_poll_ms: 250,
            return_window_days: mercato_orders::service::RETURN_WINDOW_DAYS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscriptionsSettings {
    /// How often the scheduler looks for due renewals and retries.
    pub poll_ms: u64,
    /// The pause after a subscription's first failed order; four times as
    /// long after each next one (3 attempts in all).
    pub retry_backoff_ms: u64,
}

impl Default for SubscriptionsSettings {
    fn default() -> Self {
        Self {
            poll_ms: 1000,
            retry_backoff_ms: 3_600_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalyticsSettings {
    /// Whether the public gateway records interactions (product views,
    /// searches, cart additions, checkouts) as `interaction.*` events.
    pub capture: bool,
    /// Interactions held for publication at most; more are dropped and
    /// counted while the bus is slow or down.
    pub capture_buffer: usize,
    /// How long JetStream keeps interaction events (the stream
    /// `interactions`, when it is created); analytics keeps what it needs
    /// of them in its own store.
    pub interactions_retention_days: u64,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            capture: true,
            capture_buffer: 10_000,
            interactions_retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorefrontSettings {
    /// How long each part of `GET /storefront/products/{id}` may take
    /// before it is left out (`null`).
    pub part_timeout_ms: u64,
}

impl Default for StorefrontSettings {
    fn default() -> Self {
        Self {
            part_timeout_ms: 500,
        }
    }
}

/// The web pages: the storefront at `/` and the admin console at `/admin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebSettings {
    /// Serve the pages (on by default); off, the binary serves only the API.
    pub enabled: bool,
    /// Mark the session cookies `Secure` (sent over HTTPS only): on when
    /// the shop is served behind TLS.
    pub secure_cookies: bool,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            secure_cookies: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReviewsSettings {
    /// `post` (default): reviews are published at once unless they trip the
    /// rules; `pre`: every review waits for an admin.
    pub moderation: Moderation,
    /// Words that hold a review for an admin, without regard to case (a
    /// list, or comma-separated in `MERCATO_REVIEWS__BLOCK_LIST`).
    #[serde(deserialize_with = "list_or_csv")]
    pub block_list: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Moderation {
    #[default]
    Post,
    Pre,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationsSettings {
    /// `smtp://user:pass@host:port` or `smtps://...`. Unset: messages go to
    /// the local sink, `<data_dir>/notifications/sent.jsonl`.
    pub smtp_url: Option<String>,
    /// Sender address of e-mails.
    pub from: String,
    /// Attempts before a notification is marked failed.
    pub max_attempts: u32,
    /// Time-out of connecting to the SMTP server and of each of its commands.
    pub smtp_timeout_ms: u64,
}

impl Default for NotificationsSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Mercato <no-reply@mercato.local>".into(),
            max_attempts: 8,
            smtp_timeout_ms: 10_000,
        }
    }
}

/// The endpoints contexts call each other through in distributed mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InternalSettings {
    /// Shared service token (at least 16 bytes; env `MERCATO_INTERNAL__TOKEN`).
    /// When set, the internal endpoints are served under `/internal/v1` and
    /// require `Authorization: Bearer <token>`; unset, they are not served.
    pub token: Option<String>,
}

/// Where each context's replicas answer in distributed mode: for calls
/// between contexts and for the gateway's routes. Each is a comma-separated
/// list of base URLs (env `MERCATO_SERVICES__CATALOG=http://a:8080,http://b:8080`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServicesSettings {
    pub identity: Option<String>,
    pub catalog: Option<String>,
    pub search: Option<String>,
    pub cart: Option<String>,
    pub inventory: Option<String>,
    pub orders: Option<String>,
    pub payments: Option<String>,
    pub notifications: Option<String>,
    pub pricing: Option<String>,
    pub subscriptions: Option<String>,
    pub reviews: Option<String>,
    pub recommendations: Option<String>,
    pub analytics: Option<String>,
}

/// The contexts `serve --service` runs, in the order they are listed.
pub const CONTEXTS: [&str; 13] = [
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

impl ServicesSettings {
    /// The replicas' base URLs of `context`; empty when none are configured.
    pub fn urls(&self, context: &str) -> Vec<String> {
        let list = match context {
            "identity" => &self.identity,
            "catalog" => &self.catalog,
            "search" => &self.search,
            "cart" => &self.cart,
            "inventory" => &self.inventory,
            "orders" => &self.orders,
            "payments" => &self.payments,
            "notifications" => &self.notifications,
            "pricing" => &self.pricing,
            "subscriptions" => &self.subscriptions,
            "reviews" => &self.reviews,
            "recommendations" => &self.recommendations,
            "analytics" => &self.analytics,
            _ => &None,
        };
        list.as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Redis for the gateway's rate limits and catalog's product cache, shared
/// by every replica, and (unless `cart.store` says otherwise) for carts.
/// Unset, limits and cache stay in the process and carts in the cart
/// context's database (embedded mode).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    /// `redis://host:6379/0` (env `MERCATO_CACHE__REDIS_URL`).
    pub redis_url: Option<String>,
    /// Every key starts with `<key_prefix>:`, so shops can share a Redis.
    pub key_prefix: String,
    /// Time-out of one Redis call of the caches and rate limits; past it a
    /// cache read is a miss and a rate-limit check lets the request through
    /// (carts have `cart.redis_timeout_ms`).
    pub timeout_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "mercato".into(),
            timeout_ms: 200,
        }
    }
}

/// Where the cart context keeps its lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CartSettings {
    /// `database` (the cart context's store: SQLite or `store.url`) or
    /// `redis` (the Redis of `cache.redis_url`, under `cache.key_prefix`;
    /// env `MERCATO_CART__STORE`). Unset: `redis` when `cache.redis_url` is
    /// set, else `database`. The outbox and inbox of the cart context stay
    /// in its database either way.
    pub store: Option<CartStore>,
    /// Time-out of one call to the carts in Redis, past which the cart
    /// call answers 503. Longer than `cache.timeout_ms`: a cart in Redis is
    /// the record, not a copy a miss can fall back from.
    pub redis_timeout_ms: u64,
}

impl Default for CartSettings {
    fn default() -> Self {
        Self {
            store: None,
            redis_timeout_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CartStore {
    Database,
    Redis,
}

impl CartSettings {
    /// Where carts are with these settings; an error when `redis` is asked
    /// for without `cache.redis_url`.
    pub fn resolved_store(&self, cache: &CacheSettings) -> anyhow::Result<CartStore> {
        match (self.store, cache.redis_url.is_some()) {
            (Some(CartStore::Redis), false) => anyhow::bail!(
                "cart.store = \"redis\" needs cache.redis_url (MERCATO_CACHE__REDIS_URL): \
                 set it, or set cart.store = \"database\""
            ),
            (Some(store), _) => Ok(store),
            (None, true) => Ok(CartStore::Redis),
            (None, false) => Ok(CartStore::Database),
        }
    }
}

/// The search context.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchSettings {
    /// The name of this search replica in distributed mode (env
    /// `MERCATO_SEARCH__INSTANCE`; in Kubernetes the pod name). Each replica
    /// keeps its own index and reads every event through a consumer of its
    /// own, `search-<instance>`; a replica restarted under the same name
    /// with its index intact goes on where it stopped. Unset: the host
    /// name. Replicas must have different names. Embedded mode ignores it
    /// (its consumer is `search`).
    #[serde(deserialize_with = "name_or_number")]
    pub instance: Option<String>,
}

/// A name, also when the environment makes it look like a number or a
/// flag (`MERCATO_SEARCH__INSTANCE=12345`): figment parses such values.
fn name_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Name {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Flag(bool),
    }
    Ok(Option::<Name>::deserialize(d)?.map(|name| match name {
        Name::Text(text) => text,
        Name::Unsigned(n) => n.to_string(),
        Name::Signed(n) => n.to_string(),
        Name::Flag(b) => b.to_string(),
    }))
}

impl SearchSettings {
    /// The instance name: the setting, else the host name; an error when
    /// neither is there.
    pub fn resolved_instance(&self) -> anyhow::Result<String> {
        if let Some(instance) = self.instance.as_deref().map(str::trim) {
            anyhow::ensure!(
                !instance.is_empty(),
                "search.instance (MERCATO_SEARCH__INSTANCE) is empty"
            );
            return Ok(instance.to_owned());
        }
        host_name().ok_or_else(|| {
            anyhow::anyhow!(
                "the host name is unknown: set search.instance (MERCATO_SEARCH__INSTANCE) \
                 to a name of this search replica that stays the same across restarts"
            )
        })
    }
}

/// The host name: the kernel's, else `$HOSTNAME`, else `/etc/hostname`.
fn host_name() -> Option<String> {
    let from_file = |path: &str| std::fs::read_to_string(path).ok();
    [
        from_file("/proc/sys/kernel/hostname"),
        std::env::var("HOSTNAME").ok(),
        from_file("/etc/hostname"),
    ]
    .into_iter()
    .flatten()
    .map(|name| name.trim().to_owned())
    .find(|name| !name.is_empty())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HS256 signing secret; generated and kept in the data dir when unset.
    pub jwt_secret: Option<String>,
    pub token_ttl_secs: i64,
    /// argon2id memory cost in KiB.
    pub password_memory_kib: u32,
    pub password_iterations: u32,
    /// Failed sign-ins for one address within the window after which it is
    /// answered 429 until the window has passed; 0 turns this off.
    pub login_max_failures: u32,
    pub login_failure_window_secs: u64,
    /// How long a process keeps identity's verdict on a user's tokens: a
    /// disabled account or a changed role takes effect within this.
    pub access_cache_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    pub body_limit_bytes: usize,
    /// A request must be answered within this (503 `timeout` otherwise).
    pub request_timeout_ms: u64,
    /// A request's body must arrive whole within this, from its head (408 otherwise).
    pub body_read_timeout_ms: u64,
    /// A request head must arrive whole within this, from its first byte.
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request in flight is closed after this.
    pub idle_timeout_ms: u64,
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Origins whose pages may call the API from a browser; `*` any (then
    /// without credentials).
    pub cors_origins: Vec<String>,
    /// Whether the listed origins may send credentials (cookies).
    pub cors_allow_credentials: bool,
    /// Sustained API requests per second per client address; 0 turns the limit off.
    pub rate_limit_per_second: u32,
    /// Requests a client may make at once before the sustained rate applies.
    pub rate_limit_burst: u32,
    /// Identify clients by `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// When set (`postgres://...`), every context keeps its tables in its own
    /// schema of this database instead of SQLite files in the data dir.
    pub url: Option<String>,
    pub max_connections: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            log_format: "json".into(),
            auth: AuthSettings::default(),
            http: HttpSettings::default(),
            store: StoreSettings::default(),
            bus: BusSettings::default(),
            shop: ShopSettings::default(),
            inventory: InventorySettings::default(),
            payments: PaymentsSettings::default(),
            orders: OrdersSettings::default(),
            subscriptions: SubscriptionsSettings::default(),
            reviews: ReviewsSettings::default(),
            analytics: AnalyticsSettings::default(),
            storefront: StorefrontSettings::default(),
            web: WebSettings::default(),
            notifications: NotificationsSettings::default(),
            cache: CacheSettings::default(),
            cart: CartSettings::default(),
            search: SearchSettings::default(),
            internal: InternalSettings::default(),
            services: ServicesSettings::default(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_ttl_secs: 24 * 3600,
            password_memory_kib: 19 * 1024,
            password_iterations: 2,
            login_max_failures: 10,
            login_failure_window_secs: 15 * 60,
            access_cache_ms: 5000,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 30_000,
            body_read_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 4096,
            cors_origins: vec!["*".into()],
            cors_allow_credentials: false,
            rate_limit_per_second: 1000,
            rate_limit_burst: 2000,
            trust_forwarded_for: false,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 10,
        }
    }
}

impl Settings {
    /// Layers the sources; `file` is read when given or when `mercato.toml`
    /// exists in the working directory.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(
                    path.exists(),
                    "config file {} does not exist",
                    path.display()
                );
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("mercato.toml")),
        }
        figment = figment.merge(Env::prefixed("MERCATO_").split("__").ignore(&["log"]));
        let settings: Settings = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.check()?;
        Ok(settings)
    }

    /// Rules across settings that their types do not hold.
    pub fn check(&self) -> anyhow::Result<()> {
        mercato_gateway::check_cors(&self.http.cors_origins, self.http.cors_allow_credentials)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        self.shop.resolved_currencies()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shop_currencies_come_as_a_list_or_comma_separated() {
        let listed: ShopSettings = serde_json::from_value(
            serde_json::json!({"currency": "EUR", "currencies": ["USD", "EUR"]}),
        )
        .expect("list");
        let csv: ShopSettings = serde_json::from_value(
            serde_json::json!({"currency": "EUR", "currencies": "USD, GBP"}),
        )
        .expect("csv");
        let names = |s: &ShopSettings| -> Vec<String> {
            s.resolved_currencies()
                .expect("valid")
                .sold
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect()
        };
        assert_eq!(names(&listed), ["EUR", "USD"]);
        assert_eq!(names(&csv), ["EUR", "USD", "GBP"]);
        assert_eq!(names(&ShopSettings::default()), ["EUR"]);
        let bad: ShopSettings =
            serde_json::from_value(serde_json::json!({"currencies": "usd"})).expect("parsed");
        assert!(bad.resolved_currencies().is_err());
    }

    #[test]
    fn the_search_instance_is_the_setting_or_the_host_name() {
        let named = SearchSettings {
            instance: Some(" search-7d9f8-x2kq9 ".into()),
        };
        assert_eq!(
            named.resolved_instance().expect("named"),
            "search-7d9f8-x2kq9"
        );
        let blank = SearchSettings {
            instance: Some("  ".into()),
        };
        let err = blank.resolved_instance().expect_err("blank");
        assert!(
            err.to_string().contains("MERCATO_SEARCH__INSTANCE"),
            "{err}"
        );
        // What the environment parses as a number is still a name.
        let numeric: SearchSettings =
            serde_json::from_value(serde_json::json!({ "instance": 12345 })).expect("numeric");
        assert_eq!(numeric.instance.as_deref(), Some("12345"));
        let absent: SearchSettings = serde_json::from_value(serde_json::json!({})).expect("absent");
        assert_eq!(absent.instance, None);
        // Unset: this machine's name, the same every time.
        let unset = SearchSettings::default();
        let host = unset.resolved_instance().expect("a host name");
        assert!(!host.is_empty() && host.trim() == host);
        assert_eq!(unset.resolved_instance().expect("again"), host);
    }
}
