use crate::support::{pending_events, stores};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{Currency, Money};
use mercato_payments::store::PaymentsStore;

#[tokio::test]
async fn one_intent_per_order_and_one_capture_per_intent() {
    for s in stores(mercato_payments::NAME, &mercato_payments::MIGRATIONS).await {
        let store = PaymentsStore::new(s.db.clone(), Outbox::new());
        let order = mercato_kernel::id::new_id();
        let customer = mercato_kernel::id::new_id();
        let amount = Money::new(4200, Currency::parse("EUR").expect("currency"));
        let first = store
            .ensure_intent(order, customer, &amount)
            .await
            .expect("intent");
        let again = store
            .ensure_intent(order, customer, &amount)
            .await
            .expect("intent");
        assert_eq!(first.id, again.id, "{:?}", s.backend);
        assert_eq!(first.status, "pending");

        assert!(store.mark_captured(&first, "ch_1").await.expect("capture"));
        assert!(
            !store.mark_captured(&first, "ch_2").await.expect("capture"),
            "captured twice"
        );
        assert!(
            !store
                .mark_failed(&first, "declined", "late")
                .await
                .expect("fail"),
            "a captured intent cannot fail"
        );
        assert!(store.mark_refunded(&first, "re_1").await.expect("refund"));
        assert!(
            !store.mark_refunded(&first, "re_2").await.expect("refund"),
            "refunded twice"
        );

        let ledger = store.ledger(first.id).await.expect("ledger");
        let amounts: Vec<(String, i64)> = ledger
            .iter()
            .map(|e| (e.kind.clone(), e.amount.amount))
            .collect();
        assert_eq!(
            amounts,
            vec![("capture".into(), 4200), ("refund".into(), -4200)],
            "{:?}",
            s.backend
        );
        let now = store.by_order(order).await.expect("read").expect("found");
        assert_eq!(now.status, "refunded");
        assert_eq!(now.provider_charge_id.as_deref(), Some("ch_1"));
        assert_eq!(
            pending_events(&s.db).await,
            vec!["payment.captured", "payment.refunded"]
        );
    }
}
