//! Inventory rules that need no store: valid warehouse names and quantities,
//! how a requested quantity is spread over warehouses, what each reservation
//! status allows, and when stock counts as low.

use mercato_contracts::types::SkuQuantity;
use mercato_kernel::ApiError;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The warehouse stock goes to when none is named, and the first one a
/// reservation draws from.
pub const MAIN_WAREHOUSE: &str = "main";

/// The most a single warehouse may hold of one SKU; keeps every sum far from overflow.
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// A validated warehouse name: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warehouse(String);

impl Warehouse {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        if mercato_contracts::types::is_warehouse_name(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::validation(format!(
                "warehouse {raw:?} must be 1 to 64 characters of a-z, 0-9, '_' or '-'"
            )))
        }
    }

    pub fn main() -> Self {
        Self(MAIN_WAREHOUSE.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An on-hand quantity a person may set.
pub fn validate_on_hand(quantity: i64) -> Result<i64, ApiError> {
    if !(0..=MAX_QUANTITY).contains(&quantity) {
        return Err(ApiError::validation(format!(
            "quantity must be an integer from 0 to {MAX_QUANTITY}"
        )));
    }
    Ok(quantity)
}

/// Stock of one SKU as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Stock {
    pub sku: String,
    /// On hand minus reserved, summed over warehouses.
    pub available: i64,
    pub reserved: i64,
    pub warehouses: Vec<WarehouseStock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WarehouseStock {
    pub warehouse: String,
    pub on_hand: i64,
    pub reserved: i64,
}

impl Stock {
    /// Sums the rows of one SKU; `rows` come in any order and leave in
    /// allocation order (`main` first, then by name).
    pub fn from_rows(sku: &str, mut rows: Vec<WarehouseStock>) -> Self {
        rows.sort_by(|a, b| allocation_order(&a.warehouse, &b.warehouse));
        let on_hand: i64 = rows.iter().map(|w| w.on_hand).sum();
        let reserved: i64 = rows.iter().map(|w| w.reserved).sum();
        Self {
            sku: sku.to_owned(),
            available: on_hand - reserved,
            reserved,
            warehouses: rows,
        }
    }
}

/// `main` first, then the others by name: the order reservations draw in.
pub fn allocation_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a != MAIN_WAREHOUSE, a).cmp(&(b != MAIN_WAREHOUSE, b))
}

/// Why a reservation request cannot even be attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinesError {
    Empty,
    NotPositive(String),
    TooLarge(String),
}

impl std::fmt::Display for LinesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinesError::Empty => write!(f, "a reservation needs at least one line"),
            LinesError::NotPositive(sku) => write!(f, "quantity of {sku:?} must be at least 1"),
            LinesError::TooLarge(sku) => {
                write!(f, "quantity of {sku:?} must be at most {MAX_QUANTITY}")
            }
        }
    }
}

/// Merges lines of the same SKU and orders them by SKU, so that concurrent
/// reservations lock rows in the same order and cannot deadlock.
pub fn normalize_lines(lines: &[SkuQuantity]) -> Result<Vec<(String, i64)>, LinesError> {
    if lines.is_empty() {
        return Err(LinesError::Empty);
    }
    let mut merged: BTreeMap<String, i64> = BTreeMap::new();
    for line in lines {
        if line.quantity < 1 {
            return Err(LinesError::NotPositive(line.sku.clone()));
        }
        let total = merged.entry(line.sku.clone()).or_default();
        *total = total.saturating_add(line.quantity);
        if *total > MAX_QUANTITY {
            return Err(LinesError::TooLarge(line.sku.clone()));
        }
    }
    Ok(merged.into_iter().collect())
}

