//! Pricing use cases: the admin's promotions, shipping methods and tax
//! rates, and quotes and redemptions for the cart and the checkout.

use crate::domain::{
    self, country_code, PricingRules, Promotion, PromotionInHand, PromotionRules, QuoteInput,
    ShippingMethod, TaxRate,
};
use crate::store::{PricingStore, Redemption, SaveError};
use async_trait::async_trait;
use axum::http::StatusCode;
use mercato_contracts::clients::{ClientError, ClientResult, PricingClient, RedeemOutcome};
use mercato_contracts::types::{Quote, QuoteRequest};
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{time, ApiError, Money};
use uuid::Uuid;

pub struct PricingService {
    store: PricingStore,
}

fn code_taken() -> ApiError {
    ApiError::conflict(
        "code_taken",
        "another promotion has this code (codes do not differ by case)",
    )
}

fn saved<T>(r: Result<T, SaveError>) -> Result<T, ApiError> {
    r.map_err(|e| match e {
        SaveError::CodeTaken => code_taken(),
        SaveError::Other(e) => ApiError::from(e),
    })
}

/// A shipping method as an admin creates it.
#[derive(Debug, Clone)]
pub struct NewShippingMethod {
    pub name: String,
    pub price: Money,
    pub prices: Vec<Money>,
    pub countries: Vec<String>,
    pub free_over: Option<Money>,
}

impl PricingService {
    pub fn new(store: PricingStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &PricingStore {
        &self.store
    }

    pub async fn create_promotion(
        &self,
        caller: Caller,
        rules: PromotionRules,
    ) -> Result<Promotion, ApiError> {
        caller.require(&[Role::Admin])?;
        rules.check()?;
        saved(self.store.create_promotion(&rules).await)
    }

    /// Applies `change` to the promotion's rules and stores them.
    pub async fn update_promotion(
        &self,
        caller: Caller,
        id: Uuid,
        change: impl FnOnce(&mut PromotionRules),
    ) -> Result<Promotion, ApiError> {
        caller.require(&[Role::Admin])?;
        let current = self.promotion(caller, id).await?;
        let mut rules = PromotionRules {
            code: current.code,
            kind: current.kind,
            value: current.value,
            amount: current.amount,
            amounts: current.amounts,
            min_subtotal: current.min_subtotal,
            starts_at: current.starts_at,
            ends_at: current.ends_at,
            usage_limit: current.usage_limit,
            per_customer_limit: current.per_customer_limit,
            categories: current.categories,
            description: Some(current.description),
            active: current.active,
        };
        change(&mut rules);
        rules.check()?;
        saved(self.store.update_promotion(id, &rules).await)?
            .ok_or_else(|| ApiError::not_found("promotion"))
    }

    pub async fn promotion(&self, caller: Caller, id: Uuid) -> Result<Promotion, ApiError> {
        caller.require(&[Role::Admin])?;
        self.store
            .promotion(id)
            .await?
            .ok_or_else(|| ApiError::not_found("promotion"))
    }

    pub async fn promotions(
        &self,
        caller: Caller,
        page: &PageRequest,
    ) -> Result<Page<Promotion>, ApiError> {
        caller.require(&[Role::Admin])?;
        Ok(self.store.promotions(page).await?)
    }

    pub async fn create_shipping_method(
        &self,
        caller: Caller,
        new: NewShippingMethod,
    ) -> Result<ShippingMethod, ApiError> {
        caller.require(&[Role::Admin])?;
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::validation("name must be 1 to 100 characters"));
        }
        let mut currencies = vec![&new.price.currency];
        for p in std::iter::once(&new.price).chain(&new.prices) {
            if p.amount < 0 {
                return Err(ApiError::validation("prices must not be negative"));
            }
        }
        for p in &new.prices {
            if currencies.contains(&&p.currency) {
                return Err(ApiError::unprocessable(
                    "duplicate_currency",
                    format!("prices: more than one price in {}", p.currency),
                ));
            }
            currencies.push(&p.currency);
        }
        if new.free_over.as_ref().is_some_and(|f| f.amount < 0) {
            return Err(ApiError::validation("free_over must not be negative"));
        }
        if new.countries.len() > 250 {
            return Err(ApiError::validation("at most 250 countries"));
        }
        let mut countries = Vec::with_capacity(new.countries.len());
        for c in &new.countries {
            let code = country_code(c).ok_or_else(|| {
                ApiError::validation(format!(
                    "countries: {c:?} is not a two-letter ISO 3166-1 code"
                ))
            })?;
            if !countries.contains(&code) {
                countries.push(code);
            }
        }
        Ok(self
            .store
            .create_shipping_method(
                name,
                &new.price,
                &new.prices,
                &countries,
                new.free_over.as_ref(),
            )
            .await?)
    }

    /// The methods that ship to `country` (every method without one).
    pub async fn shipping_methods(
        &self,
        country: Option<&str>,
    ) -> Result<Vec<ShippingMethod>, ApiError> {
        let country = match country.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(country_code(c).ok_or_else(|| {
                ApiError::validation("country must be a two-letter ISO 3166-1 code")
            })?),
        };
        let all = self.store.shipping_methods().await?;
        Ok(match country {
            None => all,
            Some(c) => all.into_iter().filter(|m| m.serves(&c)).collect(),
        })
    }

    pub async fn delete_shipping_method(&self, caller: Caller, id: Uuid) -> Result<(), ApiError> {
        caller.require(&[Role::Admin])?;
        if !self.store.delete_shipping_method(id).await? {
            return Err(ApiError::not_found("shipping method"));
        }
        Ok(())
    }

    pub async fn put_tax_rate(
        &self,
        caller: Caller,
        country: &str,
        rate_bps: i64,
        name: Option<String>,
    ) -> Result<TaxRate, ApiError> {
        caller.require(&[Role::Admin])?;
        let country = country_code(country)
            .ok_or_else(|| ApiError::validation("country must be a two-letter ISO 3166-1 code"))?;
        if !(0..=10_000).contains(&rate_bps) {
            return Err(ApiError::validation(
                "rate_bps must be 0 to 10,000 (0 % to 100 %)",
            ));
        }
        let name = name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "Tax".to_owned());
        if name.chars().count() > 100 {
            return Err(ApiError::validation("name must be at most 100 characters"));
        }
        let rate = TaxRate {
            country,
            rate_bps,
            name,
        };
        self.store.put_tax_rate(&rate).await?;
        Ok(rate)
    }

    pub async fn tax_rates(&self) -> Result<Vec<TaxRate>, ApiError> {
        Ok(self.store.tax_rates().await?)
    }

    pub async fn delete_tax_rate(&self, caller: Caller, country: &str) -> Result<(), ApiError> {
        caller.require(&[Role::Admin])?;
        let deleted = match country_code(country) {
            Some(c) => self.store.delete_tax_rate(&c).await?,
            None => false,
        };
        if !deleted {
            return Err(ApiError::not_found("tax rate"));
        }
        Ok(())
    }

    /// The quote of a cart or an order, as [`domain::quote`] computes it
    /// from the rules in the store.
    pub async fn price(&self, request: &QuoteRequest) -> Result<Quote, ApiError> {
        let mut rules = PricingRules::default();
        if let Some(code) = &request.code {
            if let Some(promotion) = self.store.promotion_by_code(code).await? {
                let customer_uses = match request.customer_id {
                    Some(c) => self.store.customer_uses(promotion.id, c).await?,
                    None => 0,
                };
                rules.promotion = Some(PromotionInHand {
                    promotion,
                    customer_uses,
                });
            }
        }
        // An address the shop cannot ship to is not a malformed quote: a
        // country that is no code matches no method and no rate.
        let country = request
            .country
            .as_deref()
            .map(|raw| country_code(raw).unwrap_or_else(|| raw.trim().to_owned()));
        if let Some(c) = &country {
            rules.methods = self.store.shipping_methods().await?;
            rules.tax = self.store.tax_rate(c).await?;
        }
        domain::quote(
            &QuoteInput {
                currency: &request.currency,
                lines: &request.lines,
                code: request.code.as_deref(),
                country: country.as_deref(),
                shipping_method: request.shipping_method,
                now: time::now(),
            },
            &rules,
        )
    }
}

