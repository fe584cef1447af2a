//! The admin console at `/admin`: for admins everything, for sellers their
//! own products, orders and reports (the API decides what each sees).

use crate::api::Action;
use crate::api::Failure;
use crate::chart::{self, Bar};
use crate::render::{decimal, error_page, money, page, parse_price};
use crate::session::{Form, Visitor};
use crate::store::{act, encode, param, query_string, read, read_or_null, refused, sign_in_first};
use crate::Web;
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<Web> {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/orders", get(orders))
        .route("/admin/orders/{id}", get(order))
        .route("/admin/orders/{id}/{action}", post(order_action))
        .route("/admin/returns/{id}/{action}", post(return_action))
        .route("/admin/products", get(products).post(create_product))
        .route("/admin/products/new", get(new_product))
        .route("/admin/products/{id}", get(product).post(update_product))
        .route("/admin/products/{id}/stock", post(set_stock))
        .route("/admin/products/{id}/variants", post(update_variants))
        .route("/admin/products/{id}/images", post(update_images))
        .route("/admin/products/{id}/archive", post(archive_product))
        .route("/admin/categories", get(categories).post(create_category))
        .route("/admin/promotions", get(promotions).post(create_promotion))
        .route("/admin/promotions/{id}/disable", post(disable_promotion))
        .route(
            "/admin/shipping",
            get(shipping).post(create_shipping_method),
        )
        .route("/admin/tax-rates", post(set_tax_rate))
        .route("/admin/customers", get(customers))
        .route("/admin/customers/{id}/{action}", post(customer_action))
        .route("/admin/reviews", get(reviews))
        .route("/admin/reviews/{id}/{action}", post(review_action))
        .route(
            "/admin/experiments",
            get(experiments).post(create_experiment),
        )
        .route("/admin/reports", get(reports))
        .route("/admin/reports/{name}/csv", get(report_csv))
        .route("/admin/dead-letters", get(dead_letters))
        .route("/admin/dead-letters/{seq}/replay", post(replay))
}

/// The console's sections, in the order of its navigation; sellers see
/// the ones marked for them.
const SECTIONS: [(&str, &str, bool); 11] = [
    ("/admin", "Dashboard", true),
    ("/admin/orders", "Orders", true),
    ("/admin/products", "Products", true),
    ("/admin/categories", "Categories", false),
    ("/admin/promotions", "Promotions", false),
    ("/admin/shipping", "Shipping and tax", false),
    ("/admin/customers", "Customers", false),
    ("/admin/reviews", "Reviews", false),
    ("/admin/experiments", "Experiments", false),
    ("/admin/reports", "Reports", true),
    ("/admin/dead-letters", "Dead letters", false),
];

/// Sellers and admins only; anyone else is asked to sign in as one.
fn staff(visitor: Visitor) -> Result<Visitor, Box<Response>> {
    if visitor.token.is_none() {
        return Err(Box::new(sign_in_first(visitor)));
    }
    if !visitor.is(&["admin", "seller"]) {
        let refusal = Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the console is for the shop's sellers and admins",
        );
        return Err(Box::new(error_page(visitor, &refusal)));
    }
    Ok(visitor)
}

fn admin(visitor: Visitor) -> Result<Visitor, Box<Response>> {
    let visitor = staff(visitor)?;
    if !visitor.is(&["admin"]) {
        let refusal = Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only admins can open this page",
        );
        return Err(Box::new(error_page(visitor, &refusal)));
    }
    Ok(visitor)
}

/// A console page: `context` plus the navigation for this visitor.
fn console_page(visitor: Visitor, name: &str, section: &str, mut context: Value) -> Response {
    let is_admin = visitor.is(&["admin"]);
    let nav: Vec<Value> = SECTIONS
        .iter()
        .filter(|(_, _, seller)| is_admin || *seller)
        .map(|(href, label, _)| json!({"href": href, "label": label, "current": *href == section}))
        .collect();
    context["nav"] = json!(nav);
    context["console"] = json!(true);
    context["is_admin"] = json!(is_admin);
    page(visitor, name, context)
}

/// Where this visitor's reports are.
fn reports_base(visitor: &Visitor) -> &'static str {
    if visitor.is(&["admin"]) {
        "/admin/reports"
    } else {
        "/seller/reports"
    }
}

/// Today's date and the first of this month, as the reports take them.
fn today_and_month_start() -> (String, String) {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{y:04}-{m:02}-01"))
}

