//! Guarding the internal endpoints one context serves to another in
//! distributed mode. They are reached with a service token shared by every
//! service of a deployment, never with a user's token, and are not part of
//! the public API.

use crate::error::ApiError;
use crate::event::{with_correlation, Correlation};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The header that carries a flow's correlation id from caller to callee.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The configured service token, kept as a digest so that comparing takes
/// the same time whatever the length or content of what a caller sends.
#[derive(Clone)]
pub struct ServiceToken(Arc<[u8; 32]>);

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceToken(<redacted>)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl ServiceToken {
    pub fn new(secret: &str) -> Self {
        Self(Arc::new(digest(secret.as_bytes())))
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let theirs = digest(presented.as_bytes());
        self.0
            .iter()
            .zip(theirs.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Middleware for internal routers: 401 unless the request carries
/// `Authorization: Bearer <service token>`. The request then runs under the
/// caller's correlation id (`x-request-id`), so that the events it causes
/// belong to the caller's flow.
pub async fn require_service_token(
    State(token): State<ServiceToken>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| token.matches(p.trim())) {
        return ApiError::unauthorized("a valid service token is required").into_response();
    }
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::id::new_id().to_string());
    let correlation = Correlation {
        correlation_id: Some(request_id),
        causation_id: None,
    };
    with_correlation(correlation, next.run(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_itself() {
        let t = ServiceToken::new("a-long-enough-service-token");
        assert!(t.matches("a-long-enough-service-token"));
        assert!(!t.matches("a-long-enough-service-tokem"));
        assert!(!t.matches(""));
        assert!(!t.matches("a-long-enough-service-token-and-more"));
    }
}
