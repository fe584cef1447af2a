//! Subscription use cases, the scheduler that renews them, and the
//! consumers of what becomes of their orders.

use crate::domain::{
    retry_delay, validate_items, Interval, Subscription, SubscriptionItem, SubscriptionStatus,
};
use crate::store::{
    ClaimKind, ClaimRequest, NewSubscription, Outcome, PeriodOrder, Stored, SubscriptionsStore,
};
use mercato_contracts::clients::{ClientError, OrdersClient};
use mercato_contracts::events::{OrderCancelled, OrderConfirmed, UserErased};
use mercato_contracts::internal::api_error;
use mercato_contracts::types::{
    payment_token, PlaceOrder, PlacedOrder, ShippingAddress, SkuQuantity,
};
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::bus::{EventHandler, Subscription as BusSubscription};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::idempotency::{self, StoredResponse};
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, ApiError, Envelope};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The consumer of order outcomes.
pub const ORDERS_CONSUMER: &str = "subscriptions-orders";
/// The consumer of erasures.
pub const ERASURE_CONSUMER: &str = "subscriptions-erasure";

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often due renewals and retries are looked for.
    pub poll: Duration,
    /// The pause after the first failed attempt; four times as long after
    /// each next one.
    pub retry_backoff: Duration,
    /// How long a call to orders may stay unanswered before the scheduler
    /// makes it again (same order id: never a second order).
    pub unanswered_after: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(3600),
            unanswered_after: Duration::from_secs(10),
        }
    }
}

/// What a customer subscribes to.
pub struct NewRequest {
    pub idempotency_key: String,
    pub items: Vec<SubscriptionItem>,
    pub interval: Interval,
    pub payment_token: String,
    pub shipping_address: ShippingAddress,
}

/// An answer that may be a replay.
pub type Answer = StoredResponse;

pub struct SubscriptionsService {
    store: SubscriptionsStore,
    orders: Arc<dyn OrdersClient>,
    config: SchedulerConfig,
}

/// Subscriptions the scheduler takes per round and kind of work.
const BATCH: i64 = 100;

/// How long a replay waits for the request that holds its key.
const REPLAY_PATIENCE: Duration = Duration::from_secs(5);

fn not_found() -> ApiError {
    ApiError::not_found("subscription")
}

fn key_in_use() -> ApiError {
    ApiError::conflict(
        "idempotency_key_in_use",
        "a request with this key is in progress",
    )
}

/// What orders is asked to place for a period of `sub`.
fn place_request(order_id: Uuid, sub: &Subscription, token: &str) -> PlaceOrder {
    PlaceOrder {
        order_id,
        customer_id: sub.customer_id,
        subscription_id: sub.id,
        items: sub
            .items
            .iter()
            .map(|i| SkuQuantity {
                sku: i.sku.clone(),
                quantity: i.quantity,
            })
            .collect(),
        payment_token: token.to_owned(),
        shipping_address: sub.shipping_address.clone(),
    }
}

fn what_became(placed: &PlacedOrder) -> Outcome {
    match placed.status.as_str() {
        "pending" => Outcome::Pending,
        "cancelled" => Outcome::Failed(
            placed
                .cancel_reason
                .clone()
                .unwrap_or_else(|| "cancelled".into()),
        ),
        _ => Outcome::Confirmed,
    }
}

impl SubscriptionsService {
    pub fn new(
        store: SubscriptionsStore,
        orders: Arc<dyn OrdersClient>,
        config: SchedulerConfig,
    ) -> Self {
        Self {
            store,
            orders,
            config,
        }
    }

    pub fn store(&self) -> &SubscriptionsStore {
        &self.store
    }

