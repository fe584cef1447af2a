//! Value types shared across contexts.

use chrono::{DateTime, Utc};
use mercato_kernel::{ApiError, Currency, Money};
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
    /// Its price in other currencies, one each.
    #[serde(default)]
    pub prices: Vec<Money>,
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
    /// The slugs of the product's category and its ancestors, root first
    /// (`["kitchen", "cups"]`): filters by a category include its
    /// subcategories.
    #[serde(default)]
    pub category_path: Vec<String>,
    pub status: ProductStatus,
    pub variants: Vec<Variant>,
    /// Pictures of the product, shown in this order.
    #[serde(default)]
    pub images: Vec<Image>,
    /// What its published reviews add up to (kept by catalog from
    /// `rating.changed`; zero in catalog's own events).
    #[serde(default)]
    pub rating: Rating,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The published reviews of a product, summed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rating {
    /// The mean rating, 1 to 5 to two decimals; 0 without reviews.
    pub average: f64,
    pub count: i64,
}

/// A picture of a product: where it is, and what it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    /// An `http` or `https` URL, at most 2,000 characters.
    #[schema(
        max_length = 2000,
        pattern = "^https?://[^\\s]+$",
        example = "https://cdn.example.com/cup.jpg"
    )]
    pub url: String,
    /// What it shows, for people who cannot see it: at most 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub alt: String,
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
    /// The product's category (promotions may be limited to some).
    #[serde(default)]
    pub category: String,
    /// Its price in other currencies, one each.
    #[serde(default)]
    pub prices: Vec<Money>,
}

impl SkuInfo {
    /// What it costs in `currency`, if it is sold in it.
    pub fn price_in(&self, currency: &Currency) -> Option<&Money> {
        std::iter::once(&self.price)
            .chain(&self.prices)
            .find(|p| p.currency == *currency)
    }
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

/// A line as pricing sees it: what it is, and what it costs before any
/// discount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku: String,
    pub category: String,
    pub quantity: i64,
    pub line_total: Money,
}

/// What a quote is asked for: a cart's lines in its currency, its code, and
/// where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteRequest {
    /// Whose cart: a code's per-customer limit counts this customer's uses.
    pub customer_id: Option<Uuid>,
    pub currency: Currency,
    pub lines: Vec<PricedLine>,
    /// The promotion code on the cart.
    pub code: Option<String>,
    /// The destination's country (ISO 3166-1 alpha-2); none for a cart that
    /// has no address yet: then no shipping and no tax.
    pub country: Option<String>,
    /// The shipping method chosen; none for the cheapest one.
    pub shipping_method: Option<Uuid>,
}

/// A discount a promotion gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Discount {
    pub code: String,
    pub description: String,
    /// Off the lines (zero for free shipping, which shows as a zero
    /// `shipping_total` instead).
    pub amount: Money,
}

/// The shipping method an order goes by, and what it costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippingCharge {
    pub id: Uuid,
    pub name: String,
    /// What it costs this order: zero when free over a subtotal or by a
    /// promotion.
    pub amount: Money,
}

/// A tax on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaxLine {
    pub name: String,
    /// The rate in basis points (1,900 is 19 %).
    pub rate_bps: i64,
    pub amount: Money,
}

/// The promotion a quote applied, as the checkout saga redeems it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPromotion {
    pub id: Uuid,
    pub code: String,
}

/// What a cart or an order costs, computed in one place (the pricing
/// context). Always `total = subtotal - discount_total + shipping_total +
/// tax_total`, every amount in `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub currency: Currency,
    pub subtotal: Money,
    pub discount_total: Money,
    pub shipping_total: Money,
    pub tax_total: Money,
    pub total: Money,
    pub discounts: Vec<Discount>,
    pub shipping_method: Option<ShippingCharge>,
    pub tax_lines: Vec<TaxLine>,
    /// The promotion applied, if any.
    pub promotion: Option<AppliedPromotion>,
}

impl Quote {
    /// The quote of lines that nothing applies to: no discount, no
    /// shipping, no tax.
    pub fn plain(subtotal: Money) -> Self {
        let zero = Money::zero(subtotal.currency.clone());
        Self {
            currency: subtotal.currency.clone(),
            total: subtotal.clone(),
            subtotal,
            discount_total: zero.clone(),
            shipping_total: zero.clone(),
            tax_total: zero,
            discounts: Vec::new(),
            shipping_method: None,
            tax_lines: Vec::new(),
            promotion: None,
        }
    }
}

/// Every field but `line2` is 1 to 200 characters, not only white space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippingAddress {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "Ada Lovelace"
    )]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "1 Main St"
    )]
    pub line1: String,
    /// At most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub line2: Option<String>,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S", example = "London")]
    pub city: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S", example = "N1 9GU")]
    pub postal_code: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S", example = "GB")]
    pub country: String,
}

