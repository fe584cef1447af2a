//! Promotions, shipping methods, tax rates and the totals of carts, quotes
//! and orders, through the public API.
//!
//! Promotions and tax rates are made per test (unique codes; tax rates in
//! ISO 3166-1 codes that no country has, `XA` to `XZ`, one per test), so
//! these tests also run against a shared cluster. Shipping methods change
//! what every checkout of the shop pays, so the tests that add them run on
//! a server of their own (embedded mode); the distributed suite
//! (`tests/distributed.rs`) checks them on a private cluster.

use crate::orders::{add_to_cart, settled, stocked_sku};
use crate::support::{unique, Response, TestApp, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

fn eur(amount: i64) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

fn address_in(country: &str) -> Value {
    json!({"name": "Ada Lovelace", "line1": "1 Analytical Way", "city": "London",
           "postal_code": "N1 7AA", "country": country})
}

async fn create_promotion(app: &TestApp, admin: &User, body: Value) -> Value {
    let r = app.post("/promotions", Some(&admin.token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

async fn apply(app: &TestApp, customer: &User, code: &str) -> Response {
    app.post(
        "/cart/promotions",
        Some(&customer.token),
        json!({"code": code}),
    )
    .await
}

async fn checkout_to(app: &TestApp, customer: &User, body: Value) -> Response {
    app.request(
        Method::POST,
        "/checkout",
        Some(&customer.token),
        Some(body),
        &[("idempotency-key", &unique("key"))],
    )
    .await
}

fn amount(v: &Value) -> i64 {
    v["amount"].as_i64().unwrap_or(i64::MIN)
}

/// `total = subtotal - discount_total + shipping_total + tax_total`.
fn adds_up(v: &Value) {
    assert_eq!(
        amount(&v["total"]),
        amount(&v["subtotal"]) - amount(&v["discount_total"])
            + amount(&v["shipping_total"])
            + amount(&v["tax_total"]),
        "{v}"
    );
}

#[tokio::test]
async fn only_admins_manage_promotions_and_codes_are_unique_without_case() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = app.register("customer").await;
    let seller = app.register("seller").await;
    let code = unique("Spring");
    let body = json!({"code": code, "kind": "percentage", "value": 10});
    assert_eq!(
        app.post("/promotions", None, body.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    for who in [&customer, &seller] {
        let r = app
            .post("/promotions", Some(&who.token), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        let r = app.get("/promotions", Some(&who.token)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let promo = create_promotion(&app, &admin, body).await;
    assert_eq!(promo["code"], code.as_str());
    assert_eq!(promo["kind"], "percentage");
    assert_eq!(promo["value"], 10);
    assert_eq!(promo["times_used"], 0);
    assert_eq!(promo["active"], true);
    assert_eq!(promo["description"], "10% off");
    assert!(promo["created_at"].is_string());

    let again = app
        .post(
            "/promotions",
            Some(&admin.token),
            json!({"code": code.to_uppercase(), "kind": "free_shipping"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);
    assert_eq!(again.body["error"]["code"], "code_taken");

    let id = promo["id"].as_str().expect("id");
    let one = app
        .get(&format!("/promotions/{id}"), Some(&admin.token))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body, promo);
    let list = app.get("/promotions?limit=100", Some(&admin.token)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body["items"].as_array().is_some_and(|a| !a.is_empty()));
    let missing = app
        .get(
            &format!("/promotions/{}", uuid::Uuid::now_v7()),
            Some(&admin.token),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let changed = app
        .patch(
            &format!("/promotions/{id}"),
            Some(&admin.token),
            json!({"value": 25, "usage_limit": 3, "active": false}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["value"], 25);
    assert_eq!(changed.body["usage_limit"], 3);
    assert_eq!(changed.body["active"], false);
    let cleared = app
        .patch(
            &format!("/promotions/{id}"),
            Some(&admin.token),
            json!({"usage_limit": null}),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{:?}", cleared.body);
    assert_eq!(cleared.body["usage_limit"], Value::Null);
    assert_eq!(cleared.body["value"], 25, "the rest stays");
}

#[tokio::test]
async fn promotion_rules_are_checked() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // Each field out of its rules, and rules that contradict each other.
    for (body, code) in [
        (
            json!({"code": "has space", "kind": "percentage", "value": 10}),
            "validation_failed",
        ),
        (
            json!({"code": unique("P"), "kind": "percentage", "value": 101}),
            "validation_failed",
        ),
        (
            json!({"code": unique("P"), "kind": "fixed_amount", "amount": eur(0)}),
            "validation_failed",
        ),
        (
            json!({"code": unique("P"), "kind": "percentage", "value": 5, "usage_limit": 0}),
            "validation_failed",
        ),
        (
            json!({"code": unique("P"), "kind": "percentage", "value": 5, "starts_at": "2030-02-30T00:00:00Z"}),
            "validation_failed",
        ),
        (
            json!({"code": unique("P"), "kind": "percentage"}),
            "invalid_promotion",
        ),
        (
            json!({"code": unique("P"), "kind": "fixed_amount"}),
            "invalid_promotion",
        ),
        (
            json!({"code": unique("P"), "kind": "free_shipping", "value": 5}),
            "invalid_promotion",
        ),
        (
            json!({"code": unique("P"), "kind": "fixed_amount", "amount": eur(5), "amounts": [eur(6)]}),
            "invalid_promotion",
        ),
        (
            json!({"code": unique("P"), "kind": "percentage", "value": 5,
                "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}),
            "invalid_promotion",
        ),
    ] {
        let r = app
            .post("/promotions", Some(&admin.token), body.clone())
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.body["error"]["code"], code, "{body}");
    }
    let r = app
        .post(
            "/promotions",
            Some(&admin.token),
            json!({"code": unique("P"), "kind": "bogus"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
}

#[tokio::test]
async fn a_code_discounts_the_cart_the_quote_and_the_order_alike() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, sku) = stocked_sku(&app, 10).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 2).await;
    let code = unique("TEN");
    let promo = create_promotion(
        &app,
        &admin,
        json!({"code": code, "kind": "percentage", "value": 10, "min_subtotal": eur(2000)}),
    )
    .await;

    let unknown = apply(&app, &customer, "NO-SUCH-CODE").await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.body["error"]["code"], "promotion_not_applicable");

    let cart = apply(&app, &customer, &code.to_lowercase()).await;
    assert_eq!(cart.status, StatusCode::OK, "{:?}", cart.body);
    let cart = cart.body;
    assert_eq!(cart["subtotal"], eur(3000));
    assert_eq!(cart["discount_total"], eur(300));
    assert_eq!(cart["total"], eur(2700));
    assert_eq!(cart["promotion_code"], code.as_str());
    assert_eq!(
        cart["discounts"],
        json!([{"code": code, "description": "10% off", "amount": eur(300)}])
    );
    adds_up(&cart);
    assert_eq!(app.get("/cart", Some(&customer.token)).await.body, cart);

    // Tax of a country of this test only.
    let country = "XA";
    let r = app
        .put(
            &format!("/tax-rates/{}", country.to_lowercase()),
            Some(&admin.token),
            json!({"rate_bps": 2000, "name": "Test VAT"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"country": "XA", "rate_bps": 2000, "name": "Test VAT"})
    );

    let quote = app
        .post(
            "/checkout/quote",
            Some(&customer.token),
            json!({"shipping_address": address_in(country)}),
        )
        .await;
    assert_eq!(quote.status, StatusCode::OK, "{:?}", quote.body);
    let quote = quote.body;
    assert_eq!(quote["discount_total"], eur(300));
    assert_eq!(quote["tax_total"], eur(540), "20 % of 27.00");
    assert_eq!(
        quote["tax_lines"],
        json!([{"name": "Test VAT", "rate_bps": 2000, "amount": eur(540)}])
    );
    assert_eq!(quote["total"], eur(3240));
    adds_up(&quote);

    let r = checkout_to(
        &app,
        &customer,
        json!({"payment": {"token": "tok_visa"}, "shipping_address": address_in(country)}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    for field in [
        "subtotal",
        "discount_total",
        "shipping_total",
        "tax_total",
        "total",
        "currency",
        "discounts",
        "tax_lines",
        "shipping_method",
    ] {
        assert_eq!(
            r.body[field], quote[field],
            "{field}: the quote is what checkout charges"
        );
    }
    assert_eq!(r.body["payment"]["amount"], eur(3240));
    assert_eq!(r.body["refunded_total"], eur(0));
    let id = r.body["id"].as_str().expect("id").to_owned();
    let order = settled(&app, &customer, &id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"], eur(3240));

    // Charged exactly the discounted total with tax.
    let pay = app
        .get(&format!("/payments/orders/{id}"), Some(&admin.token))
        .await;
    assert_eq!(pay.body["intent"]["amount"], eur(3240), "{:?}", pay.body);
    assert_eq!(pay.body["intent"]["status"], "captured");

    let promo = app
        .get(
            &format!("/promotions/{}", promo["id"].as_str().expect("id")),
            Some(&admin.token),
        )
        .await;
    assert_eq!(promo.body["times_used"], 1);
    // The code went with the order.
    let cart = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(cart.body["promotion_code"], Value::Null);
}

#[tokio::test]
async fn codes_that_cannot_apply_are_refused_and_can_be_removed() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, sku) = stocked_sku(&app, 10).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;
    let refused = |body: Value| {
        let app = &app;
        let admin = &admin;
        let customer = &customer;
        async move {
            let code = body["code"].as_str().expect("code").to_owned();
            create_promotion(app, admin, body).await;
            let r = apply(app, customer, &code).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{code}: {:?}",
                r.body
            );
            assert_eq!(r.body["error"]["code"], "promotion_not_applicable");
        }
    };
    refused(json!({"code": unique("OFF"), "kind": "percentage", "value": 5, "active": false}))
        .await;
    refused(
        json!({"code": unique("MIN"), "kind": "percentage", "value": 5, "min_subtotal": eur(1501)}),
    )
    .await;
    refused(json!({"code": unique("CAT"), "kind": "percentage", "value": 5, "categories": ["not-this-one"]})).await;
    refused(json!({"code": unique("USD"), "kind": "fixed_amount",
                   "amount": {"amount": 100, "currency": "USD"}}))
    .await;
    refused(
        json!({"code": unique("LATER"), "kind": "percentage", "value": 5,
                   "starts_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    refused(
        json!({"code": unique("GONE"), "kind": "percentage", "value": 5,
                   "ends_at": "2001-01-01T00:00:00Z"}),
    )
    .await;

    // A fixed amount is at most what it applies to.
    let code = unique("BIG");
    create_promotion(
        &app,
        &admin,
        json!({"code": code, "kind": "fixed_amount", "amount": eur(9999)}),
    )
    .await;
    let cart = apply(&app, &customer, &code).await;
    assert_eq!(cart.status, StatusCode::OK, "{:?}", cart.body);
    assert_eq!(cart.body["discount_total"], eur(1500));
    assert_eq!(cart.body["total"], eur(0));

    // One code at a time: another replaces it; removing it ends the discount.
    let other = unique("FIVE");
    create_promotion(
        &app,
        &admin,
        json!({"code": other, "kind": "fixed_amount", "amount": eur(500)}),
    )
    .await;
    let cart = apply(&app, &customer, &other).await;
    assert_eq!(cart.body["promotion_code"], other.as_str());
    assert_eq!(cart.body["discount_total"], eur(500));
    let cart = app
        .delete(
            &format!("/cart/promotions/{}", other.to_lowercase()),
            Some(&customer.token),
        )
        .await;
    assert_eq!(cart.status, StatusCode::OK, "{:?}", cart.body);
    assert_eq!(cart.body["promotion_code"], Value::Null);
    assert_eq!(cart.body["discount_total"], eur(0));
    assert_eq!(cart.body["total"], eur(1500));

    // A code disabled while on the cart: the cart shows why, checkout refuses.
    let code = unique("LATE");
    let promo = create_promotion(
        &app,
        &admin,
        json!({"code": code, "kind": "percentage", "value": 50}),
    )
    .await;
    assert_eq!(apply(&app, &customer, &code).await.status, StatusCode::OK);
    let r = app
        .patch(
            &format!("/promotions/{}", promo["id"].as_str().expect("id")),
            Some(&admin.token),
            json!({"active": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cart = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(cart.body["promotion_code"], code.as_str());
    assert_eq!(cart.body["discounts"], json!([]));
    assert!(cart.body["promotion_note"].is_string(), "{:?}", cart.body);
    let r = checkout_to(
        &app,
        &customer,
        json!({"payment": {"token": "tok_visa"}, "shipping_address": address_in("GB")}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "promotion_not_applicable");

    // Only customers have carts.
    let seller = app.register("seller").await;
    let r = apply(&app, &seller, &code).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// The headline: 30 customers race for a code limited to 5. Exactly 5
/// orders are confirmed with the discount; the others are refused at
/// checkout or cancelled with `promotion_unavailable`, with nothing charged.
#[tokio::test]
async fn thirty_customers_racing_for_five_uses_get_exactly_five() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, sku) = stocked_sku(&app, 100).await;
    let code = unique("RACE");
    let promo = create_promotion(
        &app,
        &admin,
        json!({"code": code, "kind": "fixed_amount", "amount": eur(500), "usage_limit": 5}),
    )
    .await;
    let mut customers = Vec::new();
    for _ in 0..30 {
        let c = app.register("customer").await;
        add_to_cart(&app, &c, &sku, 1).await;
        let r = apply(&app, &c, &code).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["total"], eur(1000));
        customers.push(c);
    }
    let placed = futures::future::join_all(customers.iter().map(|c| {
        let app = &app;
        async move {
            let r = checkout_to(
                app,
                c,
                json!({"payment": {"token": "tok_visa"}, "shipping_address": address_in("GB")}),
            )
            .await;
            (c, r)
        }
    }))
    .await;
    let (mut confirmed, mut unavailable, mut refused) = (0, 0, 0);
    for (customer, r) in placed {
        match r.status {
            StatusCode::ACCEPTED => {
                assert_eq!(r.body["total"], eur(1000), "placed with the discount");
                let id = r.body["id"].as_str().expect("id");
                let order = app
                    .eventually("the order to settle", Duration::from_secs(30), || async {
                        let r = app
                            .get(&format!("/orders/{id}"), Some(&customer.token))
                            .await;
                        (r.body["status"] != "pending").then_some(r.body)
                    })
                    .await;
                match (order["status"].as_str(), order["cancel_reason"].as_str()) {
                    (Some("confirmed"), _) => {
                        assert_eq!(order["discount_total"], eur(500));
                        assert_eq!(order["payment"]["status"], "captured");
                        confirmed += 1;
                    }
                    (Some("cancelled"), Some("promotion_unavailable")) => {
                        assert_ne!(order["payment"]["status"], "captured", "{order}");
                        let pay = app
                            .get(&format!("/payments/orders/{id}"), Some(&admin.token))
                            .await;
                        assert_eq!(
                            pay.status,
                            StatusCode::NOT_FOUND,
                            "nothing charged: {:?}",
                            pay.body
                        );
                        unavailable += 1;
                    }
                    other => panic!("unexpected outcome {other:?}: {order}"),
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(r.body["error"]["code"], "promotion_not_applicable");
                refused += 1;
            }
            other => panic!("checkout answered {other}: {:?}", r.body),
        }
    }
    assert_eq!(confirmed, 5, "{unavailable} cancelled, {refused} refused");
    assert_eq!(confirmed + unavailable + refused, 30);
    let promo = app
        .get(
            &format!("/promotions/{}", promo["id"].as_str().expect("id")),
            Some(&admin.token),
        )
        .await;
    assert_eq!(promo.body["times_used"], 5);
    // The stock of the cancelled ones came back.
    let stock = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(stock.body["available"], 95, "{:?}", stock.body);
    assert_eq!(stock.body["reserved"], 0);
}

/// A customer limited to one use gets it once; a cancelled order gives the
/// use back, a refunded one does not.
#[tokio::test]
async fn a_per_customer_limit_holds_and_a_cancellation_gives_the_use_back() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, sku) = stocked_sku(&app, 20).await;
    let code = unique("ONCE");
    let promo = create_promotion(
        &app,
        &admin,
        json!({"code": code, "kind": "percentage", "value": 20, "per_customer_limit": 1}),
    )
    .await;
    let promo_url = format!("/promotions/{}", promo["id"].as_str().expect("id"));
    let customer = app.register("customer").await;
    let buy = || async {
        add_to_cart(&app, &customer, &sku, 1).await;
        let r = apply(&app, &customer, &code).await;
        if r.status != StatusCode::OK {
            return Err((r.status, r.body));
        }
        let r = checkout_to(
            &app,
            &customer,
            json!({"payment": {"token": "tok_visa"}, "shipping_address": address_in("GB")}),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        let order = settled(&app, &customer, r.body["id"].as_str().expect("id")).await;
        assert_eq!(order["status"], "confirmed", "{order}");
        assert_eq!(
            amount(&order["discount_total"]),
            amount(&order["subtotal"]) / 5
        );
        Ok(order)
    };
    let first = buy().await.expect("the first use");
    let (status, body) = buy().await.expect_err("used up for this customer");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "promotion_not_applicable");
    // Another customer still can.
    let other = app.register("customer").await;
    add_to_cart(&app, &other, &sku, 1).await;
    assert_eq!(apply(&app, &other, &code).await.status, StatusCode::OK);

    let id = first["id"].as_str().expect("id");
    let r = app
        .post(
            &format!("/orders/{id}/cancel"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    app.eventually("the use to come back", Duration::from_secs(10), || async {
        let p = app.get(&promo_url, Some(&admin.token)).await;
        (p.body["times_used"] == 0).then_some(())
    })
    .await;
    let again = buy()
        .await
        .expect("the use came back with the cancellation");

    // A refund keeps the use.
    let id = again["id"].as_str().expect("id");
    let r = app
        .request(
            Method::POST,
            &format!("/orders/{id}/refund"),
            Some(&admin.token),
            None,
            &[("idempotency-key", &unique("refund"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["refunded_total"], r.body["total"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = app.get(&promo_url, Some(&admin.token)).await;
    assert_eq!(p.body["times_used"], 1, "{:?}", p.body);
}

#[tokio::test]
async fn tax_rates_are_per_country_and_only_admins_set_them() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = app.register("customer").await;
    let r = app
        .put(
            "/tax-rates/XB",
            Some(&customer.token),
            json!({"rate_bps": 100}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (path, body) in [
        ("/tax-rates/XB", json!({"rate_bps": 10001})),
        ("/tax-rates/XB", json!({"rate_bps": -1})),
        ("/tax-rates/XBB", json!({"rate_bps": 100})),
    ] {
        let r = app.put(path, Some(&admin.token), body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {:?}",
            r.body
        );
    }
    let r = app
        .put(
            "/tax-rates/xb",
            Some(&admin.token),
            json!({"rate_bps": 700}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"country": "XB", "rate_bps": 700, "name": "Tax"})
    );
    let all = app.get("/tax-rates", None).await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.body["items"]
        .as_array()
        .is_some_and(|a| a.contains(&r.body)));

    let (_, sku) = stocked_sku(&app, 5).await;
    add_to_cart(&app, &customer, &sku, 1).await;
    let quote = |country: &'static str| {
        let app = &app;
        let customer = &customer;
        async move {
            app.post(
                "/checkout/quote",
                Some(&customer.token),
                json!({"shipping_address": address_in(country)}),
            )
            .await
        }
    };
    let taxed = quote("XB").await;
    assert_eq!(taxed.status, StatusCode::OK, "{:?}", taxed.body);
    assert_eq!(taxed.body["tax_total"], eur(105), "7 % of 15.00");
    adds_up(&taxed.body);
    let untaxed = quote("XC").await;
    assert_eq!(untaxed.body["tax_total"], eur(0), "no rate, no tax");
    assert_eq!(untaxed.body["tax_lines"], json!([]));

    let r = app.delete("/tax-rates/XB", Some(&admin.token)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.delete("/tax-rates/XB", Some(&admin.token)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(quote("XB").await.body["tax_total"], eur(0));
}

#[tokio::test]
async fn a_quote_needs_a_customer_a_cart_and_an_address() {
    let app = TestApp::spawn().await;
    let customer = app.register("customer").await;
    let seller = app.register("seller").await;
    let body = json!({"shipping_address": address_in("GB")});
    let r = app.post("/checkout/quote", None, body.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .post("/checkout/quote", Some(&seller.token), body.clone())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post("/checkout/quote", Some(&customer.token), body.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"]["code"], "cart_empty");
    let r = app
        .post(
            "/checkout/quote",
            Some(&customer.token),
            json!({"shipping_address": {"name": "", "line1": "x", "city": "y", "postal_code": "z", "country": "GB"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Shipping methods change what every checkout pays: a server of its own.
#[tokio::test]
async fn shipping_is_the_cheapest_method_for_the_country_or_the_one_chosen() {
    let app = TestApp::spawn().await;
    if app.contexts.is_none() {
        return; // a shared server: see tests/distributed.rs
    }
    let admin = app.admin().await;
    let customer = app.register("customer").await;
    let (_, sku) = stocked_sku(&app, 20).await;
    add_to_cart(&app, &customer, &sku, 2).await;

    // No method yet: free shipping, as in v1.
    let q = app
        .post(
            "/checkout/quote",
            Some(&customer.token),
            json!({"shipping_address": address_in("DE")}),
        )
        .await;
    assert_eq!(q.body["shipping_total"], eur(0));
    assert_eq!(q.body["shipping_method"], Value::Null);

    let method = |body: Value| {
        let app = &app;
        let admin = &admin;
        async move {
            let r = app
                .post("/shipping-methods", Some(&admin.token), body)
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            r.body
        }
    };
    let r = app
        .post(
            "/shipping-methods",
            Some(&customer.token),
            json!({"name": "X", "price": eur(1)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            "/shipping-methods",
            Some(&admin.token),
            json!({"name": "X", "price": eur(1), "countries": ["Germany"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let standard = method(json!({"name": "Standard", "price": eur(495), "countries": ["de", "AT"], "free_over": eur(5000)})).await;
    assert_eq!(standard["countries"], json!(["DE", "AT"]));
    let express = method(json!({"name": "Express", "price": eur(1295)})).await;

    let listed = app.get("/shipping-methods?country=at", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(2));
    let fr = app.get("/shipping-methods?country=FR", None).await;
    assert_eq!(fr.body["items"], json!([express]));
    let bad = app.get("/shipping-methods?country=France", None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let quote = |country: &'static str, method: Option<&Value>| {
        let app = &app;
        let customer = &customer;
        let mut body = json!({"shipping_address": address_in(country)});
        if let Some(m) = method {
            body["shipping_method"] = m["id"].clone();
        }
        async move {
            app.post("/checkout/quote", Some(&customer.token), body)
                .await
        }
    };
    let de = quote("DE", None).await;
    assert_eq!(de.status, StatusCode::OK, "{:?}", de.body);
    assert_eq!(de.body["shipping_total"], eur(495), "the cheapest");
    assert_eq!(de.body["shipping_method"]["name"], "Standard");
    assert_eq!(de.body["total"], eur(3495));
    adds_up(&de.body);
    let chosen = quote("DE", Some(&express)).await;
    assert_eq!(chosen.body["shipping_total"], eur(1295));
    let fr = quote("FR", None).await;
    assert_eq!(fr.body["shipping_method"]["name"], "Express");
    let wrong = quote("FR", Some(&standard)).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong.body["error"]["code"], "shipping_unavailable");

    // Free over 50.00.
    add_to_cart(&app, &customer, &sku, 2).await;
    let free = quote("DE", None).await;
    assert_eq!(free.body["subtotal"], eur(6000));
    assert_eq!(free.body["shipping_total"], eur(0));

    // A free_shipping code waives the rest.
    let code = unique("SHIP");
    create_promotion(&app, &admin, json!({"code": code, "kind": "free_shipping"})).await;
    let cart = apply(&app, &customer, &code).await;
    assert_eq!(cart.status, StatusCode::OK, "{:?}", cart.body);
    let waived = quote("FR", None).await;
    assert_eq!(waived.body["shipping_total"], eur(0));
    assert_eq!(waived.body["discount_total"], eur(0));
    assert_eq!(waived.body["total"], eur(6000));

    // Only Express ships everywhere; once it is gone, nobody ships to FR.
    let r = app
        .delete(
            &format!("/shipping-methods/{}", express["id"].as_str().expect("id")),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let none = checkout_to(
        &app,
        &customer,
        json!({"payment": {"token": "tok_visa"}, "shipping_address": address_in("FR")}),
    )
    .await;
    assert_eq!(
        none.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        none.body
    );
    assert_eq!(none.body["error"]["code"], "shipping_unavailable");

    // Checkout to DE charges what the quote says, method included.
    let q = quote("DE", Some(&standard)).await;
    let r = checkout_to(
        &app,
        &customer,
        json!({"payment": {"token": "tok_visa"}, "shipping_address": address_in("DE"),
               "shipping_method": standard["id"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["total"], q.body["total"]);
    assert_eq!(r.body["shipping_method"], q.body["shipping_method"]);
}

/// A cart in another currency the shop sells in: lines, promotions and
/// shipping priced in it, and the order and its payment in it.
#[tokio::test]
async fn a_cart_in_another_currency_is_priced_ordered_and_paid_in_it() {
    let app = TestApp::spawn_with(|s| s.shop.currencies = vec!["EUR".into(), "USD".into()]).await;
    let admin = app.admin().await;
    let seller = app.register("seller").await;
    let usd = |amount: i64| json!({"amount": amount, "currency": "USD"});
    let (both, eur_only) = (unique("BOTH"), unique("EURO"));
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": "Mug", "category": "cups", "variants": [
                {"sku": both, "price": eur(1000), "prices": [usd(1100)]},
                {"sku": eur_only, "price": eur(500)}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["variants"][0]["prices"], json!([usd(1100)]));
    for sku in [&both, &eur_only] {
        let r = app
            .put(
                &format!("/inventory/{sku}"),
                Some(&seller.token),
                json!({"quantity": 10}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let twice = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": "Mug", "category": "cups", "variants": [
                {"sku": unique("TWICE"), "price": eur(1000), "prices": [usd(1), usd(2)]}]}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(twice.body["error"]["code"], "duplicate_currency");

    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &both, 2).await;
    let set = |currency: &'static str| {
        let app = &app;
        let customer = &customer;
        async move {
            app.put(
                "/cart/currency",
                Some(&customer.token),
                json!({"currency": currency}),
            )
            .await
        }
    };
    let r = set("JPY").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "currency_not_sold");
    let cart = set("USD").await;
    assert_eq!(cart.status, StatusCode::OK, "{:?}", cart.body);
    assert_eq!(cart.body["currency"], "USD");
    assert_eq!(cart.body["items"][0]["unit_price"], usd(1100));
    assert_eq!(cart.body["subtotal"], usd(2200));
    assert_eq!(cart.body["total"], usd(2200));

    // A line without a USD price cannot join; back in EUR it can, and then
    // the cart cannot go to USD while it holds it.
    let r = app
        .post(
            "/cart/items",
            Some(&customer.token),
            json!({"sku": eur_only, "quantity": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "currency_mismatch");
    assert_eq!(set("EUR").await.body["subtotal"], eur(2000));
    add_to_cart(&app, &customer, &eur_only, 1).await;
    let r = set("USD").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"]["code"], "currency_mismatch");
    let r = app
        .delete(&format!("/cart/items/{eur_only}"), Some(&customer.token))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(set("USD").await.status, StatusCode::OK);

    // A fixed amount off has its amount in USD too.
    let code = unique("USD");
    create_promotion(
        &app,
        &admin,
        json!({"code": code, "kind": "fixed_amount", "amount": eur(200), "amounts": [usd(300)]}),
    )
    .await;
    let cart = apply(&app, &customer, &code).await;
    assert_eq!(cart.status, StatusCode::OK, "{:?}", cart.body);
    assert_eq!(cart.body["discount_total"], usd(300));
    assert_eq!(cart.body["total"], usd(1900));

    let r = checkout_to(
        &app,
        &customer,
        json!({"payment": {"token": "tok_visa"}, "shipping_address": address_in("GB")}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["currency"], "USD");
    assert_eq!(r.body["total"], usd(1900));
    let id = r.body["id"].as_str().expect("id").to_owned();
    let order = settled(&app, &customer, &id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let pay = app
        .get(&format!("/payments/orders/{id}"), Some(&admin.token))
        .await;
    assert_eq!(pay.body["intent"]["amount"], usd(1900), "{:?}", pay.body);
}
