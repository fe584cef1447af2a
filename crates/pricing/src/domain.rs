//! Promotions, shipping methods, tax rates, and the one function that turns
//! them into a quote.

use chrono::{DateTime, Utc};
use mercato_contracts::types::{
    AppliedPromotion, Discount, PricedLine, Quote, ShippingCharge, TaxLine,
};
use mercato_kernel::{ApiError, Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Code of the 422 for a promotion code that cannot apply to a cart.
pub const PROMOTION_NOT_APPLICABLE: &str = "promotion_not_applicable";
/// Code of the 422 for an address no shipping method of the shop serves.
pub const SHIPPING_UNAVAILABLE: &str = "shipping_unavailable";

/// What a promotion takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromotionKind {
    /// `value` percent of the eligible lines.
    Percentage,
    /// `amount` (or its `amounts` entry in the cart's currency) off the
    /// eligible lines, at most their subtotal.
    FixedAmount,
    /// No shipping cost.
    FreeShipping,
}

/// A promotion as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Promotion {
    pub id: Uuid,
    /// As it was created; matched without regard to case.
    pub code: String,
    pub kind: PromotionKind,
    /// A percentage, 1 to 100 (`percentage` only).
    pub value: Option<i64>,
    /// The amount off (`fixed_amount` only).
    pub amount: Option<Money>,
    /// The amount off in other currencies (`fixed_amount` only).
    pub amounts: Vec<Money>,
    /// The subtotal a cart must reach, in its currency.
    pub min_subtotal: Option<Money>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// How many orders may use the code in all.
    pub usage_limit: Option<i64>,
    /// How many orders of one customer may use it.
    pub per_customer_limit: Option<i64>,
    /// Only lines of these categories are eligible; every line when empty.
    pub categories: Vec<String>,
    /// What a customer reads on the cart.
    pub description: String,
    /// Orders that hold a redemption (a cancelled order gives its back).
    pub times_used: i64,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A promotion's rules, as created or changed; validated by [`Self::check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRules {
    pub code: String,
    pub kind: PromotionKind,
    pub value: Option<i64>,
    pub amount: Option<Money>,
    pub amounts: Vec<Money>,
    pub min_subtotal: Option<Money>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    pub categories: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
}

/// The key a code is unique and looked up by: case does not matter.
pub fn code_key(code: &str) -> String {
    code.trim().to_lowercase()
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::validation(message)
}

/// Code of the 422 for rules that contradict each other (a value for a
/// kind that takes none, an end before the start, two amounts in one
/// currency): each field is fine alone.
pub const INVALID_PROMOTION: &str = "invalid_promotion";

fn contradicts(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(INVALID_PROMOTION, message)
}

impl PromotionRules {
    /// A promotion of `kind` with `code` and no other rule: no value or
    /// amount, no dates, no limits, every line, active.
    pub fn new(code: &str, kind: PromotionKind) -> Self {
        Self {
            code: code.to_owned(),
            kind,
            value: None,
            amount: None,
            amounts: Vec::new(),
            min_subtotal: None,
            starts_at: None,
            ends_at: None,
            usage_limit: None,
            per_customer_limit: None,
            categories: Vec::new(),
            description: None,
            active: true,
        }
    }

    /// `value` percent off every line.
    pub fn percentage(code: &str, value: i64) -> Self {
        Self {
            value: Some(value),
            ..Self::new(code, PromotionKind::Percentage)
        }
    }

