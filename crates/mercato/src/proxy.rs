//! `serve --service gateway`: the public entry point of distributed mode.
//! It owns no data: every `/api/v1` request is forwarded to a replica of the
//! context that owns its path, behind the same middleware as embedded mode
//! (request ids, metrics, rate limit, CORS, JSON errors).
//!
//! Replicas are taken round-robin, skipping those whose circuit breaker is
//! open. Each forward has a time-out. A request is tried on another replica
//! only when the connection could not be made and repeating it is safe:
//! GET and HEAD, or a request carrying an `Idempotency-Key`.

use crate::config::{Settings, CONTEXTS};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mercato_gateway::Probe;
use mercato_kernel::auth::TokenKeys;
use mercato_kernel::resilience::{backoff, CircuitBreaker};
use mercato_kernel::ApiError;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often every replica's `/readyz` is asked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Attempts of a request that may be repeated, the first included.
const SAFE_ATTEMPTS: u32 = 3;

/// The request headers a context needs; everything else stays at the gateway.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    HeaderName::from_static("idempotency-key"),
];

/// The context that owns a public path (relative to `/api/v1`).
pub fn owner(path: &str) -> Option<&'static str> {
    let first = path.trim_start_matches('/').split('/').next()?;
    Some(match first {
        "auth" | "me" => "identity",
        "products" => "catalog",
        "search" => "search",
        "cart" => "cart",
        "inventory" => "inventory",
        // Every service reads the same dead-letter stream; orders answers.
        "checkout" | "orders" | "admin" => "orders",
        "payments" => "payments",
        "notifications" => "notifications",
        _ => return None,
    })
}

struct Replica {
    base: String,
    breaker: CircuitBreaker,
    ready: AtomicBool,
}

struct Upstream {
    name: &'static str,
    replicas: Vec<Replica>,
    next: AtomicUsize,
    /// Some replica has been ready since the gateway started.
    started: AtomicBool,
}

impl Upstream {
    /// The next ready replica whose circuit lets a call through; when none
    /// is ready (or none has been checked yet), the next one whose circuit
    /// does.
    fn pick(&self) -> Option<&Replica> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let in_turn = || (0..n).map(move |i| &self.replicas[(start + i) % n]);
        in_turn()
            .find(|r| r.ready.load(Ordering::Relaxed) && r.breaker.allow())
            .or_else(|| in_turn().find(|r| r.breaker.allow()))
    }
}

pub(crate) struct Proxy {
    http: reqwest::Client,
    upstreams: Vec<Upstream>,
    /// The merged OpenAPI document, once every context has given its own.
    openapi: Mutex<Option<Value>>,
}

impl Proxy {
    fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

/// The gateway's router and its background health checks.
pub(crate) fn build(
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<(axum::Router, Vec<JoinHandle<()>>)> {
    let mut upstreams = Vec::new();
    for name in CONTEXTS {
        let urls = settings.services.urls(name);
        if urls.is_empty() {
            tracing::warn!(
                context = name,
                "no replicas configured: its routes answer 503"
            );
            continue;
        }
        let mut replicas = Vec::new();
        for url in urls {
            let parsed = reqwest::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base());
            anyhow::ensure!(
                parsed.is_some(),
                "services.{name}: invalid replica URL {url:?}"
            );
            replicas.push(Replica {
                base: url.trim_end_matches('/').to_owned(),
                breaker: CircuitBreaker::new(name, 5, Duration::from_secs(5)),
                ready: AtomicBool::new(false),
            });
        }
        upstreams.push(Upstream {
            name,
            replicas,
            next: AtomicUsize::new(0),
            started: AtomicBool::new(false),
        });
    }
    anyhow::ensure!(
        !upstreams.is_empty(),
        "the gateway needs services.<context> (MERCATO_SERVICES__<CONTEXT>) for the contexts it routes to"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.http.request_timeout_ms))
        .connect_timeout(Duration::from_millis(500))
        .build()?;
    let proxy = Arc::new(Proxy {
        http,
        upstreams,
        openapi: Mutex::new(None),
    });

