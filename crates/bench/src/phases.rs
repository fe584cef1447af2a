//! The measured phases. Each starts new work only until its deadline; work in
//! flight then finishes (bounded by the request timeout, and for an order by
//! [`ORDER_SETTLE_LIMIT`]) and the rates are taken over the whole elapsed time,
//! drain included.

use crate::api::{Api, DataSet};
use crate::stats::{rate, Samples, Summary};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// An order still `pending` this long after its checkout counts as timed
/// out (the contract promises a final status within 5 seconds).
pub const ORDER_SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Pause after a failed request, so that a failing server is not hammered in
/// a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

pub struct ReadsReport {
    /// What was read: `reads`, `storefront`, `search`, `pages`.
    pub label: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Summary,
}

impl ReadsReport {
    pub fn per_sec(&self) -> f64 {
        rate(self.requests, self.elapsed)
    }

    pub fn describe(&self) -> String {
        format!(
            "{}: {} requests in {:.2} s = {:.0} req/s; latency {}; errors {}",
            self.label,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.per_sec(),
            self.latency.describe(true),
            self.errors
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "requests_per_sec": self.per_sec(),
            "latency": self.latency.to_json(),
        })
    }
}

/// A GET to measure: its URL, and the cookies a browser would send.
type Target = (String, Option<String>);

/// `<prefix>/{id}` for every product of the data set.
fn product_urls(api: &Api, data: &DataSet, prefix: &str) -> Vec<Target> {
    data.product_ids
        .iter()
        .map(|id| (api.url(&format!("{prefix}/{id}")), None))
        .collect()
}

/// `GET /api/v1/products/{id}` over random ids.
pub async fn reads(
    api: &Api,
    data: &DataSet,
    concurrency: usize,
    duration: Duration,
) -> ReadsReport {
    let urls = product_urls(api, data, "/api/v1/products");
    gets("reads", api, urls, concurrency, duration).await
}

/// `GET /api/v1/storefront/products/{id}` (a product page: product, stock,
/// rating, reviews, recommendations) over random ids.
pub async fn storefront(
    api: &Api,
    data: &DataSet,
    concurrency: usize,
    duration: Duration,
) -> ReadsReport {
    let urls = product_urls(api, data, "/api/v1/storefront/products");
    gets("storefront", api, urls, concurrency, duration).await
}

/// Searches as a shop's visitors make them, over the seeded search catalog
/// (see [`crate::api::seed_search_catalog`]): a word or two, and in turn a
/// category, a price range, a colour, a sort, in stock only; every answer
/// counts its facets.
pub async fn search(api: &Api, concurrency: usize, duration: Duration) -> ReadsReport {
    use crate::api::{ADJECTIVES, CATEGORIES, COLORS, MATERIALS, NOUNS};
    let mut rng = StdRng::seed_from_u64(42);
    let urls = (0..2_000)
        .map(|i| {
            let noun = NOUNS[rng.gen_range(0..NOUNS.len())];
            let mut q = match i % 3 {
                0 => noun.to_owned(),
                1 => format!("{}+{noun}", ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())]),
                _ => format!("{}+{noun}", MATERIALS[rng.gen_range(0..MATERIALS.len())]),
            };
            q = format!("/api/v1/search?q={q}&limit=20");
            match i % 5 {
                0 => q.push_str(&format!(
                    "&category={}",
                    CATEGORIES[rng.gen_range(0..CATEGORIES.len())]
                )),
                1 => q.push_str("&min_price=1000&max_price=8000&sort=price_asc"),
                2 => q.push_str(&format!(
                    "&attr.color={}",
                    COLORS[rng.gen_range(0..COLORS.len())]
                )),
                3 => q.push_str("&in_stock=true"),
                _ => {}
            }
            (api.url(&q), None)
        })
        .collect();
    gets("search", api, urls, concurrency, duration).await
}

