//! Recommendations from the model the events build, experiments, and the
//! consumers that build it.

use crate::domain::{
    assign, p_value, validate, Assignment, Experiment, ExperimentResults, Recommendations, Variant,
};
use crate::store::{CreateError, RecommendationsStore};
use mercato_contracts::clients::{ClientError, ClientResult, RecommendationsClient};
use mercato_contracts::events::{
    CartItemAdded, OrderConfirmed, ProductArchived, ProductCreated, ProductUpdated, ProductViewed,
    StockChanged, UserErased,
};
use mercato_contracts::types::Recommendation;
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::bus::{EventHandler, Subscription};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::{time, ApiError, Envelope};
use std::collections::BTreeSet;
use std::sync::Arc;
use uuid::Uuid;

/// The consumer that builds the model.
pub const CONSUMER: &str = "recommendations";

/// Recommendations per answer: at most this many (default 10).
pub const MAX_LIMIT: usize = 50;

/// How long a product's recommendations are served from memory: they move
/// only as orders and the catalog change, and working them out takes a few
/// queries over the product's category, on every product page.
pub const FOR_PRODUCT_TTL: std::time::Duration = std::time::Duration::from_secs(2);

pub struct RecommendationsService {
    store: RecommendationsStore,
    /// (product, limit) → its recommendations, for [`FOR_PRODUCT_TTL`].
    for_product: moka::future::Cache<(Uuid, usize), Recommendations>,
}

impl RecommendationsService {
    pub fn new(store: RecommendationsStore) -> Self {
        Self {
            store,
            for_product: moka::future::Cache::builder()
                .max_capacity(20_000)
                .time_to_live(FOR_PRODUCT_TTL)
                .build(),
        }
    }

    pub fn store(&self) -> &RecommendationsStore {
        &self.store
    }

    /// For a product page: what was bought with it, then what is like it;
    /// never the product itself, nor archived or out-of-stock products. At
    /// most [`FOR_PRODUCT_TTL`] old.
    pub async fn for_product(
        &self,
        product_id: Uuid,
        limit: usize,
    ) -> Result<Recommendations, ApiError> {
        if let Some(hit) = self.for_product.get(&(product_id, limit)).await {
            return Ok(hit);
        }
        let fresh = self.work_out_for_product(product_id, limit).await?;
        self.for_product
            .insert((product_id, limit), fresh.clone())
            .await;
        Ok(fresh)
    }

    async fn work_out_for_product(
        &self,
        product_id: Uuid,
        limit: usize,
    ) -> Result<Recommendations, ApiError> {
        let mut items = self
            .store
            .bought_together(product_id, i64::try_from(limit).unwrap_or(10))
            .await?;
        if items.len() < limit {
            let seen: BTreeSet<Uuid> = items.iter().map(|r| r.product_id).collect();
            let similar = self.store.similar(product_id, limit).await?;
            items.extend(
                similar
                    .into_iter()
                    .filter(|r| !seen.contains(&r.product_id))
                    .take(limit - items.len()),
            );
        }
        Ok(Recommendations { items })
    }

    /// For the shop's front: a signed-in customer gets what goes with what
    /// they bought or looked at (nothing they bought), then the best
    /// sellers; anybody else the best sellers.
    pub async fn for_caller(
        &self,
        caller: Option<Caller>,
        limit: usize,
    ) -> Result<Recommendations, ApiError> {
        let mut items = Vec::new();
        let mut except = BTreeSet::new();
        if let Some(caller) = caller {
            except = self.store.bought_by(caller.user_id).await?;
            items = self
                .store
                .for_customer(caller.user_id, i64::try_from(limit).unwrap_or(10))
                .await?;
        }
        if items.len() < limit {
            except.extend(items.iter().map(|r| r.product_id.to_string()));
            let best = self
                .store
                .best_sellers(&except, limit - items.len())
                .await?;
            items.extend(best);
        }
        Ok(Recommendations { items })
    }

    /// Every experiment (admins), by key.
    pub async fn experiments(
        &self,
        caller: Caller,
        page: &mercato_kernel::page::PageRequest,
    ) -> Result<mercato_kernel::page::Page<Experiment>, ApiError> {
        caller.require(&[Role::Admin])?;
        Ok(self.store.experiments(page).await?)
    }

    pub async fn create_experiment(
        &self,
        caller: Caller,
        key: String,
        variants: Vec<Variant>,
        goal: Option<String>,
    ) -> Result<Experiment, ApiError> {
        caller.require(&[Role::Admin])?;
        let goal = goal.unwrap_or_else(|| "order_confirmed".into());
        validate(&key, &variants, &goal)?;
        let experiment = Experiment {
            key,
            variants: variants
                .into_iter()
                .map(|v| Variant {
                    name: v.name.trim().to_owned(),
                    weight: v.weight,
                })
                .collect(),
            goal,
            created_at: time::now(),
        };
        match self.store.create_experiment(&experiment).await {
            Ok(()) => Ok(experiment),
            Err(CreateError::Exists) => Err(ApiError::conflict(
                "experiment_exists",
                "another experiment has this key",
            )),
            Err(CreateError::Other(e)) => Err(e.into()),
        }
    }

