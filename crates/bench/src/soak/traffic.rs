//! The soak's clients. Each runs in a loop until the stop flag is raised and
//! writes down what the shop acknowledged, so that the audit can check it
//! afterwards:
//!
//! - sellers create products with unique SKUs and set, then change, their
//!   stock (`PUT /inventory/{sku}` of the `main` warehouse); nobody buys
//!   those, so the last value acknowledged is the one to find;
//! - customers fill a cart with SKUs on sale and check out, mostly with
//!   `tok_visa`, sometimes `tok_decline`, and wait for the order;
//! - a restocker puts stock of SKUs on sale into a *new* warehouse each time
//!   (each warehouse is set exactly once), so that the stock ever put on
//!   hand is known exactly and can be balanced against what was sold;
//! - readers read products, lists, stock and search;
//! - hang-up clients send a whole `POST /products` or `POST /checkout` on a
//!   raw connection and close it 0–6 ms later without reading;
//! - slow clients trickle a request head, holding connections open.

use super::http::{Call, Http, Reply};
use super::raw::{SlowOutcome, Target};
use super::record::{Op, Request};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Pause after a 5xx or a request without an answer, so that a failing
/// server is not hammered in a tight loop.
const FAILURE_BACKOFF: Duration = Duration::from_millis(100);
/// Pause of each hang-up client between two requests.
const HANG_UP_PAUSE: Duration = Duration::from_millis(5);
/// A restock puts this many units into a new warehouse, when a SKU on sale
/// has fewer than [`RESTOCK_BELOW`] available.
pub const RESTOCK_UNITS: i64 = 100;
const RESTOCK_BELOW: i64 = 30;
/// A cart line above this many units is brought back to one (orders that
/// were cancelled leave their lines in the cart).
const MAX_LINE_UNITS: i64 = 4;
/// Words product titles are made of, and search queries (a few misspelt).
const WORDS: [&str; 12] = [
    "kettle", "teapot", "lamp", "chair", "mug", "blanket", "candle", "vase", "basket", "clock",
    "mirror", "pillow",
];
const QUERIES: [&str; 8] = [
    "kettle", "tepot", "lamp", "chiar", "mug", "blanket", "soak", "vase",
];

/// A registered user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// The stock values sent for one seller SKU (`main` warehouse).
#[derive(Default, Debug, Clone)]
pub struct SetLog {
    /// The last value the shop acknowledged (2xx).
    pub acked: Option<i64>,
    /// Values sent without a clear answer (5xx, no answer): they may or may
    /// not have been applied.
    pub uncertain: Vec<i64>,
}

impl SetLog {
    /// Whether `on_hand` (`None`: the warehouse does not exist) is a value
    /// the shop may hold after these sets.
    pub fn allows(&self, on_hand: Option<i64>) -> bool {
        match on_hand {
            None => self.acked.is_none(),
            Some(v) => self.acked == Some(v) || self.uncertain.contains(&v),
        }
    }
}

/// One warehouse of a SKU on sale, set exactly once.
#[derive(Debug, Clone)]
pub struct WarehouseSet {
    pub name: String,
    pub quantity: i64,
    pub acked: bool,
}

/// What a customer learnt of its orders.
#[derive(Default, Debug, Clone)]
pub struct Outcomes {
    pub placed: u64,
    pub confirmed: u64,
    /// By `cancel_reason`.
    pub cancelled: HashMap<String, u64>,
    /// Still `pending` when `?wait=5` answered.
    pub pending_after_wait: u64,
}

/// What the shop acknowledged, for the audit.
#[derive(Default)]
pub struct Ledger {
    /// Products created with 201: (id, sku).
    pub products: Vec<(String, String)>,
    /// Seller SKUs whose stock was set.
    pub stock: HashMap<String, SetLog>,
    /// SKUs on sale, and the warehouses put on hand for each.
    pub warehouses: HashMap<String, Vec<WarehouseSet>>,
    /// Orders answered with 202.
    pub orders: Vec<String>,
    pub outcomes: Outcomes,
}

pub struct Shared {
    pub http: Http,
    pub run: String,
    pub stop: AtomicBool,
    /// SKUs on sale.
    pub sale: Vec<String>,
    /// `None` when the base URL is not plain http: no raw clients then.
    pub raw: Option<Target>,
    pub ledger: Mutex<Ledger>,
    restock_seq: AtomicU64,
}

