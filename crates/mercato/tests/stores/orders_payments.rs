use crate::support::{pending_events, stores};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{Currency, Money};
use mercato_payments::store::PaymentsStore;

#[tokio::test]
async fn one_intent_per_order_one_capture_and_refunds_up_to_it() {
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
        let part = Money::new(1000, amount.currency.clone());
        let rest = Money::new(3200, amount.currency.clone());
        assert!(store
            .record_refund(&first, "re_1", &part)
            .await
            .expect("refund"));
        assert!(store.has_refund(first.id, "re_1").await.expect("read"));
        assert!(
            store.record_refund(&first, "re_1", &part).await.is_err(),
            "one ledger entry per refund reference"
        );
        let partly = store.by_order(order).await.expect("read").expect("found");
        assert_eq!(
            (partly.status.as_str(), partly.refunded.amount),
            ("captured", 1000)
        );
        assert!(
            !store
                .record_refund(&first, "re_2", &amount)
                .await
                .expect("refund"),
            "more than is left is refused"
        );
        assert!(store
            .record_refund(&first, "re_3", &rest)
            .await
            .expect("refund"));
        assert!(
            !store
                .record_refund(&first, "re_4", &part)
                .await
                .expect("refund"),
            "refunded past the capture"
        );

        let ledger = store.ledger(first.id).await.expect("ledger");
        let amounts: Vec<(String, i64)> = ledger
            .iter()
            .map(|e| (e.kind.clone(), e.amount.amount))
            .collect();
        assert_eq!(
            amounts,
            vec![
                ("capture".into(), 4200),
                ("refund".into(), -1000),
                ("refund".into(), -3200)
            ],
            "{:?}",
            s.backend
        );
        assert_eq!(ledger.iter().map(|e| e.amount.amount).sum::<i64>(), 0);
        let now = store.by_order(order).await.expect("read").expect("found");
        assert_eq!(
            (now.status.as_str(), now.refunded.amount),
            ("refunded", 4200)
        );
        assert_eq!(now.provider_charge_id.as_deref(), Some("ch_1"));
        assert_eq!(
            pending_events(&s.db).await,
            vec!["payment.captured", "payment.refunded", "payment.refunded"]
        );
    }
}

/// A saga's lease belongs to one run; a run whose lease another took can
/// neither renew nor release it, and cannot record a step the saga has
/// moved past.
#[tokio::test]
async fn a_saga_moves_only_from_where_it_is_and_only_for_its_lease_holder() {
    use mercato_kernel::idempotency::StoredResponse;
    use mercato_orders::domain::{
        HistoryEntry, Order, OrderStatus, PaymentSummary, ShippingAddress,
    };
    use mercato_orders::store::{IdempotencyRecord, OrdersStore, SagaState};

    for s in stores(mercato_orders::NAME, &mercato_orders::MIGRATIONS).await {
        let store = OrdersStore::new(s.db.clone(), Outbox::new());
        let now = mercato_kernel::time::now();
        let eur = Money::new(700, Currency::parse("EUR").expect("currency"));
        let order = Order {
            id: mercato_kernel::id::new_id(),
            customer_id: mercato_kernel::id::new_id(),
            status: OrderStatus::Pending,
            cancel_reason: None,
            items: Vec::new(),
            subtotal: eur.clone(),
            discount_total: Money::zero(eur.currency.clone()),
            shipping_total: Money::zero(eur.currency.clone()),
            tax_total: Money::zero(eur.currency.clone()),
            refunded_total: Money::zero(eur.currency.clone()),
            currency: eur.currency.clone(),
            discounts: Vec::new(),
            shipping_method: None,
            tax_lines: Vec::new(),
            promotion: None,
            total: eur.clone(),
            payment: PaymentSummary {
                status: "pending".into(),
                amount: eur,
            },
            shipping_address: ShippingAddress {
                name: "A".into(),
                line1: "1 Road".into(),
                line2: None,
                city: "Town".into(),
                postal_code: "1000".into(),
                country: "NL".into(),
            },
            subscription_id: None,
            history: vec![HistoryEntry {
                status: OrderStatus::Pending,
                at: now,
            }],
            created_at: now,
            updated_at: now,
        };
        let record = IdempotencyRecord {
            scope: "checkout",
            key: "k1",
            request_hash: "h1",
            response: StoredResponse {
                status: 202,
                body: "{}".into(),
            },
        };
        store
            .create_checkout(&order, "tok_visa", &[], &now, Some(&record), &[])
            .await
            .expect("order");
        let id = order.id;
        let short = chrono::Duration::milliseconds(50);
        assert!(store.claim(id, "run-a", short).await.expect("claim"));
        assert!(
            !store.claim(id, "run-b", short).await.expect("claim"),
            "{:?}",
            s.backend
        );
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        // A's lease ran out and B took the saga.
        assert!(store
            .claim(id, "run-b", chrono::Duration::seconds(30))
            .await
            .expect("claim"));
        assert!(!store.renew(id, "run-a", short).await.expect("renew"));
        store.release(id, "run-a").await.expect("release");
        store
            .retry_later(id, "run-a", 3, now, "late")
            .await
            .expect("retry");
        assert!(
            !store.claim(id, "run-c", short).await.expect("claim"),
            "B still holds it"
        );

        let running = (SagaState::Running, "reserve");
        assert!(!store
            .advance(
                id,
                (SagaState::Running, "pay"),
                SagaState::Running,
                "commit",
                None
            )
            .await
            .expect("advance"));
        assert!(store
            .advance(id, running, SagaState::Running, "pay", None)
            .await
            .expect("advance"));
        // A late run that also finished reserving moves nothing.
        assert!(!store
            .advance(id, running, SagaState::Running, "pay", None)
            .await
            .expect("advance"));
        let saga = store.saga(id).await.expect("saga").expect("exists");
        assert_eq!(
            (saga.state, saga.step.as_str(), saga.attempts),
            (SagaState::Running, "pay", 0)
        );
        assert!(store.renew(id, "run-b", short).await.expect("renew"));
    }
}
