//! `/checkout` and `/orders`.

use crate::domain::{CheckoutQuote, Order, OrderStatus, ShippingAddress};
use crate::returns::{Return, ReturnItem};
use crate::service::{AddressChoice, CheckoutRequest, Destination, OrdersService, PartialRefund};
use crate::watch::MAX_WAIT_SECS;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use mercato_contracts::interactions::Observed;
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Created, Json, OptionalJson, Path, Query};
use mercato_kernel::idempotency::require_key;
use mercato_kernel::page::{Page, PageQuery};
use mercato_kernel::{ApiError, ApiResult, Currency, Money};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

type AppState = Arc<OrdersService>;

pub fn router(service: Arc<OrdersService>) -> OpenApiRouter {
    let mut router = OpenApiRouter::new()
        .routes(routes!(checkout))
        .routes(routes!(quote_checkout))
        .routes(routes!(list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(ship_order))
        .routes(routes!(deliver_order))
        .routes(routes!(refund_order))
        .routes(routes!(request_return, list_returns))
        .routes(routes!(get_return))
        .routes(routes!(receive_return))
        .routes(routes!(reject_return))
        .with_state(service);
    one_address_at_most(router.get_openapi_mut());
    router
}

/// The derive cannot say that a body takes at most one of two fields: the
/// bodies that take an address or a saved address's id get `not: {required:
/// [both]}` in the document.
fn one_address_at_most(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for name in ["CheckoutBody", "QuoteBody"] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
            object
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    "not".into(),
                    serde_json::json!({"required": ["shipping_address", "shipping_address_id"]}),
                );
        }
    }
}

/// Where an order goes: an address, or one the customer saved (by id, or
/// the default when neither is given).
fn address_choice(
    address: Option<ShippingAddress>,
    saved: Option<Uuid>,
) -> Result<AddressChoice, ApiError> {
    match (address, saved) {
        (Some(a), None) => Ok(AddressChoice::Given(a)),
        (None, id) => Ok(AddressChoice::Saved(id)),
        (Some(_), Some(_)) => Err(ApiError::validation(
            "give shipping_address or shipping_address_id, not both",
        )),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentInput {
    /// A token of the payment provider, e.g. `tok_visa`: 1 to 200
    /// characters, not only white space. A token the provider declines
    /// cancels the order with `payment_failed`.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "tok_visa"
    )]
    pub token: String,
}

/// `shipping_address`, or `shipping_address_id` (one of the customer's
/// saved addresses), or neither for the customer's default address; not both.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckoutBody {
    pub payment: PaymentInput,
    #[serde(default)]
    pub shipping_address: Option<ShippingAddress>,
    /// One of the customer's saved addresses (`GET /me/addresses`).
    #[serde(default, deserialize_with = "mercato_kernel::id::optional_id")]
    #[schema(value_type = Option<String>, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub shipping_address_id: Option<Uuid>,
    /// A shipping method (`GET /shipping-methods`) that ships to the
    /// address; the cheapest that does when absent.
    #[serde(default, deserialize_with = "mercato_kernel::id::optional_id")]
    #[schema(value_type = Option<String>, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub shipping_method: Option<Uuid>,
}

/// Checkout's body without the payment.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QuoteBody {
    #[serde(default)]
    pub shipping_address: Option<ShippingAddress>,
    /// As in checkout.
    #[serde(default, deserialize_with = "mercato_kernel::id::optional_id")]
    #[schema(value_type = Option<String>, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub shipping_address_id: Option<Uuid>,
    /// As in checkout.
    #[serde(default, deserialize_with = "mercato_kernel::id::optional_id")]
    #[schema(value_type = Option<String>, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub shipping_method: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    /// Only orders in this status: `pending`, `confirmed`, `cancelled`,
    /// `shipped`, `delivered` or `refunded`; empty or absent for every status.
    #[param(pattern = "^(|pending|confirmed|cancelled|shipped|delivered|refunded)$")]
    pub status: Option<String>,
    /// Page size, at least 1 (default 20); values above 100 are served as 100.
    #[param(minimum = 1, default = 20)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; empty or absent for the first.
    #[param(pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderGetQuery {
    /// Seconds (0–20) to wait for a `pending` order to be confirmed or
    /// cancelled before answering; the answer comes as soon as it is, or
    /// with the order still `pending` when the time is up. Default 0: at once.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 20, default = 0)]
    pub wait: Option<String>,
}

