//! Faults in a distributed cluster of the real binary: replicas killed with
//! SIGKILL during a burst of checkouts, the NATS server restarted while
//! events flow, PostgreSQL dropping every connection. Afterwards every order
//! is confirmed or fully compensated, stock is conserved, no payment is
//! captured twice, no notification is sent twice and no event is lost.

#[path = "support/blackbox.rs"]
mod blackbox;
#[path = "support/cluster.rs"]
mod cluster;

use blackbox::{audit, audit_confirmations, shop, Api, Customer};
use cluster::{Cluster, NatsServer, Options};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Customers with `1 + i % 3` units of `sku` in their carts.
async fn customers(api: &Api, sku: &str, n: usize) -> Vec<Customer> {
    let mut out = Vec::new();
    for i in 0..n {
        let c = api.sign_up("customer").await;
        api.ok(
            Method::POST,
            "/cart/items",
            Some(&c.token),
            Some(json!({"sku": sku, "quantity": 1 + i % 3})),
        )
        .await;
        out.push(c);
    }
    out
}

/// Places the order the way a careful client does: on a failure without an
/// answer (a replica died under the request) it tries again with the same
/// idempotency key, so that it gets one order however often it retries.
async fn place_with_retries(api: &Api, customer: &Customer, card: &str) -> Option<String> {
    let key = uuid::Uuid::now_v7().to_string();
    for attempt in 0..20u64 {
        let body = json!({"payment": {"token": card}, "shipping_address": blackbox::address()});
        match api
            .call(
                Method::POST,
                "/checkout",
                Some(&customer.token),
                Some(body),
                Some(&key),
            )
            .await
        {
            Ok((StatusCode::ACCEPTED, v)) => return v["id"].as_str().map(str::to_owned),
            Ok((status, v)) if status.is_client_error() && status != StatusCode::CONFLICT => {
                panic!("checkout refused: {status} {v}")
            }
            // 5xx, 409 (the same key still in flight) or no answer at all.
            _ => tokio::time::sleep(Duration::from_millis(100 + 50 * attempt)).await,
        }
    }
    None
}

/// The customers' orders, one each, however the placement went.
async fn one_order_each(api: &Api, customers: &[Customer]) {
    for c in customers {
        let page = api.ok(Method::GET, "/orders", Some(&c.token), None).await;
        let n = page["items"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(n, 1, "customer {} has {n} orders: {page}", c.id);
    }
}

fn confirmed_customers(customers: &[Customer], orders: &[Value]) -> Vec<String> {
    customers
        .iter()
        .zip(orders)
        .filter(|(_, o)| o["status"] == "confirmed")
        .map(|(c, _)| c.id.clone())
        .collect()
}

#[tokio::test]
async fn killing_an_orders_and_an_inventory_replica_mid_burst_settles_every_order() {
    let mut cluster = Cluster::start(Options {
        replicated: true,
        postgres: true,
        redis: true,
        ..Options::default()
    })
    .await;
    cluster.ready().await;
    let (admin_email, admin_password) = cluster.create_admin();
    let api = Api::new(&cluster.gateway);
    let admin = api.login(&admin_email, &admin_password).await;
    // Fewer units than the carts hold, so that some sagas compensate.
    let initial = 60;
    let (_, sku) = shop(&api, initial).await;
    let buyers = customers(&api, &sku, 40).await;

    let api_ref = &api;
    let burst = futures::future::join_all(buyers.iter().enumerate().map(|(i, c)| async move {
        tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
        let card = if i % 10 == 9 {
            "tok_decline"
        } else {
            "tok_visa"
        };
        place_with_retries(api_ref, c, card).await
    }));
    let killer = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cluster.kill("orders-0");
        cluster.kill("inventory-0");
    };
    let (placed, ()) = tokio::join!(burst, killer);
    let acknowledged: Vec<(String, String)> = buyers
        .iter()
        .zip(&placed)
        .map(|(c, id)| {
            let id = id.clone().unwrap_or_else(|| {
                panic!("customer {} never got an order:\n{}", c.id, cluster.logs())
            });
            (c.token.clone(), id)
        })
        .collect();

    // The surviving replicas finish what the dead ones held.
    let started = Instant::now();
    let orders = audit(&api, &admin, &sku, initial, &acknowledged).await;
    let status_count = |s: &str| orders.iter().filter(|o| o["status"] == s).count();
    eprintln!(
        "{} orders settled within {:?} of the burst: {} confirmed, {} cancelled",
        orders.len(),
        started.elapsed(),
        status_count("confirmed"),
        status_count("cancelled")
    );
    one_order_each(&api, &buyers).await;
    let confirmed = confirmed_customers(&buyers, &orders);
    assert!(!confirmed.is_empty(), "some orders were confirmed");
    assert!(
        confirmed.len() < buyers.len(),
        "declined cards and the short stock cancelled some"
    );
    audit_confirmations(&cluster.sent_notifications(), &confirmed).await;

    // The killed replicas come back and the shop goes on.
    cluster.restart("orders-0").await;
    cluster.restart("inventory-0").await;
    let late = customers(&api, &sku, 1).await;
    let id = place_with_retries(&api, &late[0], "tok_visa")
        .await
        .expect("an order after the restart");
    api.settled(&late[0].token, &id).await;
}

