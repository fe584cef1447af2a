//! Cart lines and how they are priced.

use mercato_contracts::types::{Discount, Line, PricedLine, ProductStatus, Quote, SkuInfo};
use mercato_kernel::time::Timestamp;
use mercato_kernel::{ApiError, Currency, Money};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

pub use mercato_contracts::types::MAX_LINE_QUANTITY;

/// The longest SKU the catalog issues; anything longer cannot be one.
pub const MAX_SKU_LEN: usize = 64;

/// A line as stored: what the customer chose, without prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub sku: String,
    pub quantity: i64,
    pub added_at: Timestamp,
}

/// A cart as the API shows it, priced now. `total = subtotal -
/// discount_total + shipping_total + tax_total`; shipping and tax are
/// known once there is an address (`POST /checkout/quote`), so on the cart
/// they are zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cart {
    /// In the order they were first added, every line the cart holds.
    pub items: Vec<CartItem>,
    /// What every line the cart can sell costs in `currency`.
    pub subtotal: Money,
    pub discount_total: Money,
    pub shipping_total: Money,
    pub tax_total: Money,
    pub total: Money,
    /// The cart's currency: its earliest line's (the shop's when empty).
    pub currency: Currency,
    /// What the promotion code takes off.
    pub discounts: Vec<Discount>,
    /// The code on the cart; it shows no discount in `discounts` while it
    /// cannot apply (`promotion_note` says why), and checkout refuses it.
    pub promotion_code: Option<String>,
    /// Why the code does not apply to the cart as it is, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_note: Option<String>,
}

impl Cart {
    /// The cart with the totals of a quote of its lines.
    pub fn with_quote(self, quote: Quote) -> Cart {
        Cart {
            subtotal: quote.subtotal,
            discount_total: quote.discount_total,
            shipping_total: quote.shipping_total,
            tax_total: quote.tax_total,
            total: quote.total,
            currency: quote.currency,
            discounts: quote.discounts,
            ..self
        }
    }

    /// The lines the cart can sell, as pricing sees them.
    pub fn priced_lines(&self, skus: &HashMap<String, SkuInfo>) -> Vec<PricedLine> {
        self.items
            .iter()
            .filter(|i| i.available)
            .map(|i| PricedLine {
                sku: i.sku.clone(),
                category: skus
                    .get(&i.sku)
                    .map(|s| s.category.clone())
                    .unwrap_or_default(),
                quantity: i.quantity,
                line_total: i.line_total.clone(),
            })
            .collect()
    }
}

/// Why a line cannot be bought: it has no price in the cart's currency (a
/// seller changed it while the line sat in the cart).
pub const CURRENCY_MISMATCH: &str = "currency_mismatch";

/// A line as the cart shows it: priced now, and whether it can be bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CartItem {
    pub sku: String,
    pub product_id: uuid::Uuid,
    pub title: String,
    pub quantity: i64,
    pub unit_price: Money,
    /// `unit_price` times `quantity`, in the line's own currency.
    pub line_total: Money,
    /// `false` when the line cannot be bought with the others; it is left
    /// out of the totals, and checkout refuses (422 `line_unavailable`)
    /// until it is removed.
    pub available: bool,
    /// Why not, when not: `currency_mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_reason: Option<String>,
}

impl CartItem {
    /// The line as an order takes it.
    pub fn into_line(self) -> Line {
        Line {
            sku: self.sku,
            product_id: self.product_id,
            title: self.title,
            quantity: self.quantity,
            unit_price: self.unit_price,
            line_total: self.line_total,
        }
    }
}

/// 422 unless `quantity` is between 1 and [`MAX_LINE_QUANTITY`].
pub fn validate_quantity(quantity: i64) -> Result<(), ApiError> {
    if quantity < 1 {
        return Err(ApiError::unprocessable(
            "invalid_quantity",
            "quantity must be at least 1",
        ));
    }
    if quantity > MAX_LINE_QUANTITY {
        return Err(quantity_limit());
    }
    Ok(())
}