/// The `wait` parameter: whole seconds, at most [`MAX_WAIT_SECS`].
fn wait_param(raw: Option<&str>) -> Result<Duration, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Duration::ZERO);
    };
    let secs: i64 = raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("wait must be a whole number of seconds, got {raw:?}"),
        )
    })?;
    match u64::try_from(secs) {
        Ok(secs) if secs <= MAX_WAIT_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(ApiError::validation(format!(
            "wait must be between 0 and {MAX_WAIT_SECS} seconds, got {secs}"
        ))),
    }
}

fn order_id(raw: &str) -> Result<Uuid, ApiError> {
    mercato_kernel::id::parse_id(raw).ok_or_else(|| ApiError::not_found("order"))
}

/// Place an order from the cart. Answers at once with the `pending` order;
/// the checkout saga confirms or cancels it within seconds.
#[utoipa::path(post, path = "/checkout", tag = "orders", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$",
        description = "1 to 255 visible ASCII characters. A replay with the same body returns the first answer.")),
    request_body = CheckoutBody,
    responses(
        (status = 202, description = "Order placed, pending", body = Order),
        (status = 400, description = "`idempotency_key_required`: no Idempotency-Key; `invalid_idempotency_key`: not 1 to 255 visible ASCII characters", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers check out", body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused`: the key was used with another body; `checkout_in_progress`: an order from this cart is still pending (the same key replays its answer instead); `idempotency_key_in_use`: a request with the key is still running", body = ErrorBody),
        (status = 422, description = "`cart_empty`: nothing to order; `sku_unavailable`: a line can no longer be bought; `line_unavailable`: a line is priced in another currency than the cart (the message names it); `promotion_not_applicable`: the cart's code does not apply (used up, expired, disabled, under its minimum); `shipping_unavailable`: no shipping method (or not the one asked for) ships to the address; `unknown_address`: no saved address of the customer's has `shipping_address_id`; `address_required`: neither address given and no default saved; `validation_failed`: an address or token out of its rules, both addresses given, or a total out of range", body = ErrorBody),
        (status = 503, description = "`unavailable`: the cart, the catalog, pricing, identity or a store is unavailable", body = ErrorBody),
    ))]
async fn checkout(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let key = require_key(&headers)?;
    let value: serde_json::Value = parse_json(&headers, &body)?;
    // Fingerprint the canonical JSON, so that key order and spacing do not
    // make the same request look different.
    let canonical = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    let parsed: CheckoutBody =
        serde_json::from_value(value).map_err(|e| ApiError::validation(e.to_string()))?;
    let answer = service
        .checkout(
            caller,
            CheckoutRequest {
                idempotency_key: key,
                request_body: canonical,
                payment_token: parsed.payment.token,
                destination: Destination {
                    address: address_choice(parsed.shipping_address, parsed.shipping_address_id)?,
                    shipping_method: parsed.shipping_method,
                },
            },
        )
        .await?;
    // A repeated checkout (same key) is seen again, for the same order.
    let seen = (answer.status == 202)
        .then(|| serde_json::from_str::<OrderId>(&answer.body).ok())
        .flatten()
        .map(|o| Observed::CheckoutStarted { order_id: o.id });
    Ok((AppendHeaders(seen.and_then(|s| s.header())), answer).into_response())
}

/// The id of an order answered as JSON.
#[derive(Deserialize)]
struct OrderId {
    id: Uuid,
}

/// What a checkout of the cart to this address would charge, exactly:
/// subtotal, the code's discount, shipping and tax. Nothing is placed.
#[utoipa::path(post, path = "/checkout/quote", tag = "orders", security(("bearer" = [])),
    request_body = QuoteBody,
    responses(
        (status = 200, description = "The totals the checkout would charge", body = CheckoutQuote),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers check out", body = ErrorBody),
        (status = 422, description = "`cart_empty`: nothing to order; `sku_unavailable`, `line_unavailable`: a line cannot be bought; `promotion_not_applicable`: the cart's code does not apply; `shipping_unavailable`: no shipping method (or not the one asked for) ships to the address; `unknown_address`, `address_required`: as in checkout; `validation_failed`: an address out of its rules, or both addresses given", body = ErrorBody),
        (status = 503, description = "`unavailable`: the cart, the catalog or pricing is unavailable", body = ErrorBody),
    ))]