    // The gateway only reads tokens to know callers (metrics, limits); the
    // contexts decide. A configured secret makes that reading accurate.
    let secret = match &settings.auth.jwt_secret {
        Some(s) => s.as_bytes().to_vec(),
        None => rand::random::<[u8; 32]>().to_vec(),
    };
    let keys = Arc::new(TokenKeys::from_secret(
        &secret,
        settings.auth.token_ttl_secs,
    ));
    let probes: Vec<(String, Probe)> = proxy
        .upstreams
        .iter()
        .map(|u| {
            let proxy = proxy.clone();
            let name = u.name;
            let probe: Probe = Arc::new(move || {
                let proxy = proxy.clone();
                Box::pin(async move {
                    let ready = proxy.upstream(name).is_some_and(|u| {
                        u.replicas.iter().any(|r| r.ready.load(Ordering::Relaxed))
                    });
                    if ready {
                        Ok(())
                    } else {
                        Err(format!("no replica of {name} is ready"))
                    }
                })
            });
            (name.to_owned(), probe)
        })
        .collect();
    let api = utoipa_axum::router::OpenApiRouter::new()
        .route("/{*rest}", axum::routing::any(forward))
        .with_state(proxy.clone());
    // With Redis, every gateway replica draws on the same buckets.
    let redis = crate::app::redis_connection(settings)?;
    let gateway = crate::app::gateway_config(settings, redis.as_ref());
    // Ready once every context has had a ready replica: from then on a
    // context without one is reported (`degraded`) but keeps the gateway in
    // rotation, since it still serves every other context, and that
    // context's routes answer 503 at once.
    let started: Probe = {
        let proxy = proxy.clone();
        Arc::new(move || {
            let proxy = proxy.clone();
            Box::pin(async move {
                let waiting: Vec<&str> = proxy
                    .upstreams
                    .iter()
                    .filter(|u| !u.started.load(Ordering::Relaxed))
                    .map(|u| u.name)
                    .collect();
                if waiting.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "waiting for a first ready replica of {}",
                        waiting.join(", ")
                    ))
                }
            })
        })
    };
    let probes =
        mercato_gateway::Probes::new(vec![("contexts".to_owned(), started)]).with_optional(probes);
    let router = mercato_gateway::build(&gateway, api, keys, probes).layer(
        axum::middleware::from_fn_with_state(proxy.clone(), merged_openapi),
    );
    let health = tokio::spawn(check_health(proxy, shutdown));
    Ok((router, vec![health]))
}

