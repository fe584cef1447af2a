//! Orders, their history and sellers, and the saga log.

use crate::domain::{HistoryEntry, Order, OrderStatus, PaymentSummary, ShippingAddress};
use crate::watch::StatusWatch;
use chrono::{DateTime, Utc};
use mercato_contracts::types::{Line, Quote};
use mercato_kernel::db::{Db, Tx};
use mercato_kernel::idempotency::{self, StoredResponse};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{time, Currency, Envelope, Money};
use uuid::Uuid;

#[derive(Clone)]
pub struct OrdersStore {
    db: Db,
    outbox: Outbox,
    watch: StatusWatch,
}

/// Which saga an order runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaKind {
    /// Reserve, pay, commit, confirm, empty the cart; or compensate.
    Checkout,
    /// Money and stock back after a cancellation or refund.
    Unwind,
    /// Part of an order's money back (an amount, or a received return's
    /// share with its items restocked). Keyed by the refund's id.
    Refund,
}

impl SagaKind {
    fn as_str(self) -> &'static str {
        match self {
            SagaKind::Checkout => "checkout",
            SagaKind::Unwind => "unwind",
            SagaKind::Refund => "refund",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "unwind" => SagaKind::Unwind,
            "refund" => SagaKind::Refund,
            _ => SagaKind::Checkout,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaState {
    Running,
    Compensating,
    Done,
}

impl SagaState {
    fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Compensating => "compensating",
            SagaState::Done => "done",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "running" => SagaState::Running,
            "compensating" => SagaState::Compensating,
            _ => SagaState::Done,
        }
    }
}

/// A saga as stored.
#[derive(Debug, Clone)]
pub struct Saga {
    /// The order's id; for a [`SagaKind::Refund`], the refund's.
    pub order_id: Uuid,
    pub kind: SagaKind,
    pub state: SagaState,
    pub step: String,
    pub cancel_reason: Option<String>,
    pub attempts: i64,
    pub deadline: DateTime<Utc>,
    pub correlation_id: Option<String>,
}

/// Who is asking for a list.
#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    Customer(Uuid),
    Seller(Uuid),
    Admin,
}

/// What a status change does to the order's saga.
#[derive(Debug, Clone, Copy)]
pub enum SagaUpdate<'a> {
    None,
    /// Start giving money and stock back (a cancellation or refund).
    StartUnwind,
    /// Move the running saga on, in the same transaction as the change.
    Advance(SagaState, &'a str),
}

/// An idempotency record to store with a change.
pub struct IdempotencyRecord<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub request_hash: &'a str,
    pub response: StoredResponse,
}

impl<'a> IdempotencyRecord<'a> {
    /// A key taken before its answer is known: the answer (200) is filled
    /// in once the work has run ([`idempotency::complete`]).
    pub fn pending(scope: &'a str, key: &'a str, request_hash: &'a str) -> Self {
        Self {
            scope,
            key,
            request_hash,
            response: StoredResponse {
                status: 200,
                body: String::new(),
            },
        }
    }

    /// Takes the key in `tx`; `false` when another request took it first.
    pub(crate) async fn record_in(&self, tx: &mut Tx) -> anyhow::Result<bool> {
        Ok(
            idempotency::record(tx, self.scope, self.key, self.request_hash, &self.response)
                .await?,
        )
    }
}

#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// Another request with the same key won the race.
    KeyTaken,
    /// The customer has an order pending already (from the same cart).
    InProgress,
}

/// kind, state, step, cancel_reason, attempts, deadline, correlation_id
type SagaRow = (
    String,
    String,
    String,
    Option<String>,
    i64,
    String,
    Option<String>,
);
type OrderRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
);
const ORDER_COLUMNS: &str =
    "id, customer_id, status, cancel_reason, items, total_amount, currency, payment_status, shipping_address, created_at, updated_at, pricing, refunded_amount, subscription_id";

