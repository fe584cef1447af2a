//! Returns and partial refunds: every refund goes through the payments
//! ledger once, and refunds never pass the order's total.

use crate::orders::{buy, stock};
use crate::support::{external, unique, Response, TestApp, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// POST with an Idempotency-Key.
async fn keyed(app: &TestApp, path: &str, user: &User, body: Option<Value>, key: &str) -> Response {
    app.request(
        Method::POST,
        path,
        Some(&user.token),
        body,
        &[("idempotency-key", key)],
    )
    .await
}

/// The signed amounts of an order's payment ledger, oldest first.
async fn ledger(app: &TestApp, admin: &User, order_id: &str) -> Vec<i64> {
    let payment = app
        .get(&format!("/payments/orders/{order_id}"), Some(&admin.token))
        .await;
    assert_eq!(payment.status, StatusCode::OK, "{:?}", payment.body);
    payment.body["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|e| e["amount"]["amount"].as_i64())
        .collect()
}

fn eur(amount: i64) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

/// Ships and delivers an order as its seller.
async fn deliver(app: &TestApp, seller: &User, order_id: &str) {
    for step in ["ship", "deliver"] {
        let r = app
            .post(
                &format!("/orders/{order_id}/{step}"),
                Some(&seller.token),
                json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{step}: {:?}", r.body);
    }
}

#[tokio::test]
async fn partial_refunds_add_up_to_the_total_and_then_the_order_is_refunded() {
    let app = TestApp::spawn().await;
    let (_, _, sku, order) = buy(&app, "tok_visa", 5, 2).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let id = order["id"].as_str().expect("id");
    let path = format!("/orders/{id}/refund");
    let admin = app.admin().await;

    let k1 = unique("part");
    let part = json!({"amount": eur(1000), "reason": "scratched"});
    let r = keyed(&app, &path, &admin, Some(part.clone()), &k1).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "confirmed");
    assert_eq!(r.body["refunded_total"], eur(1000));
    assert_eq!(r.body["payment"]["status"], "captured");
    let replay = keyed(&app, &path, &admin, Some(part), &k1).await;
    assert_eq!((replay.status, &replay.body), (StatusCode::OK, &r.body));
    let other_body = keyed(&app, &path, &admin, Some(json!({"amount": eur(5)})), &k1).await;
    assert_eq!(
        (other_body.status, other_body.code()),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    // Nothing goes back on hand for a refund by amount.
    assert_eq!(stock(&app, &sku).await, (3, 0));

    for (body, status, code) in [
        (json!({"amount": eur(2001)}), 422, "refund_exceeds_total"),
        (
            json!({"amount": {"amount": 100, "currency": "USD"}}),
            422,
            "currency_mismatch",
        ),
        (json!({"amount": eur(0)}), 422, "validation_failed"),
        (json!({"amount": "ten"}), 422, "validation_failed"),
    ] {
        let r = keyed(&app, &path, &admin, Some(body.clone()), &unique("bad")).await;
        assert_eq!((r.status.as_u16(), r.code()), (status, code), "{body}");
    }

    // No amount: the rest, with the stock back, as in v1.
    let rest = keyed(&app, &path, &admin, Some(json!({})), &unique("rest")).await;
    assert_eq!(rest.status, StatusCode::OK, "{:?}", rest.body);
    assert_eq!(rest.body["status"], "refunded");
    assert_eq!(rest.body["refunded_total"], eur(3000));
    assert_eq!(rest.body["payment"]["status"], "refunded");
    assert_eq!(stock(&app, &sku).await, (5, 0));
    let entries = ledger(&app, &admin, id).await;
    assert_eq!(entries, vec![3000, -1000, -2000]);
    assert_eq!(entries.iter().sum::<i64>(), 0, "captured minus refunded");

    let after = keyed(
        &app,
        &path,
        &admin,
        Some(json!({"amount": eur(1)})),
        &unique("late"),
    )
    .await;
    assert_eq!(
        (after.status, after.code()),
        (StatusCode::CONFLICT, "invalid_transition")
    );
}

#[tokio::test]
async fn racing_partial_refunds_never_pass_the_total() {
    let app = TestApp::spawn().await;
    let (_, _, _, order) = buy(&app, "tok_visa", 5, 2).await;
    let id = order["id"].as_str().expect("id").to_owned();
    let admin = app.admin().await;
    let path = format!("/orders/{id}/refund");
    let attempts = (0..8).map(|_| {
        let (app, admin, path) = (&app, &admin, &path);
        async move {
            let key = unique("race");
            keyed(app, path, admin, Some(json!({"amount": eur(1000)})), &key).await
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let ok = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|r| {
            r.status == StatusCode::UNPROCESSABLE_ENTITY && r.code() == "refund_exceeds_total"
        })
        .count();
    let seen: Vec<(StatusCode, &Value)> = answers.iter().map(|r| (r.status, &r.body)).collect();
    assert_eq!((ok, refused), (3, 5), "{seen:?}");
    let now = app.get(&format!("/orders/{id}"), Some(&admin.token)).await;
    assert_eq!(now.body["refunded_total"], eur(3000));
    assert_eq!(now.body["status"], "refunded");
    let entries = ledger(&app, &admin, &id).await;
    assert_eq!(entries, vec![3000, -1000, -1000, -1000]);
}

#[tokio::test]
async fn a_received_return_restocks_its_items_and_refunds_their_share_once() {
    let app = TestApp::spawn().await;
    let (seller, customer, sku, order) = buy(&app, "tok_visa", 5, 2).await;
    let id = order["id"].as_str().expect("id");
    let admin = app.admin().await;
    let returns = format!("/orders/{id}/returns");
    let one = json!({"items": [{"sku": sku, "quantity": 1}], "reason": "Too small"});

    let early = app.post(&returns, Some(&customer.token), one.clone()).await;
    assert_eq!(
        (early.status, early.code()),
        (StatusCode::CONFLICT, "order_not_delivered")
    );
    deliver(&app, &seller, id).await;

    let stranger = app.register("customer").await;
    let r = app.post(&returns, Some(&stranger.token), one.clone()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another customer's order");
    let r = app.post(&returns, Some(&seller.token), one.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "only the customer returns");
    for (body, code) in [
        (
            json!({"items": [{"sku": sku, "quantity": 3}], "reason": "x"}),
            "return_exceeds_purchase",
        ),
        (
            json!({"items": [{"sku": "NOT-BOUGHT", "quantity": 1}], "reason": "x"}),
            "return_exceeds_purchase",
        ),
        (json!({"items": [], "reason": "x"}), "validation_failed"),
        (
            json!({"items": [{"sku": sku, "quantity": 1}], "reason": "  "}),
            "validation_failed",
        ),
    ] {
        let r = app
            .post(&returns, Some(&customer.token), body.clone())
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}"
        );
    }

    let created = app.post(&returns, Some(&customer.token), one.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["status"], "requested");
    assert_eq!(created.body["order_id"], id);
    assert_eq!(created.body["refund_amount"], eur(1500), "half of 3000");
    let return_id = created.body["id"].as_str().expect("id").to_owned();
    let listed = app.get(&returns, Some(&seller.token)).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    let read = app
        .get(&format!("/returns/{return_id}"), Some(&customer.token))
        .await;
    assert_eq!(read.body, created.body);
    let hidden = app
        .get(&format!("/returns/{return_id}"), Some(&stranger.token))
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);

    let receive = format!("/returns/{return_id}/receive");
    let no_key = app.post(&receive, Some(&seller.token), json!({})).await;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST);
    let by_customer = keyed(&app, &receive, &customer, None, &unique("rc")).await;
    assert_eq!(by_customer.status, StatusCode::FORBIDDEN);
    let key = unique("rc");
    let received = keyed(&app, &receive, &seller, None, &key).await;
    assert_eq!(received.status, StatusCode::OK, "{:?}", received.body);
    assert_eq!(received.body["status"], "refunded");
    assert_eq!(received.body["refund_amount"], eur(1500));
    let replay = keyed(&app, &receive, &seller, None, &key).await;
    assert_eq!(
        (replay.status, &replay.body),
        (StatusCode::OK, &received.body)
    );
    let again = keyed(&app, &receive, &seller, None, &unique("rc")).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "invalid_transition")
    );
    assert_eq!(stock(&app, &sku).await, (4, 0), "one unit back on hand");
    let now = app
        .get(&format!("/orders/{id}"), Some(&customer.token))
        .await;
    assert_eq!(now.body["status"], "delivered");
    assert_eq!(now.body["refunded_total"], eur(1500));
    assert_eq!(ledger(&app, &admin, id).await, vec![3000, -1500]);

    // A rejected return gives nothing back and counts for nothing.
    let second = app.post(&returns, Some(&customer.token), one.clone()).await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    let second_id = second.body["id"].as_str().expect("id");
    let rejected = app
        .post(
            &format!("/returns/{second_id}/reject"),
            Some(&admin.token),
            json!({"reason": "Worn"}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::OK, "{:?}", rejected.body);
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["rejection_reason"], "Worn");
    let late = keyed(
        &app,
        &format!("/returns/{second_id}/receive"),
        &admin,
        None,
        &unique("rc"),
    )
    .await;
    assert_eq!(late.status, StatusCode::CONFLICT);

    // The last unit, into another warehouse: the whole total is back.
    let third = app.post(&returns, Some(&customer.token), one).await;
    assert_eq!(third.status, StatusCode::CREATED, "{:?}", third.body);
    assert_eq!(third.body["refund_amount"], eur(1500));
    let third_id = third.body["id"].as_str().expect("id");
    let received = keyed(
        &app,
        &format!("/returns/{third_id}/receive"),
        &admin,
        Some(json!({"warehouse": "returns"})),
        &unique("rc"),
    )
    .await;
    assert_eq!(received.status, StatusCode::OK, "{:?}", received.body);
    assert_eq!(received.body["warehouse"], "returns");
    let now = app
        .get(&format!("/orders/{id}"), Some(&customer.token))
        .await;
    assert_eq!(now.body["status"], "refunded");
    assert_eq!(now.body["refunded_total"], eur(3000));
    assert_eq!(now.body["payment"]["status"], "refunded");
    assert_eq!(ledger(&app, &admin, id).await, vec![3000, -1500, -1500]);
    let inventory = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(inventory.body["available"], 5);
    assert!(
        inventory.body["warehouses"]
            .as_array()
            .expect("warehouses")
            .iter()
            .any(|w| w["warehouse"] == "returns" && w["on_hand"] == 1),
        "{:?}",
        inventory.body
    );
}

