//! `/cart`, `/cart/items`, `/cart/items/{sku}`, `/cart/currency`, `/cart/promotions`.

use crate::domain::Cart;
use crate::service::CartService;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::AppendHeaders;
use mercato_contracts::interactions::Observed;
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Path};
use mercato_kernel::{ApiError, ApiResult};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

type AppState = Arc<CartService>;

pub fn router(service: Arc<CartService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_cart))
        .routes(routes!(add_item))
        .routes(routes!(update_item, remove_item))
        .routes(routes!(set_currency))
        .routes(routes!(apply_promotion))
        .routes(routes!(remove_promotion))
        .with_state(service)
}

/// The signed-in customer whose cart a request is about. Checked before the
/// body is read, so that a seller learns it is not allowed (403) rather
/// than what is wrong with its body.
struct Customer(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Customer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(&[Role::Customer])?;
        Ok(Customer(caller.user_id))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddItemRequest {
    /// A SKU on sale: 422 `unknown_sku` when no product has it,
    /// `sku_unavailable` when its product is archived.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "CUP-ESP-WHT")]
    pub sku: String,
    /// Units to add, 1 to 999; the line holds at most 999 in all (422
    /// `quantity_limit_exceeded`).
    #[schema(minimum = 1, maximum = 999, example = 2)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateItemRequest {
    /// The line's new quantity, 1 to 999.
    #[schema(minimum = 1, maximum = 999, example = 3)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub quantity: i64,
}

/// The caller's cart, priced now.
#[utoipa::path(get, path = "/cart", tag = "cart", security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart", body = Cart),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers have carts", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog, or pricing for a cart with a code, is unavailable", body = ErrorBody),
    ))]
async fn get_cart(
    State(service): State<AppState>,
    Customer(customer): Customer,
) -> ApiResult<Json<Cart>> {
    Ok(Json(service.cart(customer).await?))
}

/// Add units of a SKU; a SKU already in the cart gets the sum.
#[utoipa::path(post, path = "/cart/items", tag = "cart", security(("bearer" = [])),
    request_body = AddItemRequest,
    responses(
        (status = 200, description = "The cart with the units added", body = Cart),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers have carts", body = ErrorBody),
        (status = 422, description = "`unknown_sku`: no product has the SKU; `sku_unavailable`: its product is archived; `quantity_limit_exceeded`: the line would hold more than 999; `currency_mismatch`: priced in a currency other than the cart's; `invalid_quantity`, `validation_failed`: the body out of its rules", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog, or pricing for a cart with a code, is unavailable", body = ErrorBody),
    ))]
async fn add_item(
    State(service): State<AppState>,
    Customer(customer): Customer,
    Json(body): Json<AddItemRequest>,
) -> ApiResult<(AppendHeaders<Option<(HeaderName, HeaderValue)>>, Json<Cart>)> {
    let cart = service.add_item(customer, &body.sku, body.quantity).await?;
    let seen = cart
        .items
        .iter()
        .find(|line| line.sku == body.sku)
        .map(|line| Observed::CartAdded {
            product_id: line.product_id,
            sku: line.sku.clone(),
            quantity: body.quantity,
        });
    Ok((AppendHeaders(seen.and_then(|s| s.header())), Json(cart)))
}

/// Set the quantity of a SKU in the cart.
#[utoipa::path(patch, path = "/cart/items/{sku}", tag = "cart", security(("bearer" = [])),
    params(("sku" = String, Path, description = "SKU")),
    request_body = UpdateItemRequest,
    responses(
        (status = 200, description = "The cart with the new quantity", body = Cart),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers have carts", body = ErrorBody),
        (status = 404, description = "`not_found`: the SKU is not in the cart", body = ErrorBody),
        (status = 422, description = "`sku_unavailable`: the SKU is no longer sold; `invalid_quantity`, `validation_failed`: the body out of its rules", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog, or pricing for a cart with a code, is unavailable", body = ErrorBody),
    ))]
async fn update_item(
    State(service): State<AppState>,
    Customer(customer): Customer,
    Path(sku): Path<String>,
    Json(body): Json<UpdateItemRequest>,
) -> ApiResult<Json<Cart>> {
    Ok(Json(
        service.set_quantity(customer, &sku, body.quantity).await?,
    ))
}

/// Remove a SKU from the cart (also when it is not there).
#[utoipa::path(delete, path = "/cart/items/{sku}", tag = "cart", security(("bearer" = [])),
    params(("sku" = String, Path, description = "SKU")),
    responses(
        (status = 200, description = "The cart without the SKU", body = Cart),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers have carts", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog, or pricing for a cart with a code, is unavailable", body = ErrorBody),
    ))]
