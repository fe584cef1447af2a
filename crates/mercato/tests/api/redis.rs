//! With `cache.redis_url` set: catalog's product cache and the gateway's
//! rate limits live in Redis (the local one, `scripts/services`;
//! `MERCATO_TEST_REDIS_URL` overrides), each test under a key prefix of its
//! own whose keys are deleted afterwards.

use crate::orders::{add_to_cart, checkout, settled, stocked_sku};
use crate::support::{unique, TestApp};
use ::redis::Commands as _;
use mercato_contracts::events::ProductUpdated;
use mercato_kernel::Envelope;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
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

impl Keys {
    /// The hash under `<prefix>:<key>`.
    fn hash(&mut self, key: &str) -> HashMap<String, String> {
        self.conn
            .hgetall(format!("{}:{key}", self.prefix))
            .expect("redis hgetall")
    }

    /// Every key under the prefix, without it.
    fn keys(&mut self) -> Vec<String> {
        let keys: Vec<String> = self
            .conn
            .keys(format!("{}:*", self.prefix))
            .expect("redis keys");
        keys.into_iter()
            .filter_map(|k| {
                k.strip_prefix(&format!("{}:", self.prefix))
                    .map(str::to_owned)
            })
            .collect()
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
    let event = Envelope::new(
        "catalog",
        path.clone(),
        &ProductUpdated {
            product,
            version: 0,
        },
    )
    .expect("envelope");
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

/// The price a catalog service answers for `sku`.
async fn price(replica: &mercato_catalog::CatalogService, sku: String) -> Option<i64> {
    use mercato_contracts::clients::CatalogClient as _;
    replica
        .sku(&sku)
        .await
        .expect("lookup")
        .map(|info| info.price.amount)
}

/// SKU lookups (what carts and orders price with) are kept in Redis too, so
/// another catalog replica (here a second catalog service on the same store
/// and Redis) answers a new price as soon as the write commits, not after
/// the lookup's time to live.
#[tokio::test]
async fn another_catalog_replica_answers_a_new_price_at_once() {
    let mut keys = Keys::new();
    let Some(app) = spawn(&keys.prefix, |_| {}).await else {
        return;
    };
    let contexts = app.contexts.as_ref().expect("in-process app");
    let timeout = Duration::from_secs(2);
    let conn = mercato_kernel::cache::redis_connection(&redis_url(), timeout).expect("redis");
    let replica = mercato_catalog::CatalogService::new(contexts.catalog.store().clone())
        .with_shared_cache(std::sync::Arc::new(mercato_kernel::cache::RedisCache::new(
            conn,
            &keys.prefix,
            timeout,
        )));
    let seller = app.register("seller").await;
    let sku = unique("RDS");
    let created = app
        .create_product(&seller, "kitchen", &[(&sku, 1299)])
        .await;
    let path = format!("/products/{}", created["id"].as_str().expect("id"));
    let key = format!("catalog:sku:{sku}");
    // product.created clears the SKU's entry when catalog's cache consumer
    // gets it, which may be after the first lookup: look until it stays.
    let started = std::time::Instant::now();
    loop {
        assert_eq!(price(&replica, sku.clone()).await, Some(1299));
        if keys.get(&key).is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the lookup is kept in Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The price changes through the other replica, the application.
    let r = app
        .patch(
            &path,
            Some(&seller.token),
            json!({"variants": [{"sku": sku, "price": {"amount": 1499, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        price(&replica, sku.clone()).await,
        Some(1499),
        "the new price at once"
    );

    // Catalog's cache consumer deletes the entry again when the write's
    // events reach it; wait for that before planting a stale entry.
    let changed = app
        .eventually(
            "price.changed is in the log",
            Duration::from_secs(5),
            || async {
                let events = contexts.log.read(0, 10_000).await.expect("log");
                events
                    .iter()
                    .rev()
                    .find(|(_, e)| e.event_type == "price.changed")
                    .map(|(seq, _)| *seq)
            },
        )
        .await;
    app.eventually(
        "the cache consumer caught up",
        Duration::from_secs(5),
        || async {
            let at = contexts
                .log
                .position("catalog-cache")
                .await
                .expect("offset");
            (at >= changed).then_some(())
        },
    )
    .await;
    assert_eq!(price(&replica, sku.clone()).await, Some(1499));

    // A lookup a reader stored after the write's delete (it read the store
    // before the commit) is dropped when the write's event arrives.
    let mut stale: Value = serde_json::from_str(&keys.get(&key).expect("cached")).expect("json");
    stale["price"]["amount"] = json!(999);
    keys.set(&key, &stale.to_string());
    assert_eq!(
        price(&replica, sku.clone()).await,
        Some(999),
        "served from Redis"
    );
    let product_id = created["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("product id");
    let eur = |amount| mercato_kernel::Money::parse_price(amount, "EUR").expect("money");
    let event = Envelope::new(
        "catalog",
        path.clone(),
        &mercato_contracts::events::PriceChanged {
            product_id,
            sku: sku.clone(),
            old_price: eur(1299),
            new_price: eur(1499),
            version: 0,
        },
    )
    .expect("envelope");
    contexts.bus.publish(&[event]).await.expect("published");
    app.eventually(
        "the stale lookup is dropped",
        Duration::from_secs(10),
        || {
            let replica = &replica;
            let sku = sku.clone();
            async move { (price(replica, sku).await == Some(1499)).then_some(()) }
        },
    )
    .await;
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

/// The lines in the cart context's own database (SQLite in the data dir).
async fn lines_in_database(app: &TestApp) -> i64 {
    let dir = app.data_dir.as_ref().expect("in-process data dir");
    let db = mercato_kernel::db::Db::sqlite_file(&dir.path().join("cart.db"))
        .await
        .expect("cart store");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cart_lines")
        .fetch_one(db.pool())
        .await
        .expect("cart_lines readable");
    db.close().await;
    n
}

/// With Redis configured, carts are kept there: a line added through the API
/// is a field of `<prefix>:cart:<customer>` and not a row of the cart
/// context's database, the cart is still there after the server restarts,
/// and a checkout takes the order out of it.
#[tokio::test]
async fn carts_live_in_redis_and_survive_a_restart() {
    let mut keys = Keys::new();
    let Some(app) = spawn(&keys.prefix, |_| {}).await else {
        return;
    };
    let (_, sku) = stocked_sku(&app, 5).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 2).await;

    let cart_key = format!("cart:{}", customer.id);
    let stored = keys.hash(&cart_key);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        stored.get(&sku).is_some_and(|v| v.starts_with("2:")),
        "the line is in Redis: {stored:?}"
    );
    assert!(keys.keys().contains(&format!("cart-sku:{sku}")));
    assert_eq!(lines_in_database(&app).await, 0, "not in the database");
    let before = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(before.status, StatusCode::OK, "{:?}", before.body);
    assert_eq!(before.body["items"][0]["quantity"], 2);

    let dir = app.stop().await.expect("in-process data dir");
    let path = dir.path().to_path_buf();
    let Some(app) = spawn(&keys.prefix, |s| s.data_dir = path.clone()).await else {
        return;
    };
    let after = app.get("/cart", Some(&customer.token)).await;
    assert_eq!(after.status, StatusCode::OK, "{:?}", after.body);
    assert_eq!(after.body, before.body, "the cart survives a restart");

    let r = checkout(&app, &customer, "tok_visa", &unique("key")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let order_id = r.body["id"].as_str().expect("order id").to_owned();
    let order = settled(&app, &customer, &order_id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    app.eventually("the cart is emptied", Duration::from_secs(5), || async {
        let r = app.get("/cart", Some(&customer.token)).await;
        (r.body["items"].as_array().map(Vec::len) == Some(0)).then_some(())
    })
    .await;
    assert!(keys.hash(&cart_key).is_empty(), "emptied in Redis");
    let mut left = keys.keys();
    left.retain(|k| k.starts_with("cart"));
    assert_eq!(
        left,
        vec![format!("cart-checkout:{order_id}")],
        "only the order's marker is left of the cart"
    );
    app.stop().await;
    drop(dir);
}

/// `cart.store = "database"` keeps carts in the database even with Redis.
#[tokio::test]
async fn carts_can_stay_in_the_database_with_redis_configured() {
    let mut keys = Keys::new();
    let Some(app) = spawn(&keys.prefix, |s| {
        s.cart.store = Some(mercato::config::CartStore::Database);
    })
    .await
    else {
        return;
    };
    let (_, sku) = stocked_sku(&app, 5).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;
    assert_eq!(lines_in_database(&app).await, 1);
    assert!(
        !keys.keys().iter().any(|k| k.starts_with("cart")),
        "no cart keys: {:?}",
        keys.keys()
    );
    app.stop().await;
}

#[tokio::test]
async fn carts_in_redis_need_a_redis_url() {
    if crate::support::external() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = crate::support::test_settings(dir.path());
    settings.cart.store = Some(mercato::config::CartStore::Redis);
    match mercato::Application::build(settings).await {
        Ok(_) => panic!("a server with carts in Redis and no Redis started"),
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains("cart.store") && message.contains("cache.redis_url"),
                "a clear message: {message}"
            );
        }
    }
}

/// Redis down: carts answer 503 with the JSON error, the rest of the shop works.
#[tokio::test]
async fn without_redis_carts_are_unavailable() {
    let app = TestApp::spawn_with(|s| {
        // Nothing listens on port 1.
        s.cache.redis_url = Some("redis://127.0.0.1:1".into());
        s.cache.timeout_ms = 100;
        s.cart.redis_timeout_ms = 100;
    })
    .await;
    if app.contexts.is_none() {
        return;
    }
    let seller = app.register("seller").await;
    let sku = unique("RDS");
    app.create_product(&seller, "kitchen", &[(&sku, 700)]).await;
    let customer = app.register("customer").await;
    for r in [
        app.get("/cart", Some(&customer.token)).await,
        app.post(
            "/cart/items",
            Some(&customer.token),
            json!({"sku": sku, "quantity": 1}),
        )
        .await,
    ] {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
        assert_eq!(r.code(), "unavailable");
        assert!(r.headers.contains_key("retry-after"));
    }
    // Not ready either, so no traffic is sent here while Redis is away; the
    // check names Redis, and the rest is fine.
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.body["status"], "not_ready", "{:?}", r.body);
    let checks = &r.body["checks"];
    let why = checks["cart_redis"].as_str().expect("a reason");
    assert_ne!(why, "ok");
    assert!(why.contains("redis"), "{why}");
    for name in ["bus", "cart", "catalog", "orders"] {
        assert_eq!(checks[name], "ok", "{name}: {checks}");
    }
    app.stop().await;
}

/// With carts in a Redis that answers, readiness checks it and is ready.
#[tokio::test]
async fn readiness_checks_redis_when_carts_are_there() {
    let keys = Keys::new();
    let Some(app) = spawn(&keys.prefix, |_| {}).await else {
        return;
    };
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "ready");
    assert_eq!(r.body["checks"]["cart_redis"], "ok", "{:?}", r.body);
    app.stop().await;
}

/// The product cache and the rate limits do without Redis: with carts in
/// the database, Redis being away makes nothing unready.
#[tokio::test]
async fn without_redis_carts_in_the_database_stay_ready() {
    let app = TestApp::spawn_with(|s| {
        s.cache.redis_url = Some("redis://127.0.0.1:1".into());
        s.cache.timeout_ms = 100;
        s.cart.store = Some(mercato::config::CartStore::Database);
    })
    .await;
    if app.contexts.is_none() {
        return;
    }
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "ready");
    let checks = r.body["checks"].as_object().expect("checks");
    assert!(
        !checks.keys().any(|k| k.contains("redis")),
        "no Redis check: {checks:?}"
    );
    app.stop().await;
}

/// A stand-in for Redis on a loopback port of its own. Until [`forward`]
/// it accepts connections and never answers; from then on it passes new
/// connections through to the real Redis and closes the silent ones, so
/// their clients reconnect.
///
/// [`forward`]: StandIn::forward
struct StandIn {
    url: String,
    forwarding: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start() -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let mut url = reqwest::Url::parse(&redis_url()).expect("a Redis URL");
        let target = format!(
            "{}:{}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(6379)
        );
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(port)).expect("port");
        let (forwarding, _) = tokio::sync::watch::channel(false);
        let subscriber = forwarding.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut on = subscriber.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    if !*on.borrow_and_update() {
                        // Dropped (closed) once forwarding starts.
                        let _ = on.wait_for(|on| *on).await;
                        return;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = pump(&client, &server) => {}
                        _ = pump(&server, &client) => {}
                    }
                });
            }
        });
        StandIn {
            url: url.to_string(),
            forwarding,
            accept,
        }
    }

    fn forward(&self) {
        self.forwarding.send_replace(true);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies what `from` receives to `to` until `from` closes or fails.
async fn pump(from: &tokio::net::TcpStream, to: &tokio::net::TcpStream) -> std::io::Result<()> {
    use std::io::ErrorKind::WouldBlock;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut sent = 0;
        while sent < n {
            to.writable().await?;
            match to.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A Redis that does not answer within `cart.redis_timeout_ms` makes the
/// cart unready (the check's own limit, not the probes' 2 s, ends it); once
/// Redis answers again the same process is ready again and carts work.
#[tokio::test]
async fn the_cart_is_ready_again_once_redis_answers() {
    let mut keys = Keys::new();
    let stand_in = StandIn::start().await;
    let url = stand_in.url.clone();
    let Some(app) = spawn(&keys.prefix, |s| {
        s.cache.redis_url = Some(url);
        s.cart.redis_timeout_ms = 200;
    })
    .await
    else {
        return;
    };
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.body["status"], "not_ready");
    let why = r.body["checks"]["cart_redis"].as_str().expect("a reason");
    assert!(why.contains("within 200ms"), "{why}");

    stand_in.forward();
    let body = app
        .eventually("ready again", Duration::from_secs(10), || async {
            let r = app.get("/readyz", None).await;
            (r.status == StatusCode::OK).then_some(r.body)
        })
        .await;
    assert_eq!(body["checks"]["cart_redis"], "ok", "{body}");
    let (_, sku) = stocked_sku(&app, 5).await;
    let customer = app.register("customer").await;
    add_to_cart(&app, &customer, &sku, 1).await;
    assert_eq!(keys.hash(&format!("cart:{}", customer.id)).len(), 1);
    app.stop().await;
}
