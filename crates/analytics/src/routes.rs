//! `POST /events`, `/admin/reports/...`, `/seller/reports/...`.

use crate::domain::{
    ClientEventCounts, Csv, Funnel, Interval, Range, SalesReport, SearchTerms, TopProducts,
};
use crate::service::{AnalyticsService, Audience, ClientEvent};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mercato_contracts::interactions::{Visitor, SESSION_HEADER};
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, JsonObject, Query};
use mercato_kernel::{time, ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

type AppState = Arc<AnalyticsService>;

pub fn router(service: Arc<AnalyticsService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(record_event))
        .routes(routes!(admin_sales))
        .routes(routes!(admin_top_products))
        .routes(routes!(admin_funnel))
        .routes(routes!(admin_search_terms))
        .routes(routes!(admin_client_events))
        .routes(routes!(seller_sales))
        .routes(routes!(seller_top_products))
        .routes(routes!(seller_funnel))
        .routes(routes!(seller_search_terms))
        .with_state(service)
}

/// An event a client reports (a page it rendered from its own data, a
/// click, a video played).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EventBody {
    /// What happened: 1 to 64 of `A-Z`, `a-z`, `0-9`, `_`, `.`, `:`, `-`.
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$", example = "video_played")]
    pub event_type: String,
    /// The product it was about, if any.
    #[schema(format = Uuid)]
    pub product_id: Option<String>,
    /// Words it was about (a search the client ran), at most 200 characters.
    #[schema(max_length = 200)]
    pub query: Option<String>,
    /// Anything else, at most 4 KiB as JSON.
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventAccepted {
    /// The event's id.
    pub id: Uuid,
}

/// Report an event from a client (anyone). Who made it: the signed-in
/// user, and the session named in `X-Session-Id` (1 to 128 visible ASCII
/// characters; another value is ignored).
#[utoipa::path(post, path = "/events", tag = "analytics",
    params(("X-Session-Id" = Option<String>, Header, description = "The visitor's session")),
    request_body = EventBody,
    responses(
        (status = 202, description = "Recorded", body = EventAccepted),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: a token that is not valid", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a field out of its rules", body = ErrorBody),
    ))]
async fn record_event(
    State(service): State<AppState>,
    caller: Option<Caller>,
    headers: HeaderMap,
    JsonObject(body): JsonObject<EventBody>,
) -> ApiResult<(StatusCode, Json<EventAccepted>)> {
    let session = Visitor::session(headers.get(SESSION_HEADER));
    let id = service
        .record_client_event(
            caller,
            session,
            ClientEvent {
                event_type: body.event_type,
                product_id: body.product_id,
                query: body.query,
                properties: body.properties,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(EventAccepted { id })))
}

/// A report's range.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// From this date (`2026-11-01`, UTC) or instant (RFC 3339), included;
    /// default 30 days before `to`.
    #[param(
        pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$"
    )]
    pub from: Option<String>,
    /// To this date (the whole day included) or instant (excluded); default
    /// now. At most 3,660 days after `from` (422 `invalid_range`).
    #[param(
        pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$"
    )]
    pub to: Option<String>,
}