/// Days since 1970-01-01 as a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The sum of a report's revenue and orders over `items`.
fn totals<'a>(items: impl Iterator<Item = &'a Value>) -> (i64, i64, Option<String>) {
    let mut revenue = 0i64;
    let mut orders = 0i64;
    let mut currency = None;
    for item in items {
        revenue += item["revenue"]["amount"].as_i64().unwrap_or(0);
        orders += item["orders"].as_i64().unwrap_or(0);
        if currency.is_none() {
            currency = item["revenue"]["currency"].as_str().map(str::to_owned);
        }
    }
    (revenue, orders, currency)
}

async fn dashboard(State(web): State<Web>, visitor: Visitor) -> Response {
    let visitor = match staff(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let (today, month_start) = today_and_month_start();
    let base = reports_base(&visitor);
    let sales_path = format!("{base}/sales?from={month_start}&interval=day");
    let (sales, recent, low_stock) = tokio::join!(
        read_or_null(&web, &visitor, &sales_path),
        read_or_null(&web, &visitor, "/orders?limit=8"),
        low_stock(&web, &visitor),
    );
    let items = sales["items"].as_array().cloned().unwrap_or_default();
    let (month_revenue, month_orders, currency) = totals(items.iter());
    let (today_revenue, today_orders, _) = totals(items.iter().filter(|i| {
        i["period_start"]
            .as_str()
            .is_some_and(|p| p.starts_with(&today))
    }));
    let currency = currency.unwrap_or_else(|| web.config.currency.clone());
    // Every day of the month so far, a day without sales at zero.
    let day_of_month: u32 = today.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    let bars: Vec<Bar> = (1..=day_of_month)
        .map(|d| {
            let day = format!("{}{d:02}", &month_start[..8]);
            let revenue = items
                .iter()
                .filter(|i| {
                    i["period_start"]
                        .as_str()
                        .is_some_and(|p| p.starts_with(&day))
                })
                .map(|i| i["revenue"]["amount"].as_i64().unwrap_or(0))
                .sum::<i64>();
            Bar {
                label: format!("{d}"),
                value: revenue,
                caption: format!("{day}: {}", money(revenue, &currency)),
            }
        })
        .collect();
    let chart = chart::bars("Sales per day this month", &bars);
    console_page(
        visitor,
        "console/dashboard.html",
        "/admin",
        json!({
            "title": "Dashboard",
            "today": {"revenue": money(today_revenue, &currency), "orders": today_orders},
            "month": {"revenue": money(month_revenue, &currency), "orders": month_orders},
            "chart": chart,
            "sales": items,
            "recent": recent["items"],
            "low_stock": low_stock.0,
            "threshold": low_stock.1,
        }),
    )
}

/// The SKUs running out: for an admin every one in the shop (fewest
/// first, as inventory answers), for a seller those of their latest 50
/// products; and the threshold they are under.
async fn low_stock(web: &Web, visitor: &Visitor) -> (Vec<Value>, i64) {
    if visitor.is(&["admin"]) {
        let low = read_or_null(web, visitor, "/admin/low-stock").await;
        let items = low["items"].as_array().cloned().unwrap_or_default();
        let threshold = low["threshold"]
            .as_i64()
            .unwrap_or(web.config.low_stock_threshold);
        return (items, threshold);
    }
    (
        sellers_low_stock(web, visitor).await,
        web.config.low_stock_threshold,
    )
}

async fn sellers_low_stock(web: &Web, visitor: &Visitor) -> Vec<Value> {
    let products = read_or_null(web, visitor, "/products?limit=50&seller_id=me").await;
    let variants: Vec<(&Value, &Value)> = products["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"] == "active")
        .flat_map(|p| {
            p["variants"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |v| (p, v))
        })
        .take(100)
        .collect();
    if variants.is_empty() {
        return Vec::new();
    }
    let skus: Vec<&str> = variants
        .iter()
        .filter_map(|(_, v)| v["sku"].as_str())
        .collect();
    let stock = read_or_null(
        web,
        visitor,
        &format!(
            "/inventory?{}",
            query_string([("skus", skus.join(",").as_str())])
        ),
    )
    .await;
    let threshold = web.config.low_stock_threshold;
    stock["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["available"].as_i64().is_some_and(|a| a <= threshold))
        .filter_map(|s| {
            let (product, variant) = variants.iter().find(|(_, v)| v["sku"] == s["sku"])?;
            Some(
                json!({"sku": s["sku"], "available": s["available"], "product_id": product["id"],
                        "title": product["title"], "variant": variant["title"]}),
            )
        })
        .collect()
}

const ORDER_STATUSES: [&str; 6] = [
    "pending",
    "confirmed",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
];

async fn orders(
    State(web): State<Web>,
    visitor: Visitor,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let visitor = match staff(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let get = |name: &str| param(&params, name).unwrap_or_default();
    let status = get("status");
    let path = format!(
        "/orders?{}",
        query_string([
            ("limit", "50"),
            ("status", status),
            ("cursor", get("cursor"))
        ])
    );
    let orders = match read(&web, &visitor, &path).await {
        Ok(o) => o,
        Err(f) => return error_page(visitor, &f),
    };
    let next = orders["next_cursor"].as_str().map(|c| {
        format!(
            "/admin/orders?{}",
            query_string([("status", status), ("cursor", c)])
        )
    });
    console_page(
        visitor,
        "console/orders.html",
        "/admin/orders",
        json!({"title": "Orders", "orders": orders["items"], "status": status,
               "statuses": ORDER_STATUSES, "next": next}),
    )
}

async fn order(State(web): State<Web>, visitor: Visitor, Path(id): Path<String>) -> Response {
    let visitor = match staff(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let order = match read(&web, &visitor, &format!("/orders/{}", encode(&id))).await {
        Ok(o) => o,
        Err(f) => return error_page(visitor, &f),
    };
    let returns = read_or_null(&web, &visitor, &format!("/orders/{}/returns", encode(&id))).await;
    console_page(
        visitor,
        "console/order.html",
        "/admin/orders",
        json!({"title": format!("Order {}", crate::render::short(&id)),
               "order": order, "returns": returns["items"],
               "idempotency_key": uuid::Uuid::now_v7().to_string()}),
    )
}

fn not_found() -> Response {
    crate::render::failure_page(&Failure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such page",
    ))
}

async fn order_action(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    form: Form,
) -> Response {
    let back = format!("/admin/orders/{}", encode(&id));
    let (done, mut call) = match action.as_str() {
        "ship" => (
            "Order shipped.",
            Action::new(Method::POST, format!("/orders/{}/ship", encode(&id))),
        ),
        "deliver" => (
            "Order delivered.",
            Action::new(Method::POST, format!("/orders/{}/deliver", encode(&id))),
        ),
        "cancel" => (
            "Order cancelled.",
            Action::new(Method::POST, format!("/orders/{}/cancel", encode(&id))),
        ),
        "refund" => (
            "Refund issued.",
            Action::new(Method::POST, format!("/orders/{}/refund", encode(&id))),
        ),
        _ => return not_found(),
    };
    if action == "refund" {
        call.idempotency_key = Some(
            form.get("idempotency_key")
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        );
        if let Some(amount) = form.get("amount") {
            let currency = form
                .get("currency")
                .unwrap_or(&web.config.currency)
                .to_owned();
            let Some(minor) = parse_price(amount, &currency) else {
                let mut visitor = form.visitor;
                visitor.flash("alert", "The amount must be a number such as 12.50.");
                return visitor.redirect(&back);
            };
            call = call.json(json!({
                "amount": {"amount": minor, "currency": currency},
                "reason": form.text("reason"),
            }));
        }
    }
    let visitor = match staff(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(&web, visitor, call, &back, done).await
}

async fn return_action(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    form: Form,
) -> Response {
    let back = local(form.get("back"), "/admin/orders");
    let (done, mut call) = match action.as_str() {
        "receive" => (
            "Return received and refunded.",
            Action::new(Method::POST, format!("/returns/{}/receive", encode(&id))).json(json!({})),
        ),
        "reject" => (
            "Return rejected.",
            Action::new(Method::POST, format!("/returns/{}/reject", encode(&id)))
                .json(json!({"reason": form.get("reason").unwrap_or("rejected")})),
        ),
        _ => return not_found(),
    };
    if action == "receive" {
        call.idempotency_key = Some(format!("receive-{id}"));
    }
    let visitor = match staff(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(&web, visitor, call, &back, done).await
}

fn local(path: Option<&str>, default: &str) -> String {
    match path {
        Some(p) => crate::store::local_path(Some(p)),
        None => default.to_owned(),
    }
}

/// Products in the console, a page of 25 at a time.
async fn products(
    State(web): State<Web>,
    visitor: Visitor,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let visitor = match staff(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let cursor = param(&params, "cursor").unwrap_or_default();
    let seller = if visitor.is(&["admin"]) { "" } else { "me" };
    let path = format!(
        "/products?{}",
        query_string([("limit", "25"), ("seller_id", seller), ("cursor", cursor)])
    );
    let products = match read(&web, &visitor, &path).await {
        Ok(p) => p,
        Err(f) => return error_page(visitor, &f),
    };
    let next = products["next_cursor"]
        .as_str()
        .map(|c| format!("/admin/products?{}", query_string([("cursor", c)])));
    console_page(
        visitor,
        "console/products.html",
        "/admin/products",
        json!({"title": "Products", "products": products["items"], "next": next}),
    )
}

async fn new_product(visitor: Visitor, State(web): State<Web>) -> Response {
    let visitor = match staff(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let currency = web.config.currency.clone();
    console_page(
        visitor,
        "console/product_new.html",
        "/admin/products",
        json!({"title": "New product", "currency": currency}),
    )
}

fn variant_from(form: &Form, currency: &str) -> Result<Value, &'static str> {
    let price = form
        .get("price")
        .and_then(|p| parse_price(p, currency))
        .ok_or("The price must be a number such as 12.50.")?;
    Ok(json!({
        "sku": form.text("sku"),
        "title": form.get("variant_title").unwrap_or("Default"),
        "price": {"amount": price, "currency": currency},
    }))
}

async fn create_product(State(web): State<Web>, form: Form) -> Response {
    let currency = web.config.currency.clone();
    let variant = match variant_from(&form, &currency) {
        Ok(v) => v,
        Err(message) => {
            let mut visitor = form.visitor;
            visitor.flash("alert", message);
            return visitor.redirect("/admin/products/new");
        }
    };
    let mut body = json!({
        "title": form.text("title"),
        "description": form.text("description"),
        "category": form.text("category"),
        "variants": [variant],
    });
    if let Some(url) = form.get("image") {
        body["images"] = json!([{"url": url, "alt": form.text("title")}]);
    }
    let visitor = match staff(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match web
        .api
        .send(visitor.call(Method::POST, "/products").json(body))
        .await
    {
        Ok(product) => {
            let id = product["id"].as_str().unwrap_or_default().to_owned();
            let mut visitor = visitor;
            visitor.flash("status", "Product created. Set its stock below.");
            visitor.redirect(&format!("/admin/products/{}", encode(&id)))
        }
        Err(f) => refused(visitor, f, "/admin/products/new"),
    }
}

async fn product(State(web): State<Web>, visitor: Visitor, Path(id): Path<String>) -> Response {
    let visitor = match staff(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let product = match read(&web, &visitor, &format!("/products/{}", encode(&id))).await {
        Ok(p) => p,
        Err(f) => return error_page(visitor, &f),
    };
    let mut stock = Vec::new();
    for variant in product["variants"].as_array().into_iter().flatten() {
        let sku = variant["sku"].as_str().unwrap_or_default();
        let s = read_or_null(&web, &visitor, &format!("/inventory/{}", encode(sku))).await;
        // The price in each other currency, as the form shows it.
        let prices: serde_json::Map<String, Value> = variant["prices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let currency = p["currency"].as_str()?;
                let amount = p["amount"].as_i64()?;
                Some((currency.to_owned(), json!(decimal(amount, currency))))
            })
            .collect();
        stock.push(json!({"sku": sku, "title": variant["title"], "price": variant["price"],
                          "decimal": decimal(variant["price"]["amount"].as_i64().unwrap_or(0), &web.config.currency),
                          "prices": prices, "stock": s}));
    }
    let title = product["title"].as_str().unwrap_or("Product").to_owned();
    let other_currencies: Vec<String> = web
        .config
        .currencies
        .iter()
        .filter(|c| **c != web.config.currency)
        .cloned()
        .collect();
    let images = product["images"]
        .as_array()
        .map(|i| {
            i.iter()
                .filter_map(|img| img["url"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    console_page(
        visitor,
        "console/product.html",
        "/admin/products",
        json!({"title": title, "product": product, "variants": stock, "images": images,
               "currency": web.config.currency, "other_currencies": other_currencies}),
    )
}

async fn update_product(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let back = format!("/admin/products/{}", encode(&id));
    let mut body = json!({});
    for field in ["title", "description", "category"] {
        if let Some(v) = form.get(field) {
            body[field] = json!(v);
        }
    }
    let visitor = match staff(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::PATCH, format!("/products/{}", encode(&id))).json(body),
        &back,
        "Product saved.",
    )
    .await
}

/// The variants as the form left them: each one's title, price and a price
/// per other currency of the shop, plus a new one when its SKU is filled
/// in. What the form does not show (attributes) is kept as it was.
async fn update_variants(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let back = format!("/admin/products/{}", encode(&id));
    let product = match web
        .api
        .send(
            form.visitor
                .call(Method::GET, format!("/products/{}", encode(&id))),
        )
        .await
    {
        Ok(p) => p,
        Err(f) => return refused(form.visitor, f, &back),
    };
    let config = web.config.clone();
    let price_of = |field: &str, currency: &str| -> Result<Option<Value>, String> {
        match form.get(field) {
            None => Ok(None),
            Some(text) => parse_price(text, currency)
                .map(|amount| Some(json!({"amount": amount, "currency": currency})))
                .ok_or_else(|| format!("{text:?} is not a price such as 12.50")),
        }
    };
    let mut variants = Vec::new();
    let mut problem = None;
    let existing = product["variants"].as_array().cloned().unwrap_or_default();
    let rows = existing
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("variant.{i}"), Some(v)))
        .chain(std::iter::once(("new".to_owned(), None)));
    for (prefix, current) in rows {
        let sku = match &current {
            Some(v) => v["sku"].as_str().unwrap_or_default().to_owned(),
            None => match form.get("new.sku") {
                Some(sku) => sku.to_owned(),
                None => continue,
            },
        };
        let mut variant = current.clone().unwrap_or_else(|| json!({"sku": sku}));
        if let Some(title) = form.get(&format!("{prefix}.title")) {
            variant["title"] = json!(title);
        }
        match price_of(&format!("{prefix}.price"), &config.currency) {
            Ok(Some(price)) => variant["price"] = price,
            Ok(None) if current.is_none() => {
                problem = Some(format!("the new variant {sku} needs a price"));
            }
            Ok(None) => {}
            Err(e) => problem = Some(e),
        }
        let mut prices = Vec::new();
        for currency in config.currencies.iter().filter(|c| **c != config.currency) {
            match price_of(&format!("{prefix}.price.{currency}"), currency) {
                Ok(Some(price)) => prices.push(price),
                Ok(None) => {}
                Err(e) => problem = Some(e),
            }
        }
        variant["prices"] = json!(prices);
        variants.push(variant);
    }
    let visitor = match staff(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Some(problem) = problem {
        let mut visitor = visitor;
        visitor.flash("alert", &problem);
        return visitor.redirect(&back);
    }
    act(
        &web,
        visitor,
        Action::new(Method::PATCH, format!("/products/{}", encode(&id)))
            .json(json!({"variants": variants})),
        &back,
        "Variants and prices saved.",
    )
    .await
}

/// The images as a list of URLs, one per line.
async fn update_images(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let back = format!("/admin/products/{}", encode(&id));
    let alt = form.text("alt");
    let images: Vec<Value> = form
        .text("images")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|url| json!({"url": url, "alt": alt}))
        .collect();
    let visitor = match staff(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::PATCH, format!("/products/{}", encode(&id)))
            .json(json!({"images": images})),
        &back,
        "Images saved.",
    )
    .await
}

async fn set_stock(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let back = format!("/admin/products/{}", encode(&id));
    let quantity: Option<i64> = form.get("quantity").and_then(|q| q.parse().ok());
    let Some(quantity) = quantity.filter(|q| *q >= 0) else {
        let mut visitor = form.visitor;
        visitor.flash("alert", "The quantity must be a whole number, 0 or more.");
        return visitor.redirect(&back);
    };
    let sku = form.text("sku");
    let warehouse = form.get("warehouse").unwrap_or("main").to_owned();
    let visitor = match staff(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::PUT, format!("/inventory/{}", encode(&sku)))
            .json(json!({"warehouse": warehouse, "quantity": quantity})),
        &back,
        &format!("Stock of {sku} in {warehouse} set to {quantity}."),
    )
    .await
}

async fn archive_product(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let visitor = match staff(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::DELETE, format!("/products/{}", encode(&id))),
        &format!("/admin/products/{}", encode(&id)),
        "Product archived: it can no longer be bought.",
    )
    .await
}

/// One of the console's list pages: a table of the API's `items`.
struct Table {
    title: &'static str,
    section: &'static str,
    /// What the page explains above the table.
    intro: &'static str,
    columns: Vec<(&'static str, &'static str)>,
    /// The form below the table, by name in `console/table.html`.
    form: &'static str,
}

async fn table_page(
    web: &Web,
    visitor: Visitor,
    table: Table,
    path: &str,
    extra: Value,
) -> Response {
    let visitor = match admin(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let list = match read(web, &visitor, path).await {
        Ok(l) => l,
        Err(f) => return error_page(visitor, &f),
    };
    let items = list.get("items").cloned().unwrap_or_else(|| {
        if list.is_array() {
            list.clone()
        } else {
            json!([])
        }
    });
    let mut context = json!({
        "title": table.title,
        "intro": table.intro,
        "columns": table.columns.iter().map(|(k, l)| json!({"key": k, "label": l})).collect::<Vec<_>>(),
        "items": items,
        "form": table.form,
    });
    if let (Some(map), Some(extra)) = (context.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    console_page(visitor, "console/table.html", table.section, context)
}

async fn categories(State(web): State<Web>, visitor: Visitor) -> Response {
    let table = Table {
        title: "Categories",
        section: "/admin/categories",
        intro:
            "Products are filed under categories; a product's new category is made at top level.",
        columns: vec![
            ("name", "Name"),
            ("slug", "Slug"),
            ("parent", "Parent"),
            ("path", "Path"),
        ],
        form: "category",
    };
    table_page(&web, visitor, table, "/categories", json!({})).await
}

async fn create_category(State(web): State<Web>, form: Form) -> Response {
    let mut body = json!({"name": form.text("name")});
    if let Some(parent) = form.get("parent") {
        body["parent"] = json!(parent);
    }
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::POST, "/categories").json(body),
        "/admin/categories",
        "Category created.",
    )
    .await
}

async fn promotions(State(web): State<Web>, visitor: Visitor) -> Response {
    let table = Table {
        title: "Promotions",
        section: "/admin/promotions",
        intro: "Codes customers enter in their cart. A code is never redeemed more often than its limit.",
        columns: vec![("code", "Code"), ("kind", "Kind"), ("value", "Percent"), ("amount", "Amount"), ("times_used", "Used"), ("usage_limit", "Limit"), ("active", "Active")],
        form: "promotion",
    };
    table_page(&web, visitor, table, "/promotions?limit=100", json!({})).await
}

async fn create_promotion(State(web): State<Web>, form: Form) -> Response {
    let kind = form.text("kind");
    let mut body = json!({"code": form.text("code"), "kind": kind});
    match kind.as_str() {
        "percentage" => {
            body["value"] = json!(form
                .get("value")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0));
        }
        "fixed_amount" => {
            let currency = web.config.currency.clone();
            let amount = form
                .get("value")
                .and_then(|v| parse_price(v, &currency))
                .unwrap_or(0);
            body["amount"] = json!({"amount": amount, "currency": currency});
        }
        _ => {}
    }
    if let Some(limit) = form.get("usage_limit").and_then(|v| v.parse::<i64>().ok()) {
        body["usage_limit"] = json!(limit);
    }
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::POST, "/promotions").json(body),
        "/admin/promotions",
        "Promotion created.",
    )
    .await
}

async fn disable_promotion(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::PATCH, format!("/promotions/{}", encode(&id)))
            .json(json!({"active": false})),
        "/admin/promotions",
        "Promotion disabled.",
    )
    .await
}

