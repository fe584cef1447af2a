//! A client of the public API for tests that run the real binary, and the
//! audit that every crash and fault test ends with: each order confirmed or
//! fully compensated, stock conserved, money taken at most once, each
//! confirmation sent once.

#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long an order may take to settle after the faults have stopped.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(30);

pub struct Api {
    pub client: reqwest::Client,
    /// `http://host:port/api/v1`.
    pub base: String,
}

/// A registered user of the black-box tests.
pub struct Customer {
    pub id: String,
    pub token: String,
}

impl Api {
    /// A client of the server whose root is `root` (`http://host:port`).
    pub fn new(root: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            base: format!("{root}/api/v1"),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let r = req.send().await?;
        let status = r.status();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A call that must succeed.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, v) = self
            .call(method, path, token, body, None)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    pub async fn register(&self, email: &str, role: &str) -> Customer {
        let v = self
            .ok(
                Method::POST,
                "/auth/register",
                None,
                Some(json!({"email": email, "password": "password1", "name": "N", "role": role})),
            )
            .await;
        Customer {
            id: v["user"]["id"].as_str().expect("id").into(),
            token: v["access_token"].as_str().expect("token").into(),
        }
    }

    /// A new user with a unique address.
    pub async fn sign_up(&self, role: &str) -> Customer {
        let email = format!("{role}-{}@mercato.test", uuid::Uuid::now_v7().simple());
        self.register(&email, role).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let v = self
            .ok(
                Method::POST,
                "/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        v["access_token"].as_str().expect("token").into()
    }

    /// Places an order for the cart; its id when the shop acknowledged it.
    pub async fn place_order(&self, token: &str, card: &str, key: &str) -> Option<String> {
        let body = json!({"payment": {"token": card}, "shipping_address": address()});
        match self
            .call(
                Method::POST,
                "/checkout",
                Some(token),
                Some(body),
                Some(key),
            )
            .await
        {
            Ok((StatusCode::ACCEPTED, v)) => v["id"].as_str().map(str::to_owned),
            _ => None,
        }
    }

    /// The order once it is no longer pending.
    pub async fn settled(&self, token: &str, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, order) = self
                .call(
                    Method::GET,
                    &format!("/orders/{id}"),
                    Some(token),
                    None,
                    None,
                )
                .await
                .expect("get order");
            assert_eq!(
                status,
                StatusCode::OK,
                "acknowledged order {id} was lost: {order}"
            );
            if order["status"] != "pending" {
                return order;
            }
            assert!(
                started.elapsed() < SETTLE_WITHIN,
                "order {id} never settled: {order}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn available(&self, sku: &str) -> i64 {
        self.ok(Method::GET, &format!("/inventory/{sku}"), None, None)
            .await["available"]
            .as_i64()
            .expect("available")
    }
}

pub fn address() -> Value {
    json!({"name": "A", "line1": "1 Road", "city": "Town", "postal_code": "1000", "country": "NL"})
}

/// A seller with one product of one SKU and `stock` units of it.
pub async fn shop(api: &Api, stock: i64) -> (String, String) {
    let seller = api.sign_up("seller").await;
    let sku = format!("FAULT-{}", uuid::Uuid::now_v7().simple());
    api.ok(
        Method::POST,
        "/products",
        Some(&seller.token),
        Some(json!({"title": "Sturdy mug", "category": "test", "variants": [{"sku": sku, "price": {"amount": 700, "currency": "EUR"}}]})),
    )
    .await;
    api.ok(
        Method::PUT,
        &format!("/inventory/{sku}"),
        Some(&seller.token),
        Some(json!({"quantity": stock})),
    )
    .await;
    (seller.token, sku)
}

/// Units of every confirmed order in the shop; waits until none is pending.
pub async fn sold_units(api: &Api, admin: &str) -> i64 {
    let started = Instant::now();
    loop {
        let mut sold = 0;
        let mut pending = 0;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/orders?limit=100&cursor={c}"),
                None => "/orders?limit=100".to_owned(),
            };
            let page = api.ok(Method::GET, &path, Some(admin), None).await;
            for o in page["items"].as_array().expect("items") {
                match o["status"].as_str() {
                    Some("confirmed") => {
                        sold += o["items"]
                            .as_array()
                            .expect("items")
                            .iter()
                            .filter_map(|i| i["quantity"].as_i64())
                            .sum::<i64>()
                    }
                    Some("pending") => pending += 1,
                    _ => {}
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        if pending == 0 {
            return sold;
        }
        assert!(
            started.elapsed() < SETTLE_WITHIN,
            "{pending} orders never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged order (`(token, order id)`) settled, confirmed with
/// one capture or cancelled with its money back; the stock of `sku` is
/// conserved with nothing left reserved. Returns the settled orders.
pub async fn audit(
    api: &Api,
    admin: &str,
    sku: &str,
    initial: i64,
    orders: &[(String, String)],
) -> Vec<Value> {
    let mut settled = Vec::new();
    for (token, id) in orders {
        let order = api.settled(token, id).await;
        // An order cancelled before it was paid (out of stock) has no payment.
        let (status, payment) = api
            .call(
                Method::GET,
                &format!("/payments/orders/{id}"),
                Some(admin),
                None,
                None,
            )
            .await
            .expect("get payment");
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "payment of {id}: {status} {payment}"
        );
        let count = |kind: &str| {
            payment["ledger"]
                .as_array()
                .map(|l| l.iter().filter(|e| e["kind"] == kind).count())
                .unwrap_or(0)
        };
        let captures = count("capture");
        assert!(captures <= 1, "order {id} captured {captures} times");
        match order["status"].as_str() {
            Some("confirmed") => {
                assert_eq!(captures, 1, "confirmed without a capture: {order}");
                assert_eq!(order["payment"]["status"], "captured");
            }
            Some("cancelled") => {
                assert_eq!(
                    captures,
                    count("refund"),
                    "a cancelled order kept money: {payment}"
                );
            }
            other => panic!("order {id} ended {other:?}"),
        }
        settled.push(order);
    }
    let stock = api
        .ok(Method::GET, &format!("/inventory/{sku}"), None, None)
        .await;
    // Orders whose 202 never reached their client (the process died first)
    // may exist too and are just as real: count every order in the shop.
    let confirmed_units = sold_units(api, admin).await;
    let on_hand = stock["warehouses"][0]["on_hand"].as_i64().unwrap_or(-1);
    assert_eq!(stock["reserved"], 0, "no reservation left behind: {stock}");
    assert_eq!(
        on_hand + confirmed_units,
        initial,
        "stock conserved: {stock}, {confirmed_units} sold"
    );
    assert_eq!(stock["available"], on_hand, "{stock}");
    assert!(on_hand >= 0, "{stock}");
    settled
}

/// What the notification sink at `sent` holds: messages per (user, template).
pub fn sent_messages(sent: &Path) -> HashMap<(String, String), usize> {
    let text = std::fs::read_to_string(sent).unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("each sink line is JSON");
        let key = (
            v["user_id"].as_str().unwrap_or_default().to_owned(),
            v["template"].as_str().unwrap_or_default().to_owned(),
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

/// Each customer of a confirmed order (one order per customer) gets exactly
/// one confirmation; waits for stragglers, then checks nothing came twice.
pub async fn audit_confirmations(sent: &Path, confirmed_customers: &[String]) {
    let started = Instant::now();
    loop {
        let messages = sent_messages(sent);
        let twice: Vec<_> = messages.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "notifications sent twice: {twice:?}");
        let missing = confirmed_customers
            .iter()
            .filter(|c| !messages.contains_key(&((*c).clone(), "order_confirmed".to_owned())))
            .count();
        if missing == 0 {
            return;
        }
        assert!(
            started.elapsed() < SETTLE_WITHIN,
            "{missing} confirmed customers were never notified"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
