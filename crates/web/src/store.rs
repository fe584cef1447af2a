//! The storefront: browsing, search, product pages, the cart, checkout,
//! signing in and the customer's account.

use crate::api::{Action, Failure};
use crate::render::{error_page, page, page_with_status, partial};
use crate::session::{Form, Visitor};
use crate::Web;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<Web> {
    Router::new()
        .route("/", get(home))
        .route("/search", get(search))
        .route("/search/suggest", get(suggest))
        .route("/products/{id}", get(product))
        .route("/products/{id}/reviews", post(post_review))
        .route("/signin", get(signin_page).post(signin))
        .route("/register", get(register_page).post(register))
        .route("/signout", post(signout))
        .route("/cart", get(cart))
        .route("/cart/items", post(add_to_cart))
        .route("/cart/items/{sku}", post(set_quantity))
        .route("/cart/items/{sku}/remove", post(remove_item))
        .route("/cart/promotions", post(apply_promotion))
        .route("/cart/promotions/{code}/remove", post(remove_promotion))
        .route("/cart/currency", post(set_currency))
        .route("/checkout", get(checkout_page).post(checkout))
        .route("/account", get(account))
        .route("/account/profile", post(update_profile))
        .route("/account/addresses", post(add_address))
        .route("/account/addresses/{id}/remove", post(remove_address))
        .route("/account/preferences", post(update_preferences))
        .route("/account/delete", post(delete_account))
        .route("/account/orders", get(orders))
        .route("/account/orders/{id}", get(order))
        .route("/account/orders/{id}/status", get(order_status))
        .route("/account/orders/{id}/cancel", post(cancel_order))
        .route("/account/orders/{id}/returns", post(request_return))
        .route("/subscriptions", post(subscribe))
        .route(
            "/account/subscriptions/{id}/{action}",
            post(subscription_action),
        )
}

/// A query parameter's value, as sent; `None` when absent.
pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Encodes `s` for a URL's query or path.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `pairs` as a query string (without `?`), blank values left out.
pub(crate) fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A path of this site to come back to; anything else goes home.
pub(crate) fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/".to_owned(),
    }
}

/// To the sign-in page, and back here afterwards.
pub(crate) fn sign_in_first(visitor: Visitor) -> Response {
    let next = visitor.path.clone();
    visitor.redirect(&format!("/signin?next={}", encode(&next)))
}

/// After a form: back to `to` with the API's refusal, or to the sign-in
/// page when the session has ended.
pub(crate) fn refused(mut visitor: Visitor, failure: Failure, to: &str) -> Response {
    if failure.status == StatusCode::UNAUTHORIZED {
        visitor.sign_out();
        return sign_in_first(visitor);
    }
    visitor.flash("alert", &failure.message);
    visitor.redirect(to)
}

/// A form's action: the API call as the visitor, then back to `back` with
/// `done`, or with the API's refusal.
pub(crate) async fn act(
    web: &Web,
    visitor: Visitor,
    action: Action,
    back: &str,
    done: &str,
) -> Response {
    let sent = web
        .api
        .send(action.call(visitor.token.as_deref(), Some(&visitor.session)))
        .await;
    match sent {
        Ok(_) => {
            let mut visitor = visitor;
            visitor.flash("status", done);
            visitor.redirect(back)
        }
        Err(f) => refused(visitor, f, back),
    }
}

/// An API read for a page; its failure is for [`error_page`].
pub(crate) async fn read(web: &Web, visitor: &Visitor, path: &str) -> Result<Value, Failure> {
    web.api.send(visitor.call(Method::GET, path)).await
}

/// An API read a page can do without (a side panel): `null` when it fails.
pub(crate) async fn read_or_null(web: &Web, visitor: &Visitor, path: &str) -> Value {
    web.api
        .send(visitor.call(Method::GET, path))
        .await
        .unwrap_or(Value::Null)
}

async fn home(State(web): State<Web>, visitor: Visitor) -> Response {
    let (categories, featured, latest) = tokio::join!(
        read_or_null(&web, &visitor, "/categories"),
        read_or_null(&web, &visitor, "/recommendations?limit=8"),
        read_or_null(&web, &visitor, "/products?limit=12"),
    );
    page(
        visitor,
        "store/home.html",
        json!({
            "title": "Shop",
            "categories": categories["items"],
            "featured": featured["items"],
            "latest": latest["items"],
        }),
    )
}

