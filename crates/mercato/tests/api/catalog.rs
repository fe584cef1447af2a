use crate::support::{unique, TestApp};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_seller_creates_a_product_anyone_reads_it() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let sku = unique("MUG");
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": "Mug", "description": "Holds tea", "category": "kitchen",
                   "variants": [{"sku": sku, "title": "Blue", "price": {"amount": 1299, "currency": "EUR"}, "attributes": {"color": "blue"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let p = r.body;
    assert_eq!(p["seller_id"], seller.id.as_str());
    assert_eq!(p["status"], "active");
    assert_eq!(
        p["variants"][0],
        json!({"sku": sku, "title": "Blue", "price": {"amount": 1299, "currency": "EUR"}, "prices": [], "attributes": {"color": "blue"}})
    );
    for field in [
        "id",
        "title",
        "description",
        "category",
        "created_at",
        "updated_at",
    ] {
        assert!(p.get(field).is_some(), "{field} missing");
    }
    let id = p["id"].as_str().expect("id");
    let got = app.get(&format!("/products/{id}"), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, p);
}

#[tokio::test]
async fn only_sellers_and_admins_create_products() {
    let app = TestApp::spawn().await;
    let customer = app.register("customer").await;
    let body = json!({"title": "X", "description": "", "category": "c", "variants": [{"sku": unique("X"), "price": {"amount": 1, "currency": "EUR"}}]});
    let anon = app.post("/products", None, body.clone()).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let r = app.post("/products", Some(&customer.token), body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "forbidden");
}

#[tokio::test]
async fn invalid_products_are_422() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    for body in [
        json!({"title": "", "category": "c", "variants": [{"sku": unique("A"), "price": {"amount": 1, "currency": "EUR"}}]}),
        json!({"title": "T", "category": "c", "variants": []}),
        json!({"title": "T", "category": "c", "variants": [{"sku": unique("A"), "price": {"amount": -1, "currency": "EUR"}}]}),
        json!({"title": "T", "category": "c", "variants": [{"sku": unique("A"), "price": {"amount": 1, "currency": "euro"}}]}),
        json!({"title": "T", "category": "c", "variants": [{"sku": "has space", "price": {"amount": 1, "currency": "EUR"}}]}),
        json!({"title": "T", "category": "c", "variants": [{"sku": unique("A"), "price": {"amount": 1.5, "currency": "EUR"}}]}),
        json!({"title": "   ", "category": "c", "variants": [{"sku": unique("A"), "price": {"amount": 1, "currency": "EUR"}}]}),
        // 200 characters at most, counted as sent (white space around included).
        json!({"title": format!(" {} ", "t".repeat(199)), "category": "c", "variants": [{"sku": unique("A"), "price": {"amount": 1, "currency": "EUR"}}]}),
        json!({"title": "T", "category": "c", "variants": [{"sku": unique("A"), "title": "\t", "price": {"amount": 1, "currency": "EUR"}}]}),
    ] {
        let r = app
            .post("/products", Some(&seller.token), body.clone())
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {:?}",
            r.body
        );
    }
}

#[tokio::test]
async fn a_sku_is_unique_across_the_shop() {
    let app = TestApp::spawn().await;
    let a = app.register("seller").await;
    let b = app.register("seller").await;
    let sku = unique("SHARED");
    app.create_product(&a, "c", &[(&sku, 100)]).await;
    let r = app
        .post("/products", Some(&b.token), json!({"title": "Copy", "category": "c", "variants": [{"sku": sku, "price": {"amount": 1, "currency": "EUR"}}]}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "sku_taken");
}

#[tokio::test]
async fn whole_numbers_are_prices_and_text_is_kept_trimmed() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let title = format!(" {} ", "t".repeat(198));
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": title, "category": " c ", "variants": [{"sku": unique("W"), "price": {"amount": 1290.0, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["variants"][0]["price"]["amount"], 1290);
    assert_eq!(r.body["title"], "t".repeat(198));
    assert_eq!(r.body["category"], "c");
}

#[tokio::test]
async fn variants_share_one_currency_and_use_a_sku_once() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let sku = unique("TWICE");
    let twice = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": "T", "category": "c", "variants": [
                {"sku": sku, "price": {"amount": 1, "currency": "EUR"}},
                {"sku": sku, "price": {"amount": 2, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{:?}", twice.body);
    assert_eq!(twice.code(), "sku_taken");
    let mixed = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": "T", "category": "c", "variants": [
                {"sku": unique("EU"), "price": {"amount": 1, "currency": "EUR"}},
                {"sku": unique("US"), "price": {"amount": 1, "currency": "USD"}}]}),
        )
        .await;
    assert_eq!(mixed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(mixed.code(), "currency_mismatch");
}

