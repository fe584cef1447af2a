//! `/search`.

use crate::domain::{RawSearchQuery, SearchResults};
use crate::service::SearchService;
use axum::extract::State;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Query};
use mercato_kernel::ApiResult;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type AppState = Arc<SearchService>;

pub fn router(service: Arc<SearchService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(search))
        .with_state(service)
}

/// Search active products: full text over title and description with typo
/// tolerance and completion of the last word, filters, and category facets.
///
/// Eventually consistent: a change to a product or its stock shows here
/// within 2 seconds.
#[utoipa::path(get, path = "/search", tag = "search",
    params(RawSearchQuery),
    responses(
        (status = 200, description = "The best matches, their number and category facets", body = SearchResults),
        (status = 400, description = "`invalid_query`: a number parameter is not an integer", body = ErrorBody),
        (status = 422, description = "`query_too_long`: `q` is over 256 characters; `validation_failed`: a negative price or a limit below 1", body = ErrorBody),
    ))]
async fn search(
    State(service): State<AppState>,
    Query(q): Query<RawSearchQuery>,
) -> ApiResult<Json<SearchResults>> {
    let req = q.validate()?;
    Ok(Json(service.search(req).await?))
}
