//! `mercato-soak`: sustained mixed traffic against a running Mercato server,
//! through its public HTTP API only, with clients that hang up mid-request,
//! clients that hold connections open and threads that compete for the
//! cores; a line of figures every few seconds; then an audit of the shop.
//! `scripts/soak` starts a server (or a cluster) around it; `docs/soak.md`
//! explains what it does and how to read it.

pub mod audit;
pub mod http;
pub mod metrics;
pub mod raw;
pub mod record;
pub mod traffic;

use crate::api::Api;
use crate::stats::rate;
use anyhow::{anyhow, bail, Context};
use audit::{Check, Verdict};
use futures::{StreamExt, TryStreamExt};
use http::Http;
use metrics::{Gauges, Maxima};
use record::Recorder;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use traffic::{Shared, User, WarehouseSet};

/// The password of every user the soak registers.
pub const PASSWORD: &str = "soak-password-123";
/// Registration hashes a password; more at once only queues on the cores.
const REGISTER_PARALLELISM: usize = 4;
/// How long the clients get to finish what they are doing once the run is over.
const WIND_DOWN: Duration = Duration::from_secs(30);

pub struct Config {
    pub base_url: String,
    pub duration: Duration,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    pub admin_token: Option<String>,
    /// Prometheus endpoints; empty: `<base>/metrics`.
    pub metrics: Vec<String>,
    pub cpu_hogs: usize,
    pub json: bool,
    pub report_every: Duration,
    pub wait_ready: Duration,
    pub sellers: usize,
    pub customers: usize,
    pub readers: usize,
    pub hang_up_products: usize,
    pub hang_up_checkouts: usize,
    pub slow_clients: usize,
    pub sale_skus: usize,
    pub sale_stock: i64,
}

/// Readable lines go to stdout, or to stderr when stdout carries JSON.
#[derive(Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn line(&self, s: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", s.as_ref());
        } else {
            println!("{}", s.as_ref());
        }
    }
}