#[tokio::test]
async fn unknown_and_malformed_product_ids_are_404() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/products/01930000-0000-7000-8000-000000000000", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app.get("/products/not-a-uuid", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
}

#[tokio::test]
async fn only_the_owner_or_an_admin_changes_a_product() {
    let app = TestApp::spawn().await;
    let owner = app.register("seller").await;
    let other = app.register("seller").await;
    let customer = app.register("customer").await;
    let p = app
        .create_product(&owner, "c", &[(&unique("S"), 100)])
        .await;
    let path = format!("/products/{}", p["id"].as_str().expect("id"));
    assert_eq!(
        app.patch(&path, Some(&other.token), json!({"title": "Mine"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.patch(&path, Some(&customer.token), json!({"title": "Mine"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&path, Some(&other.token)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.patch(&path, None, json!({"title": "Mine"}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let r = app
        .patch(
            &path,
            Some(&owner.token),
            json!({"title": "Renamed", "category": "new"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["title"], "Renamed");
    assert_eq!(r.body["category"], "new");
    assert_eq!(app.get(&path, None).await.body["title"], "Renamed");
}

#[tokio::test]
async fn patching_variants_replaces_them_and_reprices() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let sku = unique("V");
    let p = app.create_product(&seller, "c", &[(&sku, 100)]).await;
    let path = format!("/products/{}", p["id"].as_str().expect("id"));
    let r = app
        .patch(
            &path,
            Some(&seller.token),
            json!({"variants": [{"sku": sku, "price": {"amount": 250, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["variants"][0]["price"]["amount"], 250);
    assert_eq!(
        app.get(&path, None).await.body["variants"][0]["price"]["amount"],
        250
    );
}

#[tokio::test]
async fn delete_archives_the_product() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let p = app
        .create_product(&seller, "c", &[(&unique("D"), 100)])
        .await;
    let path = format!("/products/{}", p["id"].as_str().expect("id"));
    let r = app.delete(&path, Some(&seller.token)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let got = app.get(&path, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["status"], "archived");
    let edit = app
        .patch(&path, Some(&seller.token), json!({"title": "Back"}))
        .await;
    assert_eq!(edit.status, StatusCode::CONFLICT);
    assert_eq!(
        app.delete(&path, Some(&seller.token)).await.status,
        StatusCode::NO_CONTENT,
        "archiving twice is harmless"
    );
}

#[tokio::test]
async fn lists_filter_by_category_and_seller_and_page_with_cursors() {
    let app = TestApp::spawn().await;
    let a = app.register("seller").await;
    let b = app.register("seller").await;
    let cat = unique("cat");
    for i in 0..5 {
        app.create_product(&a, &cat, &[(&unique(&format!("A{i}")), 100)])
            .await;
    }
    app.create_product(&b, &cat, &[(&unique("B"), 100)]).await;
    app.create_product(&b, "elsewhere", &[(&unique("B"), 100)])
        .await;

    let all = app.get(&format!("/products?category={cat}"), None).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body["items"].as_array().map(Vec::len), Some(6));
    assert!(all.body["next_cursor"].is_null());

    let mine = app
        .get(
            &format!("/products?category={cat}&seller_id={}", a.id),
            None,
        )
        .await;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(5));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/products?category={cat}&limit=2&cursor={c}"),
            None => format!("/products?category={cat}&limit=2"),
        };
        let page = app.get(&path, None).await;
        assert_eq!(page.status, StatusCode::OK);
        for item in page.body["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");

    assert_eq!(
        app.get("/products?limit=0", None).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/products?cursor=%25%25", None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/products?seller_id=nope", None).await.status,
        StatusCode::BAD_REQUEST
    );
}

/// Categories with parents: filters by a category include its
/// subcategories, in the product list and in search; a product with a
/// category nobody made yet makes it at top level.
#[tokio::test]
async fn categories_nest_and_filters_include_subcategories() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let seller = app.register("seller").await;
    let tag = unique("k").to_lowercase().replace('_', "-");
    let root_name = format!("Kitchen {tag}");
    let root = app
        .post(
            "/categories",
            Some(&admin.token),
            json!({"name": root_name}),
        )
        .await;
    assert_eq!(root.status, StatusCode::CREATED, "{:?}", root.body);
    let root_slug = root.body["slug"].as_str().expect("slug").to_owned();
    assert_eq!(root_slug, format!("kitchen-{tag}"));
    assert_eq!(root.body["parent"], serde_json::Value::Null);
    assert_eq!(root.body["path"], root_slug.as_str());
    let cups_slug = format!("cups-{tag}");
    let cups = app
        .post(
            "/categories",
            Some(&admin.token),
            json!({"name": "Cups", "slug": cups_slug, "parent": root_slug}),
        )
        .await;
    assert_eq!(cups.status, StatusCode::CREATED, "{:?}", cups.body);
    assert_eq!(cups.body["path"], format!("{root_slug}/{cups_slug}"));

    for (body, status) in [
        (
            json!({"name": "Again", "slug": cups_slug}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"name": "Orphan", "parent": format!("none-{tag}")}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "Bad", "slug": "Not A Slug"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"name": "  "}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = app
            .post("/categories", Some(&admin.token), body.clone())
            .await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
    }
    let r = app
        .post("/categories", Some(&seller.token), json!({"name": "Mine"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // One product in the subcategory, one at the top, one elsewhere.
    let word = format!("w{}", uuid::Uuid::now_v7().simple());
    let make = |category: String| {
        let app = &app;
        let seller = &seller;
        let word = word.clone();
        async move {
            let r = app
                .post(
                    "/products",
                    Some(&seller.token),
                    json!({"title": format!("Thing {word}"), "category": category,
                           "variants": [{"sku": unique("CAT"), "price": {"amount": 100, "currency": "EUR"}}]}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            r.body
        }
    };
    let in_cups = make(cups_slug.clone()).await;
    assert_eq!(in_cups["category_path"], json!([root_slug, cups_slug]));
    let in_root = make(root_name.clone()).await;
    assert_eq!(in_root["category_path"], json!([root_slug]));
    let elsewhere_name = format!("Garden {tag}");
    let elsewhere = make(elsewhere_name.clone()).await;
    assert_eq!(elsewhere["category_path"], json!([format!("garden-{tag}")]));
    let listed = app.get("/categories", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let slugs: Vec<&str> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["slug"].as_str())
        .collect();
    assert!(
        slugs.contains(&format!("garden-{tag}").as_str()),
        "made at top level: {slugs:?}"
    );

    let ids = |r: &crate::support::Response| -> Vec<String> {
        r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect()
    };
    let under_root = app
        .get(&format!("/products?category={}&limit=100", root_slug), None)
        .await;
    let got = ids(&under_root);
    assert!(got.contains(&in_cups["id"].as_str().expect("id").to_owned()));
    assert!(got.contains(&in_root["id"].as_str().expect("id").to_owned()));
    assert_eq!(got.len(), 2, "{got:?}");
    let under_cups = app
        .get(&format!("/products?category={cups_slug}"), None)
        .await;
    assert_eq!(
        ids(&under_cups),
        vec![in_cups["id"].as_str().expect("id").to_owned()]
    );

    // Search: the same, within 2 seconds.
    app.eventually(
        "search finds both under the root",
        std::time::Duration::from_secs(5),
        || async {
            let r = app
                .get(&format!("/search?q={word}&category={root_slug}"), None)
                .await;
            (r.body["total"] == 2).then_some(())
        },
    )
    .await;
    let r = app
        .get(&format!("/search?q={word}&category={cups_slug}"), None)
        .await;
    assert_eq!(r.body["total"], 1, "{:?}", r.body);
}

#[tokio::test]
async fn products_carry_images_and_sellers_list_their_own() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let other = app.register("seller").await;
    let images = json!([{"url": "https://cdn.example.com/a.jpg", "alt": "A blue mug"},
                        {"url": "http://cdn.example.com/b.png", "alt": ""}]);
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": "Mug", "category": "kitchen", "images": images,
                   "variants": [{"sku": unique("IMG"), "price": {"amount": 100, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["images"], images);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let changed = app
        .patch(
            &format!("/products/{id}"),
            Some(&seller.token),
            json!({"images": [{"url": "https://cdn.example.com/c.jpg", "alt": "C"}]}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["images"].as_array().map(Vec::len), Some(1));
    for bad in [
        json!([{"url": "ftp://x/y.jpg"}]),
        json!([{"url": "https://has space/y.jpg"}]),
        json!((0..21)
            .map(|i| json!({"url": format!("https://x/{i}.jpg")}))
            .collect::<Vec<_>>()),
    ] {
        let r = app
            .patch(
                &format!("/products/{id}"),
                Some(&seller.token),
                json!({"images": bad}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            r.body
        );
    }

    app.create_product(&other, "kitchen", &[(&unique("OTHER"), 100)])
        .await;
    let mine = app
        .get("/products?seller_id=me&limit=100", Some(&seller.token))
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
    let items = mine.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    let anonymous = app.get("/products?seller_id=me", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let bad = app.get("/products?seller_id=someone", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
