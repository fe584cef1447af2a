//! Review use cases and the consumers that keep what reviews need to know:
//! who bought what (orders), who sells what (catalog), who is who (identity).

use crate::domain::{validate, Moderation, ProductRating, Review, ReviewStatus, SellerRating};
use crate::store::{CreateError, ReviewCursor, ReviewsStore, Sort, Stored};
use mercato_contracts::clients::{ClientError, ClientResult, ReviewsClient};
use mercato_contracts::events::{
    OrderCancelled, OrderConfirmed, OrderRefunded, ProductCreated, ProductUpdated, UserErased,
    UserRegistered, UserUpdated,
};
use mercato_contracts::types::ProductReviews;
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::bus::{EventHandler, Subscription};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, ApiError, Envelope};
use std::collections::BTreeSet;
use std::sync::Arc;
use uuid::Uuid;

/// Consumers: purchases from orders, sellers from catalog, names from identity.
pub const PURCHASES_CONSUMER: &str = "reviews-purchases";
pub const PRODUCTS_CONSUMER: &str = "reviews-products";
pub const AUTHORS_CONSUMER: &str = "reviews-authors";

/// The name on a review whose author's name has not reached reviews yet.
const UNNAMED: &str = "A customer";

pub struct ReviewsService {
    store: ReviewsStore,
    moderation: Moderation,
}

/// A review as its author writes it.
pub struct NewReview {
    pub rating: i64,
    pub title: String,
    pub body: String,
}

fn not_found() -> ApiError {
    ApiError::not_found("review")
}

impl ReviewsService {
    pub fn new(store: ReviewsStore, moderation: Moderation) -> Self {
        Self { store, moderation }
    }

    pub fn store(&self) -> &ReviewsStore {
        &self.store
    }

    /// A customer who bought the product reviews it, once. Published at
    /// once unless it trips moderation.
    pub async fn create(
        &self,
        caller: Caller,
        product_id: Uuid,
        new: NewReview,
    ) -> Result<Review, ApiError> {
        caller.require(&[Role::Customer])?;
        validate(new.rating, &new.title, &new.body)?;
        if !self.store.bought(caller.user_id, product_id).await? {
            return Err(ApiError::forbidden(
                "only customers with a confirmed, shipped or delivered order of the product review it",
            ));
        }
        let author_name = self
            .store
            .author_name(caller.user_id)
            .await?
            .unwrap_or_else(|| UNNAMED.to_owned());
        let title = new.title.trim().to_owned();
        let body = new.body.trim().to_owned();
        let stored = Stored {
            review: Review {
                id: id::new_id(),
                product_id,
                author_name,
                rating: new.rating,
                status: self.moderation.verdict(&title, &body),
                title,
                body,
                verified_purchase: true,
                helpful_votes: 0,
                unhelpful_votes: 0,
                created_at: time::now(),
            },
            author_id: caller.user_id,
            seller_id: self.store.seller_of(product_id).await?,
        };
        match self.store.create(&stored).await {
            Ok(()) => {}
            Err(CreateError::Exists) => {
                return Err(ApiError::conflict(
                    "review_exists",
                    "you reviewed this product already",
                ))
            }
            Err(CreateError::Other(e)) => return Err(e.into()),
        }
        metrics::counter!("mercato_reviews_total", "status" => stored.review.status.as_str())
            .increment(1);
        tracing::info!(review_id = %stored.review.id, product_id = %product_id, status = stored.review.status.as_str(), "review written");
        Ok(stored.review)
    }

    pub async fn for_product(
        &self,
        product_id: Uuid,
        sort: Sort,
        rating: Option<i64>,
        page: &PageRequest,
    ) -> Result<Page<Review>, ApiError> {
        let after = page.after.as_deref().map(ReviewCursor::parse);
        Ok(self
            .store
            .for_product(product_id, sort, rating, after.as_ref(), page.limit)
            .await?)
    }

    pub async fn product_rating(&self, product_id: Uuid) -> Result<ProductRating, ApiError> {
        Ok(self.store.product_rating(product_id).await?)
    }

    pub async fn seller_rating(&self, seller_id: Uuid) -> Result<SellerRating, ApiError> {
        Ok(self.store.seller_rating(seller_id).await?)
    }

    /// The review if the caller may see it: published ones for everybody,
    /// the others for their author and admins.
    async fn visible(&self, caller: Option<&Caller>, id: Uuid) -> Result<Stored, ApiError> {
        let stored = self.store.get(id).await?.ok_or_else(not_found)?;
        let own = caller.is_some_and(|c| c.role == Role::Admin || c.user_id == stored.author_id);
        if stored.review.status == ReviewStatus::Published || own {
            Ok(stored)
        } else {
            Err(not_found())
        }
    }

    /// Says whether a published review helped; voting again replaces the
    /// vote. Not on one's own review.
    pub async fn vote(&self, caller: Caller, id: Uuid, helpful: bool) -> Result<Review, ApiError> {
        let stored = self.visible(Some(&caller), id).await?;
        if stored.review.status != ReviewStatus::Published {
            return Err(not_found());
        }
        if stored.author_id == caller.user_id {
            return Err(ApiError::forbidden(
                "authors do not vote on their own reviews",
            ));
        }
        self.store
            .vote(id, caller.user_id, helpful)
            .await?
            .ok_or_else(not_found)
    }