/// The search parameters a page passes on to `GET /search`.
const SEARCH_PARAMS: [&str; 8] = [
    "q",
    "category",
    "sort",
    "min_price",
    "max_price",
    "in_stock",
    "min_rating",
    "cursor",
];

async fn search(
    State(web): State<Web>,
    visitor: Visitor,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let get = |name: &str| param(&params, name).unwrap_or_default().trim();
    // Prices are typed as people read them (12.50); the API takes minor units.
    let minor = |name: &str| {
        let text = get(name);
        crate::render::parse_price(text, &web.config.currency)
            .map(|m| m.to_string())
            .unwrap_or_else(|| text.to_owned())
    };
    let (min_price, max_price) = (minor("min_price"), minor("max_price"));
    let passed: Vec<(&str, &str)> = SEARCH_PARAMS
        .iter()
        .map(|k| match *k {
            "min_price" => (*k, min_price.as_str()),
            "max_price" => (*k, max_price.as_str()),
            _ => (*k, get(k)),
        })
        .chain(
            params
                .iter()
                .filter(|(k, _)| k.starts_with("attr."))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .collect();
    let path = format!("/search?{}", query_string(passed.iter().copied()));
    let results = match web.api.send(visitor.call(Method::GET, path)).await {
        Ok(r) => r,
        Err(f) if f.status == StatusCode::UNPROCESSABLE_ENTITY => {
            json!({"items": [], "total": 0, "facets": {}, "error": f.message})
        }
        Err(f) => return error_page(visitor, &f),
    };
    // A facet's link keeps every other filter (as typed) and starts from
    // the first page.
    let typed: Vec<(&str, &str)> = SEARCH_PARAMS
        .iter()
        .map(|k| (*k, get(k)))
        .chain(
            passed
                .iter()
                .copied()
                .filter(|(k, _)| k.starts_with("attr.")),
        )
        .collect();
    let link = |name: &str, value: &str| {
        let kept = typed
            .iter()
            .filter(|(k, _)| *k != name && *k != "cursor")
            .copied()
            .chain(std::iter::once((name, value)));
        format!("/search?{}", query_string(kept))
    };
    let categories: Vec<Value> = results["facets"]["category"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, count)| {
                    json!({"name": name, "count": count, "href": link("category", name),
                           "selected": get("category") == name})
                })
                .collect()
        })
        .unwrap_or_default();
    let next = results["next_cursor"].as_str().map(|c| link("cursor", c));
    let currency = web.config.currency.as_str();
    // Price ranges with something in them, as links that set both bounds.
    let prices: Vec<Value> = results["facets"]["price"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["count"].as_i64().unwrap_or(0) > 0)
        .map(|b| {
            let from = b["from"].as_i64().map(|a| crate::render::decimal(a, currency));
            let to = b["to"].as_i64().map(|a| crate::render::decimal(a, currency));
            // A range holds its start, not its end: the filter's highest
            // price is one minor unit under it.
            let to_filter = b["to"]
                .as_i64()
                .map(|a| crate::render::decimal(a - 1, currency));
            let kept = typed
                .iter()
                .filter(|(k, _)| !matches!(*k, "min_price" | "max_price" | "cursor"))
                .copied()
                .chain([
                    ("min_price", from.as_deref().unwrap_or("")),
                    ("max_price", to_filter.as_deref().unwrap_or("")),
                ]);
            let label = match (&from, &to) {
                (Some(f), Some(t)) => format!("{f} to {t} {currency}"),
                (Some(f), None) => format!("{f} {currency} and more"),
                (None, Some(t)) => format!("up to {t} {currency}"),
                (None, None) => "any price".to_owned(),
            };
            json!({"label": label, "count": b["count"], "href": format!("/search?{}", query_string(kept))})
        })
        .collect();
    // Ratings: at least n stars.
    let ratings: Vec<Value> = results["facets"]["rating"]
        .as_object()
        .map(|m| {
            let mut r: Vec<Value> = m
                .iter()
                .filter(|(_, count)| count.as_i64().unwrap_or(0) > 0)
                .map(|(stars, count)| {
                    json!({"stars": stars, "count": count, "href": link("min_rating", stars),
                           "selected": get("min_rating") == stars})
                })
                .collect();
            r.reverse();
            r
        })
        .unwrap_or_default();
    // A facet per variant attribute (colour, size, ...).
    let attributes: Vec<Value> = results["facets"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !matches!(name.as_str(), "category" | "price" | "rating"))
        .filter_map(|(name, values)| {
            let key = format!("attr.{name}");
            let values: Vec<Value> = values
                .as_object()?
                .iter()
                .map(|(value, count)| {
                    let chosen = params.iter().any(|(k, v)| *k == key && v == value);
                    json!({"value": value, "count": count, "href": link(&key, value), "selected": chosen})
                })
                .collect();
            Some(json!({"name": name, "values": values}))
        })
        .collect();
    let sorts = [
        ("relevance", "Relevance"),
        ("price_asc", "Price, low to high"),
        ("price_desc", "Price, high to low"),
        ("newest", "Newest"),
        ("rating", "Rating"),
    ];
    page(
        visitor,
        "store/search.html",
        json!({
            "title": if get("q").is_empty() { "Search".to_owned() } else { format!("Search: {}", get("q")) },
            "q": get("q"),
            "category": get("category"),
            "sort": get("sort"),
            "min_price": get("min_price"),
            "max_price": get("max_price"),
            "currency": web.config.currency,
            "in_stock": get("in_stock") == "true",
            "sorts": sorts.iter().map(|(v, l)| json!({"value": v, "label": l})).collect::<Vec<_>>(),
            "results": results,
            "categories": categories,
            "clear_category": link("category", ""),
            "prices": prices,
            "ratings": ratings,
            "attributes": attributes,
            "next": next,
        }),
    )
}

