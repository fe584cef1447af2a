//! What the reports are computed from, kept from events; and the queries
//! that compute them. Times are RFC 3339 text in UTC, so a day is the first
//! ten characters and a range compares as text.

use crate::domain::{ClientEventCount, Range, SearchTerm};
use mercato_contracts::interactions::Visitor;
use mercato_contracts::types::Line;
use mercato_kernel::db::Db;
use mercato_kernel::time::{self, Timestamp};
use mercato_kernel::Money;
use uuid::Uuid;

#[derive(Clone)]
pub struct AnalyticsStore {
    db: Db,
}

/// An interaction as it is kept.
#[derive(Debug, Clone, Default)]
pub struct InteractionRow {
    pub event_id: Uuid,
    pub kind: &'static str,
    pub at: Timestamp,
    /// How many times (at least 1).
    pub times: u64,
    pub visitor: Visitor,
    pub product_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub query: Option<String>,
    pub results: Option<i64>,
    pub quantity: Option<i64>,
    pub name: Option<String>,
    pub properties: Option<String>,
}

/// A day's sales in one currency: orders, units, revenue.
pub type DaySales = (String, String, i64, i64, i64);
/// A day's refunds in one currency.
pub type DayRefunds = (String, String, i64);
/// product_id, title, currency, units, revenue
pub type ProductSales = (String, String, String, i64, i64);

/// The join and condition that keep a seller's products (`p`) only.
const OF_SELLER: &str = "JOIN an_products p ON p.product_id = l.product_id AND p.seller_id = $3";