async fn quote_checkout(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<QuoteBody>,
) -> ApiResult<Json<CheckoutQuote>> {
    let to = Destination {
        address: address_choice(body.shipping_address, body.shipping_address_id)?,
        shipping_method: body.shipping_method,
    };
    Ok(Json(service.quote(caller, to).await?))
}

/// Parses a JSON body by hand, because checkout keeps the body for fingerprinting.
fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::validation(e.to_string())
        } else {
            ApiError::bad_request("malformed_json", e.to_string())
        }
    })
}

/// The caller's orders, newest first (sellers: orders with their lines; admins: all).
#[utoipa::path(get, path = "/orders", tag = "orders", security(("bearer" = [])),
    params(OrderListQuery),
    responses(
        (status = 200, description = "A page of orders", body = Page<Order>),
        (status = 400, description = "`invalid_cursor`: the cursor is not base64url", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1 or an unknown status", body = ErrorBody),
    ))]
async fn list_orders(
    State(service): State<AppState>,
    caller: Caller,
    Query(q): Query<OrderListQuery>,
) -> ApiResult<Json<Page<Order>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            OrderStatus::parse(s)
                .ok_or_else(|| ApiError::validation(format!("unknown status {s:?}")))?,
        ),
    };
    Ok(Json(service.list(caller, status, &page).await?))
}

/// One order: its customer, a seller of its lines, or an admin. Anyone else
/// gets 404. With `wait`, a `pending` order is answered once it is confirmed
/// or cancelled (or when the wait is over), so a storefront need not poll.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id"), OrderGetQuery),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 400, description = "`invalid_query`: `wait` is not a whole number", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: no such order, or not one the caller may see", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `wait` out of 0 to 20", body = ErrorBody),
    ))]
async fn get_order(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<OrderGetQuery>,
) -> ApiResult<Json<Order>> {
    let wait = wait_param(q.wait.as_deref())?;
    Ok(Json(
        service.get_settled(caller, order_id(&id)?, wait).await?,
    ))
}

/// Cancel a confirmed order (its customer or an admin): money and stock go back.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order, cancelled", body = Order),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not the order's customer nor an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "`order_pending`: still being placed; `invalid_transition`: shipped or already final", body = ErrorBody),
    ))]
async fn cancel_order(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Order>> {
    Ok(Json(service.cancel(caller, order_id(&id)?).await?))
}

/// Mark a confirmed order shipped (a seller of its lines or an admin).
#[utoipa::path(post, path = "/orders/{id}/ship", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order, shipped", body = Order),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not a seller of its lines nor an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "`order_pending`: still being placed; `invalid_transition`: not confirmed", body = ErrorBody),
    ))]
async fn ship_order(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Order>> {
    Ok(Json(service.ship(caller, order_id(&id)?).await?))
}

/// Mark a shipped order delivered (a seller of its lines or an admin).
#[utoipa::path(post, path = "/orders/{id}/deliver", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order, delivered", body = Order),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not a seller of its lines nor an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "`order_pending`: still being placed; `invalid_transition`: not shipped", body = ErrorBody),
    ))]
async fn deliver_order(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Order>> {
    Ok(Json(service.deliver(caller, order_id(&id)?).await?))
}

/// What of an order to refund: an amount, or without one the rest.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundBody {
    /// How much; the rest of the order, its stock back, when absent.
    #[serde(default)]
    pub amount: Option<RefundAmount>,
    /// Why, for the record: at most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// A Money of at least one minor unit, in the order's currency.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundAmount {
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    #[schema(minimum = 1, example = 500)]
    pub amount: i64,
    pub currency: Currency,
}

impl RefundBody {
    /// The amount to refund; `None` for the rest of the order.
    fn into_part(self) -> Result<Option<PartialRefund>, ApiError> {
        if self
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > 500)
        {
            return Err(ApiError::validation(
                "reason must be at most 500 characters",
            ));
        }
        let Some(amount) = self.amount else {
            return Ok(None);
        };
        if amount.amount < 1 {
            return Err(ApiError::validation("amount.amount must be at least 1"));
        }
        Ok(Some(PartialRefund {
            amount: Money::new(amount.amount, amount.currency),
            reason: self.reason,
        }))
    }
}

