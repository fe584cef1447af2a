use crate::orders::checkout;
use crate::support::{unique, Response, TestApp, User};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

fn eur(amount: i64) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

fn skus(cart: &Value) -> Vec<String> {
    cart["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| l["sku"].as_str().expect("sku").to_owned())
        .collect()
}

fn quantity_of(cart: &Value, sku: &str) -> Option<i64> {
    cart["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|l| l["sku"] == sku)
        .and_then(|l| l["quantity"].as_i64())
}

async fn add(app: &TestApp, who: &User, sku: &str, quantity: i64) -> Response {
    app.post(
        "/cart/items",
        Some(&who.token),
        json!({"sku": sku, "quantity": quantity}),
    )
    .await
}

fn ok(r: &Response) -> &Value {
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    &r.body
}

/// A cart in EUR with no code: no discount, and no shipping or tax before
/// an address.
fn plain_cart(items: Value, subtotal: i64) -> Value {
    json!({
        "items": items,
        "subtotal": eur(subtotal),
        "discount_total": eur(0),
        "shipping_total": eur(0),
        "tax_total": eur(0),
        "total": eur(subtotal),
        "currency": "EUR",
        "discounts": [],
        "promotion_code": null,
    })
}

#[tokio::test]
async fn an_empty_cart_is_priced_zero_in_the_shop_currency() {
    let app = TestApp::spawn().await;
    let customer = app.register("customer").await;
    let r = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(ok(&r), &plain_cart(json!([]), 0));
}

#[tokio::test]
async fn adding_prices_lines_from_the_catalog_and_adding_again_sums() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let (a, b) = (unique("CA"), unique("CB"));
    let product = app
        .create_product(&seller, "c", &[(&a, 1250), (&b, 300)])
        .await;

    let r = add(&app, &customer, &a, 2).await;
    assert_eq!(
        ok(&r),
        &plain_cart(
            json!([{"sku": a, "product_id": product["id"], "title": product["title"],
                    "quantity": 2, "unit_price": eur(1250), "line_total": eur(2500),
                    "available": true}]),
            2500
        )
    );

    let r = add(&app, &customer, &a, 3).await;
    assert_eq!(quantity_of(ok(&r), &a), Some(5));
    assert_eq!(r.body["items"][0]["line_total"], eur(6250));

    let r = add(&app, &customer, &b, 1).await;
    let cart = ok(&r).clone();
    assert_eq!(
        skus(&cart),
        vec![a.clone(), b.clone()],
        "in the order added"
    );
    assert_eq!(cart["subtotal"], eur(6550));
    assert_eq!(cart["total"], eur(6550));

    let got = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(ok(&got), &cart, "the cart is stored");
}

#[tokio::test]
async fn lines_are_priced_when_the_cart_is_read() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let sku = unique("RP");
    let product = app.create_product(&seller, "c", &[(&sku, 100)]).await;
    ok(&add(&app, &customer, &sku, 3).await);
    let path = format!("/products/{}", product["id"].as_str().expect("id"));
    let r = app
        .patch(
            &path,
            Some(&seller.token),
            json!({"variants": [{"sku": sku, "price": eur(120)}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let cart = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(ok(&cart)["items"][0]["unit_price"], eur(120));
    assert_eq!(cart.body["total"], eur(360));
}

#[tokio::test]
async fn patch_sets_the_quantity_of_a_line_in_the_cart() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let (sku, other) = (unique("P"), unique("P"));
    app.create_product(&seller, "c", &[(&sku, 200), (&other, 1)])
        .await;
    ok(&add(&app, &customer, &sku, 5).await);

    let path = format!("/cart/items/{sku}");
    let r = app
        .patch(&path, Some(&customer.token), json!({"quantity": 2}))
        .await;
    assert_eq!(quantity_of(ok(&r), &sku), Some(2));
    assert_eq!(r.body["total"], eur(400));
    assert_eq!(
        quantity_of(&app.get("/cart", Some(&customer.token)).await.body, &sku),
        Some(2)
    );

    let missing = app
        .patch(
            &format!("/cart/items/{other}"),
            Some(&customer.token),
            json!({"quantity": 1}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{:?}", missing.body);
    assert_eq!(missing.code(), "not_found");
    let unknown = app
        .patch(
            "/cart/items/NO-SUCH-SKU",
            Some(&customer.token),
            json!({"quantity": 1}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    for bad in [
        json!({"quantity": 0}),
        json!({"quantity": -1}),
        json!({"quantity": 1000}),
        json!({"quantity": 1.5}),
        json!({"quantity": "2"}),
        json!({}),
    ] {
        let r = app.patch(&path, Some(&customer.token), bad.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad} -> {:?}",
            r.body
        );
    }
    assert_eq!(
        quantity_of(&app.get("/cart", Some(&customer.token)).await.body, &sku),
        Some(2),
        "refused changes change nothing"
    );
}

#[tokio::test]
async fn delete_removes_a_line_and_answers_with_the_cart() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let (a, b) = (unique("D"), unique("D"));
    app.create_product(&seller, "c", &[(&a, 100), (&b, 50)])
        .await;
    ok(&add(&app, &customer, &a, 1).await);
    ok(&add(&app, &customer, &b, 2).await);

    let r = app
        .delete(&format!("/cart/items/{a}"), Some(&customer.token))
        .await;
    assert_eq!(skus(ok(&r)), vec![b.clone()]);
    assert_eq!(r.body["total"], eur(100));

    let again = app
        .delete(&format!("/cart/items/{a}"), Some(&customer.token))
        .await;
    assert_eq!(
        ok(&again),
        &r.body,
        "removing what is not there is no error"
    );

    let r = app
        .delete(&format!("/cart/items/{b}"), Some(&customer.token))
        .await;
    assert_eq!(ok(&r), &plain_cart(json!([]), 0));
}

#[tokio::test]
async fn only_customers_have_a_cart() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let sku = unique("R");
    app.create_product(&seller, "c", &[(&sku, 100)]).await;
    let item = format!("/cart/items/{sku}");
    let body = json!({"sku": sku, "quantity": 1});

    let anonymous = [
        app.get("/cart", None).await,
        app.post("/cart/items", None, body.clone()).await,
        app.patch(&item, None, json!({"quantity": 1})).await,
        app.delete(&item, None).await,
        app.get("/cart", Some("not-a-token")).await,
    ];
    for r in anonymous {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert_eq!(r.code(), "unauthorized");
    }

    let mut others = vec![seller.token.clone()];
    others.push(app.admin().await.token);
    for token in &others {
        let answers = [
            app.get("/cart", Some(token)).await,
            app.post("/cart/items", Some(token), body.clone()).await,
            // Refused for the role before the body is looked at.
            app.post("/cart/items", Some(token), json!({"quantity": "x"}))
                .await,
            app.patch(&item, Some(token), json!({"quantity": 1})).await,
            app.delete(&item, Some(token)).await,
        ];
        for r in answers {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
            assert_eq!(r.code(), "forbidden");
        }
    }
}

#[tokio::test]
async fn unknown_and_archived_skus_are_refused() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;

    let r = add(&app, &customer, &unique("NOPE"), 1).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "unknown_sku");
    for sku in ["", "has space", &"X".repeat(500)] {
        let r = add(&app, &customer, sku, 1).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{sku:?}");
        assert_eq!(r.code(), "unknown_sku");
    }

    let sku = unique("ARCH");
    let product = app.create_product(&seller, "c", &[(&sku, 100)]).await;
    let path = format!("/products/{}", product["id"].as_str().expect("id"));
    assert_eq!(
        app.delete(&path, Some(&seller.token)).await.status,
        StatusCode::NO_CONTENT
    );
    let r = add(&app, &customer, &sku, 1).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "sku_unavailable");
    assert_eq!(
        app.get("/cart", Some(&customer.token)).await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn quantities_are_whole_numbers_from_1_to_999_per_line() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let sku = unique("Q");
    app.create_product(&seller, "c", &[(&sku, 1)]).await;

    for bad in [
        json!({"sku": sku, "quantity": 0}),
        json!({"sku": sku, "quantity": -2}),
        json!({"sku": sku, "quantity": 1000}),
        json!({"sku": sku, "quantity": 1.5}),
        json!({"sku": sku, "quantity": 1000.0}),
        json!({"sku": sku, "quantity": "2"}),
        json!({"sku": sku, "quantity": null}),
        json!({"sku": sku, "quantity": 1e30}),
        json!({"sku": sku}),
        json!({"quantity": 1}),
    ] {
        let r = app
            .post("/cart/items", Some(&customer.token), bad.clone())
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad} -> {:?}",
            r.body
        );
    }

    // A whole number is an integer however it is written, as in JSON Schema.
    let r = app
        .post(
            "/cart/items",
            Some(&customer.token),
            json!({"sku": sku, "quantity": 2.0}),
        )
        .await;
    assert_eq!(quantity_of(ok(&r), &sku), Some(2));
    let r = app
        .patch(
            &format!("/cart/items/{sku}"),
            Some(&customer.token),
            json!({"quantity": 5e2}),
        )
        .await;
    assert_eq!(quantity_of(ok(&r), &sku), Some(500));
    let over = add(&app, &customer, &sku, 500).await;
    assert_eq!(over.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(over.code(), "quantity_limit_exceeded");
    let r = add(&app, &customer, &sku, 499).await;
    assert_eq!(quantity_of(ok(&r), &sku), Some(999));
    assert_eq!(
        add(&app, &customer, &sku, 1).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let malformed = app
        .request(
            reqwest::Method::POST,
            "/cart/items",
            Some(&customer.token),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_sku_in_another_currency_is_refused() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let euros = unique("EU");
    app.create_product(&seller, "c", &[(&euros, 100)]).await;
    let dollars = unique("US");
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": "Imported", "category": "c",
                   "variants": [{"sku": dollars, "price": {"amount": 100, "currency": "USD"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    ok(&add(&app, &customer, &euros, 1).await);
    let r = add(&app, &customer, &dollars, 1).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.code(), "currency_mismatch");
    assert_eq!(
        skus(&app.get("/cart", Some(&customer.token)).await.body),
        vec![euros]
    );
}

#[tokio::test]
async fn an_archived_product_leaves_the_cart() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let (gone, gone_too, kept) = (unique("G"), unique("G"), unique("K"));
    let product = app
        .create_product(&seller, "c", &[(&gone, 100), (&gone_too, 10)])
        .await;
    app.create_product(&seller, "c", &[(&kept, 7)]).await;
    for sku in [&gone, &kept, &gone_too] {
        ok(&add(&app, &customer, sku, 1).await);
    }

    let path = format!("/products/{}", product["id"].as_str().expect("id"));
    assert_eq!(
        app.delete(&path, Some(&seller.token)).await.status,
        StatusCode::NO_CONTENT
    );
    let cart = app
        .eventually(
            "the archived product leaves the cart",
            Duration::from_secs(2),
            || async {
                let r = app.get("/cart", Some(&customer.token)).await;
                (r.status == StatusCode::OK && skus(&r.body) == vec![kept.clone()])
                    .then_some(r.body)
            },
        )
        .await;
    assert_eq!(cart["total"], eur(7));

    // The consumer removes the lines from the store too, not only from view.
    if let Some(dir) = &app.data_dir {
        let db = mercato_kernel::db::Db::sqlite_file(&dir.path().join("cart.db"))
            .await
            .expect("cart store");
        let store = mercato_cart::store::CartStore::new(db, mercato_kernel::outbox::Outbox::new());
        let customer_id = uuid::Uuid::parse_str(&customer.id).expect("id");
        app.eventually(
            "the consumer removes the lines",
            Duration::from_secs(2),
            || async {
                let stored: Vec<String> = store
                    .lines(customer_id)
                    .await
                    .expect("lines")
                    .into_iter()
                    .map(|l| l.sku)
                    .collect();
                (stored == vec![kept.clone()]).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_variant_dropped_from_its_product_leaves_the_cart() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let (a, b) = (unique("V"), unique("V"));
    let product = app
        .create_product(&seller, "c", &[(&a, 100), (&b, 200)])
        .await;
    ok(&add(&app, &customer, &a, 1).await);
    ok(&add(&app, &customer, &b, 1).await);
    let path = format!("/products/{}", product["id"].as_str().expect("id"));
    let r = app
        .patch(
            &path,
            Some(&seller.token),
            json!({"variants": [{"sku": a, "price": eur(100)}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let cart = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(skus(ok(&cart)), vec![a]);
    assert_eq!(cart.body["total"], eur(100));
}

#[tokio::test]
async fn customers_never_see_each_others_carts() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let alice = app.register("customer").await;
    let bob = app.register("customer").await;
    let (a, b, shared) = (unique("A"), unique("B"), unique("S"));
    app.create_product(&seller, "c", &[(&a, 1), (&b, 2), (&shared, 3)])
        .await;

    ok(&add(&app, &alice, &a, 1).await);
    ok(&add(&app, &alice, &shared, 2).await);
    ok(&add(&app, &bob, &b, 4).await);
    ok(&add(&app, &bob, &shared, 5).await);

    let alices = app.get("/cart", Some(&alice.token)).await;
    assert_eq!(skus(ok(&alices)), vec![a.clone(), shared.clone()]);
    assert_eq!(quantity_of(&alices.body, &shared), Some(2));
    let bobs = app.get("/cart", Some(&bob.token)).await;
    assert_eq!(skus(ok(&bobs)), vec![b.clone(), shared.clone()]);
    assert_eq!(quantity_of(&bobs.body, &shared), Some(5));

    // Changing one cart leaves the other alone.
    let r = app
        .patch(
            &format!("/cart/items/{b}"),
            Some(&alice.token),
            json!({"quantity": 9}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "bob's line is not alice's");
    ok(&app
        .patch(
            &format!("/cart/items/{shared}"),
            Some(&alice.token),
            json!({"quantity": 7}),
        )
        .await);
    ok(&app
        .delete(&format!("/cart/items/{b}"), Some(&alice.token))
        .await);
    let bobs_after = app.get("/cart", Some(&bob.token)).await;
    assert_eq!(ok(&bobs_after), &bobs.body);
}

#[tokio::test]
async fn the_cart_is_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", None).await;
    let paths = ok(&doc)["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/v1/cart", "get"),
        ("/api/v1/cart/items", "post"),
        ("/api/v1/cart/items/{sku}", "patch"),
        ("/api/v1/cart/items/{sku}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
}

/// A seller moves a product to another currency while it sits in a cart:
/// every line stays in view, the moved one marked unavailable and left out
/// of the total, and checkout refuses naming it until it is removed; it
/// never orders only part of the cart.
#[tokio::test]
async fn a_line_whose_price_moves_to_another_currency_stays_visible_and_blocks_checkout() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let customer = app.register("customer").await;
    let (kept, moved) = (unique("KEEP"), unique("MOVE"));
    app.create_product(&seller, "c", &[(&kept, 100)]).await;
    let product = app.create_product(&seller, "c", &[(&moved, 250)]).await;
    let product_id = product["id"].as_str().expect("id").to_owned();
    for sku in [&kept, &moved] {
        let r = app
            .put(
                &format!("/inventory/{sku}"),
                Some(&seller.token),
                json!({"quantity": 10}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        ok(&add(&app, &customer, sku, 1).await);
    }
    let r = app
        .patch(
            &format!("/products/{product_id}"),
            Some(&seller.token),
            json!({"variants": [{"sku": moved, "price": {"amount": 300, "currency": "USD"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let cart = app
        .eventually(
            "the cart to see the new price",
            Duration::from_secs(5),
            || async {
                let cart = app.get("/cart", Some(&customer.token)).await.body;
                let line = cart["items"]
                    .as_array()?
                    .iter()
                    .find(|l| l["sku"] == moved.as_str())?
                    .clone();
                (line["unit_price"]["currency"] == "USD").then_some(cart)
            },
        )
        .await;
    assert_eq!(
        skus(&cart),
        vec![kept.clone(), moved.clone()],
        "every line in view"
    );
    let line = |sku: &str| {
        cart["items"]
            .as_array()
            .and_then(|items| items.iter().find(|l| l["sku"] == sku))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(line(&kept)["available"], true);
    assert_eq!(line(&moved)["available"], false);
    assert_eq!(line(&moved)["unavailable_reason"], "currency_mismatch");
    assert_eq!(
        cart["total"],
        eur(100),
        "the moved line is out of the total"
    );

    let refused = checkout(&app, &customer, "tok_visa", "partial").await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.code(), "line_unavailable");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(moved.as_str())),
        "{:?}",
        refused.body
    );
    let orders = app.get("/orders", Some(&customer.token)).await;
    assert_eq!(orders.body["items"], json!([]), "nothing ordered");

    // Once the customer removes it, the rest of the cart can be bought.
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/cart/items/{moved}"),
            Some(&customer.token),
            None,
            &[],
        )
        .await;
    assert_eq!(skus(ok(&r)), vec![kept.clone()]);
    let placed = checkout(&app, &customer, "tok_visa", "whole").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    assert_eq!(placed.body["items"].as_array().map(Vec::len), Some(1));
}
