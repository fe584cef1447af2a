//! Recommendations and experiments: their shapes and their arithmetic.

use chrono::{DateTime, Utc};
use mercato_kernel::ApiError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use utoipa::ToSchema;

pub use mercato_contracts::types::{Recommendation, Recommendations};

/// One arm of an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ExperimentVariant)]
pub struct Variant {
    /// 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64, pattern = r"\S", example = "control")]
    pub name: String,
    /// Its share of subjects against the others' weights, 1 to 1000.
    #[schema(minimum = 1, maximum = 1000, example = 50)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub weight: i64,
}

/// An experiment as created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Experiment {
    pub key: String,
    pub variants: Vec<Variant>,
    /// What counts as a conversion: `order_confirmed`.
    pub goal: String,
    pub created_at: DateTime<Utc>,
}

/// A subject's variant of an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub experiment: String,
    pub variant: String,
}

/// How an arm did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VariantResult {
    pub name: String,
    pub weight: i64,
    pub exposures: i64,
    pub conversions: i64,
    /// Conversions over exposures; 0 without exposures.
    pub conversion_rate: f64,
}

/// How an experiment is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentResults {
    pub key: String,
    pub goal: String,
    pub variants: Vec<VariantResult>,
    /// Two-proportion z-test of the first two variants' conversion rates;
    /// null until both have exposures and some conversion.
    pub p_value: Option<f64>,
}

/// The goals an experiment may count.
pub const GOALS: [&str; 1] = ["order_confirmed"];

/// 422 unless the key is 1 to 64 of `a-z`, `0-9`, `-`, `_`, the variants 2
/// to 10 with distinct names and weights 1 to 1000, the goal known.
pub fn validate(key: &str, variants: &[Variant], goal: &str) -> Result<(), ApiError> {
    let key_ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !key_ok {
        return Err(ApiError::validation(
            "key must be 1 to 64 of a-z, 0-9, '-' and '_'",
        ));
    }
    if !(2..=10).contains(&variants.len()) {
        return Err(ApiError::validation("an experiment has 2 to 10 variants"));
    }
    let mut names = BTreeSet::new();
    for v in variants {
        if v.name.trim().is_empty() || v.name.chars().count() > 64 {
            return Err(ApiError::validation("a variant name is 1 to 64 characters"));
        }
        if !(1..=1000).contains(&v.weight) {
            return Err(ApiError::validation("a variant weight is 1 to 1000"));
        }
        if !names.insert(v.name.trim()) {
            return Err(ApiError::unprocessable(
                "duplicate_variant",
                format!("two variants are named {:?}", v.name.trim()),
            ));
        }
    }
    if !GOALS.contains(&goal) {
        return Err(ApiError::validation(format!(
            "goal must be one of {}",
            GOALS.join(", ")
        )));
    }
    Ok(())
}

/// 64-bit FNV-1a: stable across releases and platforms, so a subject keeps
/// its variant for good.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash: u64, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The subject's variant: a hash of the experiment's key and the subject,
/// placed on the variants' weights. The same answer every time.
pub fn assign<'a>(key: &str, subject: &str, variants: &'a [Variant]) -> Option<&'a Variant> {
    let total: u64 = variants
        .iter()
        .map(|v| u64::try_from(v.weight.max(0)).unwrap_or(0))
        .sum();
    if total == 0 {
        return None;
    }
    let mut point = fnv1a(format!("{key}\u{0}{subject}").as_bytes()) % total;
    for v in variants {
        let w = u64::try_from(v.weight.max(0)).unwrap_or(0);
        if point < w {
            return Some(v);
        }
        point -= w;
    }
    variants.last()
}

/// The two-sided p-value of a two-proportion z-test: conversions `c1` of
/// `n1` against `c2` of `n2`; `None` when it cannot be computed.
pub fn p_value(c1: i64, n1: i64, c2: i64, n2: i64) -> Option<f64> {
    if n1 <= 0 || n2 <= 0 {
        return None;
    }
    let (c1, n1, c2, n2) = (c1 as f64, n1 as f64, c2 as f64, n2 as f64);
    let pooled = (c1 + c2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    let z = ((c1 / n1) - (c2 / n2)) / se;
    let p = 2.0 * (1.0 - normal_cdf(z.abs()));
    Some((p.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0)
}

/// The standard normal distribution function (Abramowitz and Stegun
/// 7.1.26 for erf: error below 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let t = x / std::f64::consts::SQRT_2;
    let sign = if t < 0.0 { -1.0 } else { 1.0 };
    let t = t.abs();
    let k = 1.0 / (1.0 + 0.327_591_1 * t);
    let poly = k
        * (0.254_829_592
            + k * (-0.284_496_736
                + k * (1.421_413_741 + k * (-1.453_152_027 + k * 1.061_405_429))));
    let erf = 1.0 - poly * (-t * t).exp();
    0.5 * (1.0 + sign * erf)
}

/// The words of a title, for similarity: lower case, 3 letters or more.
pub fn title_words(title: &str) -> BTreeSet<String> {
    title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect()
}

/// How alike two titles are: the share of their words in common (Jaccard).
pub fn similarity(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    let shared = a.intersection(b).count() as f64 / union as f64;
    (shared * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arms(weights: &[i64]) -> Vec<Variant> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Variant {
                name: format!("v{i}"),
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn assignments_are_sticky_and_follow_the_weights() {
        let variants = arms(&[1, 3]);
        let first = assign("checkout-copy", "subject-1", &variants).map(|v| v.name.clone());
        for _ in 0..10 {
            assert_eq!(
                assign("checkout-copy", "subject-1", &variants).map(|v| v.name.clone()),
                first
            );
        }
        let mut counts = [0; 2];
        for i in 0..4000 {
            let v = assign("checkout-copy", &format!("s{i}"), &variants).expect("a variant");
            counts[usize::from(v.name == "v1")] += 1;
        }
        // About a quarter and three quarters.
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn p_values_of_known_cases() {
        // 200/1000 against 250/1000: z about -2.68, p about 0.0074.
        let p = p_value(200, 1000, 250, 1000).expect("p");
        assert!((p - 0.0074).abs() < 0.0005, "{p}");
        assert_eq!(p_value(10, 100, 10, 100), Some(1.0));
        assert_eq!(p_value(0, 0, 1, 10), None);
        assert_eq!(p_value(0, 10, 0, 10), None);
    }

    #[test]
    fn experiments_are_checked() {
        assert!(validate("exp-1", &arms(&[1, 1]), "order_confirmed").is_ok());
        assert!(validate("Exp", &arms(&[1, 1]), "order_confirmed").is_err());
        assert!(validate("exp", &arms(&[1]), "order_confirmed").is_err());
        assert!(validate("exp", &arms(&[1, 0]), "order_confirmed").is_err());
        assert!(validate("exp", &arms(&[1, 1]), "clicks").is_err());
        let mut twice = arms(&[1, 1]);
        twice[1].name = "v0".into();
        assert_eq!(
            validate("exp", &twice, "order_confirmed").map_err(|e| e.code.into_owned()),
            Err("duplicate_variant".into())
        );
    }

    #[test]
    fn titles_are_alike_by_their_shared_words() {
        let a = title_words("Blue ceramic mug");
        let b = title_words("Red ceramic mug");
        assert_eq!(similarity(&a, &b), 0.5);
        assert_eq!(similarity(&a, &title_words("Kettle")), 0.0);
    }
}