#[tokio::test]
async fn returns_close_with_the_window() {
    if external() {
        return; // the window is a shared server's own setting (30 days)
    }
    let app = TestApp::spawn_with(|s| s.orders.return_window_days = 0).await;
    let (seller, customer, sku, order) = buy(&app, "tok_visa", 5, 1).await;
    let id = order["id"].as_str().expect("id");
    deliver(&app, &seller, id).await;
    let r = app
        .post(
            &format!("/orders/{id}/returns"),
            Some(&customer.token),
            json!({"items": [{"sku": sku, "quantity": 1}], "reason": "Late"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "return_window_closed")
    );
}

#[tokio::test]
async fn a_return_received_after_a_full_refund_refunds_nothing_more() {
    let app = TestApp::spawn().await;
    let (seller, customer, sku, order) = buy(&app, "tok_visa", 5, 2).await;
    let id = order["id"].as_str().expect("id");
    let admin = app.admin().await;
    deliver(&app, &seller, id).await;
    let created = app
        .post(
            &format!("/orders/{id}/returns"),
            Some(&customer.token),
            json!({"items": [{"sku": sku, "quantity": 1}], "reason": "Dented"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let return_id = created.body["id"].as_str().expect("id");
    // The whole order is refunded (and its stock put back) first.
    let refunded = keyed(
        &app,
        &format!("/orders/{id}/refund"),
        &admin,
        None,
        &unique("all"),
    )
    .await;
    assert_eq!(refunded.body["status"], "refunded", "{:?}", refunded.body);
    assert_eq!(stock(&app, &sku).await, (5, 0));

    let received = keyed(
        &app,
        &format!("/returns/{return_id}/receive"),
        &seller,
        None,
        &unique("rc"),
    )
    .await;
    assert_eq!(received.status, StatusCode::OK, "{:?}", received.body);
    assert_eq!(received.body["status"], "refunded");
    assert_eq!(
        received.body["refund_amount"],
        eur(0),
        "nothing left to refund"
    );
    assert_eq!(stock(&app, &sku).await, (5, 0), "nothing put back twice");
    assert_eq!(ledger(&app, &admin, id).await, vec![3000, -3000]);
}