    /// Its author or an admin deletes a review.
    pub async fn delete(&self, caller: Caller, id: Uuid) -> Result<(), ApiError> {
        let stored = self.visible(Some(&caller), id).await?;
        if caller.role != Role::Admin && stored.author_id != caller.user_id {
            return Err(ApiError::forbidden(
                "only its author or an admin deletes a review",
            ));
        }
        if self.store.delete(id).await? {
            tracing::info!(review_id = %id, "review deleted");
        }
        Ok(())
    }

    /// Reviews by status, for admins.
    pub async fn queue(
        &self,
        caller: Caller,
        status: Option<ReviewStatus>,
        page: &PageRequest,
    ) -> Result<Page<Review>, ApiError> {
        caller.require(&[Role::Admin])?;
        Ok(self.store.by_status(status, page).await?)
    }

    /// Publishes a pending or rejected review (admins).
    pub async fn approve(&self, caller: Caller, id: Uuid) -> Result<Review, ApiError> {
        use ReviewStatus::*;
        self.moderate(caller, id, &[Pending, Rejected], Published)
            .await
    }

    /// Takes a pending or published review out of sight (admins).
    pub async fn reject(&self, caller: Caller, id: Uuid) -> Result<Review, ApiError> {
        use ReviewStatus::*;
        self.moderate(caller, id, &[Pending, Published], Rejected)
            .await
    }

    async fn moderate(
        &self,
        caller: Caller,
        id: Uuid,
        from: &[ReviewStatus],
        to: ReviewStatus,
    ) -> Result<Review, ApiError> {
        caller.require(&[Role::Admin])?;
        let stored = self.store.get(id).await?.ok_or_else(not_found)?;
        if stored.review.status == to {
            return Ok(stored.review);
        }
        match self.store.set_status(id, from, to).await? {
            Some(after) => Ok(after.review),
            // Changed meanwhile: what it is now.
            None => Ok(self.store.get(id).await?.ok_or_else(not_found)?.review),
        }
    }

    /// The consumers this context keeps on the bus.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        vec![
            Subscription {
                consumer: PURCHASES_CONSUMER.to_owned(),
                per_instance: false,
                event_types: vec![
                    OrderConfirmed::TYPE.to_owned(),
                    OrderCancelled::TYPE.to_owned(),
                    OrderRefunded::TYPE.to_owned(),
                ],
                handler: Arc::new(Purchases(self.store.clone())),
            },
            Subscription {
                consumer: PRODUCTS_CONSUMER.to_owned(),
                per_instance: false,
                event_types: vec![
                    ProductCreated::TYPE.to_owned(),
                    ProductUpdated::TYPE.to_owned(),
                ],
                handler: Arc::new(Products(self.store.clone())),
            },
            Subscription {
                consumer: AUTHORS_CONSUMER.to_owned(),
                per_instance: false,
                event_types: vec![
                    UserRegistered::TYPE.to_owned(),
                    UserUpdated::TYPE.to_owned(),
                    UserErased::TYPE.to_owned(),
                ],
                handler: Arc::new(Authors(self.store.clone())),
            },
        ]
    }
}

/// Who bought what: a confirmed order's products; a cancelled or refunded
/// order withdraws them (an overwrite, so it needs no inbox).
struct Purchases(ReviewsStore);

#[async_trait::async_trait]
impl EventHandler for Purchases {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        if event.is::<OrderConfirmed>() {
            let e: OrderConfirmed = event.decode()?;
            let products: BTreeSet<Uuid> = e.items.iter().map(|l| l.product_id).collect();
            let products: Vec<Uuid> = products.into_iter().collect();
            return self
                .0
                .record_purchase(
                    PURCHASES_CONSUMER,
                    event.id,
                    e.order_id,
                    e.customer_id,
                    &products,
                )
                .await;
        }
        let order_id = if event.is::<OrderCancelled>() {
            event.decode::<OrderCancelled>()?.order_id
        } else {
            event.decode::<OrderRefunded>()?.order_id
        };
        self.0.withdraw_purchase(order_id).await
    }
}

/// Who sells what, newest version first (an overwrite guarded by version).
struct Products(ReviewsStore);

#[async_trait::async_trait]
impl EventHandler for Products {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let (product, version) = if event.is::<ProductCreated>() {
            let e: ProductCreated = event.decode()?;
            (e.product, e.version)
        } else {
            let e: ProductUpdated = event.decode()?;
            (e.product, e.version)
        };
        self.0
            .record_product(product.id, product.seller_id, version)
            .await
    }
}

/// Names reviews are signed with; an erased user's reviews lose theirs.
struct Authors(ReviewsStore);

#[async_trait::async_trait]
impl EventHandler for Authors {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        if event.is::<UserErased>() {
            let e: UserErased = event.decode()?;
            return self.0.erase_author(e.user_id).await;
        }
        let (user_id, name) = if event.is::<UserRegistered>() {
            let e: UserRegistered = event.decode()?;
            (e.user_id, e.name)
        } else {
            let e: UserUpdated = event.decode()?;
            (e.user_id, e.name)
        };
        self.0.record_author(user_id, &name).await
    }
}

#[async_trait::async_trait]
impl ReviewsClient for ReviewsService {
    async fn product_reviews(&self, product_id: Uuid, limit: u32) -> ClientResult<ProductReviews> {
        let failed = |e: ApiError| ClientError::Failed(crate::NAME, e.message);
        let rating = self.product_rating(product_id).await.map_err(failed)?;
        let page = PageRequest {
            limit: limit.clamp(1, 100),
            after: None,
        };
        let reviews = self
            .for_product(product_id, Sort::Helpful, None, &page)
            .await
            .map_err(failed)?
            .items;
        Ok(ProductReviews { rating, reviews })
    }
}
