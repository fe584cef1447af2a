//! Cart use cases: the store keeps the customer's choices, the catalog prices them.

use crate::domain::{
    check_currency, price, quantity_limit, require_sellable, validate_quantity, Cart, CartItem,
    CartLine, MAX_LINE_QUANTITY, MAX_SKU_LEN,
};
use crate::store::CartStore;
use async_trait::async_trait;
use axum::http::StatusCode;
use mercato_contracts::clients::{
    CartClient, CartContents, CatalogClient, ClientError, ClientResult, PricingClient,
};
use mercato_contracts::internal::LINE_UNAVAILABLE;
use mercato_contracts::types::{QuoteRequest, SkuInfo, SkuQuantity};
use mercato_kernel::bus::Subscription;
use mercato_kernel::{time, ApiError, Currency};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub struct CartService {
    store: CartStore,
    catalog: Arc<dyn CatalogClient>,
    pricing: Arc<dyn PricingClient>,
    currencies: Currencies,
}

/// The currencies a shop sells in.
#[derive(Debug, Clone)]
pub struct Currencies {
    /// The shop's own: what an empty cart is priced in until a line or the
    /// customer picks another.
    pub shop: Currency,
    /// Every currency a cart may be in (`PUT /cart/currency`), the shop's
    /// own included.
    pub sold: Vec<Currency>,
}

impl From<Currency> for Currencies {
    fn from(shop: Currency) -> Self {
        Self {
            sold: vec![shop.clone()],
            shop,
        }
    }
}

/// The longest promotion code there can be.
const MAX_CODE_LEN: usize = 64;

impl CartService {
    pub fn new(
        store: CartStore,
        catalog: Arc<dyn CatalogClient>,
        pricing: Arc<dyn PricingClient>,
        currencies: impl Into<Currencies>,
    ) -> Self {
        Self {
            store,
            catalog,
            pricing,
            currencies: currencies.into(),
        }
    }

    pub fn store(&self) -> &CartStore {
        &self.store
    }

    /// The durable consumer that keeps carts free of archived products.
    pub fn subscription(&self) -> Subscription {
        crate::consumer::subscription(self.store.clone())
    }

    /// The customer's cart, priced now.
    pub async fn cart(&self, customer_id: Uuid) -> Result<Cart, ApiError> {
        let lines = self.store.lines(customer_id).await?;
        let chosen = self.store.currency(customer_id).await?;
        let mut skus = HashMap::new();
        self.look_up(&lines, &mut skus).await?;
        self.totals(customer_id, &lines, &skus, chosen.as_ref())
            .await
    }

    /// Reprices the cart in `currency`: 422 `currency_not_sold` for one the
    /// shop does not sell in, `currency_mismatch` when a line has no price
    /// in it.
    pub async fn set_currency(&self, customer_id: Uuid, currency: &str) -> Result<Cart, ApiError> {
        let currency = Currency::parse(currency)
            .ok()
            .filter(|c| self.currencies.sold.contains(c))
            .ok_or_else(|| {
                let sold: Vec<&str> = self.currencies.sold.iter().map(Currency::as_str).collect();
                ApiError::unprocessable(
                    "currency_not_sold",
                    format!("the shop sells in {}", sold.join(", ")),
                )
            })?;
        let lines = self.store.lines(customer_id).await?;
        let mut skus = HashMap::new();
        self.look_up(&lines, &mut skus).await?;
        let repriced = price(&lines, &skus, &self.currencies.shop, Some(&currency))?;
        if let Some(line) = repriced.items.iter().find(|l| !l.available) {
            return Err(ApiError::unprocessable(
                "currency_mismatch",
                format!("{} has no price in {currency}; remove it first", line.sku),
            ));
        }
        self.store.set_currency(customer_id, &currency).await?;
        self.totals(customer_id, &lines, &skus, Some(&currency))
            .await
    }

