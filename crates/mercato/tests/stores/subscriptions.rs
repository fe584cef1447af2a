//! The subscriptions store: a period gets one order however many replicas
//! claim it at once; a period's next attempt is made only once its order
//! failed; failures count towards `past_due` and a confirmation clears
//! them; the outcome of an order is taken once. On SQLite and PostgreSQL.

use crate::support::stores;
use mercato_contracts::events::{SubscriptionPastDue, SubscriptionRenewalPlaced};
use mercato_contracts::types::ShippingAddress;
use mercato_kernel::db::Db;
use mercato_kernel::idempotency::StoredResponse;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{time, Envelope};
use mercato_subscriptions::domain::{Interval, Subscription, SubscriptionItem, SubscriptionStatus};
use mercato_subscriptions::store::{
    ClaimKind, ClaimRequest, NewSubscription, Outcome, SubscriptionsStore,
};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

async fn outbox(db: &Db) -> Vec<Envelope> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT envelope FROM outbox ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .expect("outbox read");
    rows.iter()
        .map(|(json,)| serde_json::from_str(json).expect("envelope"))
        .collect()
}

fn no_delay(_: i64) -> Duration {
    Duration::ZERO
}

/// A weekly subscription, stored with the claim of its first order.
async fn subscribed(store: &SubscriptionsStore) -> (Subscription, Uuid) {
    let now = time::now();
    let first = Uuid::now_v7();
    let view = Subscription {
        id: Uuid::now_v7(),
        customer_id: Uuid::now_v7(),
        status: SubscriptionStatus::Active,
        items: vec![SubscriptionItem {
            sku: "TEA-1".into(),
            quantity: 2,
        }],
        interval: Interval::Week,
        next_renewal_at: Interval::Week.period_start(now, 1).expect("a week on"),
        orders: vec![first],
        failed_attempts: 0,
        shipping_address: ShippingAddress {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
        },
        created_at: now,
        updated_at: now,
    };
    let key = Uuid::now_v7().to_string();
    let created = store
        .create(&NewSubscription {
            view: &view,
            payment_token: "tok_visa",
            first_order: first,
            scope: "subscribe:test",
            key: &key,
            request_hash: "h",
        })
        .await
        .expect("create");
    assert!(created);
    let answer = StoredResponse {
        status: 201,
        body: "{}".into(),
    };
    store
        .created(&view, first, "subscribe:test", &key, &answer)
        .await
        .expect("created");
    (view, first)
}

fn claim_of(s: &Subscription, period: i64) -> ClaimRequest {
    ClaimRequest {
        subscription_id: s.id,
        customer_id: s.customer_id,
        period,
        kind: ClaimKind::Renew,
        at: chrono::Utc::now(),
        advance_to: None,
    }
}

#[tokio::test]
async fn twenty_replicas_claiming_one_period_make_one_order() {
    for s in stores(
        mercato_subscriptions::NAME,
        &mercato_subscriptions::MIGRATIONS,
    )
    .await
    {
        let store = SubscriptionsStore::new(s.db.clone(), Outbox::new());
        let (sub, _) = subscribed(&store).await;
        // Every claimer on a pool of its own, as replicas are.
        let other = Db::connect(&s.config).await.expect("second pool");
        let stores = [
            Arc::new(store.clone()),
            Arc::new(SubscriptionsStore::new(other.clone(), Outbox::new())),
        ];
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = stores[i % 2].clone();
            let claim = claim_of(&sub, 1);
            tasks.push(tokio::spawn(async move {
                store.claim(&claim).await.expect("claim")
            }));
        }
        let mut claimed = Vec::new();
        for t in tasks {
            claimed.extend(t.await.expect("task"));
        }
        assert_eq!(claimed.len(), 1, "{:?}: {claimed:?}", s.backend);
        assert_eq!(claimed[0].attempt, 1);
        let stored = store.get(sub.id).await.expect("get").expect("there");
        assert_eq!(stored.view.orders.len(), 2, "{:?}", s.backend);
        let placed = outbox(&s.db)
            .await
            .iter()
            .filter(|e| e.is::<SubscriptionRenewalPlaced>())
            .count();
        assert_eq!(placed, 2, "{:?}: the first order and period 1's", s.backend);
        other.close().await;
    }
}

