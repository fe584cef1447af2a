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

    /// Refunds `amount` of a captured intent at the provider and in the
    /// ledger, once per `key` (the provider's idempotency key and the
    /// ledger's reference): a repeat finds the entry and does nothing.
    async fn refund_by_key(&self, intent: &Intent, key: &str, amount: &Money) -> ClientResult<()> {
        if self
            .store
            .has_refund(intent.id, key)
            .await
            .map_err(failed)?
        {
            return Ok(());
        }
        if amount.amount == 0 {
            return Ok(());
        }
        let left = intent.amount.amount - intent.refunded.amount;
        if intent.status != "captured"
            || amount.currency != intent.amount.currency
            || amount.amount < 0
            || amount.amount > left
        {
            return Err(ClientError::Failed(
                "payments",
                format!(
                    "cannot refund {amount} of payment {} ({}, {left} left)",
                    intent.id, intent.status
                ),
            ));
        }
        let charge_id = intent.provider_charge_id.clone().ok_or_else(|| {
            ClientError::Failed("payments", "captured intent without a charge id".into())
        })?;
        self.provider
            .refund(key, &charge_id, amount)
            .await
            .map_err(provider_error)?;
        if !self
            .store
            .record_refund(intent, key, amount)
            .await
            .map_err(failed)?
            && !self
                .store
                .has_refund(intent.id, key)
                .await
                .map_err(failed)?
        {
            return Err(ClientError::Failed(
                "payments",
                format!("payment {} changed while refunding; try again", intent.id),
            ));
        }
        outcome("refunded");
        Ok(())
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
            Err(e) => Err(provider_error(e)),
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
                // The rest: what partial refunds have not given back yet.
                let rest = intent.amount.checked_sub(&intent.refunded).map_err(|e| {
                    ClientError::Failed("payments", format!("refunded amount: {e}"))
                })?;
                self.refund_by_key(&intent, &format!("refund-{}", intent.id), &rest)
                    .await?;
                Ok(RefundOutcome::Refunded)
            }
            "pending" => match self.provider.void(&intent.id.to_string()).await {
                Ok(()) => {
                    self.store.mark_voided(&intent).await.map_err(failed)?;
                    outcome("voided");
                    Ok(RefundOutcome::Voided)
                }
                Err(e) => Err(provider_error(e)),
            },
            "refunded" => Ok(RefundOutcome::Refunded),
            "voided" => Ok(RefundOutcome::Voided),
            _ => Ok(RefundOutcome::NothingTaken),
        }
    }

    async fn refund_part(
        &self,
        order_id: Uuid,
        refund_id: Uuid,
        amount: &Money,
    ) -> ClientResult<()> {
        let intent = self
            .store
            .by_order(order_id)
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                ClientError::Failed("payments", format!("order {order_id} has no payment"))
            })?;
        self.refund_by_key(&intent, &format!("refund-{refund_id}"), amount)
            .await
    }
}

fn provider_error(e: ProviderError) -> ClientError {
    match e {
        ProviderError::Timeout => ClientError::Timeout("payment provider"),
        e => ClientError::Unavailable("payment provider", format!("{e:?}")),
    }
}
