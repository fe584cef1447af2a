//! Promotions with their uses and redemptions, shipping methods, tax rates.

use crate::domain::{code_key, Promotion, PromotionKind, PromotionRules, ShippingMethod, TaxRate};
use chrono::{DateTime, Utc};
use mercato_contracts::events::{PromotionRedeemed, PromotionReleased};
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, Envelope, Money};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone)]
pub struct PricingStore {
    db: Db,
    outbox: Outbox,
}

/// What a redemption request came to, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    Redeemed,
    /// The code had run out (or was disabled or expired) when the order
    /// asked.
    Refused,
    /// Given back, or released before a redemption arrived.
    Released,
}

impl Redemption {
    fn parse(s: &str) -> Self {
        match s {
            "redeemed" => Redemption::Redeemed,
            "refused" => Redemption::Refused,
            _ => Redemption::Released,
        }
    }
}

/// Why a promotion could not be stored.
#[derive(Debug)]
pub enum SaveError {
    /// Another promotion has the code.
    CodeTaken,
    Other(anyhow::Error),
}

impl From<sqlx::Error> for SaveError {
    fn from(e: sqlx::Error) -> Self {
        if mercato_kernel::error::is_unique_violation(&e) {
            SaveError::CodeTaken
        } else {
            SaveError::Other(e.into())
        }
    }
}

impl From<anyhow::Error> for SaveError {
    fn from(e: anyhow::Error) -> Self {
        SaveError::Other(e)
    }
}

impl From<serde_json::Error> for SaveError {
    fn from(e: serde_json::Error) -> Self {
        SaveError::Other(e.into())
    }
}

/// The rules kept as JSON beside the columns the redemption checks.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRules {
    kind: PromotionKind,
    value: Option<i64>,
    amount: Option<Money>,
    #[serde(default)]
    amounts: Vec<Money>,
    min_subtotal: Option<Money>,
    #[serde(default)]
    categories: Vec<String>,
    description: String,
}

impl StoredRules {
    fn of(rules: &PromotionRules) -> Self {
        Self {
            kind: rules.kind,
            value: rules.value,
            amount: rules.amount.clone(),
            amounts: rules.amounts.clone(),
            min_subtotal: rules.min_subtotal.clone(),
            categories: categories(&rules.categories),
            description: rules.description_or_default(),
        }
    }
}

/// The shipping method's price rules, kept as JSON.
#[derive(Debug, Serialize, Deserialize)]
struct StoredShipping {
    price: Money,
    #[serde(default)]
    prices: Vec<Money>,
    #[serde(default)]
    countries: Vec<String>,
    free_over: Option<Money>,
}

const PROMOTION_COLUMNS: &str = "id, code, rules, starts_at, ends_at, usage_limit, per_customer_limit, times_used, active, created_at, updated_at";

type PromotionRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    String,
    String,
);

fn promotion_from_row(r: PromotionRow) -> anyhow::Result<Promotion> {
    let rules: StoredRules = serde_json::from_str(&r.2)?;
    let at = |v: Option<String>| v.as_deref().map(time::from_db).transpose();
    Ok(Promotion {
        id: Uuid::parse_str(&r.0)?,
        code: r.1,
        kind: rules.kind,
        value: rules.value,
        amount: rules.amount,
        amounts: rules.amounts,
        min_subtotal: rules.min_subtotal,
        starts_at: at(r.3)?,
        ends_at: at(r.4)?,
        usage_limit: r.5,
        per_customer_limit: r.6,
        categories: rules.categories,
        description: rules.description,
        times_used: r.7,
        active: r.8 != 0,
        created_at: time::from_db(&r.9)?,
        updated_at: time::from_db(&r.10)?,
    })
}

type ShippingRow = (String, String, String, String);

fn shipping_from_row(r: ShippingRow) -> anyhow::Result<ShippingMethod> {
    let rules: StoredShipping = serde_json::from_str(&r.2)?;
    Ok(ShippingMethod {
        id: Uuid::parse_str(&r.0)?,
        name: r.1,
        price: rules.price,
        prices: rules.prices,
        countries: rules.countries,
        free_over: rules.free_over,
        created_at: time::from_db(&r.3)?,
    })
}