async fn remove_item(
    State(service): State<AppState>,
    Customer(customer): Customer,
    Path(sku): Path<String>,
) -> ApiResult<Json<Cart>> {
    Ok(Json(service.remove_item(customer, &sku).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetCurrencyRequest {
    /// One of the currencies the shop sells in (`shop.currencies`).
    pub currency: mercato_kernel::Currency,
}

/// Reprice the cart in another currency the shop sells in.
#[utoipa::path(put, path = "/cart/currency", tag = "cart", security(("bearer" = [])),
    request_body = SetCurrencyRequest,
    responses(
        (status = 200, description = "The cart in that currency", body = Cart),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers have carts", body = ErrorBody),
        (status = 422, description = "`currency_not_sold`: the shop does not sell in it; `currency_mismatch`: a line has no price in it (the message names it)", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog or pricing is unavailable", body = ErrorBody),
    ))]
async fn set_currency(
    State(service): State<AppState>,
    Customer(customer): Customer,
    Json(body): Json<SetCurrencyRequest>,
) -> ApiResult<Json<Cart>> {
    Ok(Json(
        service
            .set_currency(customer, body.currency.as_str())
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ApplyPromotionRequest {
    /// A promotion code, any case.
    #[schema(example = "SPRING10")]
    pub code: String,
}

/// Put a promotion code on the cart, in place of any other.
#[utoipa::path(post, path = "/cart/promotions", tag = "cart", security(("bearer" = [])),
    request_body = ApplyPromotionRequest,
    responses(
        (status = 200, description = "The cart with the code's discount", body = Cart),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers have carts", body = ErrorBody),
        (status = 422, description = "`promotion_not_applicable`: no promotion has the code, or it is disabled, outside its dates, under its `min_subtotal`, used up (in all or for this customer), or for none of the cart's lines or its currency", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog or pricing is unavailable", body = ErrorBody),
    ))]
async fn apply_promotion(
    State(service): State<AppState>,
    Customer(customer): Customer,
    Json(body): Json<ApplyPromotionRequest>,
) -> ApiResult<Json<Cart>> {
    Ok(Json(service.apply_promotion(customer, &body.code).await?))
}

/// Take a promotion code off the cart (a code it does not hold changes nothing).
#[utoipa::path(delete, path = "/cart/promotions/{code}", tag = "cart", security(("bearer" = [])),
    params(("code" = String, Path, description = "The code, any case")),
    responses(
        (status = 200, description = "The cart without the code", body = Cart),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers have carts", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog or pricing is unavailable", body = ErrorBody),
    ))]
async fn remove_promotion(
    State(service): State<AppState>,
    Customer(customer): Customer,
    Path(code): Path<String>,
) -> ApiResult<Json<Cart>> {
    Ok(Json(service.remove_promotion(customer, &code).await?))
}

/// What the checkout reads from and does to a cart in distributed mode;
/// mounted under `/internal/v1` behind the service token, outside the public API.
pub fn internal_router(service: Arc<CartService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use crate::service::CartService;
    use axum::extract::State;
    use axum::http::StatusCode;
    use mercato_contracts::clients::{CartClient, CartContents};
    use mercato_contracts::internal::{api_error, CheckedOutRequest};
    use mercato_contracts::types::Line;
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::ApiResult;
    use std::sync::Arc;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    use uuid::Uuid;

    type AppState = Arc<CartService>;

    pub(super) fn router(service: AppState) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(contents))
            .routes(routes!(lines))
            .routes(routes!(checked_out))
            .with_state(service)
    }

    /// The customer's cart lines, priced now, and its promotion code.
    #[utoipa::path(get, path = "/carts/{customer_id}/contents", tag = "internal", security(("service_token" = [])),
        params(("customer_id" = String, Path, description = "Customer id")),
        responses(
            (status = 200, description = "`{lines, promotion_code}`"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
        ))]
    async fn contents(
        State(service): State<AppState>,
        Path(customer_id): Path<Uuid>,
    ) -> ApiResult<Json<CartContents>> {
        Ok(Json(
            service.contents(customer_id).await.map_err(api_error)?,
        ))
    }

    /// The customer's cart lines, priced now (for orders services that
    /// predate `contents`).
    #[utoipa::path(get, path = "/carts/{customer_id}/lines", tag = "internal", security(("service_token" = [])),
        params(("customer_id" = String, Path, description = "Customer id")),
        responses(
            (status = 200, body = Vec<Line>),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
        ))]
    async fn lines(
        State(service): State<AppState>,
        Path(customer_id): Path<Uuid>,
    ) -> ApiResult<Json<Vec<Line>>> {
        let contents = service.contents(customer_id).await.map_err(api_error)?;
        Ok(Json(contents.lines))
    }

    /// Empties the cart of what an order bought; idempotent per order.
    #[utoipa::path(post, path = "/carts/{customer_id}/checked-out", tag = "internal", security(("service_token" = [])),
        params(("customer_id" = String, Path, description = "Customer id")),
        responses(
            (status = 204, description = "Done (now or before)"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
        ))]
    async fn checked_out(
        State(service): State<AppState>,
        Path(customer_id): Path<Uuid>,
        Json(body): Json<CheckedOutRequest>,
    ) -> ApiResult<StatusCode> {
        service
            .checked_out(customer_id, body.order_id, &body.bought)
            .await
            .map_err(api_error)?;
        Ok(StatusCode::NO_CONTENT)
    }
}