    async fn experiment(&self, key: &str) -> Result<Experiment, ApiError> {
        self.store
            .experiment(key)
            .await?
            .ok_or_else(|| ApiError::not_found("experiment"))
    }

    /// The subject's variant, the same every time; its first asking counts
    /// as an exposure. The subject is the signed-in user, or `subject`.
    pub async fn assignment(
        &self,
        caller: Option<Caller>,
        key: &str,
        subject: Option<String>,
    ) -> Result<Assignment, ApiError> {
        if let Some(s) = &subject {
            if s.trim().is_empty() || s.chars().count() > 128 {
                return Err(ApiError::validation(
                    "subject must be 1 to 128 characters, not only white space",
                ));
            }
        }
        let subject = match (caller, subject) {
            (Some(c), _) => c.user_id.to_string(),
            // Apart from users': a client cannot pass for one.
            (None, Some(s)) if !s.trim().is_empty() && s.chars().count() <= 128 => {
                format!("anonymous:{}", s.trim())
            }
            (None, _) => {
                return Err(ApiError::unprocessable(
                    "subject_required",
                    "sign in, or give subject (1 to 128 characters)",
                ))
            }
        };
        let experiment = self.experiment(key).await?;
        let variant = assign(&experiment.key, &subject, &experiment.variants)
            .ok_or_else(|| ApiError::internal("an experiment without variants"))?
            .name
            .clone();
        self.store
            .expose(&experiment.key, &subject, &variant)
            .await?;
        Ok(Assignment {
            experiment: experiment.key,
            variant,
        })
    }

    pub async fn results(&self, caller: Caller, key: &str) -> Result<ExperimentResults, ApiError> {
        caller.require(&[Role::Admin])?;
        let experiment = self.experiment(key).await?;
        let variants = self.store.results(&experiment).await?;
        let p = match (variants.first(), variants.get(1)) {
            (Some(a), Some(b)) if a.conversions + b.conversions > 0 => {
                p_value(a.conversions, a.exposures, b.conversions, b.exposures)
            }
            _ => None,
        };
        Ok(ExperimentResults {
            key: experiment.key,
            goal: experiment.goal,
            variants,
            p_value: p,
        })
    }

    pub fn subscription(&self) -> Subscription {
        Subscription {
            consumer: CONSUMER.to_owned(),
            per_instance: false,
            event_types: vec![
                ProductCreated::TYPE.to_owned(),
                ProductUpdated::TYPE.to_owned(),
                ProductArchived::TYPE.to_owned(),
                StockChanged::TYPE.to_owned(),
                OrderConfirmed::TYPE.to_owned(),
                ProductViewed::TYPE.to_owned(),
                CartItemAdded::TYPE.to_owned(),
                UserErased::TYPE.to_owned(),
            ],
            handler: Arc::new(Model(self.store.clone())),
        }
    }
}

/// Builds the model: products and stock are overwrites guarded by their
/// versions; an order counts once (inbox).
struct Model(RecommendationsStore);

#[async_trait::async_trait]
impl EventHandler for Model {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        match event.event_type.as_str() {
            ProductCreated::TYPE => {
                let e: ProductCreated = event.decode()?;
                self.0.record_product(&e.product, e.version).await
            }
            ProductUpdated::TYPE => {
                let e: ProductUpdated = event.decode()?;
                self.0.record_product(&e.product, e.version).await
            }
            ProductArchived::TYPE => {
                let e: ProductArchived = event.decode()?;
                self.0.archive_product(e.product_id, e.version).await
            }
            StockChanged::TYPE => {
                let e: StockChanged = event.decode()?;
                self.0.record_stock(&e.sku, e.available, e.version).await
            }
            OrderConfirmed::TYPE => {
                let e: OrderConfirmed = event.decode()?;
                let lines: Vec<(Uuid, i64)> =
                    e.items.iter().map(|l| (l.product_id, l.quantity)).collect();
                self.0
                    .record_order(
                        CONSUMER,
                        event.id,
                        &event.occurred_at,
                        e.customer_id,
                        &lines,
                    )
                    .await
            }
            ProductViewed::TYPE | CartItemAdded::TYPE => {
                // A signed-in customer's interest in a product; anonymous
                // visitors have no history here.
                let (customer, product) = if event.is::<ProductViewed>() {
                    let e: ProductViewed = event.decode()?;
                    (e.customer_id, e.product_id)
                } else {
                    let e: CartItemAdded = event.decode()?;
                    (e.customer_id, e.product_id)
                };
                match customer {
                    Some(customer) => {
                        self.0
                            .record_interest(customer, product, &event.occurred_at)
                            .await
                    }
                    None => Ok(()),
                }
            }
            UserErased::TYPE => {
                let e: UserErased = event.decode()?;
                self.0.erase(e.user_id).await
            }
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl RecommendationsClient for RecommendationsService {
    async fn for_product(&self, product_id: Uuid, limit: u32) -> ClientResult<Vec<Recommendation>> {
        let limit = usize::try_from(limit)
            .unwrap_or(MAX_LIMIT)
            .clamp(1, MAX_LIMIT);
        RecommendationsService::for_product(self, product_id, limit)
            .await
            .map(|r| r.items)
            .map_err(|e| ClientError::Failed(crate::NAME, e.message))
    }
}