    /// 422 `validation_failed` unless the rules make one promotion.
    pub fn check(&self) -> Result<(), ApiError> {
        let code = &self.code;
        if code.is_empty()
            || code.len() > 64
            || !code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("code must be 1 to 64 letters, digits, `-` or `_`"));
        }
        if self.value.is_some_and(|v| !(1..=100).contains(&v)) {
            return Err(invalid("value must be 1 to 100"));
        }
        if self
            .amount
            .iter()
            .chain(&self.amounts)
            .any(|a| a.amount < 1)
        {
            return Err(invalid("amounts off must be at least 1"));
        }
        if self.min_subtotal.as_ref().is_some_and(|m| m.amount < 0) {
            return Err(invalid("min_subtotal must not be negative"));
        }
        for (name, limit) in [
            ("usage_limit", self.usage_limit),
            ("per_customer_limit", self.per_customer_limit),
        ] {
            if limit.is_some_and(|l| l < 1) {
                return Err(invalid(format!("{name} must be at least 1")));
            }
        }
        if self.categories.len() > 100 {
            return Err(invalid("at most 100 categories"));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 200)
        {
            return Err(invalid("description must be at most 200 characters"));
        }
        // Rules between fields.
        match self.kind {
            PromotionKind::Percentage => {
                if self.value.is_none() {
                    return Err(contradicts(
                        "a percentage promotion needs a value of 1 to 100",
                    ));
                }
                if self.amount.is_some() || !self.amounts.is_empty() {
                    return Err(contradicts("a percentage promotion takes no amount"));
                }
            }
            PromotionKind::FixedAmount => {
                let Some(amount) = &self.amount else {
                    return Err(contradicts("a fixed_amount promotion needs an amount"));
                };
                if self.value.is_some() {
                    return Err(contradicts("a fixed_amount promotion takes no value"));
                }
                let mut currencies = vec![&amount.currency];
                for a in &self.amounts {
                    if currencies.contains(&&a.currency) {
                        return Err(contradicts(format!(
                            "amounts: more than one amount in {}",
                            a.currency
                        )));
                    }
                    currencies.push(&a.currency);
                }
            }
            PromotionKind::FreeShipping => {
                if self.value.is_some() || self.amount.is_some() || !self.amounts.is_empty() {
                    return Err(contradicts(
                        "a free_shipping promotion takes no value and no amount",
                    ));
                }
            }
        }
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at) {
            if end <= start {
                return Err(contradicts("ends_at must be after starts_at"));
            }
        }
        Ok(())
    }

    /// What the customer reads when none was given.
    pub fn description_or_default(&self) -> String {
        if let Some(d) = self.description.as_ref().filter(|d| !d.trim().is_empty()) {
            return d.trim().to_owned();
        }
        match (self.kind, self.value, &self.amount) {
            (PromotionKind::Percentage, Some(v), _) => format!("{v}% off"),
            (PromotionKind::FixedAmount, _, Some(a)) => format!("{a} off"),
            (PromotionKind::FreeShipping, _, _) => "Free shipping".to_owned(),
            _ => "Discount".to_owned(),
        }
    }
}

impl Promotion {
    /// The amount off a fixed-amount promotion gives in `currency`.
    fn amount_in(&self, currency: &Currency) -> Option<&Money> {
        self.amount
            .iter()
            .chain(&self.amounts)
            .find(|a| a.currency == *currency)
    }
}

/// A shipping method as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippingMethod {
    pub id: Uuid,
    pub name: String,
    pub price: Money,
    /// Its price in other currencies.
    pub prices: Vec<Money>,
    /// ISO 3166-1 alpha-2 codes it ships to; every country when empty.
    pub countries: Vec<String>,
    /// Free when the discounted subtotal reaches this (in its currency).
    pub free_over: Option<Money>,
    pub created_at: DateTime<Utc>,
}

impl ShippingMethod {
    pub fn serves(&self, country: &str) -> bool {
        self.countries.is_empty() || self.countries.iter().any(|c| c == country)
    }

    pub fn price_in(&self, currency: &Currency) -> Option<&Money> {
        std::iter::once(&self.price)
            .chain(&self.prices)
            .find(|p| p.currency == *currency)
    }
}

/// A country's tax rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaxRate {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    /// Basis points: 1,900 is 19 %.
    pub rate_bps: i64,
    pub name: String,
}

/// A country as addresses and rules name it: two letters, upper case.
/// `None` when it is not two ASCII letters.
pub fn country_code(raw: &str) -> Option<String> {
    let c = raw.trim();
    (c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())).then(|| c.to_ascii_uppercase())
}

/// A promotion as a quote weighs it: with the uses of the customer asking.
#[derive(Debug, Clone)]
pub struct PromotionInHand {
    pub promotion: Promotion,
    /// Orders of this customer that hold a redemption of it.
    pub customer_uses: i64,
}

