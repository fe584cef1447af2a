//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;

/// Checks one dependency; `Err` carries a short reason for operators.
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Named readiness checks: stores, the bus.
#[derive(Clone, Default)]
pub struct Probes(Arc<Vec<(String, Probe)>>);

impl Probes {
    pub fn new(probes: Vec<(String, Probe)>) -> Self {
        Self(Arc::new(probes))
    }
}

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

pub async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    let checks = futures::future::join_all(probes.0.iter().map(|(name, probe)| {
        let name = name.clone();
        let fut = probe();
        async move {
            let result = tokio::time::timeout(std::time::Duration::from_secs(2), fut)
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()));
            (name, result)
        }
    }))
    .await;
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let detail: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!("ok"),
                Err(e) => json!(e),
            };
            (name, v)
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"status": if ready { "ready" } else { "not_ready" }, "checks": detail})),
    )
}
