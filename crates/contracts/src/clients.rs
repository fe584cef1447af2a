//! How one context calls another. Each trait is implemented in process by the
//! owning context (embedded mode) and over HTTP (distributed mode).

use crate::types::{
    Line, PlaceOrder, PlacedOrder, Product, ProductReviews, Quote, QuoteRequest, Recommendation,
    ShippingAddress, SkuInfo, SkuQuantity, SkuStock,
};
use async_trait::async_trait;
use mercato_kernel::Money;
use std::time::Duration;
use uuid::Uuid;

/// Why a call to another context failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The callee did not answer in time; the outcome is unknown.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The callee is down or its circuit is open.
    #[error("{0} is unavailable: {1}")]
    Unavailable(&'static str, String),
    /// The callee answered with an error.
    #[error("{0} failed: {1}")]
    Failed(&'static str, String),
    /// The callee refused as things stand, with a verdict for the person
    /// who asked: its code and message, passed on as they are (a cart
    /// holding a line that cannot be bought, say).
    #[error("{0} refused: {1} {2}")]
    Rejected(&'static str, String, String),
}

pub type ClientResult<T> = Result<T, ClientError>;

/// Identity, as the checkout (saved addresses) and every context's token
/// check (a user's standing) see it.
#[async_trait]
pub trait IdentityClient: Send + Sync + 'static {
    /// One of the user's saved addresses: the one with `id`, or the
    /// default for `None`; `None` when the user has no such address.
    async fn address(
        &self,
        user_id: Uuid,
        id: Option<Uuid>,
    ) -> ClientResult<Option<ShippingAddress>>;
    /// A user's role and whether the account is disabled; `None` when
    /// there is no such user.
    async fn access(&self, user_id: Uuid) -> ClientResult<Option<Access>>;
}

/// What a user may do now, whatever their tokens say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Access {
    pub role: mercato_kernel::auth::Role,
    pub disabled: bool,
}

/// Catalog, as cart, orders and the storefront see it.
#[async_trait]
pub trait CatalogClient: Send + Sync + 'static {
    /// What a SKU is and costs now; `None` when no product has it.
    async fn sku(&self, sku: &str) -> ClientResult<Option<SkuInfo>>;
    /// A product as its page shows it; `None` when there is none.
    async fn product(&self, id: Uuid) -> ClientResult<Option<Product>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved,
    /// Nothing was reserved: this SKU has too little stock.
    OutOfStock {
        sku: String,
    },
}

/// Inventory, as the checkout saga sees it. Every operation is keyed by the
/// reservation id and idempotent.
#[async_trait]
pub trait InventoryClient: Send + Sync + 'static {
    /// Reserves every line or none. Repeating it returns the first outcome.
    async fn reserve(
        &self,
        reservation_id: Uuid,
        lines: &[SkuQuantity],
        ttl: Duration,
    ) -> ClientResult<ReserveOutcome>;
    /// Gives reserved stock back; a no-op when already released or never made.
    async fn release(&self, reservation_id: Uuid) -> ClientResult<()>;
    /// Turns the reservation into sold stock.
    async fn commit(&self, reservation_id: Uuid) -> ClientResult<()>;
    /// Puts committed stock back on hand (a refund or a cancellation after
    /// commit): what is still sold, less what [`Self::restock_part`] put back.
    async fn restock(&self, reservation_id: Uuid) -> ClientResult<()>;
    /// Puts part of the sold stock back on hand (a return): `lines` into
    /// `warehouse`, or where each SKU was first taken from. Once per
    /// `restock_id`; refused ([`ClientError::Failed`]) beyond what is still
    /// sold.
    async fn restock_part(
        &self,
        reservation_id: Uuid,
        restock_id: Uuid,
        lines: &[SkuQuantity],
        warehouse: Option<&str>,
    ) -> ClientResult<()>;
    /// What of each SKU can be bought now, in the order asked (0 for a SKU
    /// without stock).
    async fn stock(&self, skus: &[String]) -> ClientResult<Vec<SkuStock>>;
}

/// Reviews, as the storefront sees them.
#[async_trait]
pub trait ReviewsClient: Send + Sync + 'static {
    /// A product's rating and its `limit` most helpful published reviews.
    async fn product_reviews(&self, product_id: Uuid, limit: u32) -> ClientResult<ProductReviews>;
}

