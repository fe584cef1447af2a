//! `/promotions`, `/shipping-methods`, `/tax-rates`.

use crate::domain::{Promotion, PromotionKind, PromotionRules, ShippingMethod, TaxRate};
use crate::service::{NewShippingMethod, PricingService};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Created, Json, Path, Query};
use mercato_kernel::page::{Page, PageQuery};
use mercato_kernel::{ApiError, ApiResult, Currency, Money};
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

type AppState = Arc<PricingService>;

pub fn router(service: Arc<PricingService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_promotion, list_promotions))
        .routes(routes!(get_promotion, update_promotion))
        .routes(routes!(create_shipping_method, list_shipping_methods))
        .routes(routes!(delete_shipping_method))
        .routes(routes!(list_tax_rates))
        .routes(routes!(put_tax_rate, delete_tax_rate))
        .with_state(service)
}

/// `null` and absent told apart: `Some(None)` clears a field.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// [`nullable`] for integers, which may come as integral floats (`5.0`).
fn nullable_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    mercato_kernel::number::optional_integer(d).map(Some)
}

/// [`nullable`] for times, as `mercato_kernel::time::parse_instant` takes them.
fn nullable_instant<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<DateTime<Utc>>>, D::Error> {
    mercato_kernel::time::optional_instant(d).map(Some)
}

/// An amount a customer pays or must reach: 0 or more.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PriceInput {
    /// Minor units, 0 or more.
    #[schema(minimum = 0, example = 495)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub amount: i64,
    pub currency: Currency,
}

/// An amount taken off: at least 1.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct AmountOffInput {
    /// Minor units, at least 1.
    #[schema(minimum = 1, example = 500)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub amount: i64,
    pub currency: Currency,
}

impl From<PriceInput> for Money {
    fn from(p: PriceInput) -> Money {
        Money::new(p.amount, p.currency)
    }
}

impl From<AmountOffInput> for Money {
    fn from(p: AmountOffInput) -> Money {
        Money::new(p.amount, p.currency)
    }
}

/// A two-letter ISO 3166-1 country code, any case.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(value_type = String, example = "DE", pattern = "^[A-Za-z]{2}$")]
pub struct CountryInput(String);

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePromotionRequest {
    /// 1 to 64 letters, digits, `-` or `_`; unique without regard to case
    /// (409 `code_taken`).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "SPRING10")]
    pub code: String,
    pub kind: PromotionKind,
    /// `percentage` only, and required there: 1 to 100 (422
    /// `invalid_promotion` for another kind or when missing).
    #[schema(minimum = 1, maximum = 100, example = 10)]
    #[serde(default, deserialize_with = "mercato_kernel::number::optional_integer")]
    pub value: Option<i64>,
    /// `fixed_amount` only, and required there: the amount off.
    pub amount: Option<AmountOffInput>,
    /// `fixed_amount` only: the amount off in other currencies, one each.
    #[serde(default)]
    pub amounts: Vec<AmountOffInput>,
    /// The subtotal a cart must reach, in the cart's currency.
    pub min_subtotal: Option<PriceInput>,
    /// RFC 3339, e.g. `2026-12-01T00:00:00Z`.
    #[serde(default, deserialize_with = "mercato_kernel::time::optional_instant")]
    #[schema(value_type = Option<String>, format = DateTime, pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$")]
    pub starts_at: Option<DateTime<Utc>>,
    /// RFC 3339; after `starts_at` (422 `invalid_promotion` otherwise).
    #[serde(default, deserialize_with = "mercato_kernel::time::optional_instant")]
    #[schema(value_type = Option<String>, format = DateTime, pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$")]
    pub ends_at: Option<DateTime<Utc>>,
    /// At least 1.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "mercato_kernel::number::optional_integer")]
    pub usage_limit: Option<i64>,
    /// At least 1.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "mercato_kernel::number::optional_integer")]
    pub per_customer_limit: Option<i64>,
    /// Only lines of these categories are eligible (at most 100; blank
    /// entries are left out); every line when empty.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub categories: Vec<String>,
    /// What customers read; made from the kind when absent or blank. At
    /// most 200 characters.
    #[schema(max_length = 200)]
    pub description: Option<String>,
    /// `true` when absent.
    pub active: Option<bool>,
}

