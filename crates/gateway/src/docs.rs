//! The API reference page at `/docs`: Scalar, served from the binary (see
//! `assets/scalar/README.md`), reading `/openapi.json` from the same server.
//! It loads nothing from another site, and says so in its
//! Content-Security-Policy.

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The vendored Scalar release; part of the script's URL, so that a new
/// release is never served from a browser's cache of the old one.
const SCALAR_VERSION: &str = "1.76.0";
const SCALAR_JS: &[u8] = include_bytes!("../assets/scalar/standalone.js");

/// What the reference page may load: its own script and the document from
/// this server; styles Scalar sets inline; nothing from elsewhere.
pub const DOCS_CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn script_path() -> String {
    format!("/docs/scalar-{SCALAR_VERSION}.js")
}

pub fn router() -> Router {
    Router::new()
        .route("/docs", get(page))
        .route(&script_path(), get(script))
}

async fn page() -> Response {
    // Scalar's fonts come from its site: the system's instead; and none of
    // its features that talk to its services (telemetry, the AI agent, the
    // developer toolbar that generates SDKs there).
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mercato API reference</title>
</head>
<body>
<script id="api-reference" data-url="/openapi.json"
  data-configuration='{{"withDefaultFonts":false,"hideClientButton":true,"telemetry":false,"showDeveloperTools":"never","agent":{{"disabled":true}}}}'></script>
<script src="{script}"></script>
</body>
</html>
"#,
        script = script_path()
    );
    let mut response = Html(html).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    );
    response
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // The URL names the version: it never changes under a client.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        SCALAR_JS,
    )
        .into_response()
}