/// Everything a quote depends on besides the lines.
#[derive(Debug, Clone, Default)]
pub struct PricingRules {
    /// The cart's promotion, looked up by its code; `None` with a code is a
    /// code no promotion has.
    pub promotion: Option<PromotionInHand>,
    /// Every shipping method of the shop.
    pub methods: Vec<ShippingMethod>,
    /// The destination country's rate.
    pub tax: Option<TaxRate>,
}

/// What is being priced.
#[derive(Debug, Clone)]
pub struct QuoteInput<'a> {
    pub currency: &'a Currency,
    pub lines: &'a [PricedLine],
    pub code: Option<&'a str>,
    /// Upper-case country, or `None` (no shipping and no tax yet).
    pub country: Option<&'a str>,
    pub shipping_method: Option<Uuid>,
    pub now: DateTime<Utc>,
}

fn not_applicable(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(PROMOTION_NOT_APPLICABLE, message)
}

fn out_of_range(_: mercato_kernel::money::MoneyError) -> ApiError {
    ApiError::unprocessable(
        "amount_out_of_range",
        "the total is too large to be represented",
    )
}

/// 422 `promotion_not_applicable` unless `p` can apply to a cart of
/// `subtotal` for its customer at `now`.
pub fn check_applicable(
    p: &PromotionInHand,
    subtotal: &Money,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let promo = &p.promotion;
    let code = &promo.code;
    if !promo.active {
        return Err(not_applicable(format!("the code {code} is not active")));
    }
    if promo.starts_at.is_some_and(|s| now < s) {
        return Err(not_applicable(format!("the code {code} is not valid yet")));
    }
    if promo.ends_at.is_some_and(|e| now >= e) {
        return Err(not_applicable(format!("the code {code} has expired")));
    }
    if promo.usage_limit.is_some_and(|l| promo.times_used >= l) {
        return Err(not_applicable(format!("the code {code} is used up")));
    }
    if promo
        .per_customer_limit
        .is_some_and(|l| p.customer_uses >= l)
    {
        return Err(not_applicable(format!(
            "the code {code} is used up for this customer"
        )));
    }
    if promo.kind == PromotionKind::FixedAmount && promo.amount_in(&subtotal.currency).is_none() {
        return Err(not_applicable(format!(
            "the code {code} does not apply to carts in {}",
            subtotal.currency
        )));
    }
    if let Some(min) = &promo.min_subtotal {
        if min.currency != subtotal.currency {
            return Err(not_applicable(format!(
                "the code {code} does not apply to carts in {}",
                subtotal.currency
            )));
        }
        if subtotal.amount < min.amount {
            return Err(not_applicable(format!(
                "the code {code} needs a subtotal of at least {min}"
            )));
        }
    }
    Ok(())
}

