//! Distributed mode with the real binary: every context its own process
//! (`serve --service <context>`), events on JetStream, and a gateway in
//! front. A purchase through the gateway must travel across the processes
//! as it does in one.

#[path = "support/blackbox.rs"]
mod blackbox;
#[path = "support/cluster.rs"]
mod cluster;

use blackbox::Api;
use cluster::{Cluster, Options};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Checks out the cart and waits until the order has settled.
async fn checkout(api: &Api, token: &str, card: &str) -> Value {
    let key = uuid::Uuid::now_v7().to_string();
    let id = api
        .place_order(token, card, &key)
        .await
        .expect("the checkout is accepted");
    api.settled(token, &id).await
}

#[tokio::test]
async fn a_purchase_travels_through_the_gateway_across_service_processes() {
    let mut cluster = Cluster::start(Options::default()).await;
    cluster.ready().await;
    let api = Api::new(&cluster.gateway);

    // The gateway's own answers.
    let (status, body) = api
        .call(Method::GET, "/nothing-here", None, None, None)
        .await
        .expect("the gateway answers");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "route_not_found");
    let doc = api
        .client
        .get(format!("{}/openapi.json", cluster.gateway))
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

    let seller = api.sign_up("seller").await.token;
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

    let customer = api.sign_up("customer").await.token;
    api.ok(
        Method::POST,
        "/cart/items",
        Some(&customer),
        Some(json!({"sku": sku, "quantity": 2})),
    )
    .await;
    let cart = api.ok(Method::GET, "/cart", Some(&customer), None).await;
    assert_eq!(cart["total"]["amount"], 1400, "priced by catalog: {cart}");

    let order = checkout(&api, &customer, "tok_visa").await;
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
    let declined = checkout(&api, &customer, "tok_decline").await;
    assert_eq!(declined["status"], "cancelled", "{declined}");
    assert_eq!(declined["cancel_reason"], "payment_failed");
    assert_eq!(api.available(&sku).await, 3);

    // The gateway serves the web pages, which reach the contexts through it.
    let page = |path: String, session: Option<&str>| {
        let mut request = api.client.get(format!("{}{path}", cluster.gateway));
        if let Some(token) = session {
            request = request.header("cookie", format!("mercato_session={token}"));
        }
        async move {
            let response = request.send().await.expect("page");
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            response.text().await.expect("page body")
        }
    };
    let id = product["id"].as_str().expect("product id");
    let shown = page(format!("/products/{id}"), None).await;
    assert!(
        shown.contains(&format!("Distributed mug {word}")) && shown.contains("3 in stock"),
        "{shown}"
    );
    let found = page(format!("/search?q={word}"), None).await;
    assert!(found.contains(&format!("/products/{id}")), "{found}");
    let mine = page("/account/orders".to_owned(), Some(&customer)).await;
    let order_id = order["id"].as_str().expect("order id");
    assert!(
        mine.contains(&order_id[order_id.len() - 8..]) && mine.contains("confirmed"),
        "{mine}"
    );
}

