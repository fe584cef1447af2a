//! Reviews: verified buyers only, one per product, moderation, votes, and
//! the ratings of products and sellers that published reviews add up to.

use crate::orders::buy;
use crate::support::{Response, TestApp, User};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// A review, once the purchase has reached reviews (it travels by event).
async fn review(app: &TestApp, user: &User, product: &str, body: Value) -> Response {
    let path = format!("/products/{product}/reviews");
    app.eventually("the purchase to count", Duration::from_secs(10), || async {
        let r = app.post(&path, Some(&user.token), body.clone()).await;
        (r.status != StatusCode::FORBIDDEN).then_some(r)
    })
    .await
}

fn written(rating: i64, body: &str) -> Value {
    json!({"rating": rating, "title": "My view", "body": body})
}

/// A confirmed order of a fresh product: (seller, buyer, product id).
async fn bought(app: &TestApp) -> (User, User, String) {
    let (seller, customer, _, order) = buy(app, "tok_visa", 5, 1).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let product = order["items"][0]["product_id"]
        .as_str()
        .expect("product id")
        .to_owned();
    (seller, customer, product)
}

async fn rating(app: &TestApp, product: &str) -> Value {
    app.get(&format!("/products/{product}/rating"), None)
        .await
        .body
}

#[tokio::test]
async fn a_buyer_reviews_once_and_the_ratings_count_it() {
    let app = TestApp::spawn().await;
    let (seller, buyer, product) = bought(&app).await;
    let r = review(&app, &buyer, &product, written(4, "Keeps tea hot")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "published");
    assert_eq!(r.body["rating"], 4);
    assert_eq!(r.body["verified_purchase"], true);
    assert_eq!(r.body["author_name"], "Test User");
    assert_eq!(r.body["product_id"], product.as_str());
    assert_eq!(
        (
            r.body["helpful_votes"].as_i64(),
            r.body["unhelpful_votes"].as_i64()
        ),
        (Some(0), Some(0))
    );
    // One review per customer and product.
    let again = app
        .post(
            &format!("/products/{product}/reviews"),
            Some(&buyer.token),
            written(5, "Again"),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "review_exists");
    let list = app.get(&format!("/products/{product}/reviews"), None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["items"][0]["id"], r.body["id"]);
    assert_eq!(
        rating(&app, &product).await,
        json!({"average": 4.0, "count": 1, "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}})
    );
    // The catalog's product carries it, within 2 s.
    let shown = app
        .eventually(
            "the rating to reach the catalog",
            Duration::from_secs(2),
            || async {
                let p = app.get(&format!("/products/{product}"), None).await;
                (p.body["rating"]["count"] == 1).then_some(p.body)
            },
        )
        .await;
    assert_eq!(shown["rating"], json!({"average": 4.0, "count": 1}));
    let of_seller = app
        .get(&format!("/sellers/{}/rating", seller.id), None)
        .await;
    assert_eq!(of_seller.body, json!({"average": 4.0, "count": 1}));
    // Nobody else reviews it: not a buyer, not a customer, not signed in.
    let stranger = app.register("customer").await;
    let path = format!("/products/{product}/reviews");
    let r = app
        .post(&path, Some(&stranger.token), written(1, "Never had it"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(&path, Some(&seller.token), written(5, "Mine"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.post(&path, None, written(5, "Anyone")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn reviews_are_checked_and_listed_by_rating_and_helpfulness() {
    let app = TestApp::spawn().await;
    let (_, buyer, product) = bought(&app).await;
    let path = format!("/products/{product}/reviews");
    for bad in [
        json!({"rating": 0, "title": "t", "body": "b"}),
        json!({"rating": 6, "title": "t", "body": "b"}),
        json!({"rating": 3.5, "title": "t", "body": "b"}),
        json!({"rating": 3, "title": " ", "body": "b"}),
        json!({"rating": 3, "title": "t"}),
    ] {
        let r = app.post(&path, Some(&buyer.token), bad.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            r.body
        );
    }
    let r = review(&app, &buyer, &product, written(2, "Chipped")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let fives = app.get(&format!("{path}?rating=5"), None).await;
    assert_eq!(fives.body["items"], json!([]));
    let twos = app
        .get(&format!("{path}?rating=2&sort=helpful"), None)
        .await;
    assert_eq!(twos.body["items"].as_array().map(Vec::len), Some(1));
    for (query, code) in [
        ("sort=best", "validation_failed"),
        ("rating=9", "validation_failed"),
    ] {
        let r = app.get(&format!("{path}?{query}"), None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(r.code(), code);
    }
    let unknown = app.get("/products/not-an-id/rating", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn links_wait_for_an_admin_who_publishes_or_rejects() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, buyer, product) = bought(&app).await;
    let r = review(
        &app,
        &buyer,
        &product,
        written(5, "Cheaper at https://elsewhere.test"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    let id = r.body["id"].as_str().expect("id").to_owned();
    // Not shown, not counted.
    let list = app.get(&format!("/products/{product}/reviews"), None).await;
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(rating(&app, &product).await["count"], 0);
    let queue = app
        .get(
            "/admin/reviews?status=pending&limit=100",
            Some(&admin.token),
        )
        .await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(queue.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|r| r["id"] == id.as_str()));
    let not_admin = app.get("/admin/reviews", Some(&buyer.token)).await;
    assert_eq!(not_admin.status, StatusCode::FORBIDDEN);
    let by_buyer = app
        .post(
            &format!("/reviews/{id}/approve"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(by_buyer.status, StatusCode::FORBIDDEN);
    let approved = app
        .post(
            &format!("/reviews/{id}/approve"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    assert_eq!(approved.body["status"], "published");
    assert_eq!(rating(&app, &product).await["count"], 1);
    let rejected = app
        .post(
            &format!("/reviews/{id}/reject"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rating(&app, &product).await["count"], 0);
    let missing = app
        .post(
            "/reviews/01a22d32-05a6-727f-a25c-9a5a0aa17c26/approve",
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_vote_per_person_and_none_for_the_author() {
    let app = TestApp::spawn().await;
    let (_, buyer, product) = bought(&app).await;
    let r = review(&app, &buyer, &product, written(5, "Lovely")).await;
    let id = r.body["id"].as_str().expect("id").to_owned();
    let votes = format!("/reviews/{id}/votes");
    let (a, b) = (
        app.register("customer").await,
        app.register("customer").await,
    );
    let v = app
        .post(&votes, Some(&a.token), json!({"helpful": true}))
        .await;
    assert_eq!(v.status, StatusCode::OK, "{:?}", v.body);
    assert_eq!(v.body["helpful_votes"], 1);
    // Voting again replaces the vote.
    let v = app
        .post(&votes, Some(&a.token), json!({"helpful": false}))
        .await;
    assert_eq!(
        (
            v.body["helpful_votes"].as_i64(),
            v.body["unhelpful_votes"].as_i64()
        ),
        (Some(0), Some(1))
    );
    let v = app
        .post(&votes, Some(&b.token), json!({"helpful": true}))
        .await;
    assert_eq!(
        (
            v.body["helpful_votes"].as_i64(),
            v.body["unhelpful_votes"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let own = app
        .post(&votes, Some(&buyer.token), json!({"helpful": true}))
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    let anonymous = app.post(&votes, None, json!({"helpful": true})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn its_author_or_an_admin_deletes_a_review_and_the_rating_follows() {
    let app = TestApp::spawn().await;
    let (_, buyer, product) = bought(&app).await;
    let r = review(&app, &buyer, &product, written(3, "Fine")).await;
    let id = r.body["id"].as_str().expect("id").to_owned();
    assert_eq!(rating(&app, &product).await["count"], 1);
    let other = app.register("customer").await;
    let denied = app
        .delete(&format!("/reviews/{id}"), Some(&other.token))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let deleted = app
        .delete(&format!("/reviews/{id}"), Some(&buyer.token))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(rating(&app, &product).await["count"], 0);
    let gone = app
        .delete(&format!("/reviews/{id}"), Some(&buyer.token))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    // The review was the only one: the customer may write another.
    let again = review(&app, &buyer, &product, written(4, "Second thoughts")).await;
    assert_eq!(again.status, StatusCode::CREATED);
}

#[tokio::test]
async fn search_results_carry_the_rating_within_two_seconds() {
    use crate::orders::{add_to_cart, checkout, settled};
    use crate::support::unique;

    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let category = unique("rated").to_lowercase();
    let sku = unique("SKU");
    let product = app.create_product(&seller, &category, &[(&sku, 900)]).await;
    let product = product["id"].as_str().expect("id").to_owned();
    let stocked = app
        .put(
            &format!("/inventory/{sku}"),
            Some(&seller.token),
            json!({"quantity": 3}),
        )
        .await;
    assert_eq!(stocked.status, StatusCode::OK);
    let buyer = app.register("customer").await;
    add_to_cart(&app, &buyer, &sku, 1).await;
    let order = checkout(&app, &buyer, "tok_visa", &unique("key")).await;
    let order = settled(&app, &buyer, order.body["id"].as_str().expect("id")).await;
    assert_eq!(order["status"], "confirmed");
    let r = review(&app, &buyer, &product, written(5, "Perfect")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let hit = app
        .eventually(
            "the rating to reach search",
            Duration::from_secs(2),
            || async {
                let found = app.get(&format!("/search?category={category}"), None).await;
                let hit = found.body["items"][0].clone();
                (hit["rating"]["count"] == 1).then_some(hit)
            },
        )
        .await;
    assert_eq!(hit["product_id"], product.as_str());
    assert_eq!(hit["rating"], json!({"average": 5.0, "count": 1}));
}
