//! Test harness shared by the black-box suites.
//!
//! [`TestApp::spawn`] starts the real server on a free port with a fresh data
//! dir, exactly as `mercato serve` does. With `MERCATO_TEST_BASE_URL` set, the
//! same tests run against a server that is already running instead (another
//! mode, another machine).

#![allow(dead_code)]

use mercato::{Application, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: Option<tempfile::TempDir>,
    /// The in-process application's contexts (None against an external server).
    pub contexts: Option<mercato::app::Contexts>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _streams: Option<StreamCleanup>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a throw-away server: port 0, its own data dir, cheap password hashing.
pub fn test_settings(data_dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    // argon2id all the same, at a cost that keeps hundreds of sign-ups fast.
    s.auth.password_memory_kib = 1024;
    s.auth.password_iterations = 1;
    // Hundreds of requests a second from one address are what tests do.
    s.http.rate_limit_per_second = 0;
    // A disabled account's tokens are refused within this.
    s.auth.access_cache_ms = 300;
    // Renewals and their retries within a test's patience.
    s.subscriptions.poll_ms = 100;
    s.subscriptions.retry_backoff_ms = 200;
    s
}

/// Whether the suite runs against an external server (`MERCATO_TEST_BASE_URL`):
/// what only an in-process server shows (its bus, its metrics, its
/// internal endpoints) is then not checked.
pub fn external() -> bool {
    std::env::var("MERCATO_TEST_BASE_URL").is_ok()
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A value no other test in any process will pick.
pub fn unique(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", uuid::Uuid::now_v7().simple())
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    /// The stable error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub token: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        if let Ok(base) = std::env::var("MERCATO_TEST_BASE_URL") {
            return TestApp {
                base: base.trim_end_matches('/').to_owned(),
                client,
                data_dir: None,
                contexts: None,
                _streams: None,
                shutdown: None,
                server: None,
            };
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = test_settings(dir.path());
        // `MERCATO_TEST_BUS=jetstream` runs the suite on NATS JetStream, each
        // app under its own subject prefix, its streams deleted afterwards.
        let streams = if std::env::var("MERCATO_TEST_BUS").is_ok_and(|b| b == "jetstream") {
            let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
            settings.bus.nats_url = Some(
                std::env::var("MERCATO_TEST_NATS_URL")
                    .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            );
            settings.bus.prefix = prefix.clone();
            Some(StreamCleanup {
                url: settings.bus.nats_url.clone().unwrap_or_default(),
                prefix,
            })
        } else {
            None
        };
        configure(&mut settings);
        let app = Application::build(settings)
            .await
            .expect("application builds");
        let addr = app.local_addr();
        let contexts = app.contexts.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        TestApp {
            base: format!("http://{addr}"),
            client,
            data_dir: Some(dir),
            contexts: Some(contexts),
            _streams: streams,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
        self.data_dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("/api/")
            || !path.starts_with('/')
            || path.starts_with("/healthz")
            || path.starts_with("/readyz")
            || path.starts_with("/metrics")
            || path.starts_with("/openapi")
            || path.starts_with("/docs")
        {
            format!("{}{}", self.base, path)
        } else {
            format!("{}/api/v1{}", self.base, path)
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None, &[]).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::PATCH, path, token, Some(body), &[])
            .await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::PUT, path, token, Some(body), &[])
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::DELETE, path, token, None, &[]).await
    }

    /// Registers a new user of `role` and returns its id and token.
    pub async fn register(&self, role: &str) -> User {
        let email = format!("{}@example.com", unique(role));
        let r = self
            .post("/auth/register", None, json!({"email": email, "password": "correct horse battery", "name": "Test User", "role": role}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "register: {:?}", r.body);
        User {
            id: r.body["user"]["id"].as_str().expect("user id").to_owned(),
            email,
            token: r.body["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// An admin: created in process, or signed in with `MERCATO_TEST_ADMIN_EMAIL`
    /// and `MERCATO_TEST_ADMIN_PASSWORD` against an external server.
    pub async fn admin(&self) -> User {
        let password = "admin password for tests";
        let email = match &self.contexts {
            Some(ctx) => {
                let email = format!("{}@example.com", unique("admin"));
                ctx.identity
                    .register(mercato_identity::service::Registration {
                        email: email.clone(),
                        password: password.into(),
                        name: "Admin".into(),
                        role: mercato_kernel::auth::Role::Admin,
                    })
                    .await
                    .expect("admin created");
                email
            }
            None => std::env::var("MERCATO_TEST_ADMIN_EMAIL")
                .expect("MERCATO_TEST_ADMIN_EMAIL for an external server"),
        };
        let password =
            std::env::var("MERCATO_TEST_ADMIN_PASSWORD").unwrap_or_else(|_| password.into());
        let r = self
            .post(
                "/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "admin login: {:?}", r.body);
        User {
            id: r.body["user"]["id"].as_str().expect("id").to_owned(),
            email,
            token: r.body["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// Creates a product with one variant per `(sku, amount)` and returns its JSON.
    pub async fn create_product(
        &self,
        seller: &User,
        category: &str,
        variants: &[(&str, i64)],
    ) -> Value {
        let variants: Vec<Value> = variants
            .iter()
            .map(
                |(sku, amount)| json!({"sku": sku, "price": {"amount": amount, "currency": "EUR"}}),
            )
            .collect();
        let r = self
            .post(
                "/products",
                Some(&seller.token),
                json!({"title": format!("Product {}", variants.len()), "description": "For tests", "category": category, "variants": variants}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create product: {:?}",
            r.body
        );
        r.body
    }

    /// Polls `check` until it returns `Some`, for eventually consistent reads.
    pub async fn eventually<T, F, Fut>(&self, what: &str, within: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not happen within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Deletes the JetStream streams of a test's prefix when dropped, from a
/// thread of its own so that it also runs when the test panics.
pub struct StreamCleanup {
    url: String,
    prefix: String,
}

impl Drop for StreamCleanup {
    fn drop(&mut self) {
        delete_streams(&self.url, &self.prefix);
    }
}

/// Deletes every JetStream stream of `prefix`, from a thread of its own so
/// that it can run in `Drop`, also while a test panics.
pub fn delete_streams(url: &str, prefix: &str) {
    let mut config = mercato_kernel::bus::jetstream::JetStreamConfig::new(url);
    config.prefix = prefix.to_owned();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            if let Ok(bus) = mercato_kernel::bus::jetstream::JetStreamBus::connect(config).await {
                let _ = bus.delete_streams().await;
            }
        });
    })
    .join();
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