/// Refund an order (admins): without a body the rest of its total, its
/// stock back on hand, and the order `refunded`; with `{amount}` that much
/// alone, nothing restocked, the order `refunded` once refunds reach its
/// total. `refunded_total` shows what went back.
#[utoipa::path(post, path = "/orders/{id}/refund", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id"),
           ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$",
            description = "1 to 255 visible ASCII characters. Every request with the key gets the first answer.")),
    request_body(content = Option<RefundBody>, description = "Optional: an amount to refund (no body, or no `amount`: the rest)"),
    responses(
        (status = 200, description = "The order, with the money back", body = Order),
        (status = 400, description = "`idempotency_key_required`: no Idempotency-Key; `invalid_idempotency_key`: not 1 to 255 visible ASCII characters; `malformed_json`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins refund", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order", body = ErrorBody),
        (status = 409, description = "`order_pending`: still being placed; `invalid_transition`: not confirmed, shipped or delivered; `idempotency_key_reused`: the key was used for another request", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = ErrorBody),
        (status = 422, description = "`currency_mismatch`: not the order's currency; `refund_exceeds_total`: more than is left to refund; `validation_failed`", body = ErrorBody),
    ))]
async fn refund_order(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RefundBody>,
) -> ApiResult<Response> {
    let key = require_key(&headers)?;
    let part = body.map(RefundBody::into_part).transpose()?.flatten();
    Ok(service
        .refund(caller, order_id(&id)?, &key, part)
        .await?
        .into_response())
}

fn return_id(raw: &str) -> Result<Uuid, ApiError> {
    mercato_kernel::id::parse_id(raw).ok_or_else(|| ApiError::not_found("return"))
}

/// Items of a delivered order to send back, and why.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReturnBody {
    /// 1 to 100 items.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<ReturnItem>,
    /// 1 to 500 characters, not only white space.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"\S",
        example = "Too small"
    )]
    pub reason: String,
}

/// Why a return is refused.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RejectBody {
    /// 1 to 500 characters, not only white space.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S", example = "Worn")]
    pub reason: String,
}

/// Where received items go back on hand.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReceiveBody {
    /// A warehouse: 1 to 64 of `a-z`, `0-9`, `_`, `-`; where the items
    /// were taken from when absent.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "returns")]
    pub warehouse: Option<String>,
}

fn reason_text(reason: &str) -> Result<(), ApiError> {
    let n = reason.chars().count();
    if reason.trim().is_empty() || n > 500 {
        return Err(ApiError::validation(
            "reason must be 1 to 500 characters, not only white space",
        ));
    }
    Ok(())
}

impl ReturnBody {
    fn validate(&self) -> Result<(), ApiError> {
        reason_text(&self.reason)?;
        if self.items.is_empty() || self.items.len() > 100 {
            return Err(ApiError::validation("items must hold 1 to 100 items"));
        }
        for item in &self.items {
            if item.sku.is_empty() || item.sku.chars().count() > 64 {
                return Err(ApiError::validation("sku must be 1 to 64 characters"));
            }
            if !(1..=999).contains(&item.quantity) {
                return Err(ApiError::validation("quantity must be 1 to 999"));
            }
        }
        Ok(())
    }
}

/// Ask to send items of a delivered order back (its customer), within
/// `orders.return_window_days` of delivery. `refund_amount` is the items'
/// share of the order (discount and tax included) that receiving refunds.
#[utoipa::path(post, path = "/orders/{id}/returns", tag = "returns", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    request_body = ReturnBody,
    responses(
        (status = 201, description = "The return, requested", body = Return),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not the order's customer", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "`order_not_delivered`: the order is not delivered; `return_window_closed`: delivered too long ago", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`return_exceeds_purchase`: a SKU the order did not buy, or more than was bought less what other returns take back; `validation_failed`", body = ErrorBody),
    ))]
async fn request_return(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ReturnBody>,
) -> ApiResult<Created<Return>> {
    body.validate()?;
    let order = order_id(&id)?;
    Ok(Created(
        service
            .request_return(caller, order, &body.items, &body.reason)
            .await?,
    ))
}

/// An order's returns, oldest first (its customer, sellers of its lines, admins).
#[utoipa::path(get, path = "/orders/{id}/returns", tag = "returns", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "Every return of the order, in one page; `next_cursor` is always null", body = Page<Return>),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: no such order, or not one the caller may see", body = ErrorBody),
    ))]