async fn shipping(State(web): State<Web>, visitor: Visitor) -> Response {
    let rates = read_or_null(&web, &visitor, "/tax-rates").await;
    let table = Table {
        title: "Shipping and tax",
        section: "/admin/shipping",
        intro:
            "Shipping methods customers choose from at checkout, and the tax rate of each country.",
        columns: vec![
            ("name", "Method"),
            ("price", "Price"),
            ("countries", "Countries"),
            ("free_over", "Free over"),
        ],
        form: "shipping",
    };
    let rates = rates.get("items").cloned().unwrap_or(rates);
    table_page(
        &web,
        visitor,
        table,
        "/shipping-methods",
        json!({"rates": rates}),
    )
    .await
}

async fn create_shipping_method(State(web): State<Web>, form: Form) -> Response {
    let currency = web.config.currency.clone();
    let Some(price) = form.get("price").and_then(|p| parse_price(p, &currency)) else {
        let mut visitor = form.visitor;
        visitor.flash("alert", "The price must be a number such as 4.90.");
        return visitor.redirect("/admin/shipping");
    };
    let countries: Vec<String> = form
        .text("countries")
        .split([',', ' '])
        .filter(|c| !c.is_empty())
        .map(|c| c.to_uppercase())
        .collect();
    let mut body = json!({"name": form.text("name"), "price": {"amount": price, "currency": currency}, "countries": countries});
    if let Some(free) = form
        .get("free_over")
        .and_then(|p| parse_price(p, &currency))
    {
        body["free_over"] = json!({"amount": free, "currency": currency});
    }
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::POST, "/shipping-methods").json(body),
        "/admin/shipping",
        "Shipping method created.",
    )
    .await
}

