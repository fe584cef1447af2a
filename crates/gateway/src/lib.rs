//! The gateway: the one public router of Mercato.
//!
//! It owns no data. It mounts the contexts' routers under `/api/v1` and wraps
//! them in what every request needs: a request id (`x-request-id`, kept when
//! the client sends one) that also becomes the correlation id of the events
//! the request causes, a tracing span, access-token verification, Prometheus
//! request metrics by route and status, a body size limit, a request
//! time-out, CORS, and JSON errors for everything, including unknown routes.
//! At the public edge it records the interactions the contexts observed
//! (see [`capture`]).
//! It also serves `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and
//! `/docs`.

pub mod capture;
mod docs;
mod observe;
mod openapi;
mod probes;
pub mod ratelimit;
pub mod server;
pub mod storefront;

pub use probes::{Probe, Probes};
pub use server::ConnectionLimits;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::routing::{get, MethodRouter};
use axum::Router;
use mercato_kernel::auth::{authenticate, TokenKeys};
use mercato_kernel::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// What the gateway needs to know.
#[derive(Clone)]
pub struct GatewayConfig {
    pub body_limit_bytes: usize,
    /// A request must be answered within this (503 `timeout`).
    pub request_timeout: Duration,
    /// A request body must arrive within this (408 `request_timeout`).
    pub body_read_timeout: Duration,
    /// Allowed CORS origins; `*` allows any.
    pub cors_origins: Vec<String>,
    /// Whether listed origins may send credentials (cookies); never with `*`.
    pub cors_allow_credentials: bool,
    /// Limits on `/api/v1` requests per client; `None` for none.
    pub rate_limit: Option<ratelimit::RateLimit>,
    /// Interaction capture: the public edge, or a context behind one.
    pub capture: capture::Capture,
    /// The web pages, if this router serves them.
    pub pages: Option<Pages>,
}

/// Builds the web pages' router from the API router they call (with the
/// gateway's authentication and interaction capture, without its rate
/// limits: the page request itself is limited, once, like an API request)
/// and the prefix it mounts the API at.
pub type Pages = Arc<dyn Fn(Router, &'static str) -> Router + Send + Sync>;

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            cors_origins: vec!["*".to_owned()],
            cors_allow_credentials: false,
            rate_limit: None,
            capture: capture::Capture::Edge(None),
            pages: None,
        }
    }
}

pub const API_PREFIX: &str = "/api/v1";

/// Builds the public router from the contexts' routers. `/openapi.json`
/// serves the document of `api`, unless `openapi_doc` serves another one
/// (the distributed gateway merges its services' documents).
pub fn build(
    config: &GatewayConfig,
    api: OpenApiRouter,
    keys: Arc<TokenKeys>,
    probes: Probes,
    openapi_doc: Option<MethodRouter>,
) -> Router {
    let (api_router, openapi) = split(api);
    let openapi = Arc::new(openapi);
    let metrics = mercato_kernel::telemetry::metrics();

    let ops = Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz).with_state(probes))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
        .route(
            "/openapi.json",
            openapi_doc.unwrap_or_else(|| {
                get(move || {
                    let openapi = openapi.clone();
                    async move { axum::Json(openapi.as_ref().clone()) }
                })
            }),
        )
        .merge(docs::router());

    let timeouts = observe::Timeouts {
        request: config.request_timeout,
        body_read: config.body_read_timeout,
    };
    let api_router = match &config.capture {
        capture::Capture::Relay => api_router,
        capture::Capture::Edge(recorder) => api_router.layer(axum::middleware::from_fn_with_state(
            recorder.clone(),
            capture::capture,
        )),
    };
    let api_router = api_router.layer(axum::middleware::from_fn_with_state(keys, authenticate));
    let pages = config
        .pages
        .as_ref()
        .map(|pages| pages(api_router.clone(), API_PREFIX));
    let (api_router, pages) = match &config.rate_limit {
        Some(rl) => {
            let limit = axum::middleware::from_fn_with_state(rl.clone(), ratelimit::limit);
            (
                api_router.layer(limit.clone()),
                pages.map(|pages| pages.layer(limit)),
            )
        }
        None => (api_router, pages),
    };
    let router = api_router.merge(ops);
    let router = match pages {
        Some(pages) => router.merge(pages),
        None => router,
    };
    router
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "route_not_found",
                "no such route",
            )
        })
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(cors(&config.cors_origins, config.cors_allow_credentials))
        .layer(axum::middleware::from_fn(move |req, next| {
            observe::observe(timeouts, req, next)
        }))
}

/// `api` under `/api/v1`, and its OpenAPI document as `/openapi.json`
/// serves it: with what every operation can answer through the gateway.
fn split(api: OpenApiRouter) -> (Router, OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(base_openapi())
        .nest(API_PREFIX, api)
        .split_for_parts();
    (router, openapi::complete(openapi))
}

/// The OpenAPI document of `api` as [`build`] serves it.
pub fn document(api: OpenApiRouter) -> OpenApi {
    split(api).1
}

/// Refuses CORS settings a browser would be unsafe with: credentials
/// together with any origin, or an origin that is not `scheme://host[:port]`.
pub fn check_cors(origins: &[String], allow_credentials: bool) -> anyhow::Result<()> {
    let any = origins.iter().any(|o| o == "*");
    anyhow::ensure!(
        !(any && allow_credentials),
        "http.cors_allow_credentials cannot be used with the origin \"*\": list the origins"
    );
    for o in origins.iter().filter(|o| *o != "*") {
        let ok = (o.starts_with("https://") || o.starts_with("http://"))
            && !o.ends_with('/')
            && HeaderValue::from_str(o).is_ok();
        anyhow::ensure!(
            ok,
            "http.cors_origins: {o:?} is not an origin (scheme://host[:port], no path)"
        );
    }
    Ok(())
}

fn base_openapi() -> OpenApi {
    let mut api = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Mercato API")
                .version("1")
                .description(Some(
                    "The Mercato e-commerce backend. Errors are `{\"error\": {\"code\", \"message\"}}` \
                     with a stable code. Lists take `limit` (default 20, at most 100) and `cursor`.",
                ))
                .build(),
        )
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    api
}

/// CORS as configured per deployment: `*` lets any site call the API
/// without credentials; a list of origins lets those sites only, with
/// credentials when allowed. Credentials with `*` are refused when the
/// settings load (see [`check_cors`]); were they to get here, they are dropped.
fn cors(origins: &[String], allow_credentials: bool) -> CorsLayer {
    let any = origins.iter().any(|o| o == "*");
    let allow = if any {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_credentials(allow_credentials && !any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
            mercato_contracts::interactions::SESSION_HEADER,
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            axum::http::header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(3600))
}