pub fn quantity_limit() -> ApiError {
    ApiError::unprocessable(
        "quantity_limit_exceeded",
        format!("a cart holds at most {MAX_LINE_QUANTITY} units of one SKU"),
    )
}

/// What a SKU the customer asks for must be: known to the catalog and on sale.
pub fn require_sellable<'a>(sku: &str, info: Option<&'a SkuInfo>) -> Result<&'a SkuInfo, ApiError> {
    match info {
        None => Err(ApiError::unprocessable(
            "unknown_sku",
            format!("no product has sku {sku:?}"),
        )),
        Some(info) if info.status == ProductStatus::Archived => Err(ApiError::unprocessable(
            "sku_unavailable",
            format!("sku {sku:?} is no longer sold"),
        )),
        Some(info) => Ok(info),
    }
}

/// A SKU that cannot join the cart because it has no price in the cart's
/// currency: amounts in two currencies have no sum. An empty cart whose
/// currency nobody chose takes the currency of its first line.
pub fn check_currency(cart: &Cart, info: &SkuInfo, chosen: bool) -> Result<(), ApiError> {
    let settled = chosen || cart.items.iter().any(|l| l.available && l.sku != info.sku);
    if settled && info.price_in(&cart.currency).is_none() {
        return Err(ApiError::unprocessable(
            "currency_mismatch",
            format!(
                "sku {:?} has no price in {}, the cart's currency",
                info.sku, cart.currency
            ),
        ));
    }
    Ok(())
}

/// Prices `lines` with the catalog's current `skus`, in `chosen` (the
/// currency the customer picked) or else the currency of the earliest line
/// still on sale, or the shop's when there is none.
///
/// Lines whose SKU the catalog no longer has, or whose product is archived,
/// are left out: they cannot be bought (and the archive is on its way to
/// removing them). A line without a price in the cart's currency stays in
/// view, marked unavailable and left out of the totals. Errors only when an
/// amount overflows.
pub fn price(
    lines: &[CartLine],
    skus: &HashMap<String, SkuInfo>,
    shop_currency: &Currency,
    chosen: Option<&Currency>,
) -> Result<Cart, ApiError> {
    let mut ordered: Vec<&CartLine> = lines.iter().collect();
    ordered.sort_by(|a, b| a.added_at.cmp(&b.added_at).then_with(|| a.sku.cmp(&b.sku)));
    let mut items = Vec::with_capacity(ordered.len());
    let mut currency: Option<Currency> = chosen.cloned();
    let mut subtotal: Option<Money> = None;
    for line in ordered {
        let Some(info) = skus.get(&line.sku) else {
            continue;
        };
        if info.status == ProductStatus::Archived {
            continue;
        }
        let cart_currency = currency.get_or_insert_with(|| info.price.currency.clone());
        let unit = info.price_in(cart_currency);
        let available = unit.is_some();
        let unit_price = unit.unwrap_or(&info.price).clone();
        let line_total = unit_price
            .checked_mul(line.quantity)
            .map_err(|_| amount_out_of_range())?;
        if available {
            subtotal = Some(match subtotal {
                None => line_total.clone(),
                Some(s) => s
                    .checked_add(&line_total)
                    .map_err(|_| amount_out_of_range())?,
            });
        }
        items.push(CartItem {
            sku: line.sku.clone(),
            product_id: info.product_id,
            title: info.title.clone(),
            quantity: line.quantity,
            unit_price,
            line_total,
            available,
            unavailable_reason: (!available).then(|| CURRENCY_MISMATCH.to_owned()),
        });
    }
    let currency = currency.unwrap_or_else(|| shop_currency.clone());
    let subtotal = subtotal.unwrap_or_else(|| Money::zero(currency.clone()));
    let zero = Money::zero(currency.clone());
    Ok(Cart {
        items,
        total: subtotal.clone(),
        currency,
        subtotal,
        discount_total: zero.clone(),
        shipping_total: zero.clone(),
        tax_total: zero,
        discounts: Vec::new(),
        promotion_code: None,
        promotion_note: None,
    })
}