/// An error of this service as a caller of the client trait sees it: the
/// verdicts on the quote (422) pass through as they are.
fn client_error(e: ApiError) -> ClientError {
    if e.status == StatusCode::UNPROCESSABLE_ENTITY {
        ClientError::Rejected(crate::NAME, e.code.into_owned(), e.message)
    } else if e.status == StatusCode::SERVICE_UNAVAILABLE {
        ClientError::Unavailable(crate::NAME, e.message)
    } else {
        ClientError::Failed(crate::NAME, format!("{} {}", e.code, e.message))
    }
}

#[async_trait]
impl PricingClient for PricingService {
    async fn quote(&self, request: &QuoteRequest) -> ClientResult<Quote> {
        self.price(request).await.map_err(client_error)
    }

    async fn redeem(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        promotion_id: Uuid,
    ) -> ClientResult<RedeemOutcome> {
        let outcome = self
            .store
            .redeem(order_id, customer_id, promotion_id)
            .await
            .map_err(|e| client_error(ApiError::from(e)))?;
        Ok(match outcome {
            Redemption::Redeemed => RedeemOutcome::Redeemed,
            Redemption::Refused => RedeemOutcome::Unavailable {
                reason: "the code ran out, expired or was disabled".into(),
            },
            Redemption::Released => RedeemOutcome::Unavailable {
                reason: "the order's redemption was given back".into(),
            },
        })
    }

    async fn release(&self, order_id: Uuid) -> ClientResult<()> {
        self.store
            .release(order_id)
            .await
            .map_err(|e| client_error(ApiError::from(e)))?;
        Ok(())
    }
}