/// The categories a promotion is limited to: trimmed, empty ones dropped.
fn categories(raw: &[String]) -> Vec<String> {
    raw.iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

fn db_time(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(time::to_db)
}

impl PricingStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    // --- promotions --------------------------------------------------------

    pub async fn create_promotion(&self, rules: &PromotionRules) -> Result<Promotion, SaveError> {
        let id = id::new_id();
        let now = time::to_db(&time::now());
        let stored = StoredRules::of(rules);
        let query = sqlx::query(
            "INSERT INTO promotions (id, code, code_key, rules, starts_at, ends_at, usage_limit, per_customer_limit, times_used, active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $10)",
        )
        .bind(id.to_string())
        .bind(&rules.code)
        .bind(code_key(&rules.code))
        .bind(serde_json::to_string(&stored)?)
        .bind(db_time(&rules.starts_at))
        .bind(db_time(&rules.ends_at))
        .bind(rules.usage_limit)
        .bind(rules.per_customer_limit)
        .bind(i64::from(rules.active))
        .bind(&now);
        self.db.execute(query).await?;
        self.promotion(id)
            .await?
            .ok_or_else(|| SaveError::Other(anyhow::anyhow!("promotion {id} vanished")))
    }

    /// Replaces a promotion's rules (not its uses). `None` when there is no
    /// such promotion.
    pub async fn update_promotion(
        &self,
        id: Uuid,
        rules: &PromotionRules,
    ) -> Result<Option<Promotion>, SaveError> {
        let stored = StoredRules::of(rules);
        let query = sqlx::query(
            "UPDATE promotions SET code = $2, code_key = $3, rules = $4, starts_at = $5, ends_at = $6,
                usage_limit = $7, per_customer_limit = $8, active = $9, updated_at = $10
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(&rules.code)
        .bind(code_key(&rules.code))
        .bind(serde_json::to_string(&stored)?)
        .bind(db_time(&rules.starts_at))
        .bind(db_time(&rules.ends_at))
        .bind(rules.usage_limit)
        .bind(rules.per_customer_limit)
        .bind(i64::from(rules.active))
        .bind(time::to_db(&time::now()));
        if self.db.execute(query).await?.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(self.promotion(id).await?)
    }

    pub async fn promotion(&self, id: Uuid) -> anyhow::Result<Option<Promotion>> {
        let row: Option<PromotionRow> = sqlx::query_as(&format!(
            "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(promotion_from_row).transpose()
    }

    pub async fn promotion_by_code(&self, code: &str) -> anyhow::Result<Option<Promotion>> {
        let row: Option<PromotionRow> = sqlx::query_as(&format!(
            "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE code_key = $1"
        ))
        .bind(code_key(code))
        .fetch_optional(self.db.pool())
        .await?;
        row.map(promotion_from_row).transpose()
    }

    /// Orders of `customer_id` that hold a redemption of the promotion.
    pub async fn customer_uses(
        &self,
        promotion_id: Uuid,
        customer_id: Uuid,
    ) -> anyhow::Result<i64> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT uses FROM promotion_uses WHERE promotion_id = $1 AND customer_id = $2",
        )
        .bind(promotion_id.to_string())
        .bind(customer_id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map_or(0, |(n,)| n))
    }

    /// Newest first.
    pub async fn promotions(&self, page: &PageRequest) -> anyhow::Result<Page<Promotion>> {
        let limit = i64::from(page.limit) + 1;
        let rows: Vec<PromotionRow> = match &page.after {
            Some(after) => {
                sqlx::query_as(&format!(
                    "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE id < $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(self.db.pool())
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT {PROMOTION_COLUMNS} FROM promotions ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(self.db.pool())
                .await?
            }
        };
        let items = rows
            .into_iter()
            .map(promotion_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page.limit, |p| p.id.to_string()))
    }

    /// Redeems one use of a promotion for an order, never past its limits:
    /// the order's row is claimed first (so that two runs for one order
    /// cannot both count), then `times_used` and the customer's uses grow
    /// only where they are under their limits, all in one transaction. A
    /// refusal is recorded too. Repeating it returns what the order's row
    /// says.
    pub async fn redeem(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        promotion_id: Uuid,
    ) -> anyhow::Result<Redemption> {
        let order = order_id.to_string();
        let promotion = promotion_id.to_string();
        let customer = customer_id.to_string();
        let now = time::now();
        let at = time::to_db(&now);
        let mut tx = self.db.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO redemptions (order_id, promotion_id, customer_id, status, created_at, updated_at)
             VALUES ($1, $2, $3, 'redeemed', $4, $4) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(&order)
        .bind(&promotion)
        .bind(&customer)
        .bind(&at)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            tx.rollback().await;
            return self.redemption(order_id).await;
        }
        let counted = sqlx::query(
            "UPDATE promotions SET times_used = times_used + 1
             WHERE id = $1 AND active = 1
               AND (usage_limit IS NULL OR times_used < usage_limit)
               AND (starts_at IS NULL OR starts_at <= $2)
               AND (ends_at IS NULL OR ends_at > $2)",
        )
        .bind(&promotion)
        .bind(&at)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        // The customer's uses grow only under the limit the promotion has now.
        let counted = counted
            && sqlx::query(
                "INSERT INTO promotion_uses (promotion_id, customer_id, uses) VALUES ($1, $2, 1)
                 ON CONFLICT (promotion_id, customer_id) DO UPDATE SET uses = promotion_uses.uses + 1
                 WHERE promotion_uses.uses < COALESCE((SELECT per_customer_limit FROM promotions WHERE id = $1), promotion_uses.uses + 1)",
            )
            .bind(&promotion)
            .bind(&customer)
            .execute(tx.conn())
            .await?
            .rows_affected()
                == 1;
        if !counted {
            // Nothing counted: undo the claim with the rest, record the refusal.
            tx.rollback().await;
            let query = sqlx::query(
                "INSERT INTO redemptions (order_id, promotion_id, customer_id, status, created_at, updated_at)
                 VALUES ($1, $2, $3, 'refused', $4, $4) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(&order)
            .bind(&promotion)
            .bind(&customer)
            .bind(&at);
            self.db.execute(query).await?;
            return self.redemption(order_id).await;
        }
        let (code, times_used): (String, i64) =
            sqlx::query_as("SELECT code, times_used FROM promotions WHERE id = $1")
                .bind(&promotion)
                .fetch_one(tx.conn())
                .await?;
        let event = Envelope::new(
            crate::NAME,
            promotion.clone(),
            &PromotionRedeemed {
                promotion_id,
                code,
                order_id,
                customer_id,
                times_used,
            },
        )?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        metrics::counter!("mercato_promotions_redeemed_total").increment(1);
        Ok(Redemption::Redeemed)
    }

    /// What the order's redemption came to; [`Redemption::Released`] when
    /// it has no row (the row is written in the same transaction as the
    /// outcome, so a missing one means none).
    pub async fn redemption(&self, order_id: Uuid) -> anyhow::Result<Redemption> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT status FROM redemptions WHERE order_id = $1")
                .bind(order_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map_or(Redemption::Released, |(s,)| Redemption::parse(&s)))
    }

    /// Gives an order's use back, once; an order without a redemption gets
    /// a `released` row, so that its redemption, should it still arrive,
    /// is refused. `true` when a use was given back now.
    pub async fn release(&self, order_id: Uuid) -> anyhow::Result<bool> {
        let order = order_id.to_string();
        let at = time::to_db(&time::now());
        let mut tx = self.db.begin().await?;
        let released = sqlx::query(
            "UPDATE redemptions SET status = 'released', updated_at = $2
             WHERE order_id = $1 AND status = 'redeemed'",
        )
        .bind(&order)
        .bind(&at)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if !released {
            sqlx::query(
                "INSERT INTO redemptions (order_id, status, created_at, updated_at)
                 VALUES ($1, 'released', $2, $2) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(&order)
            .bind(&at)
            .execute(tx.conn())
            .await?;
            tx.commit().await?;
            return Ok(false);
        }
        let (promotion, customer): (String, String) =
            sqlx::query_as("SELECT promotion_id, customer_id FROM redemptions WHERE order_id = $1")
                .bind(&order)
                .fetch_one(tx.conn())
                .await?;
        sqlx::query(
            "UPDATE promotions SET times_used = times_used - 1 WHERE id = $1 AND times_used > 0",
        )
        .bind(&promotion)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE promotion_uses SET uses = uses - 1 WHERE promotion_id = $1 AND customer_id = $2 AND uses > 0",
        )
        .bind(&promotion)
        .bind(&customer)
        .execute(tx.conn())
        .await?;
        let (code, times_used): (String, i64) =
            sqlx::query_as("SELECT code, times_used FROM promotions WHERE id = $1")
                .bind(&promotion)
                .fetch_one(tx.conn())
                .await?;
        let event = Envelope::new(
            crate::NAME,
            promotion.clone(),
            &PromotionReleased {
                promotion_id: Uuid::parse_str(&promotion)?,
                code,
                order_id,
                customer_id: Uuid::parse_str(&customer)?,
                times_used,
            },
        )?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        metrics::counter!("mercato_promotions_released_total").increment(1);
        Ok(true)
    }

    // --- shipping ----------------------------------------------------------

    pub async fn create_shipping_method(
        &self,
        name: &str,
        price: &Money,
        prices: &[Money],
        countries: &[String],
        free_over: Option<&Money>,
    ) -> anyhow::Result<ShippingMethod> {
        let id = id::new_id();
        let rules = StoredShipping {
            price: price.clone(),
            prices: prices.to_vec(),
            countries: countries.to_vec(),
            free_over: free_over.cloned(),
        };
        let query = sqlx::query(
            "INSERT INTO shipping_methods (id, name, rules, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(serde_json::to_string(&rules)?)
        .bind(time::to_db(&time::now()));
        self.db.execute(query).await?;
        self.shipping_methods()
            .await?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| anyhow::anyhow!("shipping method {id} vanished"))
    }

    /// Every shipping method, oldest first.
    pub async fn shipping_methods(&self) -> anyhow::Result<Vec<ShippingMethod>> {
        let rows: Vec<ShippingRow> =
            sqlx::query_as("SELECT id, name, rules, created_at FROM shipping_methods ORDER BY id")
                .fetch_all(self.db.pool())
                .await?;
        rows.into_iter().map(shipping_from_row).collect()
    }

    /// `false` when there was no such method.
    pub async fn delete_shipping_method(&self, id: Uuid) -> anyhow::Result<bool> {
        let query = sqlx::query("DELETE FROM shipping_methods WHERE id = $1").bind(id.to_string());
        Ok(self.db.execute(query).await?.rows_affected() == 1)
    }

    // --- tax -----------------------------------------------------------------

    pub async fn put_tax_rate(&self, rate: &TaxRate) -> anyhow::Result<()> {
        let query = sqlx::query(
            "INSERT INTO tax_rates (country, rate_bps, name, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (country) DO UPDATE SET rate_bps = excluded.rate_bps, name = excluded.name,
                updated_at = excluded.updated_at",
        )
        .bind(&rate.country)
        .bind(rate.rate_bps)
        .bind(&rate.name)
        .bind(time::to_db(&time::now()));
        self.db.execute(query).await?;
        Ok(())
    }

    pub async fn tax_rate(&self, country: &str) -> anyhow::Result<Option<TaxRate>> {
        let row: Option<(String, i64, String)> =
            sqlx::query_as("SELECT country, rate_bps, name FROM tax_rates WHERE country = $1")
                .bind(country)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(country, rate_bps, name)| TaxRate {
            country,
            rate_bps,
            name,
        }))
    }

    /// Every rate, by country.
    pub async fn tax_rates(&self) -> anyhow::Result<Vec<TaxRate>> {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT country, rate_bps, name FROM tax_rates ORDER BY country")
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(country, rate_bps, name)| TaxRate {
                country,
                rate_bps,
                name,
            })
            .collect())
    }

    /// `false` when the country had no rate.
    pub async fn delete_tax_rate(&self, country: &str) -> anyhow::Result<bool> {
        let query = sqlx::query("DELETE FROM tax_rates WHERE country = $1").bind(country);
        Ok(self.db.execute(query).await?.rows_affected() == 1)
    }
}
