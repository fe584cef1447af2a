//! The client traits over HTTP (distributed mode): each call goes to the
//! owning context's internal endpoints (see [`crate::internal`]).
//!
//! A [`ServiceClient`] talks to one target context, served by one or more
//! replicas. Calls go round-robin over the replicas and skip a replica whose
//! circuit breaker is open; each attempt has its own time-out.
//!
//! Retries: every internal operation is idempotent by its key (the SKU, the
//! reservation id, the order id, the customer and order ids), so repeating
//! one whose outcome is unknown cannot do it twice. The client therefore
//! retries, with jittered exponential backoff and on the next replica,
//! whenever no definite answer came back: a connection error, a time-out or
//! a 5xx answer. A 4xx answer is definite and never retried.
//!
//! Errors: a time-out of the last attempt is [`ClientError::Timeout`] (the
//! outcome is unknown); no answer, a 5xx, a rejected service token or an
//! unreadable answer is [`ClientError::Unavailable`]; any other error answer
//! is [`ClientError::Failed`], as the in-process call would have failed.

use crate::clients::{
    Access, CartClient, CartContents, CatalogClient, ChargeOutcome, ClientError, ClientResult,
    IdentityClient, InventoryClient, OrdersClient, PaymentsClient, PricingClient,
    RecommendationsClient, RedeemOutcome, RefundOutcome, ReserveOutcome, ReviewsClient,
};
use crate::internal::{
    ChargeRequest, ChargeResponse, CheckedOutRequest, RedeemRequest, RedeemResponse,
    RefundPartRequest, RefundResponse, ReserveRequest, ReserveResponse, RestockPartRequest,
    StockRequest,
};
use crate::types::{
    PlaceOrder, PlacedOrder, Product, ProductReviews, Quote, QuoteRequest, Recommendation,
    ShippingAddress, SkuInfo, SkuQuantity, SkuStock,
};
use async_trait::async_trait;
use mercato_kernel::internal::REQUEST_ID_HEADER;
use mercato_kernel::resilience::{backoff, CircuitBreaker};
use mercato_kernel::Money;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// How a [`ServiceClient`] calls its target.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Time-out of one attempt, answer body included.
    pub timeout: Duration,
    /// Time-out of establishing a connection (a dead replica fails this fast).
    pub connect_timeout: Duration,
    /// Attempts per call, the first included (at least 1).
    pub attempts: u32,
    /// Base and ceiling of the pause between attempts.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Consecutive failures that open a replica's circuit, and how long it
    /// stays open before one trial call.
    pub breaker_threshold: u32,
    pub breaker_cool_down: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            attempts: 3,
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(500),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(5),
        }
    }
}

