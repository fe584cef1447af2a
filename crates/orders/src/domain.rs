//! Orders and their state machine.

use chrono::{DateTime, Utc};
use mercato_contracts::types::{AppliedPromotion, Discount, Line, Quote, ShippingCharge, TaxLine};
use mercato_kernel::{ApiError, Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Cancelled,
    Shipped,
    Delivered,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OrderStatus::Pending,
            "confirmed" => OrderStatus::Confirmed,
            "cancelled" => OrderStatus::Cancelled,
            "shipped" => OrderStatus::Shipped,
            "delivered" => OrderStatus::Delivered,
            "refunded" => OrderStatus::Refunded,
            _ => return None,
        })
    }

    /// The lifecycle of the contract.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Confirmed)
                | (Pending, Cancelled)
                | (Confirmed, Cancelled)
                | (Confirmed, Shipped)
                | (Shipped, Delivered)
                | (Confirmed, Refunded)
                | (Shipped, Refunded)
                | (Delivered, Refunded)
        )
    }

    /// 409 unless `self` may become `next`.
    pub fn check(self, next: OrderStatus) -> Result<(), ApiError> {
        if self.can_become(next) {
            Ok(())
        } else if self == OrderStatus::Pending {
            Err(ApiError::conflict(
                "order_pending",
                "the order is still being placed; try again in a moment",
            ))
        } else {
            Err(ApiError::conflict(
                "invalid_transition",
                format!("a {} order cannot become {}", self.as_str(), next.as_str()),
            ))
        }
    }
}

pub mod cancel_reason {
    pub const OUT_OF_STOCK: &str = "out_of_stock";
    pub const PAYMENT_FAILED: &str = "payment_failed";
    pub const CUSTOMER_CANCELLED: &str = "customer_cancelled";
    /// The promotion code ran out while the order raced for it.
    pub const PROMOTION_UNAVAILABLE: &str = "promotion_unavailable";
}

pub use mercato_contracts::types::ShippingAddress;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentSummary {
    /// `pending`, `captured`, `declined`, `failed`, `refunded`, `voided` or `not_required`.
    pub status: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub status: OrderStatus,
    pub at: DateTime<Utc>,
}

/// An order as the API shows it. `total = subtotal - discount_total +
/// shipping_total + tax_total`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// `out_of_stock`, `payment_failed`, `promotion_unavailable`,
    /// `customer_cancelled` or null.
    pub cancel_reason: Option<String>,
    pub items: Vec<Line>,
    /// The lines' total.
    pub subtotal: Money,
    pub discount_total: Money,
    pub shipping_total: Money,
    pub tax_total: Money,
    /// What the customer is charged.
    pub total: Money,
    pub currency: Currency,
    /// What the promotion code took off.
    pub discounts: Vec<Discount>,
    /// The shipping method and what it cost; null when the shop has none.
    pub shipping_method: Option<ShippingCharge>,
    pub tax_lines: Vec<TaxLine>,
    /// Money given back so far; at most `total`.
    pub refunded_total: Money,
    /// The promotion redeemed for the order, for the saga.
    #[serde(skip)]
    pub promotion: Option<AppliedPromotion>,
    pub payment: PaymentSummary,
    pub shipping_address: ShippingAddress,
    /// The subscription that placed the order; null for a cart's checkout.
    pub subscription_id: Option<Uuid>,
    pub history: Vec<HistoryEntry>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What checking out would charge: the cart's lines and the totals of the
/// order a checkout would place now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckoutQuote {
    pub items: Vec<Line>,
    pub subtotal: Money,
    pub discount_total: Money,
    pub shipping_total: Money,
    pub tax_total: Money,
    pub total: Money,
    pub currency: Currency,
    pub discounts: Vec<Discount>,
    pub shipping_method: Option<ShippingCharge>,
    pub tax_lines: Vec<TaxLine>,
}

impl CheckoutQuote {
    pub fn new(items: Vec<Line>, q: Quote) -> Self {
        Self {
            items,
            subtotal: q.subtotal,
            discount_total: q.discount_total,
            shipping_total: q.shipping_total,
            tax_total: q.tax_total,
            total: q.total,
            currency: q.currency,
            discounts: q.discounts,
            shipping_method: q.shipping_method,
            tax_lines: q.tax_lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn the_lifecycle_is_the_contracts() {
        let all = [Pending, Confirmed, Cancelled, Shipped, Delivered, Refunded];
        let allowed = [
            (Pending, Confirmed),
            (Pending, Cancelled),
            (Confirmed, Cancelled),
            (Confirmed, Shipped),
            (Shipped, Delivered),
            (Confirmed, Refunded),
            (Shipped, Refunded),
            (Delivered, Refunded),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn terminal_states_go_nowhere() {
        for to in [Pending, Confirmed, Cancelled, Shipped, Delivered, Refunded] {
            assert!(!Cancelled.can_become(to));
            assert!(!Refunded.can_become(to));
        }
    }

    #[test]
    fn pending_orders_answer_with_a_specific_conflict() {
        assert_eq!(
            Pending.check(Shipped).map_err(|e| e.code.into_owned()),
            Err("order_pending".into())
        );
        assert_eq!(
            Cancelled.check(Shipped).map_err(|e| e.code.into_owned()),
            Err("invalid_transition".into())
        );
    }

    #[test]
    fn addresses_need_every_field() {
        let ok = ShippingAddress {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
        };
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.city = "  ".into();
        assert!(bad.validate().is_err());
    }
}