    fn delay(&self) -> impl Fn(i64) -> Duration + Send + Sync + 'static {
        let base = self.config.retry_backoff;
        move |failed| retry_delay(base, failed)
    }

    /// Subscribes the caller and places the first order at once. The answer
    /// is stored with the key once orders took the first order; a replay
    /// returns it unchanged.
    pub async fn create(&self, caller: Caller, req: NewRequest) -> Result<Answer, ApiError> {
        caller.require(&[Role::Customer])?;
        validate_items(&req.items)?;
        let token = payment_token(&req.payment_token)?;
        req.shipping_address.validate()?;
        let scope = format!("subscribe:{}", caller.user_id);
        let canonical = serde_json::to_vec(&(
            &req.items,
            req.interval,
            &req.payment_token,
            &req.shipping_address,
        ))
        .map_err(ApiError::internal)?;
        let hash = idempotency::fingerprint(&[caller.user_id.as_bytes(), &canonical]);
        if let Some(answer) = self.replay(&scope, &req.idempotency_key, &hash).await? {
            return Ok(answer);
        }
        let now = time::now();
        let next_renewal_at = req
            .interval
            .period_start(now, 1)
            .ok_or_else(|| ApiError::validation("the next period is out of range"))?;
        let first_order = id::new_id();
        let view = Subscription {
            id: id::new_id(),
            customer_id: caller.user_id,
            status: SubscriptionStatus::Active,
            items: req
                .items
                .into_iter()
                .map(|i| SubscriptionItem {
                    sku: i.sku.trim().to_owned(),
                    quantity: i.quantity,
                })
                .collect(),
            interval: req.interval,
            next_renewal_at,
            orders: vec![first_order],
            failed_attempts: 0,
            shipping_address: req.shipping_address,
            created_at: now,
            updated_at: now,
        };
        let created = self
            .store
            .create(&NewSubscription {
                view: &view,
                payment_token: token,
                first_order,
                scope: &scope,
                key: &req.idempotency_key,
                request_hash: &hash,
            })
            .await?;
        if !created {
            // A request with the key committed first.
            return match self.replay(&scope, &req.idempotency_key, &hash).await? {
                Some(answer) => Ok(answer),
                None => Err(key_in_use()),
            };
        }
        let outcome = match self
            .orders
            .place(&place_request(first_order, &view, token))
            .await
        {
            Err(e @ ClientError::Rejected(..)) => {
                // Nothing was ordered: nothing is kept, nothing was told.
                self.store
                    .discard(view.id, &scope, &req.idempotency_key)
                    .await?;
                return Err(api_error(e));
            }
            Ok(placed) => Some(what_became(&placed)),
            // The scheduler asks again, with the same order id.
            Err(e) => {
                tracing::warn!(subscription_id = %view.id, error = %e, "the first order of a subscription is not placed yet");
                None
            }
        };
        let body = serde_json::to_string(&view).map_err(ApiError::internal)?;
        let answer = StoredResponse { status: 201, body };
        self.store
            .created(&view, first_order, &scope, &req.idempotency_key, &answer)
            .await?;
        if let Some(outcome) = outcome {
            self.record(first_order, &outcome).await?;
        }
        metrics::counter!("mercato_subscriptions_total", "event" => "created").increment(1);
        tracing::info!(subscription_id = %view.id, customer_id = %view.customer_id, interval = view.interval.as_str(), "subscribed");
        Ok(answer)
    }

    /// The stored answer of a key: at once, or once the request that holds
    /// it has stored it (409 when it does not within a few seconds).
    async fn replay(&self, scope: &str, key: &str, hash: &str) -> Result<Option<Answer>, ApiError> {
        let Some(stored) = idempotency::lookup(self.store.db(), scope, key, hash).await? else {
            return Ok(None);
        };
        let stored = if stored.body.is_empty() {
            idempotency::completed(self.store.db(), scope, key, REPLAY_PATIENCE)
                .await?
                .ok_or_else(key_in_use)?
        } else {
            stored
        };
        Ok(Some(stored))
    }

    /// Asks orders to place a claimed period order and records what it
    /// came to. A refusal is a failed attempt; no answer leaves the claim
    /// to the scheduler, which asks again with the same order id.
    async fn place_order(
        &self,
        claim: &PeriodOrder,
        sub: &Subscription,
        token: &str,
    ) -> Result<(), RenewError> {
        let outcome = match self
            .orders
            .place(&place_request(claim.order_id, sub, token))
            .await
        {
            Ok(placed) => what_became(&placed),
            Err(ClientError::Rejected(_, code, _)) => Outcome::Refused(code),
            Err(e) => {
                let _ = self.store.touch(claim.order_id).await;
                return Err(RenewError::Orders(e));
            }
        };
        metrics::counter!("mercato_subscriptions_total", "event" => "order_placed").increment(1);
        self.record(claim.order_id, &outcome)
            .await
            .map_err(RenewError::Store)
    }

    async fn record(&self, order_id: Uuid, outcome: &Outcome) -> anyhow::Result<()> {
        self.store
            .settle(order_id, outcome, &self.delay(), None)
            .await
    }

    /// The subscription if the caller may see it; 404 otherwise.
    async fn visible(&self, caller: &Caller, id: Uuid) -> Result<Stored, ApiError> {
        let stored = self.store.get(id).await?.ok_or_else(not_found)?;
        match caller.role {
            Role::Admin => Ok(stored),
            _ if stored.view.customer_id == caller.user_id => Ok(stored),
            _ => Err(not_found()),
        }
    }

    pub async fn get(&self, caller: Caller, id: Uuid) -> Result<Subscription, ApiError> {
        Ok(self.visible(&caller, id).await?.view)
    }

    /// The caller's subscriptions, newest first; every one for admins.
    pub async fn list(
        &self,
        caller: Caller,
        page: &PageRequest,
    ) -> Result<Page<Subscription>, ApiError> {
        let customer = (caller.role != Role::Admin).then_some(caller.user_id);
        Ok(self.store.list(customer, page).await?)
    }

    /// Pauses: nothing is placed until resumed. Pausing a paused
    /// subscription changes nothing; a cancelled one is 409.
    pub async fn pause(&self, caller: Caller, id: Uuid) -> Result<Subscription, ApiError> {
        use SubscriptionStatus::*;
        self.change(caller, id, &[Active, PastDue], Paused).await
    }

    /// Resumes a paused or past-due subscription: a failed period is tried
    /// again at once with fresh attempts, and a period that started while
    /// it was paused is placed now, once, not once per missed period.
    pub async fn resume(&self, caller: Caller, id: Uuid) -> Result<Subscription, ApiError> {
        use SubscriptionStatus::*;
        self.change(caller, id, &[Paused, PastDue], Active).await
    }

    /// Cancels for good; what was placed stays placed.
    pub async fn cancel(&self, caller: Caller, id: Uuid) -> Result<Subscription, ApiError> {
        use SubscriptionStatus::*;
        self.change(caller, id, &[Active, Paused, PastDue], Cancelled)
            .await
    }

    async fn change(
        &self,
        caller: Caller,
        id: Uuid,
        from: &[SubscriptionStatus],
        to: SubscriptionStatus,
    ) -> Result<Subscription, ApiError> {
        // Another request may change it between the read and the write:
        // then the rules are applied again to what it has become.
        for _ in 0..3 {
            let stored = self.visible(&caller, id).await?;
            let current = stored.view.status;
            if current == to {
                return Ok(stored.view);
            }
            if current == SubscriptionStatus::Cancelled {
                return Err(ApiError::conflict(
                    "subscription_cancelled",
                    "the subscription is cancelled",
                ));
            }
            if !from.contains(&current) {
                return Err(ApiError::conflict(
                    "invalid_transition",
                    format!(
                        "a {} subscription cannot become {}",
                        current.as_str(),
                        to.as_str()
                    ),
                ));
            }
            if self
                .store
                .set_status(id, stored.view.customer_id, &[current], to)
                .await?
            {
                metrics::counter!("mercato_subscriptions_total", "event" => to.as_str())
                    .increment(1);
                tracing::info!(subscription_id = %id, from = current.as_str(), to = to.as_str(), "subscription status changed");
                return Ok(self.visible(&caller, id).await?.view);
            }
        }
        Err(ApiError::conflict(
            "subscription_busy",
            "the subscription is being changed by other requests; try again",
        ))
    }

    /// Places the order of the period that starts at `next_renewal_at` now
    /// (or tries a failed period again at once), unless that period has a
    /// pending or confirmed order already. Admins only.
    pub async fn renew(&self, caller: Caller, id: Uuid) -> Result<Subscription, ApiError> {
        caller.require(&[Role::Admin])?;
        let stored = self.visible(&caller, id).await?;
        match stored.view.status {
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => {}
            other => {
                return Err(ApiError::conflict(
                    "subscription_not_active",
                    format!("a {} subscription places no orders", other.as_str()),
                ))
            }
        }
        let period = stored.retry_period.unwrap_or(stored.period);
        match self
            .renew_period(&stored, period, ClaimKind::Renew, time::now())
            .await
        {
            Ok(_) => {}
            Err(RenewError::Orders(e)) => {
                tracing::warn!(subscription_id = %id, error = %e, "a renewal is not placed yet; the scheduler tries again");
            }
            // A busy store is a 503 to retry; anything else a 500.
            Err(RenewError::Store(e)) => return Err(e.into()),
        }
        Ok(self.visible(&caller, id).await?.view)
    }

    /// Claims and places `period`'s order as `kind` allows; when the period
    /// is the one at `next_renewal_at` and that time has come, the
    /// subscription moves on to the next period with the claim (or without
    /// one, when the period has its order already). `true` when an order
    /// was claimed.
    async fn renew_period(
        &self,
        stored: &Stored,
        period: i64,
        kind: ClaimKind,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, RenewError> {
        let sub = &stored.view;
        let advance_to = if period == stored.period && sub.next_renewal_at <= now {
            sub.interval.next_period(stored.anchor_at, period, now)
        } else {
            None
        };
        let claim = self
            .store
            .claim(&ClaimRequest {
                subscription_id: sub.id,
                customer_id: sub.customer_id,
                period,
                kind,
                at: now,
                advance_to,
            })
            .await
            .map_err(RenewError::Store)?;
        let Some(claim) = claim else {
            return Ok(false);
        };
        tracing::info!(subscription_id = %sub.id, period, attempt = claim.attempt, order_id = %claim.order_id, "placing a subscription's order");
        self.place_order(&claim, sub, &stored.payment_token).await?;
        Ok(true)
    }

    /// One round of the scheduler at `now`: calls to orders left
    /// unanswered are made again, failed periods whose pause is over are
    /// tried again, and due periods are placed. Safe on any number of
    /// replicas at once: each order is claimed once (see
    /// [`SubscriptionsStore::claim`]). A subscription that fails is logged
    /// and passed over. Returns the orders claimed.
    pub async fn tick(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<usize> {
        let stale =
            now - chrono::Duration::from_std(self.config.unanswered_after).unwrap_or_default();
        for claim in self.store.unanswered(&stale, BATCH).await? {
            if let Err(e) = self.ask_again(&claim).await {
                tracing::warn!(order_id = %claim.order_id, error = %e, "a subscription's order is still not placed");
            }
        }
        let mut claimed = 0;
        for id in self.store.retries_due(&now, BATCH).await? {
            claimed += self.run(id, ClaimKind::Retry, now).await;
        }
        for id in self.store.due(&now, BATCH).await? {
            claimed += self.run(id, ClaimKind::Due, now).await;
        }
        Ok(claimed)
    }

    /// Asks orders again for a claim nobody heard back about, with its
    /// order id; a subscription that stopped meanwhile gives it up.
    async fn ask_again(&self, claim: &PeriodOrder) -> Result<(), RenewError> {
        let stored = self
            .store
            .get(claim.subscription_id)
            .await
            .map_err(RenewError::Store)?;
        match stored {
            Some(s)
                if matches!(
                    s.view.status,
                    SubscriptionStatus::Active | SubscriptionStatus::PastDue
                ) =>
            {
                self.place_order(claim, &s.view, &s.payment_token).await
            }
            _ => self
                .store
                .abandon(claim.order_id)
                .await
                .map_err(RenewError::Store),
        }
    }

    /// One subscription's turn in a round; the claim checks again that it
    /// is due (another replica may have moved it on since the list).
    async fn run(&self, id: Uuid, kind: ClaimKind, now: chrono::DateTime<chrono::Utc>) -> usize {
        let stored = match self.store.get(id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return 0,
            Err(e) => {
                tracing::warn!(subscription_id = %id, error = %format!("{e:#}"), "a subscription could not be read");
                return 0;
            }
        };
        let period = match kind {
            ClaimKind::Retry => match stored.retry_period {
                Some(p) => p,
                None => return 0,
            },
            _ => stored.period,
        };
        match self.renew_period(&stored, period, kind, now).await {
            Ok(claimed) => usize::from(claimed),
            Err(RenewError::Orders(e)) => {
                tracing::warn!(subscription_id = %id, period, error = %e, "renewal not placed yet; asked again later");
                1
            }
            Err(e) => {
                tracing::warn!(subscription_id = %id, period, error = %e, "renewal not placed; trying again later");
                0
            }
        }
    }

    /// Runs [`Self::tick`] every `poll` until shutdown.
    pub fn spawn_scheduler(self: &Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(service.config.poll);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = every.tick() => {}
                }
                if let Err(e) = service.tick(time::now()).await {
                    tracing::warn!(error = %format!("{e:#}"), "subscription scheduler round failed");
                }
            }
        })
    }

    /// The consumers this context keeps on the bus.
    pub fn subscriptions(self: &Arc<Self>) -> Vec<BusSubscription> {
        vec![
            BusSubscription {
                consumer: ORDERS_CONSUMER.to_owned(),
                per_instance: false,
                event_types: vec![
                    OrderConfirmed::TYPE.to_owned(),
                    OrderCancelled::TYPE.to_owned(),
                ],
                handler: Arc::new(OrderOutcomes(self.clone())),
            },
            BusSubscription {
                consumer: ERASURE_CONSUMER.to_owned(),
                per_instance: false,
                event_types: vec![UserErased::TYPE.to_owned()],
                handler: Arc::new(Erasure(self.store.clone())),
            },
        ]
    }
}

