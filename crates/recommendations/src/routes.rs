//! `/products/{id}/recommendations`, `/recommendations`, experiments.

use crate::domain::{Assignment, Experiment, ExperimentResults, Recommendations, Variant};
use crate::service::{RecommendationsService, MAX_LIMIT};
use axum::extract::State;
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

type AppState = Arc<RecommendationsService>;

pub fn router(service: Arc<RecommendationsService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(for_product))
        .routes(routes!(for_caller))
        .routes(routes!(create_experiment, list_experiments))
        .routes(routes!(assignment))
        .routes(routes!(results))
        .with_state(service)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many, at least 1 (default 10); values above 50 are served as 50.
    #[param(value_type = Option<i64>, minimum = 1, default = 10)]
    pub limit: Option<String>,
}

/// The `limit` parameter: 10 when absent; above 50 served as 50.
fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let max = u32::try_from(MAX_LIMIT).unwrap_or(50);
    Ok(mercato_kernel::page::limit_param(raw, 10, max)? as usize)
}

/// What to show beside a product: products bought together with it, then
/// products like it; never itself, nor archived or out-of-stock products.
#[utoipa::path(get, path = "/products/{id}/recommendations", tag = "recommendations",
    params(("id" = String, Path, description = "Product id"), LimitQuery),
    responses(
        (status = 200, description = "Recommendations, best first", body = Recommendations),
        (status = 400, description = "`invalid_query`: a limit that is not an integer", body = ErrorBody),
        (status = 404, description = "`not_found`: not a product id", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn for_product(
    State(service): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Recommendations>> {
    let id = mercato_kernel::id::parse_id(&id).ok_or_else(|| ApiError::not_found("product"))?;
    let limit = limit(q.limit.as_deref())?;
    Ok(Json(service.for_product(id, limit).await?))
}

/// What to show a visitor: for a signed-in customer what goes with what they
/// bought or looked at (nothing they bought), then the best sellers; for
/// anybody else the best sellers.
#[utoipa::path(get, path = "/recommendations", tag = "recommendations",
    params(LimitQuery),
    responses(
        (status = 200, description = "Recommendations, best first", body = Recommendations),
        (status = 400, description = "`invalid_query`: a limit that is not an integer", body = ErrorBody),
        (status = 401, description = "`unauthorized`: a token that is not valid", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn for_caller(
    State(service): State<AppState>,
    caller: Option<Caller>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Recommendations>> {
    let limit = limit(q.limit.as_deref())?;
    Ok(Json(service.for_caller(caller, limit).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ExperimentBody {
    /// 1 to 64 of `a-z`, `0-9`, `-`, `_`; unique (409 `experiment_exists`).
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "checkout-button")]
    pub key: String,
    /// 2 to 10, with distinct names (422 `duplicate_variant`).
    #[schema(min_items = 2, max_items = 10)]
    pub variants: Vec<Variant>,
    /// What counts as a conversion: `order_confirmed` (the default).
    #[schema(pattern = "^order_confirmed$")]
    pub goal: Option<String>,
}

/// Start an experiment (admins): subjects are split over its variants by
/// weight, for good.
#[utoipa::path(post, path = "/admin/experiments", tag = "recommendations", security(("bearer" = [])),
    request_body = ExperimentBody,
    responses(
        (status = 201, description = "The experiment", body = Experiment),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 409, description = "`experiment_exists`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a key, variant or goal out of its rules; `duplicate_variant`: two variants of one name", body = ErrorBody),
    ))]
async fn create_experiment(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<ExperimentBody>,
) -> ApiResult<Created<Experiment>> {
    Ok(Created(
        service
            .create_experiment(caller, body.key, body.variants, body.goal)
            .await?,
    ))
}

/// Every experiment (admins), by key; its results are at
/// `GET /admin/experiments/{key}`.
#[utoipa::path(get, path = "/admin/experiments", tag = "recommendations", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of experiments", body = Page<Experiment>),
        (status = 400, description = "`invalid_cursor`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn list_experiments(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Experiment>>> {
    Ok(Json(service.experiments(caller, &page.validate()?).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssignmentQuery {
    /// Who is assigned when nobody is signed in (a session id, say): 1 to
    /// 128 characters. A signed-in user is assigned as themselves.
    #[param(min_length = 1, max_length = 128, pattern = r"\S")]
    pub subject: Option<String>,
}

/// A subject's variant of an experiment: the same every time; the first
/// asking counts as an exposure.
#[utoipa::path(get, path = "/experiments/{key}/assignment", tag = "recommendations",
    params(("key" = String, Path, description = "Experiment key"), AssignmentQuery),
    responses(
        (status = 200, description = "The variant", body = Assignment),
        (status = 401, description = "`unauthorized`: a token that is not valid", body = ErrorBody),
        (status = 404, description = "`not_found`: no such experiment", body = ErrorBody),
        (status = 422, description = "`subject_required`: nobody signed in and no subject; `validation_failed`: a subject out of its rules", body = ErrorBody),
    ))]
async fn assignment(
    State(service): State<AppState>,
    caller: Option<Caller>,
    Path(key): Path<String>,
    Query(q): Query<AssignmentQuery>,
) -> ApiResult<Json<Assignment>> {
    Ok(Json(service.assignment(caller, &key, q.subject).await?))
}

/// How an experiment is doing (admins): exposures, conversions and rates
/// per variant, and the p-value of the first two variants' difference.
#[utoipa::path(get, path = "/admin/experiments/{key}", tag = "recommendations", security(("bearer" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    responses(
        (status = 200, description = "The results", body = ExperimentResults),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 404, description = "`not_found`: no such experiment", body = ErrorBody),
    ))]
async fn results(
    State(service): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<ExperimentResults>> {
    Ok(Json(service.results(caller, &key).await?))
}

/// `/internal/v1` behind the service token, outside the public API.
pub fn internal_router(service: Arc<RecommendationsService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use crate::service::RecommendationsService;
    use axum::extract::State;
    use mercato_contracts::clients::RecommendationsClient;
    use mercato_contracts::internal::api_error;
    use mercato_contracts::types::Recommendation;
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::{ApiError, ApiResult};
    use std::sync::Arc;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;

    pub(super) fn router(service: Arc<RecommendationsService>) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(for_product))
            .with_state(service)
    }

    /// What to show beside a product (for the storefront), best first.
    #[utoipa::path(get, path = "/products/{id}/recommendations/{limit}", tag = "internal", security(("service_token" = [])),
        params(("id" = String, Path, description = "Product id"), ("limit" = u32, Path, description = "How many, 1 to 50")),
        responses(
            (status = 200, description = "The recommendations"),
            (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn for_product(
        State(service): State<Arc<RecommendationsService>>,
        Path((id, limit)): Path<(String, u32)>,
    ) -> ApiResult<Json<Vec<Recommendation>>> {
        let id = mercato_kernel::id::parse_id(&id).ok_or_else(|| ApiError::not_found("product"))?;
        Ok(Json(
            RecommendationsClient::for_product(service.as_ref(), id, limit)
                .await
                .map_err(api_error)?,
        ))
    }
}
