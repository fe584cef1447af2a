//! Interactions recorded at the gateway and by clients, and the reports
//! analytics builds from them and from orders: sales, top products, the
//! funnel and search terms, for the shop and for each seller, as JSON and
//! as CSV.

use crate::orders::{add_to_cart, checkout, settled, stocked_sku};
use crate::support::{unique, Response, TestApp, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// Reports are built from events: within this of what they count.
const WITHIN: Duration = Duration::from_secs(5);

async fn report(app: &TestApp, path: &str, user: &User) -> Response {
    let r = app.get(path, Some(&user.token)).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
    r
}

fn funnel(body: &Value) -> [i64; 4] {
    [
        "product_views",
        "add_to_cart",
        "checkouts",
        "confirmed_orders",
    ]
    .map(|k| body[k].as_i64().unwrap_or(-1))
}

#[tokio::test]
async fn a_sellers_reports_follow_views_carts_orders_and_refunds() {
    let app = TestApp::spawn().await;
    let (seller, sku) = stocked_sku(&app, 10).await;
    let customer = app.register("customer").await;
    // The SKU's product: the cart line names it.
    add_to_cart(&app, &customer, &sku, 2).await;
    let cart = app.get("/cart", Some(&customer.token)).await;
    let product_id = cart.body["items"][0]["product_id"]
        .as_str()
        .expect("product id")
        .to_owned();
    for session in ["s-1", "s-1", "s-2"] {
        let r = app
            .request(
                Method::GET,
                &format!("/products/{product_id}"),
                None,
                None,
                &[("x-session-id", session)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        // What the catalog observed stays inside.
        assert!(r.headers.get("x-mercato-interaction").is_none());
    }
    let r = checkout(&app, &customer, "tok_visa", &unique("key")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(r.headers.get("x-mercato-interaction").is_none());
    let order = settled(&app, &customer, r.body["id"].as_str().expect("id")).await;
    assert_eq!(order["status"], "confirmed", "{order}");

    let seen = app
        .eventually("the seller's funnel", WITHIN, || async {
            let r = report(&app, "/seller/reports/funnel", &seller).await;
            (funnel(&r.body) == [3, 1, 1, 1]).then_some(r.body)
        })
        .await;
    assert_eq!(funnel(&seen), [3, 1, 1, 1]);
    let sales = report(&app, "/seller/reports/sales?interval=week", &seller).await;
    let items = sales.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", sales.body);
    assert_eq!(items[0]["orders"], 1);
    assert_eq!(items[0]["units"], 2);
    assert_eq!(
        items[0]["revenue"],
        json!({"amount": 3000, "currency": "EUR"})
    );
    assert_eq!(items[0]["refunds"], json!({"amount": 0, "currency": "EUR"}));
    let start = chrono::NaiveDate::parse_from_str(
        items[0]["period_start"].as_str().expect("period_start"),
        "%Y-%m-%d",
    )
    .expect("a date");
    assert_eq!(chrono::Datelike::weekday(&start), chrono::Weekday::Mon);
    let top = report(&app, "/seller/reports/top-products", &seller).await;
    assert_eq!(top.body["items"][0]["product_id"], product_id.as_str());
    assert_eq!(top.body["items"][0]["units"], 2);
    assert_eq!(top.body["items"].as_array().map(Vec::len), Some(1));

    // The shop's reports hold it too, and only admins read them.
    let admin = app.admin().await;
    let shop = report(&app, "/admin/reports/funnel", &admin).await;
    let [views, adds, checkouts, confirmed] = funnel(&shop.body);
    assert!(
        views >= 3 && adds >= 1 && checkouts >= 1 && confirmed >= 1,
        "{}",
        shop.body
    );
    for (path, who) in [
        ("/admin/reports/sales", &seller),
        ("/admin/reports/funnel", &customer),
        ("/seller/reports/sales", &customer),
        ("/seller/reports/funnel", &admin),
    ] {
        let r = app.get(path, Some(&who.token)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let anonymous = app.get("/admin/reports/sales", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // A full refund: all of the seller's lines come back.
    let refund = app
        .request(
            Method::POST,
            &format!("/orders/{}/refund", order["id"].as_str().expect("id")),
            Some(&admin.token),
            None,
            &[("idempotency-key", unique("refund").as_str())],
        )
        .await;
    assert_eq!(refund.status, StatusCode::OK, "{:?}", refund.body);
    app.eventually("the refund in the seller's sales", WITHIN, || async {
        let r = report(&app, "/seller/reports/sales", &seller).await;
        (r.body["items"][0]["refunds"]["amount"] == 3000).then_some(())
    })
    .await;

    // As CSV.
    let csv = app
        .request(
            Method::GET,
            "/seller/reports/sales",
            Some(&seller.token),
            None,
            &[("accept", "text/csv")],
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers[reqwest::header::CONTENT_TYPE]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/csv")));
    let text = csv.body.as_str().expect("text");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "period_start,currency,orders,units,revenue,refunds"
    );
    assert!(rows[1].ends_with(",EUR,1,2,3000,3000"), "{text}");
}

#[tokio::test]
async fn searches_are_counted_with_what_they_found() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let (found, lost) = (unique("kettle"), unique("nothing"));
    let created = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": found, "description": "For tests", "category": "test",
                   "variants": [{"sku": unique("SKU"), "price": {"amount": 900, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    // Once the index has it, one search for it finds it.
    app.eventually("the product in search", WITHIN, || async {
        let r = app.get(&format!("/search?q={found}"), None).await;
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .any(|i| i["title"] == found.as_str())
            .then_some(())
    })
    .await;
    for _ in 0..2 {
        let r = app
            .get(&format!("/search?q={}", lost.to_uppercase()), None)
            .await;
        assert_eq!(r.body["total"], 0);
    }
    let admin = app.admin().await;
    let term = |body: &Value, query: &str| {
        body["items"]
            .as_array()
            .and_then(|items| items.iter().find(|t| t["query"] == query).cloned())
    };
    let (lost, found) = (lost.to_lowercase(), found.to_lowercase());
    let zero = app
        .eventually("the search that found nothing", WITHIN, || async {
            let r = report(
                &app,
                "/admin/reports/search-terms?zero_results=true&limit=100",
                &admin,
            )
            .await;
            term(&r.body, &lost)
                .filter(|t| t["searches"] == 2)
                .map(|_| r.body)
        })
        .await;
    assert_eq!(term(&zero, &lost).expect("term")["results"], 0);
    assert!(term(&zero, &found).is_none(), "{zero}");
    let all = report(&app, "/admin/reports/search-terms?limit=100", &admin).await;
    let hits = term(&all.body, &found).expect("found")["results"].as_i64();
    assert!(hits.is_some_and(|n| n >= 1), "{}", all.body);
    // Searches belong to no seller: sellers read the shop's.
    report(&app, "/seller/reports/search-terms", &seller).await;
}

#[tokio::test]
async fn clients_report_events_of_their_own() {
    let app = TestApp::spawn().await;
    let kind = unique("video_played");
    for _ in 0..2 {
        let r = app
            .request(
                Method::POST,
                "/events",
                None,
                Some(json!({"type": kind, "product_id": uuid::Uuid::now_v7(),
                            "properties": {"seconds": 12}})),
                &[("x-session-id", "visit-1")],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        assert!(r.body["id"].is_string());
    }
    for bad in [
        json!({"type": "has space"}),
        json!({"type": ""}),
        json!({"type": "x", "product_id": "not-an-id"}),
        json!({"type": "x", "query": "q".repeat(201)}),
        json!({"type": "x", "properties": {"big": "x".repeat(5000)}}),
        json!({"product_id": uuid::Uuid::now_v7()}),
    ] {
        let r = app.post("/events", None, bad.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(r.code(), "validation_failed");
    }
    let admin = app.admin().await;
    let counted = app
        .eventually("the client events", WITHIN, || async {
            let r = report(&app, "/admin/reports/events?limit=100", &admin).await;
            r.body["items"]
                .as_array()
                .and_then(|items| items.iter().find(|e| e["type"] == kind.as_str()).cloned())
        })
        .await;
    assert_eq!(counted["events"], 2);
}

#[tokio::test]
async fn report_parameters_are_checked() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for (path, status, code) in [
        ("/admin/reports/sales?from=yesterday", 400, "invalid_query"),
        ("/admin/reports/sales?interval=year", 400, "invalid_query"),
        ("/admin/reports/sales?interval=", 400, "invalid_query"),
        ("/admin/reports/sales?to=", 400, "invalid_query"),
        ("/admin/reports/sales?to=2026-02-30", 400, "invalid_query"),
        (
            "/admin/reports/top-products?limit=ten",
            400,
            "invalid_query",
        ),
        (
            "/admin/reports/search-terms?zero_results=maybe",
            400,
            "invalid_query",
        ),
        (
            "/admin/reports/funnel?from=2026-12-02&to=2026-12-01",
            422,
            "invalid_range",
        ),
        (
            "/admin/reports/funnel?from=2000-01-01&to=2026-12-01",
            422,
            "invalid_range",
        ),
        (
            "/admin/reports/top-products?limit=0",
            422,
            "validation_failed",
        ),
    ] {
        let r = app.get(path, Some(&admin.token)).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {:?}", r.body);
        assert_eq!(r.code(), code, "{path}");
    }
    // A range of whole days, and instants.
    for path in [
        "/admin/reports/sales?from=2026-01-01&to=2026-01-31&interval=month",
        "/admin/reports/funnel?from=2026-01-01T10:00:00Z&to=2026-01-01T11:00:00Z",
        "/admin/reports/top-products?limit=1000",
    ] {
        report(&app, path, &admin).await;
    }
    let empty = report(
        &app,
        "/admin/reports/sales?from=2001-01-01&to=2001-01-02",
        &admin,
    )
    .await;
    assert_eq!(empty.body, json!({"items": []}));
}
