//! The OpenAPI document says what the server does (invariant 13): every
//! status an operation can answer is documented, with its error code.
//! `scripts/conformance` checks the whole surface with generated requests;
//! these tests pin what the shared layers add to every operation.

use crate::support::{unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn document(app: &TestApp) -> Value {
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    doc.body
}

/// Every `/api/v1` operation of the document: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for (method, op) in item.as_object().expect("path item") {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    ops
}

fn documents(doc: &Value, method: &str, path: &str, status: u16) -> bool {
    doc["paths"][path][method]["responses"]
        .get(status.to_string())
        .is_some()
}

#[tokio::test]
async fn every_operation_documents_what_the_shared_layers_answer() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "{} operations", ops.len());
    for (method, path, op) in ops {
        let responses = op["responses"].as_object().expect("responses");
        let mut expected = vec!["400", "408", "413", "429", "503"];
        if op.get("requestBody").is_some() {
            expected.extend(["415", "422"]);
        }
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if secured {
            expected.push("401");
        }
        for status in expected {
            assert!(
                responses.contains_key(status),
                "{method} {path} does not document {status}"
            );
        }
        for (status, response) in responses {
            let description = response["description"].as_str().unwrap_or_default();
            assert!(
                !description.trim().is_empty(),
                "{method} {path} {status} has no description"
            );
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    description.contains('`'),
                    "{method} {path} {status} names no error code: {description}"
                );
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
        for status in ["429", "503"] {
            assert!(
                responses[status]["headers"].get("Retry-After").is_some(),
                "{method} {path} {status} without Retry-After"
            );
        }
    }
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
}

/// A request and the error it gets: method, path, the path in the document,
/// token, body (sent as JSON when present), status and error code.
struct Probe<'a>(
    Method,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    &'a str,
);

#[tokio::test]
async fn what_the_extractors_answer_is_documented_for_the_operation() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let customer = app.register("customer").await;
    let seller = app.register("seller").await;
    let product = app
        .create_product(&seller, "c", &[(&unique("DOC"), 100)])
        .await;
    let product_path = format!("/products/{}", product["id"].as_str().expect("id"));
    let (customer_token, seller_token) = (customer.token, seller.token);

    let c = |customer: bool| {
        Some(if customer {
            customer_token.as_str()
        } else {
            seller_token.as_str()
        })
    };
    // (method, path, documented path, token, body as text, status, code)
    let cases = [
        Probe(
            Method::POST,
            "/cart/items",
            "/api/v1/cart/items",
            c(true),
            None,
            415,
            "unsupported_media_type",
        ),
        Probe(
            Method::POST,
            "/cart/items",
            "/api/v1/cart/items",
            c(true),
            Some("{"),
            400,
            "malformed_json",
        ),
        Probe(
            Method::POST,
            "/cart/items",
            "/api/v1/cart/items",
            c(true),
            Some("{\"sku\": 1}"),
            422,
            "validation_failed",
        ),
        Probe(
            Method::PATCH,
            &product_path,
            "/api/v1/products/{id}",
            c(false),
            Some("[nope"),
            400,
            "malformed_json",
        ),
        Probe(
            Method::POST,
            "/auth/login",
            "/api/v1/auth/login",
            None,
            None,
            415,
            "unsupported_media_type",
        ),
        Probe(
            Method::GET,
            "/orders?limit=many",
            "/api/v1/orders",
            c(true),
            None,
            400,
            "invalid_query",
        ),
        Probe(
            Method::GET,
            "/orders?cursor=%25%25",
            "/api/v1/orders",
            c(true),
            None,
            400,
            "invalid_cursor",
        ),
        Probe(
            Method::GET,
            "/products?limit=0",
            "/api/v1/products",
            None,
            None,
            422,
            "validation_failed",
        ),
        Probe(
            Method::GET,
            "/cart",
            "/api/v1/cart",
            Some("not-a-token"),
            None,
            401,
            "unauthorized",
        ),
    ];
    for Probe(method, path, documented, token, body, status, code) in cases {
        let mut req = app.client.request(method.clone(), app.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let r = req.send().await.expect("sent");
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let got: Value = r.json().await.expect("a JSON error");
        assert_eq!(got["error"]["code"], code, "{method} {path}");
        let method = method.as_str().to_lowercase();
        assert!(
            documents(&doc, &method, documented, status),
            "{method} {documented} answers {status} undocumented"
        );
        let description = doc["paths"][documented][&method]["responses"][status.to_string()]
            ["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            description.contains(&format!("`{code}`")),
            "{method} {documented} {status} does not name `{code}`: {description}"
        );
    }
}

#[tokio::test]
async fn dead_letter_lists_take_a_limit_like_every_list() {
    let app = TestApp::spawn().await;
    if app.contexts.is_none() {
        return; // needs an admin made in process
    }
    let admin = app.admin().await;
    for (query, status) in [
        ("?limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("?limit=-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("?limit=1", StatusCode::OK),
        ("?limit=1000000", StatusCode::OK),
        ("?limit=x", StatusCode::BAD_REQUEST),
    ] {
        let r = app
            .get(&format!("/admin/dead-letters{query}"), Some(&admin.token))
            .await;
        assert_eq!(r.status, status, "{query}: {:?}", r.body);
    }
    let r = app.get("/admin/dead-letters", Some(&admin.token)).await;
    assert_eq!(r.body, json!({"items": []}));
}
