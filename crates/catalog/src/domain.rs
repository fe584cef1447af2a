//! The product aggregate: commands in, events out.

use chrono::{DateTime, Utc};
use mercato_contracts::types::{Image, Product, ProductStatus, Variant};
use mercato_kernel::{ApiError, Money};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// What happened to a product, as kept in the event store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CatalogEvent {
    Created {
        seller_id: Uuid,
        title: String,
        description: String,
        category: String,
        /// Empty in events written before categories had parents.
        #[serde(default)]
        category_path: Vec<String>,
        variants: Vec<Variant>,
        #[serde(default)]
        images: Vec<Image>,
        at: DateTime<Utc>,
    },
    DetailsChanged {
        title: Option<String>,
        description: Option<String>,
        category: Option<String>,
        /// With a new category, its path.
        #[serde(default)]
        category_path: Option<Vec<String>>,
        #[serde(default)]
        images: Option<Vec<Image>>,
        at: DateTime<Utc>,
    },
    VariantsReplaced {
        variants: Vec<Variant>,
        at: DateTime<Utc>,
    },
    Archived {
        at: DateTime<Utc>,
    },
}

impl CatalogEvent {
    pub fn name(&self) -> &'static str {
        match self {
            CatalogEvent::Created { .. } => "created",
            CatalogEvent::DetailsChanged { .. } => "details_changed",
            CatalogEvent::VariantsReplaced { .. } => "variants_replaced",
            CatalogEvent::Archived { .. } => "archived",
        }
    }
}

/// A variant as a client sends it.
#[derive(Debug, Clone)]
pub struct NewVariant {
    pub sku: String,
    pub title: Option<String>,
    pub price: Money,
    /// Its price in other currencies.
    pub prices: Vec<Money>,
    pub attributes: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub enum CatalogCommand {
    Create {
        seller_id: Uuid,
        title: String,
        description: String,
        category: String,
        /// The category's path, as the categories have it (see
        /// [`slugify`]); the service looks it up.
        category_path: Vec<String>,
        variants: Vec<NewVariant>,
        images: Vec<Image>,
    },
    Update {
        title: Option<String>,
        description: Option<String>,
        category: Option<String>,
        /// With a new category, its path.
        category_path: Option<Vec<String>>,
        variants: Option<Vec<NewVariant>>,
        images: Option<Vec<Image>>,
    },
    Archive,
}

/// The state rebuilt from a product's events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductAggregate {
    pub id: Uuid,
    pub version: i64,
    pub state: Option<Product>,
}

pub const MAX_VARIANTS: usize = 100;

/// A text field: at most `max` characters as sent and, when `required`, not
/// only white space; kept without the white space around it.
fn clean_text(field: &str, raw: &str, max: usize, required: bool) -> Result<String, ApiError> {
    if raw.chars().count() > max {
        return Err(ApiError::validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    let s = raw.trim();
    if required && s.is_empty() {
        return Err(ApiError::validation(format!("{field} must not be empty")));
    }
    Ok(s.to_owned())
}

/// A category name as products carry it: 1 to 100 characters, trimmed.
pub fn clean_category(raw: &str) -> Result<String, ApiError> {
    clean_text("category", raw, 100, true)
}

pub use mercato_kernel::slug::slugify;

pub const MAX_IMAGES: usize = 20;

/// Images: at most [`MAX_IMAGES`], each an `http` or `https` URL of at most
/// 2,000 characters without white space, with an alt text of at most 200.
pub fn check_images(images: &[Image]) -> Result<(), ApiError> {
    if images.len() > MAX_IMAGES {
        return Err(ApiError::validation(format!(
            "a product has at most {MAX_IMAGES} images"
        )));
    }
    for image in images {
        let rest = image
            .url
            .strip_prefix("https://")
            .or_else(|| image.url.strip_prefix("http://"));
        let ok = rest.is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace))
            && image.url.chars().count() <= 2000;
        if !ok {
            return Err(ApiError::validation(format!(
                "image url {:?} must be an http or https URL of at most 2,000 characters",
                image.url
            )));
        }
        if image.alt.chars().count() > 200 {
            return Err(ApiError::validation(
                "an image's alt text is at most 200 characters",
            ));
        }
    }
    Ok(())
}

