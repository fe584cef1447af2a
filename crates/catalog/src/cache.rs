//! The catalog's read caches, cache-aside: products behind
//! `GET /products/{id}`, and SKU lookups behind [`CatalogClient::sku`]
//! (carts and orders ask for them on every read and checkout).
//!
//! Embedded mode keeps them in this process: a hit costs no decoding, and
//! the only writer (this process) invalidates on every write.
//!
//! With a shared cache (Redis in distributed mode) both are kept there as
//! JSON and nothing is kept in this process. A replica cannot hear every
//! other replica's writes: the replicas of a context share one durable
//! consumer, so each event reaches one of them, and a local copy would
//! serve a product, or a SKU's price, until its time to live ran out after
//! a write elsewhere. (A consumer per process would hear every event, but
//! would need a name per process that is created and cleaned up with the
//! process, and would still serve the old price until the event arrived.)
//! In the shared cache a write deletes the keys right after its commit, for
//! every replica at once; the `catalog-cache` consumer deletes them again
//! when the write's event arrives, which also clears a value a concurrent
//! reader loaded before the commit and stored after the first delete. One
//! replica handling the event is enough, since they all read the same keys.
//!
//! Distributed mode without Redis falls back to the caches in each process:
//! correct with one catalog replica only.
//!
//! [`CatalogClient::sku`]: mercato_contracts::clients::CatalogClient::sku

use mercato_contracts::events::{
    PriceChanged, ProductArchived, ProductCreated, ProductUpdated, RatingChanged,
};
use mercato_contracts::types::{Product, SkuInfo};
use mercato_kernel::bus::{EventHandler, Subscription};
use mercato_kernel::cache::Cache;
use mercato_kernel::event::DomainEvent;
use mercato_kernel::Envelope;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The consumer that invalidates the shared cache on catalog events.
pub const CONSUMER: &str = "catalog-cache";

const TTL: Duration = Duration::from_secs(300);

/// How long a SKU lookup is kept.
const SKU_TTL: Duration = Duration::from_secs(30);

/// The key of a product in the shared cache.
pub fn product_key(id: Uuid) -> String {
    format!("catalog:product:{id}")
}

/// The key of a SKU lookup in the shared cache.
pub fn sku_key(sku: &str) -> String {
    format!("catalog:sku:{sku}")
}

#[derive(Clone)]
pub enum ProductCache {
    Local(moka::future::Cache<Uuid, Arc<Product>>),
    Shared(Arc<dyn Cache>),
}

impl ProductCache {
    pub fn local() -> Self {
        Self::Local(
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build(),
        )
    }

    pub async fn get(&self, id: Uuid) -> Option<Arc<Product>> {
        match self {
            Self::Local(products) => products.get(&id).await,
            Self::Shared(cache) => match cache.get(&product_key(id)).await {
                Ok(Some(bytes)) => match serde_json::from_slice::<Product>(&bytes) {
                    Ok(product) => Some(Arc::new(product)),
                    Err(e) => {
                        // Written by another version: read the store, overwrite.
                        tracing::debug!(%id, error = %e, "undecodable cached product");
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    failed(PRODUCTS, "get", &e);
                    None
                }
            },
        }
    }

    pub async fn put(&self, product: Arc<Product>) {
        match self {
            Self::Local(products) => products.insert(product.id, product).await,
            Self::Shared(cache) => {
                let bytes = match serde_json::to_vec(product.as_ref()) {
                    Ok(bytes) => bytes,
                    Err(e) => return failed(PRODUCTS, "set", &e.into()),
                };
                if let Err(e) = cache.set(&product_key(product.id), &bytes, TTL).await {
                    failed(PRODUCTS, "set", &e);
                }
            }
        }
    }

    /// Forgets the product; an error means the shared cache may still hold it.
    pub async fn invalidate(&self, id: Uuid) -> anyhow::Result<()> {
        match self {
            Self::Local(products) => {
                products.invalidate(&id).await;
                Ok(())
            }
            Self::Shared(cache) => cache.delete(&product_key(id)).await.inspect_err(|e| {
                failed(PRODUCTS, "delete", e);
            }),
        }
    }
}

/// SKU lookups, unknown SKUs included (`None`).
#[derive(Clone)]
pub enum SkuCache {
    Local(moka::future::Cache<String, Option<SkuInfo>>),
    Shared(Arc<dyn Cache>),
}

impl SkuCache {
    pub fn local() -> Self {
        Self::Local(
            moka::future::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(SKU_TTL)
                .build(),
        )
    }