/// How to take `need` units from warehouses with the given available
/// counts, drawing in allocation order. `None` when together they hold too
/// little. The counts are only a hint: each take is then applied as a
/// conditional update that re-checks availability.
pub fn plan_allocation(need: i64, available: &[(String, i64)]) -> Option<Vec<(String, i64)>> {
    let mut sources: Vec<&(String, i64)> = available.iter().filter(|(_, a)| *a > 0).collect();
    sources.sort_by(|a, b| allocation_order(&a.0, &b.0));
    let mut left = need;
    let mut plan = Vec::new();
    for (warehouse, avail) in sources {
        if left == 0 {
            break;
        }
        let take = left.min(*avail);
        plan.push((warehouse.clone(), take));
        left -= take;
    }
    (left == 0).then_some(plan)
}

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Stock is held until commit, release or expiry.
    Held,
    /// Held stock was given back (requested or expired).
    Released,
    /// Held stock was sold.
    Committed,
    /// Sold stock was put back on hand.
    Restocked,
    /// The first attempt found too little stock; nothing was held.
    OutOfStock,
}

impl ReservationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReservationStatus::Held => "held",
            ReservationStatus::Released => "released",
            ReservationStatus::Committed => "committed",
            ReservationStatus::Restocked => "restocked",
            ReservationStatus::OutOfStock => "out_of_stock",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "held" => ReservationStatus::Held,
            "released" => ReservationStatus::Released,
            "committed" => ReservationStatus::Committed,
            "restocked" => ReservationStatus::Restocked,
            "out_of_stock" => ReservationStatus::OutOfStock,
            _ => return None,
        })
    }

    /// What `commit` does in this status (`None`: the reservation is unknown).
    pub fn on_commit(status: Option<Self>) -> Transition {
        match status {
            Some(ReservationStatus::Held) => Transition::Apply,
            Some(ReservationStatus::Committed) => Transition::AlreadyDone,
            Some(ReservationStatus::Released) => {
                Transition::Refuse("the reservation was released (or expired) before commit")
            }
            Some(ReservationStatus::Restocked) => {
                Transition::Refuse("the reservation was committed and then restocked")
            }
            Some(ReservationStatus::OutOfStock) => {
                Transition::Refuse("the reservation holds nothing: it was out of stock")
            }
            None => Transition::Refuse("no such reservation"),
        }
    }

    /// What `release` does: only held stock can be given back; in any other
    /// status there is nothing to release, and committed stock comes back
    /// through `restock`.
    pub fn on_release(status: Option<Self>) -> Transition {
        match status {
            Some(ReservationStatus::Held) => Transition::Apply,
            _ => Transition::AlreadyDone,
        }
    }

    /// What `restock` does: only sold stock can be put back; in any other
    /// status nothing was sold, so there is nothing to do.
    pub fn on_restock(status: Option<Self>) -> Transition {
        match status {
            Some(ReservationStatus::Committed) => Transition::Apply,
            _ => Transition::AlreadyDone,
        }
    }
}

/// The decision an operation takes for a reservation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Apply,
    /// Nothing to do: the effect already happened or cannot apply; succeed.
    AlreadyDone,
    /// The operation cannot succeed; the caller must compensate.
    Refuse(&'static str),
}

