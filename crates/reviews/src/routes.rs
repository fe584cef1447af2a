//! `/products/{id}/reviews`, `/products/{id}/rating`, `/reviews`,
//! `/admin/reviews`, `/sellers/{id}/rating`.

use crate::domain::{ProductRating, Review, ReviewStatus, SellerRating};
use crate::service::{NewReview, ReviewsService};
use crate::store::Sort;
use axum::extract::State;
use axum::http::StatusCode;
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Created, Json, Path, Query};
use mercato_kernel::page::{Page, PageQuery};
use mercato_kernel::{ApiError, ApiResult};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

type AppState = Arc<ReviewsService>;

pub fn router(service: Arc<ReviewsService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_review, list_reviews))
        .routes(routes!(product_rating))
        .routes(routes!(vote))
        .routes(routes!(delete_review))
        .routes(routes!(review_queue))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(seller_rating))
        .with_state(service)
}

/// A review as its author writes it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReviewBody {
    /// 1 to 5.
    #[schema(minimum = 1, maximum = 5, example = 5)]
    #[serde(deserialize_with = "mercato_kernel::number::integer")]
    pub rating: i64,
    /// 1 to 200 characters, not only white space.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "Keeps tea hot"
    )]
    pub title: String,
    /// 1 to 5,000 characters, not only white space. A link, or a word of
    /// the shop's block list, holds the review for an admin.
    #[schema(
        min_length = 1,
        max_length = 5000,
        pattern = r"\S",
        example = "Sturdy, and the handle stays cool."
    )]
    pub body: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VoteBody {
    /// Whether the review helped.
    pub helpful: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewListQuery {
    /// `newest` (default), `helpful`, `rating_desc` or `rating_asc`.
    #[param(pattern = "^(|newest|helpful|rating_desc|rating_asc)$")]
    pub sort: Option<String>,
    /// Only reviews with this rating, 1 to 5; empty or absent for all.
    #[param(value_type = Option<String>, pattern = "^(|[1-5])$")]
    pub rating: Option<String>,
    /// Page size, at least 1 (default 20); values above 100 are served as 100.
    #[param(minimum = 1, default = 20)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; empty or absent for the first.
    #[param(pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// `pending`, `published` or `rejected`; empty or absent for every status.
    #[param(pattern = "^(|pending|published|rejected)$")]
    pub status: Option<String>,
    /// Page size, at least 1 (default 20); values above 100 are served as 100.
    #[param(minimum = 1, default = 20)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; empty or absent for the first.
    #[param(pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

fn uuid_of(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    mercato_kernel::id::parse_id(raw).ok_or_else(|| ApiError::not_found(what))
}

/// Review a product you bought (customers with a confirmed, shipped or
/// delivered order of it). Published at once unless it trips moderation
/// (links, words of the block list, or moderation before publishing), then
/// `pending` until an admin decides.
#[utoipa::path(post, path = "/products/{id}/reviews", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    request_body = ReviewBody,
    responses(
        (status = 201, description = "The review, `published` or `pending`", body = Review),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not a customer who bought the product", body = ErrorBody),
        (status = 404, description = "`not_found`: not a product id", body = ErrorBody),
        (status = 409, description = "`review_exists`: one review per customer and product", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a rating outside 1 to 5, a title or body out of its bounds", body = ErrorBody),
    ))]
async fn create_review(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ReviewBody>,
) -> ApiResult<Created<Review>> {
    let product_id = uuid_of(&id, "product")?;
    Ok(Created(
        service
            .create(
                caller,
                product_id,
                NewReview {
                    rating: body.rating,
                    title: body.title,
                    body: body.body,
                },
            )
            .await?,
    ))
}

/// A product's published reviews.
#[utoipa::path(get, path = "/products/{id}/reviews", tag = "reviews",
    params(("id" = String, Path, description = "Product id"), ReviewListQuery),
    responses(
        (status = 200, description = "A page of published reviews", body = Page<Review>),
        (status = 400, description = "`invalid_cursor`: not base64url; `invalid_query`: a rating that is not an integer", body = ErrorBody),
        (status = 404, description = "`not_found`: not a product id", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an unknown sort, a rating outside 1 to 5, a limit below 1", body = ErrorBody),
    ))]
async fn list_reviews(
    State(service): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ReviewListQuery>,
) -> ApiResult<Json<Page<Review>>> {
    let product_id = uuid_of(&id, "product")?;
    let sort = match q.sort.as_deref() {
        None | Some("") => Sort::Newest,
        Some(s) => {
            Sort::parse(s).ok_or_else(|| ApiError::validation(format!("unknown sort {s:?}")))?
        }
    };
    let rating = match q.rating.as_deref() {
        None | Some("") => None,
        Some(raw) => {
            let r: i64 = raw.parse().map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("rating must be an integer, got {raw:?}"),
                )
            })?;
            if !(1..=5).contains(&r) {
                return Err(ApiError::validation("rating must be 1 to 5"));
            }
            Some(r)
        }
    };
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    Ok(Json(
        service.for_product(product_id, sort, rating, &page).await?,
    ))
}

