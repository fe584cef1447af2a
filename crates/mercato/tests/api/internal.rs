//! The internal endpoints and the HTTP implementations of the client traits
//! (distributed mode), driven against a real server with a service token.

use crate::support::{unique, TestApp, User};
use mercato_contracts::clients::{
    CartClient, CatalogClient, ChargeOutcome, ClientError, InventoryClient, PaymentsClient,
    RefundOutcome, ReserveOutcome,
};
use mercato_contracts::http::{
    HttpCartClient, HttpCatalogClient, HttpInventoryClient, HttpPaymentsClient, ServiceClient,
    ServiceConfig,
};
use mercato_contracts::types::SkuQuantity;
use mercato_kernel::event::{with_correlation, Correlation};
use mercato_kernel::{Currency, Money};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

const TOKEN: &str = "internal-test-token-0123456789";

async fn spawn() -> TestApp {
    TestApp::spawn_with(|s| s.internal.token = Some(TOKEN.into())).await
}

fn service(
    name: &'static str,
    bases: &[String],
    token: &str,
    config: ServiceConfig,
) -> ServiceClient {
    ServiceClient::new(name, bases, token, config).expect("service client")
}

fn fast() -> ServiceConfig {
    ServiceConfig {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        attempts: 2,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(20),
        ..Default::default()
    }
}

fn one(sku: &str, quantity: i64) -> Vec<SkuQuantity> {
    vec![SkuQuantity {
        sku: sku.to_owned(),
        quantity,
    }]
}

/// A seller with one product of one fresh SKU priced 5.00, with `on_hand` in stock.
async fn stocked_sku(app: &TestApp, on_hand: i64) -> (User, String) {
    let seller = app.register("seller").await;
    let sku = unique("INT");
    app.create_product(&seller, "c", &[(&sku, 500)]).await;
    let r = app
        .put(
            &format!("/inventory/{sku}"),
            Some(&seller.token),
            json!({"quantity": on_hand}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    (seller, sku)
}

async fn stock(app: &TestApp, sku: &str) -> (i64, i64) {
    let r = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    (
        r.body["available"].as_i64().expect("available"),
        r.body["reserved"].as_i64().expect("reserved"),
    )
}

#[tokio::test]
async fn catalog_answers_sku_lookups_over_http() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let app = spawn().await;
    let (seller, sku) = stocked_sku(&app, 1).await;
    let catalog = HttpCatalogClient(service(
        "catalog",
        std::slice::from_ref(&app.base),
        TOKEN,
        fast(),
    ));

    let info = catalog.sku(&sku).await.expect("lookup").expect("known SKU");
    assert_eq!(info.sku, sku);
    assert_eq!(info.seller_id.to_string(), seller.id);
    assert_eq!(info.price.amount, 500);

    assert_eq!(catalog.sku(&unique("NOPE")).await.expect("lookup"), None);
    // A SKU that is not a plain path segment still reaches the endpoint intact.
    assert_eq!(catalog.sku("a/b c?d").await.expect("lookup"), None);
}

#[tokio::test]
async fn inventory_reserves_commits_and_restocks_over_http() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let app = spawn().await;
    let (_, sku) = stocked_sku(&app, 10).await;
    let inventory = HttpInventoryClient(service(
        "inventory",
        std::slice::from_ref(&app.base),
        TOKEN,
        fast(),
    ));
    let ttl = Duration::from_secs(60);

    let id = Uuid::now_v7();
    let flow = Correlation {
        correlation_id: Some(unique("flow")),
        causation_id: None,
    };
    let outcome = with_correlation(flow.clone(), inventory.reserve(id, &one(&sku, 3), ttl))
        .await
        .expect("reserve");
    assert_eq!(outcome, ReserveOutcome::Reserved);
    assert_eq!(stock(&app, &sku).await, (7, 3));
    // Idempotent by reservation id: the same answer, nothing reserved twice.
    assert_eq!(
        inventory
            .reserve(id, &one(&sku, 3), ttl)
            .await
            .expect("reserve again"),
        ReserveOutcome::Reserved
    );
    assert_eq!(stock(&app, &sku).await, (7, 3));

    // The callee's events belong to the caller's flow.
    let ctx = app.contexts.as_ref().expect("in-process app");
    let reserved = app
        .eventually(
            "inventory.reserved is published",
            Duration::from_secs(5),
            || async {
                ctx.log
                    .read(0, 100_000)
                    .await
                    .expect("event log")
                    .into_iter()
                    .map(|(_, e)| e)
                    .find(|e| e.event_type == "inventory.reserved" && e.subject == id.to_string())
            },
        )
        .await;
    assert_eq!(reserved.correlation_id, flow.correlation_id);

    assert_eq!(
        inventory
            .reserve(Uuid::now_v7(), &one(&sku, 100), ttl)
            .await
            .expect("reserve too much"),
        ReserveOutcome::OutOfStock { sku: sku.clone() }
    );
    assert_eq!(stock(&app, &sku).await, (7, 3));

    inventory.commit(id).await.expect("commit");
    inventory.commit(id).await.expect("commit is idempotent");
    assert_eq!(stock(&app, &sku).await, (7, 0));
    inventory.restock(id).await.expect("restock");
    inventory.restock(id).await.expect("restock is idempotent");
    assert_eq!(stock(&app, &sku).await, (10, 0));

    // A released reservation cannot be sold: a definite failure, as in process.
    let other = Uuid::now_v7();
    inventory
        .reserve(other, &one(&sku, 2), ttl)
        .await
        .expect("reserve");
    assert_eq!(stock(&app, &sku).await, (8, 2));
    inventory.release(other).await.expect("release");
    inventory
        .release(other)
        .await
        .expect("release is idempotent");
    assert_eq!(stock(&app, &sku).await, (10, 0));
    let refused = inventory.commit(other).await;
    assert!(
        matches!(refused, Err(ClientError::Failed("inventory", _))),
        "{refused:?}"
    );

    // The raw answer carries the documented code.
    let r = app
        .client
        .post(format!(
            "{}/internal/v1/reservations/{other}/commit",
            app.base
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "reservation_not_committable");
}

#[tokio::test]
async fn payments_charge_and_refund_over_http() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let app = spawn().await;
    let admin = app.admin().await;
    let payments = HttpPaymentsClient(service(
        "payments",
        std::slice::from_ref(&app.base),
        TOKEN,
        fast(),
    ));
    let eur = Currency::parse("EUR").expect("currency");
    let amount = Money::new(2500, eur);
    let customer = Uuid::now_v7();

    let order = Uuid::now_v7();
    let charged = payments
        .charge(order, customer, &amount, "tok_visa")
        .await
        .expect("charge");
    let ChargeOutcome::Captured { payment_id } = charged.clone() else {
        panic!("expected a capture, got {charged:?}");
    };
    assert_eq!(
        payments
            .charge(order, customer, &amount, "tok_visa")
            .await
            .expect("charge again"),
        charged,
        "a repeated charge returns the first outcome"
    );
    let r = app
        .get(&format!("/payments/orders/{order}"), Some(&admin.token))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["intent"]["id"], payment_id.to_string());
    assert_eq!(r.body["intent"]["status"], "captured");
    assert_eq!(
        r.body["intent"]["amount"],
        json!({"amount": 2500, "currency": "EUR"})
    );

    assert_eq!(
        payments.refund(order).await.expect("refund"),
        RefundOutcome::Refunded
    );
    assert_eq!(
        payments.refund(order).await.expect("refund again"),
        RefundOutcome::Refunded
    );
    let r = app
        .get(&format!("/payments/orders/{order}"), Some(&admin.token))
        .await;
    assert_eq!(r.body["intent"]["status"], "refunded", "{:?}", r.body);

    let declined_order = Uuid::now_v7();
    let declined = payments
        .charge(declined_order, customer, &amount, "tok_decline")
        .await
        .expect("charge");
    assert!(
        matches!(declined, ChargeOutcome::Declined { .. }),
        "{declined:?}"
    );
    assert_eq!(
        payments.refund(declined_order).await.expect("refund"),
        RefundOutcome::NothingTaken
    );
    assert_eq!(
        payments
            .refund(Uuid::now_v7())
            .await
            .expect("refund of nothing"),
        RefundOutcome::NothingTaken
    );
}

