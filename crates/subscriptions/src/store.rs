//! Subscriptions and the orders of their periods.
//!
//! Placing an order for a period starts with a claim: a row of
//! `subscription_orders` keyed by (subscription, period, attempt), inserted
//! only when no order of the period is live. Replicas racing for a period
//! compute the same attempt number and only one row goes in; the order's id
//! is chosen with the claim, so the call to orders that follows, repeated
//! after a crash or by another replica, places that one order.

use crate::domain::{Interval, Subscription, SubscriptionItem, SubscriptionStatus, MAX_ATTEMPTS};
use chrono::{DateTime, Utc};
use mercato_contracts::events::{
    SubscriptionCreated, SubscriptionPastDue, SubscriptionRenewalFailed, SubscriptionRenewalPlaced,
    SubscriptionStatusChanged,
};
use mercato_contracts::types::ShippingAddress;
use mercato_kernel::db::{Db, Tx};
use mercato_kernel::idempotency::{self, StoredResponse};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, inbox, time, Envelope};
use uuid::Uuid;

#[derive(Clone)]
pub struct SubscriptionsStore {
    db: Db,
    outbox: Outbox,
}

/// A subscription with what only the context sees.
#[derive(Debug, Clone)]
pub struct Stored {
    pub view: Subscription,
    pub payment_token: String,
    pub anchor_at: DateTime<Utc>,
    /// The number of the period that starts at `next_renewal_at`.
    pub period: i64,
    /// A period whose order failed, to be tried again.
    pub retry_period: Option<i64>,
    /// When the scheduler tries it again (none: only renew or resume does).
    pub retry_at: Option<DateTime<Utc>>,
}

/// One order of a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodOrder {
    pub subscription_id: Uuid,
    pub period: i64,
    pub attempt: i64,
    pub order_id: Uuid,
}

/// What became of a period's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Placed and not settled yet.
    Pending,
    Confirmed,
    /// Cancelled, or refused before it was placed: the reason.
    Failed(String),
}

/// What a new subscription is stored with.
pub struct NewSubscription<'a> {
    pub view: &'a Subscription,
    pub payment_token: &'a str,
    /// The first order's id.
    pub first_order: Uuid,
    pub scope: &'a str,
    pub key: &'a str,
    pub request_hash: &'a str,
    pub response: StoredResponse,
}

/// A claim for a period: what else to change with it.
pub struct ClaimRequest {
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    pub period: i64,
    /// Another attempt may follow failed ones; otherwise only a period
    /// with no order at all is claimed (the scheduler's first attempt).
    pub retry: bool,
    /// The period is due: the subscription moves on to this one, which
    /// starts then (from `period`, the one being placed).
    pub advance_to: Option<(i64, DateTime<Utc>)>,
}

/// How long a retry waits, by failed attempts in a row.
pub type RetryDelay = dyn Fn(i64) -> std::time::Duration + Send + Sync;

const COLUMNS: &str = "id, customer_id, status, items, cadence, payment_token, shipping_address, anchor_at, period, next_renewal_at, failed_attempts, retry_period, created_at, updated_at, retry_at";

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
);

/// Statuses of a period's order that still count: no other is placed.
const LIVE: &str = "('placing', 'pending', 'confirmed')";

fn uuid(raw: &str) -> anyhow::Result<Uuid> {
    Ok(Uuid::parse_str(raw)?)
}

