//! Catalog use cases: the aggregate decides, the store records, the cache serves reads.

use crate::cache::{ProductCache, SkuCache};
use crate::domain::{clean_category, slugify, CatalogCommand, CatalogEvent, ProductAggregate};
use crate::store::{AppendError, CatalogStore, Category, CategoryError, ProductFilter};
use async_trait::async_trait;
use mercato_contracts::clients::{CatalogClient, ClientError, ClientResult};
use mercato_contracts::events::{
    PriceChanged, ProductArchived, ProductCreated, ProductUpdated, RatingChanged,
};
use mercato_contracts::types::{Product, Rating, SkuInfo};
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::bus::{EventHandler, Subscription};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, ApiError, Envelope};
use std::sync::Arc;
use uuid::Uuid;

pub struct CatalogService {
    store: CatalogStore,
    products: ProductCache,
    /// SKU lookups of carts and orders, unknown SKUs included: in this
    /// process, or shared by every replica (see [`crate::cache`]).
    skus: SkuCache,
}

const APPEND_ATTEMPTS: usize = 3;

impl CatalogService {
    pub fn new(store: CatalogStore) -> Self {
        Self {
            store,
            products: ProductCache::local(),
            skus: SkuCache::local(),
        }
    }

    /// Keeps products and SKU lookups in `cache`, shared with the other
    /// replicas, instead of in this process: with several replicas, a price
    /// changed on one of them is answered by every other one at once (see
    /// [`crate::cache`]).
    pub fn with_shared_cache(mut self, cache: Arc<dyn mercato_kernel::cache::Cache>) -> Self {
        self.products = ProductCache::Shared(cache.clone());
        self.skus = SkuCache::Shared(cache);
        self
    }

    /// The consumer that invalidates the shared cache (products and SKU
    /// lookups) on catalog events; `None` without a shared cache.
    pub fn cache_subscription(&self) -> Option<Subscription> {
        crate::cache::subscription(&self.products, &self.skus)
    }

    /// The consumer that keeps each product's rating as reviews tell it
    /// (`rating.changed`), newest version only, and drops the cached product.
    pub fn rating_subscription(self: &Arc<Self>) -> Subscription {
        Subscription {
            consumer: RATINGS_CONSUMER.to_owned(),
            per_instance: false,
            event_types: vec![RatingChanged::TYPE.to_owned()],
            handler: Arc::new(Ratings(self.clone())),
        }
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
        // Refused before its category is made.
        agg.handle(command.clone(), time::now())?;
        let command = self.with_category_path(command).await?;
        self.execute(agg, command).await
    }

    /// The command with the path of its category, made at top level when
    /// it is new.
    async fn with_category_path(
        &self,
        mut command: CatalogCommand,
    ) -> Result<CatalogCommand, ApiError> {
        match &mut command {
            CatalogCommand::Create {
                category,
                category_path,
                ..
            } => {
                *category_path = self
                    .store
                    .ensure_category(&clean_category(category)?)
                    .await?;
            }
            CatalogCommand::Update {
                category: Some(category),
                category_path,
                ..
            } => {
                let name = clean_category(category)?;
                *category_path = Some(self.store.ensure_category(&name).await?);
            }
            _ => {}
        }
        Ok(command)
    }

    /// Makes a category (admins): its slug is made from its name when not
    /// given; under `parent` (a slug) or at top level.
    pub async fn create_category(
        &self,
        caller: Caller,
        name: &str,
        slug: Option<&str>,
        parent: Option<&str>,
    ) -> Result<Category, ApiError> {
        caller.require(&[Role::Admin])?;
        let name = clean_category(name)?;
        // A slug given is ASCII; one made from a name keeps its letters.
        let given = slug.is_some();
        let slug = match slug {
            Some(s) => s.to_owned(),
            None => slugify(&name),
        };
        let ascii = slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let valid = !slug.is_empty()
            && slug.chars().count() <= 100
            && slugify(&slug) == slug
            && (ascii || !given);
        if !valid {
            return Err(ApiError::validation(
                "slug must be lower-case letters and digits in groups joined by `-`",
            ));
        }
        match self.store.create_category(&slug, &name, parent).await {
            Ok(c) => Ok(c),
            Err(CategoryError::Exists) => Err(ApiError::conflict(
                "category_exists",
                format!("a category has the slug {slug:?}"),
            )),
            Err(CategoryError::UnknownParent) => Err(ApiError::unprocessable(
                "unknown_parent",
                "no category has the parent's slug",
            )),
            Err(CategoryError::Store(e)) => Err(e.into()),
        }
    }

    pub async fn categories(&self) -> Result<Vec<Category>, ApiError> {
        Ok(self.store.categories().await?)
    }

