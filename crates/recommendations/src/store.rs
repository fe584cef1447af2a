//! The recommendation model's state, rebuilt from events, and experiments.

use crate::domain::{similarity, title_words, Experiment, Recommendation, Variant, VariantResult};
use mercato_contracts::events::ExperimentExposed;
use mercato_contracts::types::Product;
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{inbox, time, Currency, Envelope, Money};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

#[derive(Clone)]
pub struct RecommendationsStore {
    db: Db,
    outbox: Outbox,
}

/// product_id, title, price_amount, currency, score
type Candidate = (String, String, i64, String, i64);

/// Products that may be recommended: active, with stock.
const SELLABLE: &str = "p.active = 1 AND EXISTS (SELECT 1 FROM rec_skus s WHERE s.product_id = p.product_id AND s.available > 0)";

fn recommendation(c: Candidate, reason: &str) -> anyhow::Result<Recommendation> {
    let (id, title, amount, currency, score) = c;
    Ok(Recommendation {
        product_id: Uuid::parse_str(&id)?,
        title,
        price: Money::new(amount, Currency::parse(&currency)?),
        score: score as f64,
        reason: reason.to_owned(),
    })
}

/// Why an experiment could not be stored.
#[derive(Debug)]
pub enum CreateError {
    /// Another experiment has the key.
    Exists,
    Other(anyhow::Error),
}