    /// The cached answer for `sku`; `None` on a miss.
    pub async fn get(&self, sku: &str) -> Option<Option<SkuInfo>> {
        match self {
            Self::Local(skus) => skus.get(sku).await,
            Self::Shared(cache) => match cache.get(&sku_key(sku)).await {
                Ok(Some(bytes)) => match serde_json::from_slice::<Option<SkuInfo>>(&bytes) {
                    Ok(info) => Some(info),
                    Err(e) => {
                        tracing::debug!(sku, error = %e, "undecodable cached SKU");
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    failed(SKUS, "get", &e);
                    None
                }
            },
        }
    }

    pub async fn put(&self, sku: &str, info: Option<SkuInfo>) {
        match self {
            Self::Local(skus) => skus.insert(sku.to_owned(), info).await,
            Self::Shared(cache) => {
                let bytes = match serde_json::to_vec(&info) {
                    Ok(bytes) => bytes,
                    Err(e) => return failed(SKUS, "set", &e.into()),
                };
                if let Err(e) = cache.set(&sku_key(sku), &bytes, SKU_TTL).await {
                    failed(SKUS, "set", &e);
                }
            }
        }
    }

    /// Forgets the SKU; an error means the shared cache may still hold it.
    pub async fn invalidate(&self, sku: &str) -> anyhow::Result<()> {
        match self {
            Self::Local(skus) => {
                skus.invalidate(sku).await;
                Ok(())
            }
            Self::Shared(cache) => cache.delete(&sku_key(sku)).await.inspect_err(|e| {
                failed(SKUS, "delete", e);
            }),
        }
    }
}

/// The subscription that invalidates the shared cache on other replicas'
/// writes; `None` when both caches are local, since only this process
/// writes through them.
pub fn subscription(products: &ProductCache, skus: &SkuCache) -> Option<Subscription> {
    if matches!(
        (products, skus),
        (ProductCache::Local(_), SkuCache::Local(_))
    ) {
        return None;
    }
    Some(Subscription {
        consumer: CONSUMER.to_owned(),
        per_instance: false,
        event_types: vec![
            // A SKU looked up (and cached as unknown) while it was created.
            ProductCreated::TYPE.to_owned(),
            ProductUpdated::TYPE.to_owned(),
            ProductArchived::TYPE.to_owned(),
            PriceChanged::TYPE.to_owned(),
            // A reader may have cached the product just before its rating
            // was stored: deleted again here, as for catalog's own writes.
            RatingChanged::TYPE.to_owned(),
        ],
        handler: Arc::new(Invalidate {
            products: products.clone(),
            skus: skus.clone(),
        }),
    })
}

const PRODUCTS: &str = "catalog_products";
const SKUS: &str = "catalog_skus";

fn failed(which: &'static str, op: &'static str, error: &anyhow::Error) {
    metrics::counter!("mercato_cache_errors_total", "cache" => which, "op" => op).increment(1);
    tracing::warn!(cache = which, op, error = %format!("{error:#}"), "catalog cache unavailable");
}

/// Deletes the cached product and SKUs an event is about. Deleting is
/// idempotent, so it needs no inbox; a failure is retried by the bus.
struct Invalidate {
    products: ProductCache,
    skus: SkuCache,
}

#[async_trait::async_trait]
impl EventHandler for Invalidate {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let (id, skus): (Option<Uuid>, Vec<String>) = if event.is::<ProductCreated>() {
            let product = event.decode::<ProductCreated>()?.product;
            (None, product.variants.into_iter().map(|v| v.sku).collect())
        } else if event.is::<ProductUpdated>() {
            let product = event.decode::<ProductUpdated>()?.product;
            (
                Some(product.id),
                product.variants.into_iter().map(|v| v.sku).collect(),
            )
        } else if event.is::<ProductArchived>() {
            let archived = event.decode::<ProductArchived>()?;
            (Some(archived.product_id), archived.skus)
        } else if event.is::<PriceChanged>() {
            let changed = event.decode::<PriceChanged>()?;
            (Some(changed.product_id), vec![changed.sku])
        } else if event.is::<RatingChanged>() {
            (
                Some(event.decode::<RatingChanged>()?.product_id),
                Vec::new(),
            )
        } else {
            return Ok(());
        };
        // Every key is tried; the first failure makes the bus retry them all.
        let mut result = Ok(());
        if let Some(id) = id {
            result = self.products.invalidate(id).await;
        }
        for sku in &skus {
            let deleted = self.skus.invalidate(sku).await;
            if result.is_ok() {
                result = deleted;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_contracts::types::ProductStatus;
    use mercato_kernel::cache::MemoryCache;

    fn product(title: &str) -> Product {
        let now = mercato_kernel::time::now();
        Product {
            id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            title: title.to_owned(),
            description: String::new(),
            category: "books".to_owned(),
            category_path: vec!["books".to_owned()],
            status: ProductStatus::Active,
            variants: vec![],
            images: Vec::new(),
            rating: Default::default(),
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn the_shared_cache_round_trips_and_forgets_a_product() {
        let shared = Arc::new(MemoryCache::new(1024 * 1024));
        let cache = ProductCache::Shared(shared.clone());
        let p = Arc::new(product("Dune"));
        assert!(cache.get(p.id).await.is_none());
        cache.put(p.clone()).await;
        assert!(shared.get(&product_key(p.id)).await.expect("get").is_some());
        assert_eq!(cache.get(p.id).await.as_deref(), Some(p.as_ref()));
        cache.invalidate(p.id).await.expect("invalidate");
        assert!(cache.get(p.id).await.is_none());
    }

    #[tokio::test]
    async fn an_undecodable_entry_is_a_miss() {
        let shared = Arc::new(MemoryCache::new(1024 * 1024));
        let cache = ProductCache::Shared(shared.clone());
        let id = Uuid::now_v7();
        shared
            .set(&product_key(id), b"{not json", TTL)
            .await
            .expect("set");
        assert!(cache.get(id).await.is_none());
    }

    fn variant(sku: &str) -> mercato_contracts::types::Variant {
        mercato_contracts::types::Variant {
            sku: sku.to_owned(),
            title: String::new(),
            price: mercato_kernel::Money::parse_price(100, "EUR").expect("money"),
            prices: Vec::new(),
            attributes: Default::default(),
        }
    }

    fn sku_info(p: &Product, sku: &str, amount: i64) -> SkuInfo {
        SkuInfo {
            sku: sku.to_owned(),
            product_id: p.id,
            seller_id: p.seller_id,
            title: p.title.clone(),
            price: mercato_kernel::Money::parse_price(amount, "EUR").expect("money"),
            status: ProductStatus::Active,
            category: p.category.clone(),
            prices: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_shared_cache_round_trips_and_forgets_sku_lookups() {
        let shared = Arc::new(MemoryCache::new(1024 * 1024));
        let skus = SkuCache::Shared(shared.clone());
        let p = product("Dune");
        let info = sku_info(&p, "DUNE-1", 1299);
        assert_eq!(skus.get("DUNE-1").await, None, "a miss");
        skus.put("DUNE-1", Some(info.clone())).await;
        skus.put("NOPE", None).await;
        assert!(shared.get(&sku_key("DUNE-1")).await.expect("get").is_some());
        assert_eq!(skus.get("DUNE-1").await, Some(Some(info)));
        assert_eq!(
            skus.get("NOPE").await,
            Some(None),
            "unknown SKUs are cached too"
        );
        skus.invalidate("DUNE-1").await.expect("invalidate");
        assert_eq!(skus.get("DUNE-1").await, None);
        shared
            .set(&sku_key("BAD"), b"{not json", SKU_TTL)
            .await
            .expect("set");
        assert_eq!(skus.get("BAD").await, None, "undecodable is a miss");
    }

    #[tokio::test]
    async fn catalog_events_delete_the_cached_product_and_its_skus() {
        let shared: Arc<dyn Cache> = Arc::new(MemoryCache::new(1024 * 1024));
        let cache = ProductCache::Shared(shared.clone());
        let skus = SkuCache::Shared(shared);
        let sub = subscription(&cache, &skus).expect("a shared cache subscribes");
        assert_eq!(sub.consumer, CONSUMER);
        assert!(subscription(&ProductCache::local(), &SkuCache::local()).is_none());

        let mut p = product("Dune");
        p.variants = vec![variant("DUNE-1"), variant("DUNE-2")];
        let p = Arc::new(p);
        let price = |amount| mercato_kernel::Money::parse_price(amount, "EUR").expect("money");
        let events = [
            (
                Envelope::new(
                    crate::NAME,
                    p.id.to_string(),
                    &ProductCreated {
                        product: (*p).clone(),
                        version: 1,
                    },
                ),
                vec!["DUNE-1", "DUNE-2"],
                false,
            ),
            (
                Envelope::new(
                    crate::NAME,
                    p.id.to_string(),
                    &ProductUpdated {
                        product: (*p).clone(),
                        version: 2,
                    },
                ),
                vec!["DUNE-1", "DUNE-2"],
                true,
            ),
            (
                Envelope::new(
                    crate::NAME,
                    p.id.to_string(),
                    &ProductArchived {
                        product_id: p.id,
                        skus: vec!["DUNE-1".into(), "DUNE-2".into()],
                        version: 3,
                    },
                ),
                vec!["DUNE-1", "DUNE-2"],
                true,
            ),
            (
                Envelope::new(
                    crate::NAME,
                    p.id.to_string(),
                    &PriceChanged {
                        product_id: p.id,
                        sku: "DUNE-1".to_owned(),
                        old_price: price(100),
                        new_price: price(200),
                        version: 4,
                    },
                ),
                vec!["DUNE-1"],
                true,
            ),
        ];
        for (event, deleted, product_deleted) in events {
            let event = event.expect("envelope");
            assert!(sub.wants(&event.event_type));
            cache.put(p.clone()).await;
            for sku in ["DUNE-1", "DUNE-2"] {
                skus.put(sku, Some(sku_info(&p, sku, 100))).await;
            }
            sub.handler.handle(&event).await.expect("handled");
            assert_eq!(
                cache.get(p.id).await.is_none(),
                product_deleted,
                "{}",
                event.event_type
            );
            for sku in ["DUNE-1", "DUNE-2"] {
                assert_eq!(
                    skus.get(sku).await.is_none(),
                    deleted.contains(&sku),
                    "{} {sku}",
                    event.event_type
                );
            }
        }
    }
}