#[tokio::test]
async fn cart_lines_and_checkout_over_http() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let app = spawn().await;
    let (_, sku) = stocked_sku(&app, 10).await;
    let customer = app.register("customer").await;
    let r = app
        .post(
            "/cart/items",
            Some(&customer.token),
            json!({"sku": sku, "quantity": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let cart = HttpCartClient(service(
        "cart",
        std::slice::from_ref(&app.base),
        TOKEN,
        fast(),
    ));
    let customer_id: Uuid = customer.id.parse().expect("uuid");

    let lines = cart.contents(customer_id).await.expect("lines").lines;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].sku, sku);
    assert_eq!(lines[0].quantity, 2);
    assert_eq!(lines[0].line_total.amount, 1000);

    let order = Uuid::now_v7();
    cart.checked_out(customer_id, order, &one(&sku, 2))
        .await
        .expect("checked out");
    cart.checked_out(customer_id, order, &one(&sku, 2))
        .await
        .expect("checked out is idempotent");
    let r = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["items"], json!([]));
    assert!(cart
        .contents(customer_id)
        .await
        .expect("lines")
        .lines
        .is_empty());
}

#[tokio::test]
async fn internal_endpoints_require_the_service_token() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let app = spawn().await;
    let url = format!("{}/internal/v1/skus/anything", app.base);
    for auth in [None, Some("Bearer wrong-token"), Some(TOKEN)] {
        let mut req = app.client.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.expect("sent");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "auth {auth:?}");
        let body: Value = r.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let r = app
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A client with the wrong token gets no verdict on the operation.
    let catalog = HttpCatalogClient(service(
        "catalog",
        std::slice::from_ref(&app.base),
        "wrong-token",
        fast(),
    ));
    let e = catalog.sku("anything").await;
    assert!(
        matches!(e, Err(ClientError::Unavailable("catalog", _))),
        "{e:?}"
    );

    // Not part of the public API description.
    let r = app.get("/openapi.json", None).await;
    let paths = r.body["paths"].as_object().expect("paths");
    assert!(
        paths.keys().all(|p| !p.contains("internal")),
        "{:?}",
        paths.keys()
    );
}

