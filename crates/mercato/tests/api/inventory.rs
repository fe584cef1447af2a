use crate::support::{unique, TestApp, User};
use mercato_contracts::clients::{ClientError, InventoryClient, ReserveOutcome};
use mercato_contracts::types::SkuQuantity;
use mercato_kernel::Envelope;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A seller with one product of one fresh SKU.
async fn seller_with_sku(app: &TestApp) -> (User, String) {
    let seller = app.register("seller").await;
    let sku = unique("INV");
    app.create_product(&seller, "c", &[(&sku, 500)]).await;
    (seller, sku)
}

async fn put_stock(app: &TestApp, who: &User, sku: &str, body: Value) -> crate::support::Response {
    app.put(&format!("/inventory/{sku}"), Some(&who.token), body)
        .await
}

async fn stock(app: &TestApp, sku: &str) -> Value {
    let r = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

fn one(sku: &str, quantity: i64) -> Vec<SkuQuantity> {
    vec![SkuQuantity {
        sku: sku.to_owned(),
        quantity,
    }]
}

/// Events the inventory context has published so far.
async fn published(app: &TestApp, event_type: &str) -> Vec<Envelope> {
    let ctx = app.contexts.as_ref().expect("in-process app");
    ctx.log
        .read(0, 100_000)
        .await
        .expect("event log")
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.source == "inventory" && e.event_type == event_type)
        .collect()
}

