//! The catalog's event store and its current-state projection.

use crate::domain::{CatalogEvent, ProductAggregate};
use mercato_contracts::types::{Product, ProductStatus, SkuInfo, Variant};
use mercato_kernel::db::Db;
use mercato_kernel::error::is_unique_violation;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{time, Envelope};
use uuid::Uuid;

#[derive(Clone)]
pub struct CatalogStore {
    db: Db,
    outbox: Outbox,
}

#[derive(Debug)]
pub enum AppendError {
    /// Someone else appended first; reload and decide again.
    Concurrency,
    /// A SKU belongs to another product.
    SkuTaken(String),
    Store(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for AppendError {
    fn from(e: E) -> Self {
        AppendError::Store(e.into())
    }
}

/// Filters of the product list.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub category: Option<String>,
    pub seller_id: Option<Uuid>,
    /// `None` lists every status.
    pub status: Option<ProductStatus>,
}

type ProductRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);
const PRODUCT_COLUMNS: &str =
    "id, seller_id, title, description, category, status, variants, created_at, updated_at";

fn status_str(s: ProductStatus) -> &'static str {
    match s {
        ProductStatus::Active => "active",
        ProductStatus::Archived => "archived",
    }
}

fn product_from_row(row: ProductRow) -> anyhow::Result<Product> {
    let (id, seller_id, title, description, category, status, variants, created_at, updated_at) =
        row;
    Ok(Product {
        id: Uuid::parse_str(&id)?,
        seller_id: Uuid::parse_str(&seller_id)?,
        title,
        description,
        category,
        status: match status.as_str() {
            "archived" => ProductStatus::Archived,
            _ => ProductStatus::Active,
        },
        variants: serde_json::from_str::<Vec<Variant>>(&variants)?,
        created_at: time::from_db(&created_at)?,
        updated_at: time::from_db(&updated_at)?,
    })
}

impl CatalogStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A product's history, folded.
    pub async fn load(&self, id: Uuid) -> anyhow::Result<ProductAggregate> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT payload FROM product_events WHERE product_id = $1 ORDER BY version",
        )
        .bind(id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        let events = rows
            .into_iter()
            .map(|(json,)| serde_json::from_str::<CatalogEvent>(&json))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProductAggregate::from_events(id, events))
    }

    /// Appends `events` after `before.version`, updates the projection to
    /// `after`, claims its SKUs and records the integration events, all in
    /// one transaction.
    pub async fn append(
        &self,
        before: &ProductAggregate,
        events: &[CatalogEvent],
        after: &Product,
        integration: &[Envelope],
    ) -> Result<(), AppendError> {
        let mut tx = self.db.begin().await?;
        let id = before.id.to_string();
        for (i, event) in events.iter().enumerate() {
            let version = before.version + 1 + i as i64;
            let inserted = sqlx::query(
                "INSERT INTO product_events (product_id, version, event_type, payload, occurred_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(version)
            .bind(event.name())
            .bind(serde_json::to_string(event)?)
            .bind(time::to_db(&time::now()))
            .execute(tx.conn())
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(AppendError::Concurrency),
                Err(e) => return Err(e.into()),
            }
        }
        for v in &after.variants {
            sqlx::query(
                "INSERT INTO skus (sku, product_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&v.sku)
            .bind(&id)
            .execute(tx.conn())
            .await?;
            let (owner,): (String,) = sqlx::query_as("SELECT product_id FROM skus WHERE sku = $1")
                .bind(&v.sku)
                .fetch_one(tx.conn())
                .await?;
            if owner != id {
                return Err(AppendError::SkuTaken(v.sku.clone()));
            }
        }
        let version = before.version + events.len() as i64;
        sqlx::query(
            "INSERT INTO products (id, seller_id, title, description, category, status, variants, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, description = excluded.description,
                category = excluded.category, status = excluded.status, variants = excluded.variants,
                version = excluded.version, updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(after.seller_id.to_string())
        .bind(&after.title)
        .bind(&after.description)
        .bind(&after.category)
        .bind(status_str(after.status))
        .bind(serde_json::to_string(&after.variants)?)
        .bind(version)
        .bind(time::to_db(&after.created_at))
        .bind(time::to_db(&after.updated_at))
        .execute(tx.conn())
        .await?;
        self.outbox.add(&mut tx, integration).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<Product>> {
        let row: Option<ProductRow> = sqlx::query_as(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(product_from_row).transpose()
    }

    /// Newest first.
    pub async fn list(
        &self,
        filter: &ProductFilter,
        page: &PageRequest,
    ) -> anyhow::Result<Page<Product>> {
        let mut sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, value: String| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(c) = &filter.category {
            bind(&mut sql, " AND category = ?", c.clone());
        }
        if let Some(s) = filter.seller_id {
            bind(&mut sql, " AND seller_id = ?", s.to_string());
        }
        if let Some(s) = filter.status {
            bind(&mut sql, " AND status = ?", status_str(s).to_owned());
        }
        if let Some(after) = &page.after {
            bind(&mut sql, " AND id < ?", after.clone());
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            i64::from(page.limit) + 1
        ));
        let mut query = sqlx::query_as::<_, ProductRow>(&sql);
        for a in args {
            query = query.bind(a);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        let products = rows
            .into_iter()
            .map(product_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(products, page.limit, |p| p.id.to_string()))
    }

    /// What a SKU is, for carts and orders.
    pub async fn sku(&self, sku: &str) -> anyhow::Result<Option<SkuInfo>> {
        let row: Option<ProductRow> = sqlx::query_as(&format!(
            "SELECT {} FROM skus s JOIN products p ON p.id = s.product_id WHERE s.sku = $1",
            PRODUCT_COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(sku)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(product) = row.map(product_from_row).transpose()? else {
            return Ok(None);
        };
        Ok(product
            .variants
            .iter()
            .find(|v| v.sku == sku)
            .map(|v| SkuInfo {
                sku: v.sku.clone(),
                product_id: product.id,
                seller_id: product.seller_id,
                title: if v.title == product.title {
                    product.title.clone()
                } else {
                    format!("{} - {}", product.title, v.title)
                },
                price: v.price.clone(),
                status: product.status,
                category: product.category.clone(),
                prices: v.prices.clone(),
            }))
    }

    /// Every product in the projection, oldest first, for read-model rebuilds.
    pub async fn all(&self, after: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<Product>> {
        let rows: Vec<ProductRow> = sqlx::query_as(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter().map(product_from_row).collect()
    }
}
