use crate::support::TestApp;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let h = app.get("/healthz", None).await;
    assert_eq!(h.status, StatusCode::OK);
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ready");
    if !crate::support::external() {
        assert!(r.body["checks"]["bus"] == "ok");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = TestApp::spawn().await;
    app.get("/products/00000000-0000-0000-0000-000000000000", None)
        .await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(text.contains("mercato_http_requests_total"), "{text}");
    if !crate::support::external() {
        assert!(text.contains("route=\"/api/v1/products/{id}\""), "{text}");
    }
    assert!(
        text.contains("mercato_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_documents_the_contract_and_docs_render() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/products", "post"),
        ("/api/v1/products", "get"),
        ("/api/v1/products/{id}", "get"),
        ("/api/v1/products/{id}", "patch"),
        ("/api/v1/products/{id}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    let docs = app.client.get(app.url("/docs")).send().await.expect("sent");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.expect("html").contains("openapi"));
}

/// The reference page works offline: everything it loads comes from this
/// server, and its Content-Security-Policy allows nothing from elsewhere.
#[tokio::test]
async fn the_api_reference_loads_nothing_from_another_site() {
    let app = TestApp::spawn().await;
    let docs = app.client.get(app.url("/docs")).send().await.expect("sent");
    assert_eq!(docs.status(), StatusCode::OK);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let html = docs.text().await.expect("html");
    for directive in csp.split(';').map(str::trim) {
        for source in directive.split_whitespace().skip(1) {
            assert!(
                matches!(source, "'self'" | "'none'" | "'unsafe-inline'" | "data:"),
                "{directive} lets the page reach {source}"
            );
        }
    }
    assert!(csp.contains("default-src 'none'"), "{csp}");
    // Every src and href of the page is a path on this server.
    let mut scripts = Vec::new();
    for attr in ["src=\"", "href=\"", "data-url=\""] {
        for (i, _) in html.match_indices(attr) {
            let value: String = html[i + attr.len()..]
                .chars()
                .take_while(|c| *c != '"')
                .collect();
            assert!(
                value.starts_with('/') && !value.starts_with("//"),
                "{attr}{value} leaves the server"
            );
            if attr == "src=\"" {
                scripts.push(value);
            }
        }
    }
    assert!(!scripts.is_empty(), "{html}");
    for path in scripts {
        let js = app.client.get(app.url(&path)).send().await.expect("sent");
        assert_eq!(js.status(), StatusCode::OK, "{path}");
        assert!(js.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/javascript")));
        assert!(js.bytes().await.expect("script").len() > 100_000);
    }
}

/// Headers a security review expects, on JSON answers, errors and pages alike.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    for path in [
        "/products",
        "/nowhere",
        "/healthz",
        "/docs",
        "/openapi.json",
    ] {
        let r = app.client.get(app.url(path)).send().await.expect("sent");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{path}");
        let html = r.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"));
        assert_eq!(
            r.headers().contains_key("content-security-policy"),
            html,
            "{path}: a policy on HTML pages"
        );
    }
}

/// CORS per deployment: listed origins only, with credentials when allowed;
/// credentials are never allowed together with `*`.
#[tokio::test]
async fn cors_origins_are_configured_per_deployment() {
    let app = TestApp::spawn_with(|s| {
        s.http.cors_origins = vec!["https://shop.example".into()];
        s.http.cors_allow_credentials = true;
    })
    .await;
    if app.contexts.is_none() {
        return; // an external server has its own origins
    }
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/cart/items"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://shop.example").await.expect("sent");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let other = preflight("https://evil.example").await.expect("sent");
    assert!(!other.headers().contains_key("access-control-allow-origin"));

    let mut settings = crate::support::test_settings(std::path::Path::new("/nonexistent"));
    settings.http.cors_allow_credentials = true;
    let refused = mercato::Application::build(settings).await;
    let err = refused.err().expect("credentials with * are refused");
    assert!(
        format!("{err:#}").contains("cors_allow_credentials"),
        "{err:#}"
    );
}

