//! Event payloads, by publishing context. Names are past tense; a change that
//! breaks a payload's shape gets a new schema version.

use crate::types::{Line, Product, SkuQuantity};
use chrono::{DateTime, Utc};
use mercato_kernel::auth::Role;
use mercato_kernel::event::DomainEvent;
use mercato_kernel::Money;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! event {
    ($ty:ident, $name:literal) => {
        impl DomainEvent for $ty {
            const TYPE: &'static str = $name;
        }
    };
}

// identity

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
}
event!(UserRegistered, "user.registered");

/// A user changed their profile (the name; a new password is not told).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
}
event!(UserUpdated, "user.updated");

/// A user erased their account: every context drops or anonymises what it
/// holds of the person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserErased {
    pub user_id: Uuid,
}
event!(UserErased, "user.erased");

/// A user changed what they want to be told, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPreferencesChanged {
    pub user_id: Uuid,
    pub email: bool,
    pub sms: bool,
    pub push: bool,
    pub marketing: bool,
}
event!(UserPreferencesChanged, "user.preferences_changed");

// catalog

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductCreated {
    pub product: Product,
    /// The product's version after the change: how many catalog events it
    /// has had. It grows with every change, so a consumer that keeps the
    /// product's state can tell an older event arriving late from a newer
    /// one. 0 in events published before versions were carried.
    #[serde(default)]
    pub version: i64,
}
event!(ProductCreated, "product.created");

/// Carries the whole new state, so read models need no call back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductUpdated {
    pub product: Product,
    /// The product's version after the change (see
    /// [`ProductCreated::version`]).
    #[serde(default)]
    pub version: i64,
}
event!(ProductUpdated, "product.updated");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceChanged {
    pub product_id: Uuid,
    pub sku: String,
    pub old_price: Money,
    pub new_price: Money,
    /// The product's version after the change (see
    /// [`ProductCreated::version`]).
    #[serde(default)]
    pub version: i64,
}
event!(PriceChanged, "price.changed");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductArchived {
    pub product_id: Uuid,
    pub skus: Vec<String>,
    /// The product's version after the change (see
    /// [`ProductCreated::version`]).
    #[serde(default)]
    pub version: i64,
}
event!(ProductArchived, "product.archived");

// inventory

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockChanged {
    pub sku: String,
    pub available: i64,
    pub reserved: i64,
    /// The SKU's stock version after the change: a SKU's events are ordered
    /// by it. 0 in events written before it existed.
    #[serde(default)]
    pub version: i64,
}
event!(StockChanged, "stock.changed");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockLow {
    pub sku: String,
    pub available: i64,
}
event!(StockLow, "stock.low");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryReserved {
    pub reservation_id: Uuid,
    pub lines: Vec<SkuQuantity>,
    pub expires_at: DateTime<Utc>,
}
event!(InventoryReserved, "inventory.reserved");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryReleased {
    pub reservation_id: Uuid,
    /// `requested`, `expired`.
    pub reason: String,
}
event!(InventoryReleased, "inventory.released");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryCommitted {
    pub reservation_id: Uuid,
}
event!(InventoryCommitted, "inventory.committed");

// cart

/// The cart gave up what an order bought.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartCheckedOut {
    pub customer_id: Uuid,
    pub order_id: Uuid,
}
event!(CartCheckedOut, "cart.checked_out");

// orders

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub items: Vec<Line>,
    pub total: Money,
}
event!(OrderPlaced, "order.placed");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub items: Vec<Line>,
    pub total: Money,
}
event!(OrderConfirmed, "order.confirmed");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub reason: String,
    pub total: Money,
}
event!(OrderCancelled, "order.cancelled");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: Uuid,
    pub customer_id: Uuid,
}
event!(OrderShipped, "order.shipped");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderDelivered {
    pub order_id: Uuid,
    pub customer_id: Uuid,
}
event!(OrderDelivered, "order.delivered");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRefunded {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Money,
}
event!(OrderRefunded, "order.refunded");

/// Part of an order's money went back (an amount, or a return's share); the
/// order is not refunded in full yet (`order.refunded` says when it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPartiallyRefunded {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub refund_id: Uuid,
    pub amount: Money,
    /// What was refunded of the order so far, this included.
    pub refunded_total: Money,
    /// The return the money is for, if any.
    pub return_id: Option<Uuid>,
}
event!(OrderPartiallyRefunded, "order.partially_refunded");

/// A customer asked to send items of a delivered order back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnRequested {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub items: Vec<crate::types::SkuQuantity>,
}
event!(ReturnRequested, "return.requested");

// payments

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount: Money,
}
event!(PaymentCaptured, "payment.captured");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub reason: String,
}
event!(PaymentFailed, "payment.failed");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount: Money,
}
event!(PaymentRefunded, "payment.refunded");

// pricing

/// An order holds one use of a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRedeemed {
    pub promotion_id: Uuid,
    pub code: String,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// Uses of the promotion, this one included.
    pub times_used: i64,
}
event!(PromotionRedeemed, "promotion.redeemed");

