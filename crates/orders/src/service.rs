//! Order use cases: checkout, reading, and the status changes people make.

use crate::domain::{
    cancel_reason, CheckoutQuote, Order, OrderStatus, PaymentSummary, ShippingAddress,
};
use crate::returns::{NewReturn, RefundKind, RefundStart, Return, ReturnItem, ReturnStatus};
use crate::saga::SagaRunner;
use crate::store::{CreateOutcome, IdempotencyRecord, OrdersStore, SagaUpdate, Viewer};
use mercato_contracts::clients::{
    CartClient, CatalogClient, ClientError, ClientResult, IdentityClient, OrdersClient,
    PricingClient,
};
use mercato_contracts::events::{
    OrderCancelled, OrderDelivered, OrderPlaced, OrderRefunded, OrderShipped, UserErased,
};
use mercato_contracts::types::{
    payment_token, Line, PlaceOrder, PlacedOrder, PricedLine, ProductStatus, Quote, QuoteRequest,
    SkuInfo, MAX_LINE_QUANTITY,
};
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::bus::{EventHandler, Subscription};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::idempotency::{self, StoredResponse};
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, ApiError, Envelope, Money};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a cancel or refund waits for a run of its unwind that started
/// elsewhere a moment before (a recovery run) to finish.
const UNWIND_PATIENCE: Duration = Duration::from_secs(3);
use uuid::Uuid;

pub struct OrdersService {
    store: OrdersStore,
    cart: Arc<dyn CartClient>,
    catalog: Arc<dyn CatalogClient>,
    pricing: Arc<dyn PricingClient>,
    saga: Arc<SagaRunner>,
    identity: Arc<dyn IdentityClient>,
    /// How long after delivery items may be returned.
    return_window: chrono::Duration,
}

/// The default of `orders.return_window_days`.
pub const RETURN_WINDOW_DAYS: u32 = 30;

/// What a stored answer is an answer about: it is answered anew from this
/// when the request that took the key died before storing it.
#[derive(Debug, Clone, Copy)]
enum Subject {
    Order(Uuid),
    Return(Uuid),
}

/// What a checkout asks for.
pub struct CheckoutRequest {
    pub idempotency_key: String,
    /// The request body as canonical JSON, for the idempotency fingerprint.
    pub request_body: Vec<u8>,
    pub payment_token: String,
    pub destination: Destination,
}

/// Where an order goes, and how.
pub struct Destination {
    pub address: AddressChoice,
    /// The shipping method chosen; the cheapest for the address when none.
    pub shipping_method: Option<Uuid>,
}

/// The address an order goes to.
pub enum AddressChoice {
    Given(ShippingAddress),
    /// One the customer saved: by id, or the default for `None`.
    Saved(Option<Uuid>),
}

/// A cart priced for an address: what a checkout would charge.
struct PricedCart {
    items: Vec<Line>,
    sellers: Vec<Uuid>,
    quote: Quote,
}

/// What a placed order has come to, for the context that placed it.
fn placed(order: &Order) -> PlacedOrder {
    PlacedOrder {
        order_id: order.id,
        status: order.status.as_str().to_owned(),
        cancel_reason: order.cancel_reason.clone(),
    }
}

#[async_trait::async_trait]
impl OrdersClient for OrdersService {
    async fn place(&self, request: &PlaceOrder) -> ClientResult<PlacedOrder> {
        OrdersService::place(self, request)
            .await
            .map_err(|e| match e.status.as_u16() {
                422 => ClientError::Rejected(crate::NAME, e.code.into_owned(), e.message),
                503 => ClientError::Unavailable(crate::NAME, e.message),
                _ => ClientError::Failed(crate::NAME, format!("{} {}", e.code, e.message)),
            })
    }
}

/// A new `pending` order of `items`, priced by `quote`.
fn new_order(
    id: Uuid,
    customer_id: Uuid,
    items: Vec<Line>,
    quote: Quote,
    address: ShippingAddress,
    subscription_id: Option<Uuid>,
) -> Order {
    let now = time::now();
    Order {
        id,
        customer_id,
        status: OrderStatus::Pending,
        cancel_reason: None,
        items,
        payment: PaymentSummary {
            status: "pending".into(),
            amount: quote.total.clone(),
        },
        subtotal: quote.subtotal,
        discount_total: quote.discount_total,
        shipping_total: quote.shipping_total,
        tax_total: quote.tax_total,
        refunded_total: Money::zero(quote.currency.clone()),
        currency: quote.currency,
        discounts: quote.discounts,
        shipping_method: quote.shipping_method,
        tax_lines: quote.tax_lines,
        promotion: quote.promotion,
        total: quote.total,
        shipping_address: address,
        subscription_id,
        history: vec![crate::domain::HistoryEntry {
            status: OrderStatus::Pending,
            at: now,
        }],
        created_at: now,
        updated_at: now,
    }
}