#[tokio::test]
async fn request_ids_are_kept_or_made() {
    let app = TestApp::spawn().await;
    let kept = app
        .request(
            reqwest::Method::GET,
            "/healthz",
            None,
            None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(kept.headers["x-request-id"], "abc-123");
    let made = app.get("/healthz", None).await;
    assert!(made.headers.get("x-request-id").is_some());
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_huge_bodies_get_json_errors() {
    let app = TestApp::spawn().await;
    let missing = app.get("/nowhere", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "route_not_found");
    let wrong = app
        .request(
            reqwest::Method::PUT,
            "/auth/login",
            None,
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.code(), "method_not_allowed");
    let huge = "x".repeat(2 * 1024 * 1024);
    let big = app
        .post(
            "/auth/register",
            None,
            json!({"email": "a@b.io", "password": huge, "name": "n"}),
        )
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(big.code(), "payload_too_large");
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/products"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("sent");
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn clients_over_their_rate_get_429_with_retry_after() {
    let app = TestApp::spawn_with(|s| {
        s.http.rate_limit_per_second = 1;
        s.http.rate_limit_burst = 3;
    })
    .await;
    if app.contexts.is_none() {
        return; // an external server has its own limits
    }
    for _ in 0..3 {
        assert_eq!(app.get("/products", None).await.status, StatusCode::OK);
    }
    let limited = app.get("/products", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Operations endpoints are not limited.
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.get("/products", None).await.status,
        StatusCode::OK,
        "the bucket refills"
    );
}

#[tokio::test]
async fn admins_see_dead_letters_and_replay_them_once_fixed() {
    let app = TestApp::spawn().await;
    let Some(ctx) = app.contexts.clone() else {
        return; // needs the in-process bus to plant a poison event
    };
    let admin = app.admin().await;
    let customer = app.register("customer").await;
    assert_eq!(
        app.get("/admin/dead-letters", Some(&customer.token))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/admin/dead-letters", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // An order of a customer notifications has never heard of cannot be told.
    let stranger = uuid::Uuid::now_v7();
    let eur = mercato_kernel::Currency::parse("EUR").expect("currency");
    let confirmed = mercato_kernel::Envelope::new(
        "orders",
        "o-1",
        &mercato_contracts::events::OrderConfirmed {
            order_id: uuid::Uuid::now_v7(),
            customer_id: stranger,
            items: vec![],
            total: mercato_kernel::Money::new(100, eur),
        },
    )
    .expect("event");
    ctx.bus
        .publish(std::slice::from_ref(&confirmed))
        .await
        .expect("published");
    let parked = app
        .eventually(
            "the event to be parked",
            std::time::Duration::from_secs(10),
            || async {
                let r = app.get("/admin/dead-letters", Some(&admin.token)).await;
                r.body["items"].as_array().and_then(|items| {
                    items
                        .iter()
                        .find(|d| d["event_id"] == confirmed.id.to_string())
                        .cloned()
                })
            },
        )
        .await;
    assert_eq!(parked["event_type"], "order.confirmed");
    assert_eq!(parked["consumer"], "notifications");
    let seq = parked["seq"].as_i64().expect("seq");

    // The cause is fixed: the customer becomes known. Then the replay succeeds for good.
    let registered = mercato_kernel::Envelope::new(
        "identity",
        stranger.to_string(),
        &mercato_contracts::events::UserRegistered {
            user_id: stranger,
            email: "stranger@example.com".into(),
            name: "Stranger".into(),
            role: mercato_kernel::auth::Role::Customer,
        },
    )
    .expect("event");
    ctx.bus.publish(&[registered]).await.expect("published");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let replay = app
        .post(
            &format!("/admin/dead-letters/{seq}/replay"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::OK, "{:?}", replay.body);
    assert_eq!(replay.body["replayed"], true);
    let again = app
        .post(
            &format!("/admin/dead-letters/{seq}/replay"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    // Had the replay failed again, the event would be parked again within a few seconds.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let after = app.get("/admin/dead-letters", Some(&admin.token)).await;
    assert!(
        after.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|d| d["event_id"] != confirmed.id.to_string()),
        "{:?}",
        after.body
    );
}