/// Whether a change of available stock from `before` to `after` is the one
/// that takes it below `threshold`; staying low does not repeat the signal.
pub fn fell_below(before: i64, after: i64, threshold: i64) -> bool {
    before >= threshold && after < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: i64) -> SkuQuantity {
        SkuQuantity {
            sku: sku.into(),
            quantity,
        }
    }

    fn avail(rows: &[(&str, i64)]) -> Vec<(String, i64)> {
        rows.iter().map(|(w, a)| ((*w).to_owned(), *a)).collect()
    }

    #[test]
    fn warehouse_names_are_short_lowercase_words() {
        for ok in ["main", "eu-west_2", "a", &"x".repeat(64)] {
            assert!(Warehouse::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Main", "with space", "é", "a.b", &"x".repeat(65)] {
            let e = Warehouse::parse(bad).expect_err(bad);
            assert_eq!(e.status.as_u16(), 422);
        }
    }

    #[test]
    fn on_hand_is_never_negative() {
        assert_eq!(validate_on_hand(0).ok(), Some(0));
        assert_eq!(validate_on_hand(MAX_QUANTITY).ok(), Some(MAX_QUANTITY));
        assert!(validate_on_hand(-1).is_err());
        assert!(validate_on_hand(MAX_QUANTITY + 1).is_err());
    }

    #[test]
    fn lines_are_merged_sorted_and_positive() {
        let got = normalize_lines(&[line("B", 1), line("A", 2), line("B", 3)]);
        assert_eq!(got, Ok(vec![("A".into(), 2), ("B".into(), 4)]));
        assert_eq!(normalize_lines(&[]), Err(LinesError::Empty));
        assert_eq!(
            normalize_lines(&[line("A", 1), line("B", 0)]),
            Err(LinesError::NotPositive("B".into()))
        );
        assert_eq!(
            normalize_lines(&[line("A", MAX_QUANTITY), line("A", 1)]),
            Err(LinesError::TooLarge("A".into()))
        );
    }

    #[test]
    fn allocation_takes_main_first_then_others_by_name() {
        let stock = avail(&[("zeta", 5), ("alpha", 5), ("main", 3)]);
        assert_eq!(
            plan_allocation(10, &stock),
            Some(vec![
                ("main".into(), 3),
                ("alpha".into(), 5),
                ("zeta".into(), 2)
            ])
        );
        assert_eq!(plan_allocation(2, &stock), Some(vec![("main".into(), 2)]));
    }

    #[test]
    fn allocation_skips_empty_warehouses_and_refuses_shortfalls() {
        let stock = avail(&[("main", 0), ("b", 2), ("a", -1)]);
        assert_eq!(plan_allocation(2, &stock), Some(vec![("b".into(), 2)]));
        assert_eq!(plan_allocation(3, &stock), None);
        assert_eq!(plan_allocation(1, &[]), None);
    }

    #[test]
    fn stock_sums_warehouses_in_allocation_order() {
        let s = Stock::from_rows(
            "S",
            vec![
                WarehouseStock {
                    warehouse: "b".into(),
                    on_hand: 4,
                    reserved: 1,
                },
                WarehouseStock {
                    warehouse: "main".into(),
                    on_hand: 6,
                    reserved: 2,
                },
            ],
        );
        assert_eq!((s.available, s.reserved), (7, 3));
        assert_eq!(s.warehouses[0].warehouse, "main");
        let empty = Stock::from_rows("S", vec![]);
        assert_eq!((empty.available, empty.reserved), (0, 0));
        assert!(empty.warehouses.is_empty());
    }

    #[test]
    fn commit_applies_to_held_repeats_quietly_and_refuses_the_rest() {
        use ReservationStatus::*;
        assert_eq!(ReservationStatus::on_commit(Some(Held)), Transition::Apply);
        assert_eq!(
            ReservationStatus::on_commit(Some(Committed)),
            Transition::AlreadyDone
        );
        for s in [Some(Released), Some(Restocked), Some(OutOfStock), None] {
            assert!(
                matches!(ReservationStatus::on_commit(s), Transition::Refuse(_)),
                "{s:?}"
            );
        }
    }

    #[test]
    fn release_and_restock_are_no_ops_outside_their_status() {
        use ReservationStatus::*;
        for s in [Held, Released, Committed, Restocked, OutOfStock] {
            let release = ReservationStatus::on_release(Some(s));
            assert_eq!(release == Transition::Apply, s == Held, "{s:?}");
            let restock = ReservationStatus::on_restock(Some(s));
            assert_eq!(restock == Transition::Apply, s == Committed, "{s:?}");
        }
        assert_eq!(ReservationStatus::on_release(None), Transition::AlreadyDone);
        assert_eq!(ReservationStatus::on_restock(None), Transition::AlreadyDone);
    }

    #[test]
    fn statuses_round_trip() {
        use ReservationStatus::*;
        for s in [Held, Released, Committed, Restocked, OutOfStock] {
            assert_eq!(ReservationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ReservationStatus::parse("nope"), None);
    }

    #[test]
    fn low_stock_is_signalled_once_when_crossing_the_threshold() {
        assert!(fell_below(5, 4, 5));
        assert!(fell_below(100, 0, 5));
        assert!(!fell_below(4, 3, 5), "already low");
        assert!(!fell_below(6, 5, 5), "not below yet");
        assert!(!fell_below(3, 10, 5), "rising");
    }
}