/// A refusal of another context for the person who asked, passed on; any
/// other failure is a dependency being down.
fn verdict_or_dependency(e: ClientError) -> ApiError {
    match e {
        ClientError::Rejected(_, code, message) => {
            ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
        other => dependency(other),
    }
}

/// An answer that may be a replay.
pub type Answer = StoredResponse;

fn dependency(e: mercato_contracts::clients::ClientError) -> ApiError {
    tracing::warn!(error = %e, "a dependency of orders failed");
    ApiError::unavailable("a service the order depends on is unavailable; try again")
}

impl OrdersService {
    pub fn new(
        store: OrdersStore,
        cart: Arc<dyn CartClient>,
        catalog: Arc<dyn CatalogClient>,
        pricing: Arc<dyn PricingClient>,
        identity: Arc<dyn IdentityClient>,
        saga: Arc<SagaRunner>,
    ) -> Self {
        Self {
            store,
            cart,
            catalog,
            pricing,
            saga,
            identity,
            return_window: chrono::Duration::days(RETURN_WINDOW_DAYS.into()),
        }
    }

    /// How many days after delivery items may be returned.
    pub fn with_return_window_days(mut self, days: u32) -> Self {
        self.return_window = chrono::Duration::days(days.into());
        self
    }

    /// The address an order of the customer's goes to.
    async fn resolve(
        &self,
        customer_id: Uuid,
        choice: AddressChoice,
    ) -> Result<ShippingAddress, ApiError> {
        let id = match choice {
            AddressChoice::Given(address) => {
                address.validate()?;
                return Ok(address);
            }
            AddressChoice::Saved(id) => id,
        };
        self.identity
            .address(customer_id, id)
            .await
            .map_err(dependency)?
            .ok_or_else(|| match id {
                Some(_) => ApiError::unprocessable(
                    "unknown_address",
                    "the customer has no saved address with this id",
                ),
                None => ApiError::unprocessable(
                    "address_required",
                    "give shipping_address or shipping_address_id: the customer has no default address",
                ),
            })
    }

    /// The customer's cart priced for `to`, as a checkout would charge it.
    async fn price_cart(
        &self,
        customer_id: Uuid,
        to: &ShippingAddress,
        shipping_method: Option<Uuid>,
    ) -> Result<PricedCart, ApiError> {
        let contents = self
            .cart
            .contents(customer_id)
            .await
            .map_err(verdict_or_dependency)?;
        if contents.lines.is_empty() {
            return Err(ApiError::unprocessable("cart_empty", "the cart is empty"));
        }
        let mut lines = Vec::with_capacity(contents.lines.len());
        for line in contents.lines {
            let info = self.sellable(&line.sku).await?;
            lines.push((line, info));
        }
        self.price_lines(
            customer_id,
            lines,
            contents.promotion_code,
            to,
            shipping_method,
        )
        .await
    }

    /// Lines, with what the catalog knows of their SKUs, priced for `to`
    /// with a code, shipping and tax: what an order of them would charge.
    async fn price_lines(
        &self,
        customer_id: Uuid,
        lines: Vec<(Line, SkuInfo)>,
        code: Option<String>,
        to: &ShippingAddress,
        shipping_method: Option<Uuid>,
    ) -> Result<PricedCart, ApiError> {
        let Some((first, _)) = lines.first() else {
            return Err(ApiError::unprocessable("cart_empty", "the cart is empty"));
        };
        let currency = first.unit_price.currency.clone();
        let mut sellers = BTreeSet::new();
        let mut priced = Vec::with_capacity(lines.len());
        let mut items = Vec::with_capacity(lines.len());
        for (line, info) in lines {
            sellers.insert(info.seller_id);
            priced.push(PricedLine {
                sku: line.sku.clone(),
                category: info.category,
                quantity: line.quantity,
                line_total: line.line_total.clone(),
            });
            items.push(line);
        }
        let quote = self
            .pricing
            .quote(&QuoteRequest {
                customer_id: Some(customer_id),
                currency,
                lines: priced,
                code,
                country: Some(to.country.clone()),
                shipping_method,
            })
            .await
            .map_err(verdict_or_dependency)?;
        Ok(PricedCart {
            items,
            sellers: sellers.into_iter().collect(),
            quote,
        })
    }

    /// What the catalog knows of a SKU; 422 `sku_unavailable` for one no
    /// product has.
    async fn sellable(&self, sku: &str) -> Result<SkuInfo, ApiError> {
        self.catalog
            .sku(sku)
            .await
            .map_err(dependency)?
            .ok_or_else(|| {
                ApiError::unprocessable("sku_unavailable", format!("{sku} can no longer be bought"))
            })
    }

    /// What checking out the caller's cart to `to` would charge, exactly.
    pub async fn quote(&self, caller: Caller, to: Destination) -> Result<CheckoutQuote, ApiError> {
        caller.require(&[Role::Customer])?;
        let address = self.resolve(caller.user_id, to.address).await?;
        let priced = self
            .price_cart(caller.user_id, &address, to.shipping_method)
            .await?;
        Ok(CheckoutQuote::new(priced.items, priced.quote))
    }

    pub fn store(&self) -> &OrdersStore {
        &self.store
    }

    /// The consumer orders keep on the bus: a customer who erased their
    /// account has the addresses of their orders anonymised.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        vec![Subscription {
            consumer: "orders-erasure".to_owned(),
            per_instance: false,
            event_types: vec![UserErased::TYPE.to_owned()],
            handler: Arc::new(ErasureHandler(self.store.clone())),
        }]
    }

    pub fn saga(&self) -> &Arc<SagaRunner> {
        &self.saga
    }

    /// Places an order from the caller's cart and starts its saga. The
    /// answer is stored with the key; a replay returns it unchanged.
    pub async fn checkout(&self, caller: Caller, req: CheckoutRequest) -> Result<Answer, ApiError> {
        caller.require(&[Role::Customer])?;
        let scope = format!("checkout:{}", caller.user_id);
        let hash = idempotency::fingerprint(&[caller.user_id.as_bytes(), &req.request_body]);
        if let Some(stored) =
            idempotency::lookup(self.store.db(), &scope, &req.idempotency_key, &hash).await?
        {
            return Ok(Answer {
                status: stored.status,
                body: stored.body,
            });
        }
        let token = payment_token(&req.payment_token)?;
        let address = self
            .resolve(caller.user_id, req.destination.address)
            .await?;
        let PricedCart {
            items,
            sellers,
            quote,
        } = self
            .price_cart(caller.user_id, &address, req.destination.shipping_method)
            .await?;
        let order = new_order(id::new_id(), caller.user_id, items, quote, address, None);
        let now = order.created_at;
        let body = serde_json::to_string(&order).map_err(ApiError::internal)?;
        let placed = Envelope::new(
            crate::NAME,
            order.id.to_string(),
            &OrderPlaced {
                order_id: order.id,
                customer_id: order.customer_id,
                items: order.items.clone(),
                total: order.total.clone(),
            },
        )
        .map_err(ApiError::internal)?;
        let deadline =
            now + chrono::Duration::from_std(self.saga.config().deadline).unwrap_or_default();
        let record = IdempotencyRecord {
            scope: &scope,
            key: &req.idempotency_key,
            request_hash: &hash,
            response: StoredResponse {
                status: 202,
                body: body.clone(),
            },
        };
        match self
            .store
            .create_checkout(&order, token, &sellers, &deadline, Some(&record), &[placed])
            .await?
        {
            CreateOutcome::Created => {}
            CreateOutcome::InProgress => {
                return Err(ApiError::conflict(
                    "checkout_in_progress",
                    "an order from this cart is still being placed; wait for it to settle",
                ))
            }
            CreateOutcome::KeyTaken => {
                // A concurrent request with the same key committed first.
                return match idempotency::lookup(
                    self.store.db(),
                    &scope,
                    &req.idempotency_key,
                    &hash,
                )
                .await?
                {
                    Some(stored) => Ok(Answer {
                        status: stored.status,
                        body: stored.body,
                    }),
                    None => Err(ApiError::conflict(
                        "idempotency_key_in_use",
                        "a request with this key is in progress",
                    )),
                };
            }
        }
        metrics::counter!("mercato_orders_total", "event" => "placed", "reason" => "").increment(1);
        tracing::info!(order_id = %order.id, total = %order.total, "order placed");
        self.saga.start(order.id);
        Ok(Answer { status: 202, body })
    }

    /// Places an order another context asks for (a subscription's) and
    /// starts its saga: no cart, no code; the cheapest shipping to the
    /// address, and its tax. The order's id is the caller's: a repeat
    /// answers with the order as it stands.
    pub async fn place(&self, req: &PlaceOrder) -> Result<PlacedOrder, ApiError> {
        if let Some(order) = self.store.get(req.order_id).await? {
            return Ok(placed(&order));
        }
        let token = payment_token(&req.payment_token)?;
        req.shipping_address.validate()?;
        if req.items.is_empty() {
            return Err(ApiError::validation("an order needs at least one line"));
        }
        let mut lines: Vec<(Line, SkuInfo)> = Vec::with_capacity(req.items.len());
        for wanted in &req.items {
            if !(1..=MAX_LINE_QUANTITY).contains(&wanted.quantity) {
                return Err(ApiError::validation(format!(
                    "quantity of {} must be 1 to {MAX_LINE_QUANTITY}",
                    wanted.sku
                )));
            }
            let info = self.sellable(&wanted.sku).await?;
            if info.status != ProductStatus::Active {
                return Err(ApiError::unprocessable(
                    "sku_unavailable",
                    format!("{} can no longer be bought", wanted.sku),
                ));
            }
            if let Some((first, _)) = lines.first() {
                if first.unit_price.currency != info.price.currency {
                    return Err(ApiError::unprocessable(
                        "currency_mismatch",
                        format!(
                            "{} is priced in {}, the other lines in {}",
                            wanted.sku, info.price.currency, first.unit_price.currency
                        ),
                    ));
                }
            }
            let line_total = info
                .price
                .checked_mul(wanted.quantity)
                .map_err(|_| ApiError::validation("the line's total is too large"))?;
            let line = Line {
                sku: info.sku.clone(),
                product_id: info.product_id,
                title: info.title.clone(),
                quantity: wanted.quantity,
                unit_price: info.price.clone(),
                line_total,
            };
            lines.push((line, info));
        }
        let PricedCart {
            items,
            sellers,
            quote,
        } = self
            .price_lines(req.customer_id, lines, None, &req.shipping_address, None)
            .await?;
        let order = new_order(
            req.order_id,
            req.customer_id,
            items,
            quote,
            req.shipping_address.clone(),
            Some(req.subscription_id),
        );
        let placed_event = Envelope::new(
            crate::NAME,
            order.id.to_string(),
            &OrderPlaced {
                order_id: order.id,
                customer_id: order.customer_id,
                items: order.items.clone(),
                total: order.total.clone(),
            },
        )
        .map_err(ApiError::internal)?;
        let deadline = order.created_at
            + chrono::Duration::from_std(self.saga.config().deadline).unwrap_or_default();
        match self
            .store
            .create_checkout(&order, token, &sellers, &deadline, None, &[placed_event])
            .await?
        {
            CreateOutcome::Created => {
                metrics::counter!("mercato_orders_total", "event" => "placed", "reason" => "")
                    .increment(1);
                tracing::info!(order_id = %order.id, subscription_id = %req.subscription_id, total = %order.total, "order placed for a subscription");
                self.saga.start(order.id);
                Ok(placed(&order))
            }
            CreateOutcome::KeyTaken | CreateOutcome::InProgress => {
                let order = self.store.get(req.order_id).await?.ok_or_else(|| {
                    ApiError::conflict(
                        "idempotency_key_in_use",
                        "the order is being placed by another request",
                    )
                })?;
                Ok(placed(&order))
            }
        }
    }

    /// The order if the caller may see it; 404 otherwise, so that another
    /// customer's order ids reveal nothing.
    pub async fn get(&self, caller: Caller, id: Uuid) -> Result<Order, ApiError> {
        let order = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found("order"))?;
        match caller.role {
            Role::Admin => Ok(order),
            Role::Customer if order.customer_id == caller.user_id => Ok(order),
            Role::Seller
                if order.customer_id == caller.user_id
                    || self.store.sellers(id).await?.contains(&caller.user_id) =>
            {
                Ok(order)
            }
            _ => Err(ApiError::not_found("order")),
        }
    }

    /// Like [`Self::get`]; a `pending` order is answered once it is
    /// confirmed or cancelled, or when `wait` has passed, whichever is first.
    pub async fn get_settled(
        &self,
        caller: Caller,
        id: Uuid,
        wait: std::time::Duration,
    ) -> Result<Order, ApiError> {
        if wait.is_zero() {
            return self.get(caller, id).await;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let watching = self.store.watch().watch(id);
        let changed = watching.notify.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let mut order = self.get(caller, id).await?;
        while order.status == OrderStatus::Pending {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            // Woken by a change in this process; another replica's change
            // is seen at the next look.
            let look_at = (now + crate::watch::RECHECK).min(deadline);
            if tokio::time::timeout_at(look_at, changed.as_mut())
                .await
                .is_ok()
            {
                changed.set(watching.notify.notified());
                changed.as_mut().enable();
            }
            order = self
                .store
                .get(id)
                .await?
                .ok_or_else(|| ApiError::not_found("order"))?;
        }
        Ok(order)
    }

    pub async fn list(
        &self,
        caller: Caller,
        status: Option<OrderStatus>,
        page: &PageRequest,
    ) -> Result<Page<Order>, ApiError> {
        let viewer = match caller.role {
            Role::Admin => Viewer::Admin,
            Role::Seller => Viewer::Seller(caller.user_id),
            Role::Customer => Viewer::Customer(caller.user_id),
        };
        Ok(self.store.list(viewer, status, page).await?)
    }

    /// Cancels a confirmed order (its customer or an admin) and gives its
    /// money and stock back.
    pub async fn cancel(&self, caller: Caller, id: Uuid) -> Result<Order, ApiError> {
        let order = self.get(caller, id).await?;
        if !(caller.is_admin()
            || (caller.role == Role::Customer && order.customer_id == caller.user_id))
        {
            return Err(ApiError::forbidden(
                "only the order's customer or an admin may cancel it",
            ));
        }
        order.status.check(OrderStatus::Cancelled)?;
        if order.status == OrderStatus::Pending {
            return Err(ApiError::conflict(
                "order_pending",
                "the order is still being placed; try again in a moment",
            ));
        }
        let event = Envelope::new(
            crate::NAME,
            id.to_string(),
            &OrderCancelled {
                order_id: id,
                customer_id: order.customer_id,
                reason: cancel_reason::CUSTOMER_CANCELLED.into(),
                total: order.total.clone(),
            },
        )
        .map_err(ApiError::internal)?;
        let moved = self
            .store
            .transition(
                id,
                &[OrderStatus::Confirmed],
                OrderStatus::Cancelled,
                Some(cancel_reason::CUSTOMER_CANCELLED),
                &[event],
                SagaUpdate::StartUnwind,
                None,
            )
            .await?;
        if !moved {
            return Err(ApiError::conflict(
                "invalid_transition",
                "the order changed meanwhile; reload it",
            ));
        }
        metrics::counter!("mercato_orders_total", "event" => "cancelled", "reason" => cancel_reason::CUSTOMER_CANCELLED).increment(1);
        self.unwind_now(id).await;
        self.get(caller, id).await
    }

    /// Runs an unwind saga in the request, so that the answer shows the money
    /// back when the dependencies are up; the saga finishes later otherwise.
    async fn unwind_now(&self, id: Uuid) {
        if let Err(e) = self.saga.drive_now(id, UNWIND_PATIENCE).await {
            tracing::warn!(order_id = %id, error = %format!("{e:#}"), "unwinding will be resumed");
        }
    }

    fn seller_or_admin(&self, caller: &Caller, sellers: &[Uuid]) -> Result<(), ApiError> {
        if caller.is_admin() || (caller.role == Role::Seller && sellers.contains(&caller.user_id)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "only a seller of the order's lines or an admin may do this",
            ))
        }
    }

    pub async fn ship(&self, caller: Caller, id: Uuid) -> Result<Order, ApiError> {
        self.fulfil(caller, id, OrderStatus::Confirmed, OrderStatus::Shipped)
            .await
    }

    pub async fn deliver(&self, caller: Caller, id: Uuid) -> Result<Order, ApiError> {
        self.fulfil(caller, id, OrderStatus::Shipped, OrderStatus::Delivered)
            .await
    }

    async fn fulfil(
        &self,
        caller: Caller,
        id: Uuid,
        from: OrderStatus,
        to: OrderStatus,
    ) -> Result<Order, ApiError> {
        let order = self.get(caller, id).await?;
        let sellers = self.store.sellers(id).await?;
        self.seller_or_admin(&caller, &sellers)?;
        order.status.check(to)?;
        let event = match to {
            OrderStatus::Shipped => Envelope::new(
                crate::NAME,
                id.to_string(),
                &OrderShipped {
                    order_id: id,
                    customer_id: order.customer_id,
                },
            ),
            _ => Envelope::new(
                crate::NAME,
                id.to_string(),
                &OrderDelivered {
                    order_id: id,
                    customer_id: order.customer_id,
                },
            ),
        }
        .map_err(ApiError::internal)?;
        if !self
            .store
            .transition(id, &[from], to, None, &[event], SagaUpdate::None, None)
            .await?
        {
            return Err(ApiError::conflict(
                "invalid_transition",
                "the order changed meanwhile; reload it",
            ));
        }
        metrics::counter!("mercato_orders_total", "event" => to.as_str(), "reason" => "")
            .increment(1);
        self.get(caller, id).await
    }

    /// Refunds a confirmed, shipped or delivered order (admins): the rest
    /// of its total with its stock back, or with `part` that amount alone.
    /// Idempotent by key: every request with the key, concurrent or not,
    /// gets the answer the first one gave.
    pub async fn refund(
        &self,
        caller: Caller,
        id: Uuid,
        key: &str,
        part: Option<PartialRefund>,
    ) -> Result<Answer, ApiError> {
        caller.require(&[Role::Admin])?;
        match part {
            None => self.refund_rest(caller, id, key).await,
            Some(part) => self.refund_part(caller, id, key, part).await,
        }
    }

    async fn refund_rest(&self, caller: Caller, id: Uuid, key: &str) -> Result<Answer, ApiError> {
        let scope = format!("refund:{}", caller.user_id);
        let subject = Subject::Order(id);
        let hash = idempotency::fingerprint(&[id.as_bytes()]);
        if let Some(stored) = idempotency::lookup(self.store.db(), &scope, key, &hash).await? {
            return self.replay(caller, subject, &scope, key, stored).await;
        }
        let order = self.get(caller, id).await?;
        if let Err(e) = order.status.check(OrderStatus::Refunded) {
            // A request with the same key may have refunded the order since
            // the lookup above: it gets that request's answer.
            if let Some(stored) = idempotency::lookup(self.store.db(), &scope, key, &hash).await? {
                return self.replay(caller, subject, &scope, key, stored).await;
            }
            return Err(e);
        }
        let rest = order
            .total
            .checked_sub(&order.refunded_total)
            .map_err(ApiError::internal)?;
        let event = Envelope::new(
            crate::NAME,
            id.to_string(),
            &OrderRefunded {
                order_id: id,
                customer_id: order.customer_id,
                amount: rest,
            },
        )
        .map_err(ApiError::internal)?;
        // The answer shows the money back, known only once the unwind has
        // run: the key is taken with the change and its answer filled in after.
        let record = IdempotencyRecord::pending(&scope, key, &hash);
        let moved = self
            .store
            .transition(
                id,
                &[
                    OrderStatus::Confirmed,
                    OrderStatus::Shipped,
                    OrderStatus::Delivered,
                ],
                OrderStatus::Refunded,
                None,
                &[event],
                SagaUpdate::StartUnwind,
                Some(&record),
            )
            .await?;
        if !moved {
            if let Some(stored) = idempotency::lookup(self.store.db(), &scope, key, &hash).await? {
                return self.replay(caller, subject, &scope, key, stored).await;
            }
            return Err(ApiError::conflict(
                "invalid_transition",
                "the order changed meanwhile; reload it",
            ));
        }
        metrics::counter!("mercato_orders_total", "event" => "refunded", "reason" => "")
            .increment(1);
        self.unwind_now(id).await;
        self.answer(caller, subject, &scope, key).await
    }

    /// Refunds an amount of the order, nothing restocked; the order is
    /// `refunded` once refunds reach its total.
    async fn refund_part(
        &self,
        caller: Caller,
        id: Uuid,
        key: &str,
        part: PartialRefund,
    ) -> Result<Answer, ApiError> {
        let scope = format!("refund:{}", caller.user_id);
        let subject = Subject::Order(id);
        let amount = part.amount.amount.to_string();
        let hash = idempotency::fingerprint(&[
            id.as_bytes(),
            amount.as_bytes(),
            part.amount.currency.as_str().as_bytes(),
            part.reason.as_deref().unwrap_or_default().as_bytes(),
        ]);
        if let Some(stored) = idempotency::lookup(self.store.db(), &scope, key, &hash).await? {
            return self.replay(caller, subject, &scope, key, stored).await;
        }
        let order = self.get(caller, id).await?;
        if part.amount.currency != order.currency {
            return Err(ApiError::unprocessable(
                "currency_mismatch",
                format!("the order is in {}", order.currency),
            ));
        }
        order.status.check(OrderStatus::Refunded)?;
        let kind = RefundKind::Amount {
            amount: &part.amount,
            reason: part.reason.as_deref(),
        };
        let keyed = Keyed {
            caller,
            subject,
            scope: &scope,
            key,
            hash: &hash,
        };
        match self.keyed_refund(keyed, id, kind).await? {
            Ok(answer) => {
                metrics::counter!("mercato_orders_refunds_total", "kind" => "amount").increment(1);
                Ok(answer)
            }
            Err(RefundStart::TooMuch { left }) => Err(ApiError::unprocessable(
                "refund_exceeds_total",
                format!("at most {left} of the order is left to refund"),
            )),
            Err(_) => Err(ApiError::conflict(
                "invalid_transition",
                "the order changed meanwhile; reload it",
            )),
        }
    }

    /// Starts a refund under an idempotency key, runs its saga in the
    /// request and answers with the subject as it is then; a request that
    /// took the key first gets its answer. A refusal comes back as it is.
    async fn keyed_refund(
        &self,
        keyed: Keyed<'_>,
        order_id: Uuid,
        kind: RefundKind<'_>,
    ) -> Result<Result<Answer, RefundStart>, ApiError> {
        let Keyed {
            caller,
            subject,
            scope,
            key,
            hash,
        } = keyed;
        let refund_id = id::new_id();
        let record = IdempotencyRecord::pending(scope, key, hash);
        match self
            .store
            .start_refund(order_id, refund_id, kind, &record)
            .await?
        {
            RefundStart::Started => {}
            RefundStart::KeyTaken => {
                // `lookup` refuses a key taken by another request (409).
                let stored = idempotency::lookup(self.store.db(), scope, key, hash)
                    .await?
                    .unwrap_or(StoredResponse {
                        status: 200,
                        body: String::new(),
                    });
                return self
                    .replay(caller, subject, scope, key, stored)
                    .await
                    .map(Ok);
            }
            refused => return Ok(Err(refused)),
        }
        self.unwind_now(refund_id).await;
        self.answer(caller, subject, scope, key).await.map(Ok)
    }

    /// Asks to send items of a delivered order back (its customer), within
    /// the return window.
    pub async fn request_return(
        &self,
        caller: Caller,
        order_id: Uuid,
        items: &[ReturnItem],
        reason: &str,
    ) -> Result<Return, ApiError> {
        let order = self.get(caller, order_id).await?;
        if !(caller.role == Role::Customer && order.customer_id == caller.user_id) {
            return Err(ApiError::forbidden(
                "only the order's customer may return its items",
            ));
        }
        let not_delivered = || {
            ApiError::conflict(
                "order_not_delivered",
                "only a delivered order's items can be returned",
            )
        };
        if order.status != OrderStatus::Delivered {
            return Err(not_delivered());
        }
        let delivered_at = order
            .history
            .iter()
            .rev()
            .find(|h| h.status == OrderStatus::Delivered)
            .map_or(order.updated_at, |h| h.at);
        if time::now() > delivered_at + self.return_window {
            return Err(ApiError::conflict(
                "return_window_closed",
                format!(
                    "items can be returned for {} days after delivery",
                    self.return_window.num_days()
                ),
            ));
        }
        match self
            .store
            .create_return(&order, id::new_id(), items, reason)
            .await?
        {
            NewReturn::Created(r) => {
                metrics::counter!("mercato_orders_returns_total", "event" => "requested")
                    .increment(1);
                Ok(r)
            }
            NewReturn::NotDelivered => Err(not_delivered()),
            NewReturn::TooMany { sku, left } => Err(ApiError::unprocessable(
                "return_exceeds_purchase",
                format!("{sku}: at most {left} can be returned"),
            )),
        }
    }

    /// An order's returns, for whoever may see the order.
    pub async fn returns_of(
        &self,
        caller: Caller,
        order_id: Uuid,
    ) -> Result<Vec<Return>, ApiError> {
        self.get(caller, order_id).await?;
        Ok(self.store.returns_of(order_id).await?)
    }

    /// A return, for whoever may see its order; 404 for anyone else.
    pub async fn get_return(&self, caller: Caller, id: Uuid) -> Result<Return, ApiError> {
        let ret = self
            .store
            .return_by_id(id)
            .await?
            .ok_or_else(|| ApiError::not_found("return"))?;
        self.get(caller, ret.order_id)
            .await
            .map_err(|_| ApiError::not_found("return"))?;
        Ok(ret)
    }

    /// A return the shop can act on: a seller of its order's lines or an admin.
    async fn return_for_shop(&self, caller: Caller, id: Uuid) -> Result<Return, ApiError> {
        let ret = self.get_return(caller, id).await?;
        let sellers = self.store.sellers(ret.order_id).await?;
        self.seller_or_admin(&caller, &sellers)?;
        Ok(ret)
    }

    /// Receives a return: its items go back on hand (into `warehouse`, or
    /// where they came from) and its share of the order is refunded, once;
    /// idempotent by key.
    pub async fn receive_return(
        &self,
        caller: Caller,
        id: Uuid,
        key: &str,
        warehouse: Option<String>,
    ) -> Result<Answer, ApiError> {
        let scope = format!("receive:{}", caller.user_id);
        let subject = Subject::Return(id);
        let hash = idempotency::fingerprint(&[
            id.as_bytes(),
            warehouse.as_deref().unwrap_or_default().as_bytes(),
        ]);
        if let Some(stored) = idempotency::lookup(self.store.db(), &scope, key, &hash).await? {
            return self.replay(caller, subject, &scope, key, stored).await;
        }
        let ret = self.return_for_shop(caller, id).await?;
        let not_requested = || {
            ApiError::conflict(
                "invalid_transition",
                format!("the return is {}", status_name(ret.status)),
            )
        };
        if ret.status != ReturnStatus::Requested {
            return Err(not_requested());
        }
        let kind = RefundKind::Return {
            id,
            warehouse: warehouse.as_deref(),
        };
        let keyed = Keyed {
            caller,
            subject,
            scope: &scope,
            key,
            hash: &hash,
        };
        match self.keyed_refund(keyed, ret.order_id, kind).await? {
            Ok(answer) => {
                metrics::counter!("mercato_orders_returns_total", "event" => "received")
                    .increment(1);
                Ok(answer)
            }
            Err(RefundStart::WrongStatus) => Err(ApiError::conflict(
                "order_not_delivered",
                "the order is no longer delivered",
            )),
            Err(_) => Err(not_requested()),
        }
    }

    /// Refuses a requested return.
    pub async fn reject_return(
        &self,
        caller: Caller,
        id: Uuid,
        reason: &str,
    ) -> Result<Return, ApiError> {
        let ret = self.return_for_shop(caller, id).await?;
        if !self.store.reject_return(id, reason).await? {
            return Err(ApiError::conflict(
                "invalid_transition",
                format!("the return is {}", status_name(ret.status)),
            ));
        }
        metrics::counter!("mercato_orders_returns_total", "event" => "rejected").increment(1);
        self.get_return(caller, id).await
    }

    /// A key seen again: its stored answer, once the request that holds
    /// the key has filled it in.
    async fn replay(
        &self,
        caller: Caller,
        subject: Subject,
        scope: &str,
        key: &str,
        stored: StoredResponse,
    ) -> Result<Answer, ApiError> {
        if !stored.body.is_empty() {
            return Ok(Answer {
                status: stored.status,
                body: stored.body,
            });
        }
        let patience = UNWIND_PATIENCE + Duration::from_secs(1);
        match idempotency::completed(self.store.db(), scope, key, patience).await? {
            Some(answer) => Ok(Answer {
                status: answer.status,
                body: answer.body,
            }),
            // The first request died before answering: this one answers for it.
            None => self.answer(caller, subject, scope, key).await,
        }
    }

    /// Stores the answer (the order or return as it is now) unless another
    /// request with the key stored one first, and answers with what is stored.
    async fn answer(
        &self,
        caller: Caller,
        subject: Subject,
        scope: &str,
        key: &str,
    ) -> Result<Answer, ApiError> {
        let body = match subject {
            Subject::Order(id) => serde_json::to_string(&self.get(caller, id).await?),
            Subject::Return(id) => serde_json::to_string(&self.get_return(caller, id).await?),
        }
        .map_err(ApiError::internal)?;
        let answer = StoredResponse { status: 200, body };
        let stored = idempotency::complete(self.store.db(), scope, key, &answer).await?;
        let answer = stored.filter(|s| !s.body.is_empty()).unwrap_or(answer);
        Ok(Answer {
            status: answer.status,
            body: answer.body,
        })
    }
}

/// An amount of an order to refund.
#[derive(Debug, Clone)]
pub struct PartialRefund {
    pub amount: Money,
    pub reason: Option<String>,
}

/// A request under an idempotency key: who asks, about what, and the key.
struct Keyed<'a> {
    caller: Caller,
    subject: Subject,
    scope: &'a str,
    key: &'a str,
    hash: &'a str,
}

fn status_name(status: ReturnStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

struct ErasureHandler(OrdersStore);

#[async_trait::async_trait]
impl EventHandler for ErasureHandler {
    /// An overwrite: handling the event again changes nothing.
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let e: UserErased = event.decode()?;
        let n = self.0.anonymise_customer(e.user_id).await?;
        tracing::info!(customer_id = %e.user_id, orders = n, "orders of an erased customer anonymised");
        Ok(())
    }
}