/// A SKU: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn validate_sku(sku: &str) -> Result<(), ApiError> {
    if mercato_contracts::types::is_sku(sku) {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "sku {sku:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn build_variants(
    product_title: &str,
    variants: Vec<NewVariant>,
) -> Result<Vec<Variant>, ApiError> {
    if variants.is_empty() {
        return Err(ApiError::validation("a product needs at least one variant"));
    }
    if variants.len() > MAX_VARIANTS {
        return Err(ApiError::validation(format!(
            "a product has at most {MAX_VARIANTS} variants"
        )));
    }
    let mut seen = HashSet::new();
    let currency = variants[0].price.currency.clone();
    let mut out = Vec::with_capacity(variants.len());
    for v in variants {
        validate_sku(&v.sku)?;
        // Like a SKU of another product: a SKU is used once in the shop.
        if !seen.insert(v.sku.clone()) {
            return Err(ApiError::conflict(
                "sku_taken",
                format!("sku {:?} is used by two variants", v.sku),
            ));
        }
        if v.price.amount < 0 || v.prices.iter().any(|p| p.amount < 0) {
            return Err(ApiError::validation("a price must not be negative"));
        }
        let mut currencies = vec![&v.price.currency];
        for p in &v.prices {
            if currencies.contains(&&p.currency) {
                return Err(ApiError::unprocessable(
                    "duplicate_currency",
                    format!("sku {:?} has more than one price in {}", v.sku, p.currency),
                ));
            }
            currencies.push(&p.currency);
        }
        if v.price.currency != currency {
            return Err(ApiError::unprocessable(
                "currency_mismatch",
                "all variants of a product must be priced in one currency",
            ));
        }
        let title = match v.title {
            Some(t) => clean_text("variant title", &t, 200, true)?,
            None => product_title.to_owned(),
        };
        out.push(Variant {
            sku: v.sku,
            title,
            price: v.price,
            prices: v.prices,
            attributes: v.attributes,
        });
    }
    Ok(out)
}

impl ProductAggregate {
    pub fn new(id: Uuid) -> Self {
        Self {
            id,
            version: 0,
            state: None,
        }
    }

    /// Rebuilds a product from its history.
    pub fn from_events(id: Uuid, events: impl IntoIterator<Item = CatalogEvent>) -> Self {
        let mut agg = Self::new(id);
        for e in events {
            agg.apply(&e);
        }
        agg
    }

    pub fn apply(&mut self, event: &CatalogEvent) {
        self.version += 1;
        match event {
            CatalogEvent::Created {
                seller_id,
                title,
                description,
                category,
                category_path,
                variants,
                images,
                at,
            } => {
                self.state = Some(Product {
                    id: self.id,
                    seller_id: *seller_id,
                    title: title.clone(),
                    description: description.clone(),
                    category: category.clone(),
                    category_path: category_path.clone(),
                    status: ProductStatus::Active,
                    variants: variants.clone(),
                    images: images.clone(),
                    rating: Default::default(),
                    created_at: *at,
                    updated_at: *at,
                })
            }
            CatalogEvent::DetailsChanged {
                title,
                description,
                category,
                category_path,
                images,
                at,
            } => {
                if let Some(p) = self.state.as_mut() {
                    if let Some(t) = title {
                        p.title = t.clone();
                    }
                    if let Some(d) = description {
                        p.description = d.clone();
                    }
                    if let Some(c) = category {
                        p.category = c.clone();
                    }
                    if let Some(path) = category_path {
                        p.category_path = path.clone();
                    }
                    if let Some(i) = images {
                        p.images = i.clone();
                    }
                    p.updated_at = *at;
                }
            }
            CatalogEvent::VariantsReplaced { variants, at } => {
                if let Some(p) = self.state.as_mut() {
                    p.variants = variants.clone();
                    p.updated_at = *at;
                }
            }
            CatalogEvent::Archived { at } => {
                if let Some(p) = self.state.as_mut() {
                    p.status = ProductStatus::Archived;
                    p.updated_at = *at;
                }
            }
        }
    }