/// Why a [`ServiceClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServiceClientError {
    #[error("{0}: no replica URL given")]
    NoReplicas(&'static str),
    #[error("{0}: invalid replica URL {1:?}")]
    BadUrl(&'static str, String),
    #[error("{0}: building the HTTP client failed: {1}")]
    Http(&'static str, String),
}

struct Replica {
    base: Url,
    breaker: CircuitBreaker,
}

/// Calls to one target context over its replicas.
pub struct ServiceClient {
    name: &'static str,
    http: reqwest::Client,
    replicas: Vec<Replica>,
    next: AtomicUsize,
    token: String,
    config: ServiceConfig,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("name", &self.name)
            .field(
                "replicas",
                &self
                    .replicas
                    .iter()
                    .map(|r| r.base.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What came back from a replica that answered definitely (not a 5xx).
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

/// The error shape every endpoint answers with.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl Answer {
    /// The code and message of an error answer.
    fn error(&self) -> (String, String) {
        match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => (
                String::new(),
                String::from_utf8_lossy(&self.body).into_owned(),
            ),
        }
    }
}

impl ServiceClient {
    /// `name` is the target context (it names errors and the breaker metric);
    /// `bases` are its replicas' base URLs (`http://host:port`); `token` the
    /// shared service token.
    pub fn new(
        name: &'static str,
        bases: &[String],
        token: &str,
        config: ServiceConfig,
    ) -> Result<Self, ServiceClientError> {
        if bases.is_empty() {
            return Err(ServiceClientError::NoReplicas(name));
        }
        let mut replicas = Vec::with_capacity(bases.len());
        for base in bases {
            let url = Url::parse(base.trim_end_matches('/'))
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
                .ok_or_else(|| ServiceClientError::BadUrl(name, base.clone()))?;
            replicas.push(Replica {
                base: url,
                breaker: CircuitBreaker::new(
                    name,
                    config.breaker_threshold,
                    config.breaker_cool_down,
                ),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .build()
            .map_err(|e| ServiceClientError::Http(name, e.to_string()))?;
        Ok(Self {
            name,
            http,
            replicas,
            next: AtomicUsize::new(0),
            token: token.to_owned(),
            config,
        })
    }

    /// The next replica in turn whose circuit lets a call through.
    fn pick(&self) -> Option<&Replica> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.replicas.len())
            .map(|i| &self.replicas[(start + i) % self.replicas.len()])
            .find(|r| r.breaker.allow())
    }

    fn url(&self, replica: &Replica, segments: &[&str]) -> ClientResult<Url> {
        let mut url = replica.base.clone();
        url.path_segments_mut()
            .map_err(|_| ClientError::Unavailable(self.name, "invalid replica URL".into()))?
            .pop_if_empty()
            .extend(["internal", "v1"])
            .extend(segments);
        Ok(url)
    }

    /// One call with retries; `segments` follow `/internal/v1`.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Vec<u8>>,
    ) -> ClientResult<Answer> {
        // An id that is no valid header value is not worth failing the call for.
        let correlation = mercato_kernel::event::current_correlation()
            .correlation_id
            .and_then(|id| reqwest::header::HeaderValue::from_str(&id).ok());
        let attempts = self.config.attempts.max(1);
        let mut last = ClientError::Unavailable(self.name, "no attempt was made".into());
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(
                    attempt - 1,
                    self.config.backoff_base,
                    self.config.backoff_cap,
                ))
                .await;
            }
            let Some(replica) = self.pick() else {
                // Every circuit is open: failing fast is the point of them. When an
                // earlier attempt was made, its error says more (a time-out leaves
                // the outcome unknown, which the caller must know).
                if attempt == 0 {
                    last = ClientError::Unavailable(
                        self.name,
                        "every replica's circuit is open".into(),
                    );
                }
                return Err(last);
            };
            let mut req = self
                .http
                .request(method.clone(), self.url(replica, segments)?)
                .bearer_auth(&self.token);
            if let Some(id) = &correlation {
                req = req.header(REQUEST_ID_HEADER, id.clone());
            }
            if let Some(body) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let sent = async {
                let resp = req.send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>(Answer {
                    status,
                    body: body.to_vec(),
                })
            }
            .await;
            match sent {
                Ok(answer) if answer.status.is_server_error() => {
                    replica.breaker.record_failure();
                    let (code, message) = answer.error();
                    last = if answer.status == StatusCode::GATEWAY_TIMEOUT {
                        ClientError::Timeout(self.name)
                    } else {
                        ClientError::Unavailable(
                            self.name,
                            format!("{} {code} {message}", answer.status.as_u16()),
                        )
                    };
                }
                Ok(answer) => {
                    replica.breaker.record_success();
                    return Ok(answer);
                }
                Err(e) => {
                    replica.breaker.record_failure();
                    last = if e.is_timeout() {
                        ClientError::Timeout(self.name)
                    } else {
                        ClientError::Unavailable(self.name, without_url(e))
                    };
                }
            }
            tracing::debug!(target_service = self.name, replica = %replica.base, attempt, error = %last, "internal call attempt failed");
        }
        Err(last)
    }

    /// Turns a definite non-success answer into the error the in-process call gives.
    fn refusal(&self, answer: &Answer) -> ClientError {
        let (code, message) = answer.error();
        match answer.status {
            // A deployment problem, not the callee's verdict on the operation:
            // callers must keep retrying rather than give up on the flow.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                ClientError::Unavailable(self.name, "the service token was rejected".into())
            }
            StatusCode::NOT_FOUND if code == "route_not_found" => ClientError::Unavailable(
                self.name,
                "the target does not serve the internal endpoints".into(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY if crate::internal::is_verdict(&code) => {
                ClientError::Rejected(self.name, code, message)
            }
            status => {
                ClientError::Failed(self.name, format!("{} {code} {message}", status.as_u16()))
            }
        }
    }

    fn decode<T: DeserializeOwned>(&self, answer: &Answer) -> ClientResult<T> {
        if !answer.status.is_success() {
            return Err(self.refusal(answer));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| ClientError::Unavailable(self.name, format!("unreadable answer: {e}")))
    }

    fn done(&self, answer: &Answer) -> ClientResult<()> {
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(self.refusal(answer))
        }
    }
}

