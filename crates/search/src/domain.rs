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
    /// The attributes of its variants, as [`attribute_term`]s.
    #[serde(default)]
    pub attributes: Vec<String>,
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
            attributes: p
                .variants
                .iter()
                .flat_map(|v| v.attributes.iter())
                .filter_map(|(name, value)| attribute_term(name, value))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        })
    }
}

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchSort {
    /// Best match first; ties go to the newest.
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
    /// Best rated first.
    Rating,
}

impl SearchSort {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "relevance" => SearchSort::Relevance,
            "price_asc" => SearchSort::PriceAsc,
            "price_desc" => SearchSort::PriceDesc,
            "newest" => SearchSort::Newest,
            "rating" => SearchSort::Rating,
            _ => return None,
        })
    }
}

/// A validated search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The raw text; it is analysed into terms by the index, never parsed.
    pub text: String,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub limit: usize,
    pub sort: SearchSort,
    /// Only products with stock.
    pub in_stock: bool,
    /// Only products rated at least this (1 to 5).
    pub min_rating: Option<f64>,
    /// Variant attributes every product must have, as `name=value` terms
    /// (see [`attribute_term`]).
    pub attributes: Vec<String>,
    /// How many of the best matches the previous pages held.
    pub offset: usize,
}

impl SearchRequest {
    /// Every product, best first, as a page of `limit`.
    pub fn text(text: &str, limit: usize) -> Self {
        Self {
            text: text.to_owned(),
            category: None,
            min_price: None,
            max_price: None,
            limit,
            sort: SearchSort::Relevance,
            in_stock: false,
            min_rating: None,
            attributes: Vec::new(),
            offset: 0,
        }
    }
}

/// How deep pages go: past this many results a cursor is refused.
pub const MAX_OFFSET: usize = 10_000;

/// The term a variant attribute is indexed and filtered by: its name and
/// value, trimmed and in lower case (`color=red`). Values that are not
/// text count by their JSON spelling (`size=42`, `organic=true`).
pub fn attribute_term(name: &str, value: &serde_json::Value) -> Option<String> {
    let value = match value {
        serde_json::Value::String(s) => s.trim().to_lowercase(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    let name = name.trim().to_lowercase();
    (!name.is_empty() && !value.is_empty() && !name.contains('='))
        .then(|| format!("{name}={value}"))
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
    /// `relevance` (default), `price_asc`, `price_desc`, `newest` or `rating`.
    #[param(pattern = "^(|relevance|price_asc|price_desc|newest|rating)$")]
    pub sort: Option<String>,
    /// `true`: only products with stock.
    #[param(pattern = "^(|true|false)$")]
    pub in_stock: Option<String>,
    /// Only products rated at least this, 0 to 5.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 5)]
    pub min_rating: Option<String>,
    /// The `next_cursor` of the previous page; empty or absent for the first.
    #[param(pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
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
        let sort = match given(&self.sort) {
            None => SearchSort::Relevance,
            Some(s) => SearchSort::parse(s)
                .ok_or_else(|| ApiError::validation(format!("unknown sort {s:?}")))?,
        };
        let in_stock = match given(&self.in_stock) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("in_stock must be true or false, got {other:?}"),
                ))
            }
        };
        let min_rating = match given_number(&self.min_rating) {
            None => None,
            Some(raw) => {
                let r: f64 = raw
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!("min_rating must be a number, got {raw:?}"),
                        )
                    })?;
                if !(0.0..=5.0).contains(&r) {
                    return Err(ApiError::validation("min_rating must be 0 to 5"));
                }
                Some(r)
            }
        };
        // A cursor this search did not issue, or one past the deepest
        // page, asks for a page past the end: no items.
        let offset = match mercato_kernel::page::cursor(self.cursor.as_deref())? {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_or(MAX_OFFSET + 1, |n| n.min(MAX_OFFSET + 1)),
        };
        Ok(SearchRequest {
            text,
            category: given(&self.category).map(str::to_owned),
            min_price,
            max_price,
            limit,
            sort,
            in_stock,
            min_rating,
            attributes: Vec::new(),
            offset,
        })
    }
}

/// The attribute filters of a query string: every `attr.<name>=<value>`.
pub fn attribute_filters(pairs: &[(String, String)]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (key, value) in pairs {
        let Some(name) = key.strip_prefix("attr.") else {
            continue;
        };
        let term =
            attribute_term(name, &serde_json::Value::String(value.clone())).ok_or_else(|| {
                ApiError::validation(format!("{key} needs a name and a value, without '='"))
            })?;
        out.push(term);
    }
    if out.len() > 10 {
        return Err(ApiError::validation("at most 10 attribute filters"));
    }
    Ok(out)
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

/// Matching products in a price range.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PriceBucket {
    /// Lowest price in the bucket, minor units.
    pub from: i64,
    /// First price above the bucket; null for the last.
    pub to: Option<i64>,
    pub count: u64,
}

/// Counts of matching products per value, by facet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Facets {
    /// Products per category, over the matches of everything but the
    /// category filter.
    pub category: BTreeMap<String, u64>,
    /// Matching products per price range (every range, empty ones too).
    pub price: Vec<PriceBucket>,
    /// Matching products rated at least `"4"`, `"3"`, `"2"` and `"1"`.
    #[schema(value_type = Object)]
    pub rating: BTreeMap<String, u64>,
    /// An entry per variant attribute (`attr.color`): matching products per value.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Where price buckets start, minor units.
pub const PRICE_BUCKETS: [i64; 5] = [0, 1_000, 2_500, 5_000, 10_000];

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct SearchResults {
    pub items: Vec<SearchHit>,
    /// How many products match, of which `items` are the best `limit`.
    pub total: u64,
    pub facets: Facets,
    /// The cursor of the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A completion of what a customer is typing.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Suggestion {
    pub text: String,
    /// `product` or `category`.
    pub kind: String,
    /// The product, for a `product` suggestion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Suggestions {
    /// At most 10: categories first, then products.
    pub suggestions: Vec<Suggestion>,
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