/// The cart is emptied before the order is confirmed, so that it cannot be
/// checked out again meanwhile; a cart that is down then does not hold the
/// confirmation back, and is emptied once it is back.
#[tokio::test]
async fn a_cart_down_at_the_confirmation_is_emptied_once_it_is_back() {
    let mut cluster = Cluster::start(Options {
        env: vec![(
            "MERCATO_FAILPOINT".into(),
            "saga_pause_before:empty_cart:1500".into(),
        )],
        ..Options::default()
    })
    .await;
    cluster.ready().await;
    let api = Api::new(&cluster.gateway);
    let (_, sku) = shop(&api, 5).await;
    let buyer = &customers(&api, &sku, 1).await[0];
    let id = place_with_retries(&api, buyer, "tok_visa")
        .await
        .expect("placed");
    // The saga waits before emptying the cart: take the cart away.
    cluster.kill("cart-0");
    let order = api.settled(&buyer.token, &id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert!(
        cluster
            .logs()
            .contains("the cart could not be emptied before the confirmation"),
        "the confirmation went ahead without the cart"
    );
    cluster.restart("cart-0").await;
    let started = Instant::now();
    loop {
        let cart = api.ok(Method::GET, "/cart", Some(&buyer.token), None).await;
        if cart["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the cart was not emptied: {cart}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_nats_restart_during_the_flow_loses_no_event() {
    let Some(mut nats) = NatsServer::start().await else {
        panic!("nats-server is not installed (scripts/services installs it)");
    };
    let mut cluster = Cluster::start(Options {
        nats_url: nats.url(),
        ..Options::default()
    })
    .await;
    cluster.ready().await;
    let (admin_email, admin_password) = cluster.create_admin();
    let api = Api::new(&cluster.gateway);
    let admin = api.login(&admin_email, &admin_password).await;
    let initial = 1000;
    let (seller, sku) = shop(&api, initial).await;
    let buyers = customers(&api, &sku, 24).await;

    let api_ref = &api;
    let burst = futures::future::join_all(buyers.iter().enumerate().map(|(i, c)| async move {
        tokio::time::sleep(Duration::from_millis(100 * i as u64)).await;
        place_with_retries(api_ref, c, "tok_visa").await
    }));
    let word = format!("w{}", uuid::Uuid::now_v7().simple());
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        nats.kill();
        // Written while the bus is away: the event waits in catalog's outbox.
        let product = api_ref
            .ok(
                Method::POST,
                "/products",
                Some(&seller),
                Some(json!({"title": format!("Outage kettle {word}"), "category": "test", "variants": [{"sku": format!("K-{word}"), "price": {"amount": 900, "currency": "EUR"}}]})),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nats.restart().await;
        product
    };
    let (placed, product) = tokio::join!(burst, outage);
    let acknowledged: Vec<(String, String)> = buyers
        .iter()
        .zip(&placed)
        .map(|(c, id)| {
            let id = id.clone().unwrap_or_else(|| {
                panic!("customer {} never got an order:\n{}", c.id, cluster.logs())
            });
            (c.token.clone(), id)
        })
        .collect();

    let orders = audit(&api, &admin, &sku, initial, &acknowledged).await;
    let confirmed = confirmed_customers(&buyers, &orders);
    assert_eq!(confirmed.len(), buyers.len(), "every order was confirmed");
    // order.confirmed reached notifications for every order, once.
    audit_confirmations(&cluster.sent_notifications(), &confirmed).await;
    // product.created, recorded during the outage, reached search.
    let started = Instant::now();
    loop {
        let hits = api
            .ok(Method::GET, &format!("/search?q={word}"), None, None)
            .await;
        if hits["items"][0]["product_id"] == product["id"] {
            break;
        }
        assert!(
            started.elapsed() < blackbox::SETTLE_WITHIN,
            "the product made during the outage never reached search: {hits}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_dropped_postgres_connection_is_recovered() {
    let mut cluster = Cluster::start(Options {
        postgres: true,
        ..Options::default()
    })
    .await;
    cluster.ready().await;
    let api = Api::new(&cluster.gateway);
    let (seller, sku) = shop(&api, 1_000_000).await;
    let workers = 4;
    let shoppers = customers(&api, &sku, workers).await;

    // Each worker keeps one request in flight: reads and writes of carts,
    // stock and orders, every one of them a PostgreSQL round trip.
    let stop = AtomicBool::new(false);
    let failures = AtomicUsize::new(0);
    let after_drop = AtomicUsize::new(0);
    let dropped = AtomicBool::new(false);
    let work = futures::future::join_all(shoppers.iter().enumerate().map(|(i, c)| {
        let (api, stop, failures, after_drop, dropped) =
            (&api, &stop, &failures, &after_drop, &dropped);
        let (sku, seller) = (&sku, &seller);
        async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let (method, path, token, body) = match n % 4 {
                    0 => (
                        Method::POST,
                        "/cart/items".to_owned(),
                        &c.token,
                        Some(json!({"sku": sku, "quantity": 1})),
                    ),
                    1 => (Method::GET, "/cart".to_owned(), &c.token, None),
                    2 => (
                        Method::PUT,
                        format!("/inventory/{sku}"),
                        seller,
                        Some(json!({"quantity": 1_000_000 + i as i64})),
                    ),
                    _ => (Method::GET, "/orders".to_owned(), &c.token, None),
                };
                let ok = matches!(
                    api.call(method, &path, Some(token), body, None).await,
                    Ok((status, _)) if status.is_success()
                );
                if !ok {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                if dropped.load(Ordering::SeqCst) {
                    after_drop.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }));
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let n = cluster.drop_postgres_connections().await;
        assert!(n > 0, "the services had connections to drop");
        dropped.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::SeqCst);
    };
    tokio::join!(work, chaos);
    let failed = failures.load(Ordering::SeqCst);
    eprintln!(
        "{failed} requests failed; {} were sent after the connections dropped",
        after_drop.load(Ordering::SeqCst)
    );
    assert!(
        after_drop.load(Ordering::SeqCst) > 20,
        "requests went on after the drop"
    );
    // At most the requests in flight when the connections dropped.
    assert!(
        failed <= workers,
        "{failed} requests failed, with {workers} in flight:\n{}",
        cluster.logs()
    );
}