/// Why a renewal was not placed.
#[derive(Debug)]
enum RenewError {
    Store(anyhow::Error),
    Orders(ClientError),
}

impl std::fmt::Display for RenewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenewError::Store(e) => write!(f, "{e:#}"),
            RenewError::Orders(e) => write!(f, "{e}"),
        }
    }
}

/// What became of the orders: a confirmation clears the failed attempts, a
/// cancellation counts as one. Orders of no subscription are passed over.
struct OrderOutcomes(Arc<SubscriptionsService>);

#[async_trait::async_trait]
impl EventHandler for OrderOutcomes {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let (order_id, outcome) = if event.is::<OrderConfirmed>() {
            let e: OrderConfirmed = event.decode()?;
            (e.order_id, Outcome::Confirmed)
        } else {
            let e: OrderCancelled = event.decode()?;
            (e.order_id, Outcome::Failed(e.reason))
        };
        self.0
            .store
            .settle(
                order_id,
                &outcome,
                &self.0.delay(),
                Some((ORDERS_CONSUMER, event.id)),
            )
            .await
    }
}

struct Erasure(SubscriptionsStore);

#[async_trait::async_trait]
impl EventHandler for Erasure {
    /// An overwrite: handling the event again changes nothing.
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let e: UserErased = event.decode()?;
        let n = self.0.erase_customer(e.user_id).await?;
        tracing::info!(customer_id = %e.user_id, subscriptions = n, "subscriptions of an erased customer cancelled");
        Ok(())
    }
}
