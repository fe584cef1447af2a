//! The analytics store: an event kept twice counts once, a seller's reports
//! hold their products only (and their share of a refund), and an erasure
//! leaves nothing that says who did what. On SQLite and PostgreSQL.

use crate::support::stores;
use mercato_analytics::domain::Range;
use mercato_analytics::store::{AnalyticsStore, InteractionRow};
use mercato_contracts::interactions::Visitor;
use mercato_contracts::types::Line;
use mercato_kernel::{time, Currency, Money};
use uuid::Uuid;

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").expect("currency"))
}

fn line(sku: &str, product_id: Uuid, quantity: i64, unit: i64) -> Line {
    Line {
        sku: sku.into(),
        product_id,
        title: format!("Product {sku}"),
        quantity,
        unit_price: eur(unit),
        line_total: eur(unit * quantity),
    }
}

fn today() -> Range {
    let now = time::now();
    Range::parse(None, None, now + chrono::Duration::seconds(1)).expect("range")
}

#[tokio::test]
async fn events_count_once_and_sellers_see_their_own() {
    for s in stores(mercato_analytics::NAME, &mercato_analytics::MIGRATIONS).await {
        let store = AnalyticsStore::new(s.db.clone());
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let (mug, pot) = (Uuid::now_v7(), Uuid::now_v7());
        store.record_product(mug, ann, "Mug", 1).await.expect("mug");
        store.record_product(pot, bob, "Pot", 1).await.expect("pot");
        // An older version changes nothing.
        store.record_product(mug, bob, "Old", 0).await.expect("old");
        let view = InteractionRow {
            event_id: Uuid::now_v7(),
            kind: "product_viewed",
            at: time::now(),
            product_id: Some(mug),
            ..InteractionRow::default()
        };
        for _ in 0..2 {
            store.record_interaction(&view).await.expect("view");
        }
        let order = Uuid::now_v7();
        let lines = [line("MUG", mug, 2, 500), line("POT", pot, 1, 3000)];
        let now = time::now();
        // Placed, then confirmed twice (a redelivery): one order.
        store
            .record_order(order, &now, false, &eur(4000), &lines)
            .await
            .expect("placed");
        for _ in 0..2 {
            store
                .record_order(order, &now, true, &eur(4000), &lines)
                .await
                .expect("confirmed");
        }
        let refund = Uuid::now_v7();
        for _ in 0..2 {
            store
                .record_refund(refund, order, &now, &eur(2000))
                .await
                .expect("refund");
        }
        let range = today();
        let (views, _, _, confirmed) = store.funnel(&range, None).await.expect("funnel");
        assert_eq!((views, confirmed), (1, 1), "{:?}", s.backend);
        assert_eq!(
            store.funnel(&range, Some(bob)).await.expect("bob's"),
            (0, 0, 0, 1),
            "{:?}",
            s.backend
        );
        let shop = store.sales_by_day(&range, None).await.expect("sales");
        assert_eq!(shop.len(), 1, "{:?}", s.backend);
        assert_eq!(
            (shop[0].2, shop[0].3, shop[0].4),
            (1, 3, 4000),
            "{:?}",
            s.backend
        );
        let anns = store.sales_by_day(&range, Some(ann)).await.expect("ann's");
        assert_eq!(
            (anns[0].2, anns[0].3, anns[0].4),
            (1, 2, 1000),
            "{:?}",
            s.backend
        );
        // Half the order's money back: a quarter of it is Ann's (1,000 of 4,000).
        let refunds = store
            .refunds_by_day(&range, Some(ann))
            .await
            .expect("refunds");
        assert_eq!(refunds.len(), 1, "{:?}", s.backend);
        assert_eq!(refunds[0].2, 500, "{:?}", s.backend);
        let all = store.refunds_by_day(&range, None).await.expect("refunds");
        assert_eq!(all[0].2, 2000, "{:?}", s.backend);
        let top = store.top_products(&range, None, 10).await.expect("top");
        assert_eq!(top[0].0, mug.to_string(), "{:?}", s.backend);
        assert_eq!(top[0].1, "Mug", "{:?}", s.backend);
        let bobs = store
            .top_products(&range, Some(bob), 10)
            .await
            .expect("top");
        assert_eq!(bobs.len(), 1, "{:?}", s.backend);
        assert_eq!(bobs[0].0, pot.to_string(), "{:?}", s.backend);
    }
}

#[tokio::test]
async fn searches_group_by_their_words() {
    for s in stores(mercato_analytics::NAME, &mercato_analytics::MIGRATIONS).await {
        let store = AnalyticsStore::new(s.db.clone());
        for (query, results) in [("blue mug", 0), ("blue mug", 0), ("teapot", 4)] {
            let row = InteractionRow {
                event_id: Uuid::now_v7(),
                kind: "searched",
                at: time::now(),
                query: Some(query.into()),
                results: Some(results),
                ..InteractionRow::default()
            };
            store.record_interaction(&row).await.expect("search");
        }
        let range = today();
        let all = store.search_terms(&range, false, 10).await.expect("terms");
        let terms: Vec<(&str, i64, i64)> = all
            .iter()
            .map(|t| (t.query.as_str(), t.searches, t.results))
            .collect();
        assert_eq!(
            terms,
            [("blue mug", 2, 0), ("teapot", 1, 4)],
            "{:?}",
            s.backend
        );
        let zero = store.search_terms(&range, true, 10).await.expect("zero");
        assert_eq!(zero.len(), 1, "{:?}", s.backend);
        assert_eq!(zero[0].query, "blue mug", "{:?}", s.backend);
    }
}

#[tokio::test]
async fn an_erasure_forgets_the_person_and_their_sessions() {
    for s in stores(mercato_analytics::NAME, &mercato_analytics::MIGRATIONS).await {
        let store = AnalyticsStore::new(s.db.clone());
        let (gone, kept) = (Uuid::now_v7(), Uuid::now_v7());
        let rows = [
            (Some(gone), Some("s-gone")),
            // Before signing in, in the same session.
            (None, Some("s-gone")),
            (Some(kept), Some("s-kept")),
        ];
        for (customer_id, session) in rows {
            let row = InteractionRow {
                event_id: Uuid::now_v7(),
                kind: "product_viewed",
                at: time::now(),
                visitor: Visitor {
                    customer_id,
                    session_id: session.map(str::to_owned),
                },
                product_id: Some(Uuid::now_v7()),
                ..InteractionRow::default()
            };
            store.record_interaction(&row).await.expect("view");
        }
        store.erase(gone).await.expect("erase");
        // What comes of them after the erasure is kept without them.
        let late = InteractionRow {
            event_id: Uuid::now_v7(),
            kind: "product_viewed",
            at: time::now(),
            visitor: Visitor {
                customer_id: Some(gone),
                session_id: Some("s-late".into()),
            },
            product_id: Some(Uuid::now_v7()),
            ..InteractionRow::default()
        };
        store.record_interaction(&late).await.expect("late view");
        let left: Vec<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT customer_id, session_id FROM an_interactions ORDER BY event_id")
                .fetch_all(s.db.pool())
                .await
                .expect("rows");
        assert_eq!(
            left,
            [
                (None, None),
                (None, None),
                (Some(kept.to_string()), Some("s-kept".into())),
                (None, None),
            ],
            "{:?}",
            s.backend
        );
        // The views still count.
        let (views, ..) = store.funnel(&today(), None).await.expect("funnel");
        assert_eq!(views, 4, "{:?}", s.backend);
    }
}
