use crate::support::{unique, Response, TestApp, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

pub fn address() -> Value {
    json!({"name": "Ada Lovelace", "line1": "1 Analytical Way", "city": "London", "postal_code": "N1 7AA", "country": "GB"})
}

/// A seller with one product of `stock` units at 1500 minor units.
pub async fn stocked_sku(app: &TestApp, stock: i64) -> (User, String) {
    let seller = app.register("seller").await;
    let sku = unique("SKU");
    app.create_product(&seller, "test", &[(&sku, 1500)]).await;
    let r = app
        .put(
            &format!("/inventory/{sku}"),
            Some(&seller.token),
            json!({"quantity": stock}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "set stock: {:?}", r.body);
    (seller, sku)
}

pub async fn add_to_cart(app: &TestApp, customer: &User, sku: &str, quantity: i64) {
    let r = app
        .post(
            "/cart/items",
            Some(&customer.token),
            json!({"sku": sku, "quantity": quantity}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "add to cart: {:?}", r.body);
}

pub async fn checkout(app: &TestApp, customer: &User, token: &str, key: &str) -> Response {
    app.request(
        Method::POST,
        "/checkout",
        Some(&customer.token),
        Some(json!({"payment": {"token": token}, "shipping_address": address()})),
        &[("idempotency-key", key)],
    )
    .await
}

/// Waits until the order leaves `pending` (the contract gives it 5 seconds).
pub async fn settled(app: &TestApp, user: &User, order_id: &str) -> Value {
    app.eventually("the order to settle", Duration::from_secs(5), || async {
        let r = app
            .get(&format!("/orders/{order_id}"), Some(&user.token))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        (r.body["status"] != "pending").then_some(r.body)
    })
    .await
}

pub async fn stock(app: &TestApp, sku: &str) -> (i64, i64) {
    let r = app.get(&format!("/inventory/{sku}"), None).await;
    (
        r.body["available"].as_i64().unwrap_or(-1),
        r.body["reserved"].as_i64().unwrap_or(-1),
    )
}

/// Places an order for `quantity` of a fresh SKU and waits for it to settle.
pub async fn buy(
    app: &TestApp,
    token: &str,
    stock_units: i64,
    quantity: i64,
) -> (User, User, String, Value) {
    let (seller, sku) = stocked_sku(app, stock_units).await;
    let customer = app.register("customer").await;
    add_to_cart(app, &customer, &sku, quantity).await;
    let r = checkout(app, &customer, token, &unique("key")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    let order = settled(app, &customer, r.body["id"].as_str().expect("id")).await;
    (seller, customer, sku, order)
}

#[tokio::test]
async fn a_paid_checkout_is_confirmed_sells_the_stock_and_empties_the_cart() {
    let app = TestApp::spawn().await;
    let (_, customer, sku, order) = buy(&app, "tok_visa", 5, 2).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert!(order["cancel_reason"].is_null());
    assert_eq!(order["customer_id"], customer.id.as_str());
    assert_eq!(order["total"], json!({"amount": 3000, "currency": "EUR"}));
    assert_eq!(
        order["payment"],
        json!({"status": "captured", "amount": {"amount": 3000, "currency": "EUR"}})
    );
    let item = &order["items"][0];
    assert_eq!(
        (item["sku"].as_str(), item["quantity"].as_i64()),
        (Some(sku.as_str()), Some(2))
    );
    assert_eq!(item["unit_price"]["amount"], 1500);
    assert_eq!(item["line_total"]["amount"], 3000);
    assert!(item["product_id"].is_string() && item["title"].is_string());
    assert_eq!(order["shipping_address"], address());
    let history: Vec<&str> = order["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(history, vec!["pending", "confirmed"]);
    assert_eq!(stock(&app, &sku).await, (3, 0));
    // The saga's step after `confirm` empties the cart.
    app.eventually("the cart to be emptied", Duration::from_secs(5), || async {
        let cart = app.get("/cart", Some(&customer.token)).await;
        (cart.body["items"].as_array().map(Vec::len) == Some(0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn declined_cards_cancel_the_order_and_release_the_stock() {
    let app = TestApp::spawn().await;
    for token in ["tok_decline", "tok_insufficient_funds"] {
        let (_, customer, sku, order) = buy(&app, token, 5, 2).await;
        assert_eq!(order["status"], "cancelled", "{token}: {order}");
        assert_eq!(order["cancel_reason"], "payment_failed");
        assert_eq!(order["payment"]["status"], "declined");
        assert_eq!(stock(&app, &sku).await, (5, 0), "{token}");
        let cart = app.get("/cart", Some(&customer.token)).await;
        assert_eq!(
            cart.body["items"].as_array().map(Vec::len),
            Some(1),
            "the cart is kept for another try"
        );
    }
}

#[tokio::test]
async fn a_provider_that_never_answers_cancels_the_order_and_charges_nothing() {
    let app = TestApp::spawn().await;
    let (_, _, sku, order) = buy(&app, "tok_timeout", 5, 1).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], "payment_failed");
    assert_eq!(stock(&app, &sku).await, (5, 0));
    let admin = app.admin().await;
    let payment = app
        .get(
            &format!("/payments/orders/{}", order["id"].as_str().expect("id")),
            Some(&admin.token),
        )
        .await;
    assert_eq!(payment.status, StatusCode::OK, "{:?}", payment.body);
    assert_eq!(payment.body["intent"]["status"], "failed");
    assert_eq!(payment.body["ledger"], json!([]), "nothing captured");
    if let Some(ctx) = &app.contexts {
        assert!(
            ctx.test_provider
                .charges()
                .iter()
                .all(|c| c.status != "captured"),
            "the provider holds no charge"
        );
    }
}

#[tokio::test]
async fn too_little_stock_cancels_with_out_of_stock() {
    let app = TestApp::spawn().await;
    let (_, _, sku, order) = buy(&app, "tok_visa", 1, 2).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], "out_of_stock");
    assert_eq!(order["payment"]["status"], "pending", "never charged");
    assert_eq!(stock(&app, &sku).await, (1, 0));
}

#[tokio::test]
async fn checkout_needs_a_key_a_customer_and_a_cart() {
    let app = TestApp::spawn().await;
    let customer = app.register("customer").await;
    let seller = app.register("seller").await;
    let body = json!({"payment": {"token": "tok_visa"}, "shipping_address": address()});
    let no_key = app
        .post("/checkout", Some(&customer.token), body.clone())
        .await;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_key.code(), "idempotency_key_required");
    let empty = checkout(&app, &customer, "tok_visa", &unique("k")).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(empty.code(), "cart_empty");
    assert_eq!(
        checkout(&app, &seller, "tok_visa", &unique("k"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let anon = app
        .request(
            Method::POST,
            "/checkout",
            None,
            Some(body),
            &[("idempotency-key", "k")],
        )
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);

    let (_, sku) = stocked_sku(&app, 5).await;
    add_to_cart(&app, &customer, &sku, 1).await;
    let bad_address = app
        .request(
            Method::POST,
            "/checkout",
            Some(&customer.token),
            Some(json!({"payment": {"token": "tok_visa"}, "shipping_address": {"name": "A", "line1": "", "city": "C", "postal_code": "1", "country": "GB"}})),
            &[("idempotency-key", "addr")],
        )
        .await;
    assert_eq!(bad_address.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = app
        .request(
            Method::POST,
            "/checkout",
            Some(&customer.token),
            Some(json!({"payment": {}})),
            &[("idempotency-key", "m")],
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn keys_and_addresses_follow_the_documented_rules() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 5).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;
    // 1 to 255 visible ASCII characters: no spaces, nothing longer.
    let long = "k".repeat(256);
    for key in ["two words", "tab\there", long.as_str()] {
        let r = checkout(&app, &customer, "tok_visa", key).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{key:?}: {:?}", r.body);
        assert_eq!(r.code(), "invalid_idempotency_key");
    }
    // Every address field but line2 is 1 to 200 characters as sent, not
    // only white space.
    let with = |field: &str, value: Value| {
        let mut address = address();
        address[field] = value;
        json!({"payment": {"token": "tok_visa"}, "shipping_address": address})
    };
    for body in [
        with("line1", json!(" \t ")),
        with("city", json!(format!(" {} ", "c".repeat(199)))),
        with("line2", json!("l".repeat(201))),
        json!({"payment": {"token": "  "}, "shipping_address": address()}),
    ] {
        let r = app
            .request(
                Method::POST,
                "/checkout",
                Some(&customer.token),
                Some(body.clone()),
                &[("idempotency-key", &unique("addr"))],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.code(), "validation_failed");
    }
    let key = unique("k");
    let key = format!("{key}{}", "~".repeat(255 - key.len()));
    let r = checkout(&app, &customer, "tok_visa", &key).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    // The list's status filter: one of the statuses, or empty for all.
    for (query, status) in [
        ("?status=", StatusCode::OK),
        ("?status=pending", StatusCode::OK),
        ("?status=lost", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = app
            .get(&format!("/orders{query}"), Some(&customer.token))
            .await;
        assert_eq!(r.status, status, "{query}: {:?}", r.body);
    }
}

#[tokio::test]
async fn a_replayed_key_returns_the_same_order_and_another_body_is_409() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 5).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;
    let key = unique("key");
    let first = checkout(&app, &customer, "tok_visa", &key).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = checkout(&app, &customer, "tok_visa", &key).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body, "the stored answer");
    let other = checkout(&app, &customer, "tok_decline", &key).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.code(), "idempotency_key_reused");
    let orders = app.get("/orders", Some(&customer.token)).await;
    assert_eq!(
        orders.body["items"].as_array().map(Vec::len),
        Some(1),
        "one order for one key"
    );
    let order = settled(&app, &customer, first.body["id"].as_str().expect("id")).await;
    assert_eq!(order["status"], "confirmed");
    assert_eq!(stock(&app, &sku).await, (4, 0), "sold once");
}

#[tokio::test]
async fn orders_are_private_to_their_customer_their_sellers_and_admins() {
    let app = TestApp::spawn().await;
    let (seller, customer, _, order) = buy(&app, "tok_visa", 5, 1).await;
    let id = order["id"].as_str().expect("id");
    let path = format!("/orders/{id}");
    let other_customer = app.register("customer").await;
    let other_seller = app.register("seller").await;
    let admin = app.admin().await;
    assert_eq!(
        app.get(&path, Some(&other_customer.token)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&path, Some(&other_seller.token)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&path, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get(&path, Some(&seller.token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&path, Some(&admin.token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/orders/not-an-id", Some(&customer.token))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let mine = app.get("/orders", Some(&customer.token)).await;
    assert_eq!(mine.body["items"][0]["id"], id);
    let theirs = app.get("/orders", Some(&other_customer.token)).await;
    assert_eq!(theirs.body["items"], json!([]));
    let all = app.get("/orders", Some(&admin.token)).await;
    assert!(all.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|o| o["id"] == id));
    // Another customer cannot act on it either.
    let cancel = app
        .post(
            &format!("{path}/cancel"),
            Some(&other_customer.token),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sellers_ship_and_deliver_and_the_lifecycle_is_enforced() {
    let app = TestApp::spawn().await;
    let (seller, customer, _, order) = buy(&app, "tok_visa", 5, 1).await;
    let id = order["id"].as_str().expect("id");
    let other_seller = app.register("seller").await;
    assert_eq!(
        app.post(
            &format!("/orders/{id}/ship"),
            Some(&customer.token),
            json!({})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(
            &format!("/orders/{id}/ship"),
            Some(&other_seller.token),
            json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let early = app
        .post(
            &format!("/orders/{id}/deliver"),
            Some(&seller.token),
            json!({}),
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    let shipped = app
        .post(
            &format!("/orders/{id}/ship"),
            Some(&seller.token),
            json!({}),
        )
        .await;
    assert_eq!(shipped.status, StatusCode::OK, "{:?}", shipped.body);
    assert_eq!(shipped.body["status"], "shipped");
    let late_cancel = app
        .post(
            &format!("/orders/{id}/cancel"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(
        late_cancel.status,
        StatusCode::CONFLICT,
        "no cancelling after shipping"
    );
    let delivered = app
        .post(
            &format!("/orders/{id}/deliver"),
            Some(&seller.token),
            json!({}),
        )
        .await;
    assert_eq!(delivered.body["status"], "delivered");
    let history: Vec<&str> = delivered.body["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(
        history,
        vec!["pending", "confirmed", "shipped", "delivered"]
    );
}

#[tokio::test]
async fn cancelling_gives_stock_and_money_back() {
    let app = TestApp::spawn().await;
    let (_, customer, sku, order) = buy(&app, "tok_visa", 5, 2).await;
    let id = order["id"].as_str().expect("id");
    assert_eq!(stock(&app, &sku).await, (3, 0));
    let r = app
        .post(
            &format!("/orders/{id}/cancel"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["cancel_reason"], "customer_cancelled");
    assert_eq!(r.body["payment"]["status"], "refunded");
    assert_eq!(stock(&app, &sku).await, (5, 0));
    let again = app
        .post(
            &format!("/orders/{id}/cancel"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn admins_refund_once_per_key() {
    let app = TestApp::spawn().await;
    let (_, customer, sku, order) = buy(&app, "tok_visa", 5, 1).await;
    let id = order["id"].as_str().expect("id");
    let admin = app.admin().await;
    let path = format!("/orders/{id}/refund");
    // Keys are scoped per admin, and an external server keeps its admin.
    let (r1, r2) = (unique("r1"), unique("r2"));
    let no_key = app.post(&path, Some(&admin.token), json!({})).await;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST);
    let by_customer = app
        .request(
            Method::POST,
            &path,
            Some(&customer.token),
            None,
            &[("idempotency-key", r1.as_str())],
        )
        .await;
    assert_eq!(by_customer.status, StatusCode::FORBIDDEN);
    let r = app
        .request(
            Method::POST,
            &path,
            Some(&admin.token),
            None,
            &[("idempotency-key", r1.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "refunded");
    assert_eq!(r.body["payment"]["status"], "refunded");
    let replay = app
        .request(
            Method::POST,
            &path,
            Some(&admin.token),
            None,
            &[("idempotency-key", r1.as_str())],
        )
        .await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body["status"], "refunded");
    let other_key = app
        .request(
            Method::POST,
            &path,
            Some(&admin.token),
            None,
            &[("idempotency-key", r2.as_str())],
        )
        .await;
    assert_eq!(other_key.status, StatusCode::CONFLICT);
    assert_eq!(stock(&app, &sku).await, (5, 0));
    let payment = app
        .get(&format!("/payments/orders/{id}"), Some(&admin.token))
        .await;
    let kinds: Vec<i64> = payment.body["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|e| e["amount"]["amount"].as_i64())
        .collect();
    assert_eq!(kinds, vec![1500, -1500], "one capture, one refund");
}

#[tokio::test]
async fn two_hundred_buyers_for_ten_units_make_exactly_ten_orders() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 10).await;
    let mut customers = Vec::new();
    for _ in 0..200 {
        customers.push(app.register("customer").await);
    }
    for c in &customers {
        add_to_cart(&app, c, &sku, 1).await;
    }
    let placed = futures::future::join_all(customers.iter().map(|c| {
        let app = &app;
        async move {
            let r = checkout(app, c, "tok_visa", &unique("flash")).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
            (c, r.body["id"].as_str().expect("id").to_owned())
        }
    }))
    .await;
    let mut confirmed = 0;
    let mut out_of_stock = 0;
    for (customer, id) in &placed {
        let order = app
            .eventually("every order to settle", Duration::from_secs(30), || async {
                let r = app
                    .get(&format!("/orders/{id}"), Some(&customer.token))
                    .await;
                (r.body["status"] != "pending").then_some(r.body)
            })
            .await;
        match (order["status"].as_str(), order["cancel_reason"].as_str()) {
            (Some("confirmed"), _) => confirmed += 1,
            (Some("cancelled"), Some("out_of_stock")) => out_of_stock += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(confirmed, 10);
    assert_eq!(out_of_stock, 190);
    let s = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(
        (s.body["available"].as_i64(), s.body["reserved"].as_i64()),
        (Some(0), Some(0)),
        "{:?}",
        s.body
    );
    let on_hand = s.body["warehouses"][0]["on_hand"].as_i64();
    assert_eq!(on_hand, Some(0), "ten sold out of ten, never below zero");
}

/// Waits until the customer has exactly `count` notifications with `template` for the order.
async fn notified(app: &TestApp, customer: &User, order_id: &str, template: &str) -> Vec<Value> {
    // Generous: against a cluster under the whole suite's load, events
    // cross processes and a dispatcher before a notification is sent.
    app.eventually("the notification", Duration::from_secs(15), || async {
        let r = app.get("/notifications", Some(&customer.token)).await;
        let items: Vec<Value> = r.body["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                n["order_id"] == order_id && n["template"] == template && n["status"] == "sent"
            })
            .collect();
        (!items.is_empty()).then_some(items)
    })
    .await
}

#[tokio::test]
async fn customers_are_told_once_about_confirmation_shipping_and_cancellation() {
    let app = TestApp::spawn().await;
    let (seller, customer, _, order) = buy(&app, "tok_visa", 5, 1).await;
    let id = order["id"].as_str().expect("id");
    let confirmed = notified(&app, &customer, id, "order_confirmed").await;
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0]["channel"], "email");
    assert!(confirmed[0]["subject"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    app.post(
        &format!("/orders/{id}/ship"),
        Some(&seller.token),
        json!({}),
    )
    .await;
    assert_eq!(
        notified(&app, &customer, id, "order_shipped").await.len(),
        1
    );

    let (_, declined_customer, _, declined) = buy(&app, "tok_decline", 5, 1).await;
    let declined_id = declined["id"].as_str().expect("id");
    assert_eq!(
        notified(&app, &declined_customer, declined_id, "order_cancelled")
            .await
            .len(),
        1
    );
    // Still exactly one each a moment later, however often events were delivered.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let all = app.get("/notifications", Some(&customer.token)).await;
    let templates: Vec<&str> = all.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|n| n["template"].as_str())
        .collect();
    assert_eq!(
        templates
            .iter()
            .filter(|t| **t == "order_confirmed")
            .count(),
        1
    );
    assert_eq!(
        templates.iter().filter(|t| **t == "order_shipped").count(),
        1
    );
}

#[tokio::test]
async fn the_same_body_with_other_key_order_and_spacing_is_the_same_request() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 5).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;
    let send = |body: &'static str| {
        app.client
            .post(app.url("/checkout"))
            .bearer_auth(&customer.token)
            .header("content-type", "application/json")
            .header("idempotency-key", "same")
            .body(body)
            .send()
    };
    let first = send(r#"{"payment":{"token":"tok_visa"},"shipping_address":{"name":"A","line1":"L","city":"C","postal_code":"P","country":"GB"}}"#)
        .await
        .expect("sent");
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.expect("json");
    let second = send(r#"{ "shipping_address": {"country":"GB","postal_code":"P","city":"C","line1":"L","name":"A"}, "payment": {"token": "tok_visa"} }"#)
        .await
        .expect("sent");
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let second: Value = second.json().await.expect("json");
    assert_eq!(first["id"], second["id"]);
    let broken = send(r#"{"payment": "#).await.expect("sent");
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
}

/// `GET /orders/{id}?wait=N` answers a pending order once it has settled,
/// in one request instead of polling; at the end of the wait a pending order
/// is answered as it is.
#[tokio::test]
async fn waiting_on_a_pending_order_answers_once_it_settles() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 5).await;
    for (token, settled_as) in [("tok_visa", "confirmed"), ("tok_decline", "cancelled")] {
        let customer = app.register("customer").await;
        add_to_cart(&app, &customer, &sku, 1).await;
        let r = checkout(&app, &customer, token, &unique("key")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        let id = r.body["id"].as_str().expect("id");
        let waited = app
            .get(&format!("/orders/{id}?wait=10"), Some(&customer.token))
            .await;
        assert_eq!(waited.status, StatusCode::OK, "{:?}", waited.body);
        assert_eq!(
            waited.body["status"], settled_as,
            "{token}: {:?}",
            waited.body
        );
        // A settled order is answered at once, and waiting shows nobody else's order.
        let again = app
            .get(&format!("/orders/{id}?wait=10"), Some(&customer.token))
            .await;
        assert_eq!(again.body["status"], settled_as);
        let stranger = app.register("customer").await;
        assert_eq!(
            app.get(&format!("/orders/{id}?wait=10"), Some(&stranger.token))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        for (wait, status) in [
            ("ten", StatusCode::BAD_REQUEST),
            ("1.5", StatusCode::BAD_REQUEST),
            ("-1", StatusCode::UNPROCESSABLE_ENTITY),
            ("21", StatusCode::UNPROCESSABLE_ENTITY),
            ("0", StatusCode::OK),
            ("", StatusCode::OK),
        ] {
            let r = app
                .get(&format!("/orders/{id}?wait={wait}"), Some(&customer.token))
                .await;
            assert_eq!(r.status, status, "wait={wait}: {:?}", r.body);
            if status != StatusCode::OK {
                assert!(r.body["error"]["code"].is_string(), "{:?}", r.body);
            }
        }
    }

    // A provider that does not answer keeps the order pending for seconds:
    // a short wait ends with the order still pending, a long one sees it settle.
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;
    let r = checkout(&app, &customer, "tok_timeout", &unique("key")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id");
    let started = std::time::Instant::now();
    let short = app
        .get(&format!("/orders/{id}?wait=1"), Some(&customer.token))
        .await;
    assert_eq!(short.status, StatusCode::OK);
    assert_eq!(short.body["status"], "pending", "{:?}", short.body);
    assert!(started.elapsed() >= Duration::from_secs(1));
    let long = app
        .get(&format!("/orders/{id}?wait=15"), Some(&customer.token))
        .await;
    assert_eq!(long.body["status"], "cancelled", "{:?}", long.body);
}

/// One cart, one order: while the order placed from a cart is pending, the
/// cart cannot be checked out again under another key (a storefront that
/// makes a new key per click), whether the requests race or follow each
/// other; the same key still replays its answer.
#[tokio::test]
async fn a_cart_with_a_pending_order_cannot_be_checked_out_again() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 50).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;

    let keys: Vec<String> = (0..10).map(|i| format!("click-{i}")).collect();
    let racing = futures::future::join_all(
        keys.iter()
            .map(|key| checkout(&app, &customer, "tok_visa", key)),
    )
    .await;
    let placed: Vec<&Response> = racing
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .collect();
    assert_eq!(
        placed.len(),
        1,
        "{:?}",
        racing.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in racing.iter().filter(|r| r.status != StatusCode::ACCEPTED) {
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
        assert_eq!(r.code(), "checkout_in_progress");
    }
    let order_id = placed[0].body["id"].as_str().expect("id").to_owned();
    let winner = racing
        .iter()
        .position(|r| r.status == StatusCode::ACCEPTED)
        .expect("one placed");

    // Back to back, while it may still be pending: the same key replays,
    // another key is refused or (once settled) finds the cart emptied.
    let replay = checkout(&app, &customer, "tok_visa", &format!("click-{winner}")).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    assert_eq!(replay.body["id"], order_id.as_str());
    let order = settled(&app, &customer, &order_id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    for i in 0..3 {
        let again = checkout(&app, &customer, "tok_visa", &format!("later-{i}")).await;
        assert_eq!(
            again.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            again.body
        );
        assert_eq!(again.code(), "cart_empty");
    }

    // One order, one capture, one unit sold.
    let orders = app.get("/orders", Some(&customer.token)).await;
    assert_eq!(orders.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(stock(&app, &sku).await, (49, 0));
    let admin = app.admin().await;
    let payment = app
        .get(&format!("/payments/orders/{order_id}"), Some(&admin.token))
        .await;
    assert_eq!(
        payment.body["intent"]["status"], "captured",
        "{:?}",
        payment.body
    );
    if let Some(ctx) = &app.contexts {
        let captured = ctx
            .test_provider
            .charges()
            .iter()
            .filter(|c| c.status == "captured")
            .count();
        assert_eq!(captured, 1, "one charge at the provider");
    }
}

/// Requests with the same key get the same stored answer, however they
/// interleave: concurrent refunds of one order with one key all answer with
/// the order refunded and its money back, byte for byte the same.
#[tokio::test]
async fn concurrent_refunds_with_one_key_answer_alike() {
    let app = TestApp::spawn().await;
    let (_, _, _, order) = buy(&app, "tok_visa", 5, 1).await;
    let id = order["id"].as_str().expect("id");
    let admin = app.admin().await;
    let path = format!("/orders/{id}/refund");
    let key = unique("refund");
    let headers = [("idempotency-key", key.as_str())];
    let answers = futures::future::join_all(
        (0..6).map(|_| app.request(Method::POST, &path, Some(&admin.token), None, &headers)),
    )
    .await;
    for r in &answers {
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body, answers[0].body, "every replay answers alike");
    }
    assert_eq!(answers[0].body["status"], "refunded");
    assert_eq!(answers[0].body["payment"]["status"], "refunded");
    let later = app
        .request(
            Method::POST,
            &path,
            Some(&admin.token),
            None,
            &[("idempotency-key", key.as_str())],
        )
        .await;
    assert_eq!(later.body, answers[0].body);
}

#[tokio::test]
async fn a_checkout_ships_to_a_saved_address_by_id_or_the_default() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 10).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;
    let send = |body: Value, key: &str| {
        let (app, token, key) = (&app, customer.token.clone(), key.to_owned());
        async move {
            app.request(
                Method::POST,
                "/checkout",
                Some(&token),
                Some(body),
                &[("idempotency-key", key.as_str())],
            )
            .await
        }
    };
    let token = json!({"token": "tok_visa"});

    let none = send(json!({"payment": token}), &unique("k")).await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "address_required"),
        "no address given and none saved"
    );
    let home = json!({"name": "Ada", "line1": "1 Main St", "city": "London", "postal_code": "N1", "country": "GB"});
    let mut work = home.clone();
    work["line1"] = json!("2 Office Rd");
    let saved_home = app
        .post("/me/addresses", Some(&customer.token), home.clone())
        .await;
    assert_eq!(
        saved_home.status,
        StatusCode::CREATED,
        "{:?}",
        saved_home.body
    );
    let saved_work = app
        .post("/me/addresses", Some(&customer.token), work.clone())
        .await;
    let work_id = saved_work.body["id"].as_str().expect("id").to_owned();

    let unknown = send(
        json!({"payment": token, "shipping_address_id": uuid::Uuid::now_v7().to_string()}),
        &unique("k"),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_address")
    );
    let both = send(
        json!({"payment": token, "shipping_address": home, "shipping_address_id": work_id}),
        &unique("k"),
    )
    .await;
    assert_eq!(
        (both.status, both.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    // Another customer's address is not this one's.
    let other = app.register("customer").await;
    let theirs = app
        .post("/me/addresses", Some(&other.token), work.clone())
        .await;
    let theirs_id = theirs.body["id"].as_str().expect("id");
    let r = send(
        json!({"payment": token, "shipping_address_id": theirs_id}),
        &unique("k"),
    )
    .await;
    assert_eq!(r.code(), "unknown_address");

    // The quote takes the default (home) when neither is given.
    let quote = app
        .post("/checkout/quote", Some(&customer.token), json!({}))
        .await;
    assert_eq!(quote.status, StatusCode::OK, "{:?}", quote.body);

    let placed = send(
        json!({"payment": token, "shipping_address_id": work_id}),
        &unique("k"),
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    assert_eq!(placed.body["shipping_address"], work);
    let order = settled(&app, &customer, placed.body["id"].as_str().expect("id")).await;
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["shipping_address"], work);

    add_to_cart(&app, &customer, &sku, 1).await;
    let by_default = send(json!({"payment": token}), &unique("k")).await;
    assert_eq!(
        by_default.status,
        StatusCode::ACCEPTED,
        "{:?}",
        by_default.body
    );
    assert_eq!(by_default.body["shipping_address"], home);
}
