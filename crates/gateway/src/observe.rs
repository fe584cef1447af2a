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

/// How long a request may take, and its body within that.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub request: Duration,
    pub body_read: Duration,
}

/// What a security review expects on every answer: no content sniffing, no
/// referrer leaving the site, and on an HTML page without a policy of its
/// own a Content-Security-Policy that allows nothing at all.
fn secure_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A page may let its own site see where a click came from (a form
    // post then carries its real `Origin`).
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        );
    }
}

/// The JSON error for a status the stack answered without a body of ours.
fn error_for_status(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be understood"),
        StatusCode::NOT_FOUND => ("route_not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not take that method")
        }
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request was not received in time"),
        StatusCode::LENGTH_REQUIRED => ("length_required", "the request needs a Content-Length"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests, slow down"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ("headers_too_large", "the request headers are too large")
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            ("unavailable", "the service is temporarily unavailable")
        }
        s if s.is_server_error() => ("internal", "an internal error occurred"),
        _ => ("bad_request", "the request was refused"),
    };
    ApiError::new(status, code, message)
}

/// Request bodies that must arrive within a deadline.
mod body {
    use axum::body::{Body, Bytes};
    use axum::extract::Request;
    use axum::http::StatusCode;
    use http_body::{Frame, SizeHint};
    use mercato_kernel::ApiError;
    use std::future::Future as _;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tokio::time::Sleep;

    const READING: u8 = 0;
    const DONE: u8 = 1;
    const TIMED_OUT: u8 = 2;

    /// Where a request's body stands.
    #[derive(Clone)]
    pub struct Progress(Arc<AtomicU8>);

    impl Progress {
        pub fn unfinished(&self) -> bool {
            self.0.load(Ordering::Acquire) != DONE
        }
        pub fn timed_out(&self) -> bool {
            self.0.load(Ordering::Acquire) == TIMED_OUT
        }
    }

    pub fn request_timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body was not received in time",
        )
    }

    /// The request with a body that fails once `within` has passed
    /// without its last byte.
    pub fn with_deadline(req: Request, within: Duration) -> (Request, Progress) {
        let (parts, inner) = req.into_parts();
        let state = if http_body::Body::is_end_stream(&inner) {
            DONE
        } else {
            READING
        };
        let progress = Progress(Arc::new(AtomicU8::new(state)));
        let body = Timed {
            inner,
            deadline: Box::pin(tokio::time::sleep(within)),
            progress: progress.clone(),
        };
        (Request::from_parts(parts, Body::new(body)), progress)
    }

    struct Timed {
        inner: Body,
        deadline: Pin<Box<Sleep>>,
        progress: Progress,
    }

    impl http_body::Body for Timed {
        type Data = Bytes;
        type Error = axum::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
            let this = self.get_mut();
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    let _ = this.progress.0.compare_exchange(
                        READING,
                        DONE,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    Poll::Ready(None)
                }
                Poll::Ready(Some(frame)) => {
                    if http_body::Body::is_end_stream(&this.inner) {
                        let _ = this.progress.0.compare_exchange(
                            READING,
                            DONE,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                    }
                    Poll::Ready(Some(frame))
                }
                Poll::Pending => {
                    if this.deadline.as_mut().poll(cx).is_ready() {
                        this.progress.0.store(TIMED_OUT, Ordering::Release);
                        return Poll::Ready(Some(Err(axum::Error::new(
                            "request body not received in time",
                        ))));
                    }
                    Poll::Pending
                }
            }
        }

        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.inner.size_hint()
        }
    }
}

pub async fn observe(limits: Timeouts, req: Request, next: Next) -> Response {
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
    let (req, body) = body::with_deadline(req, limits.body_read);
    let fut = with_correlation(correlation, next.run(req)).instrument(span.clone());
    let mut response = match tokio::time::timeout(limits.request, fut).await {
        Ok(r) => r,
        Err(_) if body.unfinished() => body::request_timeout().into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
        .into_response(),
    };
    if body.timed_out() {
        // Whatever the handler made of a body cut short, the client was too slow.
        response = body::request_timeout().into_response();
    }
    let status = response.status();
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if (status.is_client_error() || status.is_server_error()) && !ours {
        // What axum and tower answer by themselves (plain text or nothing)
        // leaves in the JSON error shape too; the API's errors are JSON
        // already and the web pages' are pages.
        let headers = std::mem::take(response.headers_mut());
        response = error_for_status(status).into_response();
        for (name, value) in headers.iter() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    secure_headers(response.headers_mut());

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
