//! `/subscriptions`.

use crate::domain::{Interval, Subscription, SubscriptionItem};
use crate::service::{NewRequest, SubscriptionsService};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use mercato_contracts::types::ShippingAddress;
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Path, Query};
use mercato_kernel::idempotency::require_key;
use mercato_kernel::page::{Page, PageQuery};
use mercato_kernel::{ApiError, ApiResult};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

type AppState = Arc<SubscriptionsService>;

pub fn router(service: Arc<SubscriptionsService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(get_subscription))
        .routes(routes!(pause_subscription))
        .routes(routes!(resume_subscription))
        .routes(routes!(cancel_subscription))
        .routes(routes!(renew_subscription))
        .with_state(service)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionPayment {
    /// A token of the payment provider, e.g. `tok_visa`: 1 to 200
    /// characters, not only white space; every period's order is paid
    /// with it.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "tok_visa"
    )]
    pub token: String,
}

/// What to order every period, where to, and how to pay.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscribeBody {
    /// 1 to 50 SKUs, each once (422 `duplicate_sku` otherwise).
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<SubscriptionItem>,
    pub interval: Interval,
    pub payment: SubscriptionPayment,
    pub shipping_address: ShippingAddress,
}

fn subscription_id(raw: &str) -> Result<Uuid, ApiError> {
    mercato_kernel::id::parse_id(raw).ok_or_else(|| ApiError::not_found("subscription"))
}

/// Subscribe: the first order is placed at once (its id is the first of
/// `orders`), then one per `interval`, each through the checkout saga with
/// the cheapest shipping to the address and its tax.
#[utoipa::path(post, path = "/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$",
        description = "1 to 255 visible ASCII characters. A replay with the same body returns the first answer.")),
    request_body = SubscribeBody,
    responses(
        (status = 201, description = "Subscribed; the first order is pending", body = Subscription),
        (status = 400, description = "`idempotency_key_required`: no Idempotency-Key; `invalid_idempotency_key`: not 1 to 255 visible ASCII characters", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only customers subscribe", body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused`: the key was used with another body; `idempotency_key_in_use`: a request with the key is still running", body = ErrorBody),
        (status = 422, description = "`validation_failed`: items, quantities, token or address out of their rules; `duplicate_sku`: a SKU listed twice; `sku_unavailable`: a SKU no active product has; `currency_mismatch`: SKUs priced in different currencies; `shipping_unavailable`: no shipping method ships to the address. Nothing is kept.", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    ))]
async fn create_subscription(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<SubscribeBody>,
) -> ApiResult<Response> {
    let key = require_key(&headers)?;
    let answer = service
        .create(
            caller,
            NewRequest {
                idempotency_key: key,
                items: body.items,
                interval: body.interval,
                payment_token: body.payment.token,
                shipping_address: body.shipping_address,
            },
        )
        .await?;
    Ok(answer.into_response())
}

/// The caller's subscriptions, newest first (admins: every one).
#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of subscriptions", body = Page<Subscription>),
        (status = 400, description = "`invalid_cursor`: the cursor is not base64url", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn list_subscriptions(
    State(service): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Subscription>>> {
    let page = q.validate()?;
    Ok(Json(service.list(caller, &page).await?))
}

/// A subscription of the caller's (admins: any).
#[utoipa::path(get, path = "/subscriptions/{id}", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = Subscription),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: no such subscription, or another customer's", body = ErrorBody),
    ))]
async fn get_subscription(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscription>> {
    Ok(Json(service.get(caller, subscription_id(&id)?).await?))
}

/// Pause: nothing is placed until resumed (a paused one answers as it is).
#[utoipa::path(post, path = "/subscriptions/{id}/pause", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription, `paused`", body = Subscription),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`subscription_cancelled`: a cancelled subscription stays cancelled", body = ErrorBody),
    ))]
async fn pause_subscription(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscription>> {
    Ok(Json(service.pause(caller, subscription_id(&id)?).await?))
}

/// Resume a paused or past-due subscription: a failed period is tried again
/// at once; a period that started while paused is placed now, once.
#[utoipa::path(post, path = "/subscriptions/{id}/resume", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription, `active`", body = Subscription),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`subscription_cancelled`: a cancelled subscription stays cancelled", body = ErrorBody),
    ))]
async fn resume_subscription(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscription>> {
    Ok(Json(service.resume(caller, subscription_id(&id)?).await?))
}

/// Cancel for good; orders already placed stay (a cancelled one answers as it is).
#[utoipa::path(post, path = "/subscriptions/{id}/cancel", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription, `cancelled`", body = Subscription),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
async fn cancel_subscription(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscription>> {
    Ok(Json(service.cancel(caller, subscription_id(&id)?).await?))
}

/// Place the order of the period that starts at `next_renewal_at` now, or
/// try a failed period again at once (admins). Nothing happens when that
/// period has a pending or confirmed order: a period never gets two.
#[utoipa::path(post, path = "/subscriptions/{id}/renew", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription, with the period's order in `orders`", body = Subscription),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins renew", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`subscription_not_active`: a paused or cancelled subscription places nothing", body = ErrorBody),
    ))]
async fn renew_subscription(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscription>> {
    Ok(Json(service.renew(caller, subscription_id(&id)?).await?))
}