/// The web pages as browsers fetch them, in three groups measured one
/// after the other, `duration` each: the storefront signed out (product
/// pages, the home page and search results, 8 : 2 : 3), a customer's pages
/// (cart, checkout, orders, account; with the cookie session of a random
/// customer), and the seller's console (dashboard, products, orders).
pub async fn pages(
    api: &Api,
    data: &DataSet,
    concurrency: usize,
    duration: Duration,
) -> Vec<ReadsReport> {
    let mut rng = StdRng::seed_from_u64(7);
    let session = |token: &str| Some(format!("mercato_session={token}"));
    let storefront: Vec<Target> = (0..1_000)
        .map(|i| match i % 13 {
            0..=7 => {
                let id = &data.product_ids[rng.gen_range(0..data.product_ids.len())];
                (api.url(&format!("/products/{id}")), None)
            }
            8 | 9 => (api.url("/"), None),
            _ => (
                api.url(&format!(
                    "/search?q=bench+product+{}",
                    rng.gen_range(0..data.product_ids.len())
                )),
                None,
            ),
        })
        .collect();
    let account: Vec<Target> = (0..1_000)
        .map(|i| {
            let token = &data.customer_tokens[rng.gen_range(0..data.customer_tokens.len())];
            let page = ["/cart", "/checkout", "/account/orders", "/account"][i % 4];
            (api.url(page), session(token))
        })
        .collect();
    let console: Vec<Target> = ["/admin", "/admin/products", "/admin/orders"]
        .iter()
        .map(|page| (api.url(page), session(&data.seller_token)))
        .collect();
    vec![
        gets("pages, storefront", api, storefront, concurrency, duration).await,
        gets("pages, account", api, account, concurrency, duration).await,
        gets("pages, console", api, console, concurrency, duration).await,
    ]
}

/// GETs of random URLs of `urls` from `concurrency` tasks, each with at most
/// one request in flight (so at most `concurrency` connections).
async fn gets(
    label: &'static str,
    api: &Api,
    urls: Vec<Target>,
    concurrency: usize,
    duration: Duration,
) -> ReadsReport {
    let urls: Arc<Vec<Target>> = Arc::new(urls);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for worker in 0..concurrency {
        let client = api.client().clone();
        let urls = urls.clone();
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(worker as u64);
            let mut samples = Samples::default();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let (url, cookie) = &urls[rng.gen_range(0..urls.len())];
                let mut request = client.get(url);
                if let Some(cookie) = cookie {
                    request = request.header(reqwest::header::COOKIE, cookie);
                }
                let t0 = Instant::now();
                // The body is read whole but not parsed: parsing would spend
                // the cores the server is being measured on.
                let ok = match request.send().await {
                    Ok(r) if r.status() == StatusCode::OK => r.bytes().await.is_ok(),
                    Ok(r) => {
                        let _ = r.bytes().await;
                        false
                    }
                    Err(_) => false,
                };
                if ok {
                    samples.record(t0.elapsed());
                } else {
                    errors += 1;
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
            (samples, errors)
        });
    }
    let mut samples = Samples::default();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((s, e)) => {
                samples.merge(s);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    ReadsReport {
        label,
        requests: samples.len() as u64,
        errors,
        elapsed,
        latency: samples.summary(),
    }
}

pub struct CheckoutReport {
    pub confirmed: u64,
    pub cancelled: u64,
    pub timed_out: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Zero: the order is read with `?wait=`, not polled.
    pub poll_interval: Duration,
    /// From sending `POST /checkout` to the read that saw `confirmed`.
    pub to_confirmed: Summary,
    /// The `POST /checkout` call alone (202 answers).
    pub checkout_call: Summary,
}

impl CheckoutReport {
    pub fn per_sec(&self) -> f64 {
        rate(self.confirmed, self.elapsed)
    }

    pub fn describe(&self) -> String {
        format!(
            "checkout: {} orders confirmed in {:.2} s = {:.0} orders/s; \
             checkout-to-confirmed {} ({}); POST /checkout {}; \
             cancelled {}, timed out (> {} s) {}, errors {}",
            self.confirmed,
            self.elapsed.as_secs_f64(),
            self.per_sec(),
            self.to_confirmed.describe(true),
            if self.poll_interval.is_zero() {
                "waiting with ?wait=".to_owned()
            } else {
                format!("polling every {} ms", self.poll_interval.as_millis())
            },
            self.checkout_call.describe(true),
            self.cancelled,
            ORDER_SETTLE_LIMIT.as_secs(),
            self.timed_out,
            self.errors
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "confirmed": self.confirmed,
            "cancelled": self.cancelled,
            "timed_out": self.timed_out,
            "errors": self.errors,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "confirmed_per_sec": self.per_sec(),
            "poll_interval_ms": self.poll_interval.as_millis() as u64,
            "checkout_to_confirmed": self.to_confirmed.to_json(),
            "checkout_call": self.checkout_call.to_json(),
        })
    }
}

#[derive(Default)]
struct CheckoutTally {
    to_confirmed: Samples,
    checkout_call: Samples,
    cancelled: u64,
    timed_out: u64,
    errors: u64,
}