async fn list_returns(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<Return>>> {
    Ok(Json(Page {
        items: service.returns_of(caller, order_id(&id)?).await?,
        next_cursor: None,
    }))
}

/// A return (its order's customer, sellers of its lines, admins).
#[utoipa::path(get, path = "/returns/{id}", tag = "returns", security(("bearer" = [])),
    params(("id" = String, Path, description = "Return id")),
    responses(
        (status = 200, description = "The return", body = Return),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: no such return, or not one the caller may see", body = ErrorBody),
    ))]
async fn get_return(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Return>> {
    Ok(Json(service.get_return(caller, return_id(&id)?).await?))
}

/// Receive a requested return (a seller of its order's lines or an admin):
/// its items go back on hand and its share of the order is refunded,
/// exactly once.
#[utoipa::path(post, path = "/returns/{id}/receive", tag = "returns", security(("bearer" = [])),
    params(("id" = String, Path, description = "Return id"),
           ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$",
            description = "1 to 255 visible ASCII characters. Every request with the key gets the first answer.")),
    request_body(content = Option<ReceiveBody>, description = "Optional: where the items go back on hand"),
    responses(
        (status = 200, description = "The return, `refunded` (`receiving` while a service it needs is down)", body = Return),
        (status = 400, description = "`idempotency_key_required`; `invalid_idempotency_key`; `malformed_json`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not a seller of the order's lines nor an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such return, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "`invalid_transition`: the return is not `requested`; `order_not_delivered`; `idempotency_key_reused`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a warehouse out of its pattern", body = ErrorBody),
    ))]
async fn receive_return(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReceiveBody>,
) -> ApiResult<Response> {
    let key = require_key(&headers)?;
    let warehouse = body.and_then(|b| b.warehouse);
    if warehouse
        .as_deref()
        .is_some_and(|w| !mercato_contracts::types::is_warehouse_name(w))
    {
        return Err(ApiError::validation(
            "warehouse must be 1 to 64 characters of a-z, 0-9, '_' or '-'",
        ));
    }
    Ok(service
        .receive_return(caller, return_id(&id)?, &key, warehouse)
        .await?
        .into_response())
}

/// Refuse a requested return (a seller of its order's lines or an admin).
#[utoipa::path(post, path = "/returns/{id}/reject", tag = "returns", security(("bearer" = [])),
    params(("id" = String, Path, description = "Return id")),
    request_body = RejectBody,
    responses(
        (status = 200, description = "The return, rejected", body = Return),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not a seller of the order's lines nor an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such return, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "`invalid_transition`: the return is not `requested`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody),
    ))]
async fn reject_return(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<RejectBody>,
) -> ApiResult<Json<Return>> {
    reason_text(&body.reason)?;
    Ok(Json(
        service
            .reject_return(caller, return_id(&id)?, &body.reason)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The document states the ids the server takes.
    #[test]
    fn shipping_method_ids_carry_the_kernels_pattern() {
        let escaped = serde_json::to_string(mercato_kernel::id::ID_PATTERN).unwrap_or_default();
        for schema in [CheckoutBody::schema(), QuoteBody::schema()] {
            let doc = serde_json::to_string(&schema).unwrap_or_default();
            assert!(doc.contains(escaped.trim_matches('"')), "{doc}");
        }
    }
}

/// The endpoint behind [`mercato_contracts::clients::OrdersClient`].
pub fn internal_router(service: Arc<OrdersService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use crate::service::OrdersService;
    use axum::extract::State;
    use mercato_contracts::types::{PlaceOrder, PlacedOrder};
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::{ApiError, ApiResult};
    use std::sync::Arc;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    use uuid::Uuid;

    type AppState = Arc<OrdersService>;

    pub(super) fn router(service: AppState) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(place))
            .with_state(service)
    }

    /// Places an order for a subscription, once per order id.
    #[utoipa::path(put, path = "/orders/{order_id}", tag = "internal", security(("service_token" = [])),
        params(("order_id" = String, Path, description = "The order's id, chosen by the caller")),
        responses(
            (status = 200, description = "`{order_id, status, cancel_reason}`"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, description = "`sku_unavailable`, `currency_mismatch`, `shipping_unavailable`, `validation_failed`", body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn place(
        State(service): State<AppState>,
        Path(order_id): Path<Uuid>,
        Json(body): Json<PlaceOrder>,
    ) -> ApiResult<Json<PlacedOrder>> {
        if body.order_id != order_id {
            return Err(ApiError::validation(
                "the body's order_id is not the path's",
            ));
        }
        Ok(Json(service.place(&body).await?))
    }
}