#[tokio::test]
async fn a_period_is_tried_again_only_after_its_order_failed() {
    for s in stores(
        mercato_subscriptions::NAME,
        &mercato_subscriptions::MIGRATIONS,
    )
    .await
    {
        let store = SubscriptionsStore::new(s.db.clone(), Outbox::new());
        let (sub, first) = subscribed(&store).await;
        // Placing: no second attempt.
        assert!(store
            .claim(&claim_of(&sub, 0))
            .await
            .expect("claim")
            .is_none());
        store
            .settle(first, &Outcome::Pending, &no_delay, None)
            .await
            .expect("pending");
        assert!(store
            .claim(&claim_of(&sub, 0))
            .await
            .expect("claim")
            .is_none());
        store
            .settle(
                first,
                &Outcome::Failed("payment_failed".into()),
                &no_delay,
                None,
            )
            .await
            .expect("failed");
        let stored = store.get(sub.id).await.expect("get").expect("there");
        assert_eq!(stored.view.failed_attempts, 1, "{:?}", s.backend);
        assert_eq!(stored.retry_period, Some(0));
        let second = store
            .claim(&claim_of(&sub, 0))
            .await
            .expect("claim")
            .expect("a second attempt");
        assert_eq!(second.attempt, 2);
        // Settled once: the same outcome again, or a late one, changes nothing.
        store
            .settle(
                first,
                &Outcome::Failed("payment_failed".into()),
                &no_delay,
                None,
            )
            .await
            .expect("again");
        store
            .settle(second.order_id, &Outcome::Confirmed, &no_delay, None)
            .await
            .expect("confirmed");
        store
            .settle(
                second.order_id,
                &Outcome::Failed("customer_cancelled".into()),
                &no_delay,
                None,
            )
            .await
            .expect("late");
        let stored = store.get(sub.id).await.expect("get").expect("there");
        assert_eq!(stored.view.failed_attempts, 0, "{:?}", s.backend);
        assert_eq!(stored.retry_period, None);
        // The confirmed order was cancelled after all: uncounted, and its
        // period has no order any more, so a renewal places one.
        let third = store
            .claim(&claim_of(&sub, 0))
            .await
            .expect("claim")
            .expect("the period is open again");
        assert_eq!(third.attempt, 3, "{:?}", s.backend);
        let stored = store.get(sub.id).await.expect("get").expect("there");
        assert_eq!(stored.view.failed_attempts, 0);
        assert_eq!(stored.view.orders.len(), 3);
    }
}

#[tokio::test]
async fn the_third_failure_makes_a_subscription_past_due_once() {
    for s in stores(
        mercato_subscriptions::NAME,
        &mercato_subscriptions::MIGRATIONS,
    )
    .await
    {
        let store = SubscriptionsStore::new(s.db.clone(), Outbox::new());
        let (sub, first) = subscribed(&store).await;
        let event = Uuid::now_v7();
        let mut order = first;
        for attempt in 1..=3 {
            // Each outcome arrives twice, as a redelivered event does.
            for _ in 0..2 {
                store
                    .settle(
                        order,
                        &Outcome::Failed("payment_failed".into()),
                        &no_delay,
                        Some(("test", if attempt == 1 { event } else { Uuid::now_v7() })),
                    )
                    .await
                    .expect("failed");
            }
            if attempt < 3 {
                order = store
                    .claim(&claim_of(&sub, 0))
                    .await
                    .expect("claim")
                    .expect("next attempt")
                    .order_id;
            }
        }
        let stored = store.get(sub.id).await.expect("get").expect("there");
        assert_eq!(
            stored.view.status,
            SubscriptionStatus::PastDue,
            "{:?}",
            s.backend
        );
        assert_eq!(stored.view.failed_attempts, 3);
        assert_eq!(stored.view.orders.len(), 3);
        let past_due = outbox(&s.db)
            .await
            .iter()
            .filter(|e| e.is::<SubscriptionPastDue>())
            .count();
        assert_eq!(past_due, 1, "{:?}", s.backend);
        // Nothing is due from a past-due subscription.
        let later = time::now() + chrono::Duration::days(30);
        assert!(store.due(&later, 10).await.expect("due").is_empty());
        assert!(store
            .retries_due(&later, 10)
            .await
            .expect("retries")
            .is_empty());
        // Resumed: the failed period is due again, with fresh attempts.
        assert!(store
            .set_status(
                sub.id,
                sub.customer_id,
                &[SubscriptionStatus::PastDue],
                SubscriptionStatus::Active,
            )
            .await
            .expect("resume"));
        let stored = store.get(sub.id).await.expect("get").expect("there");
        assert_eq!(stored.view.failed_attempts, 0);
        assert_eq!(
            store.retries_due(&later, 10).await.expect("retries"),
            vec![sub.id]
        );
    }
}

#[tokio::test]
async fn erasure_cancels_and_forgets_all_but_the_country() {
    for s in stores(
        mercato_subscriptions::NAME,
        &mercato_subscriptions::MIGRATIONS,
    )
    .await
    {
        let store = SubscriptionsStore::new(s.db.clone(), Outbox::new());
        let (sub, _) = subscribed(&store).await;
        assert_eq!(
            store.erase_customer(sub.customer_id).await.expect("erase"),
            1
        );
        let stored = store.get(sub.id).await.expect("get").expect("there");
        assert_eq!(
            stored.view.status,
            SubscriptionStatus::Cancelled,
            "{:?}",
            s.backend
        );
        assert_eq!(stored.payment_token, "");
        assert_eq!(stored.view.shipping_address.name, "erased");
        assert_eq!(stored.view.shipping_address.country, "DE");
    }
}