async fn suggest(
    State(web): State<Web>,
    visitor: Visitor,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let q = param(&params, "q").unwrap_or_default().trim();
    let suggestions = if q.is_empty() {
        Value::Null
    } else {
        read_or_null(
            &web,
            &visitor,
            &format!("/search/suggest?{}", query_string([("q", q)])),
        )
        .await
    };
    let items: Vec<Value> = suggestions["suggestions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    let text = s["text"].as_str().unwrap_or_default();
                    let href = match (s["kind"].as_str(), s["product_id"].as_str()) {
                        (_, Some(id)) => format!("/products/{}", encode(id)),
                        (Some("category"), _) => {
                            format!("/search?{}", query_string([("category", text)]))
                        }
                        _ => format!("/search?{}", query_string([("q", text)])),
                    };
                    json!({"text": text, "kind": s["kind"], "href": href})
                })
                .collect()
        })
        .unwrap_or_default();
    partial(visitor, "store/suggest.html", json!({"items": items}))
}

async fn product(State(web): State<Web>, visitor: Visitor, Path(id): Path<String>) -> Response {
    product_page(&web, visitor, &id, None).await
}

/// A product's page; after a refused review, with the review as it was
/// written and the reason beside the form.
async fn product_page(
    web: &Web,
    visitor: Visitor,
    id: &str,
    refused_review: Option<(Value, Failure)>,
) -> Response {
    let view = match read(
        web,
        &visitor,
        &format!("/storefront/products/{}", encode(id)),
    )
    .await
    {
        Ok(v) => v,
        Err(f) => return error_page(visitor, &f),
    };
    if view["product"].is_null() {
        return error_page(
            visitor,
            &Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the catalog is not answering; try again shortly",
            ),
        );
    }
    let title = view["product"]["title"]
        .as_str()
        .unwrap_or("Product")
        .to_owned();
    let can_review = visitor.is(&["customer"]);
    // Each variant's title beside what of it is left.
    let stock: Vec<Value> = view["product"]["variants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let available = view["stock"]["skus"]
                .as_array()
                .and_then(|skus| skus.iter().find(|s| s["sku"] == v["sku"]))
                .map(|s| s["available"].clone())
                .unwrap_or(Value::Null);
            json!({"title": v["title"], "sku": v["sku"], "available": available})
        })
        .collect();
    let (review, status) = match refused_review {
        Some((written, failure)) => (
            json!({"written": written, "error": failure.message}),
            if failure.status.is_server_error() {
                failure.status
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
        ),
        None => (Value::Null, StatusCode::OK),
    };
    page_with_status(
        visitor,
        status,
        "store/product.html",
        json!({"title": title, "view": view, "can_review": can_review, "stock": stock,
               "review": review,
               "cards": test_cards(), "idempotency_key": uuid::Uuid::now_v7().to_string()}),
    )
}