/// Pricing is a process of its own: the cart asks it for the code's
/// discount, orders for the quote it freezes into the order, and the
/// checkout saga redeems the code there, all over HTTP.
#[tokio::test]
async fn a_purchase_with_a_code_shipping_and_tax_is_priced_by_the_pricing_process() {
    let mut cluster = Cluster::start(Options::default()).await;
    cluster.ready().await;
    let api = Api::new(&cluster.gateway);
    let (email, password) = cluster.create_admin();
    let admin = api.login(&email, &password).await;
    let eur = |amount: i64| json!({"amount": amount, "currency": "EUR"});

    let method = api
        .ok(
            Method::POST,
            "/shipping-methods",
            Some(&admin),
            Some(json!({"name": "Standard", "price": eur(500), "countries": ["NL"]})),
        )
        .await;
    api.ok(
        Method::PUT,
        "/tax-rates/NL",
        Some(&admin),
        Some(json!({"rate_bps": 2100, "name": "BTW"})),
    )
    .await;
    let promo = api
        .ok(
            Method::POST,
            "/promotions",
            Some(&admin),
            Some(json!({"code": "WELCOME", "kind": "fixed_amount", "amount": eur(400), "usage_limit": 1})),
        )
        .await;

    let (_, sku) = blackbox::shop(&api, 5).await;
    let customer = api.sign_up("customer").await.token;
    api.ok(
        Method::POST,
        "/cart/items",
        Some(&customer),
        Some(json!({"sku": sku, "quantity": 2})),
    )
    .await;
    let cart = api
        .ok(
            Method::POST,
            "/cart/promotions",
            Some(&customer),
            Some(json!({"code": "welcome"})),
        )
        .await;
    let subtotal = cart["subtotal"]["amount"].as_i64().expect("subtotal");
    assert_eq!(cart["discount_total"], eur(400), "{cart}");

    let quote = api
        .ok(
            Method::POST,
            "/checkout/quote",
            Some(&customer),
            Some(json!({"shipping_address": blackbox::address()})),
        )
        .await;
    assert_eq!(quote["shipping_method"]["id"], method["id"], "{quote}");
    let taxed = subtotal - 400 + 500;
    let tax = (taxed * 2100 + 5000) / 10_000;
    assert_eq!(quote["tax_total"], eur(tax), "{quote}");
    assert_eq!(quote["total"], eur(taxed + tax));

    let order = checkout(&api, &customer, "tok_visa").await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"], quote["total"]);
    let promo = api
        .ok(
            Method::GET,
            &format!("/promotions/{}", promo["id"].as_str().expect("id")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(promo["times_used"], 1, "redeemed by the saga: {promo}");

    // Used up: the next customer's checkout is refused.
    let other = api.sign_up("customer").await.token;
    api.ok(
        Method::POST,
        "/cart/items",
        Some(&other),
        Some(json!({"sku": sku, "quantity": 1})),
    )
    .await;
    let (status, body) = api
        .call(
            Method::POST,
            "/cart/promotions",
            Some(&other),
            Some(json!({"code": "WELCOME"})),
            None,
        )
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "promotion_not_applicable");

    let doc = api
        .client
        .get(format!("{}/openapi.json", cluster.gateway))
        .send()
        .await
        .expect("openapi")
        .json::<Value>()
        .await
        .expect("openapi json");
    for path in [
        "/api/v1/promotions",
        "/api/v1/shipping-methods",
        "/api/v1/tax-rates/{country}",
        "/api/v1/cart/promotions",
        "/api/v1/checkout/quote",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
}

/// The ids of what `q` finds on one search replica, asked directly.
async fn found_on(replica: &Api, q: &str) -> Vec<Value> {
    let hits = replica
        .ok(Method::GET, &format!("/search?q={q}"), None, None)
        .await;
    hits["items"]
        .as_array()
        .map(|items| items.iter().map(|h| h["product_id"].clone()).collect())
        .unwrap_or_default()
}

/// Each search replica keeps its own index and reads every event through
/// a consumer of its own, so a product is found on every replica; a
/// replica that was killed rebuilds its index and catches up without
/// disturbing the other.
#[tokio::test]
async fn every_search_replica_indexes_every_product() {
    let mut cluster = Cluster::start(Options {
        search_replicas: 2,
        ..Options::default()
    })
    .await;
    cluster.ready().await;
    let api = Api::new(&cluster.gateway);
    let replica = |name: &str| Api::new(&format!("http://127.0.0.1:{}", cluster.proc(name).port()));
    let (search_0, search_1) = (replica("search-0"), replica("search-1"));

    let seller = api.sign_up("seller").await.token;
    let word = format!("w{}", uuid::Uuid::now_v7().simple());
    let create = |title: String| {
        let api = &api;
        let seller = &seller;
        async move {
            let sku = format!("REP-{}", uuid::Uuid::now_v7().simple());
            api.ok(
                Method::POST,
                "/products",
                Some(seller),
                Some(json!({"title": title, "category": "test", "variants": [{"sku": sku, "price": {"amount": 900, "currency": "EUR"}}]})),
            )
            .await["id"]
                .clone()
        }
    };
    let first = create(format!("Replicated lamp {word}")).await;
    for (name, search) in [("search-0", &search_0), ("search-1", &search_1)] {
        eventually(&format!("{name} finds the product"), || async {
            (found_on(search, &word).await == vec![first.clone()]).then_some(())
        })
        .await;
    }

    // Two consumers on the catalog stream, one per replica, each removed by
    // the server once its replica has been gone an hour.
    let mut config = mercato_kernel::bus::jetstream::JetStreamConfig::new(&cluster.nats_url);
    config.prefix = cluster.prefix.clone();
    let bus = mercato_kernel::bus::jetstream::JetStreamBus::connect(config)
        .await
        .expect("NATS");
    let catalog = bus
        .context()
        .get_stream(format!("{}_CATALOG", cluster.prefix.to_uppercase()))
        .await
        .expect("the catalog stream");
    for consumer in ["search-search-0", "search-search-1"] {
        let info = catalog
            .consumer_info(consumer)
            .await
            .unwrap_or_else(|e| panic!("the consumer {consumer}: {e}"));
        assert_eq!(info.config.inactive_threshold, Duration::from_secs(3600));
    }
    let shared = catalog
        .consumer_info("search")
        .await
        .expect_err("no consumer shared by the replicas");
    assert!(shared.to_string().contains("not found"), "{shared}");

    // search-1 dies and misses a product; search-0 gets it meanwhile.
    cluster.kill("search-1");
    let second = create(format!("Replicated desk {word}")).await;
    eventually("search-0 finds the second product", || async {
        (found_on(&search_0, &word).await.len() == 2).then_some(())
    })
    .await;
    // Killed, search-1 rebuilds its index from the whole stream.
    cluster.restart("search-1").await;
    for (name, search) in [("search-0", &search_0), ("search-1", &search_1)] {
        let found = eventually(&format!("{name} finds both products"), || async {
            let found = found_on(search, &word).await;
            (found.len() == 2).then_some(found)
        })
        .await;
        assert!(
            found.contains(&first) && found.contains(&second),
            "{name}: {found:?}"
        );
    }
    // Through the gateway, whichever replica answers.
    for _ in 0..4 {
        let hits = api
            .ok(Method::GET, &format!("/search?q={word}"), None, None)
            .await;
        assert_eq!(hits["total"], 2, "{hits}");
    }
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

/// The gateway's readiness once every context has been up: a context that
/// loses its last replica is reported, its routes answer 503, and the
/// gateway stays in rotation for the other contexts.
#[tokio::test]
async fn a_context_without_replicas_degrades_the_gateway_without_taking_it_down() {
    let mut cluster = Cluster::start(Options::default()).await;
    cluster.ready().await;
    let api = Api::new(&cluster.gateway);
    let readyz = format!("{}/readyz", cluster.gateway);
    let readiness = |api: &Api| {
        let url = readyz.clone();
        let client = api.client.clone();
        async move {
            let r = client.get(&url).send().await.expect("readyz");
            let status = r.status();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = readiness(&api).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");

    cluster.kill("search-0");
    let body = eventually("the gateway reports search", || async {
        let (status, body) = readiness(&api).await;
        assert_eq!(status, StatusCode::OK, "still ready: {body}");
        (body["status"] == "degraded").then_some(body)
    })
    .await;
    assert_ne!(body["checks"]["search"], "ok", "{body}");
    assert_eq!(body["checks"]["catalog"], "ok", "{body}");

    let (status, v) = api
        .call(Method::GET, "/search?q=mug", None, None, None)
        .await
        .expect("the gateway answers");
    assert!(
        status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::BAD_GATEWAY,
        "{status} {v}"
    );
    assert!(v["error"]["code"].is_string(), "{v}");
    api.ok(Method::GET, "/products", None, None).await;

    cluster.restart("search-0").await;
    eventually("the gateway is whole again", || async {
        let (status, body) = readiness(&api).await;
        (status == StatusCode::OK && body["status"] == "ready").then_some(())
    })
    .await;
    api.ok(Method::GET, "/search?q=mug", None, None).await;
}

/// A product page through the gateway: every part from its own process; a
/// part whose context is down is `null` and the rest still answers.
#[tokio::test]
async fn a_storefront_page_leaves_out_what_a_stopped_context_would_give() {
    let mut cluster = Cluster::start(Options::default()).await;
    cluster.ready().await;
    let api = Api::new(&cluster.gateway);
    let seller = api.sign_up("seller").await.token;
    let sku = format!("PAGE-{}", uuid::Uuid::now_v7().simple());
    let product = api
        .ok(
            Method::POST,
            "/products",
            Some(&seller),
            Some(json!({"title": "Page mug", "category": "test",
                        "variants": [{"sku": sku, "price": {"amount": 700, "currency": "EUR"}}]})),
        )
        .await;
    api.ok(
        Method::PUT,
        &format!("/inventory/{sku}"),
        Some(&seller),
        Some(json!({"quantity": 5})),
    )
    .await;
    let path = format!(
        "/storefront/products/{}",
        product["id"].as_str().expect("id")
    );
    let page = api.ok(Method::GET, &path, None, None).await;
    assert_eq!(page["product"]["id"], product["id"]);
    assert_eq!(page["stock"]["available"], 5, "{page}");
    assert_eq!(page["rating"]["count"], 0, "{page}");
    assert_eq!(page["reviews"], json!([]), "{page}");
    assert!(page["recommendations"].is_array(), "{page}");

    cluster.kill("reviews-0");
    cluster.kill("recommendations-0");
    let page = api.ok(Method::GET, &path, None, None).await;
    assert_eq!(page["product"]["id"], product["id"]);
    assert_eq!(page["stock"]["available"], 5, "{page}");
    for part in ["rating", "reviews", "recommendations"] {
        assert!(page[part].is_null(), "{part}: {page}");
    }

    cluster.kill("catalog-0");
    let page = api.ok(Method::GET, &path, None, None).await;
    for part in ["product", "stock", "rating", "reviews", "recommendations"] {
        assert!(page[part].is_null(), "{part}: {page}");
    }

    cluster.restart("reviews-0").await;
    eventually("reviews answer again", || async {
        let page = api.ok(Method::GET, &path, None, None).await;
        (page["rating"]["count"] == 0).then_some(())
    })
    .await;
}