    /// Prices the lines, and with a code on the cart asks pricing for its
    /// discount. A code that does not apply to the cart as it is stays on
    /// it with a note and no discount.
    async fn totals(
        &self,
        customer_id: Uuid,
        lines: &[CartLine],
        skus: &HashMap<String, SkuInfo>,
        chosen: Option<&Currency>,
    ) -> Result<Cart, ApiError> {
        let mut cart = price(lines, skus, &self.currencies.shop, chosen)?;
        let Some(code) = self.store.promotion_code(customer_id).await? else {
            return Ok(cart);
        };
        cart.promotion_code = Some(code.clone());
        match self.quote(customer_id, &cart, skus, &code).await {
            Ok(quote) => Ok(cart.with_quote(quote)),
            Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
                cart.promotion_note = Some(e.message);
                Ok(cart)
            }
            Err(e) => Err(e),
        }
    }

    /// The cart's quote with `code`, without an address.
    async fn quote(
        &self,
        customer_id: Uuid,
        cart: &Cart,
        skus: &HashMap<String, SkuInfo>,
        code: &str,
    ) -> Result<mercato_contracts::types::Quote, ApiError> {
        let request = QuoteRequest {
            customer_id: Some(customer_id),
            currency: cart.currency.clone(),
            lines: cart.priced_lines(skus),
            code: Some(code.to_owned()),
            country: None,
            shipping_method: None,
        };
        self.pricing.quote(&request).await.map_err(|e| match e {
            ClientError::Rejected(_, code, message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            other => {
                tracing::warn!(error = %other, "pricing the cart's promotion failed");
                ApiError::unavailable("pricing is temporarily unavailable")
            }
        })
    }

    /// Puts a promotion code on the cart in place of any other: 422
    /// `promotion_not_applicable` unless it applies to the cart as it is.
    pub async fn apply_promotion(&self, customer_id: Uuid, code: &str) -> Result<Cart, ApiError> {
        let code = code.trim();
        if code.is_empty() || code.len() > MAX_CODE_LEN {
            return Err(ApiError::unprocessable(
                "promotion_not_applicable",
                format!("no promotion has the code {code:?}"),
            ));
        }
        let lines = self.store.lines(customer_id).await?;
        let chosen = self.store.currency(customer_id).await?;
        let mut skus = HashMap::new();
        self.look_up(&lines, &mut skus).await?;
        let cart = price(&lines, &skus, &self.currencies.shop, chosen.as_ref())?;
        let quote = self.quote(customer_id, &cart, &skus, code).await?;
        // As the promotion spells it.
        let code = quote
            .promotion
            .as_ref()
            .map_or(code.to_owned(), |p| p.code.clone());
        self.store
            .set_promotion_code(customer_id, Some(&code))
            .await?;
        let mut cart = cart.with_quote(quote);
        cart.promotion_code = Some(code);
        Ok(cart)
    }

    /// Takes the code off the cart; a code the cart does not hold changes
    /// nothing.
    pub async fn remove_promotion(&self, customer_id: Uuid, code: &str) -> Result<Cart, ApiError> {
        let held = self.store.promotion_code(customer_id).await?;
        if held.is_some_and(|h| h.eq_ignore_ascii_case(code.trim())) {
            self.store.set_promotion_code(customer_id, None).await?;
        }
        self.cart(customer_id).await
    }

    /// Adds units of a SKU; a SKU already in the cart gets the sum.
    pub async fn add_item(
        &self,
        customer_id: Uuid,
        sku: &str,
        quantity: i64,
    ) -> Result<Cart, ApiError> {
        validate_quantity(quantity)?;
        let info = self.sellable(sku).await?;
        let lines = self.store.lines(customer_id).await?;
        let chosen = self.store.currency(customer_id).await?;
        let mut skus = HashMap::from([(info.sku.clone(), info.clone())]);
        self.look_up(&lines, &mut skus).await?;
        let before = price(&lines, &skus, &self.currencies.shop, chosen.as_ref())?;
        check_currency(&before, &info, chosen.is_some())?;

        // Priced as it would be, so that an amount too large is refused
        // before it is stored rather than on every later read.
        let mut after = lines.clone();
        match after.iter_mut().find(|l| l.sku == info.sku) {
            Some(l) => {
                l.quantity = l.quantity.saturating_add(quantity);
                if l.quantity > MAX_LINE_QUANTITY {
                    return Err(quantity_limit());
                }
            }
            None => after.push(CartLine {
                sku: info.sku.clone(),
                quantity,
                added_at: time::now(),
            }),
        }
        price(&after, &skus, &self.currencies.shop, chosen.as_ref())?;

        if !self
            .store
            .add(
                customer_id,
                &info.sku,
                quantity,
                MAX_LINE_QUANTITY,
                time::now(),
            )
            .await?
        {
            return Err(quantity_limit());
        }
        metrics::counter!("mercato_cart_items_added_total").increment(1);
        self.reread(customer_id, skus, chosen.as_ref()).await
    }

    /// Sets the quantity of a SKU in the cart; 404 when it is not there.
    pub async fn set_quantity(
        &self,
        customer_id: Uuid,
        sku: &str,
        quantity: i64,
    ) -> Result<Cart, ApiError> {
        validate_quantity(quantity)?;
        let lines = self.store.lines(customer_id).await?;
        let chosen = self.store.currency(customer_id).await?;
        let Some(line) = lines.iter().find(|l| l.sku == sku) else {
            return Err(ApiError::not_found("cart item"));
        };
        let info = self.sellable(&line.sku).await?;
        let mut skus = HashMap::from([(info.sku.clone(), info)]);
        self.look_up(&lines, &mut skus).await?;
        let after: Vec<CartLine> = lines
            .iter()
            .map(|l| CartLine {
                quantity: if l.sku == sku { quantity } else { l.quantity },
                ..l.clone()
            })
            .collect();
        price(&after, &skus, &self.currencies.shop, chosen.as_ref())?;
        if !self.store.set_quantity(customer_id, sku, quantity).await? {
            return Err(ApiError::not_found("cart item"));
        }
        self.reread(customer_id, skus, chosen.as_ref()).await
    }

    /// Removes a SKU from the cart; removing one that is not there is no error.
    pub async fn remove_item(&self, customer_id: Uuid, sku: &str) -> Result<Cart, ApiError> {
        self.store.remove(customer_id, sku).await?;
        self.cart(customer_id).await
    }

    /// The cart as stored after a change, priced with what is already known.
    async fn reread(
        &self,
        customer_id: Uuid,
        mut skus: HashMap<String, SkuInfo>,
        chosen: Option<&Currency>,
    ) -> Result<Cart, ApiError> {
        let lines = self.store.lines(customer_id).await?;
        self.look_up(&lines, &mut skus).await?;
        self.totals(customer_id, &lines, &skus, chosen).await
    }

    /// A SKU the customer may put in the cart, as the catalog has it now.
    async fn sellable(&self, sku: &str) -> Result<SkuInfo, ApiError> {
        let info = if sku.is_empty() || sku.len() > MAX_SKU_LEN {
            None
        } else {
            self.catalog.sku(sku).await.map_err(catalog_error)?
        };
        require_sellable(sku, info.as_ref()).cloned()
    }

    /// Asks the catalog, concurrently, about every line's SKU not yet in `skus`.
    async fn look_up(
        &self,
        lines: &[CartLine],
        skus: &mut HashMap<String, SkuInfo>,
    ) -> Result<(), ApiError> {
        let wanted: Vec<&str> = lines
            .iter()
            .map(|l| l.sku.as_str())
            .filter(|s| !skus.contains_key(*s))
            .collect();
        let found = futures::future::try_join_all(wanted.iter().map(|s| self.catalog.sku(s)))
            .await
            .map_err(catalog_error)?;
        skus.extend(found.into_iter().flatten().map(|i| (i.sku.clone(), i)));
        Ok(())
    }
}

