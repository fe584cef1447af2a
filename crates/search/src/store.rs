//! The state the index is derived from: each indexed product as the last
//! catalog event described it, the catalog version of that event (kept
//! after the product is removed), and the available stock of every SKU
//! heard of. A stock change finds its product here and rebuilds its
//! document without reading the index, whose latest writes may not be
//! committed yet.
//!
//! # Versions
//!
//! Product events carry the product's version, which grows with every
//! change. A product event is applied only when its version is at least
//! the recorded one: an older event arriving late (redelivered after a
//! failure, a dead letter replayed by an operator) leaves the newer state
//! alone, and the same event delivered again is applied again, which
//! changes nothing. An event without a version (0, published before
//! versions were carried) is applied whatever its order, as it always was.
//! Stock changes carry nothing that orders them, and overwrite as they come.

use crate::domain::ProductDoc;
use mercato_contracts::types::Rating;
use mercato_kernel::db::{Db, Tx};
use mercato_kernel::time;
use uuid::Uuid;

#[derive(Clone)]
pub struct SearchStore {
    db: Db,
}

/// A product, the stock summed over its SKUs, and its rating.
#[derive(Debug, Clone, PartialEq)]
pub struct Stocked {
    pub doc: ProductDoc,
    pub available: i64,
    pub rating: Rating,
}

/// The rating kept of a product (zero when reviews told none).
async fn rating_of(tx: &mut Tx, product_id: &str) -> anyhow::Result<Rating> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT rating FROM search_ratings WHERE product_id = $1")
            .bind(product_id)
            .fetch_optional(tx.conn())
            .await?;
    Ok(row
        .map(|(r,)| serde_json::from_str(&r))
        .transpose()?
        .unwrap_or_default())
}

