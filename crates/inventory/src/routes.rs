//! `/inventory/{sku}`.

use crate::domain::Stock;
use crate::service::{InventoryService, LowStock};
use axum::extract::State;
use mercato_contracts::clients::InventoryClient;
use mercato_contracts::types::SkuStock;
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Path, Query};
use mercato_kernel::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type AppState = Arc<InventoryService>;

pub fn router(service: Arc<InventoryService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_stock, set_stock))
        .routes(routes!(list_stock))
        .routes(routes!(low_stock))
        .with_state(service)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetStockRequest {
    /// 1 to 64 of `a-z`, `0-9`, `_`, `-`; `main` when absent or null.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "main")]
    pub warehouse: Option<String>,
    /// The new on-hand count in that warehouse, 0 to 1,000,000,000; at
    /// least what is reserved there (409 `below_reserved` otherwise).
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 10)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub quantity: i64,
}

/// Stock of a SKU, summed over warehouses and per warehouse.
#[utoipa::path(get, path = "/inventory/{sku}", tag = "inventory",
    params(("sku" = String, Path, description = "The SKU")),
    responses(
        (status = 200, description = "The SKU's stock (zeros when never stocked)", body = Stock),
        (status = 404, description = "`not_found`: no product has this SKU", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog or the store is unavailable", body = ErrorBody),
    ))]
async fn get_stock(
    State(service): State<AppState>,
    Path(sku): Path<String>,
) -> ApiResult<Json<Stock>> {
    Ok(Json(service.stock(&sku).await?))
}

/// At most this many SKUs in one `GET /inventory`.
const MAX_SKUS_PER_LIST: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StockListQuery {
    /// The SKUs, separated by commas: 1 to 100.
    #[param(
        example = "MUG-RED,MUG-BLUE",
        pattern = "^[A-Za-z0-9._-]{1,64}(,[A-Za-z0-9._-]{1,64}){0,99}$"
    )]
    pub skus: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockList {
    /// Each SKU's units that can be bought now, in the order asked (0 for
    /// a SKU without stock or unknown).
    pub items: Vec<SkuStock>,
}

/// What of several SKUs can be bought now, in one answer (a product list,
/// the console's low-stock panel).
#[utoipa::path(get, path = "/inventory", tag = "inventory",
    params(StockListQuery),
    responses(
        (status = 200, description = "The SKUs' available units, in the order asked", body = StockList),
        (status = 422, description = "`validation_failed`: no SKU, more than 100, or one not shaped as a SKU", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store is unavailable", body = ErrorBody),
    ))]
async fn list_stock(
    State(service): State<AppState>,
    Query(query): Query<StockListQuery>,
) -> ApiResult<Json<StockList>> {
    let skus: Vec<String> = query
        .skus
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = skus.iter().find(|s| !mercato_contracts::types::is_sku(s)) {
        return Err(ApiError::validation(format!(
            "{bad:?} is not a SKU (1 to 64 letters, digits, '-', '_' or '.')"
        )));
    }
    if skus.is_empty() || skus.len() > MAX_SKUS_PER_LIST {
        return Err(ApiError::validation(format!(
            "skus: 1 to {MAX_SKUS_PER_LIST} SKUs, separated by commas"
        )));
    }
    let items = InventoryClient::stock(service.as_ref(), &skus)
        .await
        .map_err(mercato_contracts::internal::api_error)?;
    Ok(Json(StockList { items }))
}

/// Every SKU running out (no more than `inventory.low_stock_threshold`
/// available) of an active product, fewest first, at most 50 (admins).
#[utoipa::path(get, path = "/admin/low-stock", tag = "inventory", security(("bearer" = [])),
    responses(
        (status = 200, description = "The SKUs running out", body = LowStock),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog or the store is unavailable", body = ErrorBody),
    ))]
async fn low_stock(State(service): State<AppState>, caller: Caller) -> ApiResult<Json<LowStock>> {
    Ok(Json(service.low_stock(caller).await?))
}