impl RecommendationsStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A product's state as of its catalog version (older ones change
    /// nothing), and the SKUs that are its.
    pub async fn record_product(&self, p: &Product, version: i64) -> anyhow::Result<()> {
        let Some(price) = p.variants.iter().map(|v| &v.price).min_by_key(|m| m.amount) else {
            return Ok(());
        };
        let active = p.status == mercato_contracts::types::ProductStatus::Active;
        let mut tx = self.db.begin().await?;
        let kept = sqlx::query(
            "INSERT INTO rec_products (product_id, title, category, price_amount, currency, active, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (product_id) DO UPDATE SET title = $2, category = $3, price_amount = $4,
                currency = $5, active = $6, version = $7
             WHERE rec_products.version <= $7",
        )
        .bind(p.id.to_string())
        .bind(&p.title)
        .bind(&p.category)
        .bind(price.amount)
        .bind(price.currency.as_str())
        .bind(i64::from(active))
        .bind(version)
        .execute(tx.conn())
        .await?;
        if kept.rows_affected() == 1 {
            // Variants may have gone: their stock is no longer the product's.
            sqlx::query("UPDATE rec_skus SET product_id = '' WHERE product_id = $1")
                .bind(p.id.to_string())
                .execute(tx.conn())
                .await?;
            for v in &p.variants {
                sqlx::query(
                    "INSERT INTO rec_skus (sku, product_id) VALUES ($1, $2)
                     ON CONFLICT (sku) DO UPDATE SET product_id = $2",
                )
                .bind(&v.sku)
                .bind(p.id.to_string())
                .execute(tx.conn())
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// An archived product is recommended no more, also when the archive
    /// arrives before the product's earlier events (their version is lower).
    pub async fn archive_product(&self, product_id: Uuid, version: i64) -> anyhow::Result<()> {
        let query = sqlx::query(
            "INSERT INTO rec_products (product_id, title, category, price_amount, currency, active, version)
             VALUES ($1, '', '', 0, 'EUR', 0, $2)
             ON CONFLICT (product_id) DO UPDATE SET active = 0, version = $2
             WHERE rec_products.version <= $2",
        )
        .bind(product_id.to_string())
        .bind(version);
        self.db.execute(query).await?;
        Ok(())
    }

    /// A SKU's stock as of its stock version (older ones change nothing).
    pub async fn record_stock(
        &self,
        sku: &str,
        available: i64,
        version: i64,
    ) -> anyhow::Result<()> {
        let query = sqlx::query(
            "INSERT INTO rec_skus (sku, product_id, available, version) VALUES ($1, '', $2, $3)
             ON CONFLICT (sku) DO UPDATE SET available = $2, version = $3
             WHERE $3 = 0 OR rec_skus.version <= $3",
        )
        .bind(sku)
        .bind(available.max(0))
        .bind(version);
        self.db.execute(query).await?;
        Ok(())
    }

    /// A confirmed order, once: units sold, who bought what, which
    /// products were bought together, and the conversion of every
    /// experiment the customer was exposed to.
    pub async fn record_order(
        &self,
        consumer: &str,
        event_id: Uuid,
        occurred_at: &chrono::DateTime<chrono::Utc>,
        customer_id: Uuid,
        lines: &[(Uuid, i64)],
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        if !inbox::claim(&mut tx, consumer, event_id).await? {
            tx.rollback().await;
            return Ok(());
        }
        let customer = customer_id.to_string();
        // Each product once, in one order for every writer (no deadlock).
        let mut units_of: BTreeMap<String, i64> = BTreeMap::new();
        for (product, units) in lines {
            *units_of.entry(product.to_string()).or_insert(0) += units;
        }
        let products: BTreeSet<String> = units_of.keys().cloned().collect();
        for (product, units) in &units_of {
            sqlx::query(
                "INSERT INTO rec_sales (product_id, units) VALUES ($1, $2)
                 ON CONFLICT (product_id) DO UPDATE SET units = rec_sales.units + $2",
            )
            .bind(product)
            .bind(*units)
            .execute(tx.conn())
            .await?;
        }
        for a in &products {
            sqlx::query(
                "INSERT INTO rec_bought (customer_id, product_id)
                 SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM rec_erased WHERE customer_id = $1)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&customer)
            .bind(a)
            .execute(tx.conn())
            .await?;
            for b in products.iter().filter(|b| *b != a) {
                sqlx::query(
                    "INSERT INTO rec_pairs (product_id, other_id, orders) VALUES ($1, $2, 1)
                     ON CONFLICT (product_id, other_id) DO UPDATE SET orders = rec_pairs.orders + 1",
                )
                .bind(a)
                .bind(b)
                .execute(tx.conn())
                .await?;
            }
        }
        let now = time::to_db(&time::now());
        sqlx::query(
            "INSERT INTO conversions (experiment, subject, variant, at)
             SELECT x.experiment, x.subject, x.variant, $2 FROM exposures x
             JOIN experiments e ON e.experiment_key = x.experiment
             WHERE x.subject = $1 AND e.goal = 'order_confirmed' AND x.at <= $3
             ON CONFLICT DO NOTHING",
        )
        .bind(&customer)
        .bind(&now)
        // Only orders placed after the exposure count.
        .bind(time::to_db(occurred_at))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Products bought together with `product_id`, most often first.
    pub async fn bought_together(
        &self,
        product_id: Uuid,
        limit: i64,
    ) -> anyhow::Result<Vec<Recommendation>> {
        let rows: Vec<Candidate> = sqlx::query_as(&format!(
            "SELECT p.product_id, p.title, p.price_amount, p.currency, r.orders
             FROM rec_pairs r JOIN rec_products p ON p.product_id = r.other_id
             WHERE r.product_id = $1 AND {SELLABLE}
             ORDER BY r.orders DESC, p.product_id LIMIT $2"
        ))
        .bind(product_id.to_string())
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|c| recommendation(c, "bought_together"))
            .collect()
    }

    /// Products like `product_id`: of its category, by the share of title
    /// words they have in common (then the best sellers of the category).
    pub async fn similar(
        &self,
        product_id: Uuid,
        limit: usize,
    ) -> anyhow::Result<Vec<Recommendation>> {
        let me: Option<(String, String)> =
            sqlx::query_as("SELECT title, category FROM rec_products WHERE product_id = $1")
                .bind(product_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        let Some((title, category)) = me else {
            return Ok(Vec::new());
        };
        let rows: Vec<Candidate> = sqlx::query_as(&format!(
            "SELECT p.product_id, p.title, p.price_amount, p.currency, COALESCE(s.units, 0)
             FROM rec_products p LEFT JOIN rec_sales s ON s.product_id = p.product_id
             WHERE p.category = $1 AND p.product_id <> $2 AND {SELLABLE}
             ORDER BY COALESCE(s.units, 0) DESC, p.product_id LIMIT 200"
        ))
        .bind(&category)
        .bind(product_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        let words = title_words(&title);
        let mut scored: Vec<(f64, Candidate)> = rows
            .into_iter()
            .map(|c| (similarity(&words, &title_words(&c.1)), c))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .into_iter()
            .take(limit)
            .map(|(score, c)| {
                let mut r = recommendation(c, "similar")?;
                r.score = score;
                Ok(r)
            })
            .collect()
    }

    /// The best sellers, leaving out `except`.
    pub async fn best_sellers(
        &self,
        except: &BTreeSet<String>,
        limit: usize,
    ) -> anyhow::Result<Vec<Recommendation>> {
        let rows: Vec<Candidate> = sqlx::query_as(&format!(
            "SELECT p.product_id, p.title, p.price_amount, p.currency, s.units
             FROM rec_sales s JOIN rec_products p ON p.product_id = s.product_id
             WHERE {SELLABLE} ORDER BY s.units DESC, p.product_id LIMIT $1"
        ))
        .bind(i64::try_from(limit + except.len()).unwrap_or(i64::MAX))
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .filter(|c| !except.contains(&c.0))
            .take(limit)
            .map(|c| recommendation(c, "best_seller"))
            .collect()
    }

    /// What the customer bought.
    pub async fn bought_by(&self, customer_id: Uuid) -> anyhow::Result<BTreeSet<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT product_id FROM rec_bought WHERE customer_id = $1")
                .bind(customer_id.to_string())
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows.into_iter().map(|(p,)| p).collect())
    }

    /// Products bought together with what the customer bought, and not by
    /// them, most often first.
    pub async fn for_customer(
        &self,
        customer_id: Uuid,
        limit: i64,
    ) -> anyhow::Result<Vec<Recommendation>> {
        let rows: Vec<Candidate> = sqlx::query_as(&format!(
            "SELECT p.product_id, p.title, p.price_amount, p.currency, CAST(SUM(r.orders) AS BIGINT)
             FROM (SELECT product_id FROM rec_bought WHERE customer_id = $1
                   UNION SELECT product_id FROM rec_viewed WHERE customer_id = $1) b
             JOIN rec_pairs r ON r.product_id = b.product_id
             JOIN rec_products p ON p.product_id = r.other_id
             WHERE {SELLABLE}
               AND NOT EXISTS (SELECT 1 FROM rec_bought o WHERE o.customer_id = $1 AND o.product_id = r.other_id)
             GROUP BY p.product_id, p.title, p.price_amount, p.currency
             ORDER BY CAST(SUM(r.orders) AS BIGINT) DESC, p.product_id LIMIT $2"
        ))
        .bind(customer_id.to_string())
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|c| recommendation(c, "bought_together"))
            .collect()
    }

    /// A signed-in customer looked at a product or put it in a cart.
    pub async fn record_interest(
        &self,
        customer_id: Uuid,
        product_id: Uuid,
        at: &chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        let query = sqlx::query(
            "INSERT INTO rec_viewed (customer_id, product_id, at)
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM rec_erased WHERE customer_id = $1)
             ON CONFLICT (customer_id, product_id) DO UPDATE SET at = $3 WHERE rec_viewed.at < $3",
        )
        .bind(customer_id.to_string())
        .bind(product_id.to_string())
        .bind(time::to_db(at));
        self.db.execute(query).await?;
        Ok(())
    }

    /// A person's erasure: what they bought and looked at is forgotten, and
    /// their exposures and conversions go on counted under a name that is
    /// nobody's.
    pub async fn erase(&self, user_id: Uuid) -> anyhow::Result<()> {
        let (user, nobody) = (
            user_id.to_string(),
            format!("erased:{}", mercato_kernel::id::new_id()),
        );
        let mut tx = self.db.begin().await?;
        for sql in [
            "INSERT INTO rec_erased (customer_id) VALUES ($1) ON CONFLICT DO NOTHING",
            "DELETE FROM rec_bought WHERE customer_id = $1",
            "DELETE FROM rec_viewed WHERE customer_id = $1",
        ] {
            sqlx::query(sql).bind(&user).execute(tx.conn()).await?;
        }
        for sql in [
            "UPDATE exposures SET subject = $2 WHERE subject = $1",
            "UPDATE conversions SET subject = $2 WHERE subject = $1",
        ] {
            sqlx::query(sql)
                .bind(&user)
                .bind(&nobody)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_experiment(&self, e: &Experiment) -> Result<(), CreateError> {
        let variants =
            serde_json::to_string(&e.variants).map_err(|e| CreateError::Other(e.into()))?;
        let query = sqlx::query(
            "INSERT INTO experiments (experiment_key, variants, goal, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&e.key)
        .bind(variants)
        .bind(&e.goal)
        .bind(time::to_db(&e.created_at));
        match self.db.execute(query).await {
            Ok(_) => Ok(()),
            Err(e) if mercato_kernel::error::is_unique_violation(&e) => Err(CreateError::Exists),
            Err(e) => Err(CreateError::Other(e.into())),
        }
    }

    pub async fn experiment(&self, key: &str) -> anyhow::Result<Option<Experiment>> {
        let row: Option<ExperimentRow> = sqlx::query_as(
            "SELECT experiment_key, variants, goal, created_at FROM experiments WHERE experiment_key = $1",
        )
        .bind(key)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(experiment_of).transpose()
    }

    /// Every experiment, by key, a page at a time.
    pub async fn experiments(&self, page: &PageRequest) -> anyhow::Result<Page<Experiment>> {
        let rows: Vec<ExperimentRow> = sqlx::query_as(
            "SELECT experiment_key, variants, goal, created_at FROM experiments
             WHERE experiment_key > $1 ORDER BY experiment_key LIMIT $2",
        )
        .bind(page.after.as_deref().unwrap_or_default())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.db.pool())
        .await?;
        let rows = rows
            .into_iter()
            .map(experiment_of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(rows, page.limit, |e| e.key.clone()))
    }

    /// Records a subject's first exposure (with `experiment.exposed`); a
    /// later one changes nothing.
    pub async fn expose(&self, key: &str, subject: &str, variant: &str) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        let first = sqlx::query(
            "INSERT INTO exposures (experiment, subject, variant, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(subject)
        .bind(variant)
        .bind(time::to_db(&time::now()))
        .execute(tx.conn())
        .await?;
        if first.rows_affected() == 1 {
            let event = Envelope::new(
                crate::NAME,
                key,
                &ExperimentExposed {
                    experiment: key.to_owned(),
                    subject: subject.to_owned(),
                    variant: variant.to_owned(),
                },
            )?;
            self.outbox.add(&mut tx, &[event]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Exposures and conversions per variant.
    pub async fn results(&self, e: &Experiment) -> anyhow::Result<Vec<VariantResult>> {
        let counts = |table: &'static str| {
            let key = e.key.clone();
            async move {
                let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
                    "SELECT variant, CAST(COUNT(*) AS BIGINT) FROM {table} WHERE experiment = $1 GROUP BY variant"
                ))
                .bind(key)
                .fetch_all(self.db.pool())
                .await?;
                Ok::<_, anyhow::Error>(rows.into_iter().collect::<BTreeMap<_, _>>())
            }
        };
        let exposures = counts("exposures").await?;
        let conversions = counts("conversions").await?;
        Ok(e.variants
            .iter()
            .map(|v| {
                let n = exposures.get(&v.name).copied().unwrap_or(0);
                let c = conversions.get(&v.name).copied().unwrap_or(0);
                VariantResult {
                    name: v.name.clone(),
                    weight: v.weight,
                    exposures: n,
                    conversions: c,
                    conversion_rate: if n > 0 {
                        ((c as f64 / n as f64) * 10_000.0).round() / 10_000.0
                    } else {
                        0.0
                    },
                }
            })
            .collect())
    }
}

type ExperimentRow = (String, String, String, String);

fn experiment_of((key, variants, goal, created_at): ExperimentRow) -> anyhow::Result<Experiment> {
    Ok(Experiment {
        key,
        variants: serde_json::from_str::<Vec<Variant>>(&variants)?,
        goal,
        created_at: time::from_db(&created_at)?,
    })
}
