//! Subscriptions: the first order at once, one order per period however
//! often or concurrently a renewal is asked for, dunning on declines, and
//! who may do what. Against the cluster too, where two subscriptions
//! replicas race for every renewal.

use crate::orders::{add_to_cart, settled, stocked_sku};
use crate::support::{unique, Response, TestApp, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

fn address() -> Value {
    json!({"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"})
}

async fn subscribe(app: &TestApp, customer: &User, body: Value, key: &str) -> Response {
    app.request(
        Method::POST,
        "/subscriptions",
        Some(&customer.token),
        Some(body),
        &[("idempotency-key", key)],
    )
    .await
}

fn weekly(sku: &str, quantity: i64, token: &str) -> Value {
    json!({
        "items": [{"sku": sku, "quantity": quantity}],
        "interval": "week",
        "payment": {"token": token},
        "shipping_address": address(),
    })
}

async fn act(app: &TestApp, user: &User, id: &str, action: &str) -> Response {
    app.post(
        &format!("/subscriptions/{id}/{action}"),
        Some(&user.token),
        json!({}),
    )
    .await
}

fn order_ids(subscription: &Value) -> Vec<String> {
    subscription["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .filter_map(|o| o.as_str().map(str::to_owned))
        .collect()
}

/// A customer subscribed weekly to 2 of a fresh SKU with 20 in stock.
async fn subscribed(app: &TestApp, token: &str) -> (User, String, Value) {
    let (_, sku) = stocked_sku(app, 20).await;
    let customer = app.register("customer").await;
    let r = subscribe(app, &customer, weekly(&sku, 2, token), &unique("sub")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    (customer, sku, r.body)
}

#[tokio::test]
async fn a_subscription_places_its_first_order_at_once_through_the_saga() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 20).await;
    let customer = app.register("customer").await;
    // What is in the cart stays there: a subscription's order has no cart.
    add_to_cart(&app, &customer, &sku, 1).await;
    let key = unique("sub");
    let body = weekly(&sku, 2, "tok_visa");
    let r = subscribe(&app, &customer, body.clone(), &key).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let sub = r.body.clone();
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["interval"], "week");
    assert_eq!(sub["customer_id"], customer.id.as_str());
    assert_eq!(sub["failed_attempts"], 0);
    assert_eq!(sub["items"], json!([{"sku": sku, "quantity": 2}]));
    let created: chrono::DateTime<chrono::Utc> = sub["created_at"]
        .as_str()
        .expect("created_at")
        .parse()
        .expect("a time");
    let next: chrono::DateTime<chrono::Utc> = sub["next_renewal_at"]
        .as_str()
        .expect("next_renewal_at")
        .parse()
        .expect("a time");
    assert_eq!(next - created, chrono::Duration::weeks(1));
    let orders = order_ids(&sub);
    assert_eq!(orders.len(), 1, "{sub}");
    let order = settled(&app, &customer, &orders[0]).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["subscription_id"], sub["id"]);
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["payment"]["status"], "captured");
    // The stock went; the cart kept its line.
    let stock = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(stock.body["available"], 18, "{:?}", stock.body);
    let cart = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(cart.body["items"][0]["quantity"], 1, "{:?}", cart.body);
    // The key replays the answer; another body under it is refused.
    let again = subscribe(&app, &customer, body, &key).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, sub);
    let other = subscribe(&app, &customer, weekly(&sku, 3, "tok_visa"), &key).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.code(), "idempotency_key_reused");
    // The customer sees it, alone among their subscriptions.
    let list = app.get("/subscriptions", Some(&customer.token)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["items"][0]["id"], sub["id"]);
}

#[tokio::test]
async fn a_period_gets_one_order_however_often_and_concurrently_it_is_renewed() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (customer, sku, sub) = subscribed(&app, "tok_visa").await;
    let id = sub["id"].as_str().expect("id").to_owned();
    settled(&app, &customer, &order_ids(&sub)[0]).await;
    // Eight renewals at once (through every replica there is): one order.
    // A store that is busy answers 503 with Retry-After; a client retries.
    let renew = || async {
        let mut r = act(&app, &admin, &id, "renew").await;
        for _ in 0..5 {
            if r.status != StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            r = act(&app, &admin, &id, "renew").await;
        }
        r
    };
    let renewals = (0..8).map(|_| renew());
    for r in futures::future::join_all(renewals).await {
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let now = app
        .get(&format!("/subscriptions/{id}"), Some(&customer.token))
        .await;
    let orders = order_ids(&now.body);
    assert_eq!(orders.len(), 2, "{:?}", now.body);
    let second = settled(&app, &customer, &orders[1]).await;
    assert_eq!(second["status"], "confirmed", "{second}");
    assert_eq!(second["subscription_id"], id.as_str());
    // Its period has a confirmed order: renewing again does nothing.
    let again = act(&app, &admin, &id, "renew").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(order_ids(&again.body), orders);
    // The next renewal is still the period's start: renew placed it early.
    assert_eq!(again.body["next_renewal_at"], sub["next_renewal_at"]);
    let stock = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(stock.body["available"], 16, "{:?}", stock.body);
}

