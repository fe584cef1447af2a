//! Notifications: order events on the bus become one notification each for
//! the order's customer, delivered to the local sink and listed through
//! `GET /notifications`.

use crate::support::{TestApp, User};
use mercato::app::Contexts;
use mercato_contracts::events::{OrderConfirmed, OrderRefunded, OrderShipped};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::{Currency, Envelope, Money};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// The in-process contexts; `None` against an external server, where the
/// bus cannot be reached and these tests have nothing to drive.
fn contexts(app: &TestApp) -> Option<Contexts> {
    if app.contexts.is_none() {
        eprintln!("skipped: needs the in-process application to publish on its bus");
    }
    app.contexts.clone()
}

fn customer_id(user: &User) -> Uuid {
    Uuid::parse_str(&user.id).expect("user id is a uuid")
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").expect("currency"))
}

fn order_event<E: DomainEvent>(order_id: Uuid, event: &E) -> Envelope {
    Envelope::new("orders", order_id.to_string(), event).expect("envelope")
}

fn confirmed(user: &User, order_id: Uuid, total: i64) -> Envelope {
    order_event(
        order_id,
        &OrderConfirmed {
            order_id,
            customer_id: customer_id(user),
            items: vec![],
            total: eur(total),
        },
    )
}

async fn list(app: &TestApp, user: &User, query: &str) -> Value {
    let r = app
        .get(&format!("/notifications{query}"), Some(&user.token))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until the user has `n` notifications, all sent.
async fn all_sent(app: &TestApp, user: &User, n: usize) -> Vec<Value> {
    app.eventually(
        &format!("{n} notifications sent"),
        Duration::from_secs(5),
        || async {
            let items = items(&list(app, user, "?limit=100").await);
            (items.len() == n && items.iter().all(|i| i["status"] == "sent")).then_some(items)
        },
    )
    .await
}

fn sink_lines(app: &TestApp) -> Vec<Value> {
    let dir = app.data_dir.as_ref().expect("in-process data dir");
    let text =
        std::fs::read_to_string(dir.path().join("notifications/sent.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[tokio::test]
async fn a_redelivered_order_confirmation_makes_one_notification_sent_once() {
    let app = TestApp::spawn().await;
    let Some(ctx) = contexts(&app) else { return };
    let user = app.register("customer").await;
    let order_id = Uuid::now_v7();
    let env = confirmed(&user, order_id, 1999);
    for _ in 0..3 {
        ctx.bus
            .publish(std::slice::from_ref(&env))
            .await
            .expect("published");
    }
    // The embedded bus drops a re-published id, so redelivery is also
    // simulated straight through the consumer, as a bus that delivers at
    // least once may do.
    app.eventually(
        "the notification is created",
        Duration::from_secs(5),
        || async { (!items(&list(&app, &user, "").await).is_empty()).then_some(()) },
    )
    .await;
    for _ in 0..2 {
        ctx.notifications
            .on_order_event(&env)
            .await
            .expect("redelivered event handled");
    }

    let sent = all_sent(&app, &user, 1).await;
    let n = &sent[0];
    assert_eq!(n["template"], "order_confirmed");
    assert_eq!(n["channel"], "email");
    assert_eq!(n["order_id"], order_id.to_string());
    assert!(
        n["subject"]
            .as_str()
            .is_some_and(|s| s.contains(&order_id.to_string())),
        "{n:?}"
    );
    assert!(n["id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(n["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let keys: Vec<&str> = n
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "id",
        "channel",
        "template",
        "subject",
        "status",
        "order_id",
        "created_at",
    ] {
        assert!(keys.contains(&key), "missing {key} in {n:?}");
    }

    // Give a stray second delivery the time to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(items(&list(&app, &user, "").await).len(), 1);
    let lines: Vec<Value> = sink_lines(&app)
        .into_iter()
        .filter(|l| l["notification_id"] == n["id"])
        .collect();
    assert_eq!(lines.len(), 1, "sent.jsonl: {lines:?}");
    assert_eq!(lines[0]["to"]["email"], user.email.as_str());
    assert_eq!(lines[0]["to"]["name"], "Test User");
    let body = lines[0]["body"].as_str().expect("body");
    assert!(body.contains("Hello Test User,"), "{body}");
    assert!(body.contains("19.99 EUR"), "{body}");
}

#[tokio::test]
async fn notifications_need_a_signed_in_caller() {
    let app = TestApp::spawn().await;
    let anonymous = app.get("/notifications", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "unauthorized");
    let forged = app.get("/notifications", Some("not-a-token")).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_user_sees_only_their_own_notifications() {
    let app = TestApp::spawn().await;
    let Some(ctx) = contexts(&app) else { return };
    let (ada, bob) = (
        app.register("customer").await,
        app.register("customer").await,
    );
    let (ada_order, bob_order) = (Uuid::now_v7(), Uuid::now_v7());
    let shipped = order_event(
        bob_order,
        &OrderShipped {
            order_id: bob_order,
            customer_id: customer_id(&bob),
        },
    );
    ctx.bus
        .publish(&[confirmed(&ada, ada_order, 500), shipped])
        .await
        .expect("published");

    let ada_items = all_sent(&app, &ada, 1).await;
    let bob_items = all_sent(&app, &bob, 1).await;
    assert_eq!(ada_items[0]["order_id"], ada_order.to_string());
    assert_eq!(ada_items[0]["template"], "order_confirmed");
    assert_eq!(bob_items[0]["order_id"], bob_order.to_string());
    assert_eq!(bob_items[0]["template"], "order_shipped");

    let stranger = app.register("customer").await;
    assert!(items(&list(&app, &stranger, "").await).is_empty());
}

#[tokio::test]
async fn notifications_are_listed_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let Some(ctx) = contexts(&app) else { return };
    let user = app.register("customer").await;
    let order_id = Uuid::now_v7();
    let events = [
        confirmed(&user, order_id, 4200),
        order_event(
            order_id,
            &OrderShipped {
                order_id,
                customer_id: customer_id(&user),
            },
        ),
        order_event(
            order_id,
            &OrderRefunded {
                order_id,
                customer_id: customer_id(&user),
                amount: eur(4200),
            },
        ),
    ];
    ctx.bus.publish(&events).await.expect("published");
    all_sent(&app, &user, 3).await;

    let first = list(&app, &user, "?limit=2").await;
    let templates = |page: &Value| -> Vec<String> {
        items(page)
            .iter()
            .map(|i| i["template"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(templates(&first), vec!["order_refunded", "order_shipped"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = list(&app, &user, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(templates(&second), vec!["order_confirmed"]);
    assert!(second["next_cursor"].is_null());

    let bad_cursor = app
        .get("/notifications?cursor=%25%25", Some(&user.token))
        .await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_cursor.code(), "invalid_cursor");
    let zero = app.get("/notifications?limit=0", Some(&user.token)).await;
    assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Any cursor of the documented shape starts a page somewhere; any limit
    // from 1 up is served as at most 100.
    for query in [
        "?cursor=__main__",
        "?cursor=AB",
        "?cursor=",
        "?limit=4294967296",
        "?limit=9223372036854775807",
    ] {
        let r = app
            .get(&format!("/notifications{query}"), Some(&user.token))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {:?}", r.body);
    }
    let r = app
        .get(
            "/notifications?limit=9223372036854775808",
            Some(&user.token),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "beyond int64");
    assert_eq!(r.code(), "invalid_query");
}
