//! The state the index is derived from: each indexed product as the last
//! catalog event described it, and the available stock of every SKU heard
//! of. A stock change finds its product here and rebuilds its document
//! without reading the index, whose latest writes may not be committed yet.

use crate::domain::ProductDoc;
use mercato_kernel::db::Db;
use mercato_kernel::time;
use uuid::Uuid;

#[derive(Clone)]
pub struct SearchStore {
    db: Db,
}

/// A product and the stock summed over its SKUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Stocked {
    pub doc: ProductDoc,
    pub available: i64,
}

impl SearchStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records a product's new state and takes over its SKUs; returns the
    /// stock available over them.
    pub async fn upsert_product(&self, doc: &ProductDoc) -> anyhow::Result<i64> {
        let id = doc.product_id.to_string();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO search_products (product_id, doc, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (product_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(serde_json::to_string(doc)?)
        .bind(time::to_db(&time::now()))
        .execute(tx.conn())
        .await?;
        // Variants may have been removed: release every SKU, then claim the current ones.
        sqlx::query("UPDATE search_stock SET product_id = '' WHERE product_id = $1")
            .bind(&id)
            .execute(tx.conn())
            .await?;
        for sku in &doc.skus {
            sqlx::query(
                "INSERT INTO search_stock (sku, product_id, available) VALUES ($1, $2, 0)
                 ON CONFLICT (sku) DO UPDATE SET product_id = excluded.product_id",
            )
            .bind(sku)
            .bind(&id)
            .execute(tx.conn())
            .await?;
        }
        let (available,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM search_stock WHERE product_id = $1",
        )
        .bind(&id)
        .fetch_one(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(available)
    }

    /// Forgets a product; the stock of its SKUs is kept.
    pub async fn remove_product(&self, product_id: Uuid) -> anyhow::Result<()> {
        let id = product_id.to_string();
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM search_products WHERE product_id = $1")
            .bind(&id)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE search_stock SET product_id = '' WHERE product_id = $1")
            .bind(&id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a SKU's available stock; returns its product, if indexed,
    /// with the new total.
    pub async fn set_stock(&self, sku: &str, available: i64) -> anyhow::Result<Option<Stocked>> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO search_stock (sku, product_id, available) VALUES ($1, '', $2)
             ON CONFLICT (sku) DO UPDATE SET available = excluded.available",
        )
        .bind(sku)
        .bind(available.max(0))
        .execute(tx.conn())
        .await?;
        let row: Option<(String,)> =
            sqlx::query_as("SELECT product_id FROM search_stock WHERE sku = $1")
                .bind(sku)
                .fetch_optional(tx.conn())
                .await?;
        let product_id = match row {
            Some((id,)) if !id.is_empty() => id,
            _ => {
                tx.commit().await?;
                return Ok(None);
            }
        };
        let doc: Option<(String,)> =
            sqlx::query_as("SELECT doc FROM search_products WHERE product_id = $1")
                .bind(&product_id)
                .fetch_optional(tx.conn())
                .await?;
        let (total,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM search_stock WHERE product_id = $1",
        )
        .bind(&product_id)
        .fetch_one(tx.conn())
        .await?;
        tx.commit().await?;
        match doc {
            Some((json,)) => Ok(Some(Stocked {
                doc: serde_json::from_str(&json)?,
                available: total,
            })),
            None => Ok(None),
        }
    }

    /// How many products are indexed.
    pub async fn count_products(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM search_products")
            .fetch_one(self.db.pool())
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use mercato_kernel::{Currency, Money};

    async fn store() -> (tempfile::TempDir, SearchStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::sqlite_file(&dir.path().join("state.db"))
            .await
            .expect("db");
        db.migrate(crate::NAME, &crate::MIGRATIONS)
            .await
            .expect("migrate");
        (dir, SearchStore::new(db))
    }

    fn doc(skus: &[&str]) -> ProductDoc {
        ProductDoc {
            product_id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            title: "T".into(),
            description: String::new(),
            category: "c".into(),
            price: Money::new(1, Currency::parse("EUR").expect("currency")),
            skus: skus.iter().map(|s| s.to_string()).collect(),
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn stock_is_summed_over_the_skus_of_a_product() {
        let (_dir, store) = store().await;
        // Stock heard of before its product still counts.
        assert_eq!(store.set_stock("A", 3).await.expect("set"), None);
        let mut p = doc(&["A", "B"]);
        assert_eq!(store.upsert_product(&p).await.expect("upsert"), 3);
        let s = store
            .set_stock("B", 4)
            .await
            .expect("set")
            .expect("indexed");
        assert_eq!((s.doc.product_id, s.available), (p.product_id, 7));
        // A variant removed takes its stock with it.
        p.skus = vec!["B".into()];
        assert_eq!(store.upsert_product(&p).await.expect("upsert"), 4);
        assert_eq!(store.set_stock("A", 10).await.expect("set"), None);
        store.remove_product(p.product_id).await.expect("remove");
        assert_eq!(store.set_stock("B", 1).await.expect("set"), None);
        assert_eq!(store.count_products().await.expect("count"), 0);
    }

    #[tokio::test]
    async fn replaying_events_converges_to_the_same_state() {
        let (_dir, store) = store().await;
        let p = doc(&["A"]);
        for _ in 0..2 {
            store.upsert_product(&p).await.expect("upsert");
            store.set_stock("A", 5).await.expect("set");
        }
        assert_eq!(store.upsert_product(&p).await.expect("upsert"), 5);
        assert_eq!(store.count_products().await.expect("count"), 1);
    }
}