/// Marks each replica ready or not by its `/readyz`, every [`HEALTH_INTERVAL`].
async fn check_health(proxy: Arc<Proxy>, shutdown: CancellationToken) {
    loop {
        let http = &proxy.http;
        let checks = proxy.upstreams.iter().flat_map(|u| {
            u.replicas.iter().map(move |r| {
                let http = http.clone();
                async move {
                    let ok = http
                        .get(format!("{}/readyz", r.base))
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .is_ok_and(|resp| resp.status().is_success());
                    if r.ready.swap(ok, Ordering::Relaxed) != ok {
                        tracing::info!(replica = %r.base, ready = ok, "replica readiness changed");
                    }
                    if ok {
                        u.started.store(true, Ordering::Relaxed);
                    }
                }
            })
        });
        futures::future::join_all(checks).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(e.status(), "payload_too_large", "request body is too large")
                .into_response()
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body could not be read",
            )
            .into_response()
        }
    };
    let path = uri
        .path()
        .strip_prefix(mercato_gateway::API_PREFIX)
        .unwrap_or_default();
    let Some(name) = owner(path) else {
        return ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
            .into_response();
    };
    let Some(upstream) = proxy.upstream(name) else {
        return ApiError::unavailable(format!("the {name} service is not available"))
            .into_response();
    };
    let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let repeatable =
        method == Method::GET || method == Method::HEAD || headers.contains_key("idempotency-key");
    let attempts = if repeatable { SAFE_ATTEMPTS } else { 1 };
    let request_id = mercato_kernel::event::current_correlation().correlation_id;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(backoff(
                attempt - 1,
                Duration::from_millis(20),
                Duration::from_millis(200),
            ))
            .await;
        }
        let Some(replica) = upstream.pick() else {
            break;
        };
        let mut req = proxy
            .http
            .request(method.clone(), format!("{}{path_and_query}", replica.base))
            .body(body.clone());
        for name in &FORWARDED_REQUEST_HEADERS {
            for value in headers.get_all(name) {
                req = req.header(name, value);
            }
        }
        if let Some(id) = &request_id {
            req = req.header(mercato_kernel::internal::REQUEST_ID_HEADER, id.as_str());
        }
        match req.send().await {
            Ok(resp) => {
                replica.breaker.record_success();
                return relay(name, resp).await;
            }
            Err(e) => {
                replica.breaker.record_failure();
                if e.is_connect() && attempt + 1 < attempts {
                    tracing::debug!(context = name, replica = %replica.base, "connection failed, trying another replica");
                    continue;
                }
                tracing::warn!(context = name, replica = %replica.base, timeout = e.is_timeout(), "forwarding failed");
                if e.is_timeout() {
                    return ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        format!("the {name} service took too long to answer"),
                    )
                    .into_response();
                }
                return ApiError::unavailable(format!("the {name} service is not available"))
                    .into_response();
            }
        }
    }
    ApiError::unavailable(format!("no replica of the {name} service is available")).into_response()
}

/// The upstream answer as the client's: status, headers, body.
async fn relay(name: &str, resp: reqwest::Response) -> Response {
    let status = resp.status();
    let mut headers = resp.headers().clone();
    for hop in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        // The gateway's own request id is set on the way out.
        HeaderName::from_static("x-request-id"),
    ] {
        headers.remove(hop);
    }
    match resp.bytes().await {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => {
            tracing::warn!(context = name, error = %e, "reading an upstream answer failed");
            ApiError::unavailable(format!("the {name} service is not available")).into_response()
        }
    }
}

/// `/openapi.json` in gateway mode: the contexts' documents merged, which
/// is the document embedded mode builds from the same routers.
async fn merged_openapi(State(proxy): State<Arc<Proxy>>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET || req.uri().path() != "/openapi.json" {
        return next.run(req).await;
    }
    let cached = proxy
        .openapi
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(doc) = cached {
        return axum::Json(doc).into_response();
    }
    let mut merged: Option<Value> = None;
    let mut complete = true;
    for upstream in &proxy.upstreams {
        let mut doc = None;
        for replica in &upstream.replicas {
            let fetched = async {
                proxy
                    .http
                    .get(format!("{}/openapi.json", replica.base))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<Value>()
                    .await
            }
            .await;
            if let Ok(d) = fetched {
                doc = Some(d);
                break;
            }
        }
        match (doc, merged.as_mut()) {
            (Some(d), None) => merged = Some(d),
            (Some(d), Some(m)) => merge_openapi(m, d),
            (None, _) => complete = false,
        }
    }
    match merged {
        Some(doc) => {
            if complete {
                *proxy.openapi.lock().unwrap_or_else(|p| p.into_inner()) = Some(doc.clone());
            }
            axum::Json(doc).into_response()
        }
        None => ApiError::unavailable("no context service answered").into_response(),
    }
}

