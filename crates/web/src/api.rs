//! The public API, called in process: a page sends the same request a
//! client would (`/api/v1/...`, the visitor's bearer token) through the
//! gateway's API router, so it gets exactly the API's answers and
//! authorization, in either mode (in the cluster that router is the proxy
//! to the contexts' processes).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt as _;

/// The largest answer a page reads (a report as JSON, say).
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Api {
    router: Router,
    /// Where the router mounts the API (`/api/v1`).
    prefix: &'static str,
}

/// A call the API refused or could not answer: its status, and the error
/// code and message of its JSON body.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn from_answer(status: StatusCode, body: &Value) -> Self {
        let error = &body["error"];
        Self {
            status,
            code: error["code"].as_str().unwrap_or("error").to_owned(),
            message: error["message"]
                .as_str()
                .unwrap_or("the request failed")
                .to_owned(),
        }
    }
}

/// One call: who makes it and what it sends.
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub token: Option<&'a str>,
    pub session: Option<&'a str>,
    pub body: Option<Value>,
    pub idempotency_key: Option<String>,
}

/// What a form asks of the API, before knowing who asks: the call made
/// for the visitor by [`Action::call`].
pub struct Action {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
    pub idempotency_key: Option<String>,
}

impl Action {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            body: None,
            idempotency_key: None,
        }
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The call, as `token` and `session` (the visitor's).
    pub fn call<'a>(self, token: Option<&'a str>, session: Option<&'a str>) -> Call<'a> {
        Call {
            method: self.method,
            path: self.path,
            token,
            session,
            body: self.body,
            idempotency_key: self.idempotency_key,
        }
    }
}

impl Call<'_> {
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The call without the visitor's token (signing in, registering).
    pub fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl Api {
    pub fn new(router: Router, prefix: &'static str) -> Self {
        Self { router, prefix }
    }

    /// Sends `call`; a 2xx answer's JSON body (`null` when empty), else
    /// the failure.
    pub async fn send(&self, call: Call<'_>) -> Result<Value, Failure> {
        let bytes = self.exchange(call, "application/json").await?;
        Ok(if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        })
    }

    /// Sends `call` asking for `accept` (`text/csv`); a 2xx answer's body.
    pub async fn text(&self, call: Call<'_>, accept: &'static str) -> Result<String, Failure> {
        let bytes = self.exchange(call, accept).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn exchange(&self, call: Call<'_>, accept: &'static str) -> Result<Bytes, Failure> {
        let uri = format!("{}{}", self.prefix, call.path);
        let mut request = Request::builder()
            .method(call.method)
            .uri(uri)
            .header(header::ACCEPT, accept);
        if let Some(token) = call.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(session) = call.session.and_then(|s| HeaderValue::from_str(s).ok()) {
            request = request.header("x-session-id", session);
        }
        if let Some(key) = &call.idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let body = match &call.body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
        let unavailable =
            |e: String| Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e);
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if status.is_success() {
            Ok(bytes)
        } else {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Err(Failure::from_answer(status, &body))
        }
    }
}