impl OrdersStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self {
            db,
            outbox,
            watch: StatusWatch::default(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Requests waiting for an order to change; woken by [`Self::transition`].
    pub fn watch(&self) -> &StatusWatch {
        &self.watch
    }

    async fn insert_history(
        tx: &mut Tx,
        order_id: Uuid,
        status: OrderStatus,
        at: &DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO order_history (order_id, seq, status, at)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM order_history WHERE order_id = $1), $2, $3)",
        )
        .bind(order_id.to_string())
        .bind(status.as_str())
        .bind(time::to_db(at))
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    pub(crate) async fn insert_saga(
        tx: &mut Tx,
        order_id: Uuid,
        kind: SagaKind,
        step: &str,
        deadline: &DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let at = time::now();
        let now = time::to_db(&at);
        let state = match kind {
            SagaKind::Checkout | SagaKind::Refund => SagaState::Running,
            SagaKind::Unwind => SagaState::Compensating,
        };
        // The request that starts an unwind runs it at once and answers with
        // its outcome; the recovery loop (of any replica) waits a while
        // before it takes the saga, so that it does not run it first and
        // leave the request answering before the money and stock are back.
        let next_run_at = match kind {
            SagaKind::Checkout => now.clone(),
            SagaKind::Unwind | SagaKind::Refund => {
                time::to_db(&(at + chrono::Duration::seconds(10)))
            }
        };
        sqlx::query(
            "INSERT INTO sagas (order_id, kind, state, step, cancel_reason, attempts, deadline, next_run_at, correlation_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $9, $8, $7, $7)
             ON CONFLICT (order_id) DO UPDATE SET kind = excluded.kind, state = excluded.state, step = excluded.step,
                cancel_reason = excluded.cancel_reason, attempts = 0, deadline = excluded.deadline,
                next_run_at = excluded.next_run_at, lease_owner = NULL, lease_until = NULL, updated_at = excluded.updated_at",
        )
        .bind(order_id.to_string())
        .bind(kind.as_str())
        .bind(state.as_str())
        .bind(step)
        .bind(reason)
        .bind(time::to_db(deadline))
        .bind(&now)
        .bind(mercato_kernel::event::current_correlation().correlation_id)
        .bind(&next_run_at)
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    /// Stores a new pending order with its sellers, history, saga, the
    /// idempotency record of its request (if any) and `order.placed`, in
    /// one transaction.
    pub async fn create_checkout(
        &self,
        order: &Order,
        payment_token: &str,
        sellers: &[Uuid],
        deadline: &DateTime<Utc>,
        idem: Option<&IdempotencyRecord<'_>>,
        events: &[Envelope],
    ) -> anyhow::Result<CreateOutcome> {
        let mut tx = self.db.begin().await?;
        if let Some(idem) = idem {
            if !idem.record_in(&mut tx).await? {
                return Ok(CreateOutcome::KeyTaken);
            }
        }
        // The quote the order was placed with, kept whole.
        let pricing = Quote {
            currency: order.currency.clone(),
            subtotal: order.subtotal.clone(),
            discount_total: order.discount_total.clone(),
            shipping_total: order.shipping_total.clone(),
            tax_total: order.tax_total.clone(),
            total: order.total.clone(),
            discounts: order.discounts.clone(),
            shipping_method: order.shipping_method.clone(),
            tax_lines: order.tax_lines.clone(),
            promotion: order.promotion.clone(),
        };
        let inserted = sqlx::query(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS}, payment_token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(order.id.to_string())
        .bind(order.customer_id.to_string())
        .bind(order.status.as_str())
        .bind(order.cancel_reason.as_deref())
        .bind(serde_json::to_string(&order.items)?)
        .bind(order.total.amount)
        .bind(order.total.currency.as_str())
        .bind(&order.payment.status)
        .bind(serde_json::to_string(&order.shipping_address)?)
        .bind(time::to_db(&order.created_at))
        .bind(time::to_db(&order.updated_at))
        .bind(serde_json::to_string(&pricing)?)
        .bind(order.refunded_total.amount)
        .bind(order.subscription_id.map(|id| id.to_string()))
        .bind(payment_token)
        .execute(tx.conn())
        .await;
        match inserted {
            Ok(_) => {}
            // One pending order per customer, or (an order placed for
            // another context, whose id it chose) the order exists already.
            // The transaction rolls back, key included.
            Err(e) if mercato_kernel::error::is_unique_violation(&e) => {
                return Ok(CreateOutcome::InProgress)
            }
            Err(e) => return Err(e.into()),
        }
        for seller in sellers {
            sqlx::query("INSERT INTO order_sellers (order_id, seller_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(order.id.to_string())
                .bind(seller.to_string())
                .execute(tx.conn())
                .await?;
        }
        Self::insert_history(&mut tx, order.id, order.status, &order.created_at).await?;
        Self::insert_saga(
            &mut tx,
            order.id,
            SagaKind::Checkout,
            crate::saga::FIRST_STEP,
            deadline,
            None,
        )
        .await?;
        self.outbox.add(&mut tx, events).await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    /// Moves an order from one of `from` to `to`, with history and events,
    /// optionally starting an unwind saga and recording an idempotent answer.
    /// `false` when the order was not in one of `from` any more.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition(
        &self,
        order_id: Uuid,
        from: &[OrderStatus],
        to: OrderStatus,
        cancel_reason: Option<&str>,
        events: &[Envelope],
        saga: SagaUpdate<'_>,
        idem: Option<&IdempotencyRecord<'_>>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let now = time::now();
        if !Self::set_status_in(&mut tx, order_id, from, to, &now).await? {
            return Ok(false);
        }
        if let Some(reason) = cancel_reason {
            sqlx::query("UPDATE orders SET cancel_reason = $1 WHERE id = $2")
                .bind(reason)
                .bind(order_id.to_string())
                .execute(tx.conn())
                .await?;
        }
        if let Some(idem) = idem {
            if !idem.record_in(&mut tx).await? {
                return Ok(false);
            }
        }
        match saga {
            SagaUpdate::None => {}
            SagaUpdate::StartUnwind => {
                Self::claim_rest(&mut tx, order_id, to, &now).await?;
                Self::insert_saga(
                    &mut tx,
                    order_id,
                    SagaKind::Unwind,
                    "refund_payment",
                    &now,
                    cancel_reason,
                )
                .await?
            }
            SagaUpdate::Advance(state, step) => {
                Self::advance_in(&mut tx, order_id, state, step, None).await?
            }
        }
        self.outbox.add(&mut tx, events).await?;
        tx.commit().await?;
        self.watch.changed(order_id);
        Ok(true)
    }

    /// Moves the order from one of `from` to `to` with its history entry;
    /// `false` (nothing written) when it was in none of them.
    pub(crate) async fn set_status_in(
        tx: &mut Tx,
        order_id: Uuid,
        from: &[OrderStatus],
        to: OrderStatus,
        now: &DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3 AND status IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(time::to_db(now))
            .bind(order_id.to_string());
        for f in from {
            q = q.bind(f.as_str());
        }
        if q.execute(tx.conn()).await?.rows_affected() == 0 {
            return Ok(false);
        }
        Self::insert_history(tx, order_id, to, now).await?;
        Ok(true)
    }

    /// Anonymises the shipping address of every order of a customer who
    /// erased their account; the country stays (tax), the rest goes. Doing
    /// it again changes nothing.
    pub async fn anonymise_customer(&self, customer_id: Uuid) -> anyhow::Result<u64> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, shipping_address FROM orders WHERE customer_id = $1")
                .bind(customer_id.to_string())
                .fetch_all(self.db.pool())
                .await?;
        let mut changed = 0;
        for (id, json) in rows {
            let erased = serde_json::from_str::<ShippingAddress>(&json)?.erased();
            // A pending order's saga may still need its token to charge.
            let query = sqlx::query(
                "UPDATE orders SET shipping_address = $1,
                    payment_token = CASE WHEN status = 'pending' THEN payment_token ELSE '' END
                 WHERE id = $2",
            )
            .bind(serde_json::to_string(&erased)?)
            .bind(id);
            changed += self.db.execute(query).await?.rows_affected();
        }
        Ok(changed)
    }

    pub async fn payment_token(&self, order_id: Uuid) -> anyhow::Result<String> {
        let (token,): (String,) = sqlx::query_as("SELECT payment_token FROM orders WHERE id = $1")
            .bind(order_id.to_string())
            .fetch_one(self.db.pool())
            .await?;
        Ok(token)
    }

    fn order_from_row(row: OrderRow, history: Vec<HistoryEntry>) -> anyhow::Result<Order> {
        let (
            id,
            customer_id,
            status,
            cancel_reason,
            items,
            total_amount,
            currency,
            payment_status,
            address,
            created_at,
            updated_at,
            pricing,
            refunded_amount,
            subscription_id,
        ) = row;
        let currency = Currency::parse(&currency)?;
        let total = Money::new(total_amount, currency.clone());
        let pricing = match pricing {
            Some(p) => serde_json::from_str::<Quote>(&p)?,
            // Placed before orders kept their quote: nothing but the lines.
            None => Quote::plain(total.clone()),
        };
        Ok(Order {
            id: Uuid::parse_str(&id)?,
            customer_id: Uuid::parse_str(&customer_id)?,
            status: OrderStatus::parse(&status)
                .ok_or_else(|| anyhow::anyhow!("unknown order status {status:?}"))?,
            cancel_reason,
            items: serde_json::from_str::<Vec<Line>>(&items)?,
            payment: PaymentSummary {
                status: payment_status,
                amount: total.clone(),
            },
            subtotal: pricing.subtotal,
            discount_total: pricing.discount_total,
            shipping_total: pricing.shipping_total,
            tax_total: pricing.tax_total,
            discounts: pricing.discounts,
            shipping_method: pricing.shipping_method,
            tax_lines: pricing.tax_lines,
            promotion: pricing.promotion,
            refunded_total: Money::new(refunded_amount, currency.clone()),
            currency,
            total,
            shipping_address: serde_json::from_str::<ShippingAddress>(&address)?,
            subscription_id: subscription_id
                .as_deref()
                .map(Uuid::parse_str)
                .transpose()?,
            history,
            created_at: time::from_db(&created_at)?,
            updated_at: time::from_db(&updated_at)?,
        })
    }

    async fn history(&self, order_id: &str) -> anyhow::Result<Vec<HistoryEntry>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT status, at FROM order_history WHERE order_id = $1 ORDER BY seq")
                .bind(order_id)
                .fetch_all(self.db.pool())
                .await?;
        rows.into_iter()
            .map(|(s, at)| {
                Ok(HistoryEntry {
                    status: OrderStatus::parse(&s)
                        .ok_or_else(|| anyhow::anyhow!("unknown status {s:?}"))?,
                    at: time::from_db(&at)?,
                })
            })
            .collect()
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<Order>> {
        let row: Option<OrderRow> =
            sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let history = self.history(&row.0).await?;
                Ok(Some(Self::order_from_row(row, history)?))
            }
        }
    }

    pub async fn sellers(&self, order_id: Uuid) -> anyhow::Result<Vec<Uuid>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT seller_id FROM order_sellers WHERE order_id = $1")
                .bind(order_id.to_string())
                .fetch_all(self.db.pool())
                .await?;
        rows.into_iter()
            .map(|(s,)| Ok(Uuid::parse_str(&s)?))
            .collect()
    }

    /// Newest first.
    pub async fn list(
        &self,
        viewer: Viewer,
        status: Option<OrderStatus>,
        page: &PageRequest,
    ) -> anyhow::Result<Page<Order>> {
        let cols = ORDER_COLUMNS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("SELECT {cols} FROM orders o");
        let mut args: Vec<String> = Vec::new();
        match viewer {
            Viewer::Customer(id) => {
                args.push(id.to_string());
                sql.push_str(" WHERE o.customer_id = $1");
            }
            Viewer::Seller(id) => {
                args.push(id.to_string());
                sql.push_str(" JOIN order_sellers s ON s.order_id = o.id WHERE s.seller_id = $1");
            }
            Viewer::Admin => sql.push_str(" WHERE 1 = 1"),
        }
        if let Some(s) = status {
            args.push(s.as_str().to_owned());
            sql.push_str(&format!(" AND o.status = ${}", args.len()));
        }
        if let Some(after) = &page.after {
            args.push(after.clone());
            sql.push_str(&format!(" AND o.id < ${}", args.len()));
        }
        sql.push_str(&format!(
            " ORDER BY o.id DESC LIMIT {}",
            i64::from(page.limit) + 1
        ));
        let mut q = sqlx::query_as::<_, OrderRow>(&sql);
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(self.db.pool()).await?;
        let mut orders = Vec::with_capacity(rows.len());
        for row in rows {
            let history = self.history(&row.0).await?;
            orders.push(Self::order_from_row(row, history)?);
        }
        Ok(Page::from_rows(orders, page.limit, |o| o.id.to_string()))
    }

    // The saga log.

    /// Takes the saga's lease unless another runner holds a live one.
    pub async fn claim(
        &self,
        order_id: Uuid,
        owner: &str,
        lease: chrono::Duration,
    ) -> anyhow::Result<bool> {
        let now = time::now();
        let done = self
            .db
            .execute(
                sqlx::query(
                    "UPDATE sagas SET lease_owner = $1, lease_until = $2
             WHERE order_id = $3 AND state <> 'done' AND (lease_until IS NULL OR lease_until < $4)",
                )
                .bind(owner)
                .bind(time::to_db(&(now + lease)))
                .bind(order_id.to_string())
                .bind(time::to_db(&now)),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends a lease this runner holds; `false` when it holds it no
    /// longer (it expired and another runner took the saga).
    pub async fn renew(
        &self,
        order_id: Uuid,
        owner: &str,
        lease: chrono::Duration,
    ) -> anyhow::Result<bool> {
        let done = self
            .db
            .execute(
                sqlx::query(
                    "UPDATE sagas SET lease_until = $1 WHERE order_id = $2 AND lease_owner = $3",
                )
                .bind(time::to_db(&(time::now() + lease)))
                .bind(order_id.to_string())
                .bind(owner),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn saga(&self, order_id: Uuid) -> anyhow::Result<Option<Saga>> {
        let row: Option<SagaRow> = sqlx::query_as(
            "SELECT kind, state, step, cancel_reason, attempts, deadline, correlation_id FROM sagas WHERE order_id = $1",
        )
        .bind(order_id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(
            |(kind, state, step, cancel_reason, attempts, deadline, correlation_id)| {
                Ok(Saga {
                    order_id,
                    kind: SagaKind::parse(&kind),
                    state: SagaState::parse(&state),
                    step,
                    cancel_reason,
                    attempts,
                    deadline: time::from_db(&deadline)?,
                    correlation_id,
                })
            },
        )
        .transpose()
    }

    /// Records the saga's next step; in `tx` when given (with the step's own effect).
    pub async fn advance_in(
        tx: &mut Tx,
        order_id: Uuid,
        state: SagaState,
        step: &str,
        reason: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE sagas SET state = $1, step = $2, cancel_reason = COALESCE($3, cancel_reason), attempts = 0,
                last_error = NULL, updated_at = $4, lease_owner = CASE WHEN $1 = 'done' THEN NULL ELSE lease_owner END,
                lease_until = CASE WHEN $1 = 'done' THEN NULL ELSE lease_until END
             WHERE order_id = $5",
        )
        .bind(state.as_str())
        .bind(step)
        .bind(reason)
        .bind(time::to_db(&time::now()))
        .bind(order_id.to_string())
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    /// [`Self::advance_from`] to `next` (state and step), in `tx`.
    pub(crate) async fn advance_saga_in(
        tx: &mut Tx,
        saga_id: Uuid,
        from: (SagaState, &str),
        next: (SagaState, &str),
    ) -> Result<bool, sqlx::Error> {
        Self::advance_from(tx, saga_id, from, next.0, next.1, None).await
    }

    /// Moves the saga from `from` (state and step) to its next step; `false`
    /// (and nothing written) when the saga is no longer at `from`: another
    /// run has moved it on, and a late run must not move it back.
    async fn advance_from(
        tx: &mut Tx,
        order_id: Uuid,
        from: (SagaState, &str),
        state: SagaState,
        step: &str,
        reason: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let done = Self::advance_query(order_id, from, state, step, reason)
            .execute(tx.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves the saga from step `from` to `step` in `state`; changes no row
    /// when the saga is no longer at `from`.
    fn advance_query<'q>(
        order_id: Uuid,
        from: (SagaState, &'q str),
        state: SagaState,
        step: &'q str,
        reason: Option<&'q str>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        sqlx::query(
            "UPDATE sagas SET state = $1, step = $2, cancel_reason = COALESCE($3, cancel_reason), attempts = 0,
                last_error = NULL, updated_at = $4, lease_owner = CASE WHEN $1 = 'done' THEN NULL ELSE lease_owner END,
                lease_until = CASE WHEN $1 = 'done' THEN NULL ELSE lease_until END
             WHERE order_id = $5 AND state = $6 AND step = $7",
        )
        .bind(state.as_str())
        .bind(step)
        .bind(reason)
        .bind(time::to_db(&time::now()))
        .bind(order_id.to_string())
        .bind(from.0.as_str())
        .bind(from.1)
    }

    /// Records the payment's status and the saga's next step together;
    /// `false` when the saga was no longer at `from`.
    pub async fn advance_paying(
        &self,
        order_id: Uuid,
        payment_status: &str,
        from: (SagaState, &str),
        state: SagaState,
        step: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if !Self::advance_from(&mut tx, order_id, from, state, step, reason).await? {
            return Ok(false);
        }
        // Money back in full: what was refunded is the whole total.
        sqlx::query(
            "UPDATE orders SET payment_status = $1, updated_at = $2,
                refunded_amount = CASE WHEN $1 = 'refunded' THEN total_amount ELSE refunded_amount END
             WHERE id = $3",
        )
            .bind(payment_status)
            .bind(time::to_db(&time::now()))
            .bind(order_id.to_string())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records the saga's next step; `false` when it was no longer at `from`.
    pub async fn advance(
        &self,
        order_id: Uuid,
        from: (SagaState, &str),
        state: SagaState,
        step: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<bool> {
        let done = self
            .db
            .execute(Self::advance_query(order_id, from, state, step, reason))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A step failed for now: try again at `next_run_at`, by whichever runner is free.
    /// Only while `owner` holds the lease: a late run changes nothing.
    pub async fn retry_later(
        &self,
        order_id: Uuid,
        owner: &str,
        attempts: i64,
        next_run_at: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<()> {
        let query = sqlx::query(
            "UPDATE sagas SET attempts = $1, next_run_at = $2, last_error = $3, lease_owner = NULL, lease_until = NULL, updated_at = $4
             WHERE order_id = $5 AND lease_owner = $6",
        )
        .bind(attempts)
        .bind(time::to_db(&next_run_at))
        .bind(error.chars().take(500).collect::<String>())
        .bind(time::to_db(&time::now()))
        .bind(order_id.to_string())
        .bind(owner);
        self.db.execute(query).await?;
        Ok(())
    }

    /// Lets go of `owner`'s lease without changing anything else.
    pub async fn release(&self, order_id: Uuid, owner: &str) -> anyhow::Result<()> {
        let query = sqlx::query(
            "UPDATE sagas SET lease_owner = NULL, lease_until = NULL WHERE order_id = $1 AND lease_owner = $2",
        )
        .bind(order_id.to_string())
        .bind(owner);
        self.db.execute(query).await?;
        Ok(())
    }

    /// Drops every lease. Only for a runner that knows it is the only one
    /// on this store (embedded mode): leases left by a crashed earlier
    /// process would otherwise hold their sagas until they expire.
    pub async fn release_all(&self) -> anyhow::Result<u64> {
        let query = sqlx::query(
            "UPDATE sagas SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        );
        let done = self.db.execute(query).await?;
        Ok(done.rows_affected())
    }

    /// Sagas that should run now and that nobody holds.
    pub async fn due(&self, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        let now = time::to_db(&time::now());
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT order_id FROM sagas WHERE state <> 'done' AND next_run_at <= $1
               AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_run_at LIMIT $2",
        )
        .bind(&now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(s,)| Ok(Uuid::parse_str(&s)?))
            .collect()
    }

    /// Sagas not finished yet, for readiness and tests.
    pub async fn unfinished(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sagas WHERE state <> 'done'")
            .fetch_one(self.db.pool())
            .await?;
        Ok(n)
    }
}
