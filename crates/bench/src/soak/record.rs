//! What the soak saw: per operation, how many requests were answered and
//! how (2xx, 4xx, 5xx), how many got no answer, their latencies over the
//! whole run and over the current report interval, and every 5xx with its
//! request and an excerpt of its body.

use crate::stats::{Samples, Summary};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The kinds of work the soak does; each is counted and timed on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `POST /products` with a unique SKU.
    CreateProduct,
    /// `PUT /inventory/{sku}` of a seller's own SKU (set and changed).
    SetStock,
    /// `PUT /inventory/{sku}` of a SKU on sale: a new warehouse.
    Restock,
    /// `POST /cart/items`, `PATCH` and `DELETE /cart/items/{sku}`.
    Cart,
    /// `POST /checkout`, read whole.
    Checkout,
    /// `GET /orders/{id}?wait=5`.
    OrderWait,
    /// `GET /products/{id}`.
    ReadProduct,
    /// `GET /products?category=`.
    ListProducts,
    /// `GET /search?q=`.
    Search,
    /// `GET /inventory/{sku}`.
    ReadStock,
    /// `GET /storefront/products/{id}`: product, stock, rating, reviews and
    /// recommendations in one answer.
    ProductPage,
    /// `POST /events`: an event a client reports.
    ClientEvent,
    /// A whole `POST /products` on a raw connection closed 0–6 ms after sending.
    HangUpProduct,
    /// A whole `POST /checkout` on a raw connection closed 0–6 ms after sending.
    HangUpCheckout,
    /// A request head trickled a byte at a time, then answered and read.
    Slow,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::CreateProduct => "create-product",
            Op::SetStock => "set-stock",
            Op::Restock => "restock",
            Op::Cart => "cart",
            Op::Checkout => "checkout",
            Op::OrderWait => "order-wait",
            Op::ReadProduct => "read-product",
            Op::ListProducts => "list-products",
            Op::Search => "search",
            Op::ReadStock => "read-stock",
            Op::ProductPage => "product-page",
            Op::ClientEvent => "client-event",
            Op::HangUpProduct => "hangup-product",
            Op::HangUpCheckout => "hangup-checkout",
            Op::Slow => "slow-client",
        }
    }

    /// Requests whose answer is never read: they have no latency and no status.
    pub fn hangs_up(self) -> bool {
        matches!(self, Op::HangUpProduct | Op::HangUpCheckout)
    }

    /// Whether the op's latency belongs in the run's overall percentiles:
    /// not long polls and not deliberately slow clients.
    fn in_overall_latency(self) -> bool {
        !matches!(self, Op::OrderWait | Op::Slow) && !self.hangs_up()
    }
}

#[derive(Default)]
struct OpStats {
    ok: u64,
    client_errors: u64,
    server_errors: u64,
    /// Transport failure or time-out: no status was read.
    no_answer: u64,
    /// Hang-ups sent; slow clients the server closed before answering.
    sent: u64,
    closed: u64,
    latency: Samples,
    interval_latency: Samples,
    interval_requests: u64,
    interval_server_errors: u64,
    interval_no_answer: u64,
}

/// A request as the recorder files it: its op, method, path template (ids
/// as `{id}`) and concrete path.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub op: Op,
    pub method: &'a str,
    pub template: &'a str,
    pub path: &'a str,
}

/// A 5xx answer, grouped by request template, status and body excerpt.
#[derive(Clone, Debug)]
pub struct ServerError {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub excerpt: String,
    pub count: u64,
    pub first_at: Duration,
    pub last_at: Duration,
    /// One concrete path it was answered to.
    pub example: String,
}

#[derive(Default)]
struct Inner {
    ops: BTreeMap<Op, OpStats>,
    server_errors: Vec<ServerError>,
    server_error_total: u64,
    no_answer_total: u64,
    /// (op, status, error code) of 4xx answers.
    client_errors: BTreeMap<(Op, u16, String), u64>,
    interval_started: Option<Instant>,
}

pub struct Recorder {
    started: Instant,
    inner: Mutex<Inner>,
}

/// One report interval.
pub struct Interval {
    pub elapsed: Duration,
    /// (op, requests per second, p99 in microseconds) of ops that ran.
    pub ops: Vec<(Op, f64, Option<u64>)>,
    pub server_errors_total: u64,
    pub server_errors_in_interval: u64,
    /// Requests that got no answer (time-out, connection error).
    pub no_answer_total: u64,
    pub no_answer_in_interval: u64,
}

