//! The web pages: the storefront at `/` and the admin console at `/admin`.
//!
//! Every page is fetched in every role over HTTP (with the cookie session
//! and CSRF tokens a browser would use), and four journeys run in a real
//! Chromium driven by Playwright (`tests/browser/*.mjs`; `scripts/test`
//! installs Debian's `chromium` and the npm packages), each page of them
//! screenshotted into `target/browser-artifacts` and checked by axe-core.

#[path = "support/mod.rs"]
mod support;

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use support::{unique, TestApp, User};

/// A browser without a browser: cookies kept, redirects not followed.
struct Session {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Session {
    fn new(app: &TestApp) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.base.clone(),
            cookies: HashMap::new(),
        }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all(header::SET_COOKIE) {
            let Some((pair, _)) = v
                .to_str()
                .ok()
                .map(|s| s.split_once(';').unwrap_or((s, "")))
            else {
                continue;
            };
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .expect("page fetched");
        self.page(response).await
    }

    /// Posts a form with this session's CSRF token (unless `csrf` is given).
    async fn post(&mut self, path: &str, fields: &[(&str, &str)], csrf: Option<&str>) -> Page {
        let token = self
            .cookies
            .get("mercato_csrf")
            .cloned()
            .unwrap_or_default();
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", csrf.unwrap_or(&token)));
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::COOKIE, self.cookie_header())
            .form(&form)
            .send()
            .await
            .expect("form posted");
        self.page(response).await
    }

    async fn page(&mut self, response: reqwest::Response) -> Page {
        self.keep(&response);
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.expect("page body");
        Page {
            status,
            location,
            body,
        }
    }

    /// Signs in through the sign-in form.
    async fn sign_in(&mut self, email: &str, password: &str) {
        let form = self.get("/signin").await;
        assert_eq!(form.status, StatusCode::OK);
        let done = self
            .post(
                "/signin",
                &[("email", email), ("password", password), ("next", "/")],
                None,
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "sign in: {}", done.body);
        assert!(self.cookies.contains_key("mercato_session"));
    }

    /// `path` answers a whole page, rendered.
    async fn renders(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(
            !page.body.contains("could not be shown"),
            "{path} failed to render"
        );
        page.body
    }
}

const PASSWORD: &str = "correct horse battery";

