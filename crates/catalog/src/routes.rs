//! `/products`.

use crate::domain::{CatalogCommand, NewVariant};
use crate::service::CatalogService;
use crate::store::{Category, ProductFilter};
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::AppendHeaders;
use mercato_contracts::interactions::Observed;
use mercato_contracts::types::{Image, Product, ProductStatus};
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Created, Json, Path, Query};
use mercato_kernel::page::{Page, PageQuery};
use mercato_kernel::{ApiError, ApiResult, Currency, Money};
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
        .routes(routes!(create_category, list_categories))
        .with_state(service)
}

/// A price as a seller sets it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PriceInput {
    /// Minor units (cents for EUR), 0 or more.
    #[schema(minimum = 0, example = 1290)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub amount: i64,
    /// Every variant of a product is priced in the same currency.
    pub currency: Currency,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VariantInput {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; used once in the whole
    /// shop (409 `sku_taken` otherwise, also for two variants of one product).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "CUP-1")]
    pub sku: String,
    /// 1 to 200 characters, not only white space; the product's title when
    /// absent or null.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub title: Option<String>,
    pub price: PriceInput,
    /// Its price in other currencies the shop sells in (`shop.currencies`),
    /// one each (422 `duplicate_currency`): a cart in that currency buys it
    /// at that price.
    #[serde(default)]
    pub prices: Vec<PriceInput>,
    /// Free-form properties (colour, size, ...).
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<BTreeMap<String, serde_json::Value>>,
}

impl From<VariantInput> for NewVariant {
    fn from(v: VariantInput) -> Self {
        NewVariant {
            sku: v.sku,
            title: v.title,
            price: Money::new(v.price.amount, v.price.currency),
            prices: v
                .prices
                .into_iter()
                .map(|p| Money::new(p.amount, p.currency))
                .collect(),
            attributes: v.attributes.unwrap_or_default(),
        }
    }
}

/// Text fields keep no white space around them.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProductRequest {
    /// 1 to 200 characters, not only white space.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "Espresso cup"
    )]
    pub title: String,
    /// At most 10,000 characters; empty when absent.
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: String,
    /// 1 to 100 characters, not only white space.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S", example = "kitchen")]
    pub category: String,
    /// 1 to 100 variants, all priced in one currency (422 `currency_mismatch`
    /// otherwise).
    #[schema(min_items = 1, max_items = 100)]
    pub variants: Vec<VariantInput>,
    /// At most 20 pictures.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub images: Vec<Image>,
}

/// What is absent or null stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateProductRequest {
    /// 1 to 200 characters, not only white space.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub title: Option<String>,
    /// At most 10,000 characters.
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// 1 to 100 characters, not only white space.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub category: Option<String>,
    /// Replaces the whole list of variants: 1 to 100, all priced in one
    /// currency (422 `currency_mismatch` otherwise).
    #[schema(min_items = 1, max_items = 100)]
    pub variants: Option<Vec<VariantInput>>,
    /// Replaces the pictures: at most 20.
    #[schema(max_items = 20)]
    pub images: Option<Vec<Image>>,
}

/// Which products `GET /products` lists.
#[derive(Debug, ToSchema)]
#[schema(as = ProductStatusFilter, rename_all = "snake_case")]
#[allow(dead_code)]
enum StatusFilter {
    Active,
    Archived,
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductListQuery {
    /// Only products of this category or of a category under it (by name
    /// or slug); empty for any.
    pub category: Option<String>,
    /// Only products of this seller; `me` for the caller's own (signed in).
    #[param(value_type = Option<String>, pattern = "^(me|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$")]
    pub seller_id: Option<String>,
    /// `active` (default), `archived` or `all`.
    #[param(value_type = Option<StatusFilter>, inline)]
    pub status: Option<String>,
    /// Page size, at least 1 (default 20); values above 100 are served as 100.
    #[param(minimum = 1, default = 20)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; empty or absent for the first.
    #[param(pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

fn product_id(raw: &str) -> Result<Uuid, ApiError> {
    mercato_kernel::id::parse_id(raw).ok_or_else(|| ApiError::not_found("product"))
}

/// Create a product (sellers and admins).
#[utoipa::path(post, path = "/products", tag = "catalog", security(("bearer" = [])),
    request_body = CreateProductRequest,
    responses(
        (status = 201, description = "Created, active", body = Product),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only sellers and admins create products", body = ErrorBody),
        (status = 409, description = "`sku_taken`: a SKU is already used, by another product or by two variants", body = ErrorBody),
        (status = 422, description = "`currency_mismatch`: variants priced in more than one currency; `duplicate_currency`: a variant with two prices in one currency; `validation_failed`: a field out of its rules", body = ErrorBody),
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
                category_path: Vec::new(),
                variants: body.variants.into_iter().map(Into::into).collect(),
                images: body.images,
            },
        )
        .await?;
    Ok(Created(product))
}

/// List products, newest first.
#[utoipa::path(get, path = "/products", tag = "catalog",
    params(ProductListQuery),
    responses(
        (status = 200, description = "A page of products", body = Page<Product>),
        (status = 400, description = "`invalid_cursor`: the cursor is not base64url; `invalid_query`: a seller_id that is neither an id nor `me`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: `seller_id=me` without a signed-in caller, or a token that is not valid", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1 or an unknown status", body = ErrorBody),
    ))]
