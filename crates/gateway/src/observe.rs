//! Per-request observation: request id, span, correlation, metrics, time-out,
//! and JSON bodies for the errors axum answers by itself.

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mercato_kernel::event::{with_correlation, Correlation};
use mercato_kernel::ApiError;
use std::time::{Duration, Instant};
use tracing::Instrument;

const REQUEST_ID: &str = "x-request-id";

pub async fn observe(timeout: Duration, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| mercato_kernel::id::new_id().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %req.uri().path());

    let correlation = Correlation {
        correlation_id: Some(request_id.clone()),
        causation_id: None,
    };
    let fut = with_correlation(correlation, next.run(req)).instrument(span.clone());
    let mut response = match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
        .into_response(),
    };
    let response_is_bare = response.headers().get(header::CONTENT_TYPE).is_none();
    if response_is_bare {
        let status = response.status();
        let replacement = match status {
            StatusCode::METHOD_NOT_ALLOWED => Some(ApiError::new(
                status,
                "method_not_allowed",
                "this route does not take that method",
            )),
            StatusCode::PAYLOAD_TOO_LARGE => Some(ApiError::new(
                status,
                "payload_too_large",
                "request body is too large",
            )),
            StatusCode::NOT_FOUND => {
                Some(ApiError::new(status, "route_not_found", "no such route"))
            }
            s if s.is_server_error() => {
                Some(ApiError::new(s, "internal", "an internal error occurred"))
            }
            _ => None,
        };
        if let Some(e) = replacement {
            let headers = std::mem::take(response.headers_mut());
            response = e.into_response();
            for (name, value) in headers.iter() {
                if name != header::CONTENT_LENGTH {
                    response.headers_mut().insert(name.clone(), value.clone());
                }
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    // Unmatched paths share one label so that scanners cannot explode the metric's cardinality.
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    metrics::counter!("mercato_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("mercato_http_request_duration_seconds", "method" => method.to_string(), "route" => route.clone()).record(elapsed.as_secs_f64());
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, route = %route, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request failed");
        } else {
            tracing::info!(status, route = %route, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request");
        }
    });
    response
}