async fn post_review(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let back = format!("/products/{}", encode(&id));
    let rating: i64 = form.get("rating").and_then(|r| r.parse().ok()).unwrap_or(0);
    let body = json!({"rating": rating, "title": form.text("title"), "body": form.text("body")});
    let mut visitor = form.visitor;
    if visitor.token.is_none() {
        return sign_in_first(visitor);
    }
    let call = visitor
        .call(Method::POST, format!("/products/{}/reviews", encode(&id)))
        .json(body.clone());
    match web.api.send(call).await {
        Ok(review) => {
            let text = if review["status"] == "published" {
                "Thank you for your review"
            } else {
                "Thank you for your review; it is shown once a moderator has read it"
            };
            visitor.flash("status", text);
            visitor.redirect(&format!("{back}#reviews"))
        }
        Err(f) if f.status == StatusCode::UNAUTHORIZED => refused(visitor, f, &back),
        // Refused: the page again, the review as written, and why.
        Err(f) => product_page(&web, visitor, &id, Some((body, f))).await,
    }
}

async fn signin_page(visitor: Visitor, Query(params): Query<Vec<(String, String)>>) -> Response {
    let next = param(&params, "next");
    page(
        visitor,
        "store/signin.html",
        json!({"title": "Sign in", "next": local_path(next)}),
    )
}

