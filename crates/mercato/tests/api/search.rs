use crate::support::{unique, Response, TestApp, User};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Search promises that a change shows within 2 seconds.
const FRESHNESS: Duration = Duration::from_secs(2);

/// A word no other product has: tests stay independent even on a shared server.
fn word() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

async fn product(
    app: &TestApp,
    seller: &User,
    title: &str,
    description: &str,
    category: &str,
    prices: &[i64],
) -> Value {
    let variants: Vec<Value> = prices
        .iter()
        .map(|amount| json!({"sku": unique("SKU"), "price": {"amount": amount, "currency": "EUR"}}))
        .collect();
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": title, "description": description, "category": category, "variants": variants}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "create product: {:?}",
        r.body
    );
    r.body
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn search(app: &TestApp, params: &[(&str, &str)]) -> Response {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    app.get(&format!("/search?{}", query.join("&")), None).await
}

/// Polls the search until `done` holds for its answer.
async fn search_until(
    app: &TestApp,
    what: &str,
    params: &[(&str, &str)],
    done: impl Fn(&Value) -> bool,
) -> Value {
    app.eventually(what, FRESHNESS, || async {
        let r = search(app, params).await;
        assert_eq!(r.status, StatusCode::OK, "search: {:?}", r.body);
        done(&r.body).then_some(r.body)
    })
    .await
}

fn total(body: &Value) -> u64 {
    body["total"].as_u64().expect("total")
}

fn ids(body: &Value) -> Vec<&str> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["product_id"].as_str().expect("product_id"))
        .collect()
}

#[tokio::test]
async fn a_new_product_is_searchable_within_two_seconds() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let w = word();
    let category = unique("lamps");
    let p = product(
        &app,
        &seller,
        &format!("Brass desk lamp {w}"),
        "Warm light",
        &category,
        &[4500, 3900],
    )
    .await;
    let body = search_until(&app, "the product is searchable", &[("q", &w)], |b| {
        total(b) == 1
    })
    .await;
    assert_eq!(
        body["items"][0],
        json!({
            "product_id": p["id"],
            "title": format!("Brass desk lamp {w}"),
            "category": category,
            "price": {"amount": 3900, "currency": "EUR"},
            "in_stock": false,
            "available": 0,
            "rating": {"average": 0.0, "count": 0},
        })
    );
    assert_eq!(body["facets"]["category"], json!({ category.clone(): 1 }));
    // The description is searched too, and every word must match.
    let r = search(&app, &[("q", &format!("warm {w}"))]).await;
    assert_eq!(total(&r.body), 1);
    let r = search(&app, &[("q", &format!("cold {w}"))]).await;
    assert_eq!(total(&r.body), 0);

    if !crate::support::external() {
        let metrics = app.get("/metrics", None).await;
        let text = metrics.body.as_str().unwrap_or_default();
        for name in ["mercato_search_latency_seconds", "mercato_search_documents"] {
            assert!(text.contains(name), "{name} missing from /metrics");
        }
    }
}

#[tokio::test]
async fn misspelled_and_unfinished_words_still_find_it() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let category = unique("teaware");
    let p = product(&app, &seller, "Porcelain teapot", "", &category, &[2500]).await;
    let id = p["id"].as_str().expect("id");
    search_until(
        &app,
        "the product is searchable",
        &[("category", &category)],
        |b| total(b) == 1,
    )
    .await;
    for q in [
        "porcelain teapot",
        "PORCELAIN",
        "porcelian",        // a transposition in a long word
        "procelain tepot",  // one edit each
        "porcelain tea",    // the last word is being typed
        "teapto porcelain", // order does not matter
    ] {
        let r = search(&app, &[("q", q), ("category", &category)]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(ids(&r.body), vec![id], "{q:?}");
    }
    for q in ["porcelain cup", "pot", "porxxxain"] {
        let r = search(&app, &[("q", q), ("category", &category)]).await;
        assert_eq!(total(&r.body), 0, "{q:?} should not match");
    }
}