/// Absent fields stay as they are; `null` clears an optional one. The
/// result must still be one promotion (422 `invalid_promotion`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdatePromotionRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub code: Option<String>,
    pub kind: Option<PromotionKind>,
    #[serde(default, deserialize_with = "nullable_integer")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1, maximum = 100)]
    pub value: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<AmountOffInput>, nullable)]
    pub amount: Option<Option<AmountOffInput>>,
    pub amounts: Option<Vec<AmountOffInput>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PriceInput>, nullable)]
    pub min_subtotal: Option<Option<PriceInput>>,
    #[serde(default, deserialize_with = "nullable_instant")]
    #[schema(value_type = Option<String>, nullable, format = DateTime, pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$")]
    pub starts_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable_instant")]
    #[schema(value_type = Option<String>, nullable, format = DateTime, pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$")]
    pub ends_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable_integer")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1)]
    pub usage_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable_integer")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1)]
    pub per_customer_limit: Option<Option<i64>>,
    #[schema(max_items = 100)]
    pub categories: Option<Vec<String>>,
    #[schema(max_length = 200)]
    pub description: Option<String>,
    /// `false` disables the code: carts and checkouts can no longer use it.
    pub active: Option<bool>,
}

fn promotion_id(raw: &str) -> Result<Uuid, ApiError> {
    mercato_kernel::id::parse_id(raw).ok_or_else(|| ApiError::not_found("promotion"))
}

/// Create a promotion code (admins).
#[utoipa::path(post, path = "/promotions", tag = "pricing", security(("bearer" = [])),
    request_body = CreatePromotionRequest,
    responses(
        (status = 201, description = "Created", body = Promotion),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins manage promotions", body = ErrorBody),
        (status = 409, description = "`code_taken`: another promotion has the code", body = ErrorBody),
        (status = 422, description = "`invalid_promotion`: rules that contradict each other (a value or amount missing for the kind or given to a kind that takes none, two amounts in one currency, `ends_at` not after `starts_at`); `validation_failed`: a field out of its rules", body = ErrorBody),
    ))]
async fn create_promotion(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<CreatePromotionRequest>,
) -> ApiResult<Created<Promotion>> {
    let rules = PromotionRules {
        code: body.code,
        kind: body.kind,
        value: body.value,
        amount: body.amount.map(Money::from),
        amounts: body.amounts.into_iter().map(Money::from).collect(),
        min_subtotal: body.min_subtotal.map(Money::from),
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        usage_limit: body.usage_limit,
        per_customer_limit: body.per_customer_limit,
        categories: body.categories,
        description: body.description,
        active: body.active.unwrap_or(true),
    };
    Ok(Created(service.create_promotion(caller, rules).await?))
}

/// Promotions, newest first (admins).
#[utoipa::path(get, path = "/promotions", tag = "pricing", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of promotions", body = Page<Promotion>),
        (status = 400, description = "`invalid_cursor`: the cursor is not base64url", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins manage promotions", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn list_promotions(
    State(service): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Promotion>>> {
    let page = q.validate()?;
    Ok(Json(service.promotions(caller, &page).await?))
}

/// One promotion, with how often it was used (admins).
#[utoipa::path(get, path = "/promotions/{id}", tag = "pricing", security(("bearer" = [])),
    params(("id" = String, Path, description = "Promotion id")),
    responses(
        (status = 200, description = "The promotion", body = Promotion),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins manage promotions", body = ErrorBody),
        (status = 404, description = "`not_found`: no promotion has this id", body = ErrorBody),
    ))]
async fn get_promotion(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Promotion>> {
    Ok(Json(service.promotion(caller, promotion_id(&id)?).await?))
}

/// Change a promotion, or disable it with `active: false` (admins).
#[utoipa::path(patch, path = "/promotions/{id}", tag = "pricing", security(("bearer" = [])),
    params(("id" = String, Path, description = "Promotion id")),
    request_body = UpdatePromotionRequest,
    responses(
        (status = 200, description = "The promotion as changed", body = Promotion),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins manage promotions", body = ErrorBody),
        (status = 404, description = "`not_found`: no promotion has this id", body = ErrorBody),
        (status = 409, description = "`code_taken`: another promotion has the code", body = ErrorBody),
        (status = 422, description = "`invalid_promotion`: the changed rules would contradict each other (see `POST /promotions`); `validation_failed`: a field out of its rules", body = ErrorBody),
    ))]
