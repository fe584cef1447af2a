//! `/payments`: what was charged and refunded for an order (admins).

use crate::service::PaymentsService;
use crate::store::{Intent, LedgerEntry};
use axum::extract::State;
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Path};
use mercato_kernel::{ApiError, ApiResult};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router(service: Arc<PaymentsService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(order_payment))
        .with_state(service)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPayment {
    pub intent: Intent,
    pub ledger: Vec<LedgerEntry>,
}

/// The payment of an order and its ledger entries (admins).
#[utoipa::path(get, path = "/payments/orders/{order_id}", tag = "payments", security(("bearer" = [])),
    params(("order_id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order's payment intent and ledger", body = OrderPayment),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins see payments", body = ErrorBody),
        (status = 404, description = "`not_found`: no payment for this order", body = ErrorBody),
    ))]
async fn order_payment(
    State(service): State<Arc<PaymentsService>>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> ApiResult<Json<OrderPayment>> {
    caller.require(&[Role::Admin])?;
    let order_id =
        mercato_kernel::id::parse_id(&order_id).ok_or_else(|| ApiError::not_found("payment"))?;
    let intent = service
        .store()
        .by_order(order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("payment"))?;
    let ledger = service.store().ledger(intent.id).await?;
    Ok(Json(OrderPayment { intent, ledger }))
}

/// Charging and refunding orders for the checkout saga in distributed mode;
/// mounted under `/internal/v1` behind the service token, outside the public API.
pub fn internal_router(service: Arc<PaymentsService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use crate::service::PaymentsService;
    use axum::extract::State;
    use axum::http::StatusCode;
    use mercato_contracts::clients::PaymentsClient;
    use mercato_contracts::internal::{
        api_error, ChargeRequest, ChargeResponse, RefundPartRequest, RefundResponse,
    };
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::ApiResult;
    use std::sync::Arc;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    use uuid::Uuid;

    type AppState = Arc<PaymentsService>;

    pub(super) fn router(service: AppState) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(charge))
            .routes(routes!(refund))
            .routes(routes!(refund_part))
            .with_state(service)
    }

    /// Charges an order once; repeating it returns the first outcome.
    #[utoipa::path(post, path = "/payments/{order_id}/charge", tag = "internal", security(("service_token" = [])),
        params(("order_id" = String, Path, description = "Order id")),
        responses(
            (status = 200, description = "`{outcome: captured, payment_id}` or `{outcome: declined, payment_id, reason}`"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
            (status = 504, body = ErrorBody),
        ))]
    async fn charge(
        State(service): State<AppState>,
        Path(order_id): Path<Uuid>,
        Json(body): Json<ChargeRequest>,
    ) -> ApiResult<Json<ChargeResponse>> {
        let outcome = service
            .charge(order_id, body.customer_id, &body.amount, &body.token)
            .await
            .map_err(api_error)?;
        Ok(Json(outcome.into()))
    }

    /// Gives an order's money back (refund or void); a no-op when none was taken.
    #[utoipa::path(post, path = "/payments/{order_id}/refund", tag = "internal", security(("service_token" = [])),
        params(("order_id" = String, Path, description = "Order id")),
        responses(
            (status = 200, description = "`{outcome: nothing_taken | voided | refunded}`"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
            (status = 504, body = ErrorBody),
        ))]
    async fn refund(
        State(service): State<AppState>,
        Path(order_id): Path<Uuid>,
    ) -> ApiResult<Json<RefundResponse>> {
        let outcome = service.refund(order_id).await.map_err(api_error)?;
        Ok(Json(outcome.into()))
    }

    /// Refunds part of an order's payment, once per refund id.
    #[utoipa::path(post, path = "/payments/{order_id}/refunds/{refund_id}", tag = "internal", security(("service_token" = [])),
        params(
            ("order_id" = String, Path, description = "Order id"),
            ("refund_id" = String, Path, description = "Refund id: the key of the refund"),
        ),
        responses(
            (status = 204, description = "Refunded (now or before)"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, description = "More than is left to refund", body = ErrorBody),
            (status = 503, body = ErrorBody), (status = 504, body = ErrorBody),
        ))]
    async fn refund_part(
        State(service): State<AppState>,
        Path((order_id, refund_id)): Path<(Uuid, Uuid)>,
        Json(body): Json<RefundPartRequest>,
    ) -> ApiResult<StatusCode> {
        service
            .refund_part(order_id, refund_id, &body.amount)
            .await
            .map_err(api_error)?;
        Ok(StatusCode::NO_CONTENT)
    }
}