/// A cancelled order gave its use of a promotion back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionReleased {
    pub promotion_id: Uuid,
    pub code: String,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// Uses of the promotion left after this one was given back.
    pub times_used: i64,
}
event!(PromotionReleased, "promotion.released");

// subscriptions

/// A customer subscribed: the first order is placed with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionCreated {
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    pub items: Vec<SkuQuantity>,
    /// `week` or `month`.
    pub interval: String,
    pub next_renewal_at: DateTime<Utc>,
}
event!(SubscriptionCreated, "subscription.created");

/// An order of a subscription's period was placed (the first, a renewal,
/// or another attempt after a declined one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRenewalPlaced {
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    pub order_id: Uuid,
    /// 0 for the first order, then one more per interval.
    pub period: i64,
    /// 1 for the first try of the period.
    pub attempt: i64,
}
event!(SubscriptionRenewalPlaced, "subscription.renewal_placed");

/// An order of a subscription's period was cancelled or refused: it is
/// tried again after a pause, or the subscription is past due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRenewalFailed {
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    pub order_id: Uuid,
    pub period: i64,
    pub attempt: i64,
    /// The order's cancel reason (`payment_failed`, ...) or the refusal's code.
    pub reason: String,
    /// Failed attempts in a row, this one included.
    pub failed_attempts: i64,
}
event!(SubscriptionRenewalFailed, "subscription.renewal_failed");

/// Every attempt of a period failed: the subscription places nothing more
/// until it is renewed or resumed, and the customer is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionPastDue {
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    /// The order of the last failed attempt.
    pub order_id: Uuid,
    pub failed_attempts: i64,
    pub reason: String,
}
event!(SubscriptionPastDue, "subscription.past_due");

/// A subscription was paused, resumed or cancelled (`status` is the new one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionStatusChanged {
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    /// `active`, `paused` or `cancelled`.
    pub status: String,
}
event!(SubscriptionStatusChanged, "subscription.status_changed");

// reviews

/// A review came into its product's rating (written, or approved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPublished {
    pub review_id: Uuid,
    pub product_id: Uuid,
    pub seller_id: Option<Uuid>,
    pub author_id: Uuid,
    pub rating: i64,
}
event!(ReviewPublished, "review.published");

/// A published review left its product's rating (rejected, or deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRemoved {
    pub review_id: Uuid,
    pub product_id: Uuid,
    pub author_id: Uuid,
}
event!(ReviewRemoved, "review.removed");

/// A product's rating, after a review came in or left. `version` grows
/// with every change of the product's rating: a consumer keeps the newest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingChanged {
    pub product_id: Uuid,
    pub seller_id: Option<Uuid>,
    /// The mean of the published reviews, to two decimals; 0 without any.
    pub average: f64,
    pub count: i64,
    pub version: i64,
}
event!(RatingChanged, "rating.changed");

// recommendations

/// A subject saw an experiment's variant for the first time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentExposed {
    pub experiment: String,
    /// A user id, or the subject a client gave (a session id).
    pub subject: String,
    pub variant: String,
}
event!(ExperimentExposed, "experiment.exposed");

// interactions, recorded by the gateway (see crate::interactions)

fn once() -> u64 {
    1
}

/// A visitor opened a product's page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductViewed {
    pub customer_id: Option<Uuid>,
    pub session_id: Option<String>,
    pub product_id: Uuid,
    /// How many times the visitor did it within the recorder's window (see
    /// `crate::interactions`); 1 when absent.
    #[serde(default = "once")]
    pub count: u64,
}
event!(ProductViewed, "interaction.product_viewed");

/// A visitor searched for words; `results` is how many products matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPerformed {
    pub customer_id: Option<Uuid>,
    pub session_id: Option<String>,
    pub query: String,
    pub results: u64,
    /// How many times the visitor did it within the recorder's window (see
    /// `crate::interactions`); 1 when absent.
    #[serde(default = "once")]
    pub count: u64,
}
event!(SearchPerformed, "interaction.searched");

/// A customer put a SKU in their cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartItemAdded {
    pub customer_id: Option<Uuid>,
    pub session_id: Option<String>,
    pub product_id: Uuid,
    pub sku: String,
    pub quantity: i64,
    /// How many times the visitor did it within the recorder's window (see
    /// `crate::interactions`); 1 when absent.
    #[serde(default = "once")]
    pub count: u64,
}
event!(CartItemAdded, "interaction.cart_added");

/// A customer checked out: the order is placed, its saga running. A client
/// repeating the checkout with its key records it again, for the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutStarted {
    pub customer_id: Option<Uuid>,
    pub session_id: Option<String>,
    pub order_id: Uuid,
    /// How many times the visitor did it within the recorder's window (see
    /// `crate::interactions`); 1 when absent.
    #[serde(default = "once")]
    pub count: u64,
}
event!(CheckoutStarted, "interaction.checkout_started");

// notifications

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSent {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub template: String,
    pub channel: String,
}
event!(NotificationSent, "notification.sent");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationFailed {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub template: String,
    pub error: String,
}
event!(NotificationFailed, "notification.failed");