fn amount_out_of_range() -> ApiError {
    ApiError::unprocessable(
        "amount_out_of_range",
        "the cart's total is too large to be represented",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn eur() -> Currency {
        Currency::parse("EUR").expect("valid currency")
    }

    fn usd() -> Currency {
        Currency::parse("USD").expect("valid currency")
    }

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
    }

    fn line(sku: &str, quantity: i64, added: i64) -> CartLine {
        CartLine {
            sku: sku.into(),
            quantity,
            added_at: at(added),
        }
    }

    fn info(sku: &str, amount: i64, currency: Currency, status: ProductStatus) -> SkuInfo {
        SkuInfo {
            sku: sku.into(),
            product_id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            title: format!("Title of {sku}"),
            price: Money::new(amount, currency),
            status,
            category: String::new(),
            prices: Vec::new(),
        }
    }

    fn catalog(infos: Vec<SkuInfo>) -> HashMap<String, SkuInfo> {
        infos.into_iter().map(|i| (i.sku.clone(), i)).collect()
    }

    #[test]
    fn an_empty_cart_costs_zero_in_the_shop_currency() {
        let cart = price(&[], &HashMap::new(), &usd(), None).expect("priced");
        assert!(cart.items.is_empty());
        assert_eq!(cart.subtotal, Money::zero(usd()));
        assert_eq!(cart.total, Money::zero(usd()));
    }

    #[test]
    fn lines_are_priced_and_summed_in_the_order_they_were_added() {
        let skus = catalog(vec![
            info("A", 250, eur(), ProductStatus::Active),
            info("B", 1999, eur(), ProductStatus::Active),
        ]);
        let lines = [line("B", 1, 20), line("A", 3, 10)];
        let cart = price(&lines, &skus, &eur(), None).expect("priced");
        let got: Vec<(&str, i64, i64, i64)> = cart
            .items
            .iter()
            .map(|l| {
                (
                    l.sku.as_str(),
                    l.quantity,
                    l.unit_price.amount,
                    l.line_total.amount,
                )
            })
            .collect();
        assert_eq!(got, vec![("A", 3, 250, 750), ("B", 1, 1999, 1999)]);
        assert_eq!(cart.subtotal, Money::new(2749, eur()));
        assert_eq!(cart.total, cart.subtotal);
        assert_eq!(cart.items[0].product_id, skus["A"].product_id);
        assert_eq!(cart.items[0].title, "Title of A");
    }

    #[test]
    fn archived_and_vanished_skus_are_left_out() {
        let skus = catalog(vec![
            info("LIVE", 100, eur(), ProductStatus::Active),
            info("GONE", 500, eur(), ProductStatus::Archived),
        ]);
        let lines = [
            line("GONE", 1, 1),
            line("VANISHED", 2, 2),
            line("LIVE", 2, 3),
        ];
        let cart = price(&lines, &skus, &eur(), None).expect("priced");
        assert_eq!(cart.items.len(), 1);
        assert_eq!(cart.items[0].sku, "LIVE");
        assert_eq!(cart.total, Money::new(200, eur()));
    }

    #[test]
    fn the_earliest_available_line_sets_the_currency() {
        // An archived first line must not decide the currency of the others.
        let skus = catalog(vec![
            info("OLD", 100, eur(), ProductStatus::Archived),
            info("USD1", 300, usd(), ProductStatus::Active),
            info("EUR1", 700, eur(), ProductStatus::Active),
        ]);
        let lines = [line("OLD", 1, 1), line("USD1", 1, 2), line("EUR1", 1, 3)];
        let cart = price(&lines, &skus, &eur(), None).expect("priced");
        assert_eq!(cart.items.len(), 2, "the archived line is left out");
        assert_eq!(cart.items[0].sku, "USD1");
        assert!(cart.items[0].available);
        // The line in another currency stays in view, out of the totals.
        assert_eq!(cart.items[1].sku, "EUR1");
        assert!(!cart.items[1].available);
        assert_eq!(
            cart.items[1].unavailable_reason.as_deref(),
            Some(CURRENCY_MISMATCH)
        );
        assert_eq!(cart.items[1].line_total, Money::new(700, eur()));
        assert_eq!(cart.total, Money::new(300, usd()));
    }

    #[test]
    fn overflowing_amounts_are_refused_not_wrapped() {
        let skus = catalog(vec![
            info("BIG", i64::MAX / 2, eur(), ProductStatus::Active),
            info("MORE", i64::MAX / 2, eur(), ProductStatus::Active),
        ]);
        let err = price(&[line("BIG", 3, 1)], &skus, &eur(), None).expect_err("overflows");
        assert_eq!(err.code, "amount_out_of_range");
        let err = price(
            &[line("BIG", 1, 1), line("MORE", 2, 2)],
            &skus,
            &eur(),
            None,
        )
        .expect_err("the sum overflows");
        assert_eq!(err.code, "amount_out_of_range");
    }

    #[test]
    fn quantities_are_between_one_and_the_cap() {
        assert_eq!(
            validate_quantity(0).expect_err("zero").code,
            "invalid_quantity"
        );
        assert_eq!(
            validate_quantity(-3).expect_err("negative").code,
            "invalid_quantity"
        );
        assert!(validate_quantity(1).is_ok());
        assert!(validate_quantity(MAX_LINE_QUANTITY).is_ok());
        assert_eq!(
            validate_quantity(MAX_LINE_QUANTITY + 1)
                .expect_err("over the cap")
                .code,
            "quantity_limit_exceeded"
        );
    }

    #[test]
    fn unknown_and_archived_skus_cannot_be_added() {
        assert_eq!(
            require_sellable("X", None).expect_err("unknown").code,
            "unknown_sku"
        );
        let archived = info("X", 1, eur(), ProductStatus::Archived);
        assert_eq!(
            require_sellable("X", Some(&archived))
                .expect_err("archived")
                .code,
            "sku_unavailable"
        );
        let live = info("X", 1, eur(), ProductStatus::Active);
        assert!(require_sellable("X", Some(&live)).is_ok());
    }

    #[test]
    fn a_sku_in_another_currency_does_not_join_the_cart() {
        let skus = catalog(vec![
            info("A", 100, eur(), ProductStatus::Active),
            info("B", 100, usd(), ProductStatus::Active),
        ]);
        let cart = price(&[line("A", 1, 1)], &skus, &eur(), None).expect("priced");
        assert_eq!(
            check_currency(&cart, &skus["B"], false)
                .expect_err("mismatch")
                .code,
            "currency_mismatch"
        );
        assert!(check_currency(&cart, &skus["A"], false).is_ok());
        let empty = price(&[], &skus, &eur(), None).expect("priced");
        assert!(
            check_currency(&empty, &skus["B"], false).is_ok(),
            "the first line sets the currency"
        );
        // The only line being re-priced in a new currency is no conflict.
        let only_b = price(&[line("B", 1, 1)], &skus, &eur(), None).expect("priced");
        assert!(check_currency(&only_b, &skus["B"], false).is_ok());
        // A currency the customer chose holds even for an empty cart.
        let chosen = price(&[], &skus, &eur(), Some(&eur())).expect("priced");
        assert!(check_currency(&chosen, &skus["B"], true).is_err());
    }

    #[test]
    fn a_chosen_currency_prices_every_line_that_has_a_price_in_it() {
        let mut a = info("A", 1000, eur(), ProductStatus::Active);
        a.prices = vec![Money::new(1100, usd())];
        let b = info("B", 500, eur(), ProductStatus::Active);
        let skus = catalog(vec![a, b]);
        let lines = [line("A", 2, 1), line("B", 1, 2)];
        let cart = price(&lines, &skus, &eur(), Some(&usd())).expect("priced");
        assert_eq!(cart.currency, usd());
        assert_eq!(cart.items[0].unit_price, Money::new(1100, usd()));
        assert_eq!(cart.subtotal, Money::new(2200, usd()));
        assert!(!cart.items[1].available, "B has no price in USD");
        let in_eur = price(&lines, &skus, &eur(), None).expect("priced");
        assert_eq!(in_eur.subtotal, Money::new(2500, eur()));
    }
}
