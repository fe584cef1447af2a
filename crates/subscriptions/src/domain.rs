//! Subscriptions, their periods and their rules.

use chrono::{DateTime, Months, Utc};
use mercato_contracts::types::ShippingAddress;
use mercato_kernel::ApiError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use utoipa::ToSchema;
use uuid::Uuid;

/// Attempts at a period's order, the first included: after the last fails
/// the subscription is `past_due`.
pub const MAX_ATTEMPTS: i64 = 3;

/// At most this many lines on a subscription.
pub const MAX_ITEMS: usize = 50;

/// At most this many units of one SKU (as on an order line).
pub const MAX_QUANTITY: i64 = 999;

/// How often an order is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Week,
    Month,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            _ => None,
        }
    }

    /// When period `n` starts, counted from `anchor` (period 0). Months
    /// keep the anchor's day, or the month's last when it has fewer days.
    pub fn period_start(self, anchor: DateTime<Utc>, n: i64) -> Option<DateTime<Utc>> {
        match self {
            Interval::Week => anchor.checked_add_signed(chrono::Duration::try_weeks(n)?),
            Interval::Month => anchor.checked_add_months(Months::new(u32::try_from(n).ok()?)),
        }
    }

    /// The first period after `after` whose start is later than `now`: a
    /// subscription that was paused or not served for a while places one
    /// order for now, not one for every period it missed.
    pub fn next_period(
        self,
        anchor: DateTime<Utc>,
        after: i64,
        now: DateTime<Utc>,
    ) -> Option<(i64, DateTime<Utc>)> {
        let mut n = after.checked_add(1)?;
        // Close to the answer in one step, then walk.
        let elapsed_days = (now - anchor).num_days().max(0);
        let estimate = match self {
            Interval::Week => elapsed_days / 7,
            Interval::Month => elapsed_days / 31,
        };
        n = n.max(estimate);
        loop {
            let start = self.period_start(anchor, n)?;
            if start > now {
                return Some((n, start));
            }
            n = n.checked_add(1)?;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Places an order every period.
    Active,
    /// Places nothing until resumed.
    Paused,
    /// Every attempt at a period's order failed: places nothing until
    /// renewed or resumed.
    PastDue,
    /// Places nothing, for good.
    Cancelled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Paused => "paused",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => SubscriptionStatus::Active,
            "paused" => SubscriptionStatus::Paused,
            "past_due" => SubscriptionStatus::PastDue,
            "cancelled" => SubscriptionStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A SKU and how many of it every period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionItem {
    /// A SKU of an active product: 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64, pattern = r"\S", example = "MUG-RED")]
    pub sku: String,
    /// 1 to 999.
    #[schema(minimum = 1, maximum = 999, example = 1)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub quantity: i64,
}

/// A subscription as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: SubscriptionStatus,
    pub items: Vec<SubscriptionItem>,
    pub interval: Interval,
    /// When the next period starts and its order is placed (unless `renew`
    /// placed it earlier).
    pub next_renewal_at: DateTime<Utc>,
    /// The ids of every order placed for it, oldest first (a declined one
    /// and the attempts after it included).
    pub orders: Vec<Uuid>,
    /// Failed attempts at a period's order in a row; back to 0 when an
    /// order is confirmed.
    pub failed_attempts: i64,
    pub shipping_address: ShippingAddress,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// 422 unless the lines are 1 to [`MAX_ITEMS`] SKUs, each 1 to
/// [`MAX_QUANTITY`] units (`validation_failed`), none listed twice
/// (`duplicate_sku`: a rule between items the schema cannot state).
pub fn validate_items(items: &[SubscriptionItem]) -> Result<(), ApiError> {
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ApiError::validation(format!(
            "items must hold 1 to {MAX_ITEMS} lines"
        )));
    }
    let mut seen = BTreeSet::new();
    for item in items {
        let sku = item.sku.trim();
        if sku.is_empty() || item.sku.chars().count() > 64 {
            return Err(ApiError::validation("a sku is 1 to 64 characters"));
        }
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(ApiError::validation(format!(
                "quantity of {sku} must be 1 to {MAX_QUANTITY}"
            )));
        }
        if !seen.insert(sku) {
            return Err(ApiError::unprocessable(
                "duplicate_sku",
                format!("{sku} is listed twice; give each SKU once with its quantity"),
            ));
        }
    }
    Ok(())
}

/// How long after the `failed`-th failed attempt the next is made:
/// `base`, then four times as long each time.
pub fn retry_delay(base: std::time::Duration, failed: i64) -> std::time::Duration {
    let exponent = u32::try_from(failed.saturating_sub(1).clamp(0, 8)).unwrap_or(0);
    base.saturating_mul(4u32.saturating_pow(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 9, 0, 0)
            .single()
            .expect("a date")
    }

    #[test]
    fn months_keep_the_day_or_take_the_last() {
        let jan31 = at(2026, 1, 31);
        assert_eq!(
            Interval::Month.period_start(jan31, 1),
            Some(at(2026, 2, 28))
        );
        assert_eq!(
            Interval::Month.period_start(jan31, 2),
            Some(at(2026, 3, 31))
        );
        assert_eq!(Interval::Week.period_start(jan31, 2), Some(at(2026, 2, 14)));
        assert_eq!(
            Interval::Week.period_start(jan31, -1),
            Some(at(2026, 1, 24))
        );
        assert_eq!(Interval::Month.period_start(jan31, -1), None);
    }

    #[test]
    fn the_next_period_skips_the_missed_ones() {
        let anchor = at(2026, 1, 1);
        // Due now: the next one is a week on.
        assert_eq!(
            Interval::Week.next_period(anchor, 1, at(2026, 1, 8)),
            Some((2, at(2026, 1, 15)))
        );
        // Five weeks not served: one order for now, the next after now.
        assert_eq!(
            Interval::Week.next_period(anchor, 1, at(2026, 2, 9)),
            Some((6, at(2026, 2, 12)))
        );
        assert_eq!(
            Interval::Month.next_period(anchor, 1, at(2026, 1, 20)),
            Some((2, at(2026, 3, 1)))
        );
        assert_eq!(
            Interval::Month.next_period(anchor, 0, at(2026, 7, 2)),
            Some((7, at(2026, 8, 1)))
        );
    }

    #[test]
    fn items_are_distinct_and_within_limits() {
        let item = |sku: &str, quantity| SubscriptionItem {
            sku: sku.into(),
            quantity,
        };
        assert!(validate_items(&[item("A", 1), item("B", 999)]).is_ok());
        assert!(validate_items(&[]).is_err());
        assert!(validate_items(&[item("A", 0)]).is_err());
        assert!(validate_items(&[item("A", 1000)]).is_err());
        assert!(validate_items(&[item(" ", 1)]).is_err());
        assert!(validate_items(&[item("A", 1), item("A", 2)]).is_err());
        let many: Vec<_> = (0..=MAX_ITEMS).map(|i| item(&format!("S{i}"), 1)).collect();
        assert!(validate_items(&many).is_err());
    }

    #[test]
    fn retries_wait_longer_each_time() {
        let base = std::time::Duration::from_secs(60);
        assert_eq!(retry_delay(base, 1), base);
        assert_eq!(retry_delay(base, 2), base * 4);
        assert_eq!(retry_delay(base, 3), base * 16);
        assert_eq!(retry_delay(base, 0), base);
    }
}
