//! Report ranges and periods, the reports' shapes, and their CSV.

use chrono::{Datelike, Days, Months, NaiveDate, NaiveTime};
use mercato_kernel::time::{parse_instant, Timestamp};
use mercato_kernel::{ApiError, Money};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The longest range a report covers.
pub const MAX_RANGE_DAYS: i64 = 3660;
/// The range of a report that names none: the last 30 days.
pub const DEFAULT_RANGE_DAYS: u64 = 30;

/// A report's time range: from (included) to (excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// What a range bound looks like: a date the calendar has, or an instant as
/// [`mercato_kernel::time::INSTANT_PATTERN`] says (the same with its time of
/// day optional). The same text is the `pattern` of `from` and `to` in the
/// OpenAPI document.
pub const BOUND_PATTERN: &str = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$";

/// `2026-12-01`, exactly.
fn date(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    let n = |r: std::ops::Range<usize>| raw.get(r).and_then(|s| s.parse::<u32>().ok());
    NaiveDate::from_ymd_opt(i32::try_from(n(0..4)?).ok()?, n(5..7)?, n(8..10)?)
}

/// A range bound as a client gives it: a date (`2026-12-01`, the start of
/// that day in UTC; for `to`, the end of it) or an RFC 3339 instant.
fn bound(name: &str, raw: Option<&str>, end: bool) -> Result<Option<Timestamp>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if let Some(day) = date(raw) {
        let day = if end {
            day.checked_add_days(Days::new(1))
        } else {
            Some(day)
        };
        return Ok(day.map(|d| d.and_time(NaiveTime::MIN).and_utc()));
    }
    parse_instant(raw).map(Some).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query",
            format!("{name} must be a date (2026-12-01) or an RFC 3339 instant, got {raw:?}"),
        )
    })
}

impl Range {
    /// `from` and `to` as a client gave them; the last 30 days up to `now`
    /// for what is missing.
    pub fn parse(from: Option<&str>, to: Option<&str>, now: Timestamp) -> Result<Range, ApiError> {
        let to = bound("to", to, true)?.unwrap_or(now);
        let from = match bound("from", from, false)? {
            Some(from) => from,
            None => to
                .checked_sub_days(Days::new(DEFAULT_RANGE_DAYS))
                .unwrap_or(to),
        };
        if from >= to {
            return Err(ApiError::unprocessable(
                "invalid_range",
                "from must be before to",
            ));
        }
        if (to - from).num_days() > MAX_RANGE_DAYS {
            return Err(ApiError::unprocessable(
                "invalid_range",
                format!("a report covers at most {MAX_RANGE_DAYS} days"),
            ));
        }
        Ok(Range { from, to })
    }
}

/// How a sales report groups days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    /// Weeks start on Monday (ISO 8601).
    Week,
    Month,
}

impl Interval {
    pub fn parse(raw: Option<&str>) -> Result<Interval, ApiError> {
        match raw.unwrap_or("day") {
            "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            "month" => Ok(Interval::Month),
            other => Err(ApiError::bad_request(
                "invalid_query",
                format!("interval must be day, week or month, got {other:?}"),
            )),
        }
    }

    /// The first day of the period `day` is in.
    pub fn start_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            Interval::Day => day,
            Interval::Week => day
                .checked_sub_days(Days::new(u64::from(day.weekday().num_days_from_monday())))
                .unwrap_or(day),
            Interval::Month => day.with_day(1).unwrap_or(day),
        }
    }

    /// The first day of the period after the one starting on `start`.
    pub fn next(self, start: NaiveDate) -> Option<NaiveDate> {
        match self {
            Interval::Day => start.checked_add_days(Days::new(1)),
            Interval::Week => start.checked_add_days(Days::new(7)),
            Interval::Month => start.checked_add_months(Months::new(1)),
        }
    }
}

/// Search words as they are counted: lower case, single spaces, at most
/// 200 characters.
pub fn normalize_query(raw: &str) -> String {
    raw.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .chars()
        .take(200)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SalesReport {
    /// Periods with orders or refunds, oldest first; one per currency.
    pub items: Vec<SalesPeriod>,
}

/// What a period sold. For a seller: their lines only, before order
/// discounts, shipping and tax; refunds in proportion to their lines.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SalesPeriod {
    /// The period's first day (UTC); weeks start on Monday.
    #[schema(format = Date, example = "2026-12-01")]
    pub period_start: String,
    /// Orders confirmed in the period.
    pub orders: i64,
    /// Units those orders held.
    pub units: i64,
    /// What those orders came to.
    pub revenue: Money,
    /// What was refunded in the period, of any order.
    pub refunds: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TopProducts {
    /// Most units first.
    pub items: Vec<TopProduct>,
}

/// A product's sales in confirmed orders (one item per currency).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TopProduct {
    pub product_id: Uuid,
    pub title: String,
    pub units: i64,
    /// Its lines' totals, before order discounts, shipping and tax.
    pub revenue: Money,
}

