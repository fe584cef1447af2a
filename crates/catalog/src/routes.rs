//! `/products`.

use crate::domain::{CatalogCommand, NewVariant};
use crate::service::CatalogService;
use crate::store::ProductFilter;
use axum::extract::State;
use axum::http::StatusCode;
use mercato_contracts::types::{Product, ProductStatus};
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Created, Json, Path, Query};
use mercato_kernel::page::{Page, PageQuery};
use mercato_kernel::{ApiError, ApiResult, Money};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

type AppState = Arc<CatalogService>;

pub fn router(service: Arc<CatalogService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, update_product, archive_product))
        .with_state(service)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VariantInput {
    pub sku: String,
    pub title: Option<String>,
    pub price: Money,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<BTreeMap<String, serde_json::Value>>,
}

impl From<VariantInput> for NewVariant {
    fn from(v: VariantInput) -> Self {
        NewVariant {
            sku: v.sku,
            title: v.title,
            price: v.price,
            attributes: v.attributes.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProductRequest {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub variants: Vec<VariantInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateProductRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    /// Replaces the whole list of variants.
    pub variants: Option<Vec<VariantInput>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductListQuery {
    pub category: Option<String>,
    pub seller_id: Option<Uuid>,
    /// `active` (default), `archived` or `all`.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn product_id(raw: &str) -> Result<Uuid, ApiError> {
    mercato_kernel::id::parse_id(raw).ok_or_else(|| ApiError::not_found("product"))
}

/// Create a product (sellers and admins).
#[utoipa::path(post, path = "/products", tag = "catalog", security(("bearer" = [])),
    request_body = CreateProductRequest,
    responses(
        (status = 201, body = Product),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "A SKU is already used", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create_product(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateProductRequest>,
) -> ApiResult<Created<Product>> {
    let product = service
        .create(
            caller,
            CatalogCommand::Create {
                seller_id: caller.user_id,
                title: body.title,
                description: body.description,
                category: body.category,
                variants: body.variants.into_iter().map(Into::into).collect(),
            },
        )
        .await?;
    Ok(Created(product))
}

/// List products, newest first.
#[utoipa::path(get, path = "/products", tag = "catalog",
    params(ProductListQuery),
    responses((status = 200, body = Page<Product>), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_products(
    State(service): State<AppState>,
    Query(q): Query<ProductListQuery>,
) -> ApiResult<Json<Page<Product>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    let status = match q.status.as_deref() {
        None | Some("active") => Some(ProductStatus::Active),
        Some("archived") => Some(ProductStatus::Archived),
        Some("all") => None,
        Some(other) => return Err(ApiError::validation(format!("unknown status {other:?}"))),
    };
    let filter = ProductFilter {
        category: q.category.filter(|c| !c.is_empty()),
        seller_id: q.seller_id,
        status,
    };
    Ok(Json(service.list(&filter, &page).await?))
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody)))]
async fn get_product(
    State(service): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Arc<Product>>> {
    Ok(Json(service.get(product_id(&id)?).await?))
}

/// Change a product (its seller or an admin).
#[utoipa::path(patch, path = "/products/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    request_body = UpdateProductRequest,
    responses(
        (status = 200, body = Product),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
async fn update_product(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateProductRequest>,
) -> ApiResult<Json<Product>> {
    let command = CatalogCommand::Update {
        title: body.title,
        description: body.description,
        category: body.category,
        variants: body
            .variants
            .map(|v| v.into_iter().map(Into::into).collect()),
    };
    Ok(Json(
        service.update(caller, product_id(&id)?, command).await?,
    ))
}

/// Archive a product (its seller or an admin): it can no longer be bought.
#[utoipa::path(delete, path = "/products/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 204, description = "Archived"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn archive_product(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service.archive(caller, product_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoints other contexts call in distributed mode; mounted under
/// `/internal/v1` behind the service token, outside the public API.
pub fn internal_router(service: Arc<CatalogService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use crate::service::CatalogService;
    use axum::extract::State;
    use mercato_contracts::clients::CatalogClient;
    use mercato_contracts::internal::api_error;
    use mercato_contracts::types::SkuInfo;
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::{ApiError, ApiResult};
    use std::sync::Arc;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;

    pub(super) fn router(service: Arc<CatalogService>) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(internal_sku))
            .with_state(service)
    }

    /// What a SKU is and costs now (for carts, orders and inventory).
    #[utoipa::path(get, path = "/skus/{sku}", tag = "internal", security(("service_token" = [])),
        params(("sku" = String, Path, description = "SKU")),
        responses(
            (status = 200, description = "The SKU's product, title, price and status"),
            (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn internal_sku(
        State(service): State<Arc<CatalogService>>,
        Path(sku): Path<String>,
    ) -> ApiResult<Json<SkuInfo>> {
        match service.sku(&sku).await.map_err(api_error)? {
            Some(info) => Ok(Json(info)),
            None => Err(ApiError::not_found("sku")),
        }
    }
}
