//! Charging and refunding, idempotent per order.

use crate::provider::{ChargeResult, PaymentProvider, ProviderError};
use crate::store::{Intent, PaymentsStore};
use async_trait::async_trait;
use mercato_contracts::clients::{
    ChargeOutcome, ClientError, ClientResult, PaymentsClient, RefundOutcome,
};
use mercato_kernel::Money;
use std::sync::Arc;
use uuid::Uuid;

pub struct PaymentsService {
    store: PaymentsStore,
    provider: Arc<dyn PaymentProvider>,
}

fn failed(e: anyhow::Error) -> ClientError {
    ClientError::Failed("payments", format!("{e:#}"))
}

fn outcome(metric: &'static str) {
    metrics::counter!("mercato_payments_total", "outcome" => metric).increment(1);
}

impl PaymentsService {
    pub fn new(store: PaymentsStore, provider: Arc<dyn PaymentProvider>) -> Self {
        Self { store, provider }
    }

    pub fn store(&self) -> &PaymentsStore {
        &self.store
    }

    fn settled(intent: &Intent) -> Option<ChargeOutcome> {
        match intent.status.as_str() {
            "pending" => None,
            "captured" => Some(ChargeOutcome::Captured {
                payment_id: intent.id,
            }),
            _ => Some(ChargeOutcome::Declined {
                payment_id: intent.id,
                reason: intent
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| intent.status.clone()),
            }),
        }
    }

    /// After a time-out the outcome is unknown; voiding by key settles it as
    /// "nothing charged", for good.
    async fn settle_unknown(&self, intent: &Intent, why: &str) -> ClientResult<ChargeOutcome> {
        match self.provider.void(&intent.id.to_string()).await {
            Ok(()) => {
                self.store
                    .mark_failed(intent, "failed", why)
                    .await
                    .map_err(failed)?;
                outcome("failed");
                let now = self.store.by_order(intent.order_id).await.map_err(failed)?;
                Ok(now
                    .as_ref()
                    .and_then(Self::settled)
                    .unwrap_or(ChargeOutcome::Declined {
                        payment_id: intent.id,
                        reason: why.to_owned(),
                    }))
            }
            Err(ProviderError::Timeout) => Err(ClientError::Timeout("payment provider")),
            Err(e) => Err(ClientError::Unavailable(
                "payment provider",
                format!("{e:?}"),
            )),
        }
    }
}

#[async_trait]
impl PaymentsClient for PaymentsService {
    async fn charge(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        amount: &Money,
        token: &str,
    ) -> ClientResult<ChargeOutcome> {
        let intent = self
            .store
            .ensure_intent(order_id, customer_id, amount)
            .await
            .map_err(failed)?;
        if let Some(done) = Self::settled(&intent) {
            return Ok(done);
        }
        let started = std::time::Instant::now();
        let result = self
            .provider
            .charge(&intent.id.to_string(), &intent.amount, token)
            .await;
        metrics::histogram!("mercato_payment_provider_seconds", "call" => "charge")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(ChargeResult::Captured { charge_id }) => {
                self.store
                    .mark_captured(&intent, &charge_id)
                    .await
                    .map_err(failed)?;
                outcome("captured");
            }
            Ok(ChargeResult::Declined { code }) => {
                self.store
                    .mark_failed(&intent, "declined", &code)
                    .await
                    .map_err(failed)?;
                outcome("declined");
            }
            Err(ProviderError::Rejected(why)) => {
                tracing::error!(order_id = %order_id, error = %why, "payment provider rejected a charge request");
                self.store
                    .mark_failed(&intent, "failed", "provider_rejected")
                    .await
                    .map_err(failed)?;
                outcome("failed");
            }
            Err(ProviderError::Timeout) => {
                tracing::warn!(order_id = %order_id, "payment provider timed out; voiding");
                return self.settle_unknown(&intent, "provider_timeout").await;
            }
            Err(ProviderError::Unavailable(why)) => {
                tracing::warn!(order_id = %order_id, error = %why, "payment provider unavailable; voiding");
                return self.settle_unknown(&intent, "provider_unavailable").await;
            }
        }
        let now = self.store.by_order(order_id).await.map_err(failed)?;
        now.as_ref().and_then(Self::settled).ok_or_else(|| {
            ClientError::Failed(
                "payments",
                "intent still pending after the provider answered".into(),
            )
        })
    }

    async fn refund(&self, order_id: Uuid) -> ClientResult<RefundOutcome> {
        let Some(intent) = self.store.by_order(order_id).await.map_err(failed)? else {
            return Ok(RefundOutcome::NothingTaken);
        };
        match intent.status.as_str() {
            "captured" => {
                let charge_id = intent.provider_charge_id.clone().ok_or_else(|| {
                    ClientError::Failed("payments", "captured intent without a charge id".into())
                })?;
                let key = format!("refund-{}", intent.id);
                match self.provider.refund(&key, &charge_id, &intent.amount).await {
                    Ok(()) => {
                        self.store
                            .mark_refunded(&intent, &key)
                            .await
                            .map_err(failed)?;
                        outcome("refunded");
                        Ok(RefundOutcome::Refunded)
                    }
                    Err(ProviderError::Timeout) => Err(ClientError::Timeout("payment provider")),
                    Err(e) => Err(ClientError::Unavailable(
                        "payment provider",
                        format!("{e:?}"),
                    )),
                }
            }
            "pending" => match self.provider.void(&intent.id.to_string()).await {
                Ok(()) => {
                    self.store.mark_voided(&intent).await.map_err(failed)?;
                    outcome("voided");
                    Ok(RefundOutcome::Voided)
                }
                Err(ProviderError::Timeout) => Err(ClientError::Timeout("payment provider")),
                Err(e) => Err(ClientError::Unavailable(
                    "payment provider",
                    format!("{e:?}"),
                )),
            },
            "refunded" => Ok(RefundOutcome::Refunded),
            "voided" => Ok(RefundOutcome::Voided),
            _ => Ok(RefundOutcome::NothingTaken),
        }
    }
}