#[tokio::test]
async fn category_facets_count_every_category_the_query_matches() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let w = word();
    let (mugs, plates) = (unique("mugs"), unique("plates"));
    for (category, n) in [(&mugs, 3), (&plates, 2)] {
        for i in 0..n {
            product(
                &app,
                &seller,
                &format!("Item {i} {w}"),
                "",
                category,
                &[100],
            )
            .await;
        }
    }
    let all = search_until(&app, "all five are indexed", &[("q", &w)], |b| {
        total(b) == 5
    })
    .await;
    let facets = json!({ mugs.clone(): 3, plates.clone(): 2 });
    assert_eq!(all["facets"]["category"], facets);

    // Filtering by category narrows the items, not the facets.
    let r = search(&app, &[("q", &w), ("category", &plates)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(total(&r.body), 2);
    assert!(r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|i| i["category"] == plates.as_str()));
    assert_eq!(r.body["facets"]["category"], facets);
}

#[tokio::test]
async fn price_filters_use_the_lowest_variant_price() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let category = unique("prices");
    let cheap = product(&app, &seller, "Cheap", "", &category, &[500]).await;
    let middle = product(&app, &seller, "Middle", "", &category, &[1500]).await;
    let split = product(&app, &seller, "Split", "", &category, &[3000, 800]).await;
    search_until(
        &app,
        "all three are indexed",
        &[("category", &category)],
        |b| total(b) == 3,
    )
    .await;
    let ids_of = |products: &[&Value]| {
        let mut v: Vec<String> = products
            .iter()
            .map(|p| p["id"].as_str().expect("id").to_owned())
            .collect();
        v.sort();
        v
    };
    for (filters, expected) in [
        (vec![("min_price", "1000")], ids_of(&[&middle])),
        (vec![("max_price", "1000")], ids_of(&[&cheap, &split])),
        (
            vec![("min_price", "500"), ("max_price", "800")],
            ids_of(&[&cheap, &split]),
        ),
        (
            vec![("min_price", "1500"), ("max_price", "1500")],
            ids_of(&[&middle]),
        ),
        (vec![("min_price", "3001")], vec![]),
    ] {
        let mut params = filters.clone();
        params.push(("category", &category));
        let r = search(&app, &params).await;
        assert_eq!(r.status, StatusCode::OK, "{params:?}: {:?}", r.body);
        let mut got: Vec<String> = ids(&r.body).into_iter().map(str::to_owned).collect();
        got.sort();
        assert_eq!(got, expected, "{filters:?}");
    }
}