/// Runs the soak; `Ok(true)` when no 5xx was answered and every audit check
/// passed (or could not be made), `Ok(false)` otherwise. `Err`: the soak
/// could not set itself up.
pub async fn run(config: Config) -> anyhow::Result<bool> {
    let out = Out { json: config.json };
    if config.duration.is_zero() || config.report_every.is_zero() {
        bail!("--duration and --report-every must be at least 1 second");
    }
    if config.sale_skus == 0 || config.sale_stock < 1 {
        bail!("--sale-skus and --sale-stock must be at least 1");
    }
    let base = config.base_url.trim_end_matches('/').to_owned();
    let metrics_urls = if config.metrics.is_empty() {
        vec![format!("{base}/metrics")]
    } else {
        config.metrics.clone()
    };
    let connections =
        config.sellers + config.customers + config.readers + config.hang_up_checkouts + 4;
    let api = Api::new(&base, connections)?;
    api.wait_ready(config.wait_ready).await?;
    let raw = match raw::Target::from_base_url(&base) {
        Ok(t) => Some(t),
        Err(e) => {
            out.line(format!(
                "no hang-up or slow clients: {e:#} (they speak plain HTTP only)"
            ));
            None
        }
    };

    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| format!("{:x}", d.as_micros()))
        .unwrap_or_else(|_| std::process::id().to_string());
    out.line(format!(
        "mercato-soak {base}: {} s; {} sellers, {} customers, {} readers, {}+{} hang-up clients (products+checkouts), {} slow clients, {} CPU hogs; run {run_id}",
        config.duration.as_secs(),
        config.sellers,
        config.customers,
        config.readers,
        config.hang_up_products,
        config.hang_up_checkouts,
        config.slow_clients,
        config.cpu_hogs
    ));

    // Setup: the admin, users, and the SKUs on sale with their first stock.
    let setup_started = Instant::now();
    let admin = admin_token(&api, &config).await?;
    let users = register_users(&api, &run_id, &config).await?;
    let sale = list_sale_products(&api, &run_id, &users.shop, &config).await?;
    out.line(format!(
        "setup: {} users, {} SKUs on sale with {} units each, in {:.1} s",
        users.count(),
        sale.len(),
        config.sale_stock,
        setup_started.elapsed().as_secs_f64()
    ));

    let rec = Arc::new(Recorder::new());
    let http = Http {
        api: api.clone(),
        rec: rec.clone(),
    };
    let shared = Arc::new(Shared::new(
        http,
        run_id.clone(),
        sale.iter().map(|(sku, _)| sku.clone()).collect(),
        raw,
    ));
    {
        let mut ledger = shared.ledger();
        for (sku, quantity) in &sale {
            ledger.warehouses.insert(
                sku.clone(),
                vec![WarehouseSet {
                    name: "main".into(),
                    quantity: *quantity,
                    acked: true,
                }],
            );
        }
    }

    // Traffic.
    let hog_stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..config.cpu_hogs)
        .map(|_| {
            let stop = hog_stop.clone();
            std::thread::spawn(move || traffic::cpu_hog(stop))
        })
        .collect();
    let mut clients = JoinSet::new();
    let mut misbehaving = JoinSet::new();
    for (i, u) in users.sellers.iter().enumerate() {
        clients.spawn(traffic::seller(shared.clone(), u.clone(), i));
    }
    for (i, u) in users.customers.iter().enumerate() {
        clients.spawn(traffic::customer(shared.clone(), u.clone(), i));
    }
    for i in 0..config.readers {
        clients.spawn(traffic::reader(shared.clone(), i));
    }
    clients.spawn(traffic::restocker(shared.clone(), users.shop.clone()));
    if let Some(seller) = &users.hang_up_seller {
        for i in 0..config.hang_up_products {
            misbehaving.spawn(traffic::hang_up_products(shared.clone(), seller.clone(), i));
        }
    }
    for (i, u) in users.hang_up_customers.iter().enumerate() {
        misbehaving.spawn(traffic::hang_up_checkouts(shared.clone(), u.clone(), i));
    }
    for i in 0..config.slow_clients {
        misbehaving.spawn(traffic::slow_client(shared.clone(), i));
    }

    let maxima = Arc::new(Mutex::new(Maxima::default()));
    let timeline = Arc::new(Mutex::new(Vec::<Value>::new()));
    let traffic_started = Instant::now();
    let reporter = tokio::spawn(report_loop(
        shared.clone(),
        metrics_urls.clone(),
        config.report_every,
        traffic_started,
        maxima.clone(),
        timeline.clone(),
        out,
    ));
    tokio::time::sleep(config.duration).await;

    // Stop: the misbehaving clients at once, the others once their current
    // request is answered, then the hogs.
    shared.stop.store(true, Ordering::Relaxed);
    let traffic_secs = traffic_started.elapsed();
    misbehaving.abort_all();
    reporter.abort();
    let wind_down = tokio::time::timeout(WIND_DOWN, async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    if wind_down.is_err() {
        out.line(format!(
            "{} clients were still waiting for an answer {} s after the end; abandoned",
            clients.len(),
            WIND_DOWN.as_secs()
        ));
        clients.abort_all();
    }
    while misbehaving.join_next().await.is_some() {}
    hog_stop.store(true, Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
    let last = report_line(&shared, &metrics_urls, traffic_started, &maxima).await;
    out.line(last.0);
    lock(&timeline).push(last.1);
    let elapsed = traffic_started.elapsed();
    out.line(format!(
        "traffic stopped after {:.1} s ({:.1} s of it winding down); auditing",
        elapsed.as_secs_f64(),
        (elapsed - traffic_secs).as_secs_f64()
    ));

    // Audit.
    let ledger = std::mem::take(&mut *shared.ledger());
    let sale_set: HashSet<String> = shared.sale.iter().cloned().collect();
    let mut checks: Vec<Check> = Vec::new();
    let mut orders: Vec<Value> = Vec::new();
    let mut hang_up_line = None;
    match audit::settled_orders(&api, &admin, &sale_set).await {
        Ok((listed, pending, settle_time)) => {
            orders = listed;
            checks.push(audit::acknowledged_writes(&api, &ledger, &orders).await);
            out_check(out, checks.last());
            checks.push(audit::stock_conserved(&api, &ledger, &orders, pending, settle_time).await);
            out_check(out, checks.last());
            checks.push(audit::payments(&api, &admin, &orders).await);
            out_check(out, checks.last());
        }
        Err(e) => {
            let c = Check {
                label: "(a)-(c) acknowledged writes, stock, payments",
                verdict: Verdict::Fail,
                detail: "the admin could not list the shop's orders".into(),
                problems: vec![e],
            };
            out_check(out, Some(&c));
            checks.push(c);
        }
    }
    checks.push(audit::outbox_drained(api.client(), &metrics_urls).await);
    out_check(out, checks.last());
    checks.push(audit::still_writable(&api, &run_id).await);
    out_check(out, checks.last());
    match audit::hang_up_effects(
        &api,
        users.hang_up_seller.as_ref(),
        &users.hang_up_customers,
        &orders,
    )
    .await
    {
        Ok((products, placed)) => {
            hang_up_line = Some((products, placed));
        }
        Err(e) => out.line(format!("could not count what the hang-ups left: {e}")),
    }

    // Summary.
    let totals = rec.totals();
    let maxima = lock(&maxima).clone();
    let answered: u64 = totals
        .ops
        .iter()
        .map(|o| o.ok + o.client_errors + o.server_errors)
        .sum();
    let requests: u64 = totals.ops.iter().map(|o| o.requests()).sum();
    let no_answer: u64 = totals.ops.iter().map(|o| o.no_answer).sum();
    out.line("");
    out.line(format!(
        "summary: {:.1} s of traffic, {requests} requests ({answered} answered and read, {no_answer} without an answer), {:.0} requests/s; latency of answered requests {}",
        traffic_secs.as_secs_f64(),
        rate(requests, traffic_secs),
        totals.overall.describe(true)
    ));
    for o in &totals.ops {
        let mut parts = vec![format!(
            "{} {:.1}/s",
            o.requests(),
            rate(o.requests(), traffic_secs)
        )];
        if o.op.hangs_up() {
            parts.push(format!("{} sent and hung up", o.sent));
        } else {
            parts.push(format!(
                "2xx {} 4xx {} 5xx {}",
                o.ok, o.client_errors, o.server_errors
            ));
            parts.push(o.latency.describe(true));
        }
        if o.closed > 0 {
            parts.push(format!(
                "{} closed by the server before an answer",
                o.closed
            ));
        }
        if o.no_answer > 0 {
            parts.push(format!(
                "{} without an answer (time-out or connection error)",
                o.no_answer
            ));
        }
        out.line(format!("  {:<16} {}", o.op.name(), parts.join("; ")));
    }
    let outcomes = ledger.outcomes.clone();
    let mut cancelled: Vec<_> = outcomes.cancelled.iter().collect();
    cancelled.sort();
    out.line(format!(
        "  orders: {} placed and read: {} confirmed, cancelled {}, {} still pending after ?wait=5",
        outcomes.placed,
        outcomes.confirmed,
        if cancelled.is_empty() {
            "0".to_owned()
        } else {
            cancelled
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        outcomes.pending_after_wait
    ));
    if let Some((products, placed)) = hang_up_line {
        out.line(format!(
            "  hang-ups that took effect: {products} products created, {placed} orders placed"
        ));
    }
    out.line(format!("  {}", maxima.describe()));
    if !totals.client_errors.is_empty() {
        out.line("  4xx answers:");
        for ((op, status, code), n) in totals.client_errors.iter().take(20) {
            out.line(format!("    {} {status} {code}: {n}", op.name()));
        }
    }
    let rate_limited: u64 = totals
        .client_errors
        .iter()
        .filter(|((_, s, _), _)| *s == 429)
        .map(|(_, n)| n)
        .sum();
    if rate_limited > 0 {
        out.line(format!(
            "  warning: {rate_limited} answers were 429: the server's rate limit is on (MERCATO_HTTP__RATE_LIMIT_PER_SECOND=0 turns it off)"
        ));
    }
    if totals.server_error_total == 0 {
        out.line("  5xx answers: none");
    } else {
        out.line(format!("  5xx answers: {}", totals.server_error_total));
        for e in &totals.server_errors {
            out.line(format!("    {}", e.describe()));
        }
    }
    let failed: Vec<&Check> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .collect();
    let skipped = checks.iter().filter(|c| c.verdict == Verdict::Skip).count();
    let passed = totals.server_error_total == 0 && failed.is_empty();
    out.line(format!(
        "result: {} ({} 5xx, {} of {} audit checks failed{})",
        if passed { "PASS" } else { "FAIL" },
        totals.server_error_total,
        failed.len(),
        checks.len(),
        if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        }
    ));

    if config.json {
        let summary = json!({
            "config": {
                "base_url": base,
                "duration_secs": config.duration.as_secs(),
                "cpu_hogs": config.cpu_hogs,
                "sellers": config.sellers,
                "customers": config.customers,
                "readers": config.readers,
                "hang_up_products": config.hang_up_products,
                "hang_up_checkouts": config.hang_up_checkouts,
                "slow_clients": config.slow_clients,
                "sale_skus": config.sale_skus,
                "metrics": metrics_urls,
            },
            "traffic_secs": traffic_secs.as_secs_f64(),
            "requests": requests,
            "answered": answered,
            "no_answer": no_answer,
            "requests_per_sec": rate(requests, traffic_secs),
            "latency": totals.overall.to_json(),
            "ops": totals.ops.iter().map(|o| json!({
                "op": o.op.name(),
                "requests": o.requests(),
                "ok": o.ok,
                "client_errors": o.client_errors,
                "server_errors": o.server_errors,
                "no_answer": o.no_answer,
                "hung_up": o.sent,
                "closed_by_server": o.closed,
                "latency": o.latency.to_json(),
            })).collect::<Vec<_>>(),
            "orders": {
                "placed": outcomes.placed,
                "confirmed": outcomes.confirmed,
                "cancelled": outcomes.cancelled,
                "pending_after_wait": outcomes.pending_after_wait,
            },
            "hang_up_effects": hang_up_line.map(|(p, o)| json!({"products": p, "orders": o})),
            "server_errors_total": totals.server_error_total,
            "server_errors": totals.server_errors.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
            "client_errors": totals.client_errors.iter().map(|((op, s, c), n)| json!({"op": op.name(), "status": s, "code": c, "count": n})).collect::<Vec<_>>(),
            "maxima": maxima.to_json(),
            "timeline": *lock(&timeline),
            "audit": checks.iter().map(Check::to_json).collect::<Vec<_>>(),
            "passed": passed,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(passed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn out_check(out: Out, check: Option<&Check>) {
    if let Some(c) = check {
        for l in c.lines() {
            out.line(l);
        }
    }
}

async fn admin_token(api: &Api, config: &Config) -> anyhow::Result<String> {
    if let Some(t) = &config.admin_token {
        return Ok(t.clone());
    }
    let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) else {
        bail!("an admin is needed to audit every order: --admin-email and --admin-password, or --admin-token");
    };
    let r = api
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(&json!({"email": email, "password": password})),
            None,
        )
        .await
        .context("admin login")?;
    if r.status != StatusCode::OK {
        bail!("admin login as {email}: {} {}", r.status, r.body);
    }
    r.body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("admin login: no access_token in {}", r.body))
}

struct Users {
    shop: User,
    sellers: Vec<User>,
    customers: Vec<User>,
    hang_up_seller: Option<User>,
    hang_up_customers: Vec<User>,
}

impl Users {
    fn count(&self) -> usize {
        1 + self.sellers.len()
            + self.customers.len()
            + usize::from(self.hang_up_seller.is_some())
            + self.hang_up_customers.len()
    }
}

async fn register_users(api: &Api, run: &str, config: &Config) -> anyhow::Result<Users> {
    let mut wanted: Vec<(String, &str)> = vec![(format!("soak-shop-{run}"), "seller")];
    wanted.extend((0..config.sellers).map(|i| (format!("soak-seller-{run}-{i}"), "seller")));
    wanted.extend((0..config.customers).map(|i| (format!("soak-customer-{run}-{i}"), "customer")));
    if config.hang_up_products > 0 {
        wanted.push((format!("soak-hangup-seller-{run}"), "seller"));
    }
    wanted.extend(
        (0..config.hang_up_checkouts)
            .map(|i| (format!("soak-hangup-customer-{run}-{i}"), "customer")),
    );
    let mut users: Vec<User> = futures::stream::iter(wanted)
        .map(|(name, role)| async move {
            audit::register(api, &format!("{name}@soak.example"), role)
                .await
                .map_err(|e| anyhow!(e))
        })
        .buffered(REGISTER_PARALLELISM)
        .try_collect()
        .await?;
    let hang_up_customers = users.split_off(users.len() - config.hang_up_checkouts);
    let hang_up_seller = if config.hang_up_products > 0 {
        users.pop()
    } else {
        None
    };
    let customers = users.split_off(users.len() - config.customers);
    let sellers = users.split_off(1);
    let shop = users
        .pop()
        .ok_or_else(|| anyhow!("the shop's seller was not registered"))?;
    Ok(Users {
        shop,
        sellers,
        customers,
        hang_up_seller,
        hang_up_customers,
    })
}

/// The SKUs customers buy, each with its `main` stock; (sku, units).
async fn list_sale_products(
    api: &Api,
    run: &str,
    shop: &User,
    config: &Config,
) -> anyhow::Result<Vec<(String, i64)>> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let bodies: Vec<(String, Value)> = (0..config.sale_skus)
        .map(|i| {
            let sku = format!("SOAK-{run}-SALE-{i}");
            let body = traffic::product_body(&sku, &mut rng);
            (sku, body)
        })
        .collect();
    futures::stream::iter(bodies)
        .map(|(sku, body)| async move {
            let r = api
                .call(
                    Method::POST,
                    "/products",
                    Some(&shop.token),
                    Some(&body),
                    None,
                )
                .await
                .with_context(|| format!("create {sku}"))?;
            if r.status != StatusCode::CREATED {
                bail!("create {sku}: {} {}", r.status, r.body);
            }
            let r = api
                .call(
                    Method::PUT,
                    &format!("/inventory/{sku}"),
                    Some(&shop.token),
                    Some(&json!({"quantity": config.sale_stock})),
                    None,
                )
                .await
                .with_context(|| format!("stock {sku}"))?;
            if r.status != StatusCode::OK {
                bail!("stock {sku}: {} {}", r.status, r.body);
            }
            Ok((sku, config.sale_stock))
        })
        .buffered(REGISTER_PARALLELISM)
        .try_collect()
        .await
}

async fn report_loop(
    shared: Arc<Shared>,
    urls: Vec<String>,
    every: Duration,
    started: Instant,
    maxima: Arc<Mutex<Maxima>>,
    timeline: Arc<Mutex<Vec<Value>>>,
    out: Out,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (line, json) = report_line(&shared, &urls, started, &maxima).await;
        out.line(line);
        lock(&timeline).push(json);
    }
}

/// The line of one interval: requests/s and p99 per op, 5xx so far, gauges.
async fn report_line(
    shared: &Shared,
    urls: &[String],
    started: Instant,
    maxima: &Mutex<Maxima>,
) -> (String, Value) {
    let interval = shared.http.rec.interval();
    let gauges: Gauges = metrics::scrape(shared.http.api.client(), urls).await;
    lock(maxima).update(&gauges);
    let total: f64 = interval.ops.iter().map(|(_, r, _)| r).sum();
    let ops: Vec<String> = interval
        .ops
        .iter()
        .map(|(op, per_sec, p99)| match (op.hangs_up(), p99) {
            (false, Some(us)) => format!("{} {per_sec:.0}/s p99 {}", op.name(), ms(*us)),
            _ => format!("{} {per_sec:.0}/s", op.name()),
        })
        .collect();
    let at = started.elapsed().as_secs_f64();
    let line = format!(
        "[{at:>6.0}s] {total:.0} req/s | {} | 5xx {} (+{}) | no answer {} (+{}) | {}",
        ops.join(", "),
        interval.server_errors_total,
        interval.server_errors_in_interval,
        interval.no_answer_total,
        interval.no_answer_in_interval,
        gauges.describe()
    );
    let json = json!({
        "at_secs": at,
        "interval_secs": interval.elapsed.as_secs_f64(),
        "requests_per_sec": total,
        "ops": interval.ops.iter().map(|(op, r, p99)| json!({
            "op": op.name(),
            "per_sec": r,
            "p99_ms": p99.map(|us| us as f64 / 1000.0),
        })).collect::<Vec<_>>(),
        "server_errors_total": interval.server_errors_total,
        "no_answer_total": interval.no_answer_total,
        "gauges": gauges.to_json(),
    });
    (line, json)
}

fn ms(us: u64) -> String {
    if us >= 100_000 {
        format!("{:.0}ms", us as f64 / 1000.0)
    } else {
        format!("{:.1}ms", us as f64 / 1000.0)
    }
}
