//! Integers in request bodies, as JSON has them.
//!
//! JSON has one number type, and JSON Schema counts every number whose value
//! is whole as an integer: `12`, `12.0` and `1.2e1` are the same integer.
//! serde accepts only the first for an `i64`; these deserializers accept all
//! three, and refuse a fraction or a value outside `i64`, so that a body the
//! OpenAPI document calls valid is one the server takes (`#[serde(deserialize_with)]`).

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// 2^63: the first whole `f64` above `i64::MAX`.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// A JSON integer, also when written with a zero fraction or an exponent.
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(IntegerVisitor)
}

/// An optional [`integer`]: `null` or absent is `None`.
pub fn optional_integer<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionalIntegerVisitor)
}

/// The whole number `value` is, when it is one and fits an `i64`.
pub fn whole(value: f64) -> Option<i64> {
    if value.is_finite() && value.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&value) {
        // In range and whole: the conversion is exact.
        Some(value as i64)
    } else {
        None
    }
}

struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("integer {v} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        whole(v).ok_or_else(|| {
            if v.is_finite() && v.fract() == 0.0 {
                E::custom(format!("integer {v} is out of range"))
            } else {
                E::invalid_type(de::Unexpected::Float(v), &self)
            }
        })
    }
}

struct OptionalIntegerVisitor;

impl<'de> Visitor<'de> for OptionalIntegerVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
        integer(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "integer")]
        n: i64,
        #[serde(default, deserialize_with = "optional_integer")]
        m: Option<i64>,
    }

    fn n(json: &str) -> Option<i64> {
        serde_json::from_str::<Body>(&format!(r#"{{"n": {json}}}"#))
            .ok()
            .map(|b| b.n)
    }

    #[test]
    fn whole_numbers_in_any_spelling_are_integers() {
        assert_eq!(n("12"), Some(12));
        assert_eq!(n("-12"), Some(-12));
        assert_eq!(n("12.0"), Some(12));
        assert_eq!(n("1.2e1"), Some(12));
        assert_eq!(n("226548.0"), Some(226_548));
        assert_eq!(n("-0.0"), Some(0));
        assert_eq!(n("9223372036854775807"), Some(i64::MAX));
        assert_eq!(n("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(n("-9.223372036854775808e18"), Some(i64::MIN));
        // Read exactly (serde_json's `float_roundtrip`): the fast parser
        // lands a quarter off this one and calls it a fraction.
        assert_eq!(n("1850712000907967.0"), Some(1_850_712_000_907_967));
    }

    #[test]
    fn fractions_overflows_and_other_types_are_refused() {
        for bad in [
            "1.5",
            "9223372036854775808",
            "9.3e18",
            "1e300",
            "\"12\"",
            "true",
            "null",
            "[]",
        ] {
            assert_eq!(n(bad), None, "{bad} accepted");
        }
    }

    #[test]
    fn optional_integers_take_null_and_absence() {
        let b: Body = serde_json::from_str(r#"{"n": 1}"#).expect("valid");
        assert_eq!(b.m, None);
        let b: Body = serde_json::from_str(r#"{"n": 1, "m": null}"#).expect("valid");
        assert_eq!(b.m, None);
        let b: Body = serde_json::from_str(r#"{"n": 1, "m": 3.0}"#).expect("valid");
        assert_eq!(b.m, Some(3));
        assert!(serde_json::from_str::<Body>(r#"{"n": 1, "m": 3.5}"#).is_err());
    }
}