/// reqwest's errors name the URL; the replica is already in the logs.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "call failed"
    };
    match std::error::Error::source(&e) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}

fn json_body<T: Serialize>(name: &'static str, body: &T) -> ClientResult<Option<Vec<u8>>> {
    serde_json::to_vec(body)
        .map(Some)
        .map_err(|e| ClientError::Failed(name, format!("encoding the request: {e}")))
}

/// [`CatalogClient`] over HTTP.
#[derive(Debug)]
pub struct HttpCatalogClient(pub ServiceClient);

#[async_trait]
impl CatalogClient for HttpCatalogClient {
    async fn sku(&self, sku: &str) -> ClientResult<Option<SkuInfo>> {
        let answer = self.0.call(Method::GET, &["skus", sku], None).await?;
        if answer.status == StatusCode::NOT_FOUND && answer.error().0 == "not_found" {
            return Ok(None);
        }
        self.0.decode(&answer).map(Some)
    }

    async fn product(&self, id: Uuid) -> ClientResult<Option<Product>> {
        let id = id.to_string();
        let answer = self.0.call(Method::GET, &["products", &id], None).await?;
        if answer.status == StatusCode::NOT_FOUND && answer.error().0 == "not_found" {
            return Ok(None);
        }
        self.0.decode(&answer).map(Some)
    }
}

/// [`ReviewsClient`] over HTTP.
#[derive(Debug)]
pub struct HttpReviewsClient(pub ServiceClient);

#[async_trait]
impl ReviewsClient for HttpReviewsClient {
    async fn product_reviews(&self, product_id: Uuid, limit: u32) -> ClientResult<ProductReviews> {
        let (id, limit) = (product_id.to_string(), limit.to_string());
        let answer = self
            .0
            .call(Method::GET, &["products", &id, "reviews", &limit], None)
            .await?;
        self.0.decode(&answer)
    }
}

/// [`RecommendationsClient`] over HTTP.
#[derive(Debug)]
pub struct HttpRecommendationsClient(pub ServiceClient);

#[async_trait]
impl RecommendationsClient for HttpRecommendationsClient {
    async fn for_product(&self, product_id: Uuid, limit: u32) -> ClientResult<Vec<Recommendation>> {
        let (id, limit) = (product_id.to_string(), limit.to_string());
        let answer = self
            .0
            .call(
                Method::GET,
                &["products", &id, "recommendations", &limit],
                None,
            )
            .await?;
        self.0.decode(&answer)
    }
}

/// [`IdentityClient`] over HTTP.
#[derive(Debug)]
pub struct HttpIdentityClient(pub ServiceClient);

#[async_trait]
impl IdentityClient for HttpIdentityClient {
    async fn address(
        &self,
        user_id: Uuid,
        id: Option<Uuid>,
    ) -> ClientResult<Option<ShippingAddress>> {
        let user = user_id.to_string();
        let which = id.map_or_else(|| "default".to_owned(), |i| i.to_string());
        let answer = self
            .0
            .call(Method::GET, &["users", &user, "addresses", &which], None)
            .await?;
        if answer.status == StatusCode::NOT_FOUND && answer.error().0 == "not_found" {
            return Ok(None);
        }
        self.0.decode(&answer).map(Some)
    }

    async fn access(&self, user_id: Uuid) -> ClientResult<Option<Access>> {
        let user = user_id.to_string();
        let answer = self
            .0
            .call(Method::GET, &["users", &user, "access"], None)
            .await?;
        if answer.status == StatusCode::NOT_FOUND && answer.error().0 == "not_found" {
            return Ok(None);
        }
        self.0.decode(&answer).map(Some)
    }
}

/// [`InventoryClient`] over HTTP.
#[derive(Debug)]
pub struct HttpInventoryClient(pub ServiceClient);