/// A seller's product with stock, findable by search.
async fn product_on_sale(
    app: &TestApp,
    seller: &User,
    title: &str,
    stock: i64,
) -> (String, String) {
    let sku = unique("SKU");
    let r = app
        .post(
            "/products",
            Some(&seller.token),
            json!({"title": title, "description": "Hand made, sturdy and bright.", "category": "Lighting",
                   "variants": [{"sku": sku, "price": {"amount": 4500, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let r = app
        .put(
            &format!("/inventory/{sku}"),
            Some(&seller.token),
            json!({"quantity": stock}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let word = title
        .split_whitespace()
        .last()
        .unwrap_or(title)
        .to_lowercase();
    app.eventually(
        "the product to be searchable",
        Duration::from_secs(10),
        || async {
            let r = app.get(&format!("/search?q={word}"), None).await;
            r.body["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|i| i["product_id"] == id.as_str()))
                .then_some(())
        },
    )
    .await;
    (id, sku)
}

/// A confirmed order of `sku` by `customer`, placed through the API.
async fn confirmed_order(app: &TestApp, customer: &User, sku: &str) -> String {
    let r = app
        .post(
            "/cart/items",
            Some(&customer.token),
            json!({"sku": sku, "quantity": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let key = unique("checkout");
    let r = app
        .request(
            reqwest::Method::POST,
            "/checkout",
            Some(&customer.token),
            Some(json!({"payment": {"token": "tok_visa"},
                        "shipping_address": {"name": "Ada", "line1": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}})),
            &[("idempotency-key", &key)],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("order id").to_owned();
    let r = app
        .get(&format!("/orders/{id}?wait=10"), Some(&customer.token))
        .await;
    assert_eq!(r.body["status"], "confirmed", "{:?}", r.body);
    id
}

async fn customer(app: &TestApp) -> User {
    app.register("customer").await
}

#[tokio::test]
async fn every_page_renders_for_the_roles_that_may_see_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let seller = app.register("seller").await;
    let buyer = customer(&app).await;
    let (product, sku) = product_on_sale(&app, &seller, "Brass Lantern", 10).await;
    let order = confirmed_order(&app, &buyer, &sku).await;

    // Anyone.
    let mut anon = Session::new(&app);
    let home = anon.renders("/").await;
    assert!(
        home.contains("Brass Lantern"),
        "the home page lists the product"
    );
    assert!(
        anon.cookies.contains_key("mercato_csrf"),
        "a first visit gets a CSRF token"
    );
    let hits = anon.renders("/search?q=lantern&sort=price_asc").await;
    assert!(hits.contains(&format!("/products/{product}")));
    // The price facet's range of 45.00 EUR, as decimals a person types.
    assert!(hits.contains("25.00 to 50.00 EUR"), "{hits}");
    assert!(
        hits.contains("min_price=25.00&amp;max_price=49.99"),
        "a range holds its start, not its end: {hits}"
    );
    let ranged = anon
        .renders("/search?q=lantern&min_price=25.00&max_price=50")
        .await;
    assert!(
        ranged.contains(&format!("/products/{product}")),
        "a decimal price range finds it"
    );
    let outside = anon.renders("/search?q=lantern&min_price=50").await;
    assert!(
        !outside.contains(&format!("/products/{product}")),
        "45.00 is under 50"
    );
    anon.renders("/search?category=Lighting").await;
    let suggestions = anon.renders("/search/suggest?q=lant").await;
    assert!(suggestions.contains("Brass Lantern"), "{suggestions}");
    let page = anon.renders(&format!("/products/{product}")).await;
    assert!(page.contains("Add to cart") && page.contains("45.00 EUR"));
    anon.renders("/signin").await;
    anon.renders("/register").await;
    for private in [
        "/cart",
        "/checkout",
        "/account",
        "/account/orders",
        "/admin",
    ] {
        let p = anon.get(private).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{private}");
        assert!(
            p.location
                .as_deref()
                .is_some_and(|l| l.starts_with("/signin?next=")),
            "{private} sends to the sign-in page: {:?}",
            p.location
        );
    }
    let missing = anon.get("/products/not-a-product").await;
    assert!(missing.status.is_client_error(), "{}", missing.status);
    let css = anon.get("/static/app.css").await;
    assert_eq!(css.status, StatusCode::OK);

    // A customer.
    let mut shopper = Session::new(&app);
    shopper.sign_in(&buyer.email, PASSWORD).await;
    for path in ["/", "/cart", "/checkout", "/account", "/account/orders"] {
        shopper.renders(path).await;
    }
    let mine = shopper.renders(&format!("/account/orders/{order}")).await;
    assert!(mine.contains("confirmed"));
    let status = shopper
        .renders(&format!("/account/orders/{order}/status"))
        .await;
    assert!(status.contains("id=\"order-status\""));
    // Subscribing from the product page needs a saved address, then
    // delivers there every period.
    let no_address = shopper
        .post(
            "/subscriptions",
            &[
                ("sku", &sku),
                ("quantity", "1"),
                ("interval", "month"),
                ("card", "tok_visa"),
                ("back", &format!("/products/{product}")),
            ],
            None,
        )
        .await;
    assert_eq!(no_address.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get("/subscriptions", Some(&buyer.token)).await.body["items"],
        json!([])
    );
    let saved = shopper
        .post(
            "/account/addresses",
            &[
                ("name", "Ada"),
                ("line1", "Main St 1"),
                ("city", "Berlin"),
                ("postal_code", "10115"),
                ("country", "de"),
                ("default", "on"),
            ],
            None,
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let key = uuid::Uuid::now_v7().to_string();
    for _ in 0..2 {
        let subscribed = shopper
            .post(
                "/subscriptions",
                &[
                    ("sku", &sku),
                    ("quantity", "1"),
                    ("interval", "week"),
                    ("card", "tok_visa"),
                    ("idempotency_key", &key),
                    ("back", &format!("/products/{product}")),
                ],
                None,
            )
            .await;
        assert_eq!(subscribed.status, StatusCode::SEE_OTHER);
    }
    let subscriptions = app.get("/subscriptions", Some(&buyer.token)).await.body;
    assert_eq!(
        subscriptions["items"].as_array().map(Vec::len),
        Some(1),
        "one however often the form is sent: {subscriptions}"
    );
    assert_eq!(subscriptions["items"][0]["interval"], "week");
    let account = shopper.renders("/account").await;
    assert!(
        account.contains("every week") && account.contains("Main St 1"),
        "{account}"
    );
    let refused = shopper.get("/admin").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("Sign out") && refused.body.contains("sellers and admins"),
        "an error page keeps the visitor's session in its header: {}",
        refused.body
    );

    // A seller: the console, without the admin's pages.
    let mut staff = Session::new(&app);
    staff.sign_in(&seller.email, PASSWORD).await;
    for path in [
        "/admin",
        "/admin/orders",
        "/admin/products",
        "/admin/products/new",
        "/admin/reports",
    ] {
        staff.renders(path).await;
    }
    staff.renders(&format!("/admin/products/{product}")).await;
    let dashboard = staff.renders("/admin").await;
    assert!(dashboard.contains("<svg"), "the dashboard draws its chart");
    assert!(
        dashboard.contains("Every SKU has more than 5 available"),
        "{dashboard}"
    );
    // Down to 2 (at most inventory.low_stock_threshold, 5): on the dashboard.
    let set = staff
        .post(
            &format!("/admin/products/{product}/stock"),
            &[("sku", &sku), ("quantity", "2"), ("warehouse", "main")],
            None,
        )
        .await;
    assert_eq!(set.status, StatusCode::SEE_OTHER);
    let dashboard = staff.renders("/admin").await;
    assert!(
        dashboard.contains("Low stock") && dashboard.contains(&sku),
        "{dashboard}"
    );
    // Variants and prices, and images, edited in the console.
    let new_sku = unique("LANTERN-BIG");
    let saved = staff
        .post(
            &format!("/admin/products/{product}/variants"),
            &[
                ("variant.0.title", "Small"),
                ("variant.0.price", "44.50"),
                ("new.sku", &new_sku),
                ("new.title", "Large"),
                ("new.price", "60"),
            ],
            None,
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let edited = app.get(&format!("/products/{product}"), None).await.body;
    assert_eq!(edited["variants"][0]["title"], "Small");
    assert_eq!(edited["variants"][0]["price"]["amount"], 4450);
    assert_eq!(edited["variants"][1]["sku"], new_sku.as_str());
    assert_eq!(edited["variants"][1]["price"]["amount"], 6000);
    let refused = staff
        .post(
            &format!("/admin/products/{product}/variants"),
            &[("variant.0.price", "cheap")],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&format!("/products/{product}"), None).await.body["variants"][0]["price"]["amount"],
        4450,
        "a bad price changes nothing"
    );
    let images = staff
        .post(
            &format!("/admin/products/{product}/images"),
            &[
                ("images", "https://img.example/lantern.jpg\n"),
                ("alt", "A brass lantern"),
            ],
            None,
        )
        .await;
    assert_eq!(images.status, StatusCode::SEE_OTHER);
    let edited = app.get(&format!("/products/{product}"), None).await.body;
    assert_eq!(
        edited["images"][0]["url"],
        "https://img.example/lantern.jpg"
    );
    assert!(
        !dashboard.contains("Dead letters"),
        "sellers do not see platform pages"
    );
    assert_eq!(
        staff.get("/admin/dead-letters").await.status,
        StatusCode::FORBIDDEN
    );

    // An admin: every page of the console, with something on each.
    for (path, body) in [
        (
            "/promotions",
            json!({"code": unique("P"), "kind": "percentage", "value": 5, "usage_limit": 10}),
        ),
        (
            "/shipping-methods",
            json!({"name": "Parcel", "price": {"amount": 490, "currency": "EUR"}}),
        ),
        (
            "/admin/experiments",
            json!({"key": unique("exp").to_lowercase(), "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}),
        ),
    ] {
        let r = app.post(path, Some(&admin.token), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {:?}", r.body);
    }
    let mut boss = Session::new(&app);
    boss.sign_in(&admin.email, "admin password for tests").await;
    for path in [
        "/admin",
        "/admin/orders",
        "/admin/orders?status=confirmed",
        "/admin/products",
        "/admin/products/new",
        "/admin/categories",
        "/admin/promotions",
        "/admin/shipping",
        "/admin/customers",
        "/admin/customers?q=example",
        "/admin/reviews",
        "/admin/experiments",
        "/admin/reports",
        "/admin/reports?interval=week",
        "/admin/dead-letters",
    ] {
        boss.renders(path).await;
    }
    let dashboard = boss.renders("/admin").await;
    assert!(
        dashboard.contains(&sku),
        "the admin's low-stock panel: {dashboard}"
    );
    let promotions = boss.renders("/admin/promotions").await;
    assert!(promotions.contains(">yes<"), "active shows as yes");
    let shipping = boss.renders("/admin/shipping").await;
    assert!(
        shipping.contains(">all<"),
        "a method for every country says so"
    );
    let experiments = boss.renders("/admin/experiments").await;
    assert!(experiments.contains("a (1), b (1)"), "{experiments}");
    let detail = boss.renders(&format!("/admin/orders/{order}")).await;
    assert!(
        detail.contains(">Refund<") && detail.contains(">Ship<"),
        "{detail}"
    );
    let csv = boss.get("/admin/reports/sales/csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("period_start"), "{}", csv.body);
    app.stop().await;
}

#[tokio::test]
async fn forms_need_the_visitor_s_csrf_token_and_this_site_as_origin() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let buyer = customer(&app).await;
    let (kettle, sku) = product_on_sale(&app, &seller, "Copper Kettle", 5).await;
    let mut shopper = Session::new(&app);
    shopper.sign_in(&buyer.email, PASSWORD).await;

    let forged = shopper
        .post(
            "/cart/items",
            &[("sku", &sku), ("quantity", "1")],
            Some("0".repeat(64).as_str()),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let missing = shopper
        .post("/cart/items", &[("sku", &sku), ("quantity", "1")], Some(""))
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let cart = app.get("/cart", Some(&buyer.token)).await;
    assert_eq!(cart.body["items"], json!([]), "nothing was added");

    // From another site, even with the token.
    let token = shopper.cookies["mercato_csrf"].clone();
    let cross = shopper
        .client
        .post(format!("{}/cart/items", app.base))
        .header(header::COOKIE, shopper.cookie_header())
        .header(header::ORIGIN, "https://evil.example")
        .form(&[
            ("sku", sku.as_str()),
            ("quantity", "1"),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .expect("posted");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);

    for bad in ["abc", "1.5", "0", "100", "99999999999999999999"] {
        let refused = shopper
            .post("/cart/items", &[("sku", &sku), ("quantity", bad)], None)
            .await;
        assert_eq!(refused.status, StatusCode::SEE_OTHER, "{bad}");
    }
    assert_eq!(
        app.get("/cart", Some(&buyer.token)).await.body["items"],
        json!([]),
        "no bad quantity added anything"
    );
    let alert = shopper.renders("/").await;
    assert!(alert.contains("whole number from 1 to 99"), "{alert}");
    // A wrong current password refuses the change and keeps the session.
    let wrong = shopper
        .post(
            "/account/profile",
            &[
                ("current_password", "not my password"),
                ("password", "a new password 1"),
            ],
            None,
        )
        .await;
    assert_eq!(wrong.location.as_deref(), Some("/account"));
    let account = shopper.renders("/account").await;
    assert!(
        account.contains("current password is not right"),
        "{account}"
    );
    let added = shopper
        .post("/cart/items", &[("sku", &sku), ("quantity", "2")], None)
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER);
    assert_eq!(added.location.as_deref(), Some("/cart"));
    let cart = app.get("/cart", Some(&buyer.token)).await;
    assert_eq!(cart.body["items"][0]["quantity"], 2);

    // A refused checkout shows the form again as it was sent, with why.
    let refused = shopper
        .post(
            "/checkout",
            &[
                ("name", "Zoë Tester"),
                ("line1", "Elm Street 2"),
                ("city", "Paris"),
                ("postal_code", "75001"),
                ("country", "fr"),
                ("shipping_method", "nope"),
                ("card", "tok_decline"),
            ],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("Zoë Tester")
            && refused.body.contains("Elm Street 2")
            && refused.body.contains(r#"value="tok_decline" selected"#)
            && refused.body.contains("role=\"alert\""),
        "{}",
        refused.body
    );
    assert_eq!(
        app.get("/cart", Some(&buyer.token)).await.body["items"][0]["quantity"],
        2
    );

    // A refused review (this customer never bought the kettle) keeps what
    // was written, escaped, beside the reason.
    let review = shopper
        .post(
            &format!("/products/{kettle}/reviews"),
            &[
                ("rating", "4"),
                ("title", "Lovely kettle"),
                ("body", "Boils fast <b>"),
            ],
            None,
        )
        .await;
    assert_eq!(review.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        review.body.contains(r#"value="Lovely kettle""#)
            && review.body.contains("Boils fast &lt;b&gt;")
            && review.body.contains(r#"<option value="4" selected>"#),
        "{}",
        review.body
    );

    // Signing out ends the session the cookie held.
    let out = shopper.post("/signout", &[], None).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(!shopper.cookies.contains_key("mercato_session"));
    assert_eq!(shopper.get("/cart").await.status, StatusCode::SEE_OTHER);
    app.stop().await;
}

#[tokio::test]
async fn pages_carry_a_strict_content_security_policy() {
    let app = TestApp::spawn().await;
    let anon = Session::new(&app);
    let response = anon
        .client
        .get(format!("{}/", app.base))
        .send()
        .await
        .expect("page");
    let csp = response
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let body = response.text().await.expect("body");
    assert!(
        !body.contains("<script>") && !body.contains("style=\""),
        "no inline script or style"
    );
    assert!(!body.contains("https://"), "nothing from another site");
    app.stop().await;
}

/// Runs `tests/browser/<scenario>.mjs` in Chromium against `app` and
/// returns its `key=value` lines.
async fn browse(app: &TestApp, scenario: &str, env: &[(&str, &str)]) -> HashMap<String, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the browser tests need their npm packages and Debian's chromium: run scripts/browser-tools"
    );
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-artifacts");
    let output = tokio::process::Command::new("node")
        .arg(dir.join(format!("{scenario}.mjs")))
        .env("MERCATO_BASE_URL", &app.base)
        .env("MERCATO_BROWSER_ARTIFACTS", &artifacts)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("node runs (install Node.js 20 or later)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{scenario} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_customer_finds_a_product_buys_it_with_a_code_and_sees_it_confirmed() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let seller = app.register("seller").await;
    let buyer = customer(&app).await;
    let (product, _) = product_on_sale(&app, &seller, "Brass Lantern", 10).await;
    let code = "LIGHT10";
    let r = app
        .post(
            "/promotions",
            Some(&admin.token),
            json!({"code": code, "kind": "percentage", "value": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    let out = browse(
        &app,
        "customer-buys",
        &[
            ("MERCATO_CUSTOMER_EMAIL", &buyer.email),
            ("MERCATO_CUSTOMER_PASSWORD", PASSWORD),
            ("MERCATO_SEARCH", "lantern"),
            ("MERCATO_PRODUCT_TITLE", "Brass Lantern"),
            ("MERCATO_PROMO_CODE", code),
        ],
    )
    .await;
    let order_id = out.get("order_id").expect("the scenario names its order");
    let order = app
        .get(&format!("/orders/{order_id}"), Some(&buyer.token))
        .await;
    assert_eq!(order.body["status"], "confirmed");
    assert_eq!(order.body["items"][0]["product_id"], product.as_str());
    assert_eq!(
        order.body["discount_total"]["amount"], 450,
        "the code's 10 % off 45.00"
    );
    assert_eq!(order.body["discounts"][0]["code"], code);
    app.stop().await;
}

#[tokio::test]
async fn a_seller_creates_a_product_and_sets_its_stock_in_the_console() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let sku = unique("LAMP");
    let out = browse(
        &app,
        "seller-creates",
        &[
            ("MERCATO_SELLER_EMAIL", &seller.email),
            ("MERCATO_SELLER_PASSWORD", PASSWORD),
            ("MERCATO_SKU", &sku),
        ],
    )
    .await;
    let id = out
        .get("product_id")
        .expect("the scenario names its product");
    let product = app.get(&format!("/products/{id}"), None).await;
    assert_eq!(product.body["seller_id"], seller.id.as_str());
    assert_eq!(product.body["variants"][0]["sku"], sku.as_str());
    assert_eq!(product.body["variants"][0]["price"]["amount"], 1250);
    let stock = app.get(&format!("/inventory/{sku}"), None).await;
    assert_eq!(stock.body["available"], 25);
    app.stop().await;
}

#[tokio::test]
async fn an_admin_refunds_an_order_and_replays_a_dead_letter_in_the_console() {
    let app = TestApp::spawn().await;
    let Some(ctx) = app.contexts.clone() else {
        panic!("needs the in-process bus to plant a poison event");
    };
    let admin = app.admin().await;
    let seller = app.register("seller").await;
    let buyer = customer(&app).await;
    let (_, sku) = product_on_sale(&app, &seller, "Oak Lamp", 5).await;
    let order = confirmed_order(&app, &buyer, &sku).await;

    // An order of a customer notifications has never heard of cannot be told.
    let eur = mercato_kernel::Currency::parse("EUR").expect("currency");
    let poison = mercato_kernel::Envelope::new(
        "orders",
        "o-1",
        &mercato_contracts::events::OrderConfirmed {
            order_id: uuid::Uuid::now_v7(),
            customer_id: uuid::Uuid::now_v7(),
            items: vec![],
            total: mercato_kernel::Money::new(100, eur),
        },
    )
    .expect("event");
    ctx.bus
        .publish(std::slice::from_ref(&poison))
        .await
        .expect("published");
    let event_id = poison.id.to_string();
    app.eventually(
        "the event to be parked",
        Duration::from_secs(15),
        || async {
            let r = app.get("/admin/dead-letters", Some(&admin.token)).await;
            r.body["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|d| d["event_id"] == event_id.as_str()))
                .then_some(())
        },
    )
    .await;

    browse(
        &app,
        "admin-operates",
        &[
            ("MERCATO_ADMIN_EMAIL", &admin_email(&app, &admin).await),
            ("MERCATO_ADMIN_PASSWORD", "admin password for tests"),
            ("MERCATO_ORDER_ID", &order),
            ("MERCATO_DEAD_LETTER_EVENT_ID", &event_id),
        ],
    )
    .await;
    let refunded = app
        .get(&format!("/orders/{order}"), Some(&buyer.token))
        .await;
    assert_eq!(refunded.body["status"], "refunded");
    app.stop().await;
}

async fn admin_email(app: &TestApp, admin: &User) -> String {
    let me: Value = app.get("/me", Some(&admin.token)).await.body;
    me["email"].as_str().unwrap_or(&admin.email).to_owned()
}

#[tokio::test]
async fn a_customer_reviews_what_they_bought() {
    let app = TestApp::spawn().await;
    let seller = app.register("seller").await;
    let buyer = customer(&app).await;
    let (product, sku) = product_on_sale(&app, &seller, "Walnut Lamp", 5).await;
    confirmed_order(&app, &buyer, &sku).await;
    // The purchase reaches reviews through the bus.
    app.eventually(
        "the purchase to reach reviews",
        Duration::from_secs(10),
        || async {
            let r = app.get("/orders", Some(&buyer.token)).await;
            (r.body["items"][0]["status"] == "confirmed").then_some(())
        },
    )
    .await;
    browse(
        &app,
        "customer-reviews",
        &[
            ("MERCATO_CUSTOMER_EMAIL", &buyer.email),
            ("MERCATO_CUSTOMER_PASSWORD", PASSWORD),
            ("MERCATO_PRODUCT_ID", &product),
        ],
    )
    .await;
    let reviews = app.get(&format!("/products/{product}/reviews"), None).await;
    assert_eq!(reviews.body["items"][0]["title"], "Bright and sturdy");
    assert_eq!(reviews.body["items"][0]["rating"], 5);
    app.stop().await;
}
