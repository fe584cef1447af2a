//! The checks the soak ends with, once its traffic has stopped, all through
//! the public API (an admin lists every order and reads payments):
//!
//! (a) every write the shop acknowledged is readable;
//! (b) stock is conserved per SKU on sale, with nothing left reserved once
//!     every order has settled, counting every order in the shop (hang-up
//!     clients place orders the soak never heard of);
//! (c) each confirmed order was captured exactly once, each cancelled one
//!     kept no money;
//! (d) every outbox drained;
//! (e) every store still takes writes: a new seller lists and stocks a
//!     product, a new customer buys it, the order is confirmed in time.

use super::metrics;
use super::traffic::{checkout_body, product_body, Ledger, User};
use crate::api::{Api, Reply};
use futures::StreamExt;
use rand::SeedableRng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long orders may take to settle once the traffic has stopped.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(30);
/// How long every outbox may take to drain.
pub const DRAIN_WITHIN: Duration = Duration::from_secs(30);
/// How long the final purchase may take from checkout to confirmed.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(10);
const PARALLELISM: usize = 16;
/// Problems printed per check; the rest are counted.
pub const SHOWN_PROBLEMS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Not checkable against this server (a gauge it does not expose).
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

pub struct Check {
    pub label: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    pub problems: Vec<String>,
}

impl Check {
    fn new(label: &'static str, detail: String, problems: Vec<String>) -> Check {
        Check {
            label,
            verdict: if problems.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            detail,
            problems,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "audit {}: {} ({})",
            self.label,
            self.verdict.as_str(),
            self.detail
        )];
        for p in self.problems.iter().take(SHOWN_PROBLEMS) {
            out.push(format!("    {p}"));
        }
        if self.problems.len() > SHOWN_PROBLEMS {
            out.push(format!(
                "    ... and {} more",
                self.problems.len() - SHOWN_PROBLEMS
            ));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        json!({
            "check": self.label,
            "verdict": self.verdict.as_str(),
            "detail": self.detail,
            "problems": self.problems,
        })
    }
}

/// A call that is tried again after a failure without an answer or a 5xx
/// (the audit reads; a passing hiccup is not a finding, a lasting one is).
async fn call(
    api: &Api,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    key: Option<&str>,
) -> Result<Reply, String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        match api.call(method.clone(), path, token, body, key).await {
            Ok(r) if r.status.is_server_error() => {
                last = format!("{method} {path}: {} {}", r.status, r.body)
            }
            Ok(r) => return Ok(r),
            Err(e) => last = format!("{method} {path}: no answer ({e})"),
        }
    }
    Err(last)
}

/// Cursors are opaque; they go into a query string percent-encoded.
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

/// Every item of a paged list at `path` (which has a `?`).
async fn all_pages(api: &Api, path: &str, token: Option<&str>) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}&limit=100&cursor={}", encode(c)),
            None => format!("{path}&limit=100"),
        };
        let r = call(api, Method::GET, &page_path, token, None, None).await?;
        if r.status != StatusCode::OK {
            return Err(format!("GET {page_path}: {} {}", r.status, r.body));
        }
        match r.body["items"].as_array() {
            Some(page) => items.extend(page.iter().cloned()),
            None => return Err(format!("GET {page_path}: no items in {}", r.body)),
        }
        match r.body["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return Ok(items),
        }
    }
}