#[tokio::test]
async fn declined_renewals_are_tried_three_times_then_the_customer_is_told() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (customer, _, sub) = subscribed(&app, "tok_decline").await;
    let id = sub["id"].as_str().expect("id").to_owned();
    // 3 attempts in all, 200 ms then 800 ms apart in the tests' settings.
    let past_due = app
        .eventually(
            "the subscription to be past due",
            Duration::from_secs(15),
            || async {
                let r = app
                    .get(&format!("/subscriptions/{id}"), Some(&customer.token))
                    .await;
                (r.body["status"] == "past_due").then_some(r.body)
            },
        )
        .await;
    assert_eq!(past_due["failed_attempts"], 3, "{past_due}");
    let orders = order_ids(&past_due);
    assert_eq!(orders.len(), 3, "{past_due}");
    for order_id in &orders {
        let order = settled(&app, &customer, order_id).await;
        assert_eq!(order["status"], "cancelled");
        assert_eq!(order["cancel_reason"], "payment_failed");
        assert_eq!(order["payment"]["status"], "declined");
    }
    // Told once, about the last attempt's order.
    let told = app
        .eventually(
            "the customer to be told",
            Duration::from_secs(10),
            || async {
                let r = app.get("/notifications", Some(&customer.token)).await;
                let items = r.body["items"].as_array().cloned().unwrap_or_default();
                let past_due: Vec<Value> = items
                    .into_iter()
                    .filter(|n| n["template"] == "subscription_past_due")
                    .collect();
                (!past_due.is_empty()).then_some(past_due)
            },
        )
        .await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["order_id"], orders[2].as_str());
    // Past due places nothing by itself; renew tries again at once.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let still = app
        .get(&format!("/subscriptions/{id}"), Some(&customer.token))
        .await;
    assert_eq!(order_ids(&still.body).len(), 3);
    let renewed = act(&app, &admin, &id, "renew").await;
    assert_eq!(renewed.status, StatusCode::OK, "{:?}", renewed.body);
    let orders = order_ids(&renewed.body);
    assert_eq!(orders.len(), 4, "{:?}", renewed.body);
    let order = settled(&app, &customer, &orders[3]).await;
    assert_eq!(order["cancel_reason"], "payment_failed");
}

