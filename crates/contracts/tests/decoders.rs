//! Decoders never panic: arbitrary bytes and arbitrary JSON, shaped like
//! the real payloads (their field names, nested), fed to the envelope
//! decoder, to every event payload and to every DTO that crosses a process
//! boundary. Each must answer with a value or an error.

use mercato_contracts::events::*;
use mercato_contracts::internal::*;
use mercato_contracts::types::*;
use mercato_kernel::event::DomainEvent;
use mercato_kernel::Envelope;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Field names of the real payloads, so that generated objects reach past
/// the first missing field into nested decoders.
const FIELDS: &[&str] = &[
    "amount",
    "attributes",
    "available",
    "category",
    "channel",
    "created_at",
    "customer_id",
    "description",
    "email",
    "error",
    "expires_at",
    "id",
    "items",
    "line_total",
    "lines",
    "name",
    "new_price",
    "notification_id",
    "old_price",
    "order_id",
    "payment_id",
    "price",
    "product",
    "product_id",
    "quantity",
    "reason",
    "reservation_id",
    "reserved",
    "role",
    "seller_id",
    "sku",
    "skus",
    "status",
    "subscription_id",
    "interval",
    "period",
    "attempt",
    "failed_attempts",
    "payment_token",
    "shipping_address",
    "next_renewal_at",
    "template",
    "title",
    "total",
    "unit_price",
    "updated_at",
    "user_id",
    "variants",
    "version",
    "currency",
    "type",
    "schema_version",
    "occurred_at",
    "source",
    "subject",
    "correlation_id",
    "causation_id",
    "payload",
    "bought",
    "outcome",
    "decline_code",
    "intent_id",
    "token",
    "warehouse",
    "promotion_id",
    "code",
    "times_used",
    "sms",
    "push",
    "marketing",
    "notifications",
    "discounts",
    "discount_total",
    "shipping_total",
    "tax_total",
    "subtotal",
    "tax_lines",
    "shipping_method",
    "rate_bps",
    "country",
    "promotion",
    "promotion_code",
    "refund_id",
    "return_id",
    "refunded_total",
    "line1",
    "city",
    "postal_code",
    "url",
    "alt",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        // Values the decoders parse further: ids, times, currencies, roles.
        Just(json!("01a22d32-05a6-727f-a25c-9a5a0aa17c26")),
        Just(json!("2026-11-30T12:00:00Z")),
        Just(json!("EUR")),
        Just(json!("customer")),
        Just(json!("active")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 8, |inner| {
        let key = prop_oneof![
            3 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..10)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Decodes `value` as every type `$t`, through serde and through an
/// envelope of that type; only the absence of a panic is asserted.
macro_rules! decode_events {
    ($value:expr, $($t:ty),+ $(,)?) => {{
        $(
            let _ = serde_json::from_value::<$t>($value.clone());
            let env = Envelope {
                id: uuid::Uuid::nil(),
                event_type: <$t as DomainEvent>::TYPE.to_owned(),
                schema_version: 1,
                occurred_at: chrono::DateTime::UNIX_EPOCH,
                source: "test".into(),
                subject: "s".into(),
                correlation_id: None,
                causation_id: None,
                payload: $value.clone(),
            };
            let _ = env.decode::<$t>();
        )+
    }};
}

macro_rules! decode_types {
    ($value:expr, $($t:ty),+ $(,)?) => {{
        $( let _ = serde_json::from_value::<$t>($value.clone()); )+
    }};
}

fn decode_everything(value: &Value) {
    decode_events!(
        value,
        UserRegistered,
        UserUpdated,
        UserPreferencesChanged,
        UserErased,
        ProductCreated,
        ProductUpdated,
        PriceChanged,
        ProductArchived,
        StockChanged,
        StockLow,
        InventoryReserved,
        InventoryReleased,
        InventoryCommitted,
        CartCheckedOut,
        OrderPlaced,
        OrderConfirmed,
        OrderCancelled,
        OrderShipped,
        OrderDelivered,
        OrderRefunded,
        OrderPartiallyRefunded,
        ReturnRequested,
        PaymentCaptured,
        PaymentFailed,
        PaymentRefunded,
        PromotionRedeemed,
        PromotionReleased,
        SubscriptionCreated,
        SubscriptionRenewalPlaced,
        SubscriptionRenewalFailed,
        SubscriptionPastDue,
        SubscriptionStatusChanged,
        ReviewPublished,
        ReviewRemoved,
        RatingChanged,
        ExperimentExposed,
        ProductViewed,
        SearchPerformed,
        CartItemAdded,
        CheckoutStarted,
        NotificationSent,
        NotificationFailed,
    );
    decode_types!(
        value,
        Envelope,
        Product,
        Variant,
        SkuInfo,
        Line,
        SkuQuantity,
        ProductStatus,
        ReserveRequest,
        ReserveResponse,
        ChargeRequest,
        ChargeResponse,
        RefundResponse,
        CheckedOutRequest,
        RefundPartRequest,
        RestockPartRequest,
        RedeemRequest,
        RedeemResponse,
        QuoteRequest,
        Quote,
        PricedLine,
        Discount,
        ShippingCharge,
        TaxLine,
        AppliedPromotion,
        ShippingAddress,
        Image,
        PlaceOrder,
        PlacedOrder,
        mercato_contracts::clients::CartContents,
        mercato_contracts::interactions::Observed,
        mercato_contracts::interactions::Visitor,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics_a_decoder(value in json_value()) {
        decode_everything(&value);
    }

    /// An envelope whose payload is arbitrary: what a consumer receives
    /// from a bus it does not control.
    #[test]
    fn envelopes_with_arbitrary_payloads_never_panic(payload in json_value(), kind in proptest::sample::select(FIELDS)) {
        let raw = json!({
            "id": "01a22d32-05a6-727f-a25c-9a5a0aa17c26",
            "type": kind,
            "schema_version": 1,
            "occurred_at": "2026-11-30T12:00:00Z",
            "source": "test",
            "subject": "s",
            "correlation_id": null,
            "causation_id": null,
            "payload": payload,
        });
        if let Ok(env) = serde_json::from_value::<Envelope>(raw) {
            decode_everything(&env.payload);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<Envelope>(&bytes);
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            decode_everything(&value);
        }
    }
}
