//! `GET /storefront/products/{id}`: a product page's data in one answer.
//! The product (then its stock), its rating and reviews, and its
//! recommendations are asked for at once through the client traits, each
//! within its own time; a part whose context does not answer in time, or at
//! all, is `null` and the rest still answers. Missing parts are counted in
//! `mercato_storefront_parts_missing_total{part}`.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::AppendHeaders;
use mercato_contracts::clients::{
    CatalogClient, ClientResult, InventoryClient, RecommendationsClient, ReviewsClient,
};
use mercato_contracts::types::{Product, ProductRating, ProductStock, Recommendation, Review};
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Path};
use mercato_kernel::{ApiError, ApiResult};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Reviews on a product page, at most.
pub const REVIEWS: u32 = 3;
/// Recommendations on a product page, at most.
pub const RECOMMENDATIONS: u32 = 4;

/// The contexts a product page is made of, and how long each may take.
pub struct Storefront {
    pub catalog: Arc<dyn CatalogClient>,
    pub inventory: Arc<dyn InventoryClient>,
    pub reviews: Arc<dyn ReviewsClient>,
    pub recommendations: Arc<dyn RecommendationsClient>,
    /// The time of one part (the product and its stock are one each).
    pub part_timeout: Duration,
}

/// A product page's data; a part that could not be had is `null`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StorefrontProduct {
    /// Null when the catalog does not answer.
    pub product: Option<Product>,
    /// Null when the catalog or inventory does not answer.
    pub stock: Option<ProductStock>,
    /// From its published reviews; null when reviews does not answer.
    pub rating: Option<ProductRating>,
    /// At most 3, most helpful first; null when reviews does not answer.
    pub reviews: Option<Vec<Review>>,
    /// At most 4, best first; null when recommendations does not answer.
    pub recommendations: Option<Vec<Recommendation>>,
}

pub fn router(storefront: Arc<Storefront>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(product_page))
        .with_state(storefront)
}

/// A part within `within`, or `None` (logged and counted).
async fn part<T>(
    name: &'static str,
    within: Duration,
    call: impl Future<Output = ClientResult<T>>,
) -> Option<T> {
    let outcome = match tokio::time::timeout(within, call).await {
        Ok(Ok(value)) => return Some(value),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {within:?}"),
    };
    tracing::warn!(part = name, error = %outcome, "a storefront part is missing");
    metrics::counter!("mercato_storefront_parts_missing_total", "part" => name).increment(1);
    None
}

/// A product page in one call: the product, its stock, rating, up to 3
/// reviews (most helpful first) and up to 4 recommendations. A part whose
/// context is down is `null`; the rest still answers.
#[utoipa::path(get, path = "/storefront/products/{id}", tag = "storefront",
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "The page's data", body = StorefrontProduct),
        (status = 404, description = "`not_found`: the catalog has no such product", body = ErrorBody),
    ))]
async fn product_page(
    State(page): State<Arc<Storefront>>,
    Path(id): Path<String>,
) -> ApiResult<(
    AppendHeaders<Option<(HeaderName, HeaderValue)>>,
    Json<StorefrontProduct>,
)> {
    let id = mercato_kernel::id::parse_id(&id).ok_or_else(|| ApiError::not_found("product"))?;
    let within = page.part_timeout;
    let product_and_stock = async {
        let product = match part("product", within, page.catalog.product(id)).await {
            Some(None) => return Err(ApiError::not_found("product")),
            Some(Some(product)) => product,
            None => return Ok((None, None)),
        };
        let skus: Vec<String> = product.variants.iter().map(|v| v.sku.clone()).collect();
        let stock = part("stock", within, page.inventory.stock(&skus))
            .await
            .map(|skus| ProductStock {
                available: skus.iter().map(|s| s.available).sum(),
                skus,
            });
        Ok((Some(product), stock))
    };
    let reviews = part("reviews", within, page.reviews.product_reviews(id, REVIEWS));
    let recommendations = part(
        "recommendations",
        within,
        page.recommendations.for_product(id, RECOMMENDATIONS),
    );
    let (product_and_stock, reviews, recommendations) =
        tokio::join!(product_and_stock, reviews, recommendations);
    let (product, stock) = product_and_stock?;
    let (rating, reviews) = match reviews {
        Some(r) => (Some(r.rating), Some(r.reviews)),
        None => (None, None),
    };
    // A product page seen is a product viewed, as `GET /products/{id}` is.
    let seen = product
        .as_ref()
        .map(|p| mercato_contracts::interactions::Observed::ProductViewed { product_id: p.id });
    Ok((
        AppendHeaders(seen.and_then(|s| s.header())),
        Json(StorefrontProduct {
            product,
            stock,
            rating,
            reviews,
            recommendations,
        }),
    ))
}