#[tokio::test]
async fn limit_bounds_the_items_not_the_total() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let category = unique("limits");
    for i in 0..3 {
        product(&app, &seller, &format!("Thing {i}"), "", &category, &[100]).await;
    }
    search_until(
        &app,
        "all three are indexed",
        &[("category", &category)],
        |b| total(b) == 3,
    )
    .await;
    let r = search(&app, &[("category", &category), ("limit", "2")]).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(total(&r.body), 3);
    // Newest first when relevance ties.
    assert_eq!(r.body["items"][0]["title"], "Thing 2");
    let r = search(&app, &[("category", &category), ("limit", "1000")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn changes_and_archiving_reach_the_index() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let (old, new) = (word(), word());
    let p = product(
        &app,
        &seller,
        &format!("Chair {old}"),
        "",
        "furniture",
        &[100],
    )
    .await;
    let id = p["id"].as_str().expect("id");
    search_until(&app, "the product is searchable", &[("q", &old)], |b| {
        total(b) == 1
    })
    .await;

    let r = app
        .patch(
            &format!("/products/{id}"),
            Some(&seller.token),
            json!({"title": format!("Chair {new}")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    search_until(&app, "the new title is searchable", &[("q", &new)], |b| {
        total(b) == 1
    })
    .await;
    assert_eq!(total(&search(&app, &[("q", &old)]).await.body), 0);

    let r = app
        .delete(&format!("/products/{id}"), Some(&seller.token))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    search_until(&app, "the archived product is gone", &[("q", &new)], |b| {
        total(b) == 0 && b["facets"]["category"] == json!({})
    })
    .await;
}

#[tokio::test]
async fn stock_changes_reach_the_index() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let w = word();
    let p = product(
        &app,
        &seller,
        &format!("Kettle {w}"),
        "",
        "kitchen",
        &[100, 200],
    )
    .await;
    let skus: Vec<&str> = p["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["sku"].as_str().expect("sku"))
        .collect();
    for (sku, quantity) in [(skus[0], 5), (skus[1], 3)] {
        let r = app
            .put(
                &format!("/inventory/{sku}"),
                Some(&seller.token),
                json!({"quantity": quantity}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let body = search_until(&app, "stock summed over the SKUs", &[("q", &w)], |b| {
        b["items"][0]["available"] == 8
    })
    .await;
    assert_eq!(body["items"][0]["in_stock"], true);

    for sku in &skus {
        let r = app
            .put(
                &format!("/inventory/{sku}"),
                Some(&seller.token),
                json!({"quantity": 0}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let body = search_until(&app, "sold out", &[("q", &w)], |b| {
        b["items"][0]["available"] == 0
    })
    .await;
    assert_eq!(body["items"][0]["in_stock"], false);
}

#[tokio::test]
async fn invalid_parameters_are_json_errors() {
    let app = TestApp::spawn().await;
    for (query, status) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=ten", StatusCode::BAD_REQUEST),
        ("min_price=1.5", StatusCode::BAD_REQUEST),
        ("max_price=cheap", StatusCode::BAD_REQUEST),
        ("min_price=-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("min_price=99999999999999999999", StatusCode::BAD_REQUEST),
    ] {
        let r = app.get(&format!("/search?{query}"), None).await;
        assert_eq!(r.status, status, "{query}: {:?}", r.body);
        assert!(
            r.body["error"]["code"].is_string() && r.body["error"]["message"].is_string(),
            "{query}: {:?}",
            r.body
        );
    }
    let long = "a".repeat(1000);
    let r = search(&app, &[("q", &long)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "query_too_long");
    // Query syntax is just text: never an error.
    for q in [
        "title:(", "\"", "a AND OR", "*", "[1 TO 2]", "~", "%00", "ü😀",
    ] {
        let r = search(&app, &[("q", q)]).await;
        assert_eq!(r.status, StatusCode::OK, "{q:?}: {:?}", r.body);
    }
    // Empty values mean "not given".
    let r = app
        .get("/search?q=&category=&min_price=&max_price=&limit=", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

#[tokio::test]
async fn every_query_the_document_allows_is_answered() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let w = word();
    product(&app, &seller, &format!("Lamp {w}"), "", "home", &[500]).await;
    search_until(&app, "indexed", &[("q", &w)], |b| b["total"] == 1).await;

    // A price range the wrong way round: nothing is in it.
    let r = search(
        &app,
        &[("q", &w), ("min_price", "600"), ("max_price", "400")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["total"], 0);
    assert_eq!(r.body["items"], json!([]));
    // Words past the sixteenth are left out.
    let many = format!("{w} {}", vec!["zzzz"; 30].join(" "));
    let r = search(&app, &[("q", &many)]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Any limit from 1 up, served as at most 100.
    for limit in ["1", "100", "101", "4294967296", "9223372036854775807"] {
        let r = search(&app, &[("q", &w), ("limit", limit)]).await;
        assert_eq!(r.status, StatusCode::OK, "limit {limit}: {:?}", r.body);
        assert_eq!(r.body["total"], 1);
    }
    // 256 characters are counted as sent, white space included.
    let padded = format!("{w}{}", " ".repeat(256 - w.chars().count()));
    assert_eq!(search(&app, &[("q", &padded)]).await.status, StatusCode::OK);
    let over = format!("{padded} ");
    let r = search(&app, &[("q", &over)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "query_too_long");
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_event_log() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let w = word();
    let p = product(&app, &seller, &format!("Rug {w}"), "", "home", &[100]).await;
    let sku = p["variants"][0]["sku"].as_str().expect("sku").to_owned();
    let r = app
        .put(
            &format!("/inventory/{sku}"),
            Some(&seller.token),
            json!({"quantity": 4}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let gone = product(&app, &seller, &format!("Vase {w}"), "", "home", &[100]).await;
    let r = app
        .delete(
            &format!("/products/{}", gone["id"].as_str().expect("id")),
            Some(&seller.token),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let before = search_until(&app, "the index is current", &[("q", &w)], |b| {
        total(b) == 1 && b["items"][0]["available"] == 4
    })
    .await;
    let Some(dir) = app.stop().await else {
        // An external server cannot be restarted from here.
        return;
    };

    // A clean restart keeps the index.
    let path = dir.path().to_path_buf();
    let app = TestApp::spawn_with(|s| s.data_dir = path.clone()).await;
    let r = search(&app, &[("q", &w)]).await;
    assert_eq!(r.body, before, "the index survives a clean restart");
    app.stop().await;

    // Without its folder, the index is rebuilt by replaying the event log.
    std::fs::remove_dir_all(path.join("search")).expect("search folder removed");
    let app = TestApp::spawn_with(|s| s.data_dir = path.clone()).await;
    let after = search_until(&app, "the index is rebuilt", &[("q", &w)], |b| {
        total(b) == 1 && b["items"][0]["available"] == 4
    })
    .await;
    assert_eq!(after, before);
    app.stop().await;
    drop(dir);
}

/// A product of one variant with attributes, and `stock` units of it.
async fn attributed(
    app: &TestApp,
    seller: &User,
    title: &str,
    category: &str,
    price: i64,
    color: &str,
    stock: i64,
) -> String {
    let sku = unique("SKU");
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": title, "description": "For tests", "category": category,
                   "variants": [{"sku": sku, "price": {"amount": price, "currency": "EUR"},
                                 "attributes": {"color": color}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    if stock > 0 {
        let s = app
            .put(
                &format!("/inventory/{sku}"),
                Some(&seller.token),
                json!({"quantity": stock}),
            )
            .await;
        assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    }
    r.body["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn sorts_stock_and_attribute_filters_facets_and_cursor_pages() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let category = unique("lamps").to_lowercase();
    let cheap = attributed(&app, &seller, "Reading lamp", &category, 900, "Red", 0).await;
    let middle = attributed(&app, &seller, "Floor lamp", &category, 3000, "red", 2).await;
    let dear = attributed(&app, &seller, "Chandelier", &category, 12000, "gold", 1).await;
    // Stock travels by event: wait for it before asking for stock.
    search_until(
        &app,
        "stock to be searchable",
        &[("category", &category), ("in_stock", "true")],
        |b| total(b) == 2,
    )
    .await;
    let by_price = search(&app, &[("category", &category), ("sort", "price_asc")]).await;
    assert_eq!(ids(&by_price.body), [&cheap, &middle, &dear]);
    let dearest = search(&app, &[("category", &category), ("sort", "price_desc")]).await;
    assert_eq!(ids(&dearest.body), [&dear, &middle, &cheap]);
    // Attribute values match without case; facets count them per value.
    let red = search(&app, &[("category", &category), ("attr.color", "RED")]).await;
    assert_eq!(total(&red.body), 2, "{:?}", red.body);
    let facets = &by_price.body["facets"];
    assert_eq!(facets["attr.color"], json!({"red": 2, "gold": 1}));
    let buckets: Vec<u64> = facets["price"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(buckets, [1, 0, 1, 0, 1]);
    // Pages of one, by cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..4 {
        let page = search(
            &app,
            &[
                ("category", &category),
                ("sort", "price_asc"),
                ("limit", "1"),
                ("cursor", &cursor),
            ],
        )
        .await;
        seen.extend(ids(&page.body).into_iter().map(str::to_owned));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, [cheap.clone(), middle, dear]);
    // Nothing is rated yet.
    let rated = search(&app, &[("category", &category), ("min_rating", "1")]).await;
    assert_eq!(total(&rated.body), 0);
    for (query, status) in [
        ("sort=cheapest", StatusCode::UNPROCESSABLE_ENTITY),
        ("in_stock=yes", StatusCode::BAD_REQUEST),
        ("min_rating=6", StatusCode::UNPROCESSABLE_ENTITY),
        ("min_rating=high", StatusCode::BAD_REQUEST),
        ("cursor=%21", StatusCode::BAD_REQUEST),
    ] {
        let r = app.get(&format!("/search?{query}"), None).await;
        assert_eq!(r.status, status, "{query}: {:?}", r.body);
    }
    // Suggestions complete categories and titles, typos too.
    let s = app
        .get(&format!("/search/suggest?q={}", &category[..8]), None)
        .await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(
        s.body["suggestions"]
            .as_array()
            .expect("list")
            .iter()
            .any(|x| x["kind"] == "category" && x["text"] == category.as_str()),
        "{:?}",
        s.body
    );
    let s = app.get("/search/suggest?q=chandelir", None).await;
    assert!(
        s.body["suggestions"]
            .as_array()
            .expect("list")
            .iter()
            .any(|x| x["product_id"] == cheap.as_str() || x["text"] == "Chandelier"),
        "{:?}",
        s.body
    );
    let empty = app.get("/search/suggest?q=", None).await;
    assert_eq!(empty.body, json!({"suggestions": []}));
}
