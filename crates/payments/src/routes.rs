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
        (status = 200, body = OrderPayment),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
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
