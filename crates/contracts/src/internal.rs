//! The wire format of the internal endpoints behind the client traits in
//! distributed mode (`/internal/v1/...`), shared by the serving context and
//! the HTTP clients in [`crate::http`], and how a [`ClientError`] travels as
//! an HTTP answer so that the caller gets back the same kind of error an
//! in-process call would have given.

use crate::clients::{ChargeOutcome, ClientError, RedeemOutcome, RefundOutcome, ReserveOutcome};
use crate::types::SkuQuantity;
use mercato_kernel::{ApiError, Money};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where the internal routers are mounted.
pub const PREFIX: &str = "/internal/v1";

/// Code of a 409 answer to a commit that cannot happen (the reservation was
/// released, expired or never made): [`ClientError::Failed`] on the caller's side.
pub const RESERVATION_NOT_COMMITTABLE: &str = "reservation_not_committable";
/// Code of a 422 answer for any other [`ClientError::Failed`] of the callee.
pub const CALL_FAILED: &str = "call_failed";
/// Code of a 504 answer for a [`ClientError::Timeout`] of the callee.
pub const TIMED_OUT: &str = "timeout";
/// Code of a 422 answer, and of [`ClientError::Rejected`], when a cart
/// holds a line that cannot be bought (priced in another currency).
pub const LINE_UNAVAILABLE: &str = "line_unavailable";

/// Every 422 answer but `call_failed` is the callee's verdict for the
/// person who asked ([`ClientError::Rejected`]): a line that cannot be
/// bought, a promotion code that does not apply, an address nobody ships to.
pub fn is_verdict(code: &str) -> bool {
    code != CALL_FAILED
}

/// `POST /internal/v1/reservations/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveRequest {
    pub lines: Vec<SkuQuantity>,
    pub ttl_ms: u64,
}

/// Answer of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReserveResponse {
    Reserved,
    OutOfStock { sku: String },
}

impl From<ReserveOutcome> for ReserveResponse {
    fn from(o: ReserveOutcome) -> Self {
        match o {
            ReserveOutcome::Reserved => Self::Reserved,
            ReserveOutcome::OutOfStock { sku } => Self::OutOfStock { sku },
        }
    }
}

impl From<ReserveResponse> for ReserveOutcome {
    fn from(o: ReserveResponse) -> Self {
        match o {
            ReserveResponse::Reserved => Self::Reserved,
            ReserveResponse::OutOfStock { sku } => Self::OutOfStock { sku },
        }
    }
}

/// `POST /internal/v1/payments/{order_id}/charge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub customer_id: Uuid,
    pub amount: Money,
    pub token: String,
}

/// Answer of a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChargeResponse {
    Captured { payment_id: Uuid },
    Declined { payment_id: Uuid, reason: String },
}

impl From<ChargeOutcome> for ChargeResponse {
    fn from(o: ChargeOutcome) -> Self {
        match o {
            ChargeOutcome::Captured { payment_id } => Self::Captured { payment_id },
            ChargeOutcome::Declined { payment_id, reason } => Self::Declined { payment_id, reason },
        }
    }
}

impl From<ChargeResponse> for ChargeOutcome {
    fn from(o: ChargeResponse) -> Self {
        match o {
            ChargeResponse::Captured { payment_id } => Self::Captured { payment_id },
            ChargeResponse::Declined { payment_id, reason } => {
                Self::Declined { payment_id, reason }
            }
        }
    }
}

/// Answer of `POST /internal/v1/payments/{order_id}/refund`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RefundResponse {
    NothingTaken,
    Voided,
    Refunded,
}

impl From<RefundOutcome> for RefundResponse {
    fn from(o: RefundOutcome) -> Self {
        match o {
            RefundOutcome::NothingTaken => Self::NothingTaken,
            RefundOutcome::Voided => Self::Voided,
            RefundOutcome::Refunded => Self::Refunded,
        }
    }
}

impl From<RefundResponse> for RefundOutcome {
    fn from(o: RefundResponse) -> Self {
        match o {
            RefundResponse::NothingTaken => Self::NothingTaken,
            RefundResponse::Voided => Self::Voided,
            RefundResponse::Refunded => Self::Refunded,
        }
    }
}

/// `POST /internal/v1/payments/{order_id}/refunds/{refund_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPartRequest {
    pub amount: Money,
}

/// `POST /internal/v1/reservations/{id}/restocks/{restock_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestockPartRequest {
    pub lines: Vec<SkuQuantity>,
    #[serde(default)]
    pub warehouse: Option<String>,
}

/// `POST /internal/v1/stock`: what of each SKU can be bought now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRequest {
    pub skus: Vec<String>,
}

/// `POST /internal/v1/pricing/redemptions/{order_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemRequest {
    pub customer_id: Uuid,
    pub promotion_id: Uuid,
}

/// Answer of a redemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RedeemResponse {
    Redeemed,
    Unavailable { reason: String },
}

impl From<RedeemOutcome> for RedeemResponse {
    fn from(o: RedeemOutcome) -> Self {
        match o {
            RedeemOutcome::Redeemed => Self::Redeemed,
            RedeemOutcome::Unavailable { reason } => Self::Unavailable { reason },
        }
    }
}

impl From<RedeemResponse> for RedeemOutcome {
    fn from(o: RedeemResponse) -> Self {
        match o {
            RedeemResponse::Redeemed => Self::Redeemed,
            RedeemResponse::Unavailable { reason } => Self::Unavailable { reason },
        }
    }
}

/// `POST /internal/v1/carts/{customer_id}/checked-out`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedOutRequest {
    pub order_id: Uuid,
    pub bought: Vec<SkuQuantity>,
}

/// The answer an internal endpoint gives for a failed in-process call: 504
/// for a time-out, 503 for an unavailable dependency (both retried by the
/// caller), 422 `call_failed` for a definite failure.
pub fn api_error(e: ClientError) -> ApiError {
    match e {
        ClientError::Timeout(what) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            TIMED_OUT,
            format!("{what} timed out"),
        ),
        ClientError::Unavailable(what, why) => {
            ApiError::unavailable(format!("{what} is unavailable: {why}"))
        }
        ClientError::Failed(what, why) => {
            ApiError::unprocessable(CALL_FAILED, format!("{what} failed: {why}"))
        }
        ClientError::Rejected(_, code, message) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_have_the_documented_shape() {
        assert_eq!(
            serde_json::to_value(ReserveResponse::OutOfStock { sku: "A".into() }).ok(),
            Some(json!({"outcome": "out_of_stock", "sku": "A"}))
        );
        assert_eq!(
            serde_json::to_value(ReserveResponse::Reserved).ok(),
            Some(json!({"outcome": "reserved"}))
        );
        assert_eq!(
            serde_json::to_value(RefundResponse::NothingTaken).ok(),
            Some(json!({"outcome": "nothing_taken"}))
        );
        let id = Uuid::nil();
        assert_eq!(
            serde_json::to_value(ChargeResponse::Declined {
                payment_id: id,
                reason: "card_declined".into()
            })
            .ok(),
            Some(json!({"outcome": "declined", "payment_id": id, "reason": "card_declined"}))
        );
    }
}