#[tokio::test]
async fn a_seller_sets_stock_and_anyone_reads_it() {
    let app = TestApp::spawn().await;
    let (seller, sku) = seller_with_sku(&app).await;
    let r = put_stock(&app, &seller, &sku, json!({"quantity": 7})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let expected = json!({"sku": sku, "available": 7, "reserved": 0,
        "warehouses": [{"warehouse": "main", "on_hand": 7, "reserved": 0}]});
    assert_eq!(r.body, expected);
    assert_eq!(stock(&app, &sku).await, expected);

    let r = put_stock(
        &app,
        &seller,
        &sku,
        json!({"warehouse": "main", "quantity": 0}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["available"], 0, "PUT sets, it does not add");
}

#[tokio::test]
async fn stock_is_summed_over_warehouses() {
    let app = TestApp::spawn().await;
    let (seller, sku) = seller_with_sku(&app).await;
    for (warehouse, quantity) in [("east-2", 4), ("main", 3), ("b_side", 5)] {
        let r = put_stock(
            &app,
            &seller,
            &sku,
            json!({"warehouse": warehouse, "quantity": quantity}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let s = stock(&app, &sku).await;
    assert_eq!(s["available"], 12);
    assert_eq!(s["reserved"], 0);
    assert_eq!(
        s["warehouses"],
        json!([
            {"warehouse": "main", "on_hand": 3, "reserved": 0},
            {"warehouse": "b_side", "on_hand": 5, "reserved": 0},
            {"warehouse": "east-2", "on_hand": 4, "reserved": 0},
        ])
    );
}

#[tokio::test]
async fn a_known_sku_without_stock_reads_as_zero() {
    let app = TestApp::spawn().await;
    let (_, sku) = seller_with_sku(&app).await;
    assert_eq!(
        stock(&app, &sku).await,
        json!({"sku": sku, "available": 0, "reserved": 0, "warehouses": []})
    );
}

#[tokio::test]
async fn unknown_skus_are_404() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let admin = app.admin().await;
    let sku = unique("NOPE");
    let r = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    for who in [&seller, &admin] {
        let r = put_stock(&app, who, &sku, json!({"quantity": 1})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
        assert_eq!(r.code(), "not_found");
    }
}

#[tokio::test]
async fn only_the_owning_seller_or_an_admin_sets_stock() {
    let app = TestApp::spawn().await;
    let (_owner, sku) = seller_with_sku(&app).await;
    let other = app.register("seller").await;
    let customer = app.register("customer").await;
    let admin = app.admin().await;
    let body = json!({"quantity": 5});

    let anon = app
        .put(&format!("/inventory/{sku}"), None, body.clone())
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.code(), "unauthorized");
    for who in [&customer, &other] {
        let r = put_stock(&app, who, &sku, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert_eq!(r.code(), "forbidden");
    }
    assert_eq!(stock(&app, &sku).await["available"], 0, "nothing changed");

    let r = put_stock(&app, &admin, &sku, body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(stock(&app, &sku).await["available"], 5);
}

#[tokio::test]
async fn invalid_quantities_and_warehouses_are_422() {
    let app = TestApp::spawn().await;
    let (seller, sku) = seller_with_sku(&app).await;
    let long = "w".repeat(65);
    for body in [
        json!({"quantity": -1}),
        json!({"quantity": 1.5}),
        json!({"quantity": "5"}),
        json!({"quantity": null}),
        json!({}),
        json!({"quantity": 1_000_000_000_001_i64}),
        json!({"warehouse": "Main", "quantity": 1}),
        json!({"warehouse": "", "quantity": 1}),
        json!({"warehouse": "two words", "quantity": 1}),
        json!({"warehouse": "a.b", "quantity": 1}),
        json!({"warehouse": long, "quantity": 1}),
        json!({"warehouse": 7, "quantity": 1}),
    ] {
        let r = put_stock(&app, &seller, &sku, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {:?}",
            r.body
        );
        assert_eq!(r.code(), "validation_failed");
    }
    let ok = put_stock(
        &app,
        &seller,
        &sku,
        json!({"warehouse": "w".repeat(64), "quantity": 0}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "64 characters are fine");
    assert_eq!(stock(&app, &sku).await["available"], 0);
    // A whole number is an integer however it is written, as in JSON Schema.
    let whole = put_stock(&app, &seller, &sku, json!({"quantity": 7.0})).await;
    assert_eq!(whole.status, StatusCode::OK, "{:?}", whole.body);
    assert_eq!(stock(&app, &sku).await["available"], 7);
}

#[tokio::test]
async fn on_hand_cannot_be_set_below_what_is_reserved() {
    let app = TestApp::spawn().await;
    let Some(ctx) = app.contexts.clone() else {
        return;
    };
    let (seller, sku) = seller_with_sku(&app).await;
    put_stock(&app, &seller, &sku, json!({"quantity": 5})).await;
    put_stock(
        &app,
        &seller,
        &sku,
        json!({"warehouse": "east", "quantity": 2}),
    )
    .await;
    let outcome = ctx
        .inventory
        .reserve(Uuid::now_v7(), &one(&sku, 4), Duration::from_secs(600))
        .await
        .expect("reserve");
    assert_eq!(outcome, ReserveOutcome::Reserved);

    let r = put_stock(&app, &seller, &sku, json!({"quantity": 3})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.code(), "below_reserved");
    let s = stock(&app, &sku).await;
    assert_eq!(
        (s["available"].clone(), s["reserved"].clone()),
        (json!(3), json!(4))
    );

    let r = put_stock(&app, &seller, &sku, json!({"quantity": 4})).await;
    assert_eq!(r.status, StatusCode::OK, "equal to reserved is fine");
    assert_eq!(r.body["available"], 2);
    assert_eq!(r.body["reserved"], 4);
    assert_eq!(
        r.body["warehouses"][0],
        json!({"warehouse": "main", "on_hand": 4, "reserved": 4})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_buyers_for_ten_units_get_exactly_ten() {
    let app = TestApp::spawn().await;
    let Some(ctx) = app.contexts.clone() else {
        return;
    };
    let (seller, sku) = seller_with_sku(&app).await;
    let r = put_stock(&app, &seller, &sku, json!({"quantity": 10})).await;
    assert_eq!(r.status, StatusCode::OK);

    let inventory: Arc<dyn InventoryClient> = ctx.inventory.clone();
    let buyers: Vec<_> = (0..200)
        .map(|_| {
            let inventory = inventory.clone();
            let lines = one(&sku, 1);
            tokio::spawn(async move {
                inventory
                    .reserve(Uuid::now_v7(), &lines, Duration::from_secs(600))
                    .await
            })
        })
        .collect();
    let mut reserved = 0;
    let mut out_of_stock = 0;
    for b in buyers {
        match b.await.expect("buyer task") {
            Ok(ReserveOutcome::Reserved) => reserved += 1,
            Ok(ReserveOutcome::OutOfStock { sku: short }) => {
                assert_eq!(short, sku);
                out_of_stock += 1
            }
            Err(e) => panic!("reserve failed: {e}"),
        }
    }
    assert_eq!((reserved, out_of_stock), (10, 190));
    let s = stock(&app, &sku).await;
    assert_eq!(s["available"], 0);
    assert_eq!(s["reserved"], 10);
    assert_eq!(
        s["warehouses"],
        json!([{"warehouse": "main", "on_hand": 10, "reserved": 10}])
    );
}

#[tokio::test]
async fn committed_stock_is_sold_and_restock_puts_it_back() {
    let app = TestApp::spawn().await;
    let Some(ctx) = app.contexts.clone() else {
        return;
    };
    let (seller, sku) = seller_with_sku(&app).await;
    put_stock(&app, &seller, &sku, json!({"quantity": 10})).await;
    let id = Uuid::now_v7();
    let ttl = Duration::from_secs(600);
    assert_eq!(
        ctx.inventory.reserve(id, &one(&sku, 3), ttl).await.ok(),
        Some(ReserveOutcome::Reserved)
    );
    assert_eq!(
        ctx.inventory.reserve(id, &one(&sku, 3), ttl).await.ok(),
        Some(ReserveOutcome::Reserved),
        "a repeated reserve answers the same"
    );
    assert_eq!(stock(&app, &sku).await["reserved"], 3, "and holds once");

    ctx.inventory.commit(id).await.expect("commit");
    ctx.inventory.commit(id).await.expect("commit again");
    let s = stock(&app, &sku).await;
    assert_eq!(
        s["warehouses"],
        json!([{"warehouse": "main", "on_hand": 7, "reserved": 0}])
    );
    assert_eq!(s["available"], 7);

    ctx.inventory.restock(id).await.expect("restock");
    ctx.inventory.restock(id).await.expect("restock again");
    assert_eq!(stock(&app, &sku).await["available"], 10);

    let committed = app
        .eventually("inventory.committed", Duration::from_secs(3), || async {
            let events = published(&app, "inventory.committed").await;
            (!events.is_empty()).then_some(events)
        })
        .await;
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].payload["reservation_id"], id.to_string());
}

#[tokio::test]
async fn expired_reservations_are_released_by_the_sweeper() {
    let app = TestApp::spawn_with(|s| s.inventory.reservation_sweep_ms = 50).await;
    let Some(ctx) = app.contexts.clone() else {
        return;
    };
    let (seller, sku) = seller_with_sku(&app).await;
    put_stock(&app, &seller, &sku, json!({"quantity": 5})).await;
    let id = Uuid::now_v7();
    assert_eq!(
        ctx.inventory
            .reserve(id, &one(&sku, 2), Duration::from_millis(200))
            .await
            .ok(),
        Some(ReserveOutcome::Reserved)
    );
    assert_eq!(stock(&app, &sku).await["reserved"], 2);

    app.eventually(
        "the reservation to expire",
        Duration::from_secs(5),
        || async {
            let s = stock(&app, &sku).await;
            (s["reserved"] == 0 && s["available"] == 5).then_some(())
        },
    )
    .await;
    assert!(
        matches!(ctx.inventory.commit(id).await, Err(ClientError::Failed(..))),
        "an expired reservation cannot be sold"
    );
    ctx.inventory
        .release(id)
        .await
        .expect("releasing again is a no-op");
    assert_eq!(stock(&app, &sku).await["available"], 5);

    let released = app
        .eventually("inventory.released", Duration::from_secs(3), || async {
            let events = published(&app, "inventory.released").await;
            (!events.is_empty()).then_some(events)
        })
        .await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].payload["reservation_id"], id.to_string());
    assert_eq!(released[0].payload["reason"], "expired");
}

#[tokio::test]
async fn stock_changes_and_low_stock_are_published() {
    let app = TestApp::spawn_with(|s| s.inventory.low_stock_threshold = 3).await;
    if app.contexts.is_none() {
        return;
    }
    let (seller, sku) = seller_with_sku(&app).await;
    put_stock(&app, &seller, &sku, json!({"quantity": 10})).await;
    put_stock(&app, &seller, &sku, json!({"quantity": 2})).await;
    put_stock(&app, &seller, &sku, json!({"quantity": 1})).await;
    let changed = app
        .eventually("three stock.changed", Duration::from_secs(3), || async {
            let events = published(&app, "stock.changed").await;
            (events.len() >= 3).then_some(events)
        })
        .await;
    let available: Vec<&Value> = changed.iter().map(|e| &e.payload["available"]).collect();
    assert_eq!(available, vec![&json!(10), &json!(2), &json!(1)]);
    assert!(changed.iter().all(|e| e.subject == sku));
    let low = published(&app, "stock.low").await;
    assert_eq!(low.len(), 1, "once, when falling below the threshold");
    assert_eq!(low[0].payload, json!({"sku": sku, "available": 2}));
}

#[tokio::test]
async fn openapi_documents_the_inventory_routes() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let path = &doc.body["paths"]["/api/v1/inventory/{sku}"];
    for method in ["get", "put"] {
        assert!(path.get(method).is_some(), "{method} missing: {path}");
    }
    for code in ["401", "403", "404", "409", "422"] {
        assert!(
            path["put"]["responses"].get(code).is_some(),
            "PUT does not document {code}"
        );
    }
    let schemas = &doc.body["components"]["schemas"];
    for name in ["Stock", "WarehouseStock", "SetStockRequest"] {
        assert!(schemas.get(name).is_some(), "schema {name} missing");
    }
}

#[tokio::test]
async fn demo_data_stocks_every_demo_sku_once() {
    let app = TestApp::spawn().await;
    let Some(ctx) = app.contexts.clone() else {
        return;
    };
    // A SKU no demo shopper buys.
    mercato::demo::load(&ctx).await.expect("demo loads");
    let s = stock(&app, "BEANIE-NVY").await;
    assert_eq!(
        s["warehouses"],
        json!([{"warehouse": "main", "on_hand": mercato::demo::DEMO_STOCK, "reserved": 0}])
    );
    ctx.inventory
        .reserve(
            Uuid::now_v7(),
            &one("BEANIE-NVY", 1),
            Duration::from_secs(600),
        )
        .await
        .expect("reserve");
    mercato::demo::load(&ctx).await.expect("demo loads again");
    let s = stock(&app, "BEANIE-NVY").await;
    assert_eq!(
        (s["available"].as_i64(), s["reserved"].as_i64()),
        (Some(mercato::demo::DEMO_STOCK - 1), Some(1))
    );
    assert_eq!(
        stock(&app, "BEANIE-NVY").await["warehouses"][0]["on_hand"],
        mercato::demo::DEMO_STOCK
    );
    // One tote was sold to a demo shopper, once: a reload sells no more.
    assert_eq!(
        stock(&app, "TOTE-NAT").await["available"],
        mercato::demo::DEMO_STOCK - 1
    );
}

#[tokio::test]
async fn the_stock_of_several_skus_is_read_in_one_request() {
    let app = TestApp::spawn().await;
    let (seller, a) = seller_with_sku(&app).await;
    let b = unique("INV");
    app.create_product(&seller, "c", &[(&b, 700)]).await;
    assert_eq!(
        put_stock(&app, &seller, &a, json!({"quantity": 4}))
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .get(&format!("/inventory?skus={b},{a},NO-SUCH-SKU"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["items"],
        json!([{"sku": b, "available": 0}, {"sku": a, "available": 4}, {"sku": "NO-SUCH-SKU", "available": 0}])
    );
    for bad in ["", ",", "a%20b", "x%00"] {
        let r = app.get(&format!("/inventory?skus={bad}"), None).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            r.body
        );
    }
    let many = (0..101)
        .map(|i| format!("S{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let r = app.get(&format!("/inventory?skus={many}"), None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn admins_see_the_skus_running_out_fewest_first() {
    let app = TestApp::spawn().await;
    let (seller, low) = seller_with_sku(&app).await;
    let plenty = unique("INV");
    app.create_product(&seller, "c", &[(&plenty, 700)]).await;
    for (sku, quantity) in [(&low, 2), (&plenty, 50)] {
        let r = put_stock(&app, &seller, sku, json!({"quantity": quantity})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let admin = app.admin().await;
    let r = app.get("/admin/low-stock", Some(&admin.token)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["threshold"], 5);
    let items = r.body["items"].as_array().cloned().unwrap_or_default();
    let available: Vec<i64> = items
        .iter()
        .filter_map(|i| i["available"].as_i64())
        .collect();
    assert!(available.iter().all(|a| *a <= 5), "{available:?}");
    assert!(
        available.windows(2).all(|w| w[0] <= w[1]),
        "fewest first: {available:?}"
    );
    assert!(items.len() <= 50);
    assert!(
        !items.iter().any(|i| i["sku"] == plenty.as_str()),
        "50 on hand is not running out"
    );
    // Against a shared server other tests' SKUs may run lower and fill the 50.
    if items.len() < 50 {
        let ours = items
            .iter()
            .find(|i| i["sku"] == low.as_str())
            .expect("listed");
        assert_eq!(ours["available"], 2);
        assert!(ours["product_id"].is_string() && ours["title"].is_string());
    }
    for who in [&seller, &app.register("customer").await] {
        assert_eq!(
            app.get("/admin/low-stock", Some(&who.token)).await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        app.get("/admin/low-stock", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}