#[async_trait]
impl InventoryClient for HttpInventoryClient {
    async fn reserve(
        &self,
        reservation_id: Uuid,
        lines: &[SkuQuantity],
        ttl: Duration,
    ) -> ClientResult<ReserveOutcome> {
        let id = reservation_id.to_string();
        let body = ReserveRequest {
            lines: lines.to_vec(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        };
        let answer = self
            .0
            .call(
                Method::POST,
                &["reservations", &id],
                json_body(self.0.name, &body)?,
            )
            .await?;
        self.0.decode::<ReserveResponse>(&answer).map(Into::into)
    }

    async fn release(&self, reservation_id: Uuid) -> ClientResult<()> {
        let id = reservation_id.to_string();
        let answer = self
            .0
            .call(Method::POST, &["reservations", &id, "release"], None)
            .await?;
        self.0.done(&answer)
    }

    async fn commit(&self, reservation_id: Uuid) -> ClientResult<()> {
        let id = reservation_id.to_string();
        let answer = self
            .0
            .call(Method::POST, &["reservations", &id, "commit"], None)
            .await?;
        self.0.done(&answer)
    }

    async fn restock(&self, reservation_id: Uuid) -> ClientResult<()> {
        let id = reservation_id.to_string();
        let answer = self
            .0
            .call(Method::POST, &["reservations", &id, "restock"], None)
            .await?;
        self.0.done(&answer)
    }

    async fn restock_part(
        &self,
        reservation_id: Uuid,
        restock_id: Uuid,
        lines: &[SkuQuantity],
        warehouse: Option<&str>,
    ) -> ClientResult<()> {
        let (id, part) = (reservation_id.to_string(), restock_id.to_string());
        let body = RestockPartRequest {
            lines: lines.to_vec(),
            warehouse: warehouse.map(str::to_owned),
        };
        let answer = self
            .0
            .call(
                Method::POST,
                &["reservations", &id, "restocks", &part],
                json_body(self.0.name, &body)?,
            )
            .await?;
        self.0.done(&answer)
    }

    async fn stock(&self, skus: &[String]) -> ClientResult<Vec<SkuStock>> {
        let body = StockRequest {
            skus: skus.to_vec(),
        };
        let answer = self
            .0
            .call(Method::POST, &["stock"], json_body(self.0.name, &body)?)
            .await?;
        self.0.decode(&answer)
    }
}

/// [`PaymentsClient`] over HTTP.
#[derive(Debug)]
pub struct HttpPaymentsClient(pub ServiceClient);

#[async_trait]
impl PaymentsClient for HttpPaymentsClient {
    async fn charge(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        amount: &Money,
        token: &str,
    ) -> ClientResult<ChargeOutcome> {
        let id = order_id.to_string();
        let body = ChargeRequest {
            customer_id,
            amount: amount.clone(),
            token: token.to_owned(),
        };
        let answer = self
            .0
            .call(
                Method::POST,
                &["payments", &id, "charge"],
                json_body(self.0.name, &body)?,
            )
            .await?;
        self.0.decode::<ChargeResponse>(&answer).map(Into::into)
    }

    async fn refund(&self, order_id: Uuid) -> ClientResult<RefundOutcome> {
        let id = order_id.to_string();
        let answer = self
            .0
            .call(Method::POST, &["payments", &id, "refund"], None)
            .await?;
        self.0.decode::<RefundResponse>(&answer).map(Into::into)
    }

    async fn refund_part(
        &self,
        order_id: Uuid,
        refund_id: Uuid,
        amount: &Money,
    ) -> ClientResult<()> {
        let (id, part) = (order_id.to_string(), refund_id.to_string());
        let body = RefundPartRequest {
            amount: amount.clone(),
        };
        let answer = self
            .0
            .call(
                Method::POST,
                &["payments", &id, "refunds", &part],
                json_body(self.0.name, &body)?,
            )
            .await?;
        self.0.done(&answer)
    }
}

/// [`CartClient`] over HTTP.
#[derive(Debug)]
pub struct HttpCartClient(pub ServiceClient);

#[async_trait]
impl CartClient for HttpCartClient {
    async fn contents(&self, customer_id: Uuid) -> ClientResult<CartContents> {
        let id = customer_id.to_string();
        let answer = self
            .0
            .call(Method::GET, &["carts", &id, "contents"], None)
            .await?;
        self.0.decode(&answer)
    }