    /// Decides the events a command causes, without changing anything.
    pub fn handle(
        &self,
        command: CatalogCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<CatalogEvent>, ApiError> {
        match (command, &self.state) {
            (
                CatalogCommand::Create {
                    seller_id,
                    title,
                    description,
                    category,
                    category_path,
                    variants,
                    images,
                },
                None,
            ) => {
                let title = clean_text("title", &title, 200, true)?;
                let description = clean_text("description", &description, 10_000, false)?;
                let category = clean_category(&category)?;
                let variants = build_variants(&title, variants)?;
                check_images(&images)?;
                Ok(vec![CatalogEvent::Created {
                    seller_id,
                    title,
                    description,
                    category,
                    category_path,
                    variants,
                    images,
                    at: now,
                }])
            }
            (CatalogCommand::Create { .. }, Some(_)) => Err(ApiError::conflict(
                "product_exists",
                "the product already exists",
            )),
            (_, None) => Err(ApiError::not_found("product")),
            (CatalogCommand::Archive, Some(p)) => {
                if p.status == ProductStatus::Archived {
                    Ok(vec![])
                } else {
                    Ok(vec![CatalogEvent::Archived { at: now }])
                }
            }
            (
                CatalogCommand::Update {
                    title,
                    description,
                    category,
                    category_path,
                    variants,
                    images,
                },
                Some(p),
            ) => {
                if p.status == ProductStatus::Archived {
                    return Err(ApiError::conflict(
                        "product_archived",
                        "an archived product cannot be changed",
                    ));
                }
                let title = title
                    .map(|t| clean_text("title", &t, 200, true))
                    .transpose()?;
                let description = description
                    .map(|d| clean_text("description", &d, 10_000, false))
                    .transpose()?;
                let category = category.map(|c| clean_category(&c)).transpose()?;
                if let Some(i) = &images {
                    check_images(i)?;
                }
                let effective_title = title.as_deref().unwrap_or(&p.title).to_owned();
                let variants = variants
                    .map(|v| build_variants(&effective_title, v))
                    .transpose()?;

                let mut events = Vec::new();
                let title = title.filter(|t| *t != p.title);
                let description = description.filter(|d| *d != p.description);
                let category = category.filter(|c| *c != p.category);
                let category_path =
                    category_path.filter(|path| *path != p.category_path || category.is_some());
                let images = images.filter(|i| *i != p.images);
                if title.is_some()
                    || description.is_some()
                    || category.is_some()
                    || category_path.is_some()
                    || images.is_some()
                {
                    events.push(CatalogEvent::DetailsChanged {
                        title,
                        description,
                        category,
                        category_path,
                        images,
                        at: now,
                    });
                }
                if let Some(v) = variants.filter(|v| *v != p.variants) {
                    events.push(CatalogEvent::VariantsReplaced {
                        variants: v,
                        at: now,
                    });
                }
                Ok(events)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_kernel::Currency;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").expect("currency"))
    }

    fn variant(sku: &str, amount: i64) -> NewVariant {
        NewVariant {
            sku: sku.into(),
            title: None,
            price: eur(amount),
            prices: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }

    fn create(variants: Vec<NewVariant>) -> CatalogCommand {
        CatalogCommand::Create {
            seller_id: Uuid::nil(),
            title: " Mug ".into(),
            description: "A mug".into(),
            category: "kitchen".into(),
            category_path: Vec::new(),
            images: Vec::new(),
            variants,
        }
    }

    fn given(events: Vec<CatalogEvent>) -> ProductAggregate {
        ProductAggregate::from_events(Uuid::nil(), events)
    }

    #[test]
    fn create_trims_and_defaults_variant_titles() {
        let now = mercato_kernel::time::now();
        let events = given(vec![])
            .handle(create(vec![variant("MUG-1", 900)]), now)
            .expect("valid");
        let agg = given(events);
        let p = agg.state.expect("created");
        assert_eq!(p.title, "Mug");
        assert_eq!(p.variants[0].title, "Mug");
        assert_eq!(p.status, ProductStatus::Active);
        assert_eq!(agg.version, 1);
    }

    #[test]
    fn create_rejects_bad_variants() {
        let now = mercato_kernel::time::now();
        let agg = given(vec![]);
        assert!(agg.handle(create(vec![]), now).is_err());
        assert!(agg
            .handle(create(vec![variant("A", 1), variant("A", 2)]), now)
            .is_err());
        assert!(agg
            .handle(create(vec![variant("bad sku", 1)]), now)
            .is_err());
        assert!(agg.handle(create(vec![variant("A", -1)]), now).is_err());
        let mut usd = variant("B", 1);
        usd.price = Money::new(1, Currency::parse("USD").expect("currency"));
        assert!(agg.handle(create(vec![variant("A", 1), usd]), now).is_err());
    }

    #[test]
    fn update_emits_only_what_changed() {
        let now = mercato_kernel::time::now();
        let created = given(vec![])
            .handle(create(vec![variant("MUG-1", 900)]), now)
            .expect("valid");
        let agg = given(created);
        let same = agg
            .handle(
                CatalogCommand::Update {
                    title: Some("Mug".into()),
                    description: None,
                    category: None,
                    category_path: None,
                    images: None,
                    variants: Some(vec![variant("MUG-1", 900)]),
                },
                now,
            )
            .expect("valid");
        assert!(same.is_empty(), "no change, no event: {same:?}");
        let priced = agg
            .handle(
                CatalogCommand::Update {
                    title: None,
                    description: None,
                    category: None,
                    category_path: None,
                    images: None,
                    variants: Some(vec![variant("MUG-1", 1000)]),
                },
                now,
            )
            .expect("valid");
        assert!(matches!(
            priced.as_slice(),
            [CatalogEvent::VariantsReplaced { .. }]
        ));
    }

    #[test]
    fn archived_products_cannot_change_and_archiving_twice_is_a_no_op() {
        let now = mercato_kernel::time::now();
        let mut events = given(vec![])
            .handle(create(vec![variant("MUG-1", 900)]), now)
            .expect("valid");
        events.push(CatalogEvent::Archived { at: now });
        let agg = given(events);
        assert_eq!(
            agg.handle(CatalogCommand::Archive, now).expect("no-op"),
            vec![]
        );
        let update = CatalogCommand::Update {
            title: Some("New".into()),
            description: None,
            category: None,
            category_path: None,
            images: None,
            variants: None,
        };
        assert_eq!(
            agg.handle(update, now).map_err(|e| e.code.into_owned()),
            Err("product_archived".into())
        );
    }

    #[test]
    fn commands_on_missing_products_are_not_found() {
        let now = mercato_kernel::time::now();
        let err = given(vec![])
            .handle(CatalogCommand::Archive, now)
            .expect_err("missing");
        assert_eq!(err.status.as_u16(), 404);
    }
}
