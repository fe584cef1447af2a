//! Returns and partial refunds: what a customer sends back, what of an
//! order's money goes back, and how they are stored.
//!
//! Every money movement after a confirmation is a row of `refunds`, made in
//! the transaction that claims its amount from the order by a conditional
//! update (`refund_claimed + amount <= total`), so refunds never pass the
//! total however many race. A refund's saga (kind `refund`, keyed by the
//! refund's id) puts a return's items back on hand, refunds the amount
//! through payments by the refund's id, then records it: `refunded_total`
//! grows, and reaching `total` makes the order `refunded`. The rest that a
//! cancellation or full refund gives back is a refund too, keyed by the
//! order's id and paid by the unwind saga.

use crate::domain::{Order, OrderStatus};
use crate::store::{IdempotencyRecord, OrdersStore, SagaKind, SagaState};
use chrono::{DateTime, Utc};
use mercato_contracts::events::{OrderPartiallyRefunded, OrderRefunded, ReturnRequested};
use mercato_contracts::types::SkuQuantity;
use mercato_kernel::db::Tx;
use mercato_kernel::{time, Currency, Envelope, Money};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    /// Asked for; the items are on their way back.
    Requested,
    /// Received: the items are being restocked and the money refunded.
    Receiving,
    /// Received, restocked and refunded.
    Refunded,
    /// Refused by the shop.
    Rejected,
}

impl ReturnStatus {
    fn as_str(self) -> &'static str {
        match self {
            ReturnStatus::Requested => "requested",
            ReturnStatus::Receiving => "receiving",
            ReturnStatus::Refunded => "refunded",
            ReturnStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "requested" => ReturnStatus::Requested,
            "receiving" => ReturnStatus::Receiving,
            "refunded" => ReturnStatus::Refunded,
            "rejected" => ReturnStatus::Rejected,
            other => anyhow::bail!("unknown return status {other:?}"),
        })
    }
}

/// Units of one SKU of the order sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReturnItem {
    /// A SKU the order bought.
    #[schema(min_length = 1, max_length = 64, example = "TEE-RED-M")]
    pub sku: String,
    /// 1 to 999, at most what was bought less what other returns (not
    /// rejected) take back.
    #[schema(minimum = 1, maximum = 999, example = 1)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub quantity: i64,
}

/// A return as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Return {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub status: ReturnStatus,
    pub items: Vec<ReturnItem>,
    pub reason: String,
    /// The items' share of the order (discount and tax included) that
    /// receiving refunds; once received, what was refunded (less when the
    /// order had less left to refund).
    pub refund_amount: Money,
    /// Why the shop refused it, once `rejected`.
    pub rejection_reason: Option<String>,
    /// Where the items went back on hand, once received; null for where
    /// they were taken from.
    pub warehouse: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the lines' share of an order is worth: the goods' part of the
/// total (subtotal less discount, plus tax; shipping stays), shared by the
/// value of the units. Taken as the difference of two cumulative shares, so
/// returns of every unit add up to that part exactly, whatever the rounding.
pub fn share_of(
    order: &Order,
    before: &BTreeMap<String, i64>,
    items: &[ReturnItem],
) -> anyhow::Result<Money> {
    let currency = order.currency.clone();
    let goods = order
        .subtotal
        .checked_sub(&order.discount_total)
        .and_then(|m| m.checked_add(&order.tax_total))?;
    let value = |units: &BTreeMap<String, i64>| -> i64 {
        order
            .items
            .iter()
            .map(|l| l.unit_price.amount * units.get(&l.sku).copied().unwrap_or(0))
            .sum()
    };
    if order.subtotal.amount <= 0 {
        return Ok(Money::zero(currency));
    }
    let mut after = before.clone();
    for item in items {
        *after.entry(item.sku.clone()).or_default() += item.quantity;
    }
    let upto = |units| goods.scaled(value(units), order.subtotal.amount);
    Ok(upto(&after)?.checked_sub(&upto(before)?)?)
}

/// Units of each SKU of `items`, summed.
pub fn units(items: &[ReturnItem]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for i in items {
        *out.entry(i.sku.clone()).or_default() += i.quantity;
    }
    out
}