fn catalog_error(e: ClientError) -> ApiError {
    tracing::warn!(error = %e, "pricing the cart failed");
    ApiError::unavailable("the catalog is temporarily unavailable")
}

fn client_error(e: ApiError) -> ClientError {
    if e.status == StatusCode::SERVICE_UNAVAILABLE {
        ClientError::Unavailable(crate::NAME, e.message)
    } else {
        ClientError::Failed(crate::NAME, format!("{} {}", e.code, e.message))
    }
}

#[async_trait]
impl CartClient for CartService {
    /// The lines an order takes: all of them, or a refusal naming the first
    /// that cannot be bought; and the code on the cart.
    async fn contents(&self, customer_id: Uuid) -> ClientResult<CartContents> {
        let lines = self
            .store
            .lines(customer_id)
            .await
            .map_err(|e| client_error(e.into()))?;
        let mut skus = HashMap::new();
        self.look_up(&lines, &mut skus)
            .await
            .map_err(client_error)?;
        let chosen = self
            .store
            .currency(customer_id)
            .await
            .map_err(|e| client_error(e.into()))?;
        let cart =
            price(&lines, &skus, &self.currencies.shop, chosen.as_ref()).map_err(client_error)?;
        let promotion_code = self
            .store
            .promotion_code(customer_id)
            .await
            .map_err(|e| client_error(e.into()))?;
        if let Some(line) = cart.items.iter().find(|l| !l.available) {
            return Err(ClientError::Rejected(
                crate::NAME,
                LINE_UNAVAILABLE.to_owned(),
                format!(
                    "{} cannot be bought with the rest of the cart: it is priced in {}, the cart in {}; remove it first",
                    line.sku, line.unit_price.currency, cart.subtotal.currency
                ),
            ));
        }
        Ok(CartContents {
            lines: cart.items.into_iter().map(CartItem::into_line).collect(),
            promotion_code,
        })
    }

    async fn checked_out(
        &self,
        customer_id: Uuid,
        order_id: Uuid,
        bought: &[SkuQuantity],
    ) -> ClientResult<()> {
        match self.store.check_out(customer_id, order_id, bought).await {
            Ok(first) => {
                if first {
                    tracing::info!(%customer_id, %order_id, "cart checked out");
                }
                Ok(())
            }
            Err(e) => Err(client_error(ApiError::from(e))),
        }
    }
}