#[tokio::test]
async fn pause_resume_cancel_and_renew_follow_the_subscription_rules() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (customer, _, sub) = subscribed(&app, "tok_visa").await;
    let id = sub["id"].as_str().expect("id").to_owned();
    let paused = act(&app, &customer, &id, "pause").await;
    assert_eq!(paused.status, StatusCode::OK, "{:?}", paused.body);
    assert_eq!(paused.body["status"], "paused");
    // Pausing twice is one pause; a paused subscription places nothing.
    assert_eq!(
        act(&app, &customer, &id, "pause").await.body["status"],
        "paused"
    );
    let renew = act(&app, &admin, &id, "renew").await;
    assert_eq!(renew.status, StatusCode::CONFLICT);
    assert_eq!(renew.code(), "subscription_not_active");
    let resumed = act(&app, &customer, &id, "resume").await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(resumed.body["status"], "active");
    assert_eq!(
        act(&app, &customer, &id, "resume").await.body["status"],
        "active"
    );
    // Only admins renew.
    let by_customer = act(&app, &customer, &id, "renew").await;
    assert_eq!(by_customer.status, StatusCode::FORBIDDEN);
    // Nobody else sees or touches it.
    let stranger = app.register("customer").await;
    let seller = app.register("seller").await;
    for user in [&stranger, &seller] {
        let r = app
            .get(&format!("/subscriptions/{id}"), Some(&user.token))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
        assert_eq!(
            act(&app, user, &id, "pause").await.status,
            StatusCode::NOT_FOUND
        );
    }
    let theirs = app.get("/subscriptions", Some(&stranger.token)).await;
    assert_eq!(theirs.body["items"], json!([]));
    let everyone = app
        .get("/subscriptions?limit=100", Some(&admin.token))
        .await;
    assert!(everyone.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|s| s["id"] == id.as_str()));
    // An admin cancels; cancelled is for good.
    let cancelled = act(&app, &admin, &id, "cancel").await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(
        act(&app, &customer, &id, "cancel").await.status,
        StatusCode::OK
    );
    for action in ["resume", "pause"] {
        let r = act(&app, &customer, &id, action).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{action}");
        assert_eq!(r.code(), "subscription_cancelled");
    }
    let renew = act(&app, &admin, &id, "renew").await;
    assert_eq!(renew.code(), "subscription_not_active");
    let unknown = app
        .get("/subscriptions/not-an-id", Some(&customer.token))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn subscribing_refuses_what_cannot_be_ordered_and_keeps_nothing() {
    let app = TestApp::spawn().await;
    let (_, sku) = stocked_sku(&app, 20).await;
    let customer = app.register("customer").await;
    let no_key = app
        .post(
            "/subscriptions",
            Some(&customer.token),
            weekly(&sku, 1, "tok_visa"),
        )
        .await;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_key.code(), "idempotency_key_required");
    let anonymous = app
        .request(
            Method::POST,
            "/subscriptions",
            None,
            Some(weekly(&sku, 1, "tok_visa")),
            &[("idempotency-key", "k")],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let seller = app.register("seller").await;
    let r = subscribe(&app, &seller, weekly(&sku, 1, "tok_visa"), &unique("k")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let invalid = [
        json!({"items": [], "interval": "week", "payment": {"token": "tok_visa"}, "shipping_address": address()}),
        json!({"items": [{"sku": sku, "quantity": 0}], "interval": "week", "payment": {"token": "tok_visa"}, "shipping_address": address()}),
        json!({"items": [{"sku": sku, "quantity": 1}], "interval": "year", "payment": {"token": "tok_visa"}, "shipping_address": address()}),
        json!({"items": [{"sku": sku, "quantity": 1}], "interval": "week", "payment": {"token": " "}, "shipping_address": address()}),
        json!({"items": [{"sku": sku, "quantity": 1}], "interval": "week", "payment": {"token": "tok_visa"}}),
    ];
    for body in invalid {
        let r = subscribe(&app, &customer, body.clone(), &unique("k")).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.code(), "validation_failed", "{body}");
    }
    let twice = json!({"items": [{"sku": sku, "quantity": 1}, {"sku": sku, "quantity": 2}], "interval": "week", "payment": {"token": "tok_visa"}, "shipping_address": address()});
    let r = subscribe(&app, &customer, twice, &unique("k")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "duplicate_sku");
    // A SKU nobody sells: refused by the first order, and nothing is kept,
    // so the key may be used again with a corrected request.
    let key = unique("k");
    let r = subscribe(&app, &customer, weekly("NO-SUCH-SKU", 1, "tok_visa"), &key).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.code(), "sku_unavailable");
    let list = app.get("/subscriptions", Some(&customer.token)).await;
    assert_eq!(list.body["items"], json!([]));
    let r = subscribe(&app, &customer, weekly(&sku, 1, "tok_visa"), &key).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn an_erased_customer_subscriptions_are_cancelled_and_forget_the_address() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (customer, _, sub) = subscribed(&app, "tok_visa").await;
    let id = sub["id"].as_str().expect("id").to_owned();
    settled(&app, &customer, &order_ids(&sub)[0]).await;
    let erased = app.delete("/me", Some(&customer.token)).await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT, "{:?}", erased.body);
    let after = app
        .eventually(
            "the subscription to be cancelled",
            Duration::from_secs(10),
            || async {
                let r = app
                    .get(&format!("/subscriptions/{id}"), Some(&admin.token))
                    .await;
                (r.body["status"] == "cancelled").then_some(r.body)
            },
        )
        .await;
    assert_eq!(after["shipping_address"]["name"], "erased");
    assert_eq!(after["shipping_address"]["country"], "DE");
}

