//! Reports, client events, and the consumer that keeps what reports are
//! computed from.

use crate::domain::{
    normalize_query, ClientEventCounts, Funnel, Interval, Range, SalesPeriod, SalesReport,
    SearchTerms, TopProduct, TopProducts,
};
use crate::store::{AnalyticsStore, InteractionRow};
use chrono::NaiveDate;
use mercato_contracts::events::{
    CartItemAdded, CheckoutStarted, OrderConfirmed, OrderPartiallyRefunded, OrderPlaced,
    OrderRefunded, ProductCreated, ProductUpdated, ProductViewed, SearchPerformed, UserErased,
};
use mercato_contracts::interactions::Visitor;
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::bus::{EventHandler, Subscription};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::{id, time, ApiError, Currency, Envelope, Money};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// The consumer that keeps interactions, orders, refunds and products.
pub const CONSUMER: &str = "analytics";

/// A client-side event as `POST /events` takes it.
#[derive(Debug, Clone, Default)]
pub struct ClientEvent {
    pub event_type: String,
    pub product_id: Option<String>,
    pub query: Option<String>,
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The most a client event's properties may hold, as JSON.
pub const MAX_PROPERTIES_BYTES: usize = 4096;

pub struct AnalyticsService {
    store: AnalyticsStore,
}

/// Whose report: the shop's (admins) or a seller's own.
#[derive(Debug, Clone, Copy)]
pub enum Audience {
    Shop,
    Seller,
}

impl Audience {
    /// Who may read it, and the seller it is narrowed to.
    fn seller(self, caller: &Caller) -> Result<Option<Uuid>, ApiError> {
        match self {
            Audience::Shop => caller.require(&[Role::Admin]).map(|_| None),
            Audience::Seller => caller
                .require(&[Role::Seller])
                .map(|_| Some(caller.user_id)),
        }
    }
}

fn money(amount: i64, currency: &str) -> Result<Money, ApiError> {
    Ok(Money::new(
        amount,
        Currency::parse(currency).map_err(ApiError::internal)?,
    ))
}

impl AnalyticsService {
    pub fn new(store: AnalyticsStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &AnalyticsStore {
        &self.store
    }

    /// Keeps an event a client reports (`POST /events`); its id.
    pub async fn record_client_event(
        &self,
        caller: Option<Caller>,
        session_id: Option<String>,
        event: ClientEvent,
    ) -> Result<Uuid, ApiError> {
        let name = event.event_type.trim();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        if !valid_name {
            return Err(ApiError::validation(
                "type must be 1 to 64 of A-Z, a-z, 0-9, _ . : -",
            ));
        }
        let product_id = match event.product_id.as_deref() {
            None => None,
            Some(raw) => Some(
                id::parse_id(raw)
                    .ok_or_else(|| ApiError::validation("product_id must be a UUID"))?,
            ),
        };
        let query = match event.query.as_deref() {
            Some(q) if q.chars().count() > 200 => {
                return Err(ApiError::validation("query must be at most 200 characters"))
            }
            Some(q) => Some(normalize_query(q)).filter(|q| !q.is_empty()),
            None => None,
        };
        let properties = match &event.properties {
            None => None,
            Some(p) => {
                let json = serde_json::to_string(p).map_err(ApiError::internal)?;
                if json.len() > MAX_PROPERTIES_BYTES {
                    return Err(ApiError::validation(format!(
                        "properties must be at most {MAX_PROPERTIES_BYTES} bytes as JSON"
                    )));
                }
                Some(json)
            }
        };
        let event_id = id::new_id();
        self.store
            .record_interaction(&InteractionRow {
                event_id,
                kind: "client",
                at: time::now(),
                times: 1,
                visitor: Visitor {
                    customer_id: caller.map(|c| c.user_id),
                    session_id,
                },
                product_id,
                query,
                name: Some(name.to_owned()),
                properties,
                ..InteractionRow::default()
            })
            .await?;
        Ok(event_id)
    }

    pub async fn sales(
        &self,
        caller: Caller,
        audience: Audience,
        range: &Range,
        interval: Interval,
    ) -> Result<SalesReport, ApiError> {
        let seller = audience.seller(&caller)?;
        let sales = self.store.sales_by_day(range, seller).await?;
        let refunds = self.store.refunds_by_day(range, seller).await?;
        // (period start, currency) → orders, units, revenue, refunds
        let mut periods: BTreeMap<(NaiveDate, String), [i64; 4]> = BTreeMap::new();
        let period_of = |day: &str| {
            NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .map(|d| interval.start_of(d))
                .map_err(ApiError::internal)
        };
        for (day, currency, orders, units, revenue) in sales {
            let p = periods.entry((period_of(&day)?, currency)).or_default();
            p[0] += orders;
            p[1] += units;
            p[2] += revenue;
        }
        for (day, currency, amount) in refunds {
            periods.entry((period_of(&day)?, currency)).or_default()[3] += amount;
        }
        let items = periods
            .into_iter()
            .map(|((start, currency), [orders, units, revenue, refunds])| {
                Ok(SalesPeriod {
                    period_start: start.format("%Y-%m-%d").to_string(),
                    orders,
                    units,
                    revenue: money(revenue, &currency)?,
                    refunds: money(refunds, &currency)?,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(SalesReport { items })
    }

    pub async fn top_products(
        &self,
        caller: Caller,
        audience: Audience,
        range: &Range,
        limit: i64,
    ) -> Result<TopProducts, ApiError> {
        let seller = audience.seller(&caller)?;
        let rows = self.store.top_products(range, seller, limit).await?;
        let items = rows
            .into_iter()
            .map(|(product_id, title, currency, units, revenue)| {
                Ok(TopProduct {
                    product_id: Uuid::parse_str(&product_id).map_err(ApiError::internal)?,
                    title,
                    units,
                    revenue: money(revenue, &currency)?,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(TopProducts { items })
    }

    pub async fn funnel(
        &self,
        caller: Caller,
        audience: Audience,
        range: &Range,
    ) -> Result<Funnel, ApiError> {
        let seller = audience.seller(&caller)?;
        let (product_views, add_to_cart, checkouts, confirmed_orders) =
            self.store.funnel(range, seller).await?;
        Ok(Funnel {
            product_views,
            add_to_cart,
            checkouts,
            confirmed_orders,
        })
    }

    /// What visitors searched for. Searches belong to no seller: a seller
    /// sees the shop's, as admins do.
    pub async fn search_terms(
        &self,
        caller: Caller,
        audience: Audience,
        range: &Range,
        zero_results: bool,
        limit: i64,
    ) -> Result<SearchTerms, ApiError> {
        audience.seller(&caller)?;
        let items = self.store.search_terms(range, zero_results, limit).await?;
        Ok(SearchTerms { items })
    }

    /// Client events by type (admins).
    pub async fn client_events(
        &self,
        caller: Caller,
        range: &Range,
        limit: i64,
    ) -> Result<ClientEventCounts, ApiError> {
        caller.require(&[Role::Admin])?;
        let items = self.store.client_events(range, limit).await?;
        Ok(ClientEventCounts { items })
    }

    pub fn subscription(&self) -> Subscription {
        Subscription::shared(
            CONSUMER,
            [
                "interaction.*",
                OrderPlaced::TYPE,
                OrderConfirmed::TYPE,
                OrderRefunded::TYPE,
                OrderPartiallyRefunded::TYPE,
                ProductCreated::TYPE,
                ProductUpdated::TYPE,
                UserErased::TYPE,
            ],
            Arc::new(Keeper(self.store.clone())),
        )
    }
}

/// Keeps what the reports need from each event; every write is keyed by
/// the event or its order, so a redelivery changes nothing.
struct Keeper(AnalyticsStore);

impl Keeper {
    fn interaction(
        event: &Envelope,
        kind: &'static str,
        visitor: Visitor,
        times: u64,
    ) -> InteractionRow {
        InteractionRow {
            event_id: event.id,
            kind,
            at: event.occurred_at,
            times,
            visitor,
            ..InteractionRow::default()
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for Keeper {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let store = &self.0;
        let visitor = |customer_id, session_id| Visitor {
            customer_id,
            session_id,
        };
        match event.event_type.as_str() {
            ProductViewed::TYPE => {
                let e: ProductViewed = event.decode()?;
                let row = InteractionRow {
                    product_id: Some(e.product_id),
                    ..Self::interaction(
                        event,
                        "product_viewed",
                        visitor(e.customer_id, e.session_id),
                        e.count,
                    )
                };
                store.record_interaction(&row).await
            }
            SearchPerformed::TYPE => {
                let e: SearchPerformed = event.decode()?;
                let row = InteractionRow {
                    query: Some(normalize_query(&e.query)),
                    results: Some(i64::try_from(e.results).unwrap_or(i64::MAX)),
                    ..Self::interaction(
                        event,
                        "searched",
                        visitor(e.customer_id, e.session_id),
                        e.count,
                    )
                };
                store.record_interaction(&row).await
            }
            CartItemAdded::TYPE => {
                let e: CartItemAdded = event.decode()?;
                let row = InteractionRow {
                    product_id: Some(e.product_id),
                    quantity: Some(e.quantity),
                    ..Self::interaction(
                        event,
                        "cart_added",
                        visitor(e.customer_id, e.session_id),
                        e.count,
                    )
                };
                store.record_interaction(&row).await
            }
            CheckoutStarted::TYPE => {
                let e: CheckoutStarted = event.decode()?;
                let row = InteractionRow {
                    order_id: Some(e.order_id),
                    ..Self::interaction(
                        event,
                        "checkout_started",
                        visitor(e.customer_id, e.session_id),
                        e.count,
                    )
                };
                store.record_interaction(&row).await
            }
            OrderPlaced::TYPE => {
                let e: OrderPlaced = event.decode()?;
                store
                    .record_order(e.order_id, &event.occurred_at, false, &e.total, &e.items)
                    .await
            }
            OrderConfirmed::TYPE => {
                let e: OrderConfirmed = event.decode()?;
                store
                    .record_order(e.order_id, &event.occurred_at, true, &e.total, &e.items)
                    .await
            }
            OrderRefunded::TYPE => {
                let e: OrderRefunded = event.decode()?;
                store
                    .record_refund(event.id, e.order_id, &event.occurred_at, &e.amount)
                    .await
            }
            OrderPartiallyRefunded::TYPE => {
                let e: OrderPartiallyRefunded = event.decode()?;
                store
                    .record_refund(event.id, e.order_id, &event.occurred_at, &e.amount)
                    .await
            }
            ProductCreated::TYPE => {
                let e: ProductCreated = event.decode()?;
                let p = &e.product;
                store
                    .record_product(p.id, p.seller_id, &p.title, e.version)
                    .await
            }
            ProductUpdated::TYPE => {
                let e: ProductUpdated = event.decode()?;
                let p = &e.product;
                store
                    .record_product(p.id, p.seller_id, &p.title, e.version)
                    .await
            }
            UserErased::TYPE => {
                let e: UserErased = event.decode()?;
                store.erase(e.user_id).await
            }
            // Interactions of kinds this version does not know.
            _ => Ok(()),
        }
    }
}
