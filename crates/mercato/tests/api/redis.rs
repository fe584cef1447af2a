//! With `cache.redis_url` set: catalog's product cache and the gateway's
//! rate limits live in Redis (the local one, `scripts/services`;
//! `MERCATO_TEST_REDIS_URL` overrides), each test under a key prefix of its
//! own whose keys are deleted afterwards.

use crate::support::{unique, TestApp};
use ::redis::Commands as _;
use mercato_contracts::events::ProductUpdated;
use mercato_kernel::Envelope;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

fn redis_url() -> String {
    std::env::var("MERCATO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix of its own; its keys are deleted on drop, panics included.
struct Keys {
    prefix: String,
    conn: ::redis::Connection,
}

impl Keys {
    fn new() -> Keys {
        let conn = ::redis::Client::open(redis_url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("the local Redis (scripts/services)");
        Keys {
            prefix: format!("test-{}", uuid::Uuid::now_v7().simple()),
            conn,
        }
    }

    fn get(&mut self, key: &str) -> Option<String> {
        self.conn
            .get(format!("{}:{key}", self.prefix))
            .expect("redis get")
    }

    fn set(&mut self, key: &str, value: &str) {
        let _: () = self
            .conn
            .set(format!("{}:{key}", self.prefix), value)
            .expect("redis set");
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let keys: Vec<String> = self
            .conn
            .keys(format!("{}:*", self.prefix))
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = self.conn.del(&keys);
        }
    }
}

async fn spawn(prefix: &str, configure: impl FnOnce(&mut mercato::Settings)) -> Option<TestApp> {
    let prefix = prefix.to_owned();
    let app = TestApp::spawn_with(|s| {
        s.cache.redis_url = Some(redis_url());
        s.cache.key_prefix = prefix;
        configure(s);
    })
    .await;
    // Against an external server the settings are not ours to choose.
    app.contexts.is_some().then_some(app)
}

fn product_key(product: &Value) -> String {
    format!(
        "catalog:product:{}",
        product["id"].as_str().expect("product id")
    )
}

#[tokio::test]
async fn product_reads_are_cached_in_redis_and_writes_invalidate_them() {
    let mut keys = Keys::new();
    let Some(app) = spawn(&keys.prefix, |_| {}).await else {
        return;
    };
    let seller = app.register("seller").await;
    let sku = unique("RDS");
    let created = app
        .create_product(&seller, "kitchen", &[(&sku, 1299)])
        .await;
    let path = format!("/products/{}", created["id"].as_str().expect("id"));

    let read = app.get(&path, None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created);
    let cached = keys
        .get(&product_key(&created))
        .expect("cached after a read");
    assert_eq!(
        serde_json::from_str::<Value>(&cached).expect("json"),
        created
    );

    let r = app
        .patch(&path, Some(&seller.token), json!({"title": "Renamed"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let read = app.get(&path, None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(
        read.body["title"], "Renamed",
        "the write invalidated the cache"
    );
    assert_eq!(read.body, r.body);

    let r = app
        .patch(
            &path,
            Some(&seller.token),
            json!({"variants": [{"sku": sku, "price": {"amount": 1499, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let read = app.get(&path, None).await;
    assert_eq!(read.body["variants"][0]["price"]["amount"], 1499);

    let r = app.delete(&path, Some(&seller.token)).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let read = app.get(&path, None).await;
    assert_eq!(read.body["status"], "archived");
    app.stop().await;
}

/// Another replica's write reaches this one as an event: the `catalog-cache`
/// consumer deletes the key, and the next read comes from the store.
#[tokio::test]
async fn a_catalog_event_deletes_a_stale_cached_product() {
    let mut keys = Keys::new();
    let Some(app) = spawn(&keys.prefix, |_| {}).await else {
        return;
    };
    let seller = app.register("seller").await;
    let created = app
        .create_product(&seller, "kitchen", &[(&unique("RDS"), 500)])
        .await;
    let path = format!("/products/{}", created["id"].as_str().expect("id"));

    let mut stale = created.clone();
    stale["title"] = json!("Stale");
    keys.set(&product_key(&stale), &stale.to_string());
    assert_eq!(
        app.get(&path, None).await.body["title"],
        "Stale",
        "reads are served from Redis"
    );

    let product = serde_json::from_value(created.clone()).expect("a product");
    let event =
        Envelope::new("catalog", path.clone(), &ProductUpdated { product }).expect("envelope");
    let contexts = app.contexts.as_ref().expect("in-process app");
    contexts.bus.publish(&[event]).await.expect("published");

    app.eventually(
        "the stale product is dropped",
        Duration::from_secs(10),
        || {
            let app = &app;
            let path = path.clone();
            async move {
                let read = app.get(&path, None).await;
                (read.body["title"] != "Stale").then_some(())
            }
        },
    )
    .await;
    assert_eq!(app.get(&path, None).await.body, created);
    app.stop().await;
}

#[tokio::test]
async fn two_gateways_share_one_rate_limit_in_redis() {
    let mut keys = Keys::new();
    let limited = |s: &mut mercato::Settings| {
        s.http.rate_limit_per_second = 1;
        s.http.rate_limit_burst = 3;
    };
    let Some(one) = spawn(&keys.prefix, limited).await else {
        return;
    };
    let Some(two) = spawn(&keys.prefix, limited).await else {
        return;
    };
    assert_eq!(one.get("/products", None).await.status, StatusCode::OK);
    assert_eq!(two.get("/products", None).await.status, StatusCode::OK);
    assert_eq!(one.get("/products", None).await.status, StatusCode::OK);
    for app in [&two, &one] {
        let r = app.get("/products", None).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
        assert_eq!(r.code(), "rate_limited");
        assert_eq!(
            r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
    assert!(
        keys.get("rl:127.0.0.1").is_some(),
        "the bucket is kept in Redis"
    );
    one.stop().await;
    two.stop().await;
}

/// Redis down: rate limits let requests through, product reads and writes
/// go to the store.
#[tokio::test]
async fn without_redis_the_shop_still_answers() {
    let app = TestApp::spawn_with(|s| {
        // Nothing listens on port 1.
        s.cache.redis_url = Some("redis://127.0.0.1:1".into());
        s.cache.timeout_ms = 100;
        s.http.rate_limit_per_second = 1;
        s.http.rate_limit_burst = 1;
    })
    .await;
    if app.contexts.is_none() {
        return;
    }
    let seller = app.register("seller").await;
    let created = app
        .create_product(&seller, "kitchen", &[(&unique("RDS"), 700)])
        .await;
    let path = format!("/products/{}", created["id"].as_str().expect("id"));
    for _ in 0..3 {
        let read = app.get(&path, None).await;
        assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
        assert_eq!(read.body, created);
    }
    let r = app
        .patch(&path, Some(&seller.token), json!({"title": "Renamed"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(app.get(&path, None).await.body["title"], "Renamed");
    app.stop().await;
}
