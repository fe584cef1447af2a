//! Value types shared across contexts.

use chrono::{DateTime, Utc};
use mercato_kernel::Money;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    Active,
    Archived,
}

/// A sellable variant of a product, identified by its shop-wide SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Variant {
    pub sku: String,
    pub title: String,
    pub price: Money,
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: Uuid,
    pub seller_id: Uuid,
    pub title: String,
    pub description: String,
    pub category: String,
    pub status: ProductStatus,
    pub variants: Vec<Variant>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What another context needs to know about a SKU to sell it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkuInfo {
    pub sku: String,
    pub product_id: Uuid,
    pub seller_id: Uuid,
    /// Product title, with the variant's title when it has its own.
    pub title: String,
    pub price: Money,
    pub status: ProductStatus,
}

/// One line of a cart or an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Line {
    pub sku: String,
    pub product_id: Uuid,
    pub title: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

/// A quantity of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuQuantity {
    pub sku: String,
    pub quantity: i64,
}