async fn update_promotion(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdatePromotionRequest>,
) -> ApiResult<Json<Promotion>> {
    let id = promotion_id(&id)?;
    let promotion = service
        .update_promotion(caller, id, |r| {
            if let Some(v) = body.code {
                r.code = v;
            }
            if let Some(v) = body.kind {
                r.kind = v;
            }
            if let Some(v) = body.value {
                r.value = v;
            }
            if let Some(v) = body.amount {
                r.amount = v.map(Money::from);
            }
            if let Some(v) = body.amounts {
                r.amounts = v.into_iter().map(Money::from).collect();
            }
            if let Some(v) = body.min_subtotal {
                r.min_subtotal = v.map(Money::from);
            }
            if let Some(v) = body.starts_at {
                r.starts_at = v;
            }
            if let Some(v) = body.ends_at {
                r.ends_at = v;
            }
            if let Some(v) = body.usage_limit {
                r.usage_limit = v;
            }
            if let Some(v) = body.per_customer_limit {
                r.per_customer_limit = v;
            }
            if let Some(v) = body.categories {
                r.categories = v;
            }
            if let Some(v) = body.description {
                r.description = Some(v);
            }
            if let Some(v) = body.active {
                r.active = v;
            }
        })
        .await?;
    Ok(Json(promotion))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateShippingMethodRequest {
    /// 1 to 100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"\S",
        example = "Standard"
    )]
    pub name: String,
    pub price: PriceInput,
    /// Its price in other currencies, one each (422 `duplicate_currency`).
    #[serde(default)]
    pub prices: Vec<PriceInput>,
    /// The countries it ships to; every country when empty or absent.
    #[serde(default)]
    #[schema(max_items = 250)]
    pub countries: Vec<CountryInput>,
    /// Free when the discounted subtotal reaches this.
    pub free_over: Option<PriceInput>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShippingQuery {
    /// Only the methods that ship to this country (two letters, any case).
    #[param(pattern = "^([A-Za-z]{2})?$")]
    pub country: Option<String>,
}

/// Add a shipping method (admins).
#[utoipa::path(post, path = "/shipping-methods", tag = "pricing", security(("bearer" = [])),
    request_body = CreateShippingMethodRequest,
    responses(
        (status = 201, description = "Created", body = ShippingMethod),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins manage shipping", body = ErrorBody),
        (status = 422, description = "`duplicate_currency`: two prices in one currency; `validation_failed`: a field out of its rules", body = ErrorBody),
    ))]
async fn create_shipping_method(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateShippingMethodRequest>,
) -> ApiResult<Created<ShippingMethod>> {
    let method = service
        .create_shipping_method(
            caller,
            NewShippingMethod {
                name: body.name,
                price: body.price.into(),
                prices: body.prices.into_iter().map(Money::from).collect(),
                countries: body.countries.into_iter().map(|c| c.0).collect(),
                free_over: body.free_over.map(Money::from),
            },
        )
        .await?;
    Ok(Created(method))
}

/// The shipping methods, all in one page: those that ship to `country`
/// when it is given.
#[utoipa::path(get, path = "/shipping-methods", tag = "pricing",
    params(ShippingQuery),
    responses(
        (status = 200, description = "The methods, oldest first; `next_cursor` is always null", body = Page<ShippingMethod>),
        (status = 422, description = "`validation_failed`: a country that is not two letters", body = ErrorBody),
    ))]
async fn list_shipping_methods(
    State(service): State<AppState>,
    Query(q): Query<ShippingQuery>,
) -> ApiResult<Json<Page<ShippingMethod>>> {
    let items = service.shipping_methods(q.country.as_deref()).await?;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// Remove a shipping method (admins); orders keep what they were charged.
#[utoipa::path(delete, path = "/shipping-methods/{id}", tag = "pricing", security(("bearer" = [])),
    params(("id" = String, Path, description = "Shipping method id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins manage shipping", body = ErrorBody),
        (status = 404, description = "`not_found`: no shipping method has this id", body = ErrorBody),
    ))]
async fn delete_shipping_method(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id =
        mercato_kernel::id::parse_id(&id).ok_or_else(|| ApiError::not_found("shipping method"))?;
    service.delete_shipping_method(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PutTaxRateRequest {
    /// Basis points, 0 to 10,000: 1,900 is 19 %.
    #[schema(minimum = 0, maximum = 10000, example = 1900)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub rate_bps: i64,
    /// What invoices call it (at most 100 characters); `Tax` when absent.
    #[schema(max_length = 100, example = "VAT")]
    pub name: Option<String>,
}

/// Every country's tax rate, all in one page.
#[utoipa::path(get, path = "/tax-rates", tag = "pricing",
    responses(
        (status = 200, description = "The rates by country; `next_cursor` is always null", body = Page<TaxRate>),
    ))]
async fn list_tax_rates(State(service): State<AppState>) -> ApiResult<Json<Page<TaxRate>>> {
    Ok(Json(Page {
        items: service.tax_rates().await?,
        next_cursor: None,
    }))
}

