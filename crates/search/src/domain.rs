//! What the search read model knows about a product, what a search asks
//! for, and what it answers.

use chrono::{DateTime, Utc};
use mercato_contracts::types::{Product, ProductStatus, Rating};
use mercato_kernel::{ApiError, Money};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// Longer queries are refused: nobody types them, and every term costs an
/// automaton walk over the term dictionary.
pub const MAX_QUERY_CHARS: usize = 256;
/// Words past these are left out, for the same reason.
pub const MAX_QUERY_TERMS: usize = 16;

/// A product as the index holds it: everything a document is built from,
/// except its stock, which comes from `stock.changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductDoc {
    pub product_id: Uuid,
    pub seller_id: Uuid,
    pub title: String,
    pub description: String,
    pub category: String,
    /// The slugs of its category and the categories above it.
    #[serde(default)]
    pub category_path: Vec<String>,
    /// The lowest price of its variants.
    pub price: Money,
    pub skus: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl ProductDoc {
    /// `None` when the product should not be searchable: archived, or with
    /// nothing to sell.
    pub fn from_product(p: &Product) -> Option<ProductDoc> {
        if p.status == ProductStatus::Archived {
            return None;
        }
        let price = p
            .variants
            .iter()
            .map(|v| &v.price)
            .min_by_key(|m| m.amount)?;
        Some(ProductDoc {
            product_id: p.id,
            seller_id: p.seller_id,
            title: p.title.clone(),
            description: p.description.clone(),
            category: p.category.clone(),
            category_path: p.category_path.clone(),
            price: price.clone(),
            skus: p.variants.iter().map(|v| v.sku.clone()).collect(),
            created_at: p.created_at,
        })
    }
}

/// A validated search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// The raw text; it is analysed into terms by the index, never parsed.
    pub text: String,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub limit: usize,
}

/// The query string as it arrives: every value as text, so that an empty
/// parameter means "not given" and a malformed number gets our own error.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawSearchQuery {
    /// Words to find in titles and descriptions, at most 256 characters;
    /// the first 16 words count. Empty lists everything.
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// Only products of this category (facet counts still cover all);
    /// empty for any.
    pub category: Option<String>,
    /// Lowest price, in minor units.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_price: Option<String>,
    /// Highest price, in minor units; below `min_price` nothing matches.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub max_price: Option<String>,
    /// How many items, at least 1 (default 20); values above 100 are served as 100.
    #[param(value_type = Option<i64>, minimum = 1, default = 20)]
    pub limit: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A number parameter: absent when missing or empty; anything else, white
/// space included, must be the number.
fn given_number(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

fn parse_integer(name: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("{name} must be an integer, got {raw:?}"),
        )
    })
}

fn parse_price(name: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let amount = parse_integer(name, raw)?;
    if amount < 0 {
        return Err(ApiError::validation(format!(
            "{name} must not be negative (amounts are in minor units)"
        )));
    }
    Ok(Some(amount))
}

impl RawSearchQuery {
    pub fn validate(&self) -> Result<SearchRequest, ApiError> {
        let raw = self.q.as_deref().unwrap_or_default();
        if raw.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::unprocessable(
                "query_too_long",
                format!("q must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let text = raw.trim().to_owned();
        // A range the wrong way round is no error: nothing is in it.
        let min_price = parse_price("min_price", given_number(&self.min_price))?;
        let max_price = parse_price("max_price", given_number(&self.max_price))?;
        let limit = match given_number(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(raw) => match parse_integer("limit", raw)? {
                n if n < 1 => return Err(ApiError::validation("limit must be at least 1")),
                n => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
            },
        };
        Ok(SearchRequest {
            text,
            category: given(&self.category).map(str::to_owned),
            min_price,
            max_price,
            limit,
        })
    }
}

/// How many edits a query term may be away from an indexed term: short
/// words would match too much with any tolerance.
pub fn typo_tolerance(term: &str) -> u8 {
    match term.chars().count() {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Price in the answer: the lowest price of the product's variants.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SearchPrice {
    /// Integer amount in minor units.
    pub amount: i64,
    pub currency: String,
}

/// One product found.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SearchHit {
    pub product_id: Uuid,
    pub title: String,
    pub category: String,
    pub price: SearchPrice,
    pub in_stock: bool,
    /// Units available over all its SKUs and warehouses.
    pub available: i64,
    /// What its published reviews add up to.
    pub rating: Rating,
}

/// Counts of matching products per value, by facet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Facets {
    /// Products per category, over the matches of `q` and the price filters
    /// (not the category filter).
    pub category: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct SearchResults {
    pub items: Vec<SearchHit>,
    /// How many products match, of which `items` are the best `limit`.
    pub total: u64,
    pub facets: Facets,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawSearchQuery {
        let mut q = RawSearchQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "q" => q.q = v,
                "category" => q.category = v,
                "min_price" => q.min_price = v,
                "max_price" => q.max_price = v,
                "limit" => q.limit = v,
                _ => unreachable!(),
            }
        }
        q
    }

    fn status(pairs: &[(&str, &str)]) -> u16 {
        raw(pairs)
            .validate()
            .err()
            .map(|e| e.status.as_u16())
            .unwrap_or(200)
    }

    #[test]
    fn defaults_and_caps() {
        let r = raw(&[]).validate().expect("valid");
        assert_eq!(r.limit, DEFAULT_LIMIT);
        assert_eq!(r.text, "");
        assert_eq!(r.category, None);
        let r = raw(&[("limit", "1000"), ("category", ""), ("min_price", "")])
            .validate()
            .expect("valid");
        assert_eq!(r.limit, MAX_LIMIT);
        assert_eq!(r.category, None);
        assert_eq!(r.min_price, None);
        let r = raw(&[("limit", "99999999999999999")])
            .validate()
            .expect("valid");
        assert_eq!(r.limit, MAX_LIMIT);
    }

    #[test]
    fn malformed_numbers_are_400_and_invalid_ones_422() {
        assert_eq!(status(&[("limit", "0")]), 422);
        assert_eq!(status(&[("limit", "-3")]), 422);
        assert_eq!(status(&[("limit", "ten")]), 400);
        // White space is not a number (an empty value is no value).
        assert_eq!(status(&[("limit", "\n")]), 400);
        assert_eq!(status(&[("min_price", " 5")]), 400);
        assert_eq!(status(&[("min_price", "1.5")]), 400);
        assert_eq!(status(&[("max_price", "abc")]), 400);
        assert_eq!(status(&[("min_price", "-1")]), 422);
        assert_eq!(status(&[("min_price", "10"), ("max_price", "9")]), 200);
        assert_eq!(status(&[("min_price", "10"), ("max_price", "10")]), 200);
        assert_eq!(status(&[("q", &"x".repeat(MAX_QUERY_CHARS + 1))]), 422);
    }

    #[test]
    fn tolerance_grows_with_term_length() {
        assert_eq!(typo_tolerance("mug"), 0);
        assert_eq!(typo_tolerance("lamp"), 1);
        assert_eq!(typo_tolerance("blanket"), 1);
        assert_eq!(typo_tolerance("keyboard"), 2);
        // Characters, not bytes.
        assert_eq!(typo_tolerance("çàé"), 0);
    }
}
