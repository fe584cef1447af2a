//! The catalog's event store and its current-state projection.

use crate::domain::{slugify, CatalogEvent, ProductAggregate};
use mercato_contracts::types::{Product, ProductStatus, Rating, SkuInfo, Variant};
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
    Option<String>,
    Option<String>,
    Option<String>,
);
const PRODUCT_COLUMNS: &str =
    "id, seller_id, title, description, category, status, variants, created_at, updated_at, category_path, images, rating";

/// A category as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Category {
    pub slug: String,
    pub name: String,
    /// The parent's slug; null for a top-level category.
    pub parent: Option<String>,
    /// The slugs from the root to this one, joined by `/`.
    pub path: String,
}

/// Why a category could not be made.
#[derive(Debug)]
pub enum CategoryError {
    /// The slug is taken.
    Exists,
    /// No category has the parent's slug.
    UnknownParent,
    Store(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for CategoryError {
    fn from(e: E) -> Self {
        CategoryError::Store(e.into())
    }
}

fn status_str(s: ProductStatus) -> &'static str {
    match s {
        ProductStatus::Active => "active",
        ProductStatus::Archived => "archived",
    }
}

fn product_from_row(row: ProductRow) -> anyhow::Result<Product> {
    let (
        id,
        seller_id,
        title,
        description,
        category,
        status,
        variants,
        created_at,
        updated_at,
        category_path,
        images,
        rating,
    ) = row;
    Ok(Product {
        category_path: category_path
            .map(|p| serde_json::from_str(&p))
            .transpose()?
            .unwrap_or_default(),
        images: images
            .map(|i| serde_json::from_str(&i))
            .transpose()?
            .unwrap_or_default(),
        rating: rating
            .map(|r| serde_json::from_str(&r))
            .transpose()?
            .unwrap_or_default(),
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
            "INSERT INTO products (id, seller_id, title, description, category, status, variants, version, created_at, updated_at,
                category_slug, category_path, images)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, description = excluded.description,
                category = excluded.category, status = excluded.status, variants = excluded.variants,
                version = excluded.version, updated_at = excluded.updated_at,
                category_slug = excluded.category_slug, category_path = excluded.category_path,
                images = excluded.images",
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
        .bind(slugify(&after.category))
        .bind(serde_json::to_string(&after.category_path)?)
        .bind(serde_json::to_string(&after.images)?)
        .execute(tx.conn())
        .await?;
        self.outbox.add(&mut tx, integration).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keeps the rating reviews told of a product, unless a newer one is
    /// kept already; `true` when it was kept.
    pub async fn set_rating(
        &self,
        product_id: Uuid,
        rating: &Rating,
        version: i64,
    ) -> anyhow::Result<bool> {
        let query = sqlx::query(
            "UPDATE products SET rating = $2, rating_version = $3 WHERE id = $1 AND rating_version < $3",
        )
        .bind(product_id.to_string())
        .bind(serde_json::to_string(rating)?)
        .bind(version);
        Ok(self.db.execute(query).await?.rows_affected() == 1)
    }

    /// The rating kept of a product (zero when it has none).
    pub async fn rating(&self, product_id: Uuid) -> anyhow::Result<Rating> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT rating FROM products WHERE id = $1")
                .bind(product_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row
            .and_then(|(r,)| r)
            .map(|r| serde_json::from_str(&r))
            .transpose()?
            .unwrap_or_default())
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
            // The category and every category under it (slugs hold no `%`
            // nor `_`).
            bind(
                &mut sql,
                " AND (category_slug = ? OR category_slug IN (SELECT c.slug FROM categories c
                   JOIN categories root ON root.slug = ? WHERE c.path LIKE root.path || '/%'))",
                slugify(c),
            );
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

    /// The path of the category `name` names, making it at top level when
    /// there is none yet.
    pub async fn ensure_category(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let slug = slugify(name);
        if slug.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(path) = self.category_path(&slug).await? {
            return Ok(path);
        }
        let query = sqlx::query(
            "INSERT INTO categories (slug, name, parent, path, created_at) VALUES ($1, $2, NULL, $1, $3)
             ON CONFLICT (slug) DO NOTHING",
        )
        .bind(&slug)
        .bind(name.trim())
        .bind(time::to_db(&time::now()));
        self.db.execute(query).await?;
        Ok(self
            .category_path(&slug)
            .await?
            .unwrap_or_else(|| vec![slug]))
    }

    async fn category_path(&self, slug: &str) -> anyhow::Result<Option<Vec<String>>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT path FROM categories WHERE slug = $1")
            .bind(slug)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(|(p,)| p.split('/').map(str::to_owned).collect()))
    }

    /// Makes a category under `parent` (a slug), or at top level.
    pub async fn create_category(
        &self,
        slug: &str,
        name: &str,
        parent: Option<&str>,
    ) -> Result<Category, CategoryError> {
        let path = match parent {
            None => slug.to_owned(),
            Some(p) => match self.category_path(p).await? {
                Some(mut path) => {
                    path.push(slug.to_owned());
                    path.join("/")
                }
                None => return Err(CategoryError::UnknownParent),
            },
        };
        let query = sqlx::query(
            "INSERT INTO categories (slug, name, parent, path, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (slug) DO NOTHING",
        )
        .bind(slug)
        .bind(name)
        .bind(parent)
        .bind(&path)
        .bind(time::to_db(&time::now()));
        if self.db.execute(query).await?.rows_affected() == 0 {
            return Err(CategoryError::Exists);
        }
        Ok(Category {
            slug: slug.to_owned(),
            name: name.to_owned(),
            parent: parent.map(str::to_owned),
            path,
        })
    }

    /// Every category, by path (a parent before its children).
    pub async fn categories(&self) -> anyhow::Result<Vec<Category>> {
        let rows: Vec<(String, String, Option<String>, String)> =
            sqlx::query_as("SELECT slug, name, parent, path FROM categories ORDER BY path")
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(slug, name, parent, path)| Category {
                slug,
                name,
                parent,
                path,
            })
            .collect())
    }

    /// Products written before categories had slugs and paths: their
    /// category made (at top level when new) and their columns filled.
    /// Returns how many products it filled.
    pub async fn backfill_categories(&self) -> anyhow::Result<usize> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, category FROM products WHERE category_slug IS NULL")
                .fetch_all(self.db.pool())
                .await?;
        for (id, category) in &rows {
            let path = self.ensure_category(category).await?;
            let query = sqlx::query(
                "UPDATE products SET category_slug = $2, category_path = $3 WHERE id = $1 AND category_slug IS NULL",
            )
            .bind(id)
            .bind(slugify(category))
            .bind(serde_json::to_string(&path)?);
            self.db.execute(query).await?;
        }
        Ok(rows.len())
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
