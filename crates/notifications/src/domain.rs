//! What a notification is: its template, its status, and what the API shows.

use chrono::{DateTime, Utc};
use mercato_kernel::Money;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The one channel there is today. The local sink stands in for SMTP when
/// none is configured, so the channel a person sees is still e-mail.
pub const EMAIL: &str = "email";

/// Which message a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    OrderRefunded,
    /// Every attempt at a subscription's order failed.
    SubscriptionPastDue,
}

impl Template {
    pub const ALL: [Template; 5] = [
        Template::OrderConfirmed,
        Template::OrderCancelled,
        Template::OrderShipped,
        Template::OrderRefunded,
        Template::SubscriptionPastDue,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Template::OrderConfirmed => "order_confirmed",
            Template::OrderCancelled => "order_cancelled",
            Template::OrderShipped => "order_shipped",
            Template::OrderRefunded => "order_refunded",
            Template::SubscriptionPastDue => "subscription_past_due",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Waiting to be delivered (or to be tried again).
    Pending,
    Sent,
    /// Every attempt failed; it will not be tried again.
    Failed,
    /// Not sent: the user switched its channel off.
    Skipped,
}

impl NotificationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sent => "sent",
            NotificationStatus::Failed => "failed",
            NotificationStatus::Skipped => "skipped",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(NotificationStatus::Pending),
            "sent" => Some(NotificationStatus::Sent),
            "failed" => Some(NotificationStatus::Failed),
            "skipped" => Some(NotificationStatus::Skipped),
            _ => None,
        }
    }
}

/// Someone who can be told something: a registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    /// The user takes e-mail (`user.preferences_changed`; on until said).
    pub email_enabled: bool,
}

/// A message rendered for a recipient, not yet stored.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The event that caused it; with the template, its de-duplication key.
    pub event_id: Uuid,
    pub template: Template,
    pub recipient: Recipient,
    pub subject: String,
    pub body: String,
    pub order_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A message handed to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutgoingMessage {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub template: String,
    pub to_email: String,
    pub to_name: String,
    pub subject: String,
    pub body: String,
}

/// A notification as its recipient sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    /// How it is delivered: `email`.
    #[schema(example = "email")]
    pub channel: String,
    /// `order_confirmed`, `order_cancelled`, `order_shipped`, `order_refunded`
    /// or `subscription_past_due`.
    #[schema(example = "order_confirmed")]
    pub template: String,
    pub subject: String,
    pub status: NotificationStatus,
    /// The order it is about.
    pub order_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// Digits after the decimal point of a currency (ISO 4217 minor units).
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// Minor units as a decimal amount with its currency: `1999 EUR` is `19.99 EUR`.
/// Integer arithmetic only, as everywhere on the money path.
pub fn format_money(money: &Money) -> String {
    let digits = minor_digits(money.currency.as_str());
    let sign = if money.amount < 0 { "-" } else { "" };
    let abs = money.amount.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs} {}", money.currency);
    }
    let scale = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$} {}",
        abs / scale,
        abs % scale,
        money.currency,
        width = digits as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_kernel::Currency;

    fn money(amount: i64, currency: &str) -> Money {
        Money::new(amount, Currency::parse(currency).expect("valid currency"))
    }

    #[test]
    fn amounts_are_shown_in_major_units_with_their_currency() {
        assert_eq!(format_money(&money(1999, "EUR")), "19.99 EUR");
        assert_eq!(format_money(&money(5, "USD")), "0.05 USD");
        assert_eq!(format_money(&money(0, "EUR")), "0.00 EUR");
        assert_eq!(format_money(&money(-250, "EUR")), "-2.50 EUR");
        assert_eq!(format_money(&money(1500, "JPY")), "1500 JPY");
        assert_eq!(format_money(&money(1234, "KWD")), "1.234 KWD");
        assert_eq!(
            format_money(&money(i64::MIN, "EUR")),
            "-92233720368547758.08 EUR"
        );
    }

    #[test]
    fn templates_and_statuses_round_trip_through_their_names() {
        for t in Template::ALL {
            assert_eq!(Template::parse(t.as_str()), Some(t));
        }
        assert_eq!(Template::parse("order_placed"), None);
        for s in [
            NotificationStatus::Pending,
            NotificationStatus::Sent,
            NotificationStatus::Failed,
        ] {
            assert_eq!(NotificationStatus::parse(s.as_str()), Some(s));
        }
    }
}
