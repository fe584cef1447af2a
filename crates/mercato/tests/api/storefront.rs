//! `GET /storefront/products/{id}`: a product page's data in one answer.

use crate::orders::{add_to_cart, checkout, settled};
use crate::support::{unique, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_product_page_holds_the_product_its_stock_rating_reviews_and_recommendations() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let (pot_sku, cup_sku) = (unique("POT"), unique("CUP"));
    let mut ids = Vec::new();
    for (sku, title) in [(&pot_sku, "Teapot"), (&cup_sku, "Cup")] {
        let r = app
            .post(
                "/products",
                Some(&seller.token),
                json!({"title": title, "description": "For tests", "category": unique("tea"),
                       "variants": [{"sku": sku, "price": {"amount": 1500, "currency": "EUR"}}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        ids.push(r.body["id"].as_str().expect("id").to_owned());
        let s = app
            .put(
                &format!("/inventory/{sku}"),
                Some(&seller.token),
                json!({"quantity": 7}),
            )
            .await;
        assert_eq!(s.status, StatusCode::OK);
    }
    let (pot, cup) = (&ids[0], &ids[1]);

    let page = app.get(&format!("/storefront/products/{pot}"), None).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    assert_eq!(page.body["product"]["id"], pot.as_str());
    assert_eq!(
        page.body["stock"],
        json!({"available": 7, "skus": [{"sku": pot_sku, "available": 7}]})
    );
    assert_eq!(page.body["rating"]["count"], 0);
    assert_eq!(page.body["reviews"], json!([]));
    assert!(page.body["recommendations"].is_array(), "{}", page.body);

    // Bought together, then reviewed.
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &pot_sku, 1).await;
    add_to_cart(&app, &customer, &cup_sku, 1).await;
    let r = checkout(&app, &customer, "tok_visa", &unique("key")).await;
    let order = settled(&app, &customer, r.body["id"].as_str().expect("id")).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    app.eventually("the review to be taken", Duration::from_secs(5), || async {
        let r = app
            .post(
                &format!("/products/{pot}/reviews"),
                Some(&customer.token),
                json!({"rating": 4, "title": "Pours well", "body": "No drips."}),
            )
            .await;
        (r.status == StatusCode::CREATED).then_some(())
    })
    .await;
    let page = app
        .eventually("the page to show both", Duration::from_secs(5), || async {
            let r = app.get(&format!("/storefront/products/{pot}"), None).await;
            assert_eq!(r.status, StatusCode::OK);
            let recommended = r.body["recommendations"]
                .as_array()
                .is_some_and(|items| items.iter().any(|i| i["product_id"] == cup.as_str()));
            (r.body["rating"]["count"] == 1 && recommended).then_some(r.body)
        })
        .await;
    assert_eq!(page["stock"]["available"], 6);
    assert_eq!(page["reviews"][0]["title"], "Pours well");
    assert!(page["recommendations"]
        .as_array()
        .is_some_and(|r| r.len() <= 4));
    assert!(page["reviews"].as_array().is_some_and(|r| r.len() <= 3));

    for missing in [uuid::Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        let r = app
            .get(&format!("/storefront/products/{missing}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.code(), "not_found");
    }
}
