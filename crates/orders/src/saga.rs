//! The checkout saga, orchestrated.
//!
//! Forward steps: `reserve` → `redeem` → `pay` → `commit` → `empty_cart`
//! → `confirm_emptied` (an order placed for a subscription has no cart and
//! goes from `commit` to `confirm_emptied`); when the cart could not be emptied at once,
//! `confirm` → `clear_cart` instead. Compensation: `refund_payment` → `release_stock` →
//! `release_promotion` → `cancel_order`. An unwind (cancellation or refund
//! of a confirmed order): `refund_payment` → `restock`, then for a
//! cancellation `release_promotion` (a refunded order keeps its use of the
//! code). `redeem` and `release_promotion` are steps only of orders with a
//! promotion. An unwind's `refund_payment` pays the rest of the total its
//! status change claimed. A refund (an amount, or a received return):
//! `restock_items` (a return's) → `refund_amount`, which records the refund
//! as it finishes; refunds are never undone, their steps retry until done.
//!
//! Every step calls an idempotent operation keyed by the order id, then
//! records the next step; a crash between the two repeats the call, which
//! has no second effect. Undo operations are no-ops when there is nothing to
//! undo, so compensation runs them all without having to know how far the
//! forward steps got. A forward step that keeps failing until the saga's
//! deadline turns the saga around.

use crate::domain::{cancel_reason, Order, OrderStatus};
use crate::returns::Refund;
use crate::store::{OrdersStore, Saga, SagaKind, SagaState, SagaUpdate};
use mercato_contracts::clients::{
    CartClient, ChargeOutcome, ClientError, InventoryClient, PaymentsClient, PricingClient,
    RedeemOutcome, RefundOutcome, ReserveOutcome,
};
use mercato_contracts::events::{OrderCancelled, OrderConfirmed};
use mercato_contracts::types::SkuQuantity;
use mercato_kernel::event::{with_correlation, Correlation};
use mercato_kernel::resilience::backoff;
use mercato_kernel::{time, Envelope};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Where every checkout saga starts.
pub const FIRST_STEP: &str = "reserve";

#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// Forward steps give up and compensate after this long.
    pub deadline: Duration,
    /// Time-out of one call to inventory or cart.
    pub step_timeout: Duration,
    /// Time-out of one call to payments (a charge, and its void on time-out).
    pub pay_timeout: Duration,
    /// How long reserved stock is held for an order.
    pub reservation_ttl: Duration,
    /// How often unfinished sagas are looked for.
    pub poll_interval: Duration,
    /// How long a run holds a saga without renewing; renewed every third of
    /// it, also while a step waits on another service. With several runners
    /// on one store (replicas), a runner that died lets go of its sagas
    /// within this long. A sole runner voids old leases when it starts
    /// ([`SagaRunner::take_over`]), so it can hold them longer and renew
    /// less under load.
    pub lease: Duration,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(4),
            step_timeout: Duration::from_secs(3),
            pay_timeout: Duration::from_secs(5),
            reservation_ttl: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_millis(250),
            lease: Duration::from_secs(6),
        }
    }
}

/// The contexts the saga calls.
pub struct SagaDeps {
    pub inventory: Arc<dyn InventoryClient>,
    pub payments: Arc<dyn PaymentsClient>,
    pub cart: Arc<dyn CartClient>,
    pub pricing: Arc<dyn PricingClient>,
}

pub struct SagaRunner {
    store: OrdersStore,
    inventory: Arc<dyn InventoryClient>,
    payments: Arc<dyn PaymentsClient>,
    cart: Arc<dyn CartClient>,
    pricing: Arc<dyn PricingClient>,
    config: SagaConfig,
    /// This runner's name in leases.
    owner: String,
}

enum Step {
    /// The step recorded what comes next: the saga as it is now.
    Advanced(Saga),
    /// Try again later.
    Retry(String),
}

/// Attempts after which emptying the cart is given up: it never undoes an order.
const CART_ATTEMPTS: i64 = 10;