async fn set_tax_rate(State(web): State<Web>, form: Form) -> Response {
    let country = form.text("country").to_uppercase();
    // Percent with up to two decimals, as basis points.
    let rate_bps = form.get("rate").and_then(|r| parse_price(r, "EUR"));
    let Some(rate_bps) = rate_bps else {
        let mut visitor = form.visitor;
        visitor.flash("alert", "The rate must be a percentage such as 19 or 7.5.");
        return visitor.redirect("/admin/shipping");
    };
    let body = json!({"rate_bps": rate_bps, "name": form.get("name").unwrap_or("VAT")});
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::PUT, format!("/tax-rates/{}", encode(&country))).json(body),
        "/admin/shipping",
        "Tax rate saved.",
    )
    .await
}

async fn customers(
    State(web): State<Web>,
    visitor: Visitor,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let q = param(&params, "q").unwrap_or_default();
    let table = Table {
        title: "Customers",
        section: "/admin/customers",
        intro: "Everyone with an account. A disabled account can no longer sign in.",
        columns: vec![
            ("name", "Name"),
            ("email", "Email"),
            ("role", "Role"),
            ("created_at", "Since"),
        ],
        form: "customers",
    };
    let path = format!(
        "/admin/users?{}",
        query_string([("limit", "100"), ("q", q)])
    );
    table_page(&web, visitor, table, &path, json!({"q": q})).await
}