/// Set the on-hand stock of a SKU in one warehouse (the product's seller or an admin).
#[utoipa::path(put, path = "/inventory/{sku}", tag = "inventory", security(("bearer" = [])),
    params(("sku" = String, Path, description = "The SKU")),
    request_body = SetStockRequest,
    responses(
        (status = 200, description = "The SKU's stock after the change", body = Stock),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not the seller of the SKU's product nor an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no product has this SKU", body = ErrorBody),
        (status = 409, description = "`below_reserved`: more units are reserved in the warehouse", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a warehouse or quantity out of its rules", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog or the store is unavailable", body = ErrorBody),
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

/// The reservation protocol the checkout saga drives in distributed mode;
/// mounted under `/internal/v1` behind the service token, outside the public API.
pub fn internal_router(service: Arc<InventoryService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use crate::service::InventoryService;
    use axum::extract::State;
    use axum::http::StatusCode;
    use mercato_contracts::clients::{ClientError, InventoryClient};
    use mercato_contracts::internal::{
        api_error, ReserveRequest, ReserveResponse, RestockPartRequest, StockRequest,
        RESERVATION_NOT_COMMITTABLE,
    };
    use mercato_contracts::types::SkuStock;
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::{ApiError, ApiResult};
    use std::sync::Arc;
    use std::time::Duration;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    use uuid::Uuid;

    type AppState = Arc<InventoryService>;

    pub(super) fn router(service: AppState) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(reserve))
            .routes(routes!(release))
            .routes(routes!(commit))
            .routes(routes!(restock))
            .routes(routes!(restock_part))
            .routes(routes!(stock))
            .with_state(service)
    }

    /// Reserves every line or none; repeating it returns the first outcome.
    #[utoipa::path(post, path = "/reservations/{id}", tag = "internal", security(("service_token" = [])),
        params(("id" = String, Path, description = "Reservation id")),
        responses(
            (status = 200, description = "`{outcome: reserved}` or `{outcome: out_of_stock, sku}`"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
        ))]
    async fn reserve(
        State(service): State<AppState>,
        Path(id): Path<Uuid>,
        Json(body): Json<ReserveRequest>,
    ) -> ApiResult<Json<ReserveResponse>> {
        let outcome = service
            .reserve(id, &body.lines, Duration::from_millis(body.ttl_ms))
            .await
            .map_err(api_error)?;
        Ok(Json(outcome.into()))
    }

    /// Gives reserved stock back; a no-op when already released or never made.
    #[utoipa::path(post, path = "/reservations/{id}/release", tag = "internal", security(("service_token" = [])),
        params(("id" = String, Path, description = "Reservation id")),
        responses(
            (status = 204, description = "Released (or nothing to release)"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn release(
        State(service): State<AppState>,
        Path(id): Path<Uuid>,
    ) -> ApiResult<StatusCode> {
        service.release(id).await.map_err(api_error)?;
        Ok(StatusCode::NO_CONTENT)
    }

    /// Turns the reservation into sold stock; 409 when it is no longer held.
    #[utoipa::path(post, path = "/reservations/{id}/commit", tag = "internal", security(("service_token" = [])),
        params(("id" = String, Path, description = "Reservation id")),
        responses(
            (status = 204, description = "Committed (now or before)"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 409, body = ErrorBody, description = "`reservation_not_committable`"),
            (status = 503, body = ErrorBody),
        ))]
    async fn commit(
        State(service): State<AppState>,
        Path(id): Path<Uuid>,
    ) -> ApiResult<StatusCode> {
        match service.commit(id).await {
            Ok(()) => Ok(StatusCode::NO_CONTENT),
            Err(ClientError::Failed(_, why)) => {
                Err(ApiError::conflict(RESERVATION_NOT_COMMITTABLE, why))
            }
            Err(e) => Err(api_error(e)),
        }
    }

    /// Puts committed stock back on hand; a no-op when already done.
    #[utoipa::path(post, path = "/reservations/{id}/restock", tag = "internal", security(("service_token" = [])),
        params(("id" = String, Path, description = "Reservation id")),
        responses(
            (status = 204, description = "Restocked (or nothing to restock)"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn restock(
        State(service): State<AppState>,
        Path(id): Path<Uuid>,
    ) -> ApiResult<StatusCode> {
        service.restock(id).await.map_err(api_error)?;
        Ok(StatusCode::NO_CONTENT)
    }

    /// Puts part of the sold stock back on hand, once per restock id.
    #[utoipa::path(post, path = "/reservations/{id}/restocks/{restock_id}", tag = "internal", security(("service_token" = [])),
        params(
            ("id" = String, Path, description = "Reservation id"),
            ("restock_id" = String, Path, description = "Restock id: the key of the restock"),
        ),
        responses(
            (status = 204, description = "Put back (now or before)"),
            (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
            (status = 422, description = "Not committed, or more than is still sold", body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn restock_part(
        State(service): State<AppState>,
        Path((id, restock_id)): Path<(Uuid, Uuid)>,
        Json(body): Json<RestockPartRequest>,
    ) -> ApiResult<StatusCode> {
        service
            .restock_part(id, restock_id, &body.lines, body.warehouse.as_deref())
            .await
            .map_err(api_error)?;
        Ok(StatusCode::NO_CONTENT)
    }

    /// What of each SKU can be bought now (for the storefront), at most 100.
    #[utoipa::path(post, path = "/stock", tag = "internal", security(("service_token" = [])),
        responses(
            (status = 200, description = "Each SKU's available units, in the order asked"),
            (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn stock(
        State(service): State<AppState>,
        Json(body): Json<StockRequest>,
    ) -> ApiResult<Json<Vec<SkuStock>>> {
        if body.skus.len() > 100 {
            return Err(ApiError::validation("at most 100 SKUs"));
        }
        let stock = InventoryClient::stock(service.as_ref(), &body.skus).await;
        Ok(Json(stock.map_err(api_error)?))
    }
}