    async fn checked_out(
        &self,
        customer_id: Uuid,
        order_id: Uuid,
        bought: &[SkuQuantity],
    ) -> ClientResult<()> {
        let id = customer_id.to_string();
        let body = CheckedOutRequest {
            order_id,
            bought: bought.to_vec(),
        };
        let answer = self
            .0
            .call(
                Method::POST,
                &["carts", &id, "checked-out"],
                json_body(self.0.name, &body)?,
            )
            .await?;
        self.0.done(&answer)
    }
}

/// [`PricingClient`] over HTTP.
#[derive(Debug)]
pub struct HttpPricingClient(pub ServiceClient);

#[async_trait]
impl PricingClient for HttpPricingClient {
    async fn quote(&self, request: &QuoteRequest) -> ClientResult<Quote> {
        let answer = self
            .0
            .call(
                Method::POST,
                &["pricing", "quote"],
                json_body(self.0.name, request)?,
            )
            .await?;
        self.0.decode(&answer)
    }

    async fn redeem(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        promotion_id: Uuid,
    ) -> ClientResult<RedeemOutcome> {
        let id = order_id.to_string();
        let body = RedeemRequest {
            customer_id,
            promotion_id,
        };
        let answer = self
            .0
            .call(
                Method::POST,
                &["pricing", "redemptions", &id],
                json_body(self.0.name, &body)?,
            )
            .await?;
        self.0.decode::<RedeemResponse>(&answer).map(Into::into)
    }

    async fn release(&self, order_id: Uuid) -> ClientResult<()> {
        let id = order_id.to_string();
        let answer = self
            .0
            .call(
                Method::POST,
                &["pricing", "redemptions", &id, "release"],
                None,
            )
            .await?;
        self.0.done(&answer)
    }
}

/// [`OrdersClient`] over HTTP.
#[derive(Debug)]
pub struct HttpOrdersClient(pub ServiceClient);

#[async_trait]
impl OrdersClient for HttpOrdersClient {
    async fn place(&self, request: &PlaceOrder) -> ClientResult<PlacedOrder> {
        let id = request.order_id.to_string();
        let answer = self
            .0
            .call(
                Method::PUT,
                &["orders", &id],
                json_body(self.0.name, request)?,
            )
            .await?;
        self.0.decode(&answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_urls_are_checked_and_paths_escaped() {
        assert!(matches!(
            ServiceClient::new("catalog", &[], "t", ServiceConfig::default()),
            Err(ServiceClientError::NoReplicas(_))
        ));
        assert!(matches!(
            ServiceClient::new(
                "catalog",
                &["mailto:x@y".into()],
                "t",
                ServiceConfig::default()
            ),
            Err(ServiceClientError::BadUrl(..))
        ));
        let c = ServiceClient::new(
            "catalog",
            &["http://127.0.0.1:9/".into()],
            "t",
            ServiceConfig::default(),
        )
        .expect("client");
        let url = c.url(&c.replicas[0], &["skus", "a/b c"]).expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/internal/v1/skus/a%2Fb%20c"
        );
    }

    #[test]
    fn round_robin_skips_open_circuits() {
        let config = ServiceConfig {
            breaker_threshold: 1,
            breaker_cool_down: Duration::from_secs(60),
            ..Default::default()
        };
        let c = ServiceClient::new(
            "inventory",
            &["http://10.0.0.1:1".into(), "http://10.0.0.2:1".into()],
            "t",
            config,
        )
        .expect("client");
        let first = c.pick().expect("a replica").base.clone();
        let second = c.pick().expect("a replica").base.clone();
        assert_ne!(first, second, "consecutive calls go to different replicas");
        c.replicas[0].breaker.record_failure();
        for _ in 0..4 {
            assert_eq!(
                c.pick().expect("a replica").base,
                c.replicas[1].base,
                "an open circuit is skipped"
            );
        }
        c.replicas[1].breaker.record_failure();
        assert!(c.pick().is_none(), "no replica when every circuit is open");
    }
}
