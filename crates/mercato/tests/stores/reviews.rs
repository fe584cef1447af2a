//! The reviews store: racing reviews and votes lose none, ratings move with
//! every publication and withdrawal, and purchases are recorded once per
//! event. On SQLite and PostgreSQL.

use crate::support::stores;
use mercato_contracts::events::RatingChanged;
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{time, Envelope};
use mercato_reviews::domain::{Review, ReviewStatus};
use mercato_reviews::store::{ReviewsStore, Stored};
use std::sync::Arc;
use uuid::Uuid;

fn stored(product: Uuid, seller: Uuid, rating: i64, status: ReviewStatus) -> Stored {
    Stored {
        review: Review {
            id: Uuid::now_v7(),
            product_id: product,
            author_name: "Ada".into(),
            rating,
            title: "t".into(),
            body: "b".into(),
            status,
            verified_purchase: true,
            helpful_votes: 0,
            unhelpful_votes: 0,
            created_at: time::now(),
        },
        author_id: Uuid::now_v7(),
        seller_id: Some(seller),
    }
}

async fn rating_events(db: &Db) -> Vec<RatingChanged> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT envelope FROM outbox ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .expect("outbox read");
    rows.iter()
        .map(|(json,)| serde_json::from_str::<Envelope>(json).expect("envelope"))
        .filter(|e| e.is::<RatingChanged>())
        .map(|e| e.decode().expect("rating.changed"))
        .collect()
}

#[tokio::test]
async fn twenty_racing_reviews_all_count_and_each_change_is_told_in_order() {
    for s in stores(mercato_reviews::NAME, &mercato_reviews::MIGRATIONS).await {
        let store = Arc::new(ReviewsStore::new(s.db.clone(), Outbox::new()));
        let (product, seller) = (Uuid::now_v7(), Uuid::now_v7());
        store
            .record_product(product, seller, 1)
            .await
            .expect("seller known");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            let review = stored(product, seller, i % 5 + 1, ReviewStatus::Published);
            tasks.push(tokio::spawn(async move {
                store.create(&review).await.map_err(|e| format!("{e:?}"))
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("created");
        }
        let rating = store.product_rating(product).await.expect("rating");
        assert_eq!(rating.count, 20, "{:?}", s.backend);
        assert_eq!(rating.average, 3.0);
        assert!(rating.distribution.values().all(|n| *n == 4), "{rating:?}");
        let of_seller = store.seller_rating(seller).await.expect("seller");
        assert_eq!((of_seller.average, of_seller.count), (3.0, 20));
        let mut versions: Vec<i64> = rating_events(&s.db)
            .await
            .iter()
            .map(|e| e.version)
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=20).collect::<Vec<_>>(), "{:?}", s.backend);
    }
}

#[tokio::test]
async fn racing_votes_are_all_counted_and_a_second_vote_replaces_the_first() {
    for s in stores(mercato_reviews::NAME, &mercato_reviews::MIGRATIONS).await {
        let store = Arc::new(ReviewsStore::new(s.db.clone(), Outbox::new()));
        let review = stored(Uuid::now_v7(), Uuid::now_v7(), 4, ReviewStatus::Published);
        store.create(&review).await.expect("created");
        let id = review.review.id;
        let voters: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
        let mut tasks = Vec::new();
        for (i, voter) in voters.iter().enumerate() {
            let (store, voter) = (store.clone(), *voter);
            tasks.push(tokio::spawn(async move {
                store.vote(id, voter, i % 4 != 0).await.expect("vote")
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let after = store.get(id).await.expect("get").expect("there").review;
        assert_eq!(
            (after.helpful_votes, after.unhelpful_votes),
            (15, 5),
            "{:?}",
            s.backend
        );
        let changed = store
            .vote(id, voters[0], true)
            .await
            .expect("again")
            .expect("there");
        assert_eq!((changed.helpful_votes, changed.unhelpful_votes), (16, 4));
    }
}

#[tokio::test]
async fn ratings_follow_publication_rejection_and_deletion() {
    for s in stores(mercato_reviews::NAME, &mercato_reviews::MIGRATIONS).await {
        let store = ReviewsStore::new(s.db.clone(), Outbox::new());
        let (product, seller) = (Uuid::now_v7(), Uuid::now_v7());
        let held = stored(product, seller, 2, ReviewStatus::Pending);
        let shown = stored(product, seller, 4, ReviewStatus::Published);
        store.create(&held).await.expect("held");
        store.create(&shown).await.expect("shown");
        assert_eq!(store.product_rating(product).await.expect("r").count, 1);
        let approved = store
            .set_status(
                held.review.id,
                &[ReviewStatus::Pending],
                ReviewStatus::Published,
            )
            .await
            .expect("approve");
        assert!(approved.is_some());
        let r = store.product_rating(product).await.expect("r");
        assert_eq!((r.count, r.average), (2, 3.0), "{:?}", s.backend);
        // Approving twice: the second finds it published and changes nothing.
        let twice = store
            .set_status(
                held.review.id,
                &[ReviewStatus::Pending],
                ReviewStatus::Published,
            )
            .await
            .expect("again");
        assert!(twice.is_none());
        assert_eq!(store.product_rating(product).await.expect("r").count, 2);
        store
            .set_status(
                shown.review.id,
                &[ReviewStatus::Published],
                ReviewStatus::Rejected,
            )
            .await
            .expect("reject");
        assert!(store.delete(held.review.id).await.expect("delete"));
        assert!(!store.delete(held.review.id).await.expect("gone"));
        let r = store.product_rating(product).await.expect("r");
        assert_eq!((r.count, r.average), (0, 0.0), "{:?}", s.backend);
        assert_eq!(store.seller_rating(seller).await.expect("s").count, 0);
        let last = rating_events(&s.db).await.pop().expect("told");
        assert_eq!((last.count, last.version), (0, 4));
    }
}

#[tokio::test]
async fn purchases_count_once_and_end_with_their_order() {
    for s in stores(mercato_reviews::NAME, &mercato_reviews::MIGRATIONS).await {
        let store = ReviewsStore::new(s.db.clone(), Outbox::new());
        let (customer, product, order, event) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        assert!(!store.bought(customer, product).await.expect("bought"));
        for _ in 0..2 {
            store
                .record_purchase("test", event, order, customer, &[product])
                .await
                .expect("purchase");
        }
        assert!(store.bought(customer, product).await.expect("bought"));
        store.withdraw_purchase(order).await.expect("withdraw");
        assert!(
            !store.bought(customer, product).await.expect("bought"),
            "{:?}",
            s.backend
        );
        // A withdrawal that arrives before the confirmation holds.
        let (late, later_event) = (Uuid::now_v7(), Uuid::now_v7());
        store.withdraw_purchase(late).await.expect("withdraw first");
        store
            .record_purchase("test", later_event, late, customer, &[product])
            .await
            .expect("late confirmation");
        assert!(
            !store.bought(customer, product).await.expect("bought"),
            "{:?}",
            s.backend
        );
        // An erased author's name does not come back with a late event.
        store.record_author(customer, "Ada").await.expect("named");
        store.erase_author(customer).await.expect("erased");
        store
            .record_author(customer, "Ada")
            .await
            .expect("late event");
        assert_eq!(store.author_name(customer).await.expect("name"), None);
        // Who sells it: the newest version wins.
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        store.record_product(product, a, 2).await.expect("v2");
        store.record_product(product, b, 1).await.expect("v1 late");
        assert_eq!(store.seller_of(product).await.expect("seller"), Some(a));
    }
}