/// The scheduler on two replicas at once, a week and then two on: one
/// order per period, and the schedule moves on a period each time.
#[tokio::test]
async fn two_schedulers_place_one_renewal_per_period() {
    use mercato_kernel::db::{Db, StoreConfig};
    use mercato_subscriptions::service::{SchedulerConfig, SubscriptionsService};
    use mercato_subscriptions::store::SubscriptionsStore;
    use std::sync::Arc;

    let app = TestApp::spawn().await;
    let (Some(ctx), Some(dir)) = (app.contexts.clone(), app.data_dir.as_ref()) else {
        return; // an external server's clock cannot be moved on
    };
    let (customer, _, sub) = subscribed(&app, "tok_visa").await;
    let id = sub["id"].as_str().expect("id").to_owned();
    settled(&app, &customer, &order_ids(&sub)[0]).await;
    // A second replica: its own pool on the same store, the same orders.
    let db = Db::connect(&StoreConfig {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("subscriptions.db").display()
        ),
        schema: None,
        max_connections: 4,
    })
    .await
    .expect("second pool");
    let other = Arc::new(SubscriptionsService::new(
        SubscriptionsStore::new(db.clone(), mercato_kernel::outbox::Outbox::new()),
        ctx.orders.clone(),
        SchedulerConfig::default(),
    ));
    let created: chrono::DateTime<chrono::Utc> = sub["created_at"]
        .as_str()
        .expect("created_at")
        .parse()
        .expect("a time");
    for (weeks, orders) in [(1, 2), (2, 3)] {
        let at = created + chrono::Duration::weeks(weeks) + chrono::Duration::minutes(1);
        let rounds = (0..6).map(|i| {
            let replica = if i % 2 == 0 {
                ctx.subscriptions.clone()
            } else {
                other.clone()
            };
            async move { replica.tick(at).await.expect("a round") }
        });
        let claimed: usize = futures::future::join_all(rounds).await.into_iter().sum();
        assert_eq!(claimed, 1, "week {weeks}: one renewal");
        let now = app
            .get(&format!("/subscriptions/{id}"), Some(&customer.token))
            .await;
        let ids = order_ids(&now.body);
        assert_eq!(ids.len(), orders, "week {weeks}: {:?}", now.body);
        let next: chrono::DateTime<chrono::Utc> = now.body["next_renewal_at"]
            .as_str()
            .expect("next_renewal_at")
            .parse()
            .expect("a time");
        assert_eq!(next, created + chrono::Duration::weeks(weeks + 1));
        let order = settled(&app, &customer, &ids[orders - 1]).await;
        assert_eq!(order["status"], "confirmed", "{order}");
    }
    db.close().await;
}

/// A replica that died between claiming a period's order and asking orders
/// for it: the claim stays, and a scheduler round asks again with the same
/// order id, as often as it runs, for one order.
#[tokio::test]
async fn a_claimed_order_left_unplaced_is_placed_once_by_the_scheduler() {
    use mercato_subscriptions::store::{ClaimKind, ClaimRequest};

    let app = TestApp::spawn().await;
    let Some(ctx) = app.contexts.clone() else {
        return; // an external server's replicas cannot be stopped mid-call
    };
    let (customer, _, sub) = subscribed(&app, "tok_visa").await;
    let id: uuid::Uuid = sub["id"].as_str().expect("id").parse().expect("uuid");
    settled(&app, &customer, &order_ids(&sub)[0]).await;
    let claim = ctx
        .subscriptions
        .store()
        .claim(&ClaimRequest {
            subscription_id: id,
            customer_id: customer.id.parse().expect("uuid"),
            period: 1,
            kind: ClaimKind::Renew,
            at: chrono::Utc::now(),
            advance_to: None,
        })
        .await
        .expect("claim")
        .expect("claimed");
    let order_path = format!("/orders/{}", claim.order_id);
    let missing = app.get(&order_path, Some(&customer.token)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // Not yet: the call may still be under way.
    let soon = chrono::Utc::now();
    assert_eq!(ctx.subscriptions.tick(soon).await.expect("round"), 0);
    assert_eq!(
        app.get(&order_path, Some(&customer.token)).await.status,
        StatusCode::NOT_FOUND
    );
    let later = soon + chrono::Duration::seconds(30);
    for _ in 0..3 {
        ctx.subscriptions.tick(later).await.expect("round");
    }
    let order = settled(&app, &customer, &claim.order_id.to_string()).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let now = app
        .get(&format!("/subscriptions/{id}"), Some(&customer.token))
        .await;
    assert_eq!(order_ids(&now.body).len(), 2, "{:?}", now.body);
    let all = app.get("/orders?limit=100", Some(&customer.token)).await;
    assert_eq!(
        all.body["items"].as_array().map(Vec::len),
        Some(2),
        "{:?}",
        all.body
    );
}