async fn customer_action(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    form: Form,
) -> Response {
    let (disabled, done) = match action.as_str() {
        "disable" => (true, "Account disabled."),
        "enable" => (false, "Account enabled."),
        _ => return not_found(),
    };
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::PATCH, format!("/admin/users/{}", encode(&id)))
            .json(json!({"disabled": disabled})),
        "/admin/customers",
        done,
    )
    .await
}

async fn reviews(State(web): State<Web>, visitor: Visitor) -> Response {
    let table = Table {
        title: "Reviews",
        section: "/admin/reviews",
        intro: "Reviews held for moderation: approve to publish, reject to hide.",
        columns: vec![
            ("title", "Title"),
            ("rating", "Rating"),
            ("body", "Review"),
            ("author_name", "Author"),
            ("created_at", "Written"),
        ],
        form: "reviews",
    };
    table_page(
        &web,
        visitor,
        table,
        "/admin/reviews?status=pending&limit=100",
        json!({}),
    )
    .await
}

async fn review_action(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    form: Form,
) -> Response {
    let done = match action.as_str() {
        "approve" => "Review published.",
        "reject" => "Review rejected.",
        _ => return not_found(),
    };
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::POST, format!("/reviews/{}/{action}", encode(&id))),
        "/admin/reviews",
        done,
    )
    .await
}

