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
use std::collections::HashMap;
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
    /// Cancelled before it was confirmed: the reason.
    Failed(String),
    /// Orders refused to place it (a SKU no longer sold, say): the code.
    /// There is no order; the attempt counts as failed.
    Refused(String),
}

/// What a claim is for; each is made only while the subscription still
/// stands as the claimer saw it (checked on its row, which the claim locks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// The scheduler's first attempt at the period at `next_renewal_at`,
    /// which has come: only a period with no order at all.
    Due,
    /// The scheduler's next attempt at the failed period whose pause is over.
    Retry,
    /// An admin's renewal: the period has no live order.
    Renew,
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
}

/// A claim for a period: what else to change with it.
pub struct ClaimRequest {
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    pub period: i64,
    pub kind: ClaimKind,
    /// The time the claimer acts at: a period or a retry must be due by it.
    pub at: DateTime<Utc>,
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
/// After them an order is `failed` (cancelled before its confirmation:
/// counted), `cancelled` (after it: not counted), `refused` (orders placed
/// nothing: counted) or `abandoned` (never asked for: the subscription
/// stopped first).
const LIVE: &str = "('placing', 'pending', 'confirmed')";

/// Claims that became orders, or may have.
const ORDERED: &str = "('placing', 'pending', 'confirmed', 'failed', 'cancelled')";

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
    /// attempt 1) and its idempotency key, whose answer is filled in by
    /// [`Self::created`] once orders took the first order. `false` when
    /// another request with the key committed first.
    pub async fn create(&self, new: &NewSubscription<'_>) -> anyhow::Result<bool> {
        let s = new.view;
        let mut tx = self.db.begin().await?;
        let pending = StoredResponse {
            status: 201,
            body: String::new(),
        };
        if !idempotency::record(&mut tx, new.scope, new.key, new.request_hash, &pending).await? {
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
        tx.commit().await?;
        Ok(true)
    }

    /// Orders took (or may have taken) the first order: the subscription is
    /// announced and the key's answer stored, together.
    pub async fn created(
        &self,
        s: &Subscription,
        first_order: Uuid,
        scope: &str,
        key: &str,
        answer: &StoredResponse,
    ) -> anyhow::Result<()> {
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
                    order_id: first_order,
                    period: 0,
                    attempt: 1,
                },
            )?,
        ];
        let mut tx = self.db.begin().await?;
        self.outbox.add(&mut tx, &events).await?;
        idempotency::complete_in(&mut tx, scope, key, answer).await?;
        tx.commit().await?;
        Ok(())
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

    /// The orders of each subscription in `ids`, oldest first.
    async fn order_ids(&self, ids: &[&str]) -> anyhow::Result<HashMap<String, Vec<Uuid>>> {
        let mut out: HashMap<String, Vec<Uuid>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let placeholders = (1..=ids.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT subscription_id, order_id FROM subscription_orders
             WHERE subscription_id IN ({placeholders}) AND status IN {ORDERED}
             ORDER BY subscription_id, period, attempt"
        );
        let mut query = sqlx::query_as::<_, (String, String)>(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        for (sub, order) in query.fetch_all(self.db.pool()).await? {
            let order = uuid(&order)?;
            out.entry(sub).or_default().push(order);
        }
        Ok(out)
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
                let orders = self
                    .order_ids(&[&row.0])
                    .await?
                    .remove(&row.0)
                    .unwrap_or_default();
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
        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let mut orders = self.order_ids(&ids).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let of_it = orders.remove(&row.0).unwrap_or_default();
            items.push(Self::from_row(row, of_it)?.view);
        }
        Ok(Page::from_rows(items, page.limit, |s| s.id.to_string()))
    }

    /// Claims the next attempt at `period`'s order, unless the subscription
    /// no longer stands as the claim's kind needs, an order of the period is
    /// live, or another claim of the attempt won. The claim, the move to the
    /// next period when it is due (made also when the period has its order
    /// already), and `subscription.renewal_placed` commit together.
    pub async fn claim(&self, req: &ClaimRequest) -> anyhow::Result<Option<PeriodOrder>> {
        let sub = req.subscription_id.to_string();
        let now = time::to_db(&time::now());
        let mut tx = self.db.begin().await?;
        // First the subscription's row: it must still stand as the claimer
        // saw it, and on PostgreSQL the claim holds its lock from here, so
        // a pause, a cancellation or a settlement waits for it.
        let guard = match req.kind {
            ClaimKind::Due => "status = 'active' AND period = $3 AND next_renewal_at <= $4",
            ClaimKind::Retry => {
                "status = 'active' AND retry_period = $3 AND retry_at IS NOT NULL AND retry_at <= $4"
            }
            ClaimKind::Renew => "status IN ('active', 'past_due') AND period >= $3 AND $4 <> ''",
        };
        let stands = sqlx::query(&format!(
            "UPDATE subscriptions SET updated_at = $2 WHERE id = $1 AND {guard}"
        ))
        .bind(&sub)
        .bind(&now)
        .bind(req.period)
        .bind(time::to_db(&req.at))
        .execute(tx.conn())
        .await?;
        if stands.rows_affected() == 0 {
            tx.rollback().await;
            return Ok(None);
        }
        let (live, last): (i64, Option<i64>) = sqlx::query_as(&format!(
            "SELECT COALESCE(SUM(CASE WHEN status IN {LIVE} THEN 1 ELSE 0 END), 0), MAX(attempt)
             FROM subscription_orders WHERE subscription_id = $1 AND period = $2"
        ))
        .bind(&sub)
        .bind(req.period)
        .fetch_one(tx.conn())
        .await?;
        if let Some((next, starts)) = req.advance_to {
            sqlx::query(
                "UPDATE subscriptions SET period = $2, next_renewal_at = $3 WHERE id = $1 AND period = $4",
            )
            .bind(&sub)
            .bind(next)
            .bind(time::to_db(&starts))
            .bind(req.period)
            .execute(tx.conn())
            .await?;
        }
        if live > 0 || (req.kind == ClaimKind::Due && last.is_some()) {
            // The period has its order: at most the schedule moved on.
            tx.commit().await?;
            return Ok(None);
        }
        let attempt = last.unwrap_or(0) + 1;
        let order_id = id::new_id();
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
        sqlx::query("UPDATE subscriptions SET retry_at = NULL WHERE id = $1 AND retry_period = $2")
            .bind(&sub)
            .bind(req.period)
            .execute(tx.conn())
            .await?;
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

    /// What a period order came to, once: a claim leaves `placing` or
    /// `pending` only forward (each change is a conditional update, so two
    /// settlements of one order, the consumer's and a repeated call's, have
    /// one effect). A failure counts against the subscription (a retry
    /// after `delay`, or `past_due` after the last attempt); a confirmation
    /// clears the count; a confirmed order cancelled later leaves its
    /// period without an order, uncounted. With `inbox`, the event that told
    /// is recorded in the same transaction.
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
        let now = time::now();
        let (to, from, reason) = match outcome {
            Outcome::Pending => ("pending", "('placing')", None),
            Outcome::Confirmed => ("confirmed", "('placing', 'pending')", None),
            Outcome::Failed(r) => ("failed", "('placing', 'pending')", Some(r.as_str())),
            Outcome::Refused(r) => ("refused", "('placing')", Some(r.as_str())),
        };
        let moved: Option<(String, i64, i64)> = sqlx::query_as(&format!(
            "UPDATE subscription_orders SET status = $2, reason = $3, updated_at = $4
             WHERE order_id = $1 AND status IN {from}
             RETURNING subscription_id, period, attempt"
        ))
        .bind(order_id.to_string())
        .bind(to)
        .bind(reason)
        .bind(time::to_db(&now))
        .fetch_optional(tx.conn())
        .await?;
        match (moved, outcome) {
            (Some((sub, period, _)), Outcome::Confirmed) => {
                self.clear_failures(&mut tx, &sub, period, &now).await?;
            }
            (Some((sub, period, attempt)), Outcome::Failed(reason) | Outcome::Refused(reason)) => {
                let failure = Failure {
                    order_id,
                    period,
                    attempt,
                    reason,
                };
                self.count_failure(&mut tx, &sub, &failure, delay, &now)
                    .await?;
            }
            (None, Outcome::Failed(reason)) => {
                // Not this context's order, settled already, or cancelled
                // after its confirmation: then its period has no order.
                sqlx::query(
                    "UPDATE subscription_orders SET status = 'cancelled', reason = $2, updated_at = $3
                     WHERE order_id = $1 AND status = 'confirmed'",
                )
                .bind(order_id.to_string())
                .bind(reason)
                .bind(time::to_db(&now))
                .execute(tx.conn())
                .await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(())
    }

    /// An order of `period` was confirmed: no failures in a row any more, a
    /// retry of that period is done, and a past-due subscription is active.
    async fn clear_failures(
        &self,
        tx: &mut Tx,
        sub: &str,
        period: i64,
        now: &DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE subscriptions SET failed_attempts = 0,
                retry_at = CASE WHEN retry_period = $2 THEN NULL ELSE retry_at END,
                retry_period = CASE WHEN retry_period = $2 THEN NULL ELSE retry_period END,
                updated_at = $3
             WHERE id = $1 RETURNING customer_id, status",
        )
        .bind(sub)
        .bind(period)
        .bind(time::to_db(now))
        .fetch_optional(tx.conn())
        .await?;
        let Some((customer, status)) = row else {
            return Ok(());
        };
        if status == SubscriptionStatus::PastDue.as_str() {
            sqlx::query("UPDATE subscriptions SET status = 'active' WHERE id = $1")
                .bind(sub)
                .execute(tx.conn())
                .await?;
            let id = uuid(sub)?;
            let event = Self::event(
                id,
                &SubscriptionStatusChanged {
                    subscription_id: id,
                    customer_id: uuid(&customer)?,
                    status: SubscriptionStatus::Active.as_str().to_owned(),
                },
            )?;
            self.outbox.add(tx, &[event]).await?;
        }
        Ok(())
    }

    async fn count_failure(
        &self,
        tx: &mut Tx,
        sub: &str,
        failure: &Failure<'_>,
        delay: &RetryDelay,
        now: &DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "UPDATE subscriptions SET failed_attempts = failed_attempts + 1, updated_at = $2
             WHERE id = $1 RETURNING customer_id, status, failed_attempts",
        )
        .bind(sub)
        .bind(time::to_db(now))
        .fetch_optional(tx.conn())
        .await?;
        let Some((customer, status, failed)) = row else {
            return Ok(());
        };
        let subscription_id = uuid(sub)?;
        let customer_id = uuid(&customer)?;
        let mut events = vec![Self::event(
            subscription_id,
            &SubscriptionRenewalFailed {
                subscription_id,
                customer_id,
                order_id: failure.order_id,
                period: failure.period,
                attempt: failure.attempt,
                reason: failure.reason.to_owned(),
                failed_attempts: failed,
            },
        )?];
        // The period is tried again: after a pause, or (the last attempt
        // failed) only when renewed or resumed.
        let last = failed >= MAX_ATTEMPTS;
        let retry_at = (!last).then(|| {
            time::to_db(&(*now + chrono::Duration::from_std(delay(failed)).unwrap_or_default()))
        });
        let to_past_due = last && status == SubscriptionStatus::Active.as_str();
        let status = if to_past_due {
            SubscriptionStatus::PastDue.as_str()
        } else {
            status.as_str()
        };
        sqlx::query(
            "UPDATE subscriptions SET retry_period = $2, retry_at = $3, status = $4 WHERE id = $1",
        )
        .bind(sub)
        .bind(failure.period)
        .bind(retry_at)
        .bind(status)
        .execute(tx.conn())
        .await?;
        if to_past_due {
            events.push(Self::event(
                subscription_id,
                &SubscriptionPastDue {
                    subscription_id,
                    customer_id,
                    order_id: failure.order_id,
                    failed_attempts: failed,
                    reason: failure.reason.to_owned(),
                },
            )?);
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
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, shipping_address, status FROM subscriptions WHERE customer_id = $1",
        )
        .bind(customer_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        let now = time::to_db(&time::now());
        let mut tx = self.db.begin().await?;
        let mut events = Vec::new();
        for (id, json, status) in &rows {
            let erased = serde_json::from_str::<ShippingAddress>(json)?.erased();
            sqlx::query(
                "UPDATE subscriptions SET shipping_address = $2, payment_token = '', status = 'cancelled',
                    retry_period = NULL, retry_at = NULL, updated_at = $3
                 WHERE id = $1",
            )
            .bind(id)
            .bind(serde_json::to_string(&erased)?)
            .bind(&now)
            .execute(tx.conn())
            .await?;
            if status != SubscriptionStatus::Cancelled.as_str() {
                let subscription_id = uuid(id)?;
                events.push(Self::event(
                    subscription_id,
                    &SubscriptionStatusChanged {
                        subscription_id,
                        customer_id,
                        status: SubscriptionStatus::Cancelled.as_str().to_owned(),
                    },
                )?);
            }
        }
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Gives up a claim nobody asked orders for, because its subscription
    /// stopped first (paused, cancelled, erased).
    pub async fn abandon(&self, order_id: Uuid) -> anyhow::Result<()> {
        let query = sqlx::query(
            "UPDATE subscription_orders SET status = 'abandoned', updated_at = $2
             WHERE order_id = $1 AND status = 'placing'",
        )
        .bind(order_id.to_string())
        .bind(time::to_db(&time::now()));
        self.db.execute(query).await?;
        Ok(())
    }
}

/// A failed attempt at a period's order.
struct Failure<'a> {
    order_id: Uuid,
    period: i64,
    attempt: i64,
    reason: &'a str,
}
