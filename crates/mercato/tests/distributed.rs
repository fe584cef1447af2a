//! Distributed mode with the real binary: every context its own process
//! (`serve --service <context>`), events on JetStream, and a gateway in
//! front. A purchase through the gateway must travel across the processes
//! as it does in one.

#[path = "support/mod.rs"]
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVICES: [&str; 8] = [
    "identity",
    "catalog",
    "search",
    "cart",
    "inventory",
    "orders",
    "payments",
    "notifications",
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The processes of one cluster; killed when the test ends, however it ends.
struct Cluster {
    children: Vec<Child>,
    gateway: String,
    dir: tempfile::TempDir,
    nats_url: String,
    prefix: String,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let nats_url = std::env::var("MERCATO_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let prefix = format!("dist{}", uuid::Uuid::now_v7().simple());
        let ports: Vec<(&str, u16)> = SERVICES.iter().map(|s| (*s, free_port())).collect();
        let gateway_port = free_port();
        let mut children = Vec::new();
        for (service, port) in ports.iter().copied().chain([("gateway", gateway_port)]) {
            let data_dir = dir.path().join(service);
            let log =
                std::fs::File::create(dir.path().join(format!("{service}.log"))).expect("log file");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mercato"));
            cmd.args([
                "serve",
                "--service",
                service,
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data_dir)
            .env("MERCATO_BUS__NATS_URL", &nats_url)
            .env("MERCATO_BUS__PREFIX", &prefix)
            .env("MERCATO_INTERNAL__TOKEN", "a-service-token-for-tests")
            .env(
                "MERCATO_AUTH__JWT_SECRET",
                "a-jwt-secret-shared-by-every-service",
            )
            .env("MERCATO_AUTH__PASSWORD_MEMORY_KIB", "1024")
            .env("MERCATO_AUTH__PASSWORD_ITERATIONS", "1")
            .env("MERCATO_HTTP__RATE_LIMIT_PER_SECOND", "0")
            .env("MERCATO_LOG", "warn")
            .env_remove("MERCATO_STORE__URL")
            .env_remove("MERCATO_CACHE__REDIS_URL")
            .env_remove("MERCATO_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(log);
            for (target, target_port) in &ports {
                cmd.env(
                    format!("MERCATO_SERVICES__{}", target.to_uppercase()),
                    format!("http://127.0.0.1:{target_port}"),
                );
            }
            children.push(cmd.spawn().expect("mercato starts"));
        }
        Cluster {
            children,
            gateway: format!("http://127.0.0.1:{gateway_port}/api/v1"),
            dir,
            nats_url,
            prefix,
        }
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for service in SERVICES.iter().chain(&["gateway"]) {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{service}.log")))
                .unwrap_or_default();
            if !text.is_empty() {
                all.push_str(&format!("--- {service}\n{text}\n"));
            }
        }
        all
    }

    /// Waits until the gateway sees a ready replica of every context.
    async fn ready(&mut self, client: &reqwest::Client) {
        let url = self.gateway.replace("/api/v1", "/readyz");
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            for child in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("a service exited ({status}):\n{}", self.logs());
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the cluster did not become ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        support::delete_streams(&self.nats_url, &self.prefix);
    }
}

struct Api<'a> {
    base: &'a str,
    client: reqwest::Client,
}

impl Api<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
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
        let r = req.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, v) = self.call(method, path, token, body, None).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn register(&self, role: &str) -> String {
        let email = format!("{role}-{}@dist.test", uuid::Uuid::now_v7().simple());
        let v = self
            .ok(
                Method::POST,
                "/auth/register",
                None,
                Some(json!({"email": email, "password": "password1", "name": "N", "role": role})),
            )
            .await;
        v["access_token"].as_str().expect("token").into()
    }

    /// Checks out the cart and waits until the order has settled.
    async fn checkout(&self, token: &str, card: &str) -> Value {
        let (status, placed) = self
            .call(
                Method::POST,
                "/checkout",
                Some(token),
                Some(json!({"payment": {"token": card}, "shipping_address": address()})),
                Some(&uuid::Uuid::now_v7().to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
        let id = placed["id"].as_str().expect("order id").to_owned();
        eventually("the order settles", || async {
            let order = self
                .ok(Method::GET, &format!("/orders/{id}"), Some(token), None)
                .await;
            (order["status"] != "pending").then_some(order)
        })
        .await
    }

    async fn available(&self, sku: &str) -> i64 {
        self.ok(Method::GET, &format!("/inventory/{sku}"), None, None)
            .await["available"]
            .as_i64()
            .expect("available")
    }
}

fn address() -> Value {
    json!({"name": "A", "line1": "1 Road", "city": "Town", "postal_code": "1000", "country": "NL"})
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not reached in time: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_purchase_travels_through_the_gateway_across_service_processes() {
    let mut cluster = Cluster::start();
    let client = reqwest::Client::new();
    cluster.ready(&client).await;
    let api = Api {
        base: &cluster.gateway,
        client,
    };

    // The gateway's own answers.
    let (status, body) = api
        .call(Method::GET, "/nothing-here", None, None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "route_not_found");
    let doc = api
        .client
        .get(cluster.gateway.replace("/api/v1", "/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json::<Value>()
        .await
        .expect("openapi json");
    for path in [
        "/api/v1/auth/register",
        "/api/v1/products",
        "/api/v1/checkout",
        "/api/v1/search",
        "/api/v1/notifications",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from {doc}"
        );
    }

    let seller = api.register("seller").await;
    let sku = format!("DIST-{}", uuid::Uuid::now_v7().simple());
    let word = format!("w{}", uuid::Uuid::now_v7().simple());
    let product = api.ok(
        Method::POST,
        "/products",
        Some(&seller),
        Some(json!({"title": format!("Distributed mug {word}"), "category": "test", "variants": [{"sku": sku, "price": {"amount": 700, "currency": "EUR"}}]})),
    )
    .await;
    // Inventory asks catalog, another process, whether the SKU exists.
    api.ok(
        Method::PUT,
        &format!("/inventory/{sku}"),
        Some(&seller),
        Some(json!({"quantity": 5})),
    )
    .await;

    let customer = api.register("customer").await;
    api.ok(
        Method::POST,
        "/cart/items",
        Some(&customer),
        Some(json!({"sku": sku, "quantity": 2})),
    )
    .await;
    let cart = api.ok(Method::GET, "/cart", Some(&customer), None).await;
    assert_eq!(cart["total"]["amount"], 1400, "priced by catalog: {cart}");

    let order = api.checkout(&customer, "tok_visa").await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(api.available(&sku).await, 3);
    // The saga cleared the cart over HTTP.
    eventually("the cart is emptied", || async {
        let cart = api.ok(Method::GET, "/cart", Some(&customer), None).await;
        cart["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;
    // order.confirmed reached the notifications process through JetStream.
    eventually("the customer is notified", || async {
        let page = api
            .ok(Method::GET, "/notifications", Some(&customer), None)
            .await;
        page["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|n| n["template"] == "order_confirmed"))
            .then_some(())
    })
    .await;
    // product.created reached the search process.
    eventually("the product is searchable", || async {
        let hits = api
            .ok(Method::GET, &format!("/search?q={word}"), None, None)
            .await;
        (hits["items"][0]["product_id"] == product["id"]).then_some(())
    })
    .await;

    // A declined card: the order is cancelled and the stock comes back.
    api.ok(
        Method::POST,
        "/cart/items",
        Some(&customer),
        Some(json!({"sku": sku, "quantity": 1})),
    )
    .await;
    let declined = api.checkout(&customer, "tok_decline").await;
    assert_eq!(declined["status"], "cancelled", "{declined}");
    assert_eq!(declined["cancel_reason"], "payment_failed");
    assert_eq!(api.available(&sku).await, 3);
}

#[test]
fn a_service_refuses_to_start_without_what_it_needs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |extra: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mercato"))
            .args([
                "serve",
                "--service",
                "orders",
                "--addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path())
            .env_remove("MERCATO_BUS__NATS_URL")
            .env_remove("MERCATO_INTERNAL__TOKEN")
            .env_remove("MERCATO_AUTH__JWT_SECRET")
            .env("MERCATO_LOG", "off")
            .envs(extra.iter().copied())
            .output()
            .expect("mercato runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&[]).contains("internal.token"));
    let with_token = [("MERCATO_INTERNAL__TOKEN", "a-service-token-for-tests")];
    assert!(run(&with_token).contains("bus.nats_url"));
    let err = run(&[
        with_token[0],
        ("MERCATO_BUS__NATS_URL", "nats://127.0.0.1:4222"),
        (
            "MERCATO_AUTH__JWT_SECRET",
            "a-jwt-secret-shared-by-every-service",
        ),
    ]);
    assert!(err.contains("MERCATO_SERVICES__CART"), "{err}");
}