async fn experiments(
    State(web): State<Web>,
    visitor: Visitor,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let visitor = match admin(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let key = param(&params, "key").unwrap_or_default().trim().to_owned();
    let list = read_or_null(&web, &visitor, "/admin/experiments?limit=100").await;
    let result = if key.is_empty() {
        Value::Null
    } else {
        match web
            .api
            .send(visitor.call(Method::GET, format!("/admin/experiments/{}", encode(&key))))
            .await
        {
            Ok(r) => r,
            Err(f) => json!({"error": f.message}),
        }
    };
    console_page(
        visitor,
        "console/table.html",
        "/admin/experiments",
        json!({"title": "Experiments", "form": "experiments", "key": key, "result": result,
               "experiments": list["items"],
               "intro": "Split visitors between variants and compare how often each reaches the goal.",
               "columns": [], "items": []}),
    )
}

async fn create_experiment(State(web): State<Web>, form: Form) -> Response {
    let key = form.text("key");
    let variants: Vec<Value> = form
        .text("variants")
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| json!({"name": v, "weight": 1}))
        .collect();
    let mut body = json!({"key": key, "variants": variants});
    if let Some(goal) = form.get("goal") {
        body["goal"] = json!(goal);
    }
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(Method::POST, "/admin/experiments").json(body),
        &format!("/admin/experiments?key={}", encode(&key)),
        "Experiment started.",
    )
    .await
}