impl SagaConfig {
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(6))
    }

    /// A run renews its lease every third of it.
    fn renew_every(&self) -> Duration {
        self.lease / 3
    }
}
/// A run that recorded nothing because the saga had moved on stops here:
/// another run holds it (its lease ran out under this one).
/// The saga once moved to `step` in `state`, as the store records it.
fn moved_to(saga: &Saga, state: SagaState, step: &str, reason: Option<&str>) -> Saga {
    Saga {
        state,
        step: step.to_owned(),
        cancel_reason: reason
            .map(str::to_owned)
            .or_else(|| saga.cancel_reason.clone()),
        attempts: 0,
        ..saga.clone()
    }
}

fn moved_on_unless(moved: bool, saga: &Saga) -> anyhow::Result<()> {
    anyhow::ensure!(
        moved,
        "saga of order {} is no longer at {}; another run went on",
        saga.order_id,
        saga.step
    );
    Ok(())
}

/// What an order bought, as the cart takes it out.
fn bought(order: &Order) -> Vec<SkuQuantity> {
    order
        .items
        .iter()
        .map(|l| SkuQuantity {
            sku: l.sku.clone(),
            quantity: l.quantity,
        })
        .collect()
}

fn client_error(e: ClientError) -> String {
    e.to_string()
}

/// Fault injection for the crash and saga tests, from `MERCATO_FAILPOINT`:
/// - `saga_crash_after:<step>`: the process dies at once when that step has
///   had its effect but before the saga records it (for the steps that
///   change the order itself, before that change);
/// - `saga_pause_before:<step>:<ms>`: the saga waits before running the step.
///
/// Unset, each check costs one comparison.
#[derive(Debug)]
enum Failpoint {
    CrashAfter(String),
    PauseBefore(String, Duration),
}

fn failpoint() -> Option<&'static Failpoint> {
    static POINT: std::sync::OnceLock<Option<Failpoint>> = std::sync::OnceLock::new();
    POINT
        .get_or_init(|| {
            let raw = std::env::var("MERCATO_FAILPOINT").ok()?;
            if let Some(step) = raw.strip_prefix("saga_crash_after:") {
                return Some(Failpoint::CrashAfter(step.to_owned()));
            }
            let rest = raw.strip_prefix("saga_pause_before:")?;
            let (step, ms) = rest.rsplit_once(':')?;
            Some(Failpoint::PauseBefore(
                step.to_owned(),
                Duration::from_millis(ms.parse().ok()?),
            ))
        })
        .as_ref()
}

fn crash_point(step: &str) {
    if let Some(Failpoint::CrashAfter(target)) = failpoint() {
        if target == step {
            eprintln!("failpoint: crashing after saga step {step}");
            std::process::abort();
        }
    }
}

async fn pause_point(step: &str) {
    if let Some(Failpoint::PauseBefore(target, pause)) = failpoint() {
        if target == step {
            tokio::time::sleep(*pause).await;
        }
    }
}

async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout(what)))
}

impl SagaRunner {
    pub fn new(store: OrdersStore, deps: SagaDeps, config: SagaConfig) -> Self {
        Self {
            store,
            inventory: deps.inventory,
            payments: deps.payments,
            cart: deps.cart,
            pricing: deps.pricing,
            config,
            owner: format!("runner-{}", mercato_kernel::id::new_id().simple()),
        }
    }

    pub fn config(&self) -> &SagaConfig {
        &self.config
    }

    /// Starts driving a saga in the background.
    pub fn start(self: &Arc<Self>, order_id: Uuid) {
        let runner = self.clone();
        tokio::spawn(async move {
            if let Err(e) = runner.drive(order_id).await {
                tracing::warn!(order_id = %order_id, error = %format!("{e:#}"), "saga run failed; it will be resumed");
            }
        });
    }

    /// Declares this runner the only one on its store, voiding leases a
    /// crashed earlier process left behind, so its sagas resume at once.
    pub async fn take_over(&self) -> anyhow::Result<()> {
        let n = self.store.release_all().await?;
        if n > 0 {
            tracing::info!(sagas = n, "resuming sagas left by an earlier process");
        }
        Ok(())
    }