/// The most units of one SKU on a line of a cart or an order: larger
/// amounts are wholesale, and a bound keeps every line total far from
/// overflowing.
pub const MAX_LINE_QUANTITY: i64 = 999;

/// What an erased person's address keeps: the country, for the books.
const ERASED: &str = "erased";

/// 422 unless a payment token is 1 to 200 characters, not only white
/// space; the token without surrounding space.
pub fn payment_token(raw: &str) -> Result<&str, ApiError> {
    let token = raw.trim();
    if token.is_empty() || raw.chars().count() > 200 {
        return Err(ApiError::validation(
            "payment.token must be 1 to 200 characters",
        ));
    }
    Ok(token)
}

impl ShippingAddress {
    /// The address of a person who erased their account: nothing but the
    /// country.
    pub fn erased(&self) -> ShippingAddress {
        ShippingAddress {
            name: ERASED.into(),
            line1: ERASED.into(),
            line2: None,
            city: ERASED.into(),
            postal_code: ERASED.into(),
            country: self.country.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        for (field, value) in [
            ("name", &self.name),
            ("line1", &self.line1),
            ("city", &self.city),
            ("postal_code", &self.postal_code),
            ("country", &self.country),
        ] {
            if value.trim().is_empty() || value.chars().count() > 200 {
                return Err(ApiError::validation(format!(
                    "shipping_address.{field} must be 1 to 200 characters"
                )));
            }
        }
        if self.line2.as_ref().is_some_and(|l| l.chars().count() > 200) {
            return Err(ApiError::validation(
                "shipping_address.line2 must be at most 200 characters",
            ));
        }
        Ok(())
    }
}

/// A warehouse name: 1 to 64 of `a-z`, `0-9`, `_`, `-` (inventory's stock,
/// and where a received return goes back on hand).
pub fn is_warehouse_name(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An order another context places for a customer (a subscription's
/// renewal): these lines, to this address, paid with this token, through
/// the checkout saga, without a cart. The caller picks the order's id: a
/// repeat with the same id is the same order, never a second one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// The subscription the order renews.
    pub subscription_id: Uuid,
    pub items: Vec<SkuQuantity>,
    pub payment_token: String,
    pub shipping_address: ShippingAddress,
}

/// The order a [`PlaceOrder`] placed, as it stands: `pending`, or already
/// `confirmed` or `cancelled` (with its reason) on a repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub order_id: Uuid,
    pub status: String,
    #[serde(default)]
    pub cancel_reason: Option<String>,
}

// reviews

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Shown, and counted in ratings.
    Published,
    /// Waiting for an admin: it tripped moderation.
    Pending,
    /// Not shown.
    Rejected,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Published => "published",
            ReviewStatus::Pending => "pending",
            ReviewStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "published" => ReviewStatus::Published,
            "pending" => ReviewStatus::Pending,
            "rejected" => ReviewStatus::Rejected,
            _ => return None,
        })
    }
}

/// A review as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Review {
    pub id: Uuid,
    pub product_id: Uuid,
    /// The name the author goes by (`erased` once they erased their account).
    pub author_name: String,
    /// 1 to 5.
    pub rating: i64,
    pub title: String,
    pub body: String,
    pub status: ReviewStatus,
    /// The author bought the product (only buyers may review).
    pub verified_purchase: bool,
    pub helpful_votes: i64,
    pub unhelpful_votes: i64,
    pub created_at: DateTime<Utc>,
}

/// The published reviews of a product, summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductRating {
    /// The mean rating, to two decimals; 0 without reviews.
    pub average: f64,
    pub count: i64,
    /// How many reviews gave each rating, `"1"` to `"5"`.
    #[schema(value_type = Object, example = json!({"1": 0, "2": 0, "3": 1, "4": 2, "5": 5}))]
    pub distribution: BTreeMap<String, i64>,
}

// recommendations

/// One recommended product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    pub product_id: Uuid,
    pub title: String,
    /// Its lowest price.
    pub price: Money,
    /// How strongly it is recommended: the orders that held both
    /// (`bought_together`), the share of title words (`similar`), units
    /// sold (`best_seller`).
    pub score: f64,
    /// `bought_together`, `similar` or `best_seller`.
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendations {
    pub items: Vec<Recommendation>,
}

// the storefront

/// Whether `s` has the shape of a SKU: 1 to 64 letters, digits, `-`, `_`
/// or `.` (the catalog refuses any other).
pub fn is_sku(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// What of a SKU can be bought now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkuStock {
    pub sku: String,
    /// Units not reserved; 0 for a SKU without stock.
    pub available: i64,
}

/// A product's stock over its SKUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductStock {
    /// Units of all its SKUs not reserved.
    pub available: i64,
    pub skus: Vec<SkuStock>,
}

/// A product's rating and its most helpful published reviews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductReviews {
    pub rating: ProductRating,
    pub reviews: Vec<Review>,
}