const REPORTS: [&str; 4] = ["sales", "top-products", "funnel", "search-terms"];

async fn reports(
    State(web): State<Web>,
    visitor: Visitor,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let visitor = match staff(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let get = |name: &str| param(&params, name).unwrap_or_default().trim();
    let (_, month_start) = today_and_month_start();
    let from = if get("from").is_empty() {
        month_start.as_str()
    } else {
        get("from")
    };
    let to = get("to");
    let interval = if get("interval").is_empty() {
        "day"
    } else {
        get("interval")
    };
    let base = reports_base(&visitor);
    let range = query_string([("from", from), ("to", to)]);
    let paths = [
        format!("{base}/sales?{range}&interval={}", encode(interval)),
        format!("{base}/top-products?{range}&limit=10"),
        format!("{base}/funnel?{range}"),
        format!("{base}/search-terms?{range}"),
    ];
    let (sales, top, funnel, terms) = tokio::join!(
        read_or_null(&web, &visitor, &paths[0]),
        read_or_null(&web, &visitor, &paths[1]),
        read_or_null(&web, &visitor, &paths[2]),
        read_or_null(&web, &visitor, &paths[3]),
    );
    let currency = web.config.currency.clone();
    let bars: Vec<Bar> = sales["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let start = i["period_start"].as_str().unwrap_or_default();
            let revenue = i["revenue"]["amount"].as_i64().unwrap_or(0);
            let c = i["revenue"]["currency"].as_str().unwrap_or(&currency);
            Bar {
                label: start.get(5..10).unwrap_or(start).to_owned(),
                value: revenue,
                caption: format!(
                    "{}: {}",
                    start.get(..10).unwrap_or(start),
                    money(revenue, c)
                ),
            }
        })
        .collect();
    let chart = chart::bars(&format!("Revenue per {interval}"), &bars);
    let csv = |name: &str| format!("/admin/reports/{name}/csv?{range}");
    console_page(
        visitor,
        "console/reports.html",
        "/admin/reports",
        json!({
            "title": "Reports", "from": from, "to": to, "interval": interval,
            "sales": sales["items"], "top": top["items"], "funnel": funnel, "terms": terms["items"],
            "chart": chart,
            "csv": REPORTS.iter().map(|r| json!({"name": r, "href": csv(r)})).collect::<Vec<_>>(),
        }),
    )
}

