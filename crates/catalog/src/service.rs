//! Catalog use cases: the aggregate decides, the store records, the cache serves reads.

use crate::cache::ProductCache;
use crate::domain::{CatalogCommand, CatalogEvent, ProductAggregate};
use crate::store::{AppendError, CatalogStore, ProductFilter};
use async_trait::async_trait;
use mercato_contracts::clients::{CatalogClient, ClientError, ClientResult};
use mercato_contracts::events::{PriceChanged, ProductArchived, ProductCreated, ProductUpdated};
use mercato_contracts::types::{Product, SkuInfo};
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::bus::Subscription;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, ApiError, Envelope};
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub struct CatalogService {
    store: CatalogStore,
    products: ProductCache,
    /// SKU lookups of carts and orders, unknown SKUs included.
    skus: Cache<String, Option<SkuInfo>>,
}

const APPEND_ATTEMPTS: usize = 3;

impl CatalogService {
    pub fn new(store: CatalogStore) -> Self {
        Self {
            store,
            products: ProductCache::local(),
            skus: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        }
    }

    /// Keeps products in `cache`, shared with the other replicas, instead
    /// of in this process (see [`crate::cache`]).
    pub fn with_shared_cache(mut self, cache: Arc<dyn mercato_kernel::cache::Cache>) -> Self {
        self.products = ProductCache::Shared(cache);
        self
    }

    /// The consumer that invalidates the shared product cache on catalog
    /// events; `None` without a shared cache.
    pub fn cache_subscription(&self) -> Option<Subscription> {
        self.products.subscription()
    }

    pub fn store(&self) -> &CatalogStore {
        &self.store
    }

    pub async fn create(
        &self,
        caller: Caller,
        command: CatalogCommand,
    ) -> Result<Product, ApiError> {
        caller.require(&[Role::Seller, Role::Admin])?;
        let agg = ProductAggregate::new(id::new_id());
        self.execute(agg, command).await
    }

    pub async fn update(
        &self,
        caller: Caller,
        id: Uuid,
        command: CatalogCommand,
    ) -> Result<Product, ApiError> {
        for _ in 0..APPEND_ATTEMPTS {
            let agg = self.store.load(id).await?;
            authorize_owner(&caller, &agg)?;
            match self.execute(agg, command.clone()).await {
                Err(e) if e.code == "concurrent_update" => continue,
                other => return other,
            }
        }
        Err(ApiError::conflict(
            "concurrent_update",
            "the product was changed concurrently; try again",
        ))
    }

    async fn execute(
        &self,
        before: ProductAggregate,
        command: CatalogCommand,
    ) -> Result<Product, ApiError> {
        let events = before.handle(command, time::now())?;
        let mut after = before.clone();
        for e in &events {
            after.apply(e);
        }
        let product = after
            .state
            .clone()
            .ok_or_else(|| ApiError::not_found("product"))?;
        if events.is_empty() {
            return Ok(product);
        }
        let integration =
            integration_events(&before, &events, &product).map_err(ApiError::internal)?;
        match self
            .store
            .append(&before, &events, &product, &integration)
            .await
        {
            Ok(()) => {}
            Err(AppendError::Concurrency) => {
                return Err(ApiError::conflict(
                    "concurrent_update",
                    "the product was changed concurrently; try again",
                ))
            }
            Err(AppendError::SkuTaken(sku)) => {
                return Err(ApiError::conflict(
                    "sku_taken",
                    format!("sku {sku:?} is already used by another product"),
                ))
            }
            Err(AppendError::Store(e)) => return Err(e.into()),
        }
        // A failure is logged; the `catalog-cache` consumer deletes again.
        let _ = self.products.invalidate(product.id).await;
        let old_skus = before.state.iter().flat_map(|p| p.variants.iter());
        for v in old_skus.chain(product.variants.iter()) {
            self.skus.invalidate(&v.sku).await;
        }
        for e in &events {
            metrics::counter!("mercato_catalog_events_total", "event" => e.name()).increment(1);
        }
        Ok(product)
    }

    /// Archives the product: it stays readable but can no longer be bought.
    pub async fn archive(&self, caller: Caller, id: Uuid) -> Result<(), ApiError> {
        self.update(caller, id, CatalogCommand::Archive)
            .await
            .map(|_| ())
    }

    pub async fn get(&self, id: Uuid) -> Result<Arc<Product>, ApiError> {
        if let Some(p) = self.products.get(id).await {
            return Ok(p);
        }
        let product = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found("product"))?;
        let product = Arc::new(product);
        self.products.put(product.clone()).await;
        Ok(product)
    }

    pub async fn list(
        &self,
        filter: &ProductFilter,
        page: &PageRequest,
    ) -> Result<Page<Product>, ApiError> {
        Ok(self.store.list(filter, page).await?)
    }
}

fn authorize_owner(caller: &Caller, agg: &ProductAggregate) -> Result<(), ApiError> {
    let product = agg
        .state
        .as_ref()
        .ok_or_else(|| ApiError::not_found("product"))?;
    match caller.role {
        Role::Admin => Ok(()),
        Role::Seller if product.seller_id == caller.user_id => Ok(()),
        _ => Err(ApiError::forbidden(
            "only the product's seller or an admin may change it",
        )),
    }
}

/// The events other contexts hear about.
fn integration_events(
    before: &ProductAggregate,
    events: &[CatalogEvent],
    after: &Product,
) -> anyhow::Result<Vec<Envelope>> {
    let subject = after.id.to_string();
    let mut out = Vec::new();
    let mut updated = false;
    for e in events {
        match e {
            CatalogEvent::Created { .. } => out.push(Envelope::new(
                crate::NAME,
                &subject,
                &ProductCreated {
                    product: after.clone(),
                },
            )?),
            CatalogEvent::DetailsChanged { .. } => updated = true,
            CatalogEvent::VariantsReplaced { variants, .. } => {
                updated = true;
                let old = before
                    .state
                    .as_ref()
                    .map(|p| p.variants.as_slice())
                    .unwrap_or_default();
                for v in variants {
                    if let Some(o) = old.iter().find(|o| o.sku == v.sku && o.price != v.price) {
                        out.push(Envelope::new(
                            crate::NAME,
                            &subject,
                            &PriceChanged {
                                product_id: after.id,
                                sku: v.sku.clone(),
                                old_price: o.price.clone(),
                                new_price: v.price.clone(),
                            },
                        )?);
                    }
                }
            }
            CatalogEvent::Archived { .. } => out.push(Envelope::new(
                crate::NAME,
                &subject,
                &ProductArchived {
                    product_id: after.id,
                    skus: after.variants.iter().map(|v| v.sku.clone()).collect(),
                },
            )?),
        }
    }
    if updated {
        out.push(Envelope::new(
            crate::NAME,
            &subject,
            &ProductUpdated {
                product: after.clone(),
            },
        )?);
    }
    Ok(out)
}

#[async_trait]
impl CatalogClient for CatalogService {
    async fn sku(&self, sku: &str) -> ClientResult<Option<SkuInfo>> {
        if let Some(hit) = self.skus.get(sku).await {
            return Ok(hit);
        }
        let info = self
            .store
            .sku(sku)
            .await
            .map_err(|e| ClientError::Failed("catalog", format!("{e:#}")))?;
        self.skus.insert(sku.to_owned(), info.clone()).await;
        Ok(info)
    }
}