/// Why a return could not be stored.
#[derive(Debug)]
pub enum NewReturn {
    Created(Return),
    /// The order is not `delivered` (any more).
    NotDelivered,
    /// A SKU the order did not buy, or more of it than is left to return.
    TooMany {
        sku: String,
        left: i64,
    },
}

/// How a refund is started.
pub enum RefundKind<'a> {
    /// An amount of the order's money, nothing restocked.
    Amount {
        amount: &'a Money,
        reason: Option<&'a str>,
    },
    /// A return's share, its items restocked (into `warehouse`, or where
    /// they were taken from).
    Return {
        id: Uuid,
        warehouse: Option<&'a str>,
    },
}

/// What starting a refund came to.
#[derive(Debug)]
pub enum RefundStart {
    /// Claimed and stored; its saga runs.
    Started,
    /// Another request with the same key came first.
    KeyTaken,
    /// The order is not in a status that takes this refund.
    WrongStatus,
    /// More than is left to refund.
    TooMuch { left: Money },
    /// The return is not `requested` (any more).
    ReturnNotRequested,
}

/// A refund as its saga reads it.
#[derive(Debug, Clone)]
pub struct Refund {
    pub id: Uuid,
    pub order_id: Uuid,
    pub amount: Money,
    pub return_id: Option<Uuid>,
}

type ReturnRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
);

const RETURN_COLUMNS: &str = "id, order_id, customer_id, status, items, reason, refund_amount, currency, rejection_reason, warehouse, created_at, updated_at";

fn return_from_row(r: ReturnRow) -> anyhow::Result<Return> {
    Ok(Return {
        id: Uuid::parse_str(&r.0)?,
        order_id: Uuid::parse_str(&r.1)?,
        customer_id: Uuid::parse_str(&r.2)?,
        status: ReturnStatus::parse(&r.3)?,
        items: serde_json::from_str(&r.4)?,
        reason: r.5,
        refund_amount: Money::new(r.6, Currency::parse(&r.7)?),
        rejection_reason: r.8,
        warehouse: r.9,
        created_at: time::from_db(&r.10)?,
        updated_at: time::from_db(&r.11)?,
    })
}

/// Takes the order's row for the rest of the transaction (on PostgreSQL
/// the next statements see every change committed before), if its status
/// is one of `statuses`. `(total, claimed)`, or `None`.
async fn lock_order(
    tx: &mut Tx,
    order_id: Uuid,
    statuses: &[OrderStatus],
) -> anyhow::Result<Option<(i64, i64)>> {
    sqlx::query("UPDATE orders SET updated_at = updated_at WHERE id = $1")
        .bind(order_id.to_string())
        .execute(tx.conn())
        .await?;
    let row: Option<(i64, i64, String)> =
        sqlx::query_as("SELECT total_amount, refund_claimed, status FROM orders WHERE id = $1")
            .bind(order_id.to_string())
            .fetch_optional(tx.conn())
            .await?;
    Ok(row.and_then(|(total, claimed, status)| {
        OrderStatus::parse(&status)
            .filter(|s| statuses.contains(s))
            .map(|_| (total, claimed))
    }))
}