async fn report_csv(
    State(web): State<Web>,
    visitor: Visitor,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let visitor = match staff(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if !REPORTS.contains(&name.as_str()) {
        return not_found();
    }
    let kept: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "from" | "to" | "interval"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let path = format!("{}/{name}?{}", reports_base(&visitor), query_string(kept));
    match web
        .api
        .text(visitor.call(Method::GET, path), "text/csv")
        .await
    {
        Ok(body) => visitor.finish(
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.csv\""),
                    ),
                ],
                body,
            )
                .into_response(),
        ),
        Err(f) => error_page(visitor, &f),
    }
}

async fn dead_letters(State(web): State<Web>, visitor: Visitor) -> Response {
    let visitor = match admin(visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let list = match read(&web, &visitor, "/admin/dead-letters?limit=200").await {
        Ok(l) => l,
        Err(f) => return error_page(visitor, &f),
    };
    console_page(
        visitor,
        "console/dead_letters.html",
        "/admin/dead-letters",
        json!({"title": "Dead letters", "items": list["items"]}),
    )
}

async fn replay(State(web): State<Web>, Path(seq): Path<String>, form: Form) -> Response {
    let visitor = match admin(form.visitor) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    act(
        &web,
        visitor,
        Action::new(
            Method::POST,
            format!("/admin/dead-letters/{}/replay", encode(&seq)),
        ),
        "/admin/dead-letters",
        &format!("Replayed event {seq}: its consumer has it again."),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