impl SearchStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records a product's new state, described by an event of `version`,
    /// and takes over its SKUs; returns the stock available over them and
    /// the product's rating, or `None` (and changes nothing) when a newer
    /// state is already recorded.
    pub async fn upsert_product(
        &self,
        doc: &ProductDoc,
        version: i64,
    ) -> anyhow::Result<Option<(i64, Rating)>> {
        let id = doc.product_id.to_string();
        let mut tx = self.db.begin().await?;
        if !take_version(&mut tx, &id, version).await? {
            tx.commit().await?;
            return Ok(None);
        }
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
        let rating = rating_of(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(Some((available, rating)))
    }

    /// Keeps a product's rating as of its rating `version`; returns the
    /// product, if indexed, to index again. An older change than the one
    /// kept changes nothing (`None`).
    pub async fn set_rating(
        &self,
        product_id: Uuid,
        rating: &Rating,
        version: i64,
    ) -> anyhow::Result<Option<Stocked>> {
        let id = product_id.to_string();
        let mut tx = self.db.begin().await?;
        let applied = sqlx::query(
            "INSERT INTO search_ratings (product_id, rating, version) VALUES ($1, $2, $3)
             ON CONFLICT (product_id) DO UPDATE SET rating = excluded.rating, version = excluded.version
             WHERE excluded.version > search_ratings.version",
        )
        .bind(&id)
        .bind(serde_json::to_string(rating)?)
        .bind(version)
        .execute(tx.conn())
        .await?;
        if applied.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(None);
        }
        let stocked = self.stocked(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(stocked)
    }

    /// A recorded product with its stock and rating, if it is recorded.
    async fn stocked(&self, tx: &mut Tx, product_id: &str) -> anyhow::Result<Option<Stocked>> {
        let doc: Option<(String,)> =
            sqlx::query_as("SELECT doc FROM search_products WHERE product_id = $1")
                .bind(product_id)
                .fetch_optional(tx.conn())
                .await?;
        let Some((json,)) = doc else {
            return Ok(None);
        };
        let (available,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM search_stock WHERE product_id = $1",
        )
        .bind(product_id)
        .fetch_one(tx.conn())
        .await?;
        Ok(Some(Stocked {
            doc: serde_json::from_str(&json)?,
            available,
            rating: rating_of(tx, product_id).await?,
        }))
    }

    /// Forgets a product, as an event of `version` says; the stock of its
    /// SKUs and the version are kept. `false` (and nothing changed) when a
    /// newer state is already recorded.
    pub async fn remove_product(&self, product_id: Uuid, version: i64) -> anyhow::Result<bool> {
        let id = product_id.to_string();
        let mut tx = self.db.begin().await?;
        if !take_version(&mut tx, &id, version).await? {
            tx.commit().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM search_products WHERE product_id = $1")
            .bind(&id)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE search_stock SET product_id = '' WHERE product_id = $1")
            .bind(&id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The version of the last product event applied, if any.
    pub async fn product_version(&self, product_id: Uuid) -> anyhow::Result<Option<i64>> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM search_product_versions WHERE product_id = $1")
                .bind(product_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Records a SKU's available stock as of the SKU's stock `version`;
    /// returns its product, if indexed, with the new total. A change older
    /// than the one recorded changes nothing (`None`); version 0 (events
    /// written before versions) always applies.
    pub async fn set_stock(
        &self,
        sku: &str,
        available: i64,
        version: i64,
    ) -> anyhow::Result<Option<Stocked>> {
        let mut tx = self.db.begin().await?;
        let applied = sqlx::query(
            "INSERT INTO search_stock (sku, product_id, available, version) VALUES ($1, '', $2, $3)
             ON CONFLICT (sku) DO UPDATE SET available = excluded.available, version = excluded.version
             WHERE excluded.version = 0 OR excluded.version >= search_stock.version",
        )
        .bind(sku)
        .bind(available.max(0))
        .bind(version)
        .execute(tx.conn())
        .await?;
        if applied.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(None);
        }
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
        let stocked = self.stocked(&mut tx, &product_id).await?;
        tx.commit().await?;
        Ok(stocked)
    }

    /// How many products are indexed.
    pub async fn count_products(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM search_products")
            .fetch_one(self.db.pool())
            .await?;
        Ok(n)
    }
}

/// Records `version` as the product's, in one conditional statement, when
/// an event of that version may overwrite the recorded state (see the
/// module's doc); `false` when a newer version is recorded.
async fn take_version(tx: &mut Tx, product_id: &str, version: i64) -> anyhow::Result<bool> {
    let taken = sqlx::query(
        "INSERT INTO search_product_versions (product_id, version) VALUES ($1, $2)
         ON CONFLICT (product_id) DO UPDATE SET version = excluded.version
         WHERE excluded.version = 0 OR excluded.version >= search_product_versions.version",
    )
    .bind(product_id)
    .bind(version)
    .execute(tx.conn())
    .await?;
    Ok(taken.rows_affected() == 1)
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
            category_path: Vec::new(),
            price: Money::new(1, Currency::parse("EUR").expect("currency")),
            skus: skus.iter().map(|s| s.to_string()).collect(),
            created_at: Utc::now(),
            attributes: Vec::new(),
        }
    }

    #[tokio::test]
    async fn stock_is_summed_over_the_skus_of_a_product() {
        let (_dir, store) = store().await;
        // Stock heard of before its product still counts.
        assert_eq!(store.set_stock("A", 3, 0).await.expect("set"), None);
        let mut p = doc(&["A", "B"]);
        assert_eq!(
            store
                .upsert_product(&p, 1)
                .await
                .expect("upsert")
                .map(|(n, _)| n),
            Some(3)
        );
        let s = store
            .set_stock("B", 4, 0)
            .await
            .expect("set")
            .expect("indexed");
        assert_eq!((s.doc.product_id, s.available), (p.product_id, 7));
        // A variant removed takes its stock with it.
        p.skus = vec!["B".into()];
        assert_eq!(
            store
                .upsert_product(&p, 2)
                .await
                .expect("upsert")
                .map(|(n, _)| n),
            Some(4)
        );
        assert_eq!(store.set_stock("A", 10, 0).await.expect("set"), None);
        assert!(store.remove_product(p.product_id, 3).await.expect("remove"));
        assert_eq!(store.set_stock("B", 1, 0).await.expect("set"), None);
        assert_eq!(store.count_products().await.expect("count"), 0);
    }

    #[tokio::test]
    async fn replaying_events_converges_to_the_same_state() {
        let (_dir, store) = store().await;
        let p = doc(&["A"]);
        for _ in 0..2 {
            store.upsert_product(&p, 1).await.expect("upsert");
            store.set_stock("A", 5, 0).await.expect("set");
        }
        assert_eq!(
            store
                .upsert_product(&p, 1)
                .await
                .expect("upsert")
                .map(|(n, _)| n),
            Some(5)
        );
        assert_eq!(store.count_products().await.expect("count"), 1);
    }

    #[tokio::test]
    async fn an_older_stock_change_changes_nothing() {
        let (_dir, store) = store().await;
        let p = doc(&["A"]);
        store.upsert_product(&p, 1).await.expect("upsert");
        let s = store
            .set_stock("A", 4, 7)
            .await
            .expect("set")
            .expect("indexed");
        assert_eq!(s.available, 4);
        // Version 6 arrives late: dropped, and the total stays version 7's.
        assert_eq!(store.set_stock("A", 9, 6).await.expect("set"), None);
        assert_eq!(
            store
                .upsert_product(&p, 2)
                .await
                .expect("upsert")
                .map(|(n, _)| n),
            Some(4)
        );
        // The same version again (a redelivery) applies, a newer one too.
        let s = store
            .set_stock("A", 4, 7)
            .await
            .expect("set")
            .expect("indexed");
        assert_eq!(s.available, 4);
        let s = store
            .set_stock("A", 1, 8)
            .await
            .expect("set")
            .expect("indexed");
        assert_eq!(s.available, 1);
        // Events from before versions (0) apply whatever their order.
        let s = store
            .set_stock("A", 3, 0)
            .await
            .expect("set")
            .expect("indexed");
        assert_eq!(s.available, 3);
    }

    #[tokio::test]
    async fn an_older_version_changes_nothing() {
        let (_dir, store) = store().await;
        let mut p = doc(&["A"]);
        p.title = "New".into();
        assert_eq!(
            store
                .upsert_product(&p, 3)
                .await
                .expect("upsert")
                .map(|(n, _)| n),
            Some(0)
        );
        let mut old = p.clone();
        old.title = "Old".into();
        old.skus = vec!["Z".into()];
        assert_eq!(store.upsert_product(&old, 2).await.expect("upsert"), None);
        assert!(!store.remove_product(p.product_id, 2).await.expect("remove"));
        // The state recorded is still version 3's, SKU A included.
        let s = store
            .set_stock("A", 2, 0)
            .await
            .expect("set")
            .expect("still indexed");
        assert_eq!((s.doc.title.as_str(), s.available), ("New", 2));
        assert_eq!(store.set_stock("Z", 9, 0).await.expect("set"), None);
        assert_eq!(
            store.product_version(p.product_id).await.expect("v"),
            Some(3)
        );

        // Removed at version 4: the version outlives the product.
        assert!(store.remove_product(p.product_id, 4).await.expect("remove"));
        assert_eq!(store.upsert_product(&p, 3).await.expect("upsert"), None);
        assert_eq!(store.count_products().await.expect("count"), 0);
        assert_eq!(
            store.product_version(p.product_id).await.expect("v"),
            Some(4)
        );

        // An event without a version is applied as it comes.
        assert_eq!(
            store.upsert_product(&old, 0).await.expect("upsert"),
            Some((9, Rating::default()))
        );
        assert_eq!(store.count_products().await.expect("count"), 1);
        assert_eq!(
            store.product_version(p.product_id).await.expect("v"),
            Some(0)
        );
    }
}