/// Set a country's tax rate (admins): tax is charged on the discounted
/// subtotal plus shipping of orders shipped there.
#[utoipa::path(put, path = "/tax-rates/{country}", tag = "pricing", security(("bearer" = [])),
    params(("country" = String, Path, description = "Two-letter ISO 3166-1 code, any case", pattern = "^[A-Za-z]{2}$")),
    request_body = PutTaxRateRequest,
    responses(
        (status = 200, description = "The rate", body = TaxRate),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins manage tax rates", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a country that is not two letters, a rate out of 0 to 10,000, a name too long", body = ErrorBody),
    ))]
async fn put_tax_rate(
    State(service): State<AppState>,
    caller: Caller,
    Path(country): Path<String>,
    Json(body): Json<PutTaxRateRequest>,
) -> ApiResult<Json<TaxRate>> {
    Ok(Json(
        service
            .put_tax_rate(caller, &country, body.rate_bps, body.name)
            .await?,
    ))
}

/// Remove a country's tax rate (admins): no tax there from now on.
#[utoipa::path(delete, path = "/tax-rates/{country}", tag = "pricing", security(("bearer" = [])),
    params(("country" = String, Path, description = "Two-letter ISO 3166-1 code, any case")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins manage tax rates", body = ErrorBody),
        (status = 404, description = "`not_found`: the country has no rate", body = ErrorBody),
    ))]
async fn delete_tax_rate(
    State(service): State<AppState>,
    caller: Caller,
    Path(country): Path<String>,
) -> ApiResult<StatusCode> {
    service.delete_tax_rate(caller, &country).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Quotes and redemptions for the cart and the checkout saga in distributed
/// mode; mounted under `/internal/v1` behind the service token, outside the
/// public API.
pub fn internal_router(service: Arc<PricingService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use crate::service::PricingService;
    use axum::extract::State;
    use axum::http::StatusCode;
    use mercato_contracts::clients::PricingClient;
    use mercato_contracts::internal::{api_error, RedeemRequest, RedeemResponse};
    use mercato_contracts::types::{Quote, QuoteRequest};
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::ApiResult;
    use std::sync::Arc;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    use uuid::Uuid;

    type AppState = Arc<PricingService>;

    pub(super) fn router(service: AppState) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(quote))
            .routes(routes!(redeem))
            .routes(routes!(release))
            .with_state(service)
    }

    /// What lines cost with a code, shipping and tax.
    #[utoipa::path(post, path = "/pricing/quote", tag = "internal", security(("service_token" = [])),
        responses(
            (status = 200, description = "The quote"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, description = "`promotion_not_applicable`, `shipping_unavailable`", body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn quote(
        State(service): State<AppState>,
        Json(body): Json<QuoteRequest>,
    ) -> ApiResult<Json<Quote>> {
        Ok(Json(
            PricingClient::quote(service.as_ref(), &body)
                .await
                .map_err(api_error)?,
        ))
    }

    /// Redeems a promotion for an order, once.
    #[utoipa::path(post, path = "/pricing/redemptions/{order_id}", tag = "internal", security(("service_token" = [])),
        params(("order_id" = String, Path, description = "Order id")),
        responses(
            (status = 200, description = "`{outcome: redeemed}` or `{outcome: unavailable, reason}`"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
        ))]
    async fn redeem(
        State(service): State<AppState>,
        Path(order_id): Path<Uuid>,
        Json(body): Json<RedeemRequest>,
    ) -> ApiResult<Json<RedeemResponse>> {
        let outcome = service
            .redeem(order_id, body.customer_id, body.promotion_id)
            .await
            .map_err(api_error)?;
        Ok(Json(outcome.into()))
    }

    /// Gives an order's redemption back; a no-op when it has none.
    #[utoipa::path(post, path = "/pricing/redemptions/{order_id}/release", tag = "internal", security(("service_token" = [])),
        params(("order_id" = String, Path, description = "Order id")),
        responses(
            (status = 204, description = "Given back (now or before), or none to give"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
        ))]
    async fn release(
        State(service): State<AppState>,
        Path(order_id): Path<Uuid>,
    ) -> ApiResult<StatusCode> {
        service.release(order_id).await.map_err(api_error)?;
        Ok(StatusCode::NO_CONTENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The document states the times the server takes: the pattern of
    /// every time field is the kernel's.
    #[test]
    fn time_fields_carry_the_kernels_pattern() {
        let escaped =
            serde_json::to_string(mercato_kernel::time::INSTANT_PATTERN).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        for schema in [
            CreatePromotionRequest::schema(),
            UpdatePromotionRequest::schema(),
        ] {
            let doc = serde_json::to_string(&schema).unwrap_or_default();
            assert_eq!(doc.matches(escaped).count(), 2, "{doc}");
        }
    }
}