impl Shared {
    pub fn new(http: Http, run: String, sale: Vec<String>, raw: Option<Target>) -> Shared {
        Shared {
            http,
            run,
            stop: AtomicBool::new(false),
            sale,
            raw,
            ledger: Mutex::new(Ledger::default()),
            restock_seq: AtomicU64::new(0),
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, call: Call<'_>) -> Option<Reply> {
        let r = self.http.send(call).await;
        if r.as_ref().is_none_or(Reply::is_server_error) {
            tokio::time::sleep(FAILURE_BACKOFF).await;
        }
        r
    }

    fn random_sale_sku(&self, rng: &mut StdRng) -> Option<String> {
        self.sale.choose(rng).cloned()
    }
}

/// The body of `POST /products` for one SKU.
pub fn product_body(sku: &str, rng: &mut StdRng) -> Value {
    let word = WORDS.choose(rng).copied().unwrap_or("kettle");
    json!({
        "title": format!("Soak {word} {sku}"),
        "description": format!("A {word} made by mercato-soak."),
        "category": "soak",
        "variants": [{"sku": sku, "price": {"amount": rng.gen_range(500..5000), "currency": "EUR"}}],
    })
}

pub fn checkout_body(card: &str) -> Value {
    json!({
        "payment": {"token": card},
        "shipping_address": {"name": "Soak Buyer", "line1": "1 Load Street", "city": "Loopback", "postal_code": "12345", "country": "DE"},
    })
}

fn rng_for(kind: u64, idx: usize) -> StdRng {
    StdRng::seed_from_u64(rand::random::<u64>() ^ (kind << 32) ^ idx as u64)
}

/// Sets the `main` stock of a seller SKU, and writes down what came of it.
async fn set_stock(shared: &Shared, token: &str, sku: &str, quantity: i64) {
    let r = shared
        .send(
            Call::new(
                Op::SetStock,
                Method::PUT,
                "/inventory/{sku}",
                format!("/inventory/{sku}"),
            )
            .token(token)
            .json(json!({"quantity": quantity})),
        )
        .await;
    let mut ledger = shared.ledger();
    let log = ledger.stock.entry(sku.to_owned()).or_default();
    match r {
        Some(r) if r.is_success() => log.acked = Some(quantity),
        // A definite refusal changed nothing.
        Some(r) if (400..500).contains(&r.status) => {}
        _ => log.uncertain.push(quantity),
    }
}

/// Creates products with unique SKUs, sets their stock, and changes the
/// stock of earlier ones.
pub async fn seller(shared: Arc<Shared>, user: User, idx: usize) {
    let mut rng = rng_for(1, idx);
    let mut mine: Vec<String> = Vec::new();
    let mut n = 0u64;
    while !shared.stopped() {
        n += 1;
        let sku = format!("SOAK-{}-S{idx}-{n}", shared.run);
        let r = shared
            .send(
                Call::new(Op::CreateProduct, Method::POST, "/products", "/products")
                    .token(&user.token)
                    .json(product_body(&sku, &mut rng)),
            )
            .await;
        if let Some(r) = r.filter(|r| r.status == 201) {
            if let Some(id) = r.body["id"].as_str() {
                shared.ledger().products.push((id.to_owned(), sku.clone()));
            }
            set_stock(&shared, &user.token, &sku, rng.gen_range(0..1000)).await;
            mine.push(sku);
        }
        if !mine.is_empty() && rng.gen_bool(0.5) {
            let i = rng.gen_range(0..mine.len());
            set_stock(&shared, &user.token, &mine[i], rng.gen_range(0..1000)).await;
        }
    }
}

/// Puts `lines` in the cart; trims lines that grew large.
async fn fill_cart(shared: &Shared, token: &str, rng: &mut StdRng, lines: usize) {
    for _ in 0..lines {
        let Some(sku) = shared.random_sale_sku(rng) else {
            return;
        };
        let r = shared
            .send(
                Call::new(Op::Cart, Method::POST, "/cart/items", "/cart/items")
                    .token(token)
                    .json(json!({"sku": sku, "quantity": rng.gen_range(1..=2)})),
            )
            .await;
        let Some(cart) = r.filter(Reply::is_success) else {
            continue;
        };
        let large: Vec<String> = cart.body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|i| i["quantity"].as_i64().unwrap_or(0) > MAX_LINE_UNITS)
                    .filter_map(|i| i["sku"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for sku in large {
            shared
                .send(
                    Call::new(
                        Op::Cart,
                        Method::PATCH,
                        "/cart/items/{sku}",
                        format!("/cart/items/{sku}"),
                    )
                    .token(token)
                    .json(json!({"quantity": 1})),
                )
                .await;
        }
    }
}

/// Fills a cart, checks out, waits for the order; again and again.
pub async fn customer(shared: Arc<Shared>, user: User, idx: usize) {
    let mut rng = rng_for(2, idx);
    let mut n = 0u64;
    while !shared.stopped() {
        n += 1;
        let lines = rng.gen_range(1..=2);
        fill_cart(&shared, &user.token, &mut rng, lines).await;
        let card = if rng.gen_bool(0.1) {
            "tok_decline"
        } else {
            "tok_visa"
        };
        let r = shared
            .send(
                Call::new(Op::Checkout, Method::POST, "/checkout", "/checkout")
                    .token(&user.token)
                    .key(format!("soak-{}-c{idx}-{n}", shared.run))
                    .json(checkout_body(card)),
            )
            .await;
        let Some(id) = r
            .filter(|r| r.status == 202)
            .and_then(|r| r.body["id"].as_str().map(str::to_owned))
        else {
            continue;
        };
        {
            let mut ledger = shared.ledger();
            ledger.orders.push(id.clone());
            ledger.outcomes.placed += 1;
        }
        let r = shared
            .send(
                Call::get(
                    Op::OrderWait,
                    "/orders/{id}?wait=5",
                    format!("/orders/{id}?wait=5"),
                )
                .token(&user.token),
            )
            .await;
        if let Some(order) = r.filter(Reply::is_success) {
            let mut ledger = shared.ledger();
            let o = &mut ledger.outcomes;
            match order.body["status"].as_str() {
                Some("pending") => o.pending_after_wait += 1,
                Some("cancelled") => {
                    let reason = order.body["cancel_reason"]
                        .as_str()
                        .unwrap_or("none")
                        .to_owned();
                    *o.cancelled.entry(reason).or_default() += 1;
                }
                Some(_) => o.confirmed += 1,
                None => {}
            }
        }
    }
}

/// Keeps SKUs on sale in stock: a new warehouse each time one runs low.
pub async fn restocker(shared: Arc<Shared>, owner: User) {
    let mut rng = rng_for(3, 0);
    while !shared.stopped() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(sku) = shared.random_sale_sku(&mut rng) else {
            return;
        };
        let r = shared
            .send(Call::get(
                Op::ReadStock,
                "/inventory/{sku}",
                format!("/inventory/{sku}"),
            ))
            .await;
        let Some(available) = r
            .filter(Reply::is_success)
            .and_then(|r| r.body["available"].as_i64())
        else {
            continue;
        };
        if available >= RESTOCK_BELOW {
            continue;
        }
        restock(&shared, &owner.token, &sku).await;
    }
}

/// Puts [`RESTOCK_UNITS`] of `sku` into a new warehouse.
pub async fn restock(shared: &Shared, token: &str, sku: &str) {
    let seq = shared.restock_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let name = format!("r{seq}");
    let i = {
        let mut ledger = shared.ledger();
        let list = ledger.warehouses.entry(sku.to_owned()).or_default();
        list.push(WarehouseSet {
            name: name.clone(),
            quantity: RESTOCK_UNITS,
            acked: false,
        });
        list.len() - 1
    };
    let r = shared
        .send(
            Call::new(
                Op::Restock,
                Method::PUT,
                "/inventory/{sku}",
                format!("/inventory/{sku}"),
            )
            .token(token)
            .json(json!({"warehouse": name, "quantity": RESTOCK_UNITS})),
        )
        .await;
    if r.is_some_and(|r| r.is_success()) {
        if let Some(w) = shared
            .ledger()
            .warehouses
            .get_mut(sku)
            .and_then(|l| l.get_mut(i))
        {
            w.acked = true;
        }
    }
}

/// Reads: single products and their pages, lists, stock and search; and
/// the events a storefront reports of its visitors.
pub async fn reader(shared: Arc<Shared>, idx: usize) {
    let mut rng = rng_for(4, idx);
    let session = format!("soak-{}-{idx}", shared.run);
    while !shared.stopped() {
        let roll = rng.gen_range(0..100);
        if roll < 60 {
            let picked = {
                let ledger = shared.ledger();
                ledger.products.choose(&mut rng).map(|(id, _)| id.clone())
            };
            let Some(id) = picked else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let call = match roll {
                0..40 => Call::get(Op::ReadProduct, "/products/{id}", format!("/products/{id}")),
                40..55 => Call::get(
                    Op::ProductPage,
                    "/storefront/products/{id}",
                    format!("/storefront/products/{id}"),
                ),
                _ => Call::new(Op::ClientEvent, Method::POST, "/events", "/events").json(
                    json!({"type": "soak.viewed", "product_id": id, "properties": {"session": session}}),
                ),
            };
            shared.send(call).await;
        } else if roll < 75 {
            let q = QUERIES.choose(&mut rng).copied().unwrap_or("kettle");
            shared
                .send(Call::get(
                    Op::Search,
                    "/search?q=",
                    format!("/search?q={q}&limit=10"),
                ))
                .await;
        } else if roll < 88 {
            shared
                .send(Call::get(
                    Op::ListProducts,
                    "/products?category=",
                    "/products?category=soak&limit=20",
                ))
                .await;
        } else if let Some(sku) = shared.random_sale_sku(&mut rng) {
            shared
                .send(Call::get(
                    Op::ReadStock,
                    "/inventory/{sku}",
                    format!("/inventory/{sku}"),
                ))
                .await;
        }
    }
}

fn hang_up_delay(rng: &mut StdRng) -> Duration {
    Duration::from_micros(rng.gen_range(0..=6_000))
}

/// Sends whole `POST /products` requests and hangs up 0–6 ms later.
pub async fn hang_up_products(shared: Arc<Shared>, seller: User, idx: usize) {
    let Some(target) = shared.raw.clone() else {
        return;
    };
    let mut rng = rng_for(5, idx);
    let mut n = 0u64;
    while !shared.stopped() {
        n += 1;
        let sku = format!("SOAK-{}-H{idx}-{n}", shared.run);
        let body = product_body(&sku, &mut rng).to_string();
        let request = target.request(
            "POST",
            "/api/v1/products",
            &seller.token,
            &format!("soak-{}-hp{idx}-{n}", shared.run),
            body.as_bytes(),
        );
        match target.hang_up(&request, hang_up_delay(&mut rng)).await {
            Ok(()) => shared.http.rec.sent(Op::HangUpProduct),
            Err(_) => {
                shared.http.rec.no_answer(Op::HangUpProduct);
                tokio::time::sleep(FAILURE_BACKOFF).await;
            }
        }
        tokio::time::sleep(HANG_UP_PAUSE).await;
    }
}

/// Puts something in the cart, sends a whole `POST /checkout` and hangs up
/// 0–6 ms later.
pub async fn hang_up_checkouts(shared: Arc<Shared>, user: User, idx: usize) {
    let Some(target) = shared.raw.clone() else {
        return;
    };
    let mut rng = rng_for(6, idx);
    let mut n = 0u64;
    while !shared.stopped() {
        n += 1;
        fill_cart(&shared, &user.token, &mut rng, 1).await;
        let card = if rng.gen_bool(0.1) {
            "tok_decline"
        } else {
            "tok_visa"
        };
        let body = checkout_body(card).to_string();
        let request = target.request(
            "POST",
            "/api/v1/checkout",
            &user.token,
            &format!("soak-{}-hc{idx}-{n}", shared.run),
            body.as_bytes(),
        );
        match target.hang_up(&request, hang_up_delay(&mut rng)).await {
            Ok(()) => shared.http.rec.sent(Op::HangUpCheckout),
            Err(_) => {
                shared.http.rec.no_answer(Op::HangUpCheckout);
                tokio::time::sleep(FAILURE_BACKOFF).await;
            }
        }
        tokio::time::sleep(HANG_UP_PAUSE).await;
    }
}

/// Holds a connection open by trickling a request head (one byte every
/// half second for 2–20 s), then reads the answer.
pub async fn slow_client(shared: Arc<Shared>, idx: usize) {
    let Some(target) = shared.raw.clone() else {
        return;
    };
    let mut rng = rng_for(7, idx);
    let path = "/api/v1/products?limit=1";
    while !shared.stopped() {
        let bytes = rng.gen_range(4..=40);
        let stop = || shared.stopped();
        let started = std::time::Instant::now();
        let outcome = target
            .slow_get(
                path,
                bytes,
                Duration::from_millis(500),
                Duration::from_secs(15),
                stop,
            )
            .await;
        let rec = &shared.http.rec;
        match outcome {
            SlowOutcome::Answered { status, body } => rec.answered(
                &Request {
                    op: Op::Slow,
                    method: "GET",
                    template: path,
                    path,
                },
                status,
                &body,
                started.elapsed(),
            ),
            SlowOutcome::Closed => rec.closed(Op::Slow),
            SlowOutcome::NoAnswer | SlowOutcome::NoConnection => {
                rec.no_answer(Op::Slow);
                tokio::time::sleep(FAILURE_BACKOFF).await;
            }
            SlowOutcome::Abandoned => {}
        }
    }
}

/// Spins on a core until `stop` is raised.
pub fn cpu_hog(stop: Arc<AtomicBool>) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
        std::hint::black_box(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_log_allows_the_last_acknowledged_value_or_an_uncertain_one() {
        let mut log = SetLog::default();
        assert!(log.allows(None));
        log.uncertain.push(5);
        assert!(log.allows(None));
        assert!(log.allows(Some(5)));
        log.acked = Some(7);
        assert!(!log.allows(None));
        assert!(log.allows(Some(7)));
        assert!(log.allows(Some(5)));
        assert!(!log.allows(Some(6)));
    }

    #[test]
    fn bodies_are_valid_requests() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = product_body("SOAK-x-S0-1", &mut rng);
        assert_eq!(p["variants"][0]["sku"], "SOAK-x-S0-1");
        assert_eq!(p["category"], "soak");
        assert!(p["title"].as_str().is_some_and(|t| t.starts_with("Soak ")));
        assert_eq!(checkout_body("tok_visa")["payment"]["token"], "tok_visa");
    }
}
