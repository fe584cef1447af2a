//! The recommendations store: an order counts once however often its event
//! comes, pairs count both ways, nothing archived or without stock is
//! recommended, and an exposure and a conversion count once per subject.
//! On SQLite and PostgreSQL.

use crate::support::stores;
use mercato_contracts::types::{Product, ProductStatus, Rating, Variant};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{time, Currency, Money};
use mercato_recommendations::domain::{Experiment, Variant as Arm};
use mercato_recommendations::store::RecommendationsStore;
use std::collections::BTreeSet;
use uuid::Uuid;

fn product(title: &str, category: &str, sku: &str) -> Product {
    let now = time::now();
    Product {
        id: Uuid::now_v7(),
        seller_id: Uuid::now_v7(),
        title: title.into(),
        description: String::new(),
        category: category.into(),
        category_path: Vec::new(),
        status: ProductStatus::Active,
        variants: vec![Variant {
            sku: sku.into(),
            title: String::new(),
            price: Money::new(900, Currency::parse("EUR").expect("currency")),
            prices: Vec::new(),
            attributes: Default::default(),
        }],
        images: Vec::new(),
        rating: Rating::default(),
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn orders_count_once_and_pairs_both_ways() {
    for s in stores(
        mercato_recommendations::NAME,
        &mercato_recommendations::MIGRATIONS,
    )
    .await
    {
        let store = RecommendationsStore::new(s.db.clone(), Outbox::new());
        let (pot, cups, tray) = (
            product("Teapot", "tea", "POT"),
            product("Cup set", "tea", "CUPS"),
            product("Tray", "home", "TRAY"),
        );
        for (p, sku) in [(&pot, "POT"), (&cups, "CUPS"), (&tray, "TRAY")] {
            store.record_product(p, 1).await.expect("product");
            store.record_stock(sku, 5, 1).await.expect("stock");
        }
        let (customer, event) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..2 {
            store
                .record_order(
                    "test",
                    event,
                    &time::now(),
                    customer,
                    &[(pot.id, 1), (cups.id, 2)],
                )
                .await
                .expect("order");
        }
        let with_pot = store.bought_together(pot.id, 10).await.expect("pairs");
        assert_eq!(with_pot.len(), 1, "{:?}", s.backend);
        assert_eq!((with_pot[0].product_id, with_pot[0].score), (cups.id, 1.0));
        let with_cups = store.bought_together(cups.id, 10).await.expect("pairs");
        assert_eq!(with_cups[0].product_id, pot.id);
        let best = store
            .best_sellers(&BTreeSet::new(), 10)
            .await
            .expect("best");
        assert_eq!(best[0].product_id, cups.id, "2 units beat 1");
        assert_eq!(best[0].score, 2.0);
        // Out of stock, then archived: recommended no more.
        store.record_stock("CUPS", 0, 2).await.expect("sold out");
        store.record_stock("CUPS", 9, 1).await.expect("late, older");
        assert!(
            store
                .bought_together(pot.id, 10)
                .await
                .expect("pairs")
                .is_empty(),
            "{:?}",
            s.backend
        );
        store.archive_product(pot.id, 2).await.expect("archive");
        assert!(store
            .bought_together(cups.id, 10)
            .await
            .expect("pairs")
            .is_empty());
    }
}

#[tokio::test]
async fn exposures_and_conversions_count_once_per_subject() {
    for s in stores(
        mercato_recommendations::NAME,
        &mercato_recommendations::MIGRATIONS,
    )
    .await
    {
        let store = RecommendationsStore::new(s.db.clone(), Outbox::new());
        let experiment = Experiment {
            key: "copy".into(),
            variants: vec![
                Arm {
                    name: "a".into(),
                    weight: 1,
                },
                Arm {
                    name: "b".into(),
                    weight: 1,
                },
            ],
            goal: "order_confirmed".into(),
            created_at: time::now(),
        };
        store
            .create_experiment(&experiment)
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("created");
        assert!(store.create_experiment(&experiment).await.is_err());
        let customer = Uuid::now_v7();
        for _ in 0..3 {
            store
                .expose("copy", &customer.to_string(), "b")
                .await
                .expect("exposed");
        }
        store
            .expose("copy", "session-9", "a")
            .await
            .expect("exposed");
        for event in [Uuid::now_v7(), Uuid::now_v7()] {
            store
                .record_order(
                    "test",
                    event,
                    &time::now(),
                    customer,
                    &[(Uuid::now_v7(), 1)],
                )
                .await
                .expect("order");
        }
        let results = store.results(&experiment).await.expect("results");
        let counts: Vec<(i64, i64)> = results
            .iter()
            .map(|v| (v.exposures, v.conversions))
            .collect();
        assert_eq!(counts, [(1, 0), (1, 1)], "{:?}", s.backend);
        assert_eq!(results[1].conversion_rate, 1.0);
    }
}

#[tokio::test]
async fn an_erasure_forgets_what_a_customer_bought_and_looked_at() {
    for s in stores(
        mercato_recommendations::NAME,
        &mercato_recommendations::MIGRATIONS,
    )
    .await
    {
        let store = RecommendationsStore::new(s.db.clone(), Outbox::new());
        let (pot, cups) = (
            product("Teapot", "tea", "POT"),
            product("Cup set", "tea", "CUPS"),
        );
        for (p, sku) in [(&pot, "POT"), (&cups, "CUPS")] {
            store.record_product(p, 1).await.expect("product");
            store.record_stock(sku, 5, 1).await.expect("stock");
        }
        let buyer = Uuid::now_v7();
        store
            .record_order(
                "recommendations",
                Uuid::now_v7(),
                &time::now(),
                buyer,
                &[(pot.id, 1), (cups.id, 1)],
            )
            .await
            .expect("order");
        let visitor = Uuid::now_v7();
        store
            .record_interest(visitor, pot.id, &time::now())
            .await
            .expect("interest");
        let for_visitor = store.for_customer(visitor, 10).await.expect("recs");
        assert_eq!(
            for_visitor.iter().map(|r| r.product_id).collect::<Vec<_>>(),
            [cups.id]
        );
        store.erase(visitor).await.expect("erase");
        // A view that comes after the erasure is not kept.
        store
            .record_interest(visitor, pot.id, &time::now())
            .await
            .expect("late interest");
        assert!(store
            .for_customer(visitor, 10)
            .await
            .expect("recs")
            .is_empty());
        let left: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rec_viewed")
            .fetch_one(s.db.pool())
            .await
            .expect("count");
        assert_eq!(left.0, 0);
    }
}