enum Outcome {
    Confirmed,
    Cancelled,
    TimedOut,
    Failed,
}

fn shipping_address() -> Value {
    json!({"name": "Bench Buyer", "line1": "1 Load Street", "city": "Loopback", "postal_code": "12345", "country": "DE"})
}

/// One customer per task: add a random SKU to the cart, check out with a
/// fresh `Idempotency-Key` and `tok_visa`, then poll the order every
/// `poll_interval` (or read it with `?wait=` when that is zero) until it
/// leaves `pending`.
pub async fn checkout(
    api: &Api,
    data: &DataSet,
    run: &str,
    concurrency: usize,
    duration: Duration,
    poll_interval: Duration,
) -> CheckoutReport {
    let skus = Arc::new(data.skus.clone());
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for (worker, token) in data
        .customer_tokens
        .iter()
        .take(concurrency)
        .cloned()
        .enumerate()
    {
        let api = api.clone();
        let skus = skus.clone();
        let run = run.to_owned();
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x5eed ^ worker as u64);
            let mut tally = CheckoutTally::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let sku = &skus[rng.gen_range(0..skus.len())];
                let key = format!("bench-{run}-{worker}-{n}");
                let outcome = buy_once(&api, &token, sku, &key, poll_interval, &mut tally).await;
                match outcome {
                    Outcome::Confirmed => {}
                    Outcome::Cancelled => tally.cancelled += 1,
                    Outcome::TimedOut => tally.timed_out += 1,
                    Outcome::Failed => {
                        tally.errors += 1;
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                }
            }
            tally
        });
    }
    let mut total = CheckoutTally::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(t) => {
                total.to_confirmed.merge(t.to_confirmed);
                total.checkout_call.merge(t.checkout_call);
                total.cancelled += t.cancelled;
                total.timed_out += t.timed_out;
                total.errors += t.errors;
            }
            Err(_) => total.errors += 1,
        }
    }
    let elapsed = start.elapsed();
    CheckoutReport {
        confirmed: total.to_confirmed.len() as u64,
        cancelled: total.cancelled,
        timed_out: total.timed_out,
        errors: total.errors,
        elapsed,
        poll_interval,
        to_confirmed: total.to_confirmed.summary(),
        checkout_call: total.checkout_call.summary(),
    }
}

async fn buy_once(
    api: &Api,
    token: &str,
    sku: &str,
    key: &str,
    poll_interval: Duration,
    tally: &mut CheckoutTally,
) -> Outcome {
    let added = api
        .call(
            Method::POST,
            "/cart/items",
            Some(token),
            Some(&json!({"sku": sku, "quantity": 1})),
            None,
        )
        .await;
    if !matches!(added, Ok(ref r) if r.status == StatusCode::OK) {
        return Outcome::Failed;
    }
    let body = json!({"payment": {"token": "tok_visa"}, "shipping_address": shipping_address()});
    let t0 = Instant::now();
    let placed = match api
        .call(
            Method::POST,
            "/checkout",
            Some(token),
            Some(&body),
            Some(key),
        )
        .await
    {
        Ok(r) if r.status == StatusCode::ACCEPTED => r,
        _ => return Outcome::Failed,
    };
    tally.checkout_call.record(t0.elapsed());
    let Some(order_id) = placed.body["id"].as_str().map(str::to_owned) else {
        return Outcome::Failed;
    };
    // Polling reads the order every `poll_interval`; without one, each read
    // waits on the server until the order settles.
    let path = if poll_interval.is_zero() {
        format!("/orders/{order_id}?wait={}", ORDER_SETTLE_LIMIT.as_secs())
    } else {
        format!("/orders/{order_id}")
    };
    let mut status = placed.body["status"]
        .as_str()
        .unwrap_or("pending")
        .to_owned();
    loop {
        match status.as_str() {
            "pending" => {}
            "confirmed" => {
                tally.to_confirmed.record(t0.elapsed());
                return Outcome::Confirmed;
            }
            "cancelled" => return Outcome::Cancelled,
            _ => return Outcome::Failed,
        }
        if t0.elapsed() > ORDER_SETTLE_LIMIT {
            return Outcome::TimedOut;
        }
        tokio::time::sleep(poll_interval).await;
        status = match api.call(Method::GET, &path, Some(token), None, None).await {
            Ok(r) if r.status == StatusCode::OK => {
                r.body["status"].as_str().unwrap_or_default().to_owned()
            }
            _ => return Outcome::Failed,
        };
    }
}