/// Recommendations, as the storefront sees them.
#[async_trait]
pub trait RecommendationsClient: Send + Sync + 'static {
    /// What to show beside a product, best first, at most `limit`.
    async fn for_product(&self, product_id: Uuid, limit: u32) -> ClientResult<Vec<Recommendation>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Captured { payment_id: Uuid },
    Declined { payment_id: Uuid, reason: String },
}

/// What undoing an order's payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOutcome {
    /// No money was ever taken (no charge, or a declined one).
    NothingTaken,
    /// A pending charge was voided at the provider.
    Voided,
    /// Captured money went back.
    Refunded,
}

/// Payments, as the checkout saga sees it. Keyed by order id and idempotent.
#[async_trait]
pub trait PaymentsClient: Send + Sync + 'static {
    async fn charge(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        amount: &Money,
        token: &str,
    ) -> ClientResult<ChargeOutcome>;
    /// Refunds whatever was captured for the order and not refunded yet, or
    /// voids a charge whose outcome is unknown; a no-op when nothing was taken.
    async fn refund(&self, order_id: Uuid) -> ClientResult<RefundOutcome>;
    /// Refunds `amount` of the order's captured money, once per `refund_id`
    /// (a repeat is a no-op); refused ([`ClientError::Failed`]) beyond what
    /// was captured and not refunded yet.
    async fn refund_part(
        &self,
        order_id: Uuid,
        refund_id: Uuid,
        amount: &Money,
    ) -> ClientResult<()>;
}

/// What a checkout takes from a cart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CartContents {
    /// Every line, priced now.
    pub lines: Vec<Line>,
    /// The promotion code on the cart.
    #[serde(default)]
    pub promotion_code: Option<String>,
}

/// Cart, as the checkout sees it.
#[async_trait]
pub trait CartClient: Send + Sync + 'static {
    /// The customer's cart lines, priced now, and its promotion code; a
    /// refusal (`line_unavailable`) naming the first line that cannot be
    /// bought with the others.
    async fn contents(&self, customer_id: Uuid) -> ClientResult<CartContents>;
    /// Empties the cart of what the order bought; idempotent per order.
    async fn checked_out(
        &self,
        customer_id: Uuid,
        order_id: Uuid,
        bought: &[SkuQuantity],
    ) -> ClientResult<()>;
}

/// What redeeming a promotion for an order came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// The order holds one use of the promotion.
    Redeemed,
    /// Nothing was redeemed: the code ran out (in all or for this customer),
    /// was disabled or expired, or the order's redemption was given back
    /// before it arrived.
    Unavailable { reason: String },
}

/// Pricing, as the cart and the checkout see it.
#[async_trait]
pub trait PricingClient: Send + Sync + 'static {
    /// What the lines cost with the code, shipping and tax. Refused
    /// ([`ClientError::Rejected`]) with `promotion_not_applicable` or
    /// `shipping_unavailable`.
    async fn quote(&self, request: &QuoteRequest) -> ClientResult<Quote>;
    /// Redeems one use of a promotion for an order by a conditional atomic
    /// update, never past its limits. Repeating it for the order returns the
    /// first outcome.
    async fn redeem(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        promotion_id: Uuid,
    ) -> ClientResult<RedeemOutcome>;
    /// Gives an order's use back; a no-op when it holds none or gave it back
    /// already. A redemption of the order arriving later is refused.
    async fn release(&self, order_id: Uuid) -> ClientResult<()>;
}

/// Orders, as the contexts that place orders for customers (subscriptions)
/// see them.
#[async_trait]
pub trait OrdersClient: Send + Sync + 'static {
    /// Places the order and starts its checkout saga; a repeat with the
    /// same `order_id` answers with that order as it stands now. Refused
    /// ([`ClientError::Rejected`]) when it cannot be placed: a SKU that
    /// cannot be bought (`sku_unavailable`), an address nobody ships to
    /// (`shipping_unavailable`), lines out of their rules
    /// (`validation_failed`).
    async fn place(&self, request: &PlaceOrder) -> ClientResult<PlacedOrder>;
}