/// Adds `other`'s paths, components and tags to `into`.
fn merge_openapi(into: &mut Value, other: Value) {
    fn merge_object(into: &mut Value, other: &Value) {
        if let (Some(into), Some(other)) = (into.as_object_mut(), other.as_object()) {
            for (k, v) in other {
                into.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    merge_object(&mut into["paths"], &other["paths"]);
    if let Some(components) = other.get("components").and_then(Value::as_object) {
        for (kind, entries) in components {
            let slot = &mut into["components"][kind];
            if slot.is_null() {
                *slot = entries.clone();
            } else {
                merge_object(slot, entries);
            }
        }
    }
    if let Some(tags) = other.get("tags").and_then(Value::as_array) {
        if into["tags"].is_null() {
            into["tags"] = Value::Array(Vec::new());
        }
        if let Some(mine) = into["tags"].as_array_mut() {
            for tag in tags {
                if !mine.iter().any(|t| t["name"] == tag["name"]) {
                    mine.push(tag.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_to_their_owner() {
        assert_eq!(owner("/auth/register"), Some("identity"));
        assert_eq!(owner("/me"), Some("identity"));
        assert_eq!(owner("/products/abc"), Some("catalog"));
        assert_eq!(owner("/search"), Some("search"));
        assert_eq!(owner("/cart/items/x"), Some("cart"));
        assert_eq!(owner("/inventory/sku-1"), Some("inventory"));
        assert_eq!(owner("/checkout"), Some("orders"));
        assert_eq!(owner("/orders/1/cancel"), Some("orders"));
        assert_eq!(owner("/payments/orders/1"), Some("payments"));
        assert_eq!(owner("/notifications"), Some("notifications"));
        assert_eq!(owner("/nothing"), None);
        assert_eq!(owner(""), None);
    }

    fn upstream(ready: &[bool]) -> Upstream {
        Upstream {
            name: "orders",
            replicas: ready
                .iter()
                .enumerate()
                .map(|(i, ready)| Replica {
                    base: format!("http://replica-{i}"),
                    breaker: CircuitBreaker::new("orders", 5, Duration::from_secs(5)),
                    ready: AtomicBool::new(*ready),
                })
                .collect(),
            next: AtomicUsize::new(0),
            started: AtomicBool::new(false),
        }
    }

    fn picks(u: &Upstream, n: usize) -> Vec<String> {
        (0..n)
            .filter_map(|_| u.pick().map(|r| r.base.clone()))
            .collect()
    }

    #[test]
    fn ready_replicas_are_preferred_and_taken_in_turn() {
        let u = upstream(&[false, true, true]);
        assert_eq!(
            picks(&u, 4),
            [
                "http://replica-1",
                "http://replica-1",
                "http://replica-2",
                "http://replica-1"
            ]
        );
        // None ready (or none checked yet): every replica in turn.
        let u = upstream(&[false, false]);
        assert_eq!(
            picks(&u, 3),
            ["http://replica-0", "http://replica-1", "http://replica-0"]
        );
        // A ready replica whose circuit is open is skipped.
        let u = upstream(&[true, true]);
        for _ in 0..5 {
            u.replicas[0].breaker.record_failure();
        }
        assert_eq!(picks(&u, 2), ["http://replica-1", "http://replica-1"]);
    }

    #[test]
    fn documents_merge_paths_components_and_tags() {
        let mut a = serde_json::json!({
            "paths": {"/api/v1/me": {}},
            "components": {"schemas": {"User": {}}, "securitySchemes": {"bearer": {}}},
            "tags": [{"name": "identity"}]
        });
        let b = serde_json::json!({
            "paths": {"/api/v1/products": {}},
            "components": {"schemas": {"Product": {}, "ErrorBody": {}}, "securitySchemes": {"bearer": {}}},
            "tags": [{"name": "catalog"}, {"name": "identity"}]
        });
        merge_openapi(&mut a, b);
        assert_eq!(a["paths"].as_object().map(|p| p.len()), Some(2));
        assert_eq!(
            a["components"]["schemas"].as_object().map(|p| p.len()),
            Some(3)
        );
        assert_eq!(a["tags"].as_array().map(Vec::len), Some(2));
    }
}
