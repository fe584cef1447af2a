//! `serve --service gateway`: the public entry point of distributed mode.
//! It owns no data: every `/api/v1` request is forwarded to a replica of the
//! context that owns its path, behind the same middleware as embedded mode
//! (request ids, metrics, rate limit, CORS, JSON errors).
//!
//! Replicas are taken round-robin, ready ones first, skipping those whose
//! circuit breaker is open. A request is bounded by the request time-out.
//! It is tried again on another replica, at most twice, after a short
//! pause, while its time lasts, when that is safe (see [`retry_reason`]):
//! always when no connection could be made; when the connection broke
//! before a whole answer or the replica answered 503 `unavailable` or
//! `timeout` (a transient failure such as a lost store connection), only
//! for GET, HEAD, PUT, DELETE and OPTIONS and for requests carrying an
//! `Idempotency-Key`. A replica whose connection failed counts as not
//! ready until its `/readyz` answers again. Retries are counted in
//! `mercato_gateway_retries_total{context, reason}`.

use crate::config::{Settings, CONTEXTS};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, OriginalUri, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use mercato_gateway::Probe;
use mercato_kernel::auth::TokenKeys;
use mercato_kernel::resilience::{backoff, CircuitBreaker};
use mercato_kernel::ApiError;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often every replica's `/readyz` is asked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Attempts of a request that may be repeated, the first included.
const ATTEMPTS: u32 = 3;
/// The pause before a retry: full jitter under `base * 2^retry`, at most the cap.
const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(50);
const RETRY_BACKOFF_CAP: Duration = Duration::from_millis(400);
/// A retry starts only when at least this much of the request's time is
/// left after its pause.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The request headers a context needs; everything else stays at the gateway.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    IDEMPOTENCY_KEY,
    mercato_contracts::interactions::SESSION_HEADER,
];

/// The context that owns a public path (relative to `/api/v1`).
pub fn owner(path: &str) -> Option<&'static str> {
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next()?;
    let second = segments.next();
    // A product's reviews and rating are the reviews context's.
    match (first, segments.next()) {
        ("products", Some("reviews" | "rating")) => return Some("reviews"),
        ("products", Some("recommendations")) => return Some("recommendations"),
        _ => {}
    }
    Some(match (first, second) {
        ("auth" | "me", _) | ("admin", Some("users")) => "identity",
        ("reviews" | "sellers", _) | ("admin", Some("reviews")) => "reviews",
        ("recommendations" | "experiments", _) | ("admin", Some("experiments")) => {
            "recommendations"
        }
        ("events", _) | ("admin" | "seller", Some("reports")) => "analytics",
        ("products" | "categories", _) => "catalog",
        ("search", _) => "search",
        ("cart", _) => "cart",
        ("inventory", _) | ("admin", Some("low-stock")) => "inventory",
        // Every service reads the same dead-letter stream; orders answers.
        ("checkout" | "orders" | "returns" | "admin", _) => "orders",
        ("payments", _) => "payments",
        ("notifications", _) => "notifications",
        ("promotions" | "shipping-methods" | "tax-rates", _) => "pricing",
        ("subscriptions", _) => "subscriptions",
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
    #[cfg(test)]
    fn pick(&self) -> Option<&Replica> {
        self.pick_other(&[]).map(|(_, r)| r)
    }

    /// Like [`Upstream::pick`], but a replica not in `tried` (indexes into
    /// `replicas`) comes first: a ready one not tried, then a ready one,
    /// then one not tried, then any, each in turn and only if its circuit
    /// lets the call through.
    fn pick_other(&self, tried: &[usize]) -> Option<(usize, &Replica)> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let in_turn = || {
            (0..n).map(move |i| {
                let index = (start + i) % n;
                (index, &self.replicas[index])
            })
        };
        let ready = |r: &Replica| r.ready.load(Ordering::Relaxed);
        let fresh = |i: usize| !tried.contains(&i);
        // The breaker is asked last: when it lets a call through, that call is made.
        in_turn()
            .find(|&(i, r)| ready(r) && fresh(i) && r.breaker.allow())
            .or_else(|| in_turn().find(|&(_, r)| ready(r) && r.breaker.allow()))
            .or_else(|| in_turn().find(|&(i, r)| fresh(i) && r.breaker.allow()))
            .or_else(|| in_turn().find(|&(_, r)| r.breaker.allow()))
    }
}

