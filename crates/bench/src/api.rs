//! The slice of Mercato's public API the benchmark uses, and the setup of its
//! data set through it.

use anyhow::{anyhow, bail, Context};
use futures::{StreamExt, TryStreamExt};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Any single request gives up after this long, so every loop stays bounded
/// even when the server stops answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Units put on hand for every SKU: far more than a run can sell.
pub const STOCK_PER_SKU: i64 = 1_000_000;

const PASSWORD: &str = "bench-password-123";
const SETUP_PARALLELISM: usize = 8;
/// Registration hashes a password (argon2id); more at once only queues on
/// the server's cores.
const REGISTER_PARALLELISM: usize = 4;

#[derive(Clone)]
pub struct Api {
    client: Client,
    base: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Api {
    pub fn new(base_url: &str, max_connections: usize) -> anyhow::Result<Api> {
        let client = Client::builder()
            .pool_max_idle_per_host(max_connections)
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A request to `/api/v1{path}` whose JSON answer is read whole.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> reqwest::Result<Reply> {
        let mut req = self
            .client
            .request(method, self.url(&format!("/api/v1{path}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    async fn expect(
        &self,
        what: &str,
        expected: StatusCode,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<Value> {
        let r = self
            .call(method, path, token, Some(&body), None)
            .await
            .with_context(|| format!("{what}: request failed"))?;
        if r.status != expected {
            bail!("{what}: expected {expected}, got {}: {}", r.status, r.body);
        }
        Ok(r.body)
    }

    /// Waits up to `within` for `GET /readyz` to answer 200.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let outcome = self
                .client
                .get(self.url("/readyz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            let last = match outcome {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("status {}", r.status()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!("{} is not ready ({last})", self.url("/readyz"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers a user and returns its access token.
    async fn register(&self, email: &str, role: &str) -> anyhow::Result<String> {
        let body = self
            .expect(
                "register",
                StatusCode::CREATED,
                Method::POST,
                "/auth/register",
                None,
                json!({"email": email, "password": PASSWORD, "name": "Bench User", "role": role}),
            )
            .await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("register: no access_token in {body}"))
    }
}

/// What the phases run against.
pub struct DataSet {
    /// The seller of every product.
    pub seller_token: String,
    pub product_ids: Vec<String>,
    pub skus: Vec<String>,
    pub customer_tokens: Vec<String>,
}

/// A seller with `products` products of one variant each, every SKU stocked
/// with [`STOCK_PER_SKU`], and `customers` customers. `run` keeps emails and
/// SKUs unique when several runs share one server.
pub async fn set_up(
    api: &Api,
    run: &str,
    products: usize,
    customers: usize,
) -> anyhow::Result<DataSet> {
    let seller = api
        .register(&format!("bench-seller-{run}@bench.example"), "seller")
        .await?;
    let created: Vec<(String, String)> = futures::stream::iter(0..products)
        .map(|i| {
            let seller = seller.as_str();
            async move {
                let sku = format!("BENCH-{run}-{i}");
                let product = api
                    .expect(
                        "create product",
                        StatusCode::CREATED,
                        Method::POST,
                        "/products",
                        Some(seller),
                        json!({
                            "title": format!("Bench product {i}"),
                            "description": "A product made by mercato-bench.",
                            "category": "bench",
                            "variants": [{"sku": sku, "price": {"amount": 1000 + i as i64, "currency": "EUR"}}],
                        }),
                    )
                    .await?;
                let id = product["id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("create product: no id in {product}"))?
                    .to_owned();
                api.expect(
                    "set stock",
                    StatusCode::OK,
                    Method::PUT,
                    &format!("/inventory/{sku}"),
                    Some(seller),
                    json!({"quantity": STOCK_PER_SKU}),
                )
                .await?;
                Ok::<_, anyhow::Error>((id, sku))
            }
        })
        .buffer_unordered(SETUP_PARALLELISM)
        .try_collect()
        .await?;
    let customer_tokens: Vec<String> = futures::stream::iter(0..customers)
        .map(|i| async move {
            api.register(
                &format!("bench-customer-{run}-{i}@bench.example"),
                "customer",
            )
            .await
        })
        .buffer_unordered(REGISTER_PARALLELISM)
        .try_collect()
        .await?;
    let (product_ids, skus) = created.into_iter().unzip();
    Ok(DataSet {
        seller_token: seller,
        product_ids,
        skus,
        customer_tokens,
    })
}

/// Words the search catalog's titles are made of, and what queries ask for.
pub const ADJECTIVES: [&str; 16] = [
    "red", "blue", "green", "black", "white", "small", "large", "classic", "modern", "rustic",
    "soft", "sturdy", "light", "warm", "bright", "quiet",
];
pub const NOUNS: [&str; 24] = [
    "mug", "teapot", "lamp", "chair", "table", "blanket", "pillow", "kettle", "bowl", "plate",
    "vase", "clock", "shelf", "basket", "candle", "rug", "mirror", "stool", "jar", "tray", "towel",
    "apron", "knife", "spoon",
];
pub const MATERIALS: [&str; 8] = [
    "ceramic", "oak", "steel", "glass", "linen", "wool", "bamboo", "copper",
];
pub const CATEGORIES: [&str; 12] = [
    "kitchen",
    "living",
    "bedroom",
    "bath",
    "garden",
    "office",
    "dining",
    "lighting",
    "decor",
    "storage",
    "textiles",
    "tableware",
];
pub const COLORS: [&str; 6] = ["red", "blue", "green", "black", "white", "grey"];

/// Products the search phase runs on: `count` of them with titles, categories,
/// prices and colours drawn from the word lists above (by index, so a run is
/// the same every time), made through the API by their own seller. Returns
/// once search has indexed all of them, or fails after `within`.
pub async fn seed_search_catalog(
    api: &Api,
    run: &str,
    count: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let seller = api
        .register(
            &format!("bench-search-seller-{run}@bench.example"),
            "seller",
        )
        .await?;
    let before = search_total(api).await?;
    futures::stream::iter(0..count)
        .map(|i| {
            let seller = seller.as_str();
            async move {
                let pick = |n: usize, k: usize| (i / k) % n;
                let title = format!(
                    "{} {} {} {i}",
                    ADJECTIVES[pick(ADJECTIVES.len(), 1)],
                    MATERIALS[pick(MATERIALS.len(), 7)],
                    NOUNS[pick(NOUNS.len(), 3)],
                );
                api.expect(
                    "create product",
                    StatusCode::CREATED,
                    Method::POST,
                    "/products",
                    Some(seller),
                    json!({
                        "title": title,
                        "description": "A product of mercato-bench's search catalog.",
                        "category": CATEGORIES[pick(CATEGORIES.len(), 5)],
                        "variants": [{
                            "sku": format!("SEARCH-{run}-{i}"),
                            "price": {"amount": 500 + (i * 37 % 20_000) as i64, "currency": "EUR"},
                            "attributes": {"color": COLORS[pick(COLORS.len(), 11)]},
                        }],
                    }),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(SEED_PARALLELISM)
        .try_collect::<Vec<()>>()
        .await?;
    let want = before + count as u64;
    let deadline = Instant::now() + within;
    loop {
        let total = search_total(api).await?;
        if total >= want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("search indexed {total} of {want} products within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Products made at once while seeding the search catalog.
const SEED_PARALLELISM: usize = 16;

/// How many products search holds.
async fn search_total(api: &Api) -> anyhow::Result<u64> {
    let r = api
        .call(Method::GET, "/search?limit=1", None, None, None)
        .await
        .context("search")?;
    if r.status != StatusCode::OK {
        bail!("search: expected 200, got {}: {}", r.status, r.body);
    }
    r.body["total"]
        .as_u64()
        .ok_or_else(|| anyhow!("search: no total in {}", r.body))
}
