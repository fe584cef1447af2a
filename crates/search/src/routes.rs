//! `/search`.

use crate::domain::{attribute_filters, RawSearchQuery, SearchResults, Suggestions};
use crate::service::SearchService;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::response::AppendHeaders;
use mercato_contracts::interactions::Observed;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Query};
use mercato_kernel::ApiError;
use mercato_kernel::ApiResult;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type AppState = Arc<SearchService>;

pub fn router(service: Arc<SearchService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(suggest))
        .with_state(service)
}

/// Search active products: full text over title and description with typo
/// tolerance and completion of the last word; filters by category, price,
/// stock, rating and variant attribute (`attr.<name>=<value>`, any number
/// up to 10, each a product must have; values compared without case);
/// five sort orders; facets by category, price range, rating and
/// attribute; pages by `cursor`.
///
/// Eventually consistent: a change to a product, its stock or its rating
/// shows here within 2 seconds.
#[utoipa::path(get, path = "/search", tag = "search",
    params(RawSearchQuery),
    responses(
        (status = 200, description = "The best matches, their number, facets and the next page's cursor", body = SearchResults),
        (status = 400, description = "`invalid_query`: a number parameter is not a number, `in_stock` not `true` or `false`; `invalid_cursor`: not base64url (a cursor this search did not issue pages past the end)", body = ErrorBody),
        (status = 422, description = "`query_too_long`: `q` is over 256 characters; `validation_failed`: a negative price, a limit below 1, an unknown sort, a rating outside 0 to 5, an attribute filter without a name or value, more than 10 of them", body = ErrorBody),
    ))]
async fn search(
    State(service): State<AppState>,
    uri: Uri,
    Query(q): Query<RawSearchQuery>,
) -> ApiResult<(
    AppendHeaders<Option<(HeaderName, HeaderValue)>>,
    Json<SearchResults>,
)> {
    let mut req = q.validate()?;
    // `attr.<name>` parameters have names of the shop's choosing.
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    req.attributes = attribute_filters(&pairs)?;
    let first_page = req.offset == 0;
    let query = req.text.trim().to_owned();
    let results = service.search(req).await?;
    // A search is what a visitor typed, once: not browsing, not a next page.
    let seen = (first_page && !query.is_empty()).then_some(Observed::Searched {
        query,
        results: results.total,
    });
    Ok((AppendHeaders(seen.and_then(|s| s.header())), Json(results)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestQuery {
    /// What the customer typed so far, at most 100 characters.
    #[param(max_length = 100)]
    pub q: Option<String>,
}

/// Completions of what a customer is typing: categories and product titles
/// whose words begin like it, typo tolerant, at most 10.
#[utoipa::path(get, path = "/search/suggest", tag = "search",
    params(SuggestQuery),
    responses(
        (status = 200, description = "Categories first, then products", body = Suggestions),
        (status = 422, description = "`query_too_long`: `q` is over 100 characters", body = ErrorBody),
    ))]
async fn suggest(
    State(service): State<AppState>,
    Query(q): Query<SuggestQuery>,
) -> ApiResult<Json<Suggestions>> {
    let text = q.q.unwrap_or_default();
    if text.chars().count() > 100 {
        return Err(ApiError::unprocessable(
            "query_too_long",
            "q must be at most 100 characters",
        ));
    }
    if text.trim().is_empty() {
        return Ok(Json(Suggestions::default()));
    }
    Ok(Json(service.suggest(text).await?))
}
