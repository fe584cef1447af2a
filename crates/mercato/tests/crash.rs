//! Crash tests with the real binary: SIGKILL (or an injected abort) in the
//! middle of checkouts, then a restart on the same data dir. Every
//! acknowledged order must survive and every saga must finish, confirmed or
//! fully compensated, with stock conserved and money taken at most once.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn mercato(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mercato"));
    cmd.env("MERCATO_DATA_DIR", data_dir)
        .env("MERCATO_AUTH__PASSWORD_MEMORY_KIB", "1024")
        .env("MERCATO_AUTH__PASSWORD_ITERATIONS", "1")
        .env("MERCATO_LOG", "warn")
        .env_remove("MERCATO_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

async fn start(data_dir: &Path, port: u16, failpoint: Option<&str>) -> Server {
    start_with(data_dir, port, failpoint, &[]).await
}

async fn start_with(
    data_dir: &Path,
    port: u16,
    failpoint: Option<&str>,
    env: &[(&str, &str)],
) -> Server {
    let mut cmd = mercato(data_dir);
    cmd.envs(env.iter().copied());
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")]);
    if let Some(f) = failpoint {
        cmd.env("MERCATO_FAILPOINT", f);
    }
    let child = cmd.spawn().expect("mercato starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == StatusCode::OK {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Server { child, base }
}

impl Server {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to die by itself (an injected abort).
    async fn died(&mut self) {
        let started = Instant::now();
        loop {
            if self.child.try_wait().expect("wait").is_some() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the failpoint never fired"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            base: format!("{base}/api/v1"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
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

    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, v) = self
            .call(method, path, token, body, None)
            .await
            .expect("request");
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn register(&self, email: &str, role: &str) -> (String, String) {
        let v = self
            .ok(
                reqwest::Method::POST,
                "/auth/register",
                None,
                Some(json!({"email": email, "password": "password1", "name": "N", "role": role})),
            )
            .await;
        (
            v["user"]["id"].as_str().expect("id").into(),
            v["access_token"].as_str().expect("token").into(),
        )
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let v = self
            .ok(
                reqwest::Method::POST,
                "/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        v["access_token"].as_str().expect("token").into()
    }
}

fn create_admin(data_dir: &Path) {
    let status = mercato(data_dir)
        .args([
            "admin",
            "create-user",
            "--email",
            "admin@crash.test",
            "--password",
            "admin-password",
            "--role",
            "admin",
        ])
        .status()
        .expect("admin command runs");
    assert!(status.success());
}

/// Checks every order settled, stock is conserved, and no payment was captured twice.
/// Units of every confirmed order in the shop; waits until none is pending.
async fn sold_units(api: &Api, admin: &str) -> i64 {
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
            let page = api.ok(reqwest::Method::GET, &path, Some(admin), None).await;
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
            started.elapsed() < Duration::from_secs(15),
            "{pending} orders never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn audit(api: &Api, admin: &str, sku: &str, initial: i64, orders: &[(String, String)]) {
    for (token, id) in orders {
        let started = Instant::now();
        let order = loop {
            let (status, order) = api
                .call(
                    reqwest::Method::GET,
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
                break order;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "order {id} never settled"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let payment = api
            .ok(
                reqwest::Method::GET,
                &format!("/payments/orders/{id}"),
                Some(admin),
                None,
            )
            .await;
        let captures = payment["ledger"]
            .as_array()
            .map(|l| l.iter().filter(|e| e["kind"] == "capture").count())
            .unwrap_or(0);
        assert!(captures <= 1, "order {id} captured {captures} times");
        match order["status"].as_str() {
            Some("confirmed") => {
                assert_eq!(captures, 1, "confirmed without a capture: {order}");
                assert_eq!(order["payment"]["status"], "captured");
            }
            Some("cancelled") => {
                let refunds = payment["ledger"]
                    .as_array()
                    .map(|l| l.iter().filter(|e| e["kind"] == "refund").count())
                    .unwrap_or(0);
                assert_eq!(captures, refunds, "a cancelled order kept money: {payment}");
            }
            other => panic!("order {id} ended {other:?}"),
        }
    }
    let stock = api
        .ok(
            reqwest::Method::GET,
            &format!("/inventory/{sku}"),
            None,
            None,
        )
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
    assert!(on_hand >= 0);
}

async fn shop(api: &Api, stock: i64) -> (String, String) {
    let (_, seller) = api
        .register(
            &format!("seller-{}@crash.test", uuid::Uuid::now_v7().simple()),
            "seller",
        )
        .await;
    let sku = format!("CRASH-{}", uuid::Uuid::now_v7().simple());
    api.ok(
        reqwest::Method::POST,
        "/products",
        Some(&seller),
        Some(json!({"title": "Crash mug", "category": "test", "variants": [{"sku": sku, "price": {"amount": 700, "currency": "EUR"}}]})),
    )
    .await;
    api.ok(
        reqwest::Method::PUT,
        &format!("/inventory/{sku}"),
        Some(&seller),
        Some(json!({"quantity": stock})),
    )
    .await;
    (seller, sku)
}

fn address() -> Value {
    json!({"name": "A", "line1": "1 Road", "city": "Town", "postal_code": "1000", "country": "NL"})
}

#[tokio::test]
async fn sigkill_during_a_burst_of_checkouts_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    create_admin(dir.path());
    let port = free_port();
    let mut server = start(dir.path(), port, None).await;
    let api = Api::new(&server.base);
    let (_, sku) = shop(&api, 1000).await;
    let mut customers = Vec::new();
    for i in 0..40 {
        let (_, token) = api
            .register(
                &format!("c{i}-{}@crash.test", uuid::Uuid::now_v7().simple()),
                "customer",
            )
            .await;
        api.ok(
            reqwest::Method::POST,
            "/cart/items",
            Some(&token),
            Some(json!({"sku": sku, "quantity": 1 + i % 3})),
        )
        .await;
        customers.push(token);
    }
    // Fire every checkout at once and kill the server while they are in flight.
    let api_ref = &api;
    let burst =
        futures::future::join_all(customers.iter().enumerate().map(|(i, token)| async move {
            tokio::time::sleep(Duration::from_millis(2 * i as u64)).await;
            let body = json!({"payment": {"token": "tok_visa"}, "shipping_address": address()});
            match api_ref
                .call(
                    reqwest::Method::POST,
                    "/checkout",
                    Some(token),
                    Some(body),
                    Some(&format!("k-{i}")),
                )
                .await
            {
                Ok((StatusCode::ACCEPTED, v)) => {
                    Some((token.clone(), v["id"].as_str().expect("id").to_owned()))
                }
                _ => None,
            }
        }));
    let killer = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        server.kill();
    };
    let (acknowledged, ()) = tokio::join!(burst, killer);
    let acknowledged: Vec<(String, String)> = acknowledged.into_iter().flatten().collect();
    assert!(
        !acknowledged.is_empty(),
        "some checkouts were acknowledged before the kill"
    );

    let started = Instant::now();
    let server = start(dir.path(), port, None).await;
    let ready_in = started.elapsed();
    eprintln!(
        "restarted and ready in {ready_in:?}; {} orders acknowledged before the kill",
        acknowledged.len()
    );
    let api = Api::new(&server.base);
    let admin = api.login("admin@crash.test", "admin-password").await;
    audit(&api, &admin, &sku, 1000, &acknowledged).await;
}

/// For every saga step: the process dies right after the step's effect, the
/// restarted process resumes the saga, and the effect happened once.
#[tokio::test]
async fn a_saga_resumes_after_a_crash_at_every_step() {
    let cases = [
        ("reserve", "tok_visa", "confirmed"),
        ("pay", "tok_visa", "confirmed"),
        ("commit", "tok_visa", "confirmed"),
        ("confirm", "tok_visa", "confirmed"),
        ("clear_cart", "tok_visa", "confirmed"),
        ("pay", "tok_decline", "cancelled"),
        ("refund_payment", "tok_decline", "cancelled"),
        ("release_stock", "tok_decline", "cancelled"),
        ("cancel_order", "tok_decline", "cancelled"),
    ];
    for (step, token, outcome) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        create_admin(dir.path());
        let port = free_port();
        let mut server = start(dir.path(), port, Some(&format!("saga_crash_after:{step}"))).await;
        let api = Api::new(&server.base);
        let (_, sku) = shop(&api, 10).await;
        let (_, customer) = api
            .register(
                &format!("c-{}@crash.test", uuid::Uuid::now_v7().simple()),
                "customer",
            )
            .await;
        api.ok(
            reqwest::Method::POST,
            "/cart/items",
            Some(&customer),
            Some(json!({"sku": sku, "quantity": 2})),
        )
        .await;
        let (status, order) = api
            .call(
                reqwest::Method::POST,
                "/checkout",
                Some(&customer),
                Some(json!({"payment": {"token": token}, "shipping_address": address()})),
                Some("once"),
            )
            .await
            .expect("checkout");
        assert_eq!(status, StatusCode::ACCEPTED, "{step}: {order}");
        let id = order["id"].as_str().expect("id").to_owned();
        server.died().await;

        let server = start(dir.path(), port, None).await;
        let api = Api::new(&server.base);
        let admin = api.login("admin@crash.test", "admin-password").await;
        audit(&api, &admin, &sku, 10, &[(customer.clone(), id.clone())]).await;
        let order = api
            .ok(
                reqwest::Method::GET,
                &format!("/orders/{id}"),
                Some(&customer),
                None,
            )
            .await;
        assert_eq!(order["status"], outcome, "crash after {step}: {order}");
        let cart = api
            .ok(reqwest::Method::GET, "/cart", Some(&customer), None)
            .await;
        let expected_lines = if outcome == "confirmed" { 0 } else { 1 };
        assert_eq!(
            cart["items"].as_array().map(Vec::len),
            Some(expected_lines),
            "crash after {step}: {cart}"
        );
    }
}

/// The commit step fails (the reservation expired while the payment was
/// taken): the payment is refunded, nothing stays reserved, and the order is
/// cancelled.
#[tokio::test]
async fn a_failed_commit_refunds_the_payment_and_cancels() {
    let dir = tempfile::tempdir().expect("temp dir");
    create_admin(dir.path());
    let port = free_port();
    let server = start_with(
        dir.path(),
        port,
        Some("saga_pause_before:commit:400"),
        &[
            ("MERCATO_ORDERS__RESERVATION_TTL_SECS", "0"),
            ("MERCATO_INVENTORY__RESERVATION_SWEEP_MS", "20"),
        ],
    )
    .await;
    let api = Api::new(&server.base);
    let admin = api.login("admin@crash.test", "admin-password").await;
    let (_, sku) = shop(&api, 10).await;
    let (_, customer) = api
        .register(
            &format!("c-{}@crash.test", uuid::Uuid::now_v7().simple()),
            "customer",
        )
        .await;
    api.ok(
        reqwest::Method::POST,
        "/cart/items",
        Some(&customer),
        Some(json!({"sku": sku, "quantity": 3})),
    )
    .await;
    let (status, order) = api
        .call(
            reqwest::Method::POST,
            "/checkout",
            Some(&customer),
            Some(json!({"payment": {"token": "tok_visa"}, "shipping_address": address()})),
            Some("expiring"),
        )
        .await
        .expect("checkout");
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = order["id"].as_str().expect("id").to_owned();
    audit(&api, &admin, &sku, 10, &[(customer.clone(), id.clone())]).await;
    let order = api
        .ok(
            reqwest::Method::GET,
            &format!("/orders/{id}"),
            Some(&customer),
            None,
        )
        .await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], "out_of_stock");
    assert_eq!(order["payment"]["status"], "refunded");
    let payment = api
        .ok(
            reqwest::Method::GET,
            &format!("/payments/orders/{id}"),
            Some(&admin),
            None,
        )
        .await;
    let amounts: Vec<i64> = payment["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|e| e["amount"]["amount"].as_i64())
        .collect();
    assert_eq!(
        amounts,
        vec![2100, -2100],
        "captured, then refunded: {payment}"
    );
}
