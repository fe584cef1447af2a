//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;

/// Checks one dependency; `Err` carries a short reason for operators.
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Named readiness checks: stores, the bus. Required checks make the
/// process unready when they fail; optional ones are reported (status
/// `degraded`) but leave it ready, for what the process can do without.
#[derive(Clone, Default)]
pub struct Probes {
    required: Arc<Vec<(String, Probe)>>,
    optional: Arc<Vec<(String, Probe)>>,
}

impl Probes {
    pub fn new(probes: Vec<(String, Probe)>) -> Self {
        Self {
            required: Arc::new(probes),
            optional: Arc::default(),
        }
    }

    /// Adds checks whose failure is reported without making the process unready.
    pub fn with_optional(mut self, probes: Vec<(String, Probe)>) -> Self {
        self.optional = Arc::new(probes);
        self
    }
}

async fn run(probes: &[(String, Probe)]) -> Vec<(String, Result<(), String>)> {
    futures::future::join_all(probes.iter().map(|(name, probe)| {
        let name = name.clone();
        let fut = probe();
        async move {
            let result = tokio::time::timeout(std::time::Duration::from_secs(2), fut)
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()));
            (name, result)
        }
    }))
    .await
}

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

pub async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    let (required, optional) =
        futures::future::join(run(&probes.required), run(&probes.optional)).await;
    let ready = required.iter().all(|(_, r)| r.is_ok());
    let whole = optional.iter().all(|(_, r)| r.is_ok());
    let detail: serde_json::Map<String, serde_json::Value> = required
        .into_iter()
        .chain(optional)
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!("ok"),
                Err(e) => json!(e),
            };
            (name, v)
        })
        .collect();
    let (status, label) = match (ready, whole) {
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    (
        status,
        axum::Json(json!({"status": label, "checks": detail})),
    )
}
