//! Payment intents and the ledger.

use mercato_contracts::events::{PaymentCaptured, PaymentFailed, PaymentRefunded};
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{id, time, Currency, Envelope, Money};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One order's payment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Intent {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Money,
    /// `pending`, `captured`, `declined`, `failed`, `voided` or `refunded`
    /// (all of it; a captured intent may be refunded in part).
    pub status: String,
    /// What was refunded of `amount` so far.
    pub refunded: Money,
    pub provider_charge_id: Option<String>,
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: Uuid,
    /// `capture` or `refund`.
    pub kind: String,
    /// Positive for captures, negative for refunds.
    pub amount: Money,
    pub provider_ref: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A status change of an intent, with what it records.
struct Change<'a> {
    from: &'a str,
    to: &'a str,
    charge_id: Option<&'a str>,
    reason: Option<&'a str>,
    /// A ledger entry: kind, signed amount, provider reference.
    ledger: Option<(&'a str, i64, &'a str)>,
}

#[derive(Clone)]
pub struct PaymentsStore {
    db: Db,
    outbox: Outbox,
}

type IntentRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
);

fn intent_from_row(r: IntentRow) -> anyhow::Result<Intent> {
    let currency = Currency::parse(&r.4)?;
    Ok(Intent {
        id: Uuid::parse_str(&r.0)?,
        order_id: Uuid::parse_str(&r.1)?,
        customer_id: Uuid::parse_str(&r.2)?,
        amount: Money::new(r.3, currency.clone()),
        status: r.5,
        provider_charge_id: r.6,
        failure_reason: r.7,
        refunded: Money::new(r.8, currency),
    })
}

const INTENT_COLUMNS: &str =
    "id, order_id, customer_id, amount, currency, status, provider_charge_id, failure_reason, refunded_amount";