fn skus_of(order: &Value) -> impl Iterator<Item = (&str, i64)> {
    order["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| Some((i["sku"].as_str()?, i["quantity"].as_i64()?)))
}

/// Statuses in which an order's units have left the stock for good.
fn sold(status: &str) -> bool {
    matches!(status, "confirmed" | "shipped" | "delivered")
}

/// The shop's orders that hold a SKU on sale, once none of them is pending
/// (or when [`SETTLE_WITHIN`] is over), and how many are still pending.
pub async fn settled_orders(
    api: &Api,
    admin: &str,
    sale: &HashSet<String>,
) -> Result<(Vec<Value>, usize, Duration), String> {
    let started = Instant::now();
    loop {
        let orders: Vec<Value> = all_pages(api, "/orders?", Some(admin))
            .await?
            .into_iter()
            .filter(|o| skus_of(o).any(|(s, _)| sale.contains(s)))
            .collect();
        let pending = orders.iter().filter(|o| o["status"] == "pending").count();
        if pending == 0 || started.elapsed() >= SETTLE_WITHIN {
            return Ok((orders, pending, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// (a) products, stock values and orders acknowledged are all there.
pub async fn acknowledged_writes(api: &Api, ledger: &Ledger, orders: &[Value]) -> Check {
    let product_problems: Vec<String> = futures::stream::iter(ledger.products.iter())
        .map(|(id, sku)| async move {
            let path = format!("/products/{id}");
            match call(api, Method::GET, &path, None, None, None).await {
                Ok(r) if r.status == StatusCode::OK => {
                    let has_sku = r.body["variants"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|v| v["sku"] == sku.as_str()));
                    (!has_sku).then(|| format!("product {id}: no variant {sku} in {}", r.body))
                }
                Ok(r) => Some(format!(
                    "product {id} ({sku}) was created (201) but GET answers {} {}",
                    r.status, r.body
                )),
                Err(e) => Some(e),
            }
        })
        .buffer_unordered(PARALLELISM)
        .filter_map(|p| async move { p })
        .collect()
        .await;
    let stock_problems: Vec<String> = futures::stream::iter(ledger.stock.iter())
        .map(|(sku, log)| async move {
            let path = format!("/inventory/{sku}");
            match call(api, Method::GET, &path, None, None, None).await {
                Ok(r) if r.status == StatusCode::OK => {
                    let main = r.body["warehouses"].as_array().and_then(|ws| {
                        ws.iter()
                            .find(|w| w["warehouse"] == "main")
                            .and_then(|w| w["on_hand"].as_i64())
                    });
                    (!log.allows(main)).then(|| {
                        format!(
                            "stock of {sku}: on hand {} but the last acknowledged set was {} (unanswered sets: {:?})",
                            main.map_or("none".to_owned(), |v| v.to_string()),
                            log.acked.map_or("none".to_owned(), |v| v.to_string()),
                            log.uncertain
                        )
                    })
                }
                Ok(r) => Some(format!("GET {path}: {} {}", r.status, r.body)),
                Err(e) => Some(e),
            }
        })
        .buffer_unordered(PARALLELISM)
        .filter_map(|p| async move { p })
        .collect()
        .await;
    let listed: HashSet<&str> = orders.iter().filter_map(|o| o["id"].as_str()).collect();
    let order_problems: Vec<String> = ledger
        .orders
        .iter()
        .filter(|id| !listed.contains(id.as_str()))
        .map(|id| format!("order {id} was acknowledged (202) but the admin's order list lacks it"))
        .collect();
    let detail = format!(
        "{} products, {} stock values, {} orders; {} + {} + {} missing or wrong",
        ledger.products.len(),
        ledger.stock.len(),
        ledger.orders.len(),
        product_problems.len(),
        stock_problems.len(),
        order_problems.len()
    );
    let mut problems = product_problems;
    problems.extend(stock_problems);
    problems.extend(order_problems);
    Check::new("(a) every acknowledged write is readable", detail, problems)
}

/// (b) per SKU on sale: units put on hand = available + reserved + units in
/// confirmed orders, and nothing reserved.
pub async fn stock_conserved(
    api: &Api,
    ledger: &Ledger,
    orders: &[Value],
    still_pending: usize,
    settle_time: Duration,
) -> Check {
    let mut sold_units: HashMap<&str, i64> = HashMap::new();
    for o in orders {
        if o["status"].as_str().is_some_and(sold) {
            for (sku, q) in skus_of(o) {
                *sold_units.entry(sku).or_default() += q;
            }
        }
    }
    let mut problems = Vec::new();
    if still_pending > 0 {
        problems.push(format!(
            "{still_pending} orders still pending {} s after the traffic stopped",
            SETTLE_WITHIN.as_secs()
        ));
    }
    let mut put_total = 0;
    let mut sold_total = 0;
    let mut skus: Vec<(&String, &Vec<_>)> = ledger.warehouses.iter().collect();
    skus.sort_by(|a, b| a.0.cmp(b.0));
    for (sku, sets) in skus {
        let path = format!("/inventory/{sku}");
        let stock = match call(api, Method::GET, &path, None, None, None).await {
            Ok(r) if r.status == StatusCode::OK => r.body,
            Ok(r) => {
                problems.push(format!("GET {path}: {} {}", r.status, r.body));
                continue;
            }
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let known: HashMap<&str, &super::traffic::WarehouseSet> =
            sets.iter().map(|w| (w.name.as_str(), w)).collect();
        let mut put = 0;
        let mut on_hand = 0;
        let mut reserved = 0;
        let mut present = HashSet::new();
        for w in stock["warehouses"].as_array().into_iter().flatten() {
            let name = w["warehouse"].as_str().unwrap_or_default();
            present.insert(name.to_owned());
            on_hand += w["on_hand"].as_i64().unwrap_or(0);
            reserved += w["reserved"].as_i64().unwrap_or(0);
            match known.get(name) {
                Some(set) => put += set.quantity,
                None => problems.push(format!("{sku}: a warehouse {name} nobody set: {w}")),
            }
        }
        for w in sets
            .iter()
            .filter(|w| w.acked && !present.contains(&w.name))
        {
            problems.push(format!(
                "{sku}: warehouse {} was set to {} (acknowledged) and is gone",
                w.name, w.quantity
            ));
        }
        let available = stock["available"].as_i64().unwrap_or(i64::MIN);
        let sold = sold_units.get(sku.as_str()).copied().unwrap_or(0);
        put_total += put;
        sold_total += sold;
        if reserved != 0 || stock["reserved"].as_i64() != Some(0) {
            problems.push(format!(
                "{sku}: {reserved} units still reserved after every order settled: {stock}"
            ));
        }
        if available != on_hand - reserved {
            problems.push(format!(
                "{sku}: available {available} is not on hand {on_hand} - reserved {reserved}"
            ));
        }
        if put != available + reserved + sold {
            problems.push(format!(
                "{sku}: {put} units put on hand but {available} available + {reserved} reserved + {sold} in confirmed orders = {}",
                available + reserved + sold
            ));
        }
        if on_hand < 0 {
            problems.push(format!("{sku}: negative stock {stock}"));
        }
    }
    let detail = format!(
        "{} SKUs on sale, {} orders in the shop, {put_total} units put on hand, {sold_total} sold; orders settled {:.1} s after the traffic stopped",
        ledger.warehouses.len(),
        orders.len(),
        settle_time.as_secs_f64()
    );
    Check::new("(b) stock is conserved", detail, problems)
}

/// (c) payments: a confirmed order has one capture, a cancelled one has
/// every capture refunded.
pub async fn payments(api: &Api, admin: &str, orders: &[Value]) -> Check {
    let settled: Vec<&Value> = orders.iter().filter(|o| o["status"] != "pending").collect();
    let results: Vec<(Option<String>, &str)> = futures::stream::iter(settled.iter())
        .map(|o| async move {
            let id = o["id"].as_str().unwrap_or_default();
            let status = o["status"].as_str().unwrap_or_default();
            let path = format!("/payments/orders/{id}");
            let payment = match call(api, Method::GET, &path, Some(admin), None, None).await {
                Ok(r) if r.status == StatusCode::OK => Some(r.body),
                Ok(r) if r.status == StatusCode::NOT_FOUND => None,
                Ok(r) => return (Some(format!("GET {path}: {} {}", r.status, r.body)), status),
                Err(e) => return (Some(e), status),
            };
            let count = |kind: &str| {
                payment
                    .as_ref()
                    .and_then(|p| p["ledger"].as_array())
                    .map_or(0, |l| l.iter().filter(|e| e["kind"] == kind).count())
            };
            let (captures, refunds) = (count("capture"), count("refund"));
            let problem = if captures > 1 {
                Some(format!(
                    "order {id} ({status}) was captured {captures} times"
                ))
            } else if sold(status) {
                if captures != 1 {
                    Some(format!(
                        "order {id} is {status} without a capture: {payment:?}"
                    ))
                } else if o["payment"]["status"] != "captured" {
                    Some(format!(
                        "order {id} is {status} but its payment is {}",
                        o["payment"]["status"]
                    ))
                } else {
                    None
                }
            } else if status == "cancelled" && captures != refunds {
                Some(format!(
                    "cancelled order {id} kept money: {captures} captures, {refunds} refunds"
                ))
            } else {
                None
            };
            (problem, status)
        })
        .buffer_unordered(PARALLELISM)
        .collect()
        .await;
    let confirmed = results.iter().filter(|(_, s)| sold(s)).count();
    let cancelled = results.iter().filter(|(_, s)| *s == "cancelled").count();
    let problems: Vec<String> = results.into_iter().filter_map(|(p, _)| p).collect();
    Check::new(
        "(c) one capture per confirmed order, nothing kept for a cancelled one",
        format!("{confirmed} confirmed and {cancelled} cancelled orders checked"),
        problems,
    )
}

/// (d) every `mercato_outbox_pending` gauge reaches 0.
pub async fn outbox_drained(client: &reqwest::Client, endpoints: &[String]) -> Check {
    let started = Instant::now();
    let mut last;
    loop {
        last = metrics::scrape(client, endpoints).await;
        if last.has_pending() && last.pending_total() == 0.0 {
            return Check::new(
                "(d) every outbox drained",
                format!(
                    "every mercato_outbox_pending gauge at 0 after {:.1} s",
                    started.elapsed().as_secs_f64()
                ),
                Vec::new(),
            );
        }
        if started.elapsed() >= DRAIN_WITHIN {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !last.has_pending() {
        return Check {
            label: "(d) every outbox drained",
            verdict: Verdict::Skip,
            detail: format!(
                "no endpoint exposes {} ({} of {} answered)",
                metrics::OUTBOX_PENDING,
                last.reachable,
                last.endpoints
            ),
            problems: Vec::new(),
        };
    }
    let problems = last
        .pending
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| format!("{k}: {v} rows still unpublished"))
        .collect();
    Check::new(
        "(d) every outbox drained",
        format!("still not drained after {} s", DRAIN_WITHIN.as_secs()),
        problems,
    )
}

/// Registers a user (tried again after a failure without an answer: setup).
pub async fn register(api: &Api, email: &str, role: &str) -> Result<User, String> {
    let body = registration(email, role);
    let r = call(api, Method::POST, "/auth/register", None, Some(&body), None).await?;
    if r.status != StatusCode::CREATED {
        return Err(format!("register {email}: {} {}", r.status, r.body));
    }
    user_of(email, &r.body)
}

fn registration(email: &str, role: &str) -> Value {
    json!({"email": email, "password": super::PASSWORD, "name": "Soak User", "role": role})
}

fn user_of(email: &str, body: &Value) -> Result<User, String> {
    match (body["user"]["id"].as_str(), body["access_token"].as_str()) {
        (Some(id), Some(token)) => Ok(User {
            id: id.to_owned(),
            token: token.to_owned(),
        }),
        _ => Err(format!("register {email}: no user id or token in {body}")),
    }
}

/// Registers a user with one request, as a new user would.
async fn sign_up(api: &Api, email: &str, role: &str) -> Result<User, String> {
    let body = step(
        api,
        &format!("register a {role}"),
        StatusCode::CREATED,
        (Method::POST, "/auth/register"),
        None,
        Some(&registration(email, role)),
        None,
    )
    .await?;
    user_of(email, &body)
}

/// One step of the final purchase: the answer when it has `expected` status.
async fn step(
    api: &Api,
    what: &str,
    expected: StatusCode,
    (method, path): (Method, &str),
    token: Option<&str>,
    body: Option<&Value>,
    key: Option<&str>,
) -> Result<Value, String> {
    // Once: a write tried again is not what a client gets.
    match api.call(method.clone(), path, token, body, key).await {
        Ok(r) if r.status == expected => Ok(r.body),
        Ok(r) => Err(format!(
            "{what}: {method} {path} answered {} {}",
            r.status, r.body
        )),
        Err(e) => Err(format!("{what}: {method} {path}: no answer ({e})")),
    }
}

/// (e) a new seller, a new product, its stock, a new customer's order
/// confirmed within [`CONFIRM_WITHIN`] and its confirmation notification.
pub async fn still_writable(api: &Api, run: &str) -> Check {
    let label = "(e) every store still takes writes";
    match purchase(api, run).await {
        Ok(detail) => Check::new(label, detail, Vec::new()),
        Err(problem) => Check::new(label, "the final purchase failed".into(), vec![problem]),
    }
}

async fn purchase(api: &Api, run: &str) -> Result<String, String> {
    let started = Instant::now();
    let seller = sign_up(
        api,
        &format!("soak-final-seller-{run}@soak.example"),
        "seller",
    )
    .await?;
    let sku = format!("SOAK-{run}-FINAL");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let product = step(
        api,
        "create a product",
        StatusCode::CREATED,
        (Method::POST, "/products"),
        Some(&seller.token),
        Some(&product_body(&sku, &mut rng)),
        None,
    )
    .await?;
    let product_id = product["id"].as_str().unwrap_or_default().to_owned();
    step(
        api,
        "set its stock",
        StatusCode::OK,
        (Method::PUT, &format!("/inventory/{sku}")),
        Some(&seller.token),
        Some(&json!({"quantity": 5})),
        None,
    )
    .await?;
    let customer = sign_up(
        api,
        &format!("soak-final-customer-{run}@soak.example"),
        "customer",
    )
    .await?;
    step(
        api,
        "add it to a cart",
        StatusCode::OK,
        (Method::POST, "/cart/items"),
        Some(&customer.token),
        Some(&json!({"sku": sku, "quantity": 1})),
        None,
    )
    .await?;
    let checkout_at = Instant::now();
    let order = step(
        api,
        "check out",
        StatusCode::ACCEPTED,
        (Method::POST, "/checkout"),
        Some(&customer.token),
        Some(&checkout_body("tok_visa")),
        Some(&format!("soak-{run}-final")),
    )
    .await?;
    let id = order["id"]
        .as_str()
        .ok_or_else(|| format!("check out: no order id in {order}"))?
        .to_owned();
    let mut status = order["status"].as_str().unwrap_or_default().to_owned();
    while status == "pending" && checkout_at.elapsed() < CONFIRM_WITHIN {
        let o = step(
            api,
            "read the order",
            StatusCode::OK,
            (Method::GET, &format!("/orders/{id}?wait=2")),
            Some(&customer.token),
            None,
            None,
        )
        .await?;
        status = o["status"].as_str().unwrap_or_default().to_owned();
    }
    let to_confirmed = checkout_at.elapsed();
    if status != "confirmed" || to_confirmed > CONFIRM_WITHIN {
        return Err(format!(
            "order {id} is {status} {:.1} s after its checkout (must be confirmed within {} s)",
            to_confirmed.as_secs_f64(),
            CONFIRM_WITHIN.as_secs()
        ));
    }
    let notified_by = Instant::now() + CONFIRM_WITHIN;
    loop {
        let list = step(
            api,
            "read notifications",
            StatusCode::OK,
            (Method::GET, "/notifications"),
            Some(&customer.token),
            None,
            None,
        )
        .await?;
        let sent = list["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|n| n["order_id"] == id.as_str() && n["template"] == "order_confirmed")
        });
        if sent {
            break;
        }
        if Instant::now() >= notified_by {
            return Err(format!(
                "order {id} was confirmed but no order_confirmed notification came within {} s",
                CONFIRM_WITHIN.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(format!(
        "product {product_id} listed and stocked, order {id} confirmed {:.2} s after checkout, customer notified; {:.1} s in all",
        to_confirmed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ))
}

/// What the hang-up clients left behind: products of the hang-up seller and
/// orders of the hang-up customers that exist although nobody read an answer.
pub async fn hang_up_effects(
    api: &Api,
    seller: Option<&User>,
    customers: &[User],
    orders: &[Value],
) -> Result<(usize, usize), String> {
    let products = match seller {
        Some(s) => all_pages(
            api,
            &format!("/products?seller_id={}&status=all", s.id),
            None,
        )
        .await?
        .len(),
        None => 0,
    };
    let ids: HashSet<&str> = customers.iter().map(|c| c.id.as_str()).collect();
    let placed = orders
        .iter()
        .filter(|o| o["customer_id"].as_str().is_some_and(|c| ids.contains(c)))
        .count();
    Ok((products, placed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_percent_encoded() {
        assert_eq!(encode("abc-_.~09"), "abc-_.~09");
        assert_eq!(encode("a+b/c="), "a%2Bb%2Fc%3D");
    }

    #[test]
    fn order_lines_and_sold_statuses() {
        let o =
            json!({"items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}, {"x": 1}]});
        let lines: Vec<_> = skus_of(&o).collect();
        assert_eq!(lines, vec![("A", 2), ("B", 1)]);
        assert!(sold("confirmed") && sold("delivered"));
        assert!(!sold("cancelled") && !sold("refunded") && !sold("pending"));
    }

    #[test]
    fn a_check_fails_with_problems_and_shows_a_bounded_list() {
        let ok = Check::new("(x) thing", "fine".into(), Vec::new());
        assert_eq!(ok.verdict, Verdict::Pass);
        assert_eq!(ok.lines(), vec!["audit (x) thing: PASS (fine)".to_owned()]);
        let bad = Check::new(
            "(x) thing",
            "bad".into(),
            (0..25).map(|i| format!("p{i}")).collect(),
        );
        assert_eq!(bad.verdict, Verdict::Fail);
        let lines = bad.lines();
        assert_eq!(lines.len(), 1 + SHOWN_PROBLEMS + 1);
        assert_eq!(lines[lines.len() - 1], "    ... and 5 more");
    }
}