    /// Resumes unfinished sagas (after a crash, a retry pause, or another
    /// runner's lost lease) until `shutdown`.
    pub fn spawn_recovery(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        tokio::spawn(async move {
            loop {
                match runner.store.due(64).await {
                    Ok(ids) => {
                        for id in ids {
                            runner.start(id);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "looking for unfinished sagas failed")
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(runner.config.poll_interval) => {}
                }
            }
        })
    }

    /// Runs a saga's steps until it is done or must wait.
    pub async fn drive(&self, order_id: Uuid) -> anyhow::Result<()> {
        self.try_drive(order_id).await.map(|_| ())
    }

    /// Runs the saga in this task and answers once it is done, or must wait
    /// for a dependency, or `patience` has passed. A run elsewhere that holds
    /// the saga (a recovery run that took it a moment before) is waited for
    /// instead of leaving the saga half-way at the answer.
    pub async fn drive_now(&self, order_id: Uuid, patience: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + patience;
        while !self.try_drive(order_id).await? {
            let finished = self
                .store
                .saga(order_id)
                .await?
                .is_none_or(|s| s.state == SagaState::Done);
            if finished || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// [`Self::drive`]; `false` when another run held the saga (or it was done).
    async fn try_drive(&self, order_id: Uuid) -> anyhow::Result<bool> {
        // A holder per run: a run that outlived its lease cannot renew or
        // release the lease of the run that took over, even in this process.
        let holder = format!("{}/{}", self.owner, mercato_kernel::id::new_id().simple());
        if !self
            .store
            .claim(order_id, &holder, self.config.lease())
            .await?
        {
            return Ok(false);
        }
        let Some(saga) = self.store.saga(order_id).await? else {
            return Ok(true);
        };
        let correlation = Correlation {
            correlation_id: saga.correlation_id.clone(),
            causation_id: None,
        };
        let result = with_correlation(correlation, self.drive_claimed(saga, &holder)).await;
        if result.is_err() {
            // Let any runner pick it up again at once.
            let _ = self.store.release(order_id, &holder).await;
        }
        result.map(|()| true)
    }

    /// Extends this run's lease; `false` when another run took it.
    async fn renew(
        &self,
        order_id: Uuid,
        holder: &str,
        leased_at: &mut Instant,
    ) -> anyhow::Result<bool> {
        let renewed_at = Instant::now();
        if self
            .store
            .renew(order_id, holder, self.config.lease())
            .await?
        {
            *leased_at = renewed_at;
            return Ok(true);
        }
        tracing::warn!(order_id = %order_id, "saga lease lost; another runner goes on");
        Ok(false)
    }

    /// Runs the saga's steps while this run holds it. Each step records the
    /// next one only from the step the saga is at, so the saga in hand is the
    /// stored one as long as recording succeeds.
    async fn drive_claimed(&self, mut saga: Saga, holder: &str) -> anyhow::Result<()> {
        let order_id = saga.order_id;
        // A refund's saga is keyed by the refund; its steps act on its order.
        let of_order = match saga.kind {
            SagaKind::Refund => self.refund_of(&saga).await?.order_id,
            SagaKind::Checkout | SagaKind::Unwind => order_id,
        };
        // What the steps read of the order (lines, total, customer) never
        // changes, so it is read once.
        let order = self
            .store
            .get(of_order)
            .await?
            .ok_or_else(|| anyhow::anyhow!("saga {order_id} for missing order {of_order}"))?;
        let mut leased_at = Instant::now();
        loop {
            if leased_at.elapsed() >= self.config.renew_every()
                && !self.renew(order_id, holder, &mut leased_at).await?
            {
                return Ok(());
            }
            if saga.state == SagaState::Done {
                return Ok(());
            }
            let started = Instant::now();
            // The lease is kept while the step runs, however long it waits.
            let current = saga.clone();
            let work = async {
                pause_point(&current.step).await;
                self.step(&current, &order).await
            };
            tokio::pin!(work);
            let step = loop {
                let renew_at = leased_at + self.config.renew_every();
                tokio::select! {
                    step = &mut work => break step?,
                    _ = tokio::time::sleep_until(renew_at.into()) => {}
                }
                // The step goes on while the lease is renewed: it may hold a
                // transaction (and with it the saga's row or the store's
                // writer turn) that the renewal waits for.
                let renewal = self.renew(order_id, holder, &mut leased_at);
                tokio::pin!(renewal);
                tokio::select! {
                    biased;
                    kept = &mut renewal => if !kept? {
                        // Dropped mid-step: steps are idempotent, and the
                        // runner that holds the saga now redoes it.
                        return Ok(());
                    },
                    // Done first: the renewal is dropped (statements are
                    // cancel-safe) and made again before the next step.
                    step = &mut work => break step?,
                }
            };
            let outcome = match &step {
                Step::Advanced(_) => "ok",
                Step::Retry(_) => "retry",
            };
            metrics::histogram!("mercato_saga_step_duration_seconds", "step" => saga.step.clone(), "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
            let error = match step {
                Step::Advanced(next) => {
                    saga = next;
                    continue;
                }
                Step::Retry(error) => error,
            };
            let forward = matches!(saga.step.as_str(), "reserve" | "redeem" | "pay" | "commit");
            if saga.state == SagaState::Running && forward && time::now() >= saga.deadline {
                let reason = match saga.step.as_str() {
                    "pay" => cancel_reason::PAYMENT_FAILED,
                    "redeem" => cancel_reason::PROMOTION_UNAVAILABLE,
                    _ => cancel_reason::OUT_OF_STOCK,
                };
                tracing::warn!(order_id = %order_id, step = %saga.step, error = %error, "saga step timed out; compensating");
                let moved = self
                    .store
                    .advance(
                        order_id,
                        (saga.state, &saga.step),
                        SagaState::Compensating,
                        "refund_payment",
                        Some(reason),
                    )
                    .await?;
                moved_on_unless(moved, &saga)?;
                saga = moved_to(
                    &saga,
                    SagaState::Compensating,
                    "refund_payment",
                    Some(reason),
                );
                continue;
            }
            if saga.step == "clear_cart" && saga.attempts + 1 >= CART_ATTEMPTS {
                tracing::error!(order_id = %order_id, error = %error, "giving up emptying the cart of a confirmed order");
                let moved = self
                    .store
                    .advance(
                        order_id,
                        (saga.state, &saga.step),
                        SagaState::Done,
                        "done",
                        None,
                    )
                    .await?;
                return moved_on_unless(moved, &saga);
            }
            let attempts = saga.attempts + 1;
            let pause = backoff(
                attempts.min(16) as u32,
                Duration::from_millis(50),
                Duration::from_secs(30),
            );
            tracing::info!(order_id = %order_id, step = %saga.step, attempts, error = %error, "saga step will be retried");
            let next = time::now() + chrono::Duration::from_std(pause).unwrap_or_default();
            self.store
                .retry_later(order_id, holder, attempts, next, &error)
                .await?;
            return Ok(());
        }
    }

    /// Records the step after `saga.step` once its effect has happened.
    async fn advance(
        &self,
        saga: &Saga,
        state: SagaState,
        next: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<Saga> {
        crash_point(&saga.step);
        let moved = self
            .store
            .advance(saga.order_id, (saga.state, &saga.step), state, next, reason)
            .await?;
        moved_on_unless(moved, saga)?;
        Ok(moved_to(saga, state, next, reason))
    }

    /// Like [`Self::advance`], recording the payment's status in the same transaction.
    async fn advance_paying(
        &self,
        saga: &Saga,
        payment_status: Option<&str>,
        state: SagaState,
        next: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<Saga> {
        match payment_status {
            None => self.advance(saga, state, next, reason).await,
            Some(status) => {
                crash_point(&saga.step);
                let moved = self
                    .store
                    .advance_paying(
                        saga.order_id,
                        status,
                        (saga.state, &saga.step),
                        state,
                        next,
                        reason,
                    )
                    .await?;
                moved_on_unless(moved, saga)?;
                Ok(moved_to(saga, state, next, reason))
            }
        }
    }

    async fn refund_of(&self, saga: &Saga) -> anyhow::Result<Refund> {
        self.store
            .refund(saga.order_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("saga of a missing refund {}", saga.order_id))
    }

    /// Refunds a refund's amount through payments (keyed by the refund's
    /// id), then records it with the saga's move from its step to `next`.
    async fn pay_refund(
        &self,
        saga: &Saga,
        order: &Order,
        refund: &Refund,
        next: (SagaState, &str),
    ) -> anyhow::Result<Step> {
        if refund.amount.amount > 0 {
            if let Err(e) = within(
                self.config.pay_timeout,
                "payments",
                self.payments
                    .refund_part(order.id, refund.id, &refund.amount),
            )
            .await
            {
                return Ok(Step::Retry(client_error(e)));
            }
        }
        crash_point(&saga.step);
        let moved = self
            .store
            .record_refund(refund, saga.order_id, (saga.state, &saga.step), next)
            .await?;
        moved_on_unless(moved, saga)?;
        Ok(Step::Advanced(moved_to(saga, next.0, next.1, None)))
    }

    /// Turns the saga around: everything done so far is undone.
    async fn compensate(&self, saga: &Saga, reason: &str) -> anyhow::Result<Step> {
        self.compensate_paying(saga, None, reason).await
    }

    /// Turns the saga around, recording the payment's status with it.
    async fn compensate_paying(
        &self,
        saga: &Saga,
        payment_status: Option<&str>,
        reason: &str,
    ) -> anyhow::Result<Step> {
        let next = self
            .advance_paying(
                saga,
                payment_status,
                SagaState::Compensating,
                "refund_payment",
                Some(reason),
            )
            .await?;
        Ok(Step::Advanced(next))
    }

    async fn step(&self, saga: &Saga, order: &Order) -> anyhow::Result<Step> {
        let id = order.id;
        let cfg = &self.config;
        Ok(match (saga.state, saga.step.as_str()) {
            (SagaState::Running, "reserve") => {
                let lines: Vec<SkuQuantity> = order
                    .items
                    .iter()
                    .map(|l| SkuQuantity {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                    })
                    .collect();
                match within(
                    cfg.step_timeout,
                    "inventory",
                    self.inventory.reserve(id, &lines, cfg.reservation_ttl),
                )
                .await
                {
                    Ok(ReserveOutcome::Reserved) => {
                        // Without a code there is nothing to redeem.
                        let next = if order.promotion.is_some() {
                            "redeem"
                        } else {
                            "pay"
                        };
                        Step::Advanced(self.advance(saga, SagaState::Running, next, None).await?)
                    }
                    Ok(ReserveOutcome::OutOfStock { sku }) => {
                        tracing::info!(order_id = %id, sku = %sku, "out of stock; cancelling");
                        self.compensate(saga, cancel_reason::OUT_OF_STOCK).await?
                    }
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Running, "redeem") => {
                let Some(promotion) = &order.promotion else {
                    return Ok(Step::Advanced(
                        self.advance(saga, SagaState::Running, "pay", None).await?,
                    ));
                };
                match within(
                    cfg.step_timeout,
                    "pricing",
                    self.pricing.redeem(id, order.customer_id, promotion.id),
                )
                .await
                {
                    Ok(RedeemOutcome::Redeemed) => {
                        Step::Advanced(self.advance(saga, SagaState::Running, "pay", None).await?)
                    }
                    Ok(RedeemOutcome::Unavailable { reason }) => {
                        tracing::info!(order_id = %id, code = %promotion.code, reason = %reason, "promotion unavailable; cancelling");
                        self.compensate(saga, cancel_reason::PROMOTION_UNAVAILABLE)
                            .await?
                    }
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Running, "pay") => {
                if order.total.amount == 0 {
                    let next = self
                        .advance_paying(
                            saga,
                            Some("not_required"),
                            SagaState::Running,
                            "commit",
                            None,
                        )
                        .await?;
                    return Ok(Step::Advanced(next));
                }
                let token = self.store.payment_token(id).await?;
                match within(
                    cfg.pay_timeout,
                    "payments",
                    self.payments
                        .charge(id, order.customer_id, &order.total, &token),
                )
                .await
                {
                    Ok(ChargeOutcome::Captured { .. }) => Step::Advanced(
                        self.advance_paying(
                            saga,
                            Some("captured"),
                            SagaState::Running,
                            "commit",
                            None,
                        )
                        .await?,
                    ),
                    Ok(ChargeOutcome::Declined { reason, .. }) => {
                        let status = match reason.as_str() {
                            "card_declined" | "insufficient_funds" | "invalid_token" => "declined",
                            _ => "failed",
                        };
                        tracing::info!(order_id = %id, reason = %reason, "payment declined; cancelling");
                        self.compensate_paying(saga, Some(status), cancel_reason::PAYMENT_FAILED)
                            .await?
                    }
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Running, "commit") => {
                match within(cfg.step_timeout, "inventory", self.inventory.commit(id)).await {
                    Ok(()) => {
                        // A subscription's order comes from no cart.
                        let next = if order.subscription_id.is_some() {
                            "confirm_emptied"
                        } else {
                            "empty_cart"
                        };
                        Step::Advanced(self.advance(saga, SagaState::Running, next, None).await?)
                    }
                    Err(ClientError::Failed(_, why)) => {
                        tracing::warn!(order_id = %id, error = %why, "reservation could not be committed; compensating");
                        self.compensate(saga, cancel_reason::OUT_OF_STOCK).await?
                    }
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Running, "empty_cart") => {
                // Before the order leaves `pending`, so that the cart cannot
                // be checked out again while it still holds what this order
                // bought (one pending order per customer). One try: the
                // order is not kept waiting for the cart; `clear_cart`
                // tries again after the confirmation.
                match within(
                    cfg.step_timeout,
                    "cart",
                    self.cart.checked_out(order.customer_id, id, &bought(order)),
                )
                .await
                {
                    Ok(()) => Step::Advanced(
                        self.advance(saga, SagaState::Running, "confirm_emptied", None)
                            .await?,
                    ),
                    Err(e) => {
                        tracing::warn!(order_id = %id, error = %e, "the cart could not be emptied before the confirmation; trying again after it");
                        Step::Advanced(
                            self.advance(saga, SagaState::Running, "confirm", None)
                                .await?,
                        )
                    }
                }
            }
            (SagaState::Running, step @ ("confirm" | "confirm_emptied")) => {
                crash_point(step);
                let (state, next) = if step == "confirm_emptied" {
                    (SagaState::Done, "done")
                } else {
                    (SagaState::Running, "clear_cart")
                };
                let event = Envelope::new(
                    crate::NAME,
                    id.to_string(),
                    &OrderConfirmed {
                        order_id: id,
                        customer_id: order.customer_id,
                        items: order.items.clone(),
                        total: order.total.clone(),
                    },
                )?;
                let moved = self
                    .store
                    .transition(
                        id,
                        &[OrderStatus::Pending],
                        OrderStatus::Confirmed,
                        None,
                        &[event],
                        SagaUpdate::Advance(state, next),
                        None,
                    )
                    .await?;
                if moved {
                    metrics::counter!("mercato_orders_total", "event" => "confirmed", "reason" => "").increment(1);
                    tracing::info!(order_id = %id, "order confirmed");
                    Step::Advanced(moved_to(saga, state, next, None))
                } else {
                    Step::Advanced(self.advance(saga, state, next, None).await?)
                }
            }
            (SagaState::Running, "clear_cart") => {
                match within(
                    cfg.step_timeout,
                    "cart",
                    self.cart.checked_out(order.customer_id, id, &bought(order)),
                )
                .await
                {
                    Ok(()) => {
                        Step::Advanced(self.advance(saga, SagaState::Done, "done", None).await?)
                    }
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Compensating, "refund_payment") => {
                // An unwind pays the rest its status change claimed (unwinds
                // started before refunds were kept refund in full, below).
                if saga.kind == SagaKind::Unwind {
                    if let Some(rest) = self.store.refund(id).await? {
                        return self
                            .pay_refund(saga, order, &rest, (SagaState::Compensating, "restock"))
                            .await;
                    }
                }
                match within(cfg.pay_timeout, "payments", self.payments.refund(id)).await {
                    Ok(outcome) => {
                        let status = match outcome {
                            RefundOutcome::Refunded => Some("refunded"),
                            RefundOutcome::Voided => Some("voided"),
                            RefundOutcome::NothingTaken => None,
                        };
                        let next = match saga.kind {
                            SagaKind::Unwind => "restock",
                            SagaKind::Checkout | SagaKind::Refund => "release_stock",
                        };
                        Step::Advanced(
                            self.advance_paying(saga, status, SagaState::Compensating, next, None)
                                .await?,
                        )
                    }
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Compensating, "release_stock") => {
                match within(cfg.step_timeout, "inventory", self.inventory.release(id)).await {
                    Ok(()) => {
                        let next = if order.promotion.is_some() {
                            "release_promotion"
                        } else {
                            "cancel_order"
                        };
                        Step::Advanced(
                            self.advance(saga, SagaState::Compensating, next, None)
                                .await?,
                        )
                    }
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Compensating, "release_promotion") => {
                let (state, next) = match saga.kind {
                    SagaKind::Unwind => (SagaState::Done, "done"),
                    SagaKind::Checkout | SagaKind::Refund => {
                        (SagaState::Compensating, "cancel_order")
                    }
                };
                if order.promotion.is_none() {
                    return Ok(Step::Advanced(self.advance(saga, state, next, None).await?));
                }
                match within(cfg.step_timeout, "pricing", self.pricing.release(id)).await {
                    Ok(()) => Step::Advanced(self.advance(saga, state, next, None).await?),
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Compensating, "cancel_order") => {
                crash_point("cancel_order");
                let reason = saga
                    .cancel_reason
                    .clone()
                    .unwrap_or_else(|| cancel_reason::PAYMENT_FAILED.to_owned());
                let event = Envelope::new(
                    crate::NAME,
                    id.to_string(),
                    &OrderCancelled {
                        order_id: id,
                        customer_id: order.customer_id,
                        reason: reason.clone(),
                        total: order.total.clone(),
                    },
                )?;
                let moved = self
                    .store
                    .transition(
                        id,
                        &[OrderStatus::Pending],
                        OrderStatus::Cancelled,
                        Some(&reason),
                        &[event],
                        SagaUpdate::Advance(SagaState::Done, "done"),
                        None,
                    )
                    .await?;
                if moved {
                    metrics::counter!("mercato_orders_total", "event" => "cancelled", "reason" => reason.clone()).increment(1);
                    tracing::info!(order_id = %id, reason = %reason, "order cancelled");
                    Step::Advanced(moved_to(saga, SagaState::Done, "done", None))
                } else {
                    Step::Advanced(self.advance(saga, SagaState::Done, "done", None).await?)
                }
            }
            (SagaState::Compensating, "restock") => {
                match within(cfg.step_timeout, "inventory", self.inventory.restock(id)).await {
                    // A cancelled order gives its use of the code back; a
                    // refunded one keeps it.
                    Ok(())
                        if order.status == OrderStatus::Cancelled && order.promotion.is_some() =>
                    {
                        Step::Advanced(
                            self.advance(saga, SagaState::Compensating, "release_promotion", None)
                                .await?,
                        )
                    }
                    Ok(()) => {
                        Step::Advanced(self.advance(saga, SagaState::Done, "done", None).await?)
                    }
                    Err(e) => Step::Retry(client_error(e)),
                }
            }
            (SagaState::Running, "restock_items") => {
                let refund = self.refund_of(saga).await?;
                if let Some(return_id) = refund.return_id {
                    let ret = self.store.return_by_id(return_id).await?.ok_or_else(|| {
                        anyhow::anyhow!("refund {} of a missing return {return_id}", refund.id)
                    })?;
                    let lines: Vec<SkuQuantity> = ret
                        .items
                        .iter()
                        .map(|i| SkuQuantity {
                            sku: i.sku.clone(),
                            quantity: i.quantity,
                        })
                        .collect();
                    if let Err(e) = within(
                        cfg.step_timeout,
                        "inventory",
                        self.inventory.restock_part(
                            id,
                            refund.id,
                            &lines,
                            ret.warehouse.as_deref(),
                        ),
                    )
                    .await
                    {
                        return Ok(Step::Retry(client_error(e)));
                    }
                }
                Step::Advanced(
                    self.advance(saga, SagaState::Running, "refund_amount", None)
                        .await?,
                )
            }
            (SagaState::Running, "refund_amount") => {
                let refund = self.refund_of(saga).await?;
                self.pay_refund(saga, order, &refund, (SagaState::Done, "done"))
                    .await?
            }
            (state, step) => {
                anyhow::bail!(
                    "saga {} is at an unknown step {step:?} ({state:?})",
                    saga.order_id
                )
            }
        })
    }
}