fn range(from: &Option<String>, to: &Option<String>) -> Result<Range, ApiError> {
    Range::parse(from.as_deref(), to.as_deref(), time::now())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SalesQuery {
    /// From this date (`2026-11-01`, UTC) or instant (RFC 3339), included;
    /// default 30 days before `to`.
    #[param(
        pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$"
    )]
    pub from: Option<String>,
    /// To this date (the whole day included) or instant (excluded); default
    /// now. At most 3,660 days after `from` (422 `invalid_range`).
    #[param(
        pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$"
    )]
    pub to: Option<String>,
    /// `day` (default), `week` (from Monday) or `month`.
    #[param(pattern = "^(day|week|month)$")]
    pub interval: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    /// From this date (`2026-11-01`, UTC) or instant (RFC 3339), included;
    /// default 30 days before `to`.
    #[param(
        pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$"
    )]
    pub from: Option<String>,
    /// To this date (the whole day included) or instant (excluded); default
    /// now. At most 3,660 days after `from` (422 `invalid_range`).
    #[param(
        pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$"
    )]
    pub to: Option<String>,
    /// How many, at least 1 (default 10); values above 100 are served as 100.
    #[param(value_type = Option<i64>, minimum = 1, default = 10)]
    pub limit: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchTermsQuery {
    /// From this date (`2026-11-01`, UTC) or instant (RFC 3339), included;
    /// default 30 days before `to`.
    #[param(
        pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$"
    )]
    pub from: Option<String>,
    /// To this date (the whole day included) or instant (excluded); default
    /// now. At most 3,660 days after `from` (422 `invalid_range`).
    #[param(
        pattern = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$"
    )]
    pub to: Option<String>,
    /// `true`: only words no search for found anything.
    #[param(value_type = Option<bool>)]
    pub zero_results: Option<String>,
    /// How many, at least 1 (default 20); values above 100 are served as 100.
    #[param(value_type = Option<i64>, minimum = 1, default = 20)]
    pub limit: Option<String>,
}

/// The `limit` parameter: `default` when absent; above 100 served as 100.
fn limit(raw: Option<&str>, default: u32) -> Result<i64, ApiError> {
    Ok(i64::from(mercato_kernel::page::limit_param(
        raw, default, 100,
    )?))
}

fn flag(raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_query",
            format!("zero_results must be true or false, got {other:?}"),
        )),
    }
}

/// The report as CSV when the client accepts `text/csv`, else as JSON.
fn answer<T: Serialize + Csv>(headers: &HeaderMap, report: T) -> Response {
    let wants_csv = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let mut parts = media.split(';').map(str::trim);
            let is_csv = parts
                .next()
                .is_some_and(|m| m.eq_ignore_ascii_case("text/csv"));
            // `q=0` means "not this".
            is_csv && !parts.any(|p| p.replace(' ', "") == "q=0")
        });
    if wants_csv {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            )],
            report.csv(),
        )
            .into_response()
    } else {
        Json(report).into_response()
    }
}

async fn sales(
    service: &AnalyticsService,
    caller: Caller,
    audience: Audience,
    q: &SalesQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let range = range(&q.from, &q.to)?;
    let interval = Interval::parse(q.interval.as_deref())?;
    let report = service.sales(caller, audience, &range, interval).await?;
    Ok(answer(headers, report))
}

async fn top_products(
    service: &AnalyticsService,
    caller: Caller,
    audience: Audience,
    q: &TopQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let range = range(&q.from, &q.to)?;
    let limit = limit(q.limit.as_deref(), 10)?;
    let report = service
        .top_products(caller, audience, &range, limit)
        .await?;
    Ok(answer(headers, report))
}

async fn funnel(
    service: &AnalyticsService,
    caller: Caller,
    audience: Audience,
    q: &RangeQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let range = range(&q.from, &q.to)?;
    Ok(answer(
        headers,
        service.funnel(caller, audience, &range).await?,
    ))
}

async fn search_terms(
    service: &AnalyticsService,
    caller: Caller,
    audience: Audience,
    q: &SearchTermsQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let range = range(&q.from, &q.to)?;
    let zero = flag(q.zero_results.as_deref())?;
    let limit = limit(q.limit.as_deref(), 20)?;
    let report = service
        .search_terms(caller, audience, &range, zero, limit)
        .await?;
    Ok(answer(headers, report))
}

