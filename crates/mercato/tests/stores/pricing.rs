//! The pricing store: a promotion is never redeemed past its limits,
//! however many redemptions race; a redemption and its release happen once
//! per order; a release that comes first refuses the redemption that
//! follows it. On SQLite and PostgreSQL.

use crate::support::stores;
use mercato_contracts::events::{PromotionRedeemed, PromotionReleased};
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::Envelope;
use mercato_pricing::domain::{PromotionRules, TaxRate};
use mercato_pricing::store::{PricingStore, Redemption, SaveError};
use std::sync::Arc;
use uuid::Uuid;

fn rules(code: &str, usage_limit: Option<i64>, per_customer: Option<i64>) -> PromotionRules {
    PromotionRules {
        usage_limit,
        per_customer_limit: per_customer,
        ..PromotionRules::percentage(code, 10)
    }
}

async fn outbox(db: &Db) -> Vec<Envelope> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT envelope FROM outbox ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .expect("outbox read");
    rows.iter()
        .map(|(json,)| serde_json::from_str(json).expect("envelope"))
        .collect()
}

async fn created(store: &PricingStore, r: &PromotionRules) -> mercato_pricing::domain::Promotion {
    store
        .create_promotion(r)
        .await
        .map_err(|e| format!("{e:?}"))
        .expect("promotion")
}

#[tokio::test]
async fn thirty_racing_redemptions_of_a_code_limited_to_five_redeem_five() {
    for s in stores(mercato_pricing::NAME, &mercato_pricing::MIGRATIONS).await {
        let store = Arc::new(PricingStore::new(s.db.clone(), Outbox::new()));
        let promo = created(&store, &rules("RACE5", Some(5), None)).await;
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .redeem(Uuid::now_v7(), Uuid::now_v7(), promo.id)
                    .await
                    .expect("redeem")
            }));
        }
        let mut redeemed = 0;
        for t in tasks {
            if t.await.expect("task") == Redemption::Redeemed {
                redeemed += 1;
            }
        }
        assert_eq!(redeemed, 5, "{:?}", s.backend);
        let after = store
            .promotion(promo.id)
            .await
            .expect("read")
            .expect("there");
        assert_eq!(after.times_used, 5, "{:?}", s.backend);
        let events = outbox(&s.db).await;
        assert_eq!(
            events
                .iter()
                .filter(|e| e.is::<PromotionRedeemed>())
                .count(),
            5,
            "{:?}: one event per redemption",
            s.backend
        );
    }
}

#[tokio::test]
async fn one_customer_racing_for_a_code_gets_its_limit_and_no_more() {
    for s in stores(mercato_pricing::NAME, &mercato_pricing::MIGRATIONS).await {
        let store = Arc::new(PricingStore::new(s.db.clone(), Outbox::new()));
        let promo = created(&store, &rules("ONCE", None, Some(2))).await;
        let customer = Uuid::now_v7();
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .redeem(Uuid::now_v7(), customer, promo.id)
                    .await
                    .expect("redeem")
            }));
        }
        let mut redeemed = 0;
        for t in tasks {
            if t.await.expect("task") == Redemption::Redeemed {
                redeemed += 1;
            }
        }
        assert_eq!(redeemed, 2, "{:?}", s.backend);
        assert_eq!(
            store.customer_uses(promo.id, customer).await.expect("uses"),
            2
        );
        // Another customer is not held back by this one's uses.
        assert_eq!(
            store
                .redeem(Uuid::now_v7(), Uuid::now_v7(), promo.id)
                .await
                .expect("redeem"),
            Redemption::Redeemed
        );
    }
}

