//! The provider adapter: how the payments context talks to a card network.

use async_trait::async_trait;
use mercato_kernel::resilience::{backoff, CircuitBreaker};
use mercato_kernel::Money;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Captured { charge_id: String },
    Declined { code: String },
}

#[derive(Debug)]
pub enum ProviderError {
    /// No answer in time: the outcome is unknown until voided.
    Timeout,
    /// The provider is down, answered 5xx, or the breaker is open.
    Unavailable(String),
    /// The provider refused the request itself (a bug or a mismatch).
    Rejected(String),
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges `amount`; idempotent by `key`.
    async fn charge(
        &self,
        key: &str,
        amount: &Money,
        token: &str,
    ) -> Result<ChargeResult, ProviderError>;
    /// Cancels whatever `key` charged, and makes sure it never charges later.
    async fn void(&self, key: &str) -> Result<(), ProviderError>;
    /// Refunds `amount` of a captured charge; idempotent by `key`.
    async fn refund(&self, key: &str, charge_id: &str, amount: &Money)
        -> Result<(), ProviderError>;
}

/// A provider reached over HTTP (the built-in test provider speaks this API).
pub struct HttpProvider {
    base: String,
    client: reqwest::Client,
    breaker: CircuitBreaker,
}

#[derive(Deserialize)]
struct ChargeBody {
    id: String,
    status: String,
    decline_code: Option<String>,
}

/// Attempts for a request that was refused before it was sent.
const CONNECT_ATTEMPTS: u32 = 3;

impl HttpProvider {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .pool_max_idle_per_host(32)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
            breaker: CircuitBreaker::new("payment_provider", 5, Duration::from_secs(5)),
        })
    }

    /// Sends a POST; retries only when the connection was refused, which
    /// proves the provider never saw the request.
    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: serde_json::Value,
    ) -> Result<reqwest::Response, ProviderError> {
        if !self.breaker.allow() {
            return Err(ProviderError::Unavailable("circuit open".into()));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_server_error() => {
                    self.breaker.record_failure();
                    return Err(ProviderError::Unavailable(format!(
                        "provider answered {}",
                        resp.status()
                    )));
                }
                Ok(resp) => {
                    self.breaker.record_success();
                    return Ok(resp);
                }
                Err(e) if e.is_timeout() => {
                    self.breaker.record_failure();
                    return Err(ProviderError::Timeout);
                }
                Err(e) if e.is_connect() && attempt < CONNECT_ATTEMPTS => {
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(20),
                        Duration::from_millis(200),
                    ))
                    .await;
                }
                Err(e) => {
                    self.breaker.record_failure();
                    return Err(ProviderError::Unavailable(e.to_string()));
                }
            }
        }
    }
}

async fn rejected(resp: reqwest::Response) -> ProviderError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    ProviderError::Rejected(format!(
        "{status}: {}",
        text.chars().take(200).collect::<String>()
    ))
}

#[async_trait]
impl PaymentProvider for HttpProvider {
    async fn charge(
        &self,
        key: &str,
        amount: &Money,
        token: &str,
    ) -> Result<ChargeResult, ProviderError> {
        let resp = self
            .post(
                "/v1/charges",
                Some(key),
                serde_json::json!({"amount": amount.amount, "currency": amount.currency.as_str(), "token": token}),
            )
            .await?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::PAYMENT_REQUIRED {
            let body: ChargeBody = resp
                .json()
                .await
                .map_err(|e| ProviderError::Rejected(e.to_string()))?;
            return Ok(match body.status.as_str() {
                "captured" => ChargeResult::Captured { charge_id: body.id },
                _ => ChargeResult::Declined {
                    code: body.decline_code.unwrap_or_else(|| "declined".into()),
                },
            });
        }
        if status == reqwest::StatusCode::CONFLICT {
            // The key was voided earlier: this charge can never happen.
            return Ok(ChargeResult::Declined {
                code: "voided".into(),
            });
        }
        Err(rejected(resp).await)
    }

    async fn void(&self, key: &str) -> Result<(), ProviderError> {
        let resp = self
            .post(
                "/v1/charges/void",
                None,
                serde_json::json!({"idempotency_key": key}),
            )
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(rejected(resp).await)
        }
    }

    async fn refund(
        &self,
        key: &str,
        charge_id: &str,
        amount: &Money,
    ) -> Result<(), ProviderError> {
        let resp = self
            .post(
                "/v1/refunds",
                Some(key),
                serde_json::json!({"charge_id": charge_id, "amount": amount.amount}),
            )
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(rejected(resp).await)
        }
    }
}