/// From looking to buying. For a seller: views and cart additions of their
/// products, and checkouts and confirmed orders holding any of them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Funnel {
    /// Product pages served.
    pub product_views: i64,
    /// Additions to carts.
    pub add_to_cart: i64,
    /// Orders checked out (placed), each once.
    pub checkouts: i64,
    /// Orders confirmed (paid).
    pub confirmed_orders: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SearchTerms {
    /// Most searched first.
    pub items: Vec<SearchTerm>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SearchTerm {
    /// The words, lower-cased.
    pub query: String,
    /// How often they were searched.
    pub searches: i64,
    /// The most products a search for them found; 0 when none ever did.
    pub results: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClientEventCounts {
    /// Most frequent first.
    pub items: Vec<ClientEventCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClientEventCount {
    /// The type a client gave.
    #[serde(rename = "type")]
    pub event_type: String,
    pub events: i64,
}

/// A report as CSV: a header row, then a row per item. Money is two
/// columns: the amount in minor units and its currency.
pub trait Csv {
    fn csv(&self) -> String;
}

fn field(s: &str) -> String {
    // A leading sign could make a spreadsheet take the text for a formula.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn table(header: &str, rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = format!("{header}\r\n");
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| field(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

impl Csv for SalesReport {
    fn csv(&self) -> String {
        table(
            "period_start,currency,orders,units,revenue,refunds",
            self.items.iter().map(|p| {
                vec![
                    p.period_start.clone(),
                    p.revenue.currency.to_string(),
                    p.orders.to_string(),
                    p.units.to_string(),
                    p.revenue.amount.to_string(),
                    p.refunds.amount.to_string(),
                ]
            }),
        )
    }
}

impl Csv for TopProducts {
    fn csv(&self) -> String {
        table(
            "product_id,title,units,revenue,currency",
            self.items.iter().map(|p| {
                vec![
                    p.product_id.to_string(),
                    p.title.clone(),
                    p.units.to_string(),
                    p.revenue.amount.to_string(),
                    p.revenue.currency.to_string(),
                ]
            }),
        )
    }
}

impl Csv for Funnel {
    fn csv(&self) -> String {
        table(
            "product_views,add_to_cart,checkouts,confirmed_orders",
            std::iter::once(vec![
                self.product_views.to_string(),
                self.add_to_cart.to_string(),
                self.checkouts.to_string(),
                self.confirmed_orders.to_string(),
            ]),
        )
    }
}

impl Csv for SearchTerms {
    fn csv(&self) -> String {
        table(
            "query,searches,results",
            self.items.iter().map(|t| {
                vec![
                    t.query.clone(),
                    t.searches.to_string(),
                    t.results.to_string(),
                ]
            }),
        )
    }
}

impl Csv for ClientEventCounts {
    fn csv(&self) -> String {
        table(
            "type,events",
            self.items
                .iter()
                .map(|e| vec![e.event_type.clone(), e.events.to_string()]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date")
    }

    #[test]
    fn periods_start_on_their_first_day() {
        assert_eq!(
            Interval::Week.start_of(day("2026-12-03")),
            day("2026-11-30")
        );
        assert_eq!(
            Interval::Week.start_of(day("2026-11-30")),
            day("2026-11-30")
        );
        assert_eq!(
            Interval::Month.start_of(day("2026-12-31")),
            day("2026-12-01")
        );
        assert_eq!(Interval::Day.start_of(day("2026-12-31")), day("2026-12-31"));
        assert_eq!(
            Interval::Month.next(day("2026-12-01")),
            Some(day("2027-01-01"))
        );
    }

    #[test]
    fn a_range_takes_dates_and_instants() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
            .single()
            .expect("a time");
        let r = Range::parse(Some("2026-11-01"), Some("2026-11-30"), now).expect("range");
        assert_eq!(
            r.from,
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .expect("a time")
        );
        assert_eq!(
            r.to,
            chrono::Utc
                .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                .single()
                .expect("a time")
        );
        let r = Range::parse(None, None, now).expect("range");
        assert_eq!(r.to, now);
        assert_eq!((r.to - r.from).num_days(), 30);
        let r = Range::parse(Some("2026-12-01T10:00:00Z"), None, now).expect("range");
        assert_eq!(
            r.from,
            chrono::Utc
                .with_ymd_and_hms(2026, 12, 1, 10, 0, 0)
                .single()
                .expect("a time")
        );
        assert_eq!(
            Range::parse(Some("yesterday"), None, now)
                .expect_err("refused")
                .code,
            "invalid_query"
        );
        assert_eq!(
            Range::parse(Some("2026-12-02"), Some("2026-12-01"), now)
                .expect_err("refused")
                .code,
            "invalid_range"
        );
        assert!(Range::parse(Some(""), None, now).is_err());
        assert!(Range::parse(Some("2026-2-01"), None, now).is_err());
        assert!(Range::parse(Some("2026-02-30"), None, now).is_err());
    }

    /// The document states the bounds the server takes: the kernel's
    /// instants, with the time of day optional.
    #[test]
    fn the_bound_pattern_is_the_kernels_with_an_optional_time() {
        let instant = mercato_kernel::time::INSTANT_PATTERN;
        let optional = instant
            .replace(r")T(?:[01]\d", r")(?:T(?:[01]\d")
            .replace(r":[0-5]\d)$", r":[0-5]\d))?$");
        assert_eq!(optional, BOUND_PATTERN);
    }

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let terms = SearchTerms {
            items: vec![SearchTerm {
                query: "=cmd, \"x\"".into(),
                searches: 2,
                results: 0,
            }],
        };
        assert_eq!(
            terms.csv(),
            "query,searches,results\r\n\"'=cmd, \"\"x\"\"\",2,0\r\n"
        );
    }

    #[test]
    fn queries_are_counted_in_one_form() {
        assert_eq!(normalize_query("  Blue   MUG "), "blue mug");
    }
}