#[tokio::test]
async fn a_redemption_and_its_release_happen_once_per_order() {
    for s in stores(mercato_pricing::NAME, &mercato_pricing::MIGRATIONS).await {
        let store = PricingStore::new(s.db.clone(), Outbox::new());
        let promo = created(&store, &rules("TWICE", Some(1), Some(1))).await;
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            assert_eq!(
                store
                    .redeem(order, customer, promo.id)
                    .await
                    .expect("redeem"),
                Redemption::Redeemed,
                "{:?}: a repeat answers the first outcome",
                s.backend
            );
        }
        let used = |store: &PricingStore| {
            let store = store.clone();
            async move {
                store
                    .promotion(promo.id)
                    .await
                    .expect("read")
                    .expect("there")
                    .times_used
            }
        };
        assert_eq!(used(&store).await, 1);
        // Used up: another order is refused, and stays refused.
        let other = Uuid::now_v7();
        assert_eq!(
            store
                .redeem(other, Uuid::now_v7(), promo.id)
                .await
                .expect("redeem"),
            Redemption::Refused
        );

        assert!(store.release(order).await.expect("release"));
        assert!(!store.release(order).await.expect("release again"));
        assert_eq!(used(&store).await, 0, "{:?}", s.backend);
        assert_eq!(
            store.customer_uses(promo.id, customer).await.expect("uses"),
            0
        );
        assert_eq!(
            store.redemption(order).await.expect("read"),
            Redemption::Released
        );
        // The refused order stays refused even though a use is free now.
        assert_eq!(
            store
                .redeem(other, Uuid::now_v7(), promo.id)
                .await
                .expect("redeem"),
            Redemption::Refused
        );
        let events = outbox(&s.db).await;
        assert_eq!(
            events
                .iter()
                .filter(|e| e.is::<PromotionRedeemed>())
                .count(),
            1
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| e.is::<PromotionReleased>())
                .count(),
            1
        );
    }
}

/// A saga that gave up on a redemption whose answer it never saw releases
/// it; the redemption, arriving late, must not take a use that nobody will
/// give back.
#[tokio::test]
async fn a_release_that_comes_first_refuses_the_late_redemption() {
    for s in stores(mercato_pricing::NAME, &mercato_pricing::MIGRATIONS).await {
        let store = PricingStore::new(s.db.clone(), Outbox::new());
        let promo = created(&store, &rules("LATE", Some(3), None)).await;
        let order = Uuid::now_v7();
        assert!(!store.release(order).await.expect("release"));
        assert_eq!(
            store
                .redeem(order, Uuid::now_v7(), promo.id)
                .await
                .expect("redeem"),
            Redemption::Released,
            "{:?}",
            s.backend
        );
        let p = store
            .promotion(promo.id)
            .await
            .expect("read")
            .expect("there");
        assert_eq!(p.times_used, 0);
    }
}

#[tokio::test]
async fn disabled_and_expired_codes_are_not_redeemed() {
    for s in stores(mercato_pricing::NAME, &mercato_pricing::MIGRATIONS).await {
        let store = PricingStore::new(s.db.clone(), Outbox::new());
        let mut off = rules("OFF", None, None);
        off.active = false;
        let off = created(&store, &off).await;
        let mut past = rules("PAST", None, None);
        past.ends_at = Some(mercato_kernel::time::now() - chrono::Duration::minutes(1));
        let past = created(&store, &past).await;
        for id in [off.id, past.id] {
            assert_eq!(
                store
                    .redeem(Uuid::now_v7(), Uuid::now_v7(), id)
                    .await
                    .expect("redeem"),
                Redemption::Refused,
                "{:?}",
                s.backend
            );
        }
    }
}

#[tokio::test]
async fn codes_are_unique_without_regard_to_case_and_rates_replace_each_other() {
    for s in stores(mercato_pricing::NAME, &mercato_pricing::MIGRATIONS).await {
        let store = PricingStore::new(s.db.clone(), Outbox::new());
        let first = created(&store, &rules("Spring", None, None)).await;
        assert!(matches!(
            store.create_promotion(&rules("SPRING", None, None)).await,
            Err(SaveError::CodeTaken)
        ));
        let found = store
            .promotion_by_code(" spring ")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(found.id, first.id);

        let rate = |bps| TaxRate {
            country: "DE".into(),
            rate_bps: bps,
            name: "VAT".into(),
        };
        store.put_tax_rate(&rate(1600)).await.expect("put");
        store.put_tax_rate(&rate(1900)).await.expect("put again");
        assert_eq!(store.tax_rates().await.expect("rates"), vec![rate(1900)]);
        assert!(store.delete_tax_rate("DE").await.expect("delete"));
        assert!(store.tax_rate("DE").await.expect("read").is_none());
    }
}
