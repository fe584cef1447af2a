//! `/inventory/{sku}`.

use crate::domain::Stock;
use crate::service::InventoryService;
use axum::extract::State;
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Path};
use mercato_kernel::ApiResult;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type AppState = Arc<InventoryService>;

pub fn router(service: Arc<InventoryService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_stock, set_stock))
        .with_state(service)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetStockRequest {
    /// 1 to 64 of `a-z`, `0-9`, `_`, `-`; `main` when omitted.
    #[schema(example = "main")]
    pub warehouse: Option<String>,
    /// The new on-hand count in that warehouse; at least what is reserved there.
    #[schema(minimum = 0)]
    pub quantity: i64,
}

/// Stock of a SKU, summed over warehouses and per warehouse.
#[utoipa::path(get, path = "/inventory/{sku}", tag = "inventory",
    params(("sku" = String, Path, description = "The SKU")),
    responses(
        (status = 200, body = Stock),
        (status = 404, description = "No product has this SKU", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn get_stock(
    State(service): State<AppState>,
    Path(sku): Path<String>,
) -> ApiResult<Json<Stock>> {
    Ok(Json(service.stock(&sku).await?))
}

/// Set the on-hand stock of a SKU in one warehouse (the product's seller or an admin).
#[utoipa::path(put, path = "/inventory/{sku}", tag = "inventory", security(("bearer" = [])),
    params(("sku" = String, Path, description = "The SKU")),
    request_body = SetStockRequest,
    responses(
        (status = 200, body = Stock),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No product has this SKU", body = ErrorBody),
        (status = 409, description = "`below_reserved`: more units are reserved in the warehouse", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn set_stock(
    State(service): State<AppState>,
    caller: Caller,
    Path(sku): Path<String>,
    Json(body): Json<SetStockRequest>,
) -> ApiResult<Json<Stock>> {
    Ok(Json(
        service
            .set_stock(caller, &sku, body.warehouse.as_deref(), body.quantity)
            .await?,
    ))
}