async fn list_products(
    State(service): State<AppState>,
    caller: Option<Caller>,
    Query(q): Query<ProductListQuery>,
) -> ApiResult<Json<Page<Product>>> {
    let seller_id = match q.seller_id.as_deref() {
        None | Some("") => None,
        Some("me") => Some(
            caller
                .ok_or_else(|| ApiError::unauthorized("seller_id=me needs a signed-in caller"))?
                .user_id,
        ),
        Some(raw) => Some(mercato_kernel::id::strict_id(raw).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "seller_id must be an id or `me`")
        })?),
    };
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
        seller_id,
        status,
    };
    Ok(Json(service.list(&filter, &page).await?))
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product, also when archived", body = Product),
        (status = 404, description = "`not_found`: no product has this id", body = ErrorBody),
    ))]
async fn get_product(
    State(service): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(
    AppendHeaders<Option<(HeaderName, HeaderValue)>>,
    Json<Arc<Product>>,
)> {
    let product = service.get(product_id(&id)?).await?;
    let seen = Observed::ProductViewed {
        product_id: product.id,
    };
    Ok((AppendHeaders(seen.header()), Json(product)))
}

/// Change a product (its seller or an admin).
#[utoipa::path(patch, path = "/products/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    request_body = UpdateProductRequest,
    responses(
        (status = 200, description = "The product as changed", body = Product),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not the product's seller nor an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no product has this id", body = ErrorBody),
        (status = 409, description = "`sku_taken`: a SKU is already used; `product_archived`: an archived product cannot change; `concurrent_update`: changed by another request meanwhile", body = ErrorBody),
        (status = 422, description = "`currency_mismatch`: variants priced in more than one currency; `duplicate_currency`: a variant with two prices in one currency; `validation_failed`: a field out of its rules", body = ErrorBody),
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
        category_path: None,
        variants: body
            .variants
            .map(|v| v.into_iter().map(Into::into).collect()),
        images: body.images,
    };
    Ok(Json(
        service.update(caller, product_id(&id)?, command).await?,
    ))
}

/// Archive a product (its seller or an admin): it can no longer be bought.
#[utoipa::path(delete, path = "/products/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 204, description = "Archived (now or before)"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not the product's seller nor an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no product has this id", body = ErrorBody),
        (status = 409, description = "`concurrent_update`: changed by another request meanwhile", body = ErrorBody),
    ))]
async fn archive_product(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service.archive(caller, product_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCategoryRequest {
    /// 1 to 100 characters, not only white space.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S", example = "Cups")]
    pub name: String,
    /// Lower-case letters and digits in groups joined by `-`; made from the
    /// name when absent.
    #[schema(
        max_length = 100,
        pattern = "^[a-z0-9]+(-[a-z0-9]+)*$",
        example = "cups"
    )]
    pub slug: Option<String>,
    /// The slug of the parent category; top level when absent.
    #[schema(example = "kitchen")]
    pub parent: Option<String>,
}

/// Make a category (admins), under another or at top level. A product
/// whose category is not known yet makes it at top level.
#[utoipa::path(post, path = "/categories", tag = "catalog", security(("bearer" = [])),
    request_body = CreateCategoryRequest,
    responses(
        (status = 201, description = "Created", body = Category),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins make categories", body = ErrorBody),
        (status = 409, description = "`category_exists`: a category has the slug", body = ErrorBody),
        (status = 422, description = "`unknown_parent`: no category has the parent's slug; `validation_failed`: a field out of its rules", body = ErrorBody),
    ))]
async fn create_category(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateCategoryRequest>,
) -> ApiResult<Created<Category>> {
    let category = service
        .create_category(
            caller,
            &body.name,
            body.slug.as_deref(),
            body.parent.as_deref(),
        )
        .await?;
    Ok(Created(category))
}

/// Every category, all in one page, a parent before its children.
#[utoipa::path(get, path = "/categories", tag = "catalog",
    responses(
        (status = 200, description = "The categories by path; `next_cursor` is always null", body = Page<Category>),
    ))]
async fn list_categories(State(service): State<AppState>) -> ApiResult<Json<Page<Category>>> {
    Ok(Json(Page {
        items: service.categories().await?,
        next_cursor: None,
    }))
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
    use mercato_contracts::types::{Product, SkuInfo};
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::{ApiError, ApiResult};
    use std::sync::Arc;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;

    pub(super) fn router(service: Arc<CatalogService>) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(internal_sku))
            .routes(routes!(internal_product))
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

    /// A product as its page shows it (for the storefront).
    #[utoipa::path(get, path = "/products/{id}", tag = "internal", security(("service_token" = [])),
        params(("id" = String, Path, description = "Product id")),
        responses(
            (status = 200, description = "The product"),
            (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn internal_product(
        State(service): State<Arc<CatalogService>>,
        Path(id): Path<String>,
    ) -> ApiResult<Json<Product>> {
        let id = mercato_kernel::id::parse_id(&id).ok_or_else(|| ApiError::not_found("product"))?;
        match service.product(id).await.map_err(api_error)? {
            Some(product) => Ok(Json(product)),
            None => Err(ApiError::not_found("product")),
        }
    }
}