/// A product's rating: the mean of its published reviews and how many gave
/// each rating.
#[utoipa::path(get, path = "/products/{id}/rating", tag = "reviews",
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "The rating (0 and no reviews when it has none)", body = ProductRating),
        (status = 404, description = "`not_found`: not a product id", body = ErrorBody),
    ))]
async fn product_rating(
    State(service): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProductRating>> {
    Ok(Json(
        service.product_rating(uuid_of(&id, "product")?).await?,
    ))
}

/// Say whether a published review helped (signed in, not its author); a
/// second vote replaces the first.
#[utoipa::path(post, path = "/reviews/{id}/votes", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "Review id")),
    request_body = VoteBody,
    responses(
        (status = 200, description = "The review with its votes", body = Review),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: authors do not vote on their own reviews", body = ErrorBody),
        (status = 404, description = "`not_found`: no such published review", body = ErrorBody),
    ))]
async fn vote(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<VoteBody>,
) -> ApiResult<Json<Review>> {
    Ok(Json(
        service
            .vote(caller, uuid_of(&id, "review")?, body.helpful)
            .await?,
    ))
}

/// Delete a review (its author, admins).
#[utoipa::path(delete, path = "/reviews/{id}", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "Review id")),
    responses(
        (status = 204, description = "Deleted; a published review leaves the ratings"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: not its author or an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
async fn delete_review(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service.delete(caller, uuid_of(&id, "review")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reviews by status, newest first: the moderation queue (admins).
#[utoipa::path(get, path = "/admin/reviews", tag = "reviews", security(("bearer" = [])),
    params(QueueQuery),
    responses(
        (status = 200, description = "A page of reviews", body = Page<Review>),
        (status = 400, description = "`invalid_cursor`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an unknown status, a limit below 1", body = ErrorBody),
    ))]
async fn review_queue(
    State(service): State<AppState>,
    caller: Caller,
    Query(q): Query<QueueQuery>,
) -> ApiResult<Json<Page<Review>>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            ReviewStatus::parse(s)
                .ok_or_else(|| ApiError::validation(format!("unknown status {s:?}")))?,
        ),
    };
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    Ok(Json(service.queue(caller, status, &page).await?))
}

/// Publish a pending or rejected review (admins).
#[utoipa::path(post, path = "/reviews/{id}/approve", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "Review id")),
    responses(
        (status = 200, description = "The review, `published`", body = Review),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
async fn approve(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Review>> {
    Ok(Json(
        service.approve(caller, uuid_of(&id, "review")?).await?,
    ))
}

/// Take a pending or published review out of sight (admins).
#[utoipa::path(post, path = "/reviews/{id}/reject", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "Review id")),
    responses(
        (status = 200, description = "The review, `rejected`", body = Review),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
async fn reject(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Review>> {
    Ok(Json(service.reject(caller, uuid_of(&id, "review")?).await?))
}

/// A seller's rating: the mean of the published reviews of their products.
#[utoipa::path(get, path = "/sellers/{id}/rating", tag = "reviews",
    params(("id" = String, Path, description = "Seller's user id")),
    responses(
        (status = 200, description = "The rating (0 and no reviews when there are none)", body = SellerRating),
        (status = 404, description = "`not_found`: not a user id", body = ErrorBody),
    ))]
async fn seller_rating(
    State(service): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SellerRating>> {
    Ok(Json(service.seller_rating(uuid_of(&id, "seller")?).await?))
}

/// `/internal/v1` behind the service token, outside the public API.
pub fn internal_router(service: Arc<ReviewsService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use crate::service::ReviewsService;
    use axum::extract::State;
    use mercato_contracts::clients::ReviewsClient;
    use mercato_contracts::internal::api_error;
    use mercato_contracts::types::ProductReviews;
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::{ApiError, ApiResult};
    use std::sync::Arc;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;

    pub(super) fn router(service: Arc<ReviewsService>) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(product_reviews))
            .with_state(service)
    }

    /// A product's rating and its most helpful published reviews (for the
    /// storefront), 1 to 100.
    #[utoipa::path(get, path = "/products/{id}/reviews/{limit}", tag = "internal", security(("service_token" = [])),
        params(("id" = String, Path, description = "Product id"), ("limit" = u32, Path, description = "How many reviews")),
        responses(
            (status = 200, description = "The rating and the reviews"),
            (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn product_reviews(
        State(service): State<Arc<ReviewsService>>,
        Path((id, limit)): Path<(String, u32)>,
    ) -> ApiResult<Json<ProductReviews>> {
        let id = mercato_kernel::id::parse_id(&id).ok_or_else(|| ApiError::not_found("product"))?;
        Ok(Json(
            service
                .product_reviews(id, limit)
                .await
                .map_err(api_error)?,
        ))
    }
}
