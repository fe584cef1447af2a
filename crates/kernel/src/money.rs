//! Money is an integer number of minor units plus an ISO 4217 currency code.
//! There are no floats anywhere on the money path.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// A three-letter upper-case ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "EUR", pattern = "^[A-Z]{3}$")]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(MoneyError::InvalidCurrency(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("currency must be a three-letter ISO 4217 code, got {0:?}")]
    InvalidCurrency(String),
    #[error("amounts in {0} and {1} cannot be combined")]
    CurrencyMismatch(String, String),
    #[error("amount out of range")]
    Overflow,
    #[error("amount must not be negative")]
    Negative,
}

/// An amount of money in minor units (cents for EUR and USD).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Integer amount in minor units.
    #[schema(example = 1999)]
    #[serde(deserialize_with = "crate::number::integer")]
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self {
            amount: 0,
            currency,
        }
    }

    /// A price as a client sent it: non-negative, valid currency.
    pub fn parse_price(amount: i64, currency: &str) -> Result<Self, MoneyError> {
        if amount < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Self::new(amount, Currency::parse(currency)?))
    }

    /// `op` of two amounts of one currency.
    fn combined(
        &self,
        other: &Money,
        op: fn(i64, i64) -> Option<i64>,
    ) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.0.clone(),
                other.currency.0.clone(),
            ));
        }
        let amount = op(self.amount, other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.combined(other, i64::checked_add)
    }

    pub fn checked_mul(&self, factor: i64) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(factor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }

    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.combined(other, i64::checked_sub)
    }

    /// `self × numerator / denominator`, rounded to the minor unit half away
    /// from zero: a rate (`basis points / 10,000`) or a share of a total.
    pub fn scaled(&self, numerator: i64, denominator: i64) -> Result<Money, MoneyError> {
        if denominator == 0 {
            return Err(MoneyError::Overflow);
        }
        let product = i128::from(self.amount) * i128::from(numerator);
        let den = i128::from(denominator);
        let (q, r) = (product / den, product % den);
        // Half away from zero: a remainder of at least half the divisor
        // moves the quotient one further from zero.
        let rounded = if 2 * r.abs() >= den.abs() {
            if (product < 0) != (den < 0) {
                q - 1
            } else {
                q + 1
            }
        } else {
            q
        };
        let amount = i64::try_from(rounded).map_err(|_| MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }

    /// The smaller of two amounts of one currency.
    pub fn min(self, other: Money) -> Money {
        if other.amount < self.amount {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").expect("valid currency"))
    }

    #[test]
    fn scaling_rounds_half_away_from_zero() {
        let scaled = |a: i64, n: i64, d: i64| eur(a).scaled(n, d).map(|m| m.amount).ok();
        // 19 % of 1.05 is 0.1995: 0.20.
        assert_eq!(scaled(105, 1900, 10_000), Some(20));
        // 10 % of 0.05 is exactly half a cent: away from zero.
        assert_eq!(scaled(5, 1000, 10_000), Some(1));
        assert_eq!(scaled(-5, 1000, 10_000), Some(-1));
        assert_eq!(scaled(4, 1000, 10_000), Some(0));
        assert_eq!(scaled(1000, 1, 3), Some(333));
        assert_eq!(scaled(2000, 1, 3), Some(667));
        assert_eq!(scaled(i64::MAX, 2, 1), None);
        assert_eq!(scaled(1, 1, 0), None);
    }

    #[test]
    fn currency_must_be_three_upper_case_letters() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn adding_different_currencies_is_refused() {
        let usd = Money::new(1, Currency::parse("USD").expect("valid currency"));
        assert!(matches!(
            eur(1).checked_add(&usd),
            Err(MoneyError::CurrencyMismatch(..))
        ));
    }

    #[test]
    fn arithmetic_overflows_are_errors_not_wraps() {
        assert_eq!(
            eur(i64::MAX).checked_add(&eur(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(eur(i64::MAX).checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(eur(250).checked_mul(3), Ok(eur(750)));
    }

    #[test]
    fn serialises_as_amount_and_currency() {
        let json = serde_json::to_value(eur(1999)).expect("serialises");
        assert_eq!(json, serde_json::json!({"amount": 1999, "currency": "EUR"}));
        let bad: Result<Money, _> =
            serde_json::from_value(serde_json::json!({"amount": 1, "currency": "euro"}));
        assert!(bad.is_err());
    }
}