impl SubscriptionsStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn event<E: mercato_kernel::event::DomainEvent>(
        subscription_id: Uuid,
        payload: &E,
    ) -> anyhow::Result<Envelope> {
        Ok(Envelope::new(
            crate::NAME,
            subscription_id.to_string(),
            payload,
        )?)
    }

    /// Stores a subscription with the claim of its first order (period 0,
    /// attempt 1) and the answer to its idempotency key. `false` when
    /// another request with the key committed first.
    pub async fn create(&self, new: &NewSubscription<'_>) -> anyhow::Result<bool> {
        let s = new.view;
        let mut tx = self.db.begin().await?;
        if !idempotency::record(&mut tx, new.scope, new.key, new.request_hash, &new.response)
            .await?
        {
            return Ok(false);
        }
        let now = time::to_db(&s.created_at);
        sqlx::query(&format!(
            "INSERT INTO subscriptions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NULL)"
        ))
        .bind(s.id.to_string())
        .bind(s.customer_id.to_string())
        .bind(s.status.as_str())
        .bind(serde_json::to_string(&s.items)?)
        .bind(s.interval.as_str())
        .bind(new.payment_token)
        .bind(serde_json::to_string(&s.shipping_address)?)
        .bind(&now)
        .bind(1_i64)
        .bind(time::to_db(&s.next_renewal_at))
        .bind(0_i64)
        .bind(None::<i64>)
        .bind(&now)
        .bind(&now)
        .execute(tx.conn())
        .await?;
        Self::insert_claim(&mut tx, s.id, 0, 1, new.first_order, &now).await?;
        let events = [
            Self::event(
                s.id,
                &SubscriptionCreated {
                    subscription_id: s.id,
                    customer_id: s.customer_id,
                    items: s
                        .items
                        .iter()
                        .map(|i| mercato_contracts::types::SkuQuantity {
                            sku: i.sku.clone(),
                            quantity: i.quantity,
                        })
                        .collect(),
                    interval: s.interval.as_str().to_owned(),
                    next_renewal_at: s.next_renewal_at,
                },
            )?,
            Self::event(
                s.id,
                &SubscriptionRenewalPlaced {
                    subscription_id: s.id,
                    customer_id: s.customer_id,
                    order_id: new.first_order,
                    period: 0,
                    attempt: 1,
                },
            )?,
        ];
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Takes back a subscription whose first order was refused (a SKU that
    /// cannot be bought, say): the subscription, its claim and its key go,
    /// so the same key may be used again with a corrected request.
    pub async fn discard(&self, id: Uuid, scope: &str, key: &str) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        for sql in [
            "DELETE FROM subscription_orders WHERE subscription_id = $1",
            "DELETE FROM subscriptions WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(tx.conn())
                .await?;
        }
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2")
            .bind(scope)
            .bind(key)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_claim(
        tx: &mut Tx,
        subscription_id: Uuid,
        period: i64,
        attempt: i64,
        order_id: Uuid,
        now: &str,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO subscription_orders (subscription_id, period, attempt, order_id, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'placing', $5, $5) ON CONFLICT DO NOTHING",
        )
        .bind(subscription_id.to_string())
        .bind(period)
        .bind(attempt)
        .bind(order_id.to_string())
        .bind(now)
        .execute(tx.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    fn from_row(row: Row, orders: Vec<Uuid>) -> anyhow::Result<Stored> {
        let (
            id,
            customer_id,
            status,
            items,
            cadence,
            payment_token,
            address,
            anchor_at,
            period,
            next_renewal_at,
            failed_attempts,
            retry_period,
            created_at,
            updated_at,
            retry_at,
        ) = row;
        Ok(Stored {
            view: Subscription {
                id: uuid(&id)?,
                customer_id: uuid(&customer_id)?,
                status: SubscriptionStatus::parse(&status)
                    .ok_or_else(|| anyhow::anyhow!("unknown subscription status {status:?}"))?,
                items: serde_json::from_str::<Vec<SubscriptionItem>>(&items)?,
                interval: Interval::parse(&cadence)
                    .ok_or_else(|| anyhow::anyhow!("unknown interval {cadence:?}"))?,
                next_renewal_at: time::from_db(&next_renewal_at)?,
                orders,
                failed_attempts,
                shipping_address: serde_json::from_str::<ShippingAddress>(&address)?,
                created_at: time::from_db(&created_at)?,
                updated_at: time::from_db(&updated_at)?,
            },
            payment_token,
            anchor_at: time::from_db(&anchor_at)?,
            period,
            retry_period,
            retry_at: retry_at.as_deref().map(time::from_db).transpose()?,
        })
    }

    async fn order_ids(&self, id: &str) -> anyhow::Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT order_id FROM subscription_orders WHERE subscription_id = $1 ORDER BY period, attempt",
        )
        .bind(id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(|(o,)| uuid(o)).collect()
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<Stored>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let orders = self.order_ids(&row.0).await?;
                Ok(Some(Self::from_row(row, orders)?))
            }
        }
    }

    /// Newest first; one customer's, or everybody's for `None`.
    pub async fn list(
        &self,
        customer: Option<Uuid>,
        page: &PageRequest,
    ) -> anyhow::Result<Page<Subscription>> {
        let mut sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE 1 = 1");
        let mut n = 0;
        let mut arg = || {
            n += 1;
            format!("${n}")
        };
        if customer.is_some() {
            sql.push_str(&format!(" AND customer_id = {}", arg()));
        }
        if page.after.is_some() {
            sql.push_str(&format!(" AND id < {}", arg()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", arg()));
        let mut query = sqlx::query_as::<_, Row>(&sql);
        if let Some(c) = customer {
            query = query.bind(c.to_string());
        }
        if let Some(after) = &page.after {
            query = query.bind(after.clone());
        }
        let rows = query
            .bind(i64::from(page.limit) + 1)
            .fetch_all(self.db.pool())
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let orders = self.order_ids(&row.0).await?;
            items.push(Self::from_row(row, orders)?.view);
        }
        Ok(Page::from_rows(items, page.limit, |s| s.id.to_string()))
    }

    /// Claims the next attempt at `period`'s order, unless an order of the
    /// period is live or another claim of the attempt won. The claim, the
    /// move to the next period when it is due, and `subscription.renewal_placed`
    /// commit together.
    pub async fn claim(&self, req: &ClaimRequest) -> anyhow::Result<Option<PeriodOrder>> {
        let sub = req.subscription_id.to_string();
        let mut tx = self.db.begin().await?;
        let (live, last): (i64, Option<i64>) = sqlx::query_as(&format!(
            "SELECT COALESCE(SUM(CASE WHEN status IN {LIVE} THEN 1 ELSE 0 END), 0), MAX(attempt)
             FROM subscription_orders WHERE subscription_id = $1 AND period = $2"
        ))
        .bind(&sub)
        .bind(req.period)
        .fetch_one(tx.conn())
        .await?;
        if live > 0 || (!req.retry && last.is_some()) {
            tx.rollback().await;
            return Ok(None);
        }
        let attempt = last.unwrap_or(0) + 1;
        let order_id = id::new_id();
        let now = time::to_db(&time::now());
        if !Self::insert_claim(
            &mut tx,
            req.subscription_id,
            req.period,
            attempt,
            order_id,
            &now,
        )
        .await?
        {
            tx.rollback().await;
            return Ok(None);
        }
        // A retry in flight is not made again by the scheduler.
        sqlx::query(
            "UPDATE subscriptions SET retry_at = NULL, updated_at = $3
             WHERE id = $1 AND retry_period = $2",
        )
        .bind(&sub)
        .bind(req.period)
        .bind(&now)
        .execute(tx.conn())
        .await?;
        if let Some((next, starts)) = req.advance_to {
            sqlx::query(
                "UPDATE subscriptions SET period = $2, next_renewal_at = $3, updated_at = $5
                 WHERE id = $1 AND period = $4",
            )
            .bind(&sub)
            .bind(next)
            .bind(time::to_db(&starts))
            .bind(req.period)
            .bind(&now)
            .execute(tx.conn())
            .await?;
        }
        let event = Self::event(
            req.subscription_id,
            &SubscriptionRenewalPlaced {
                subscription_id: req.subscription_id,
                customer_id: req.customer_id,
                order_id,
                period: req.period,
                attempt,
            },
        )?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(Some(PeriodOrder {
            subscription_id: req.subscription_id,
            period: req.period,
            attempt,
            order_id,
        }))
    }

    /// Whether `period` has had an order, live or not.
    pub async fn has_orders(&self, subscription_id: Uuid, period: i64) -> anyhow::Result<bool> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM subscription_orders WHERE subscription_id = $1 AND period = $2",
        )
        .bind(subscription_id.to_string())
        .bind(period)
        .fetch_one(self.db.pool())
        .await?;
        Ok(n > 0)
    }

    /// Moves a subscription from `period` to the next one, which starts at
    /// `starts`; a no-op when it moved on already.
    pub async fn advance(
        &self,
        subscription_id: Uuid,
        period: i64,
        next: (i64, DateTime<Utc>),
    ) -> anyhow::Result<bool> {
        let query = sqlx::query(
            "UPDATE subscriptions SET period = $2, next_renewal_at = $3, updated_at = $5
             WHERE id = $1 AND period = $4",
        )
        .bind(subscription_id.to_string())
        .bind(next.0)
        .bind(time::to_db(&next.1))
        .bind(period)
        .bind(time::to_db(&time::now()));
        Ok(self.db.execute(query).await?.rows_affected() == 1)
    }

    /// What a period order came to, once: an order leaves `placing` or
    /// `pending` only forward. A failure counts against the subscription
    /// (a retry after `delay`, or `past_due` after the last attempt); a
    /// confirmation clears the count. With `inbox`, the event that told is
    /// recorded in the same transaction.
    pub async fn settle(
        &self,
        order_id: Uuid,
        outcome: &Outcome,
        delay: &RetryDelay,
        inbox_entry: Option<(&str, Uuid)>,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        if let Some((consumer, event_id)) = inbox_entry {
            if !inbox::claim(&mut tx, consumer, event_id).await? {
                tx.rollback().await;
                return Ok(());
            }
        }
        let order = order_id.to_string();
        let row: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT subscription_id, period, attempt FROM subscription_orders
             WHERE order_id = $1 AND status IN ('placing', 'pending')",
        )
        .bind(&order)
        .fetch_optional(tx.conn())
        .await?;
        let Some((sub, period, attempt)) = row else {
            // Not a subscription's order, or settled already.
            tx.commit().await?;
            return Ok(());
        };
        let now = time::now();
        let now_db = time::to_db(&now);
        let (status, reason) = match outcome {
            Outcome::Pending => ("pending", None),
            Outcome::Confirmed => ("confirmed", None),
            Outcome::Failed(reason) => ("failed", Some(reason.as_str())),
        };
        sqlx::query(
            "UPDATE subscription_orders SET status = $2, reason = $3, updated_at = $4
             WHERE order_id = $1 AND status IN ('placing', 'pending')",
        )
        .bind(&order)
        .bind(status)
        .bind(reason)
        .bind(&now_db)
        .execute(tx.conn())
        .await?;
        match outcome {
            Outcome::Pending => {}
            Outcome::Confirmed => {
                sqlx::query(
                    "UPDATE subscriptions SET failed_attempts = 0, retry_period = NULL, retry_at = NULL,
                        status = CASE WHEN status = 'past_due' THEN 'active' ELSE status END,
                        updated_at = $2
                     WHERE id = $1",
                )
                .bind(&sub)
                .bind(&now_db)
                .execute(tx.conn())
                .await?;
            }
            // The customer cancelled that order: the period is skipped, not dunned.
            Outcome::Failed(reason) if reason == "customer_cancelled" => {}
            Outcome::Failed(reason) => {
                self.count_failure(
                    &mut tx, &sub, period, attempt, order_id, reason, delay, &now,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn count_failure(
        &self,
        tx: &mut Tx,
        sub: &str,
        period: i64,
        attempt: i64,
        order_id: Uuid,
        reason: &str,
        delay: &RetryDelay,
        now: &DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT customer_id, status, failed_attempts FROM subscriptions WHERE id = $1",
        )
        .bind(sub)
        .fetch_optional(tx.conn())
        .await?;
        let Some((customer, status, failed)) = row else {
            return Ok(());
        };
        let subscription_id = uuid(sub)?;
        let customer_id = uuid(&customer)?;
        let failed = failed + 1;
        let now_db = time::to_db(now);
        let mut events = vec![Self::event(
            subscription_id,
            &SubscriptionRenewalFailed {
                subscription_id,
                customer_id,
                order_id,
                period,
                attempt,
                reason: reason.to_owned(),
                failed_attempts: failed,
            },
        )?];
        if failed >= MAX_ATTEMPTS {
            // Tried for the last time: nothing more until renewed or resumed.
            let to_past_due = status == SubscriptionStatus::Active.as_str();
            sqlx::query(
                "UPDATE subscriptions SET failed_attempts = $2, retry_period = $3, retry_at = NULL,
                    status = CASE WHEN status = 'active' THEN 'past_due' ELSE status END,
                    updated_at = $4
                 WHERE id = $1",
            )
            .bind(sub)
            .bind(failed)
            .bind(period)
            .bind(&now_db)
            .execute(tx.conn())
            .await?;
            if to_past_due {
                events.push(Self::event(
                    subscription_id,
                    &SubscriptionPastDue {
                        subscription_id,
                        customer_id,
                        order_id,
                        failed_attempts: failed,
                        reason: reason.to_owned(),
                    },
                )?);
            }
        } else {
            let retry_at = *now + chrono::Duration::from_std(delay(failed)).unwrap_or_default();
            sqlx::query(
                "UPDATE subscriptions SET failed_attempts = $2, retry_period = $3, retry_at = $4, updated_at = $5
                 WHERE id = $1",
            )
            .bind(sub)
            .bind(failed)
            .bind(period)
            .bind(time::to_db(&retry_at))
            .bind(&now_db)
            .execute(tx.conn())
            .await?;
        }
        self.outbox.add(tx, &events).await?;
        Ok(())
    }

    /// Moves a subscription from one of `from` to `to`, with
    /// `subscription.status_changed`. Resuming clears the failed attempts
    /// and makes a pending retry due now; cancelling drops it. `false` when
    /// the subscription was in none of `from`.
    pub async fn set_status(
        &self,
        id: Uuid,
        customer_id: Uuid,
        from: &[SubscriptionStatus],
        to: SubscriptionStatus,
        next: Option<(i64, DateTime<Utc>)>,
    ) -> anyhow::Result<bool> {
        let now = time::to_db(&time::now());
        let allowed = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let extra = match to {
            SubscriptionStatus::Active => {
                ", failed_attempts = 0, retry_at = CASE WHEN retry_period IS NULL THEN NULL ELSE $3 END"
            }
            SubscriptionStatus::Cancelled => ", retry_period = NULL, retry_at = NULL",
            _ => "",
        };
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(&format!(
            "UPDATE subscriptions SET status = $2, updated_at = $3{extra} WHERE id = $1 AND status IN ({allowed})"
        ))
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(&now)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await;
            return Ok(false);
        }
        if let Some((period, starts)) = next {
            sqlx::query("UPDATE subscriptions SET period = $2, next_renewal_at = $3 WHERE id = $1")
                .bind(id.to_string())
                .bind(period)
                .bind(time::to_db(&starts))
                .execute(tx.conn())
                .await?;
        }
        let event = Self::event(
            id,
            &SubscriptionStatusChanged {
                subscription_id: id,
                customer_id,
                status: to.as_str().to_owned(),
            },
        )?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Active subscriptions whose next period has started, oldest first.
    pub async fn due(&self, now: &DateTime<Utc>, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        self.ids(
            "SELECT id FROM subscriptions WHERE status = 'active' AND next_renewal_at <= $1 ORDER BY next_renewal_at LIMIT $2",
            now,
            limit,
        )
        .await
    }

    /// Active subscriptions with a failed period to try again now.
    pub async fn retries_due(&self, now: &DateTime<Utc>, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        self.ids(
            "SELECT id FROM subscriptions WHERE status = 'active' AND retry_at IS NOT NULL AND retry_at <= $1 ORDER BY retry_at LIMIT $2",
            now,
            limit,
        )
        .await
    }

    async fn ids(&self, sql: &str, now: &DateTime<Utc>, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(sql)
            .bind(time::to_db(now))
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(|(id,)| uuid(id)).collect()
    }

    /// Claims whose call to orders has not been answered since `before`
    /// (the process died, or orders was down): to be made again, with the
    /// same order id.
    pub async fn unanswered(
        &self,
        before: &DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<PeriodOrder>> {
        let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
            "SELECT subscription_id, period, attempt, order_id FROM subscription_orders
             WHERE status = 'placing' AND updated_at < $1 ORDER BY updated_at LIMIT $2",
        )
        .bind(time::to_db(before))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(sub, period, attempt, order)| {
                Ok(PeriodOrder {
                    subscription_id: uuid(&sub)?,
                    period,
                    attempt,
                    order_id: uuid(&order)?,
                })
            })
            .collect()
    }

    /// Marks an unanswered claim as just tried, so that it waits again
    /// before the next try.
    pub async fn touch(&self, order_id: Uuid) -> anyhow::Result<()> {
        let query = sqlx::query(
            "UPDATE subscription_orders SET updated_at = $2 WHERE order_id = $1 AND status = 'placing'",
        )
        .bind(order_id.to_string())
        .bind(time::to_db(&time::now()));
        self.db.execute(query).await?;
        Ok(())
    }

    /// A customer erased their account: their subscriptions are cancelled
    /// and keep no address (but its country) and no payment token.
    pub async fn erase_customer(&self, customer_id: Uuid) -> anyhow::Result<u64> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, shipping_address FROM subscriptions WHERE customer_id = $1")
                .bind(customer_id.to_string())
                .fetch_all(self.db.pool())
                .await?;
        let now = time::to_db(&time::now());
        let mut changed = 0;
        for (id, json) in rows {
            let address: ShippingAddress = serde_json::from_str(&json)?;
            let erased = ShippingAddress {
                name: ERASED.into(),
                line1: ERASED.into(),
                line2: None,
                city: ERASED.into(),
                postal_code: ERASED.into(),
                country: address.country,
            };
            let query = sqlx::query(
                "UPDATE subscriptions SET shipping_address = $2, payment_token = '', status = 'cancelled',
                    retry_period = NULL, retry_at = NULL, updated_at = $3
                 WHERE id = $1",
            )
            .bind(id)
            .bind(serde_json::to_string(&erased)?)
            .bind(&now);
            changed += self.db.execute(query).await?.rows_affected();
        }
        Ok(changed)
    }
}

/// What an erased person's fields become.
const ERASED: &str = "erased";