impl PaymentsStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The order's intent, created `pending` on first use.
    pub async fn ensure_intent(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        amount: &Money,
    ) -> anyhow::Result<Intent> {
        if let Some(i) = self.by_order(order_id).await? {
            return Ok(i);
        }
        let now = time::to_db(&time::now());
        let query = sqlx::query(
            "INSERT INTO payment_intents (id, order_id, customer_id, amount, currency, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(id::new_id().to_string())
        .bind(order_id.to_string())
        .bind(customer_id.to_string())
        .bind(amount.amount)
        .bind(amount.currency.as_str())
        .bind(&now);
        self.db.execute(query).await?;
        self.by_order(order_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("payment intent for order {order_id} vanished"))
    }

    pub async fn by_order(&self, order_id: Uuid) -> anyhow::Result<Option<Intent>> {
        let row: Option<IntentRow> = sqlx::query_as(&format!(
            "SELECT {INTENT_COLUMNS} FROM payment_intents WHERE order_id = $1"
        ))
        .bind(order_id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(intent_from_row).transpose()
    }

    /// Moves an intent from one status to another, with its ledger entry and
    /// event, in one transaction. `false` when it was no longer in `from`.
    async fn transition(
        &self,
        intent: &Intent,
        change: Change<'_>,
        event: Envelope,
    ) -> anyhow::Result<bool> {
        let Change {
            from,
            to,
            charge_id,
            reason,
            ledger,
        } = change;
        let mut tx = self.db.begin().await?;
        let now = time::to_db(&time::now());
        let done = sqlx::query(
            "UPDATE payment_intents SET status = $1, provider_charge_id = COALESCE($2, provider_charge_id),
                failure_reason = COALESCE($3, failure_reason), updated_at = $4
             WHERE id = $5 AND status = $6",
        )
        .bind(to)
        .bind(charge_id)
        .bind(reason)
        .bind(&now)
        .bind(intent.id.to_string())
        .bind(from)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some((kind, amount, provider_ref)) = ledger {
            sqlx::query(
                "INSERT INTO ledger_entries (id, intent_id, kind, amount, currency, provider_ref, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id::new_id().to_string())
            .bind(intent.id.to_string())
            .bind(kind)
            .bind(amount)
            .bind(intent.amount.currency.as_str())
            .bind(provider_ref)
            .bind(&now)
            .execute(tx.conn())
            .await?;
        }
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn mark_captured(&self, intent: &Intent, charge_id: &str) -> anyhow::Result<bool> {
        let event = Envelope::new(
            crate::NAME,
            intent.order_id.to_string(),
            &PaymentCaptured {
                payment_id: intent.id,
                order_id: intent.order_id,
                amount: intent.amount.clone(),
            },
        )?;
        self.transition(
            intent,
            Change {
                from: "pending",
                to: "captured",
                charge_id: Some(charge_id),
                reason: None,
                ledger: Some(("capture", intent.amount.amount, charge_id)),
            },
            event,
        )
        .await
    }

    /// `declined` by the card network, or `failed` for anything else.
    pub async fn mark_failed(
        &self,
        intent: &Intent,
        status: &str,
        reason: &str,
    ) -> anyhow::Result<bool> {
        let event = Envelope::new(
            crate::NAME,
            intent.order_id.to_string(),
            &PaymentFailed {
                payment_id: intent.id,
                order_id: intent.order_id,
                reason: reason.to_owned(),
            },
        )?;
        self.transition(
            intent,
            Change {
                from: "pending",
                to: status,
                charge_id: None,
                reason: Some(reason),
                ledger: None,
            },
            event,
        )
        .await
    }

    /// A pending intent whose charge was voided at the provider: nothing was taken.
    pub async fn mark_voided(&self, intent: &Intent) -> anyhow::Result<bool> {
        self.mark_failed(intent, "voided", "voided").await
    }

    /// Whether the ledger holds the refund with this provider reference.
    pub async fn has_refund(&self, intent_id: Uuid, refund_ref: &str) -> anyhow::Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT amount FROM ledger_entries WHERE intent_id = $1 AND provider_ref = $2 AND kind = 'refund'",
        )
        .bind(intent_id.to_string())
        .bind(refund_ref)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Records a refund the provider made: the ledger entry, the intent's
    /// refunded amount (`refunded` once it is all of it) and
    /// `payment.refunded`, in one transaction. `false` when it would pass
    /// what was captured (nothing is written); a refund recorded already by
    /// its reference fails on the ledger's unique rule.
    pub async fn record_refund(
        &self,
        intent: &Intent,
        refund_ref: &str,
        amount: &Money,
    ) -> anyhow::Result<bool> {
        let event = Envelope::new(
            crate::NAME,
            intent.order_id.to_string(),
            &PaymentRefunded {
                payment_id: intent.id,
                order_id: intent.order_id,
                amount: amount.clone(),
            },
        )?;
        let mut tx = self.db.begin().await?;
        let now = time::to_db(&time::now());
        let done = sqlx::query(
            "UPDATE payment_intents SET refunded_amount = refunded_amount + $1,
                status = CASE WHEN refunded_amount + $1 = amount THEN 'refunded' ELSE status END,
                updated_at = $2
             WHERE id = $3 AND status = 'captured' AND refunded_amount + $1 <= amount",
        )
        .bind(amount.amount)
        .bind(&now)
        .bind(intent.id.to_string())
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO ledger_entries (id, intent_id, kind, amount, currency, provider_ref, created_at)
             VALUES ($1, $2, 'refund', $3, $4, $5, $6)",
        )
        .bind(id::new_id().to_string())
        .bind(intent.id.to_string())
        .bind(-amount.amount)
        .bind(intent.amount.currency.as_str())
        .bind(refund_ref)
        .bind(&now)
        .execute(tx.conn())
        .await?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn ledger(&self, intent_id: Uuid) -> anyhow::Result<Vec<LedgerEntry>> {
        let rows: Vec<(String, String, i64, String, String, String)> = sqlx::query_as(
            "SELECT id, kind, amount, currency, provider_ref, created_at FROM ledger_entries WHERE intent_id = $1 ORDER BY created_at, id",
        )
        .bind(intent_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(id, kind, amount, currency, provider_ref, created_at)| {
                Ok(LedgerEntry {
                    id: Uuid::parse_str(&id)?,
                    kind,
                    amount: Money::new(amount, Currency::parse(&currency)?),
                    provider_ref,
                    created_at: time::from_db(&created_at)?,
                })
            })
            .collect()
    }
}