/// Orders, units, revenue and refunds per day, week or month (admins): the
/// orders confirmed in each period, what they came to, and what was
/// refunded then. One item per period and currency, periods without any
/// left out. `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/admin/reports/sales", tag = "analytics", security(("bearer" = [])),
    params(SalesQuery),
    responses(
        (status = 200, description = "The report", content((SalesReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date, interval or limit that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days", body = ErrorBody),
    ))]
async fn admin_sales(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<SalesQuery>,
) -> ApiResult<Response> {
    sales(&service, caller, Audience::Shop, &q, &headers).await
}

/// The products that sold most units in orders confirmed in the range
/// (admins), with what their lines came to. `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/admin/reports/top-products", tag = "analytics", security(("bearer" = [])),
    params(TopQuery),
    responses(
        (status = 200, description = "The report", content((TopProducts = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date or limit that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days; `validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn admin_top_products(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<TopQuery>,
) -> ApiResult<Response> {
    top_products(&service, caller, Audience::Shop, &q, &headers).await
}

/// From product views to confirmed orders in the range (admins).
/// `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/admin/reports/funnel", tag = "analytics", security(("bearer" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "The report", content((Funnel = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days", body = ErrorBody),
    ))]
async fn admin_funnel(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    funnel(&service, caller, Audience::Shop, &q, &headers).await
}

/// What visitors searched for in the range (admins), most searched first;
/// `zero_results=true` for what found nothing. `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/admin/reports/search-terms", tag = "analytics", security(("bearer" = [])),
    params(SearchTermsQuery),
    responses(
        (status = 200, description = "The report", content((SearchTerms = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date, flag or limit that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days; `validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn admin_search_terms(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<SearchTermsQuery>,
) -> ApiResult<Response> {
    search_terms(&service, caller, Audience::Shop, &q, &headers).await
}

/// The events clients reported (`POST /events`) in the range, by type
/// (admins). `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/admin/reports/events", tag = "analytics", security(("bearer" = [])),
    params(TopQuery),
    responses(
        (status = 200, description = "The report", content((ClientEventCounts = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date or limit that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days; `validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn admin_client_events(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<TopQuery>,
) -> ApiResult<Response> {
    let range = range(&q.from, &q.to)?;
    let limit = limit(q.limit.as_deref(), 10)?;
    let report = service.client_events(caller, &range, limit).await?;
    Ok(answer(&headers, report))
}

/// A seller's sales per day, week or month: the confirmed orders holding
/// their products, those lines' units and totals, and their share of
/// refunds. `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/seller/reports/sales", tag = "analytics", security(("bearer" = [])),
    params(SalesQuery),
    responses(
        (status = 200, description = "The report", content((SalesReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date or interval that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: sellers only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days", body = ErrorBody),
    ))]
async fn seller_sales(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<SalesQuery>,
) -> ApiResult<Response> {
    sales(&service, caller, Audience::Seller, &q, &headers).await
}

/// A seller's products that sold most units. `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/seller/reports/top-products", tag = "analytics", security(("bearer" = [])),
    params(TopQuery),
    responses(
        (status = 200, description = "The report", content((TopProducts = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date or limit that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: sellers only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days; `validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn seller_top_products(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<TopQuery>,
) -> ApiResult<Response> {
    top_products(&service, caller, Audience::Seller, &q, &headers).await
}

/// A seller's funnel: views and cart additions of their products, and the
/// checkouts and confirmed orders holding any. `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/seller/reports/funnel", tag = "analytics", security(("bearer" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "The report", content((Funnel = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: sellers only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days", body = ErrorBody),
    ))]
async fn seller_funnel(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    funnel(&service, caller, Audience::Seller, &q, &headers).await
}

/// What visitors searched for (the shop's searches: a search belongs to no
/// seller). `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/seller/reports/search-terms", tag = "analytics", security(("bearer" = [])),
    params(SearchTermsQuery),
    responses(
        (status = 200, description = "The report", content((SearchTerms = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a date, flag or limit that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: sellers only", body = ErrorBody),
        (status = 422, description = "`invalid_range`: from not before to, or a range over 3,660 days; `validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn seller_search_terms(
    State(service): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<SearchTermsQuery>,
) -> ApiResult<Response> {
    search_terms(&service, caller, Audience::Seller, &q, &headers).await
}
