//! The product cache behind `GET /products/{id}`, cache-aside.
//!
//! Embedded mode keeps `Arc<Product>`s in this process: a hit costs no
//! decoding, and the only writer (this process) invalidates on every write.
//!
//! With a shared cache (Redis in distributed mode) products are kept there
//! as JSON and nothing is kept in this process: a replica cannot hear every
//! other replica's writes (the replicas of a context share one durable
//! consumer, so each event reaches one of them), and a local copy would
//! serve a product for its whole lifetime after a write elsewhere. A write
//! deletes the key right after its commit; the `catalog-cache` consumer
//! deletes it again when the write's event arrives, which also clears a
//! value a concurrent reader loaded before the commit and stored after the
//! first delete.

use mercato_contracts::events::{PriceChanged, ProductArchived, ProductUpdated};
use mercato_contracts::types::Product;
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

/// The key of a product in the shared cache.
pub fn product_key(id: Uuid) -> String {
    format!("catalog:product:{id}")
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
                    failed("get", &e);
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
                    Err(e) => return failed("set", &e.into()),
                };
                if let Err(e) = cache.set(&product_key(product.id), &bytes, TTL).await {
                    failed("set", &e);
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
                failed("delete", e);
            }),
        }
    }

    /// The subscription that invalidates on other replicas' writes; `None`
    /// for the local cache, which only this process writes through.
    pub fn subscription(&self) -> Option<Subscription> {
        match self {
            Self::Local(_) => None,
            Self::Shared(_) => Some(Subscription {
                consumer: CONSUMER.to_owned(),
                event_types: vec![
                    ProductUpdated::TYPE.to_owned(),
                    ProductArchived::TYPE.to_owned(),
                    PriceChanged::TYPE.to_owned(),
                ],
                handler: Arc::new(Invalidate(self.clone())),
            }),
        }
    }
}

fn failed(op: &'static str, error: &anyhow::Error) {
    metrics::counter!("mercato_cache_errors_total", "cache" => "catalog_products", "op" => op)
        .increment(1);
    tracing::warn!(op, error = %format!("{error:#}"), "product cache unavailable");
}

/// Deletes the cached product an event is about. Deleting is idempotent,
/// so it needs no inbox; a failure is retried by the bus.
struct Invalidate(ProductCache);

#[async_trait::async_trait]
impl EventHandler for Invalidate {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let id = if event.is::<ProductUpdated>() {
            event.decode::<ProductUpdated>()?.product.id
        } else if event.is::<ProductArchived>() {
            event.decode::<ProductArchived>()?.product_id
        } else if event.is::<PriceChanged>() {
            event.decode::<PriceChanged>()?.product_id
        } else {
            return Ok(());
        };
        self.0.invalidate(id).await
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
            status: ProductStatus::Active,
            variants: vec![],
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

    #[tokio::test]
    async fn catalog_events_delete_the_cached_product() {
        let cache = ProductCache::Shared(Arc::new(MemoryCache::new(1024 * 1024)));
        let sub = cache.subscription().expect("a shared cache subscribes");
        assert_eq!(sub.consumer, CONSUMER);
        assert!(ProductCache::local().subscription().is_none());

        let p = Arc::new(product("Dune"));
        let events = [
            Envelope::new(
                crate::NAME,
                p.id.to_string(),
                &ProductUpdated {
                    product: (*p).clone(),
                },
            ),
            Envelope::new(
                crate::NAME,
                p.id.to_string(),
                &ProductArchived {
                    product_id: p.id,
                    skus: vec![],
                },
            ),
            Envelope::new(
                crate::NAME,
                p.id.to_string(),
                &PriceChanged {
                    product_id: p.id,
                    sku: "DUNE-1".to_owned(),
                    old_price: mercato_kernel::Money::parse_price(100, "EUR").expect("money"),
                    new_price: mercato_kernel::Money::parse_price(200, "EUR").expect("money"),
                },
            ),
        ];
        for event in events {
            let event = event.expect("envelope");
            assert!(sub.wants(&event.event_type));
            cache.put(p.clone()).await;
            sub.handler.handle(&event).await.expect("handled");
            assert!(cache.get(p.id).await.is_none(), "{}", event.event_type);
        }
    }
}