/// The counts of one op over the run.
pub struct OpTotals {
    pub op: Op,
    pub ok: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub no_answer: u64,
    pub sent: u64,
    pub closed: u64,
    pub latency: Summary,
}

impl OpTotals {
    pub fn requests(&self) -> u64 {
        self.ok + self.client_errors + self.server_errors + self.no_answer + self.sent + self.closed
    }
}

pub struct Totals {
    pub ops: Vec<OpTotals>,
    pub overall: Summary,
    pub server_errors: Vec<ServerError>,
    pub server_error_total: u64,
    pub client_errors: Vec<((Op, u16, String), u64)>,
}

/// At most this many distinct 5xx groups are kept; further ones are counted.
const MAX_GROUPS: usize = 500;
const EXCERPT_CHARS: usize = 200;

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            started: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counts that are still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An answer that was read: its status, its body and how long it took.
    pub fn answered(&self, req: &Request<'_>, status: u16, body: &[u8], latency: Duration) {
        let Request {
            op,
            method,
            template,
            path,
        } = *req;
        let at = self.started.elapsed();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let stats = inner.ops.entry(op).or_default();
        stats.latency.record(latency);
        stats.interval_latency.record(latency);
        stats.interval_requests += 1;
        match status {
            500..=599 => {
                stats.server_errors += 1;
                stats.interval_server_errors += 1;
                inner.server_error_total += 1;
                let excerpt = excerpt(body);
                let groups = &mut inner.server_errors;
                let existing = groups.iter().position(|e| {
                    e.method == method
                        && e.path == template
                        && e.status == status
                        && e.excerpt == excerpt
                });
                match existing {
                    Some(i) => {
                        groups[i].count += 1;
                        groups[i].last_at = at;
                    }
                    None if groups.len() < MAX_GROUPS => groups.push(ServerError {
                        method: method.to_owned(),
                        path: template.to_owned(),
                        status,
                        excerpt,
                        count: 1,
                        first_at: at,
                        last_at: at,
                        example: path.to_owned(),
                    }),
                    None => {}
                }
            }
            400..=499 => {
                stats.client_errors += 1;
                let code = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                *inner.client_errors.entry((op, status, code)).or_default() += 1;
            }
            _ => stats.ok += 1,
        }
    }

    /// A request that got no status: connection failure or time-out.
    pub fn no_answer(&self, op: Op) {
        let mut inner = self.lock();
        inner.no_answer_total += 1;
        let stats = inner.ops.entry(op).or_default();
        stats.no_answer += 1;
        stats.interval_no_answer += 1;
        stats.interval_requests += 1;
    }

    /// A request sent by a client that hangs up without reading.
    pub fn sent(&self, op: Op) {
        let mut inner = self.lock();
        let stats = inner.ops.entry(op).or_default();
        stats.sent += 1;
        stats.interval_requests += 1;
    }

    /// A slow client whose connection the server closed before answering.
    pub fn closed(&self, op: Op) {
        let mut inner = self.lock();
        let stats = inner.ops.entry(op).or_default();
        stats.closed += 1;
        stats.interval_requests += 1;
    }

    /// The interval since the last call (or the start), and starts a new one.
    pub fn interval(&self) -> Interval {
        let now = Instant::now();
        let mut inner = self.lock();
        let since = inner.interval_started.unwrap_or(self.started);
        inner.interval_started = Some(now);
        let elapsed = now.duration_since(since);
        let mut ops = Vec::new();
        let mut in_interval = 0;
        let mut no_answer = 0;
        for (op, stats) in inner.ops.iter_mut() {
            let samples = std::mem::take(&mut stats.interval_latency);
            let requests = std::mem::take(&mut stats.interval_requests);
            in_interval += std::mem::take(&mut stats.interval_server_errors);
            no_answer += std::mem::take(&mut stats.interval_no_answer);
            if requests > 0 {
                ops.push((
                    *op,
                    crate::stats::rate(requests, elapsed),
                    samples.summary().p99,
                ));
            }
        }
        Interval {
            elapsed,
            ops,
            server_errors_total: inner.server_error_total,
            server_errors_in_interval: in_interval,
            no_answer_total: inner.no_answer_total,
            no_answer_in_interval: no_answer,
        }
    }

    pub fn server_error_total(&self) -> u64 {
        self.lock().server_error_total
    }

    /// Everything over the run.
    pub fn totals(&self) -> Totals {
        let inner = self.lock();
        let mut overall = Samples::default();
        let mut ops = Vec::new();
        for (op, stats) in &inner.ops {
            if op.in_overall_latency() {
                overall.merge(stats.latency.clone());
            }
            ops.push(OpTotals {
                op: *op,
                ok: stats.ok,
                client_errors: stats.client_errors,
                server_errors: stats.server_errors,
                no_answer: stats.no_answer,
                sent: stats.sent,
                closed: stats.closed,
                latency: stats.latency.clone().summary(),
            });
        }
        let mut client_errors: Vec<_> = inner
            .client_errors
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        client_errors.sort_by_key(|e| std::cmp::Reverse(e.1));
        Totals {
            ops,
            overall: overall.summary(),
            server_errors: inner.server_errors.clone(),
            server_error_total: inner.server_error_total,
            client_errors,
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// The start of a body as one line of text.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(EXCERPT_CHARS)
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

impl ServerError {
    pub fn describe(&self) -> String {
        format!(
            "{} {} -> {} x{} (first at {:.1} s, last at {:.1} s, e.g. {}): {}",
            self.method,
            self.path,
            self.status,
            self.count,
            self.first_at.as_secs_f64(),
            self.last_at.as_secs_f64(),
            self.example,
            if self.excerpt.is_empty() {
                "(empty body)"
            } else {
                &self.excerpt
            }
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "count": self.count,
            "first_at_secs": self.first_at.as_secs_f64(),
            "last_at_secs": self.last_at.as_secs_f64(),
            "example": self.example,
            "body": self.excerpt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(op: Op, method: &'a str, template: &'a str, path: &'a str) -> Request<'a> {
        Request {
            op,
            method,
            template,
            path,
        }
    }

    #[test]
    fn server_errors_are_grouped_and_counted() {
        let r = Recorder::new();
        let body = br#"{"error":{"code":"internal","message":"an internal error occurred"}}"#;
        for _ in 0..3 {
            r.answered(
                &req(
                    Op::CreateProduct,
                    "POST",
                    "/api/v1/products",
                    "/api/v1/products",
                ),
                500,
                body,
                Duration::from_millis(5),
            );
        }
        r.answered(
            &req(
                Op::ReadProduct,
                "GET",
                "/api/v1/products/{id}",
                "/api/v1/products/1",
            ),
            503,
            b"",
            Duration::from_millis(1),
        );
        r.answered(
            &req(
                Op::ReadProduct,
                "GET",
                "/api/v1/products/{id}",
                "/api/v1/products/2",
            ),
            404,
            br#"{"error":{"code":"not_found","message":"x"}}"#,
            Duration::from_millis(1),
        );
        r.answered(
            &req(
                Op::ReadProduct,
                "GET",
                "/api/v1/products/{id}",
                "/api/v1/products/3",
            ),
            200,
            b"{}",
            Duration::from_millis(1),
        );
        r.no_answer(Op::Checkout);
        r.sent(Op::HangUpCheckout);
        let t = r.totals();
        assert_eq!(t.server_error_total, 4);
        assert_eq!(t.server_errors.len(), 2);
        assert_eq!(t.server_errors[0].count, 3);
        assert!(t.server_errors[0]
            .describe()
            .contains("POST /api/v1/products -> 500 x3"));
        assert!(t.server_errors[1].describe().contains("(empty body)"));
        assert_eq!(
            t.client_errors,
            vec![((Op::ReadProduct, 404, "not_found".to_owned()), 1)]
        );
        let reads = t.ops.iter().find(|o| o.op == Op::ReadProduct);
        assert_eq!(reads.map(OpTotals::requests), Some(3));
        // Hang-ups and unanswered requests add no latency sample.
        assert_eq!(t.overall.count, 6);
        let i = r.interval();
        assert_eq!(i.server_errors_in_interval, 4);
        assert_eq!((i.no_answer_total, i.no_answer_in_interval), (1, 1));
        assert_eq!(i.ops.len(), 4);
        assert_eq!(r.interval().server_errors_in_interval, 0);
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt(b"a\nb"), "a b");
        let long = vec![b'x'; 500];
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }
}
