//! The built-in test payment provider: a real HTTP service standing in for a
//! card network. Its tokens behave as the API contract says:
//!
//! | token | result |
//! |---|---|
//! | `tok_visa` | captured |
//! | `tok_decline` | declined, `card_declined` |
//! | `tok_insufficient_funds` | declined, `insufficient_funds` |
//! | `tok_timeout` | never answers, and never charges |
//!
//! Charges are idempotent by the `Idempotency-Key` header. `POST
//! /v1/charges/void` cancels whatever a key charged and refuses that key from
//! then on, so a request still hanging when its caller gave up can never
//! charge later. State is in memory: it is a stand-in for an external
//! service, not part of the platform's data.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Charge {
    pub id: String,
    pub idempotency_key: String,
    pub amount: i64,
    pub currency: String,
    /// `captured`, `declined`, `voided`, `refunded`.
    pub status: String,
    pub decline_code: Option<String>,
    pub refunded: i64,
}

#[derive(Default)]
struct Ledger {
    charges: Vec<Charge>,
    by_key: HashMap<String, usize>,
    voided_keys: std::collections::HashSet<String>,
    refunds: HashMap<String, (String, i64)>,
}

#[derive(Clone, Default)]
pub struct TestProvider {
    ledger: Arc<Mutex<Ledger>>,
}

#[derive(Debug, Deserialize)]
pub struct ChargeRequest {
    pub amount: i64,
    pub currency: String,
    pub token: String,
}

#[derive(Debug, Deserialize)]
pub struct VoidRequest {
    pub idempotency_key: String,
}

#[derive(Debug, Deserialize)]
pub struct RefundRequest {
    pub charge_id: String,
    pub amount: i64,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

impl TestProvider {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every charge made so far.
    pub fn charges(&self) -> Vec<Charge> {
        self.lock().charges.clone()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/charges", post(charge).get(list))
            .route("/v1/charges/void", post(void))
            .route("/v1/charges/{id}", get(one))
            .route("/v1/refunds", post(refund))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Serves on `addr` until `shutdown`; returns the bound address.
    pub async fn serve(
        &self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let router = self.router();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "test payment provider stopped");
            }
        });
        Ok((bound, task))
    }
}

async fn charge(
    State(p): State<TestProvider>,
    headers: HeaderMap,
    body: Option<Json<ChargeRequest>>,
) -> Response {
    let Some(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected {amount, currency, token}",
        );
    };
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "Idempotency-Key header required",
        );
    };
    if req.amount <= 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            "amount must be positive",
        );
    }
    if req.token == "tok_timeout" {
        // The network swallows the request: no answer, no charge.
        tokio::time::sleep(Duration::from_secs(600)).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "timeout", "no answer");
    }
    let mut ledger = p.lock();
    if ledger.voided_keys.contains(&key) {
        return error(
            StatusCode::CONFLICT,
            "voided",
            "this idempotency key was voided",
        );
    }
    if let Some(&i) = ledger.by_key.get(&key) {
        let c = ledger.charges[i].clone();
        return answer(c);
    }
    let (status, decline_code) = match req.token.as_str() {
        "tok_visa" => ("captured", None),
        "tok_decline" => ("declined", Some("card_declined")),
        "tok_insufficient_funds" => ("declined", Some("insufficient_funds")),
        _ => ("declined", Some("invalid_token")),
    };
    let c = Charge {
        id: format!("ch_{}", uuid::Uuid::now_v7().simple()),
        idempotency_key: key.clone(),
        amount: req.amount,
        currency: req.currency,
        status: status.to_owned(),
        decline_code: decline_code.map(str::to_owned),
        refunded: 0,
    };
    let index = ledger.charges.len();
    ledger.by_key.insert(key, index);
    ledger.charges.push(c.clone());
    answer(c)
}

fn answer(c: Charge) -> Response {
    let status = if c.status == "declined" {
        StatusCode::PAYMENT_REQUIRED
    } else {
        StatusCode::OK
    };
    (status, Json(c)).into_response()
}

async fn void(State(p): State<TestProvider>, Json(req): Json<VoidRequest>) -> Response {
    let mut ledger = p.lock();
    ledger.voided_keys.insert(req.idempotency_key.clone());
    let voided = match ledger.by_key.get(&req.idempotency_key).copied() {
        Some(i) if ledger.charges[i].status == "captured" => {
            ledger.charges[i].status = "voided".into();
            true
        }
        _ => false,
    };
    Json(serde_json::json!({"voided": voided})).into_response()
}

async fn refund(
    State(p): State<TestProvider>,
    headers: HeaderMap,
    Json(req): Json<RefundRequest>,
) -> Response {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "Idempotency-Key header required",
        );
    };
    let mut ledger = p.lock();
    if let Some((charge_id, amount)) = ledger.refunds.get(&key) {
        return Json(serde_json::json!({"id": key, "charge_id": charge_id, "amount": amount, "status": "succeeded"})).into_response();
    }
    let Some(i) = ledger.charges.iter().position(|c| c.id == req.charge_id) else {
        return error(StatusCode::NOT_FOUND, "no_such_charge", "no such charge");
    };
    let c = &mut ledger.charges[i];
    if c.status != "captured" || req.amount <= 0 || c.refunded + req.amount > c.amount {
        return error(
            StatusCode::CONFLICT,
            "not_refundable",
            "the charge cannot be refunded by that amount",
        );
    }
    c.refunded += req.amount;
    if c.refunded == c.amount {
        c.status = "refunded".into();
    }
    let charge_id = c.id.clone();
    ledger
        .refunds
        .insert(key.clone(), (charge_id.clone(), req.amount));
    Json(serde_json::json!({"id": key, "charge_id": charge_id, "amount": req.amount, "status": "succeeded"})).into_response()
}

async fn list(State(p): State<TestProvider>) -> Json<Vec<Charge>> {
    Json(p.charges())
}

async fn one(State(p): State<TestProvider>, Path(id): Path<String>) -> Response {
    match p.charges().into_iter().find(|c| c.id == id) {
        Some(c) => Json(c).into_response(),
        None => error(StatusCode::NOT_FOUND, "no_such_charge", "no such charge"),
    }
}
