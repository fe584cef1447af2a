//! The web pages of Mercato: the storefront at `/` and the admin console at
//! `/admin`, served by the same binary as the API.
//!
//! Pages are rendered on the server from templates compiled into the binary
//! ([`render`]); htmx (vendored, served from `/static`) swaps parts of a
//! page where that helps (search suggestions, an order settling), and every
//! page also works without JavaScript. A page reads and writes through the
//! public API, called in process with the visitor's token ([`api`]), so
//! the pages can do exactly what the API lets that person do, in either
//! mode. The browser holds a cookie session and every form a CSRF token
//! ([`session`]). Nothing is loaded from another site: a strict
//! Content-Security-Policy says so to the browser.

pub mod api;
mod chart;
mod console;
pub mod render;
pub mod session;
mod store;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// What the pages need to know of the shop.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Cookies only over HTTPS (`Secure`): on when the shop is served
    /// behind TLS.
    pub secure_cookies: bool,
    /// The shop's currency: prices typed in the console are in it.
    pub currency: String,
    /// Every currency the shop sells in, its own first.
    pub currencies: Vec<String>,
    /// A SKU with no more than this available is running out
    /// (`inventory.low_stock_threshold`).
    pub low_stock_threshold: i64,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            currency: "EUR".to_owned(),
            currencies: vec!["EUR".to_owned()],
            low_stock_threshold: 5,
        }
    }
}

/// The pages' shared state.
#[derive(Clone)]
pub struct Web {
    pub(crate) api: api::Api,
    pub(crate) config: Arc<WebConfig>,
}

/// The pages, calling `api` (the gateway's API router, which mounts the
/// API at `prefix`).
pub fn router(api: Router, prefix: &'static str, config: WebConfig) -> Router {
    let web = Web {
        api: api::Api::new(api, prefix),
        config: Arc::new(config),
    };
    Router::new()
        .merge(store::router())
        .merge(console::router())
        .route("/static/app.css", get(stylesheet))
        .route("/static/htmx.min.js", get(htmx))
        .route("/favicon.ico", get(icon))
        .with_state(web)
        .layer(axum::middleware::map_response(secure_headers))
}

const CSS: &str = include_str!("../static/app.css");
const ICON: &str = include_str!("../static/icon.svg");
/// htmx 2 from npm `htmx.org` (Zero-Clause BSD).
const HTMX: &str = include_str!("../static/htmx.min.js");

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

/// The shop's icon, as SVG (browsers ask for `/favicon.ico` by themselves).
async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

async fn htmx() -> Response {
    asset("text/javascript; charset=utf-8", HTMX)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Nothing from another site, no inline script, no framing; pages of a
/// person's session are not cached by anyone else.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https: http:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    response
}