/// Prices lines: subtotal, the promotion's discount, shipping (with a
/// country) and tax (with a country that has a rate). Amounts are rounded
/// to the minor unit, half away from zero.
///
/// Errors: 422 `promotion_not_applicable` for a code that cannot apply,
/// 422 `shipping_unavailable` when the shop ships but not there (or not by
/// the method asked for), 422 `amount_out_of_range` on overflow.
pub fn quote(input: &QuoteInput<'_>, rules: &PricingRules) -> Result<Quote, ApiError> {
    let currency = input.currency;
    let zero = Money::zero(currency.clone());
    let mut subtotal = zero.clone();
    for line in input.lines {
        subtotal = subtotal
            .checked_add(&line.line_total)
            .map_err(out_of_range)?;
    }

    // The promotion.
    let mut discounts = Vec::new();
    let mut discount_total = zero.clone();
    let mut free_shipping = false;
    let mut applied = None;
    if let Some(code) = input.code {
        let Some(p) = rules
            .promotion
            .as_ref()
            .filter(|p| code_key(&p.promotion.code) == code_key(code))
        else {
            return Err(not_applicable(format!("no promotion has the code {code}")));
        };
        check_applicable(p, &subtotal, input.now)?;
        let promo = &p.promotion;
        let mut eligible = zero.clone();
        for line in input.lines.iter().filter(|l| {
            promo.categories.is_empty()
                || promo
                    .categories
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&l.category))
        }) {
            eligible = eligible
                .checked_add(&line.line_total)
                .map_err(out_of_range)?;
        }
        let amount = match promo.kind {
            PromotionKind::Percentage => eligible
                .scaled(promo.value.unwrap_or(0), 100)
                .map_err(out_of_range)?,
            PromotionKind::FixedAmount => match promo.amount_in(currency) {
                Some(off) => off.clone().min(eligible.clone()),
                None => zero.clone(),
            },
            PromotionKind::FreeShipping => {
                free_shipping = true;
                zero.clone()
            }
        };
        if promo.kind != PromotionKind::FreeShipping && eligible.amount == 0 {
            return Err(not_applicable(format!(
                "the code {} applies to none of the cart's lines",
                promo.code
            )));
        }
        discount_total = amount.clone();
        discounts.push(Discount {
            code: promo.code.clone(),
            description: promo.description.clone(),
            amount,
        });
        applied = Some(AppliedPromotion {
            id: promo.id,
            code: promo.code.clone(),
        });
    }
    let discounted = subtotal
        .checked_sub(&discount_total)
        .map_err(out_of_range)?;

    // Shipping, once there is somewhere to ship to.
    let mut shipping_total = zero.clone();
    let mut shipping_method = None;
    if let Some(country) = input.country {
        if !rules.methods.is_empty() {
            let candidates = rules
                .methods
                .iter()
                .filter(|m| m.serves(country))
                .filter_map(|m| m.price_in(currency).map(|p| (m, p)));
            let chosen = match input.shipping_method {
                Some(id) => candidates.into_iter().find(|(m, _)| m.id == id),
                None => candidates.min_by(|(a, pa), (b, pb)| {
                    pa.amount.cmp(&pb.amount).then_with(|| a.name.cmp(&b.name))
                }),
            };
            let Some((method, price)) = chosen else {
                return Err(ApiError::unprocessable(
                    SHIPPING_UNAVAILABLE,
                    match input.shipping_method {
                        Some(id) => format!(
                            "the shipping method {id} does not ship to {country} in {currency}"
                        ),
                        None => format!("no shipping method ships to {country} in {currency}"),
                    },
                ));
            };
            let free_over = method
                .free_over
                .as_ref()
                .is_some_and(|f| f.currency == *currency && discounted.amount >= f.amount);
            let amount = if free_shipping || free_over {
                zero.clone()
            } else {
                price.clone()
            };
            shipping_total = amount.clone();
            shipping_method = Some(ShippingCharge {
                id: method.id,
                name: method.name.clone(),
                amount,
            });
        }
    }

    // Tax on what is charged before it.
    let mut tax_total = zero.clone();
    let mut tax_lines = Vec::new();
    if let (Some(_), Some(rate)) = (input.country, &rules.tax) {
        let base = discounted
            .checked_add(&shipping_total)
            .map_err(out_of_range)?;
        let amount = base.scaled(rate.rate_bps, 10_000).map_err(out_of_range)?;
        tax_total = amount.clone();
        tax_lines.push(TaxLine {
            name: rate.name.clone(),
            rate_bps: rate.rate_bps,
            amount,
        });
    }

    let total = discounted
        .checked_add(&shipping_total)
        .and_then(|t| t.checked_add(&tax_total))
        .map_err(out_of_range)?;
    Ok(Quote {
        currency: currency.clone(),
        subtotal,
        discount_total,
        shipping_total,
        tax_total,
        total,
        discounts,
        shipping_method,
        tax_lines,
        promotion: applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change to a value a case starts from.
    type Change<T> = Box<dyn Fn(&mut T)>;

    fn eur() -> Currency {
        Currency::parse("EUR").expect("currency")
    }

    fn eur_m(amount: i64) -> Money {
        Money::new(amount, eur())
    }

    fn line(sku: &str, category: &str, total: i64) -> PricedLine {
        PricedLine {
            sku: sku.into(),
            category: category.into(),
            quantity: 1,
            line_total: eur_m(total),
        }
    }

    fn promotion(kind: PromotionKind) -> Promotion {
        let now = chrono::Utc::now();
        Promotion {
            id: Uuid::nil(),
            code: "SAVE10".into(),
            kind,
            value: (kind == PromotionKind::Percentage).then_some(10),
            amount: (kind == PromotionKind::FixedAmount).then(|| eur_m(500)),
            amounts: Vec::new(),
            min_subtotal: None,
            starts_at: None,
            ends_at: None,
            usage_limit: None,
            per_customer_limit: None,
            categories: Vec::new(),
            description: "10% off".into(),
            times_used: 0,
            active: true,
            created_at: now,
            updated_at: now,
        }
    }

    fn in_hand(p: Promotion) -> PromotionInHand {
        PromotionInHand {
            promotion: p,
            customer_uses: 0,
        }
    }

    fn method(name: &str, price: i64, countries: &[&str]) -> ShippingMethod {
        ShippingMethod {
            id: mercato_kernel::id::new_id(),
            name: name.into(),
            price: eur_m(price),
            prices: Vec::new(),
            countries: countries.iter().map(|c| (*c).to_owned()).collect(),
            free_over: None,
            created_at: chrono::Utc::now(),
        }
    }

    fn input<'a>(
        lines: &'a [PricedLine],
        code: Option<&'a str>,
        country: Option<&'a str>,
        currency: &'a Currency,
    ) -> QuoteInput<'a> {
        QuoteInput {
            currency,
            lines,
            code,
            country,
            shipping_method: None,
            now: chrono::Utc::now(),
        }
    }

    fn holds(q: &Quote) {
        assert_eq!(
            q.total.amount,
            q.subtotal.amount - q.discount_total.amount
                + q.shipping_total.amount
                + q.tax_total.amount
        );
    }

    #[test]
    fn without_rules_the_total_is_the_subtotal() {
        let c = eur();
        let lines = [line("A", "cups", 1000), line("B", "cups", 250)];
        let q = quote(
            &input(&lines, None, Some("DE"), &c),
            &PricingRules::default(),
        )
        .expect("quote");
        assert_eq!(q, Quote::plain(eur_m(1250)));
    }

    #[test]
    fn percentage_shipping_and_tax_add_up() {
        let c = eur();
        let lines = [line("A", "cups", 1999), line("B", "tea", 1001)];
        let rules = PricingRules {
            promotion: Some(in_hand(promotion(PromotionKind::Percentage))),
            methods: vec![method("Standard", 495, &[]), method("Express", 995, &[])],
            tax: Some(TaxRate {
                country: "DE".into(),
                rate_bps: 1900,
                name: "VAT".into(),
            }),
        };
        let q = quote(&input(&lines, Some("save10"), Some("DE"), &c), &rules).expect("quote");
        assert_eq!(q.subtotal.amount, 3000);
        assert_eq!(q.discount_total.amount, 300);
        assert_eq!(q.shipping_total.amount, 495, "the cheapest method");
        assert_eq!(
            q.shipping_method.as_ref().map(|m| m.name.as_str()),
            Some("Standard")
        );
        // 19 % of 27.00 + 4.95 = 6.0705: 6.07.
        assert_eq!(q.tax_total.amount, 607);
        assert_eq!(q.total.amount, 3000 - 300 + 495 + 607);
        holds(&q);
    }

    #[test]
    fn categories_limit_what_is_discounted() {
        let c = eur();
        let lines = [line("A", "cups", 1000), line("B", "tea", 1000)];
        let mut p = promotion(PromotionKind::FixedAmount);
        p.amount = Some(eur_m(1500));
        p.categories = vec!["Tea".into()];
        let rules = PricingRules {
            promotion: Some(in_hand(p)),
            ..Default::default()
        };
        let q = quote(&input(&lines, Some("SAVE10"), None, &c), &rules).expect("quote");
        assert_eq!(
            q.discount_total.amount, 1000,
            "at most the eligible subtotal"
        );
        holds(&q);
        let only_cups = [line("A", "cups", 1000)];
        let e = quote(&input(&only_cups, Some("SAVE10"), None, &c), &rules)
            .expect_err("nothing eligible");
        assert_eq!(e.code, PROMOTION_NOT_APPLICABLE);
    }

    #[test]
    fn free_shipping_and_free_over_zero_the_shipping() {
        let c = eur();
        let lines = [line("A", "cups", 5000)];
        let mut m = method("Standard", 495, &["DE"]);
        let rules = PricingRules {
            promotion: Some(in_hand(promotion(PromotionKind::FreeShipping))),
            methods: vec![m.clone()],
            tax: None,
        };
        let q = quote(&input(&lines, Some("SAVE10"), Some("DE"), &c), &rules).expect("quote");
        assert_eq!(q.shipping_total.amount, 0);
        assert_eq!(q.discount_total.amount, 0);
        assert_eq!(q.total.amount, 5000);
        m.free_over = Some(eur_m(5000));
        let rules = PricingRules {
            methods: vec![m],
            ..Default::default()
        };
        let q = quote(&input(&lines, None, Some("DE"), &c), &rules).expect("quote");
        assert_eq!(q.shipping_total.amount, 0, "free over 50.00");
    }

    #[test]
    fn a_shop_that_ships_elsewhere_refuses_and_one_without_methods_ships_free() {
        let c = eur();
        let lines = [line("A", "cups", 1000)];
        let rules = PricingRules {
            methods: vec![method("Domestic", 495, &["DE"])],
            ..Default::default()
        };
        let e = quote(&input(&lines, None, Some("FR"), &c), &rules).expect_err("no method");
        assert_eq!(e.code, SHIPPING_UNAVAILABLE);
        let q = quote(
            &input(&lines, None, Some("FR"), &c),
            &PricingRules::default(),
        )
        .expect("quote");
        assert_eq!(q.shipping_total.amount, 0);
        assert!(q.shipping_method.is_none());
    }

    #[test]
    fn limits_dates_and_minimums_make_a_code_not_applicable() {
        let c = eur();
        let lines = [line("A", "cups", 1000)];
        let now = chrono::Utc::now();
        let cases: Vec<(&str, Change<PromotionInHand>)> = vec![
            ("inactive", Box::new(|p| p.promotion.active = false)),
            (
                "not yet",
                Box::new(move |p| p.promotion.starts_at = Some(now + chrono::Duration::hours(1))),
            ),
            (
                "expired",
                Box::new(move |p| p.promotion.ends_at = Some(now - chrono::Duration::hours(1))),
            ),
            (
                "used up",
                Box::new(|p| {
                    p.promotion.usage_limit = Some(5);
                    p.promotion.times_used = 5;
                }),
            ),
            (
                "used up by the customer",
                Box::new(|p| {
                    p.promotion.per_customer_limit = Some(1);
                    p.customer_uses = 1;
                }),
            ),
            (
                "under the minimum",
                Box::new(|p| p.promotion.min_subtotal = Some(eur_m(1001))),
            ),
        ];
        for (what, change) in cases {
            let mut p = in_hand(promotion(PromotionKind::Percentage));
            change(&mut p);
            let rules = PricingRules {
                promotion: Some(p),
                ..Default::default()
            };
            let e = quote(&input(&lines, Some("SAVE10"), None, &c), &rules).expect_err(what);
            assert_eq!(e.code, PROMOTION_NOT_APPLICABLE, "{what}");
        }
        let e = quote(
            &input(&lines, Some("NOPE"), None, &c),
            &PricingRules::default(),
        )
        .expect_err("unknown code");
        assert_eq!(e.code, PROMOTION_NOT_APPLICABLE);
    }

    #[test]
    fn rules_are_checked() {
        let ok = PromotionRules {
            usage_limit: Some(5),
            ..PromotionRules::percentage("SPRING-10", 10)
        };
        assert!(ok.check().is_ok());
        assert_eq!(ok.description_or_default(), "10% off");
        let mut no_value = ok.clone();
        no_value.value = None;
        assert_eq!(
            no_value.check().map_err(|e| e.code.into_owned()),
            Err(INVALID_PROMOTION.to_owned())
        );
        let bad: Vec<Change<PromotionRules>> = vec![
            Box::new(|r| r.code = "has space".into()),
            Box::new(|r| r.value = Some(0)),
            Box::new(|r| r.value = Some(101)),
            Box::new(|r| r.amount = Some(eur_m(1))),
            Box::new(|r| r.usage_limit = Some(0)),
            Box::new(|r| {
                r.kind = PromotionKind::FixedAmount;
                r.value = None;
            }),
        ];
        for change in bad {
            let mut r = ok.clone();
            change(&mut r);
            assert!(r.check().is_err(), "{r:?}");
        }
    }

    #[test]
    fn countries_are_two_letters() {
        assert_eq!(country_code(" de "), Some("DE".into()));
        assert_eq!(country_code("Germany"), None);
        assert_eq!(country_code("D1"), None);
    }
}