pub(crate) struct Proxy {
    http: reqwest::Client,
    upstreams: Vec<Upstream>,
    /// A request's time from its arrival, every attempt included.
    request_timeout: Duration,
    /// The merged OpenAPI document, once every context has given its own.
    openapi: Mutex<Option<Value>>,
    /// The document of what the gateway serves itself (the storefront).
    own_openapi: Value,
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
    let request_timeout = Duration::from_millis(settings.http.request_timeout_ms);
    let http = reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(Duration::from_millis(500))
        // Idle connections are given up well before the replicas close
        // them (`http.idle_timeout_ms`, the same setting there), so that a
        // request rarely goes out on a connection the replica is closing.
        .pool_idle_timeout(Duration::from_millis(settings.http.idle_timeout_ms / 2))
        .build()?;
    let storefront = storefront(settings)?;
    let own_openapi = match &storefront {
        Some(s) => serde_json::to_value(mercato_gateway::document(
            mercato_gateway::storefront::router(s.clone()),
        ))?,
        None => Value::Null,
    };
    let proxy = Arc::new(Proxy {
        http,
        upstreams,
        request_timeout,
        openapi: Mutex::new(None),
        own_openapi,
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
    let mut api = utoipa_axum::router::OpenApiRouter::new()
        .route("/{*rest}", axum::routing::any(forward))
        .with_state(proxy.clone());
    if let Some(storefront) = storefront {
        api = api.merge(mercato_gateway::storefront::router(storefront));
    }
    // With Redis, every gateway replica draws on the same buckets.
    let redis = crate::app::redis_connection(settings)?;
    let mut gateway = crate::app::gateway_config(settings, redis.as_ref());
    let mut tasks = Vec::new();
    match &settings.bus.nats_url {
        Some(url) => {
            let bus = crate::app::jetstream_eventually(url.clone(), settings.clone());
            gateway.capture = crate::app::edge_capture(settings, bus, &shutdown, &mut tasks);
        }
        None if settings.analytics.capture => {
            tracing::warn!("no bus.nats_url (MERCATO_BUS__NATS_URL): interactions are not recorded")
        }
        None => {}
    }
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
    let openapi_doc = axum::routing::get(merged_openapi).with_state(proxy.clone());
    let router = mercato_gateway::build(&gateway, api, keys, probes, Some(openapi_doc));
    tasks.push(tokio::spawn(check_health(proxy, shutdown)));
    Ok((router, tasks))
}

/// The storefront's product pages, assembled here from the contexts'
/// internal endpoints; `None` (and a warning) unless catalog, inventory,
/// reviews and recommendations are all configured.
fn storefront(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<mercato_gateway::storefront::Storefront>>> {
    use mercato_contracts::http::{
        HttpCatalogClient, HttpInventoryClient, HttpRecommendationsClient, HttpReviewsClient,
        ServiceConfig,
    };
    const PARTS: [&str; 4] = ["catalog", "inventory", "reviews", "recommendations"];
    let missing: Vec<&str> = PARTS
        .into_iter()
        .filter(|c| settings.services.urls(c).is_empty())
        .collect();
    if !missing.is_empty() {
        tracing::warn!(missing = %missing.join(", "), "the storefront's product pages are not served");
        return Ok(None);
    }
    if settings.internal.token.is_none() {
        tracing::warn!("no internal.token (MERCATO_INTERNAL__TOKEN): every part of a storefront page will be null");
    }
    let part_timeout = Duration::from_millis(settings.storefront.part_timeout_ms);
    // One attempt: a part has its time, and a retry would not fit in it.
    let calls = ServiceConfig {
        timeout: part_timeout,
        attempts: 1,
        ..ServiceConfig::default()
    };
    let client = |target: &'static str| {
        crate::distributed::client(settings, "gateway", target, calls.clone())
    };
    Ok(Some(Arc::new(mercato_gateway::storefront::Storefront {
        catalog: Arc::new(HttpCatalogClient(client("catalog")?)),
        inventory: Arc::new(HttpInventoryClient(client("inventory")?)),
        reviews: Arc::new(HttpReviewsClient(client("reviews")?)),
        recommendations: Arc::new(HttpRecommendationsClient(client("recommendations")?)),
        part_timeout,
    })))
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

/// When the gateway began to take the request in: its time-out runs from
/// about then (the gateway's own middleware starts the clock a moment
/// earlier).
struct Arrived(Instant);

impl<S: Send + Sync> FromRequestParts<S> for Arrived {
    type Rejection = Infallible;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Arrived(Instant::now()))
    }
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    Arrived(arrived): Arrived,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The whole body, up to the body limit: it may have to be sent again.
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
    let deadline = arrived + proxy.request_timeout;
    proxy
        .send(upstream, &method, path_and_query, &headers, body, deadline)
        .await
}

/// A whole answer of a replica.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// How one attempt at a replica ended.
enum Outcome {
    /// The replica answered, completely.
    Answered(Answer),
    /// No connection could be made: the request did not leave the gateway.
    ConnectFailed,
    /// The connection broke (reset, closed) before a whole answer arrived:
    /// the replica may have acted on the request.
    Broken,
    /// No whole answer within the request's remaining time.
    TimedOut,
}

/// Methods whose repetition has the effect of one request.
const IDEMPOTENT_METHODS: [Method; 5] = [
    Method::GET,
    Method::HEAD,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
];

/// Why the request may be sent to a replica again after this outcome (the
/// `reason` of `mercato_gateway_retries_total`), or `None` when it may not.
///
/// A request that never left the gateway may always go again. One that may
/// have reached a replica goes again only when that is safe: an idempotent
/// method, or an `Idempotency-Key` (checkout and refund store their answer
/// with the key, so a replay gets the first one), and only after a broken
/// connection or a 503 that says the failure was transient (`unavailable`:
/// a store busy or its connection lost; `timeout`). Never a POST without a
/// key that may have been acted on.
fn retry_reason(
    method: &Method,
    has_idempotency_key: bool,
    outcome: &Outcome,
) -> Option<&'static str> {
    let repeatable = has_idempotency_key || IDEMPOTENT_METHODS.contains(method);
    match outcome {
        Outcome::ConnectFailed => Some("connect"),
        Outcome::Broken if repeatable => Some("connection"),
        Outcome::Answered(answer)
            if repeatable && answer.status == StatusCode::SERVICE_UNAVAILABLE =>
        {
            match error_code(&answer.body).as_deref() {
                Some("unavailable") => Some("unavailable"),
                Some("timeout") => Some("timeout"),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `error.code` of a JSON error body.
fn error_code(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.pointer("/error/code")?.as_str().map(str::to_owned)
}

impl Proxy {
    /// Sends the request to a replica of `upstream` and answers with the
    /// replica's answer; tries other replicas while [`retry_reason`] allows
    /// it, at most [`ATTEMPTS`] in all, before `deadline`.
    async fn send(
        &self,
        upstream: &Upstream,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
        deadline: Instant,
    ) -> Response {
        let name = upstream.name;
        let has_key = headers.contains_key(IDEMPOTENCY_KEY);
        let request_id = mercato_kernel::event::current_correlation().correlation_id;
        let mut tried: Vec<usize> = Vec::with_capacity(ATTEMPTS as usize);
        let mut last: Option<(Outcome, &str)> = None;
        for attempt in 0..ATTEMPTS {
            if let Some((outcome, _)) = &last {
                let Some(reason) = retry_reason(method, has_key, outcome) else {
                    break;
                };
                let pause = backoff(attempt - 1, RETRY_BACKOFF_BASE, RETRY_BACKOFF_CAP);
                let left = deadline.saturating_duration_since(Instant::now());
                if left < pause + MIN_ATTEMPT_TIME {
                    tracing::debug!(
                        context = name,
                        reason,
                        "no time left to try another replica"
                    );
                    break;
                }
                metrics::counter!("mercato_gateway_retries_total", "context" => name, "reason" => reason)
                    .increment(1);
                tracing::info!(
                    context = name,
                    reason,
                    attempt,
                    "trying the request on another replica"
                );
                tokio::time::sleep(pause).await;
            }
            let Some((index, replica)) = upstream.pick_other(&tried) else {
                break;
            };
            tried.push(index);
            let left = deadline.saturating_duration_since(Instant::now());
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path_and_query}", replica.base))
                .timeout(left.max(MIN_ATTEMPT_TIME))
                .body(body.clone());
            for name in &FORWARDED_REQUEST_HEADERS {
                for value in headers.get_all(name) {
                    req = req.header(name, value);
                }
            }
            if let Some(id) = &request_id {
                req = req.header(mercato_kernel::internal::REQUEST_ID_HEADER, id.as_str());
            }
            let outcome = attempt_once(name, req).await;
            match &outcome {
                Outcome::Answered(_) => replica.breaker.record_success(),
                Outcome::TimedOut => replica.breaker.record_failure(),
                Outcome::ConnectFailed | Outcome::Broken => {
                    replica.breaker.record_failure();
                    // Skipped by the next picks until its `/readyz` answers again.
                    if replica.ready.swap(false, Ordering::Relaxed) {
                        tracing::info!(replica = %replica.base, ready = false, "replica readiness changed: a request to it failed");
                    }
                }
            }
            last = Some((outcome, replica.base.as_str()));
        }
        match last {
            Some((Outcome::Answered(answer), _)) => relay(answer),
            Some((Outcome::ConnectFailed | Outcome::Broken, replica)) => {
                tracing::warn!(context = name, replica, "forwarding failed");
                ApiError::unavailable(format!("the {name} service is not available"))
                    .into_response()
            }
            Some((Outcome::TimedOut, replica)) => {
                tracing::warn!(context = name, replica, timeout = true, "forwarding failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    format!("the {name} service took too long to answer"),
                )
                .into_response()
            }
            None => ApiError::unavailable(format!("no replica of the {name} service is available"))
                .into_response(),
        }
    }
}

/// Sends one request and reads its whole answer.
async fn attempt_once(name: &str, req: reqwest::RequestBuilder) -> Outcome {
    // A connection that could not be made (in time, too) sent nothing.
    let failed = |e: &reqwest::Error| {
        if e.is_connect() {
            Outcome::ConnectFailed
        } else if e.is_timeout() {
            Outcome::TimedOut
        } else {
            Outcome::Broken
        }
    };
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(context = name, error = %e, "sending to a replica failed");
            return failed(&e);
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    match resp.bytes().await {
        Ok(body) => Outcome::Answered(Answer {
            status,
            headers,
            body,
        }),
        Err(e) => {
            tracing::warn!(context = name, error = %e, "reading an upstream answer failed");
            failed(&e)
        }
    }
}

/// The upstream answer as the client's: status, headers, body.
fn relay(answer: Answer) -> Response {
    let Answer {
        status,
        mut headers,
        body,
    } = answer;
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
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `/openapi.json` in gateway mode: the contexts' documents merged, which
/// is the document embedded mode builds from the same routers.
async fn merged_openapi(State(proxy): State<Arc<Proxy>>) -> Response {
    let cached = proxy
        .openapi
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(doc) = cached {
        return axum::Json(doc).into_response();
    }
    let mut merged: Option<Value> = Some(proxy.own_openapi.clone()).filter(|d| !d.is_null());
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
        assert_eq!(owner("/categories"), Some("catalog"));
        assert_eq!(owner("/search"), Some("search"));
        assert_eq!(owner("/cart/items/x"), Some("cart"));
        assert_eq!(owner("/inventory/sku-1"), Some("inventory"));
        assert_eq!(owner("/inventory"), Some("inventory"));
        assert_eq!(owner("/admin/low-stock"), Some("inventory"));
        assert_eq!(owner("/admin/experiments"), Some("recommendations"));
        assert_eq!(owner("/checkout"), Some("orders"));
        assert_eq!(owner("/orders/1/cancel"), Some("orders"));
        assert_eq!(owner("/returns/1/receive"), Some("orders"));
        assert_eq!(owner("/admin/users/1"), Some("identity"));
        assert_eq!(owner("/admin/dead-letters"), Some("orders"));
        assert_eq!(owner("/payments/orders/1"), Some("payments"));
        assert_eq!(owner("/notifications"), Some("notifications"));
        assert_eq!(owner("/promotions/1"), Some("pricing"));
        assert_eq!(owner("/shipping-methods"), Some("pricing"));
        assert_eq!(owner("/tax-rates/DE"), Some("pricing"));
        assert_eq!(owner("/subscriptions/1/renew"), Some("subscriptions"));
        assert_eq!(owner("/products/1/reviews"), Some("reviews"));
        assert_eq!(owner("/products/1/rating"), Some("reviews"));
        assert_eq!(owner("/products/1"), Some("catalog"));
        assert_eq!(owner("/reviews/1/votes"), Some("reviews"));
        assert_eq!(owner("/admin/reviews"), Some("reviews"));
        assert_eq!(owner("/sellers/1/rating"), Some("reviews"));
        assert_eq!(
            owner("/products/1/recommendations"),
            Some("recommendations")
        );
        assert_eq!(owner("/recommendations"), Some("recommendations"));
        assert_eq!(owner("/experiments/x/assignment"), Some("recommendations"));
        assert_eq!(owner("/admin/experiments/x"), Some("recommendations"));
        assert_eq!(owner("/events"), Some("analytics"));
        assert_eq!(owner("/admin/reports/sales"), Some("analytics"));
        assert_eq!(owner("/seller/reports/funnel"), Some("analytics"));
        assert_eq!(owner("/cart/promotions"), Some("cart"));
        assert_eq!(owner("/checkout/quote"), Some("orders"));
        assert_eq!(owner("/nothing"), None);
        assert_eq!(owner(""), None);
    }

    fn upstream(ready: &[bool]) -> Upstream {
        let replicas = ready
            .iter()
            .enumerate()
            .map(|(i, ready)| (format!("http://replica-{i}"), *ready));
        upstream_at(replicas)
    }

    /// An upstream of the replicas at these bases, ready or not.
    fn upstream_at(replicas: impl IntoIterator<Item = (String, bool)>) -> Upstream {
        Upstream {
            name: "orders",
            replicas: replicas
                .into_iter()
                .map(|(base, ready)| Replica {
                    base,
                    breaker: CircuitBreaker::new("orders", 5, Duration::from_secs(5)),
                    ready: AtomicBool::new(ready),
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
    fn a_retry_goes_to_a_replica_not_tried_yet() {
        let u = upstream(&[true, true, false]);
        for _ in 0..4 {
            let (first, _) = u.pick_other(&[]).expect("a replica");
            let (second, _) = u.pick_other(&[first]).expect("another replica");
            assert_ne!(first, second);
            assert!(second < 2, "a ready replica comes before one that is not");
        }
        // Every ready replica tried: a ready one again rather than one not ready.
        let (again, _) = u.pick_other(&[0, 1]).expect("a replica");
        assert!(again < 2);
        // None ready: one not tried, then any.
        let u = upstream(&[false, false]);
        assert_eq!(u.pick_other(&[0]).map(|(i, _)| i), Some(1));
        assert!(u.pick_other(&[0, 1]).is_some());
        // A single replica is tried again: its store may be back.
        let u = upstream(&[true]);
        assert_eq!(u.pick_other(&[0]).map(|(i, _)| i), Some(0));
    }

    fn answered(status: StatusCode, body: &str) -> Outcome {
        Outcome::Answered(Answer {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        })
    }

    fn error_body(code: &str) -> String {
        serde_json::json!({"error": {"code": code, "message": "..."}}).to_string()
    }

    #[test]
    fn only_safe_requests_are_retried_and_only_after_transient_failures() {
        let unavailable = || answered(StatusCode::SERVICE_UNAVAILABLE, &error_body("unavailable"));
        let timeout = || answered(StatusCode::SERVICE_UNAVAILABLE, &error_body("timeout"));
        let post = Method::POST;
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert_eq!(
                retry_reason(&method, false, &Outcome::Broken),
                Some("connection"),
                "{method}"
            );
            assert_eq!(
                retry_reason(&method, false, &unavailable()),
                Some("unavailable"),
                "{method}"
            );
            assert_eq!(
                retry_reason(&method, false, &timeout()),
                Some("timeout"),
                "{method}"
            );
        }
        // With an Idempotency-Key a replica answers a replay with the first answer.
        assert_eq!(
            retry_reason(&post, true, &Outcome::Broken),
            Some("connection")
        );
        assert_eq!(
            retry_reason(&post, true, &unavailable()),
            Some("unavailable")
        );
        assert_eq!(retry_reason(&post, true, &timeout()), Some("timeout"));
        // Without one, a request that may have reached a replica is not repeated.
        for method in [Method::POST, Method::PATCH] {
            assert_eq!(
                retry_reason(&method, false, &Outcome::Broken),
                None,
                "{method}"
            );
            assert_eq!(
                retry_reason(&method, false, &unavailable()),
                None,
                "{method}"
            );
            assert_eq!(retry_reason(&method, false, &timeout()), None, "{method}");
            // ... but one that never left the gateway may go elsewhere.
            assert_eq!(
                retry_reason(&method, false, &Outcome::ConnectFailed),
                Some("connect"),
                "{method}"
            );
        }
        // What is not a transient failure is the answer.
        for outcome in [
            answered(StatusCode::OK, "{}"),
            answered(StatusCode::INTERNAL_SERVER_ERROR, &error_body("internal")),
            answered(
                StatusCode::SERVICE_UNAVAILABLE,
                &error_body("payment_provider_unavailable"),
            ),
            answered(StatusCode::SERVICE_UNAVAILABLE, "not json"),
            answered(StatusCode::SERVICE_UNAVAILABLE, ""),
            answered(StatusCode::CONFLICT, &error_body("unavailable")),
            answered(StatusCode::TOO_MANY_REQUESTS, &error_body("rate_limited")),
            // The request's time is spent.
            Outcome::TimedOut,
        ] {
            assert_eq!(retry_reason(&Method::GET, true, &outcome), None);
        }
    }

    /// Serves `router` on a loopback port; its base URL.
    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}")
    }

    /// A replica that reads the request and dies while answering: the head
    /// and part of the body go out, then the connection is cut.
    async fn dying_replica(hits: Arc<AtomicUsize>) -> String {
        // Takes the whole request body before it answers.
        let handler = move |_body: Bytes| {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                    Ok(Bytes::from_static(b"{\"partial\":")),
                    Err(std::io::Error::other("the replica died")),
                ];
                Response::new(Body::from_stream(futures::stream::iter(chunks)))
            }
        };
        serve(axum::Router::new().fallback(handler)).await
    }

    /// A replica that reads the request head and closes the connection
    /// without a word.
    async fn silent_replica(hits: Arc<AtomicUsize>) -> String {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        format!("http://{addr}")
    }

    /// A replica whose store is failing: 503 `unavailable`.
    async fn store_down_replica(hits: Arc<AtomicUsize>) -> String {
        let handler = move || {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                ApiError::unavailable("a store is busy or temporarily unavailable; retry shortly")
            }
        };
        serve(axum::Router::new().fallback(handler)).await
    }

    /// A healthy replica: 200 with what it was sent.
    async fn healthy_replica(hits: Arc<AtomicUsize>) -> String {
        let handler = move |method: Method, headers: HeaderMap, body: Bytes| {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({
                    "from": "healthy",
                    "method": method.as_str(),
                    "key": headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
                    "body": String::from_utf8_lossy(&body),
                }))
            }
        };
        serve(axum::Router::new().fallback(handler)).await
    }

    fn proxy_of(upstream: Upstream) -> Proxy {
        Proxy {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(500))
                .build()
                .expect("client"),
            upstreams: vec![upstream],
            request_timeout: Duration::from_secs(10),
            openapi: Mutex::new(None),
            own_openapi: Value::Null,
        }
    }

    /// Sends a request through a proxy whose first pick is `failing`;
    /// the status and JSON body of the client's answer.
    async fn through(
        failing: &str,
        healthy: &str,
        method: Method,
        key: Option<&str>,
    ) -> (StatusCode, Value, bool) {
        let proxy = proxy_of(upstream_at([
            (failing.to_owned(), true),
            (healthy.to_owned(), true),
        ]));
        let upstream = &proxy.upstreams[0];
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("value"),
        );
        if let Some(key) = key {
            headers.insert(IDEMPOTENCY_KEY, key.parse().expect("value"));
        }
        let deadline = Instant::now() + proxy.request_timeout;
        let resp = proxy
            .send(
                upstream,
                &method,
                "/api/v1/orders",
                &headers,
                Bytes::from_static(b"{\"n\":1}"),
                deadline,
            )
            .await;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("the answer's body");
        let json = serde_json::from_slice(&body).expect("a JSON answer");
        let failing_ready = upstream.replicas[0].ready.load(Ordering::SeqCst);
        (status, json, failing_ready)
    }

    #[tokio::test]
    async fn a_safe_request_cut_off_by_a_dying_replica_is_answered_by_another() {
        for kind in ["dies while answering", "closes without a word"] {
            let failing_hits = Arc::new(AtomicUsize::new(0));
            let healthy_hits = Arc::new(AtomicUsize::new(0));
            let failing = match kind {
                "dies while answering" => dying_replica(failing_hits.clone()).await,
                _ => silent_replica(failing_hits.clone()).await,
            };
            let healthy = healthy_replica(healthy_hits.clone()).await;

            let (status, body, failing_ready) =
                through(&failing, &healthy, Method::GET, None).await;
            assert_eq!(status, StatusCode::OK, "{kind}: {body}");
            assert_eq!(body["from"], "healthy", "{kind}");
            assert!(
                !failing_ready,
                "{kind}: a replica whose connection broke is not ready"
            );

            let (status, body, _) =
                through(&failing, &healthy, Method::POST, Some("order-1")).await;
            assert_eq!(status, StatusCode::OK, "{kind}: {body}");
            assert_eq!(body["key"], "order-1", "{kind}");
            assert_eq!(body["body"], "{\"n\":1}", "{kind}: the same body again");

            let (status, body, _) = through(&failing, &healthy, Method::POST, None).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{kind}: {body}");
            assert_eq!(body["error"]["code"], "unavailable", "{kind}");

            assert_eq!(
                failing_hits.load(Ordering::SeqCst),
                3,
                "{kind}: every request reached the failing replica"
            );
            assert_eq!(
                healthy_hits.load(Ordering::SeqCst),
                2,
                "{kind}: the POST without a key went nowhere else"
            );
        }
    }

    #[tokio::test]
    async fn a_transient_store_failure_is_retried_only_when_safe() {
        let failing_hits = Arc::new(AtomicUsize::new(0));
        let healthy_hits = Arc::new(AtomicUsize::new(0));
        let failing = store_down_replica(failing_hits.clone()).await;
        let healthy = healthy_replica(healthy_hits.clone()).await;

        let (status, body, failing_ready) = through(&failing, &healthy, Method::PUT, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["method"], "PUT");
        assert!(failing_ready, "a replica that answers stays ready");

        let (status, body, _) = through(&failing, &healthy, Method::POST, Some("refund-1")).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The replica's own answer, as it gave it.
        let (status, body, _) = through(&failing, &healthy, Method::POST, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");
        assert_eq!(
            body["error"]["message"],
            "a store is busy or temporarily unavailable; retry shortly"
        );
        assert_eq!(failing_hits.load(Ordering::SeqCst), 3);
        assert_eq!(healthy_hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_nobody_can_take_is_tried_three_times_at_most_and_within_its_time() {
        let hits = Arc::new(AtomicUsize::new(0));
        let failing = store_down_replica(hits.clone()).await;
        let proxy = proxy_of(upstream_at([(failing.clone(), true), (failing, true)]));
        let upstream = &proxy.upstreams[0];
        let started = Instant::now();
        let resp = proxy
            .send(
                upstream,
                &Method::GET,
                "/api/v1/orders",
                &HeaderMap::new(),
                Bytes::new(),
                started + Duration::from_secs(10),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(hits.load(Ordering::SeqCst), 3);

        // No time left for a pause and another attempt: the first answer.
        hits.store(0, Ordering::SeqCst);
        let resp = proxy
            .send(
                upstream,
                &Method::GET,
                "/api/v1/orders",
                &HeaderMap::new(),
                Bytes::new(),
                Instant::now() + MIN_ATTEMPT_TIME,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
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