impl OrdersStore {
    /// Stores a return of a delivered order, unless it asks for more than
    /// is left to return; with `return.requested`, in one transaction.
    pub async fn create_return(
        &self,
        order: &Order,
        id: Uuid,
        items: &[ReturnItem],
        reason: &str,
    ) -> anyhow::Result<NewReturn> {
        let mut tx = self.db().begin().await?;
        if lock_order(&mut tx, order.id, &[OrderStatus::Delivered])
            .await?
            .is_none()
        {
            return Ok(NewReturn::NotDelivered);
        }
        let earlier: Vec<(String,)> = sqlx::query_as(
            "SELECT items FROM returns WHERE order_id = $1 AND status <> 'rejected'",
        )
        .bind(order.id.to_string())
        .fetch_all(tx.conn())
        .await?;
        let mut before: BTreeMap<String, i64> = BTreeMap::new();
        for (json,) in earlier {
            let items: Vec<ReturnItem> = serde_json::from_str(&json)?;
            for (sku, n) in units(&items) {
                *before.entry(sku).or_default() += n;
            }
        }
        for (sku, n) in units(items) {
            let bought: i64 = order
                .items
                .iter()
                .filter(|l| l.sku == sku)
                .map(|l| l.quantity)
                .sum();
            let left = bought - before.get(&sku).copied().unwrap_or(0);
            if n > left {
                return Ok(NewReturn::TooMany { sku, left });
            }
        }
        let now = time::now();
        let ret = Return {
            id,
            order_id: order.id,
            customer_id: order.customer_id,
            status: ReturnStatus::Requested,
            items: items.to_vec(),
            reason: reason.to_owned(),
            refund_amount: share_of(order, &before, items)?,
            rejection_reason: None,
            warehouse: None,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(&format!(
            "INSERT INTO returns ({RETURN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(ret.id.to_string())
        .bind(ret.order_id.to_string())
        .bind(ret.customer_id.to_string())
        .bind(ret.status.as_str())
        .bind(serde_json::to_string(&ret.items)?)
        .bind(&ret.reason)
        .bind(ret.refund_amount.amount)
        .bind(ret.refund_amount.currency.as_str())
        .bind(ret.rejection_reason.as_deref())
        .bind(ret.warehouse.as_deref())
        .bind(time::to_db(&now))
        .bind(time::to_db(&now))
        .execute(tx.conn())
        .await?;
        let event = Envelope::new(
            crate::NAME,
            order.id.to_string(),
            &ReturnRequested {
                return_id: ret.id,
                order_id: order.id,
                customer_id: order.customer_id,
                items: ret
                    .items
                    .iter()
                    .map(|i| SkuQuantity {
                        sku: i.sku.clone(),
                        quantity: i.quantity,
                    })
                    .collect(),
            },
        )?;
        self.outbox().add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(NewReturn::Created(ret))
    }

    pub async fn return_by_id(&self, id: Uuid) -> anyhow::Result<Option<Return>> {
        let row: Option<ReturnRow> = sqlx::query_as(&format!(
            "SELECT {RETURN_COLUMNS} FROM returns WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db().pool())
        .await?;
        row.map(return_from_row).transpose()
    }

    /// The order's returns, oldest first.
    pub async fn returns_of(&self, order_id: Uuid) -> anyhow::Result<Vec<Return>> {
        let rows: Vec<ReturnRow> = sqlx::query_as(&format!(
            "SELECT {RETURN_COLUMNS} FROM returns WHERE order_id = $1 ORDER BY id"
        ))
        .bind(order_id.to_string())
        .fetch_all(self.db().pool())
        .await?;
        rows.into_iter().map(return_from_row).collect()
    }

    /// `requested` → `rejected`; `false` when it was not `requested`.
    pub async fn reject_return(&self, id: Uuid, reason: &str) -> anyhow::Result<bool> {
        let query = sqlx::query(
            "UPDATE returns SET status = 'rejected', rejection_reason = $1, updated_at = $2
             WHERE id = $3 AND status = 'requested'",
        )
        .bind(reason)
        .bind(time::to_db(&time::now()))
        .bind(id.to_string());
        Ok(self.db().execute(query).await?.rows_affected() == 1)
    }

    /// Claims a refund's amount from the order and stores the refund, its
    /// saga and the key's record, in one transaction.
    pub async fn start_refund(
        &self,
        order_id: Uuid,
        refund_id: Uuid,
        kind: RefundKind<'_>,
        idem: &IdempotencyRecord<'_>,
    ) -> anyhow::Result<RefundStart> {
        let mut tx = self.db().begin().await?;
        if !idem.record_in(&mut tx).await? {
            return Ok(RefundStart::KeyTaken);
        }
        let statuses: &[OrderStatus] = match kind {
            RefundKind::Amount { .. } => &[
                OrderStatus::Confirmed,
                OrderStatus::Shipped,
                OrderStatus::Delivered,
            ],
            // A return of an order refunded in full meanwhile is still
            // received: its items go back, with nothing left to refund.
            RefundKind::Return { .. } => &[OrderStatus::Delivered, OrderStatus::Refunded],
        };
        let Some((total, claimed)) = lock_order(&mut tx, order_id, statuses).await? else {
            return Ok(RefundStart::WrongStatus);
        };
        let left = total - claimed;
        let now = time::to_db(&time::now());
        let (amount, reason, return_id, first_step) = match kind {
            RefundKind::Amount { amount, reason } => {
                if amount.amount > left {
                    return Ok(RefundStart::TooMuch {
                        left: Money::new(left, amount.currency.clone()),
                    });
                }
                (
                    amount.amount,
                    reason.map(str::to_owned),
                    None,
                    "refund_amount",
                )
            }
            RefundKind::Return { id, warehouse } => {
                let share: Option<(i64,)> = sqlx::query_as(
                    "SELECT refund_amount FROM returns WHERE id = $1 AND order_id = $2 AND status = 'requested'",
                )
                .bind(id.to_string())
                .bind(order_id.to_string())
                .fetch_optional(tx.conn())
                .await?;
                let Some((share,)) = share else {
                    return Ok(RefundStart::ReturnNotRequested);
                };
                let amount = share.min(left);
                // Conditional: a rejection committed since the read above
                // (PostgreSQL) wins.
                let moved = sqlx::query(
                    "UPDATE returns SET status = 'receiving', refund_amount = $1, warehouse = $2, updated_at = $3
                     WHERE id = $4 AND status = 'requested'",
                )
                .bind(amount)
                .bind(warehouse)
                .bind(&now)
                .bind(id.to_string())
                .execute(tx.conn())
                .await?;
                if moved.rows_affected() == 0 {
                    return Ok(RefundStart::ReturnNotRequested);
                }
                (amount, Some("return".to_owned()), Some(id), "restock_items")
            }
        };
        sqlx::query("UPDATE orders SET refund_claimed = refund_claimed + $1 WHERE id = $2")
            .bind(amount)
            .bind(order_id.to_string())
            .execute(tx.conn())
            .await?;
        insert_refund(
            &mut tx,
            refund_id,
            order_id,
            amount,
            reason.as_deref(),
            return_id,
            &now,
        )
        .await?;
        Self::insert_saga(
            &mut tx,
            refund_id,
            SagaKind::Refund,
            first_step,
            &time::now(),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(RefundStart::Started)
    }

    /// In a cancellation's or full refund's transaction (the order's row
    /// taken by its status change): claims what is left of the total as a
    /// refund keyed by the order's id, which the unwind saga pays.
    pub(crate) async fn claim_rest(
        tx: &mut Tx,
        order_id: Uuid,
        to: OrderStatus,
        at: &DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let (left,): (i64,) =
            sqlx::query_as("SELECT total_amount - refund_claimed FROM orders WHERE id = $1")
                .bind(order_id.to_string())
                .fetch_one(tx.conn())
                .await?;
        sqlx::query("UPDATE orders SET refund_claimed = total_amount WHERE id = $1")
            .bind(order_id.to_string())
            .execute(tx.conn())
            .await?;
        insert_refund(
            tx,
            order_id,
            order_id,
            left,
            Some(to.as_str()),
            None,
            &time::to_db(at),
        )
        .await
    }

    pub async fn refund(&self, id: Uuid) -> anyhow::Result<Option<Refund>> {
        let row: Option<(String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT r.order_id, r.amount, o.currency, r.return_id FROM refunds r
             JOIN orders o ON o.id = r.order_id WHERE r.id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.db().pool())
        .await?;
        row.map(|(order_id, amount, currency, return_id)| {
            Ok(Refund {
                id,
                order_id: Uuid::parse_str(&order_id)?,
                amount: Money::new(amount, Currency::parse(&currency)?),
                return_id: return_id.as_deref().map(Uuid::parse_str).transpose()?,
            })
        })
        .transpose()
    }

    /// Every refund of the order, the unwind's rest included, with whether it is done.
    pub async fn refunds_of(&self, order_id: Uuid) -> anyhow::Result<Vec<(Money, bool)>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT r.amount, o.currency, r.status FROM refunds r JOIN orders o ON o.id = r.order_id
             WHERE r.order_id = $1 ORDER BY r.created_at, r.id",
        )
        .bind(order_id.to_string())
        .fetch_all(self.db().pool())
        .await?;
        rows.into_iter()
            .map(|(amount, currency, status)| {
                Ok((
                    Money::new(amount, Currency::parse(&currency)?),
                    status == "done",
                ))
            })
            .collect()
    }

    /// Records a refund the saga has paid: `refunded_total` grows (the
    /// payment is `refunded` once it reaches the total), a return is
    /// `refunded`, and the saga moves from `from` to `next`, in one
    /// transaction. A refund recorded before changes nothing but the saga.
    /// For a refund saga, an order that has now had all of its money back
    /// becomes `refunded`.
    pub async fn record_refund(
        &self,
        refund: &Refund,
        saga_id: Uuid,
        from: (SagaState, &str),
        next: (SagaState, &str),
    ) -> anyhow::Result<bool> {
        let mut tx = self.db().begin().await?;
        if !Self::advance_saga_in(&mut tx, saga_id, from, next).await? {
            return Ok(false);
        }
        let now = time::now();
        let at = time::to_db(&now);
        let newly = sqlx::query(
            "UPDATE refunds SET status = 'done', updated_at = $1 WHERE id = $2 AND status = 'pending'",
        )
        .bind(&at)
        .bind(refund.id.to_string())
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        let mut changed = false;
        if newly {
            sqlx::query(
                "UPDATE orders SET refunded_amount = refunded_amount + $1, updated_at = $2,
                    payment_status = CASE WHEN refunded_amount + $1 >= total_amount AND payment_status = 'captured'
                        THEN 'refunded' ELSE payment_status END
                 WHERE id = $3",
            )
            .bind(refund.amount.amount)
            .bind(&at)
            .bind(refund.order_id.to_string())
            .execute(tx.conn())
            .await?;
            if let Some(return_id) = refund.return_id {
                sqlx::query(
                    "UPDATE returns SET status = 'refunded', updated_at = $1 WHERE id = $2",
                )
                .bind(&at)
                .bind(return_id.to_string())
                .execute(tx.conn())
                .await?;
            }
            // A refund of its own (not an unwind's rest) may be the one
            // that gives the whole total back.
            if refund.id != refund.order_id {
                let (total, refunded, customer_id): (i64, i64, String) = sqlx::query_as(
                    "SELECT total_amount, refunded_amount, customer_id FROM orders WHERE id = $1",
                )
                .bind(refund.order_id.to_string())
                .fetch_one(tx.conn())
                .await?;
                let customer_id = Uuid::parse_str(&customer_id)?;
                let currency = refund.amount.currency.clone();
                let whole = refunded >= total;
                if whole {
                    changed = Self::set_status_in(
                        &mut tx,
                        refund.order_id,
                        &[
                            OrderStatus::Confirmed,
                            OrderStatus::Shipped,
                            OrderStatus::Delivered,
                        ],
                        OrderStatus::Refunded,
                        &now,
                    )
                    .await?;
                }
                let event = if changed {
                    Envelope::new(
                        crate::NAME,
                        refund.order_id.to_string(),
                        &OrderRefunded {
                            order_id: refund.order_id,
                            customer_id,
                            amount: refund.amount.clone(),
                        },
                    )?
                } else {
                    Envelope::new(
                        crate::NAME,
                        refund.order_id.to_string(),
                        &OrderPartiallyRefunded {
                            order_id: refund.order_id,
                            customer_id,
                            refund_id: refund.id,
                            amount: refund.amount.clone(),
                            refunded_total: Money::new(refunded, currency),
                            return_id: refund.return_id,
                        },
                    )?
                };
                self.outbox().add(&mut tx, &[event]).await?;
            }
        }
        tx.commit().await?;
        self.watch().changed(refund.order_id);
        Ok(true)
    }
}

async fn insert_refund(
    tx: &mut Tx,
    id: Uuid,
    order_id: Uuid,
    amount: i64,
    reason: Option<&str>,
    return_id: Option<Uuid>,
    at: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO refunds (id, order_id, amount, reason, return_id, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
    )
    .bind(id.to_string())
    .bind(order_id.to_string())
    .bind(amount)
    .bind(reason)
    .bind(return_id.map(|r| r.to_string()))
    .bind(at)
    .execute(tx.conn())
    .await?;
    Ok(())
}