#[tokio::test]
async fn without_a_token_the_internal_endpoints_are_not_served() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(format!("{}/internal/v1/skus/anything", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let catalog = HttpCatalogClient(service(
        "catalog",
        std::slice::from_ref(&app.base),
        TOKEN,
        fast(),
    ));
    let e = catalog.sku("anything").await;
    assert!(
        matches!(e, Err(ClientError::Unavailable("catalog", _))),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_unreachable_replica_is_unavailable_quickly() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let catalog = HttpCatalogClient(service("catalog", &[dead], TOKEN, fast()));
    let started = Instant::now();
    let e = catalog.sku("anything").await;
    assert!(
        matches!(e, Err(ClientError::Unavailable("catalog", _))),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_hung_replica_times_out() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hung = format!("http://{}", listener.local_addr().expect("addr"));
    // Accepts connections and never answers on them.
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let inventory = HttpInventoryClient(service(
        "inventory",
        std::slice::from_ref(&hung),
        TOKEN,
        fast(),
    ));
    let started = Instant::now();
    let e = inventory.commit(Uuid::now_v7()).await;
    assert!(matches!(e, Err(ClientError::Timeout("inventory"))), "{e:?}");
    // Two attempts of 300 ms and a short pause.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // When the first time-out opens the circuit, the call still reports the
    // time-out (the outcome is unknown), and later calls fail fast.
    let inventory = HttpInventoryClient(service(
        "inventory",
        &[hung],
        TOKEN,
        ServiceConfig {
            breaker_threshold: 1,
            breaker_cool_down: Duration::from_secs(60),
            ..fast()
        },
    ));
    let e = inventory.commit(Uuid::now_v7()).await;
    assert!(matches!(e, Err(ClientError::Timeout("inventory"))), "{e:?}");
    let started = Instant::now();
    let e = inventory.release(Uuid::now_v7()).await;
    assert!(
        matches!(e, Err(ClientError::Unavailable("inventory", _))),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    server.abort();
}

#[tokio::test]
async fn calls_fail_over_from_a_dead_replica() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    let app = spawn().await;
    let (_, sku) = stocked_sku(&app, 1).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let catalog = HttpCatalogClient(service(
        "catalog",
        &[dead, app.base.clone()],
        TOKEN,
        ServiceConfig {
            breaker_threshold: 1,
            breaker_cool_down: Duration::from_secs(60),
            ..fast()
        },
    ));
    for _ in 0..6 {
        let info = catalog.sku(&sku).await.expect("a live replica answers");
        assert_eq!(info.map(|i| i.sku), Some(sku.clone()));
    }
}

/// A replica that answers its n-th request (from 0) with `answers[min(n, last)]`
/// and counts requests.
async fn scripted_replica(
    answers: Vec<(u16, &'static str)>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let (status, body) = answers[n.min(answers.len() - 1)];
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (base, count)
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    if crate::support::external() {
        return; // the internal endpoints of an in-process server
    }
    use std::sync::atomic::Ordering;
    let unavailable = r#"{"error":{"code":"unavailable","message":"busy"}}"#;
    let (base, count) =
        scripted_replica(vec![(503, unavailable), (200, r#"{"outcome":"refunded"}"#)]).await;
    let payments = HttpPaymentsClient(service("payments", &[base], TOKEN, fast()));
    assert_eq!(
        payments.refund(Uuid::now_v7()).await.expect("refund"),
        RefundOutcome::Refunded
    );
    assert_eq!(count.load(Ordering::SeqCst), 2, "the 503 was retried once");

    let (base, count) = scripted_replica(vec![(
        422,
        r#"{"error":{"code":"call_failed","message":"payments failed: no"}}"#,
    )])
    .await;
    let payments = HttpPaymentsClient(service("payments", &[base], TOKEN, fast()));
    let e = payments.refund(Uuid::now_v7()).await;
    assert!(
        matches!(&e, Err(ClientError::Failed("payments", why)) if why.contains("call_failed")),
        "{e:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "a 4xx is never retried");

    let (base, count) = scripted_replica(vec![(503, unavailable)]).await;
    let payments = HttpPaymentsClient(service("payments", &[base], TOKEN, fast()));
    let e = payments.refund(Uuid::now_v7()).await;
    assert!(
        matches!(e, Err(ClientError::Unavailable("payments", _))),
        "{e:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2, "every attempt was made");
}