impl AnalyticsStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Keeps an interaction once, whatever number of times it is delivered.
    pub async fn record_interaction(&self, row: &InteractionRow) -> anyhow::Result<()> {
        let query = sqlx::query(
            "INSERT INTO an_interactions (event_id, kind, at, customer_id, session_id, product_id,
                order_id, query, results, quantity, name, properties, times)
             SELECT $1, $2, $3, e.kept, CASE WHEN e.kept IS NULL AND $4 IS NOT NULL THEN NULL ELSE $5 END,
                $6, $7, $8, $9, $10, $11, $12, $13
             FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM an_erased WHERE customer_id = $4)
                          THEN NULL ELSE $4 END AS kept) e
             WHERE 1 = 1
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(row.event_id.to_string())
        .bind(row.kind)
        .bind(time::to_db(&row.at))
        .bind(row.visitor.customer_id.map(|c| c.to_string()))
        .bind(row.visitor.session_id.clone())
        .bind(row.product_id.map(|p| p.to_string()))
        .bind(row.order_id.map(|o| o.to_string()))
        .bind(row.query.clone())
        .bind(row.results)
        .bind(row.quantity)
        .bind(row.name.clone())
        .bind(row.properties.clone())
        .bind(i64::try_from(row.times.max(1)).unwrap_or(i64::MAX));
        self.db.execute(query).await?;
        Ok(())
    }

    /// An order as placed, or as confirmed at `confirmed` (its lines are the
    /// same either way, and either may come first).
    pub async fn record_order(
        &self,
        order_id: Uuid,
        at: &Timestamp,
        confirmed: bool,
        total: &Money,
        lines: &[Line],
    ) -> anyhow::Result<()> {
        let at = time::to_db(at);
        let units: i64 = lines.iter().map(|l| l.quantity).sum();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO an_orders (order_id, placed_at, confirmed_at, total, currency, units)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (order_id) DO UPDATE SET confirmed_at = COALESCE(an_orders.confirmed_at, $3)",
        )
        .bind(order_id.to_string())
        .bind(&at)
        .bind(confirmed.then_some(at.clone()))
        .bind(total.amount)
        .bind(total.currency.as_str())
        .bind(units)
        .execute(tx.conn())
        .await?;
        for l in lines {
            sqlx::query(
                "INSERT INTO an_order_lines (order_id, sku, product_id, title, units, amount, currency)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(order_id.to_string())
            .bind(&l.sku)
            .bind(l.product_id.to_string())
            .bind(&l.title)
            .bind(l.quantity)
            .bind(l.line_total.amount)
            .bind(l.line_total.currency.as_str())
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Money that went back for an order, once per event.
    pub async fn record_refund(
        &self,
        event_id: Uuid,
        order_id: Uuid,
        at: &Timestamp,
        amount: &Money,
    ) -> anyhow::Result<()> {
        let query = sqlx::query(
            "INSERT INTO an_refunds (event_id, order_id, at, amount, currency)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id.to_string())
        .bind(order_id.to_string())
        .bind(time::to_db(at))
        .bind(amount.amount)
        .bind(amount.currency.as_str());
        self.db.execute(query).await?;
        Ok(())
    }

    /// A product's seller and title as of its catalog version (older ones
    /// change nothing).
    pub async fn record_product(
        &self,
        product_id: Uuid,
        seller_id: Uuid,
        title: &str,
        version: i64,
    ) -> anyhow::Result<()> {
        let query = sqlx::query(
            "INSERT INTO an_products (product_id, seller_id, title, version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (product_id) DO UPDATE SET seller_id = $2, title = $3, version = $4
             WHERE an_products.version <= $4",
        )
        .bind(product_id.to_string())
        .bind(seller_id.to_string())
        .bind(title)
        .bind(version);
        self.db.execute(query).await?;
        Ok(())
    }

    /// A person's erasure: nothing here says who they were, nor which
    /// session was theirs.
    pub async fn erase(&self, user_id: Uuid) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query("INSERT INTO an_erased (customer_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(user_id.to_string())
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "UPDATE an_interactions SET session_id = NULL WHERE session_id IN
                (SELECT session_id FROM an_interactions WHERE customer_id = $1 AND session_id IS NOT NULL)",
        )
        .bind(user_id.to_string())
        .execute(tx.conn())
        .await?;
        sqlx::query("UPDATE an_interactions SET customer_id = NULL WHERE customer_id = $1")
            .bind(user_id.to_string())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    fn range(range: &Range) -> (String, String) {
        (time::to_db(&range.from), time::to_db(&range.to))
    }

    /// Confirmed orders per day and currency. A seller's: the orders
    /// holding their lines, and those lines' units and totals.
    pub async fn sales_by_day(
        &self,
        range: &Range,
        seller: Option<Uuid>,
    ) -> anyhow::Result<Vec<DaySales>> {
        let (from, to) = Self::range(range);
        let rows = match seller {
            None => {
                sqlx::query_as(
                    "SELECT substr(confirmed_at, 1, 10), currency, COUNT(*),
                        CAST(SUM(units) AS BIGINT), CAST(SUM(total) AS BIGINT)
                     FROM an_orders WHERE confirmed_at >= $1 AND confirmed_at < $2
                     GROUP BY 1, 2",
                )
                .bind(from)
                .bind(to)
                .fetch_all(self.db.pool())
                .await?
            }
            Some(seller) => {
                sqlx::query_as(&format!(
                    "SELECT substr(o.confirmed_at, 1, 10), l.currency, COUNT(DISTINCT o.order_id),
                        CAST(SUM(l.units) AS BIGINT), CAST(SUM(l.amount) AS BIGINT)
                     FROM an_order_lines l JOIN an_orders o ON o.order_id = l.order_id {OF_SELLER}
                     WHERE o.confirmed_at >= $1 AND o.confirmed_at < $2
                     GROUP BY 1, 2"
                ))
                .bind(from)
                .bind(to)
                .bind(seller.to_string())
                .fetch_all(self.db.pool())
                .await?
            }
        };
        Ok(rows)
    }

    /// Refunds per day and currency. A seller's share of a refund is their
    /// lines' part of the order's total (rounded down): all of their lines'
    /// totals when the whole order went back.
    pub async fn refunds_by_day(
        &self,
        range: &Range,
        seller: Option<Uuid>,
    ) -> anyhow::Result<Vec<DayRefunds>> {
        let (from, to) = Self::range(range);
        let Some(seller) = seller else {
            return Ok(sqlx::query_as(
                "SELECT substr(at, 1, 10), currency, CAST(SUM(amount) AS BIGINT)
                 FROM an_refunds WHERE at >= $1 AND at < $2 GROUP BY 1, 2",
            )
            .bind(from)
            .bind(to)
            .fetch_all(self.db.pool())
            .await?);
        };
        let shares: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT substr(r.at, 1, 10), r.currency, r.amount, CAST(SUM(l.amount) AS BIGINT), o.total
             FROM an_refunds r JOIN an_orders o ON o.order_id = r.order_id
             JOIN an_order_lines l ON l.order_id = r.order_id {OF_SELLER}
             WHERE r.at >= $1 AND r.at < $2 AND l.currency = r.currency
             GROUP BY r.event_id, 1, 2, r.amount, o.total"
        ))
        .bind(from)
        .bind(to)
        .bind(seller.to_string())
        .fetch_all(self.db.pool())
        .await?;
        let mut days: Vec<DayRefunds> = Vec::new();
        for (day, currency, amount, part, whole) in shares {
            let share = if whole > 0 {
                let s = i128::from(amount) * i128::from(part.min(whole)) / i128::from(whole);
                i64::try_from(s).unwrap_or(amount)
            } else {
                0
            };
            match days.iter_mut().find(|d| d.0 == day && d.1 == currency) {
                Some(d) => d.2 += share,
                None => days.push((day, currency, share)),
            }
        }
        Ok(days)
    }

    /// Products by units sold in confirmed orders, per currency.
    pub async fn top_products(
        &self,
        range: &Range,
        seller: Option<Uuid>,
        limit: i64,
    ) -> anyhow::Result<Vec<ProductSales>> {
        let (from, to) = Self::range(range);
        let (join, bind_seller) = match seller {
            Some(s) => (
                "JOIN an_products p ON p.product_id = l.product_id AND p.seller_id = $4",
                Some(s.to_string()),
            ),
            None => (
                "LEFT JOIN an_products p ON p.product_id = l.product_id",
                None,
            ),
        };
        let sql = format!(
            "SELECT l.product_id, MAX(COALESCE(p.title, l.title)), l.currency,
                CAST(SUM(l.units) AS BIGINT) AS units, CAST(SUM(l.amount) AS BIGINT) AS revenue
             FROM an_order_lines l JOIN an_orders o ON o.order_id = l.order_id {join}
             WHERE o.confirmed_at >= $1 AND o.confirmed_at < $2
             GROUP BY l.product_id, l.currency
             ORDER BY units DESC, revenue DESC, l.product_id LIMIT $3"
        );
        let mut query = sqlx::query_as(&sql).bind(from).bind(to).bind(limit);
        if let Some(s) = bind_seller {
            query = query.bind(s);
        }
        Ok(query.fetch_all(self.db.pool()).await?)
    }

    /// `SELECT COUNT(...)` over a range (`$1`, `$2`) and, when given, a
    /// seller (`$3`).
    async fn count(&self, sql: &str, range: &Range, seller: Option<Uuid>) -> anyhow::Result<i64> {
        let (from, to) = Self::range(range);
        let mut query = sqlx::query_as::<_, (i64,)>(sql).bind(from).bind(to);
        if let Some(s) = seller {
            query = query.bind(s.to_string());
        }
        Ok(query.fetch_one(self.db.pool()).await?.0)
    }

    /// The funnel's four counts: product views, cart additions, checkouts,
    /// confirmed orders.
    pub async fn funnel(
        &self,
        range: &Range,
        seller: Option<Uuid>,
    ) -> anyhow::Result<(i64, i64, i64, i64)> {
        let of_products = if seller.is_some() {
            "JOIN an_products p ON p.product_id = i.product_id AND p.seller_id = $3"
        } else {
            ""
        };
        let holding = |order: &str| match seller {
            Some(_) => format!(
                "AND EXISTS (SELECT 1 FROM an_order_lines l {OF_SELLER} WHERE l.order_id = {order})"
            ),
            None => String::new(),
        };
        let interactions = |kind: &str| {
            format!(
                "SELECT CAST(COALESCE(SUM(i.times), 0) AS BIGINT) FROM an_interactions i {of_products}
                 WHERE i.kind = '{kind}' AND i.at >= $1 AND i.at < $2"
            )
        };
        let views = self
            .count(&interactions("product_viewed"), range, seller)
            .await?;
        let adds = self
            .count(&interactions("cart_added"), range, seller)
            .await?;
        let checkouts = self
            .count(
                &format!(
                    "SELECT COUNT(DISTINCT i.order_id) FROM an_interactions i
                     WHERE i.kind = 'checkout_started' AND i.at >= $1 AND i.at < $2 {}",
                    holding("i.order_id")
                ),
                range,
                seller,
            )
            .await?;
        let confirmed = self
            .count(
                &format!(
                    "SELECT COUNT(*) FROM an_orders o
                     WHERE o.confirmed_at >= $1 AND o.confirmed_at < $2 {}",
                    holding("o.order_id")
                ),
                range,
                seller,
            )
            .await?;
        Ok((views, adds, checkouts, confirmed))
    }

    /// Search words by how often they were searched.
    pub async fn search_terms(
        &self,
        range: &Range,
        zero_results: bool,
        limit: i64,
    ) -> anyhow::Result<Vec<SearchTerm>> {
        let (from, to) = Self::range(range);
        let having = if zero_results {
            "HAVING MAX(results) = 0"
        } else {
            ""
        };
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT query, CAST(SUM(times) AS BIGINT) AS searches, CAST(MAX(results) AS BIGINT)
             FROM an_interactions WHERE kind = 'searched' AND at >= $1 AND at < $2
             GROUP BY query {having} ORDER BY searches DESC, query LIMIT $3"
        ))
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(query, searches, results)| SearchTerm {
                query,
                searches,
                results,
            })
            .collect())
    }

    /// Client events by type, most frequent first.
    pub async fn client_events(
        &self,
        range: &Range,
        limit: i64,
    ) -> anyhow::Result<Vec<ClientEventCount>> {
        let (from, to) = Self::range(range);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, CAST(SUM(times) AS BIGINT) AS events FROM an_interactions
             WHERE kind = 'client' AND at >= $1 AND at < $2
             GROUP BY name ORDER BY events DESC, name LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(event_type, events)| ClientEventCount { event_type, events })
            .collect())
    }
}