    pub async fn update(
        &self,
        caller: Caller,
        id: Uuid,
        command: CatalogCommand,
    ) -> Result<Product, ApiError> {
        // Authorized and valid before its category is made.
        let agg = self.store.load(id).await?;
        authorize_owner(&caller, &agg)?;
        agg.handle(command.clone(), time::now())?;
        let command = self.with_category_path(command).await?;
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
        let mut product = after
            .state
            .clone()
            .ok_or_else(|| ApiError::not_found("product"))?;
        // What reviews told of it is not in the product's own events.
        if before.state.is_some() {
            product.rating = self.store.rating(product.id).await?;
        }
        if events.is_empty() {
            return Ok(product);
        }
        let integration = integration_events(&before, &events, &product, after.version)
            .map_err(ApiError::internal)?;
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
        // A failure is logged; the `catalog-cache` consumer deletes again
        // (the SKUs the product still has).
        let _ = self.products.invalidate(product.id).await;
        let old_skus = before.state.iter().flat_map(|p| p.variants.iter());
        for v in old_skus.chain(product.variants.iter()) {
            let _ = self.skus.invalidate(&v.sku).await;
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

/// The events other contexts hear about. Each carries `version`, the
/// product's version once `events` are appended, so that consumers can
/// tell an older event arriving late from a newer one.
fn integration_events(
    before: &ProductAggregate,
    events: &[CatalogEvent],
    after: &Product,
    version: i64,
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
                    version,
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
                                version,
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
                    version,
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
                version,
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
        self.skus.put(sku, info.clone()).await;
        Ok(info)
    }

    async fn product(&self, id: Uuid) -> ClientResult<Option<Product>> {
        match self.get(id).await {
            Ok(product) => Ok(Some(product.as_ref().clone())),
            Err(e) if e.code == "not_found" => Ok(None),
            Err(e) => Err(ClientError::Failed("catalog", e.message)),
        }
    }
}

/// The consumer of `rating.changed`.
pub const RATINGS_CONSUMER: &str = "catalog-ratings";

/// Keeps a product's rating; an overwrite guarded by the rating's version,
/// so it needs no inbox. A kept rating drops the cached product.
struct Ratings(Arc<CatalogService>);

#[async_trait::async_trait]
impl EventHandler for Ratings {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let e: RatingChanged = event.decode()?;
        let rating = Rating {
            average: e.average,
            count: e.count,
        };
        self.0
            .store
            .set_rating(e.product_id, &rating, e.version)
            .await?;
        // Also when an earlier delivery stored it: its drop may have failed.
        self.0.products.invalidate(e.product_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewVariant;
    use mercato_kernel::db::Db;
    use mercato_kernel::outbox::{Outbox, PLATFORM_MIGRATIONS};
    use mercato_kernel::Money;

    fn variant(sku: &str, amount: i64) -> NewVariant {
        NewVariant {
            sku: sku.to_owned(),
            title: None,
            price: Money::parse_price(amount, "EUR").expect("money"),
            prices: Vec::new(),
            attributes: Default::default(),
        }
    }

    /// The integration events in the outbox, in the order they were written.
    async fn outbox(db: &Db) -> Vec<Envelope> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT envelope FROM outbox ORDER BY seq")
            .fetch_all(db.pool())
            .await
            .expect("outbox");
        rows.iter()
            .map(|(json,)| serde_json::from_str(json).expect("envelope"))
            .collect()
    }

    #[tokio::test]
    async fn product_events_carry_the_products_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::sqlite_file(&dir.path().join("catalog.db"))
            .await
            .expect("sqlite");
        db.migrate("platform", &PLATFORM_MIGRATIONS)
            .await
            .expect("platform migrations");
        db.migrate(crate::NAME, &crate::MIGRATIONS)
            .await
            .expect("catalog migrations");
        let service = CatalogService::new(CatalogStore::new(db.clone(), Outbox::new()));
        let seller = Caller {
            user_id: id::new_id(),
            role: Role::Seller,
        };

        let product = service
            .create(
                seller,
                CatalogCommand::Create {
                    seller_id: seller.user_id,
                    title: "Kettle".into(),
                    description: String::new(),
                    category: "kitchen".into(),
                    category_path: Vec::new(),
                    images: Vec::new(),
                    variants: vec![variant("KET-1", 1299)],
                },
            )
            .await
            .expect("create");
        // Two catalog events in one command: the title and the variants.
        service
            .update(
                seller,
                product.id,
                CatalogCommand::Update {
                    title: Some("Steel kettle".into()),
                    description: None,
                    category: None,
                    category_path: None,
                    images: None,
                    variants: Some(vec![variant("KET-1", 1499)]),
                },
            )
            .await
            .expect("update");
        service.archive(seller, product.id).await.expect("archive");
        let stored = service.store().load(product.id).await.expect("load");

        let versions: Vec<(String, i64)> = outbox(&db)
            .await
            .iter()
            .map(|e| {
                let version = if e.is::<ProductCreated>() {
                    e.decode::<ProductCreated>().expect("decode").version
                } else if e.is::<ProductUpdated>() {
                    e.decode::<ProductUpdated>().expect("decode").version
                } else if e.is::<PriceChanged>() {
                    e.decode::<PriceChanged>().expect("decode").version
                } else {
                    e.decode::<ProductArchived>().expect("decode").version
                };
                (e.event_type.clone(), version)
            })
            .collect();
        assert_eq!(
            versions,
            [
                ("product.created".to_owned(), 1),
                ("price.changed".to_owned(), 3),
                ("product.updated".to_owned(), 3),
                ("product.archived".to_owned(), 4),
            ]
        );
        assert_eq!(stored.version, 4, "the version is the stored one");
    }
}