async fn signin(State(web): State<Web>, form: Form) -> Response {
    let next = local_path(form.get("next"));
    let email = form.text("email");
    let body = json!({"email": email, "password": form.get("password").unwrap_or_default()});
    let mut visitor = form.visitor;
    let call = visitor.call(Method::POST, "/auth/login").json(body);
    match web.api.send(call.without_token()).await {
        Ok(session) => {
            start_session(&mut visitor, &session);
            visitor.redirect(&next)
        }
        Err(f) => {
            let status = if f.status.is_server_error() {
                f.status
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            let message = if f.status == StatusCode::UNAUTHORIZED {
                "That email and password do not match an account.".to_owned()
            } else {
                f.message
            };
            page_with_status(
                visitor,
                status,
                "store/signin.html",
                json!({"title": "Sign in", "next": next, "error": message, "email": email}),
            )
        }
    }
}

fn start_session(visitor: &mut Visitor, session: &Value) {
    if let Some(token) = session["access_token"].as_str() {
        let max_age = session["expires_in"].as_i64().unwrap_or(3600);
        visitor.sign_in(token, max_age);
    }
}

async fn register_page(visitor: Visitor) -> Response {
    page(
        visitor,
        "store/register.html",
        json!({"title": "Create an account"}),
    )
}

async fn register(State(web): State<Web>, form: Form) -> Response {
    let (name, email) = (form.text("name"), form.text("email"));
    let body = json!({
        "name": name,
        "email": email,
        "password": form.get("password").unwrap_or_default(),
    });
    let mut visitor = form.visitor;
    let call = visitor.call(Method::POST, "/auth/register").json(body);
    match web.api.send(call.without_token()).await {
        Ok(session) => {
            start_session(&mut visitor, &session);
            visitor.flash("status", "Welcome! Your account is ready.");
            visitor.redirect("/")
        }
        Err(f) => {
            let status = if f.status.is_server_error() {
                f.status
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            page_with_status(
                visitor,
                status,
                "store/register.html",
                json!({"title": "Create an account", "error": f.message,
                       "name": name, "email": email}),
            )
        }
    }
}

async fn signout(form: Form) -> Response {
    let mut visitor = form.visitor;
    visitor.sign_out();
    visitor.flash("status", "You are signed out.");
    visitor.redirect("/")
}

async fn cart(State(web): State<Web>, visitor: Visitor) -> Response {
    if visitor.token.is_none() {
        return sign_in_first(visitor);
    }
    let cart = match read(&web, &visitor, "/cart").await {
        Ok(c) => c,
        Err(f) => return error_page(visitor, &f),
    };
    let currencies = web.config.currencies.clone();
    page(
        visitor,
        "store/cart.html",
        json!({"title": "Your cart", "cart": cart, "currencies": currencies}),
    )
}

/// A form about the cart: signed in, the action, then back to the cart.
async fn cart_change(web: &Web, form: Form, action: Action, done: &str) -> Response {
    if form.visitor.token.is_none() {
        return sign_in_first(form.visitor);
    }
    act(web, form.visitor, action, "/cart", done).await
}

async fn add_to_cart(State(web): State<Web>, form: Form) -> Response {
    let back = local_path(form.get("back"));
    if form.visitor.token.is_none() {
        let visitor = form.visitor;
        return visitor.redirect(&format!("/signin?next={}", encode(&back)));
    }
    let quantity = match form.get("quantity").map(str::parse::<i64>) {
        None => 1,
        Some(Ok(q)) if (1..=MAX_QUANTITY).contains(&q) => q,
        Some(_) => {
            let mut visitor = form.visitor;
            visitor.flash(
                "alert",
                &format!("The quantity must be a whole number from 1 to {MAX_QUANTITY}."),
            );
            return visitor.redirect(&back);
        }
    };
    let sku = form.text("sku");
    let visitor = form.visitor;
    let call = visitor
        .call(Method::POST, "/cart/items")
        .json(json!({"sku": sku, "quantity": quantity}));
    match web.api.send(call).await {
        Ok(_) => {
            let mut visitor = visitor;
            visitor.flash("status", "Added to your cart.");
            visitor.redirect("/cart")
        }
        Err(f) => refused(visitor, f, &back),
    }
}

async fn set_quantity(State(web): State<Web>, Path(sku): Path<String>, form: Form) -> Response {
    let quantity = match form.get("quantity").map(str::parse::<i64>) {
        Some(Ok(q)) if (1..=MAX_QUANTITY).contains(&q) => q,
        _ => {
            let mut visitor = form.visitor;
            visitor.flash(
                "alert",
                &format!("The quantity must be a whole number from 1 to {MAX_QUANTITY}; Remove takes a line out."),
            );
            return visitor.redirect("/cart");
        }
    };
    cart_change(
        &web,
        form,
        Action::new(Method::PATCH, format!("/cart/items/{}", encode(&sku)))
            .json(json!({"quantity": quantity})),
        "Quantity updated.",
    )
    .await
}

async fn remove_item(State(web): State<Web>, Path(sku): Path<String>, form: Form) -> Response {
    cart_change(
        &web,
        form,
        Action::new(Method::DELETE, format!("/cart/items/{}", encode(&sku))),
        "Removed from your cart.",
    )
    .await
}

async fn apply_promotion(State(web): State<Web>, form: Form) -> Response {
    let code = form.text("code");
    cart_change(
        &web,
        form,
        Action::new(Method::POST, "/cart/promotions").json(json!({"code": code})),
        "Promotion code applied.",
    )
    .await
}

async fn remove_promotion(
    State(web): State<Web>,
    Path(code): Path<String>,
    form: Form,
) -> Response {
    cart_change(
        &web,
        form,
        Action::new(
            Method::DELETE,
            format!("/cart/promotions/{}", encode(&code)),
        ),
        "Promotion code removed.",
    )
    .await
}

async fn set_currency(State(web): State<Web>, form: Form) -> Response {
    let currency = form.text("currency");
    cart_change(
        &web,
        form,
        Action::new(Method::PUT, "/cart/currency").json(json!({"currency": currency})),
        "Prices are now in the currency you chose.",
    )
    .await
}

/// The most of one item a form takes at once (its `max`).
const MAX_QUANTITY: i64 = 99;

const TEST_CARDS: [(&str, &str); 4] = [
    ("tok_visa", "Visa, approved"),
    ("tok_decline", "Declined"),
    ("tok_insufficient_funds", "Insufficient funds"),
    ("tok_timeout", "Provider times out"),
];

fn test_cards() -> Vec<Value> {
    TEST_CARDS
        .iter()
        .map(|(v, l)| json!({"value": v, "label": l}))
        .collect()
}

/// Subscribes to a product from its page: delivered every week or month
/// to the customer's default address (the first saved one otherwise).
async fn subscribe(State(web): State<Web>, form: Form) -> Response {
    let back = local_path(form.get("back"));
    if form.visitor.token.is_none() {
        return form
            .visitor
            .redirect(&format!("/signin?next={}", encode(&back)));
    }
    let addresses = read_or_null(&web, &form.visitor, "/me/addresses").await;
    let address = addresses["items"].as_array().and_then(|a| {
        a.iter()
            .find(|x| x["default"] == true)
            .or_else(|| a.first())
            .cloned()
    });
    let Some(address) = address else {
        let mut visitor = form.visitor;
        visitor.flash(
            "alert",
            "Save an address in your account first: a subscription is delivered there.",
        );
        return visitor.redirect(&back);
    };
    let quantity: i64 = form
        .get("quantity")
        .and_then(|q| q.parse().ok())
        .unwrap_or(1);
    let body = json!({
        "items": [{"sku": form.text("sku"), "quantity": quantity}],
        "interval": form.text("interval"),
        "payment": {"token": form.text("card")},
        "shipping_address": {
            "name": address["name"], "line1": address["line1"], "city": address["city"],
            "postal_code": address["postal_code"], "country": address["country"],
        },
    });
    let key = form
        .get("idempotency_key")
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let action = Action::new(Method::POST, "/subscriptions").json(body);
    let action = Action {
        idempotency_key: Some(key),
        ..action
    };
    act(
        &web,
        form.visitor,
        action,
        &format!("{back}#subscribe"),
        "Subscribed: the first order is placed now, the next ones each period. Manage it in your account.",
    )
    .await
}

async fn checkout_page(State(web): State<Web>, visitor: Visitor) -> Response {
    checkout_form(&web, visitor, None).await
}

/// The checkout form: with the customer's default address, or, after a
/// refusal, with what they typed, the shipping method and card they chose,
/// and the reason.
async fn checkout_form(web: &Web, visitor: Visitor, refused: Option<(Value, Failure)>) -> Response {
    if visitor.token.is_none() {
        return sign_in_first(visitor);
    }
    let cart = match read(web, &visitor, "/cart").await {
        Ok(c) => c,
        Err(f) => return error_page(visitor, &f),
    };
    let (methods, addresses) = tokio::join!(
        read_or_null(web, &visitor, "/shipping-methods"),
        read_or_null(web, &visitor, "/me/addresses"),
    );
    let default_address = addresses["items"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["default"] == true)
                .or_else(|| a.first())
        })
        .cloned()
        .unwrap_or(Value::Null);
    let (address, chosen, error, status) = match refused {
        Some((sent, failure)) => (
            sent["shipping_address"].clone(),
            json!({"method": sent["shipping_method"], "card": sent["payment"]["token"]}),
            Value::String(failure.message),
            if failure.status.is_server_error() {
                failure.status
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
        ),
        None => (default_address, Value::Null, Value::Null, StatusCode::OK),
    };
    page_with_status(
        visitor,
        status,
        "store/checkout.html",
        json!({
            "title": "Checkout",
            "cart": cart,
            "methods": methods["items"],
            "address": address,
            "chosen": chosen,
            "error": error,
            "cards": test_cards(),
            // One order however often the form is sent.
            "idempotency_key": uuid::Uuid::now_v7().to_string(),
        }),
    )
}

async fn checkout(State(web): State<Web>, form: Form) -> Response {
    if form.visitor.token.is_none() {
        let visitor = form.visitor;
        return sign_in_first(visitor);
    }
    let key = form
        .get("idempotency_key")
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut body = json!({
        "payment": {"token": form.text("card")},
        "shipping_address": {
            "name": form.text("name"),
            "line1": form.text("line1"),
            "city": form.text("city"),
            "postal_code": form.text("postal_code"),
            "country": form.text("country").to_uppercase(),
        },
    });
    if let Some(method) = form.get("shipping_method") {
        body["shipping_method"] = json!(method);
    }
    let visitor = form.visitor;
    let call = visitor
        .call(Method::POST, "/checkout")
        .json(body.clone())
        .idempotency_key(key);
    match web.api.send(call).await {
        Ok(order) => {
            let id = order["id"].as_str().unwrap_or_default().to_owned();
            let mut visitor = visitor;
            // Placed, not yet paid: the order page tells how it settles.
            visitor.flash(
                "status",
                "Your order is placed; this page shows when it is confirmed.",
            );
            visitor.redirect(&format!("/account/orders/{}", encode(&id)))
        }
        Err(f) if f.status == StatusCode::UNAUTHORIZED => refused(visitor, f, "/checkout"),
        // Refused: the form again, as it was sent, with the reason.
        Err(f) => checkout_form(&web, visitor, Some((body, f))).await,
    }
}

async fn account(State(web): State<Web>, visitor: Visitor) -> Response {
    if visitor.token.is_none() {
        return sign_in_first(visitor);
    }
    let (addresses, preferences, subscriptions) = tokio::join!(
        read_or_null(&web, &visitor, "/me/addresses"),
        read_or_null(&web, &visitor, "/me/preferences"),
        read_or_null(&web, &visitor, "/subscriptions"),
    );
    page(
        visitor,
        "store/account.html",
        json!({
            "title": "Your account",
            "addresses": addresses["items"],
            "preferences": preferences,
            "subscriptions": subscriptions["items"],
        }),
    )
}

/// A form of the account page: signed in, the action, then back to the
/// account.
async fn account_change(web: &Web, form: Form, action: Action, done: &str) -> Response {
    if form.visitor.token.is_none() {
        return sign_in_first(form.visitor);
    }
    act(web, form.visitor, action, "/account", done).await
}

async fn update_profile(State(web): State<Web>, form: Form) -> Response {
    let mut body = json!({});
    if let Some(name) = form.get("name") {
        body["name"] = json!(name);
    }
    if let Some(password) = form.get("password") {
        body["password"] = json!(password);
        body["current_password"] = json!(form.text("current_password"));
    }
    let visitor = form.visitor;
    if visitor.token.is_none() {
        return sign_in_first(visitor);
    }
    let sent = web
        .api
        .send(visitor.call(Method::PATCH, "/me").json(body))
        .await;
    let mut visitor = visitor;
    match sent {
        Ok(_) => visitor.flash("status", "Your details are saved."),
        // With a password change, 401 is the current password refused,
        // not the session ended (that is found before this form is read).
        Err(f) if f.status == StatusCode::UNAUTHORIZED => visitor.flash(
            "alert",
            "Your current password is not right; nothing was changed.",
        ),
        Err(f) => return refused(visitor, f, "/account"),
    }
    visitor.redirect("/account")
}

async fn add_address(State(web): State<Web>, form: Form) -> Response {
    let body = json!({
        "name": form.text("name"),
        "line1": form.text("line1"),
        "city": form.text("city"),
        "postal_code": form.text("postal_code"),
        "country": form.text("country").to_uppercase(),
        "default": form.get("default").is_some(),
    });
    account_change(
        &web,
        form,
        Action::new(Method::POST, "/me/addresses").json(body),
        "Address saved.",
    )
    .await
}

async fn remove_address(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    account_change(
        &web,
        form,
        Action::new(Method::DELETE, format!("/me/addresses/{}", encode(&id))),
        "Address removed.",
    )
    .await
}

async fn update_preferences(State(web): State<Web>, form: Form) -> Response {
    let on = |name: &str| form.get(name).is_some();
    let body = json!({
        "notifications": {"email": on("email"), "sms": on("sms"), "push": on("push")},
        "marketing": on("marketing"),
    });
    account_change(
        &web,
        form,
        Action::new(Method::PUT, "/me/preferences").json(body),
        "Preferences saved.",
    )
    .await
}

async fn delete_account(State(web): State<Web>, form: Form) -> Response {
    if form.get("confirm") != Some("DELETE") {
        let mut visitor = form.visitor;
        visitor.flash("alert", "Type DELETE to confirm that the account goes.");
        return visitor.redirect("/account");
    }
    let mut visitor = form.visitor;
    match web.api.send(visitor.call(Method::DELETE, "/me")).await {
        Ok(_) => {
            visitor.sign_out();
            visitor.flash("status", "Your account and personal data are erased.");
            visitor.redirect("/")
        }
        Err(f) => refused(visitor, f, "/account"),
    }
}

async fn orders(State(web): State<Web>, visitor: Visitor) -> Response {
    if visitor.token.is_none() {
        return sign_in_first(visitor);
    }
    let orders = match read(&web, &visitor, "/orders?limit=50").await {
        Ok(o) => o,
        Err(f) => return error_page(visitor, &f),
    };
    page(
        visitor,
        "store/orders.html",
        json!({"title": "Your orders", "orders": orders["items"]}),
    )
}

async fn order(State(web): State<Web>, visitor: Visitor, Path(id): Path<String>) -> Response {
    if visitor.token.is_none() {
        return sign_in_first(visitor);
    }
    let order = match read(&web, &visitor, &format!("/orders/{}", encode(&id))).await {
        Ok(o) => o,
        Err(f) => return error_page(visitor, &f),
    };
    let returns = read_or_null(&web, &visitor, &format!("/orders/{}/returns", encode(&id))).await;
    page(
        visitor,
        "store/order.html",
        json!({"title": "Your order", "order": order, "returns": returns["items"]}),
    )
}

/// The order's status line, which polls itself while the order settles;
/// once it has, htmx is told to load the whole page again (payment,
/// history and actions change with it).
async fn order_status(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let order = match read(&web, &visitor, &format!("/orders/{}", encode(&id))).await {
        Ok(o) => o,
        Err(f) => return error_page(visitor, &f),
    };
    let settled = order["status"] != "pending";
    let mut response = partial(visitor, "store/order_status.html", json!({"order": order}));
    if settled && headers.contains_key("hx-request") {
        response
            .headers_mut()
            .insert("hx-refresh", HeaderValue::from_static("true"));
    }
    response
}

async fn cancel_order(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let back = format!("/account/orders/{}", encode(&id));
    let visitor = form.visitor;
    match web
        .api
        .send(visitor.call(Method::POST, format!("/orders/{}/cancel", encode(&id))))
        .await
    {
        Ok(_) => {
            let mut visitor = visitor;
            visitor.flash("status", "Your order is cancelled.");
            visitor.redirect(&back)
        }
        Err(f) => refused(visitor, f, &back),
    }
}

async fn request_return(State(web): State<Web>, Path(id): Path<String>, form: Form) -> Response {
    let back = format!("/account/orders/{}", encode(&id));
    // One field per line: `return.<sku>` = how many go back.
    let items: Vec<Value> = form
        .fields()
        .filter_map(|(k, v)| {
            let sku = k.strip_prefix("return.")?;
            let quantity: i64 = v.trim().parse().ok().filter(|q| *q > 0)?;
            Some(json!({"sku": sku, "quantity": quantity}))
        })
        .collect();
    let reason = form.text("reason");
    let visitor = form.visitor;
    if items.is_empty() {
        let mut visitor = visitor;
        visitor.flash("alert", "Choose how many of an item go back.");
        return visitor.redirect(&back);
    }
    let call = visitor
        .call(Method::POST, format!("/orders/{}/returns", encode(&id)))
        .json(json!({"items": items, "reason": reason}));
    match web.api.send(call).await {
        Ok(_) => {
            let mut visitor = visitor;
            visitor.flash("status", "Your return is requested.");
            visitor.redirect(&back)
        }
        Err(f) => refused(visitor, f, &back),
    }
}

async fn subscription_action(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    form: Form,
) -> Response {
    let done = match action.as_str() {
        "pause" => "Subscription paused.",
        "resume" => "Subscription resumed.",
        "cancel" => "Subscription cancelled.",
        _ => {
            let missing = Failure::new(StatusCode::NOT_FOUND, "not_found", "no such page");
            return error_page(form.visitor, &missing);
        }
    };
    account_change(
        &web,
        form,
        Action::new(
            Method::POST,
            format!("/subscriptions/{}/{action}", encode(&id)),
        ),
        done,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_followed() {
        assert_eq!(local_path(Some("/cart")), "/cart");
        assert_eq!(local_path(Some("/search?q=a")), "/search?q=a");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn query_strings_encode_and_leave_blanks_out() {
        assert_eq!(
            query_string([
                ("q", "red shoes & socks"),
                ("category", ""),
                ("sort", "newest")
            ]),
            "q=red%20shoes%20%26%20socks&sort=newest"
        );
    }
}
