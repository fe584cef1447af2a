//! Recommendations from confirmed orders and the catalog, and experiments
//! with sticky assignments and counted conversions.

use crate::orders::{add_to_cart, checkout, settled};
use crate::support::{unique, TestApp, User};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// A product of one SKU with `stock` units, in `category`.
async fn stocked(
    app: &TestApp,
    seller: &User,
    title: &str,
    category: &str,
    stock: i64,
) -> (String, String) {
    let sku = unique("SKU");
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": title, "description": "For tests", "category": category,
                   "variants": [{"sku": sku, "price": {"amount": 1200, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    if stock > 0 {
        let s = app
            .put(
                &format!("/inventory/{sku}"),
                Some(&seller.token),
                json!({"quantity": stock}),
            )
            .await;
        assert_eq!(s.status, StatusCode::OK);
    }
    (r.body["id"].as_str().expect("id").to_owned(), sku)
}

/// A confirmed order of one unit of each SKU.
async fn buy(app: &TestApp, customer: &User, skus: &[&str]) {
    for sku in skus {
        add_to_cart(app, customer, sku, 1).await;
    }
    let r = checkout(app, customer, "tok_visa", &unique("key")).await;
    let order = settled(app, customer, r.body["id"].as_str().expect("id")).await;
    assert_eq!(order["status"], "confirmed", "{order}");
}

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["product_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn products_bought_together_are_recommended_with_each_other() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let category = unique("tea");
    let (pot, pot_sku) = stocked(&app, &seller, "Teapot", &category, 10).await;
    let (cups, cups_sku) = stocked(&app, &seller, "Cup set", &category, 10).await;
    let (tray, _) = stocked(&app, &seller, "Serving tray", &unique("other"), 10).await;
    let first = app.register("customer").await;
    buy(&app, &first, &[&pot_sku, &cups_sku]).await;
    // Within 5 s of the confirmation.
    let with_pot = app
        .eventually("the pair to be known", Duration::from_secs(5), || async {
            let r = app
                .get(&format!("/products/{pot}/recommendations"), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            (r.body["items"][0]["reason"] == "bought_together").then_some(r.body)
        })
        .await;
    assert_eq!(with_pot["items"][0]["product_id"], cups.as_str());
    assert_eq!(with_pot["items"][0]["title"], "Cup set");
    assert_eq!(
        with_pot["items"][0]["price"],
        json!({"amount": 1200, "currency": "EUR"})
    );
    assert!(!ids(&with_pot).contains(&pot), "never itself");
    assert!(!ids(&with_pot).contains(&tray), "nothing unrelated");
    // A customer who bought the pot alone is shown the cups, and never
    // what they bought.
    let second = app.register("customer").await;
    buy(&app, &second, &[&pot_sku]).await;
    let mine = app
        .eventually("the purchase to count", Duration::from_secs(5), || async {
            let r = app
                .get("/recommendations?limit=50", Some(&second.token))
                .await;
            (r.body["items"][0]["product_id"] == cups.as_str()).then_some(r.body)
        })
        .await;
    assert_eq!(mine["items"][0]["reason"], "bought_together");
    assert!(!ids(&mine).contains(&pot));
    // Anybody else: the best sellers, the pot among them.
    let anyone = app.get("/recommendations?limit=50", None).await;
    assert!(ids(&anyone.body).contains(&pot), "{:?}", anyone.body);
    // Archived: recommended no more.
    let archived = app
        .delete(&format!("/products/{cups}"), Some(&seller.token))
        .await;
    assert!(archived.status.is_success(), "{:?}", archived.body);
    // The archive travels as an event, then a cached answer (2 s) expires;
    // the contract bounds only a confirmed order (5 s), so this allows 10 s.
    app.eventually("the archive to count", Duration::from_secs(10), || async {
        let r = app
            .get(&format!("/products/{pot}/recommendations"), None)
            .await;
        (!ids(&r.body).contains(&cups)).then_some(())
    })
    .await;
    for (query, status) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=x", StatusCode::BAD_REQUEST),
        ("limit=500", StatusCode::OK),
    ] {
        let r = app.get(&format!("/recommendations?{query}"), None).await;
        assert_eq!(r.status, status, "{query}");
    }
}

#[tokio::test]
async fn products_alike_are_recommended_when_they_have_stock() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let category = unique("mugs");
    let (blue, _) = stocked(&app, &seller, "Blue ceramic mug", &category, 5).await;
    let (red, _) = stocked(&app, &seller, "Red ceramic mug", &category, 5).await;
    let (gone, _) = stocked(&app, &seller, "Green ceramic mug", &category, 0).await;
    let similar = app
        .eventually(
            "the catalog to be known",
            Duration::from_secs(5),
            || async {
                let r = app
                    .get(&format!("/products/{blue}/recommendations"), None)
                    .await;
                (ids(&r.body).contains(&red)).then_some(r.body)
            },
        )
        .await;
    assert_eq!(similar["items"][0]["reason"], "similar");
    assert_eq!(similar["items"][0]["score"], 0.5);
    assert!(!ids(&similar).contains(&gone), "nothing out of stock");
    assert!(!ids(&similar).contains(&blue));
}

#[tokio::test]
async fn experiments_assign_for_good_and_count_conversions() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let key = unique("exp").to_lowercase();
    let body = json!({"key": key, "variants": [{"name": "control", "weight": 1}, {"name": "bold", "weight": 1}]});
    let created = app
        .post("/admin/experiments", Some(&admin.token), body.clone())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["goal"], "order_confirmed");
    let again = app
        .post("/admin/experiments", Some(&admin.token), body)
        .await;
    assert_eq!(again.code(), "experiment_exists");
    // Listed for admins (other tests' experiments may be there too).
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get(
                &format!("/admin/experiments?limit=50&cursor={cursor}"),
                Some(&admin.token),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        listed.extend(page.body["items"].as_array().cloned().unwrap_or_default());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let ours = listed
        .iter()
        .find(|e| e["key"] == key.as_str())
        .expect("listed");
    assert_eq!(ours["variants"][1]["name"], "bold");
    let customer = app.register("customer").await;
    let not_admin = app
        .post(
            "/admin/experiments",
            Some(&customer.token),
            json!({"key": "x", "variants": []}),
        )
        .await;
    assert_eq!(not_admin.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/admin/experiments", Some(&customer.token))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let path = format!("/experiments/{key}/assignment");
    let a = app.get(&format!("{path}?subject=session-1"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    for _ in 0..3 {
        assert_eq!(
            app.get(&format!("{path}?subject=session-1"), None)
                .await
                .body,
            a.body
        );
    }
    assert_eq!(app.get(&path, None).await.code(), "subject_required");
    assert_eq!(
        app.get("/experiments/no-such-experiment/assignment?subject=s", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let mine = app.get(&path, Some(&customer.token)).await;
    let variant = mine.body["variant"].as_str().expect("variant").to_owned();
    // The customer's confirmed order is a conversion of their variant.
    let seller = app.register("seller").await;
    let (_, sku) = stocked(&app, &seller, "Kettle", &unique("k"), 3).await;
    buy(&app, &customer, &[&sku]).await;
    let results = app
        .eventually(
            "the conversion to count",
            Duration::from_secs(5),
            || async {
                let r = app
                    .get(&format!("/admin/experiments/{key}"), Some(&admin.token))
                    .await;
                let converted: i64 = r.body["variants"]
                    .as_array()
                    .expect("variants")
                    .iter()
                    .map(|v| v["conversions"].as_i64().unwrap_or(0))
                    .sum();
                (converted == 1).then_some(r.body)
            },
        )
        .await;
    let arms = results["variants"].as_array().expect("variants");
    let exposures: i64 = arms
        .iter()
        .map(|v| v["exposures"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(exposures, 2, "{results}");
    let converted = arms.iter().find(|v| v["conversions"] == 1).expect("an arm");
    assert_eq!(converted["name"], variant.as_str());
    let arm_exposures = converted["exposures"].as_f64().expect("exposures");
    assert_eq!(converted["conversion_rate"], 1.0 / arm_exposures);
    assert!(results.get("p_value").is_some());
}

/// A signed-in customer's product views are their history too: what was
/// bought with what they looked at is recommended to them.
#[tokio::test]
async fn what_goes_with_what_a_customer_looked_at_is_recommended_to_them() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let category = unique("garden");
    let (hose, hose_sku) = stocked(&app, &seller, "Garden hose", &category, 10).await;
    let (reel, reel_sku) = stocked(&app, &seller, "Hose reel", &unique("other"), 10).await;
    let buyer = app.register("customer").await;
    buy(&app, &buyer, &[&hose_sku, &reel_sku]).await;
    let visitor = app.register("customer").await;
    let looked = app
        .get(&format!("/products/{hose}"), Some(&visitor.token))
        .await;
    assert_eq!(looked.status, StatusCode::OK);
    app.eventually(
        "the reel among the visitor's recommendations",
        Duration::from_secs(5),
        || async {
            let r = app
                .get("/recommendations?limit=50", Some(&visitor.token))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.body["items"]
                .as_array()
                .and_then(|items| {
                    items.iter().find(|i| {
                        i["product_id"] == reel.as_str() && i["reason"] == "bought_together"
                    })
                })
                .map(|_| ())
        },
    )
    .await;
}
