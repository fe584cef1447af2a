//! Request decoders never panic and never answer 500: arbitrary bytes and
//! arbitrary JSON (shaped like the API's bodies) sent to every operation
//! that takes a body, as every kind of caller. The operations are read from
//! the server's own OpenAPI document, so a new one is covered as it lands.

use crate::support::TestApp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{json, Map, Value};

/// Field names of the API's bodies, so that generated objects get past the
/// first missing field into the decoders of nested parts.
const FIELDS: &[&str] = &[
    "email",
    "password",
    "name",
    "role",
    "title",
    "description",
    "category",
    "variants",
    "sku",
    "price",
    "amount",
    "currency",
    "quantity",
    "payment",
    "token",
    "shipping_address",
    "line1",
    "line2",
    "city",
    "postal_code",
    "country",
    "status",
    "attributes",
    "warehouse",
    "items",
    "reason",
    "prices",
    "code",
    "kind",
    "value",
    "amounts",
    "min_subtotal",
    "starts_at",
    "ends_at",
    "usage_limit",
    "per_customer_limit",
    "categories",
    "active",
    "countries",
    "free_over",
    "rate_bps",
    "shipping_method",
    "current_password",
    "images",
    "url",
    "alt",
    "slug",
    "parent",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        Just(json!("EUR")),
        Just(json!("a@b.io")),
        Just(json!("tok_visa")),
        Just(json!("percentage")),
        Just(json!("2026-12-01T00:00:00Z")),
        Just(json!("DE")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            3 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..8)
                .prop_map(|f| Value::Object(f.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A body: arbitrary bytes, or arbitrary JSON as text.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

/// A path segment: a real-looking id, an empty one, or anything.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("01a22d32-05a6-727f-a25c-9a5a0aa17c26".to_owned()),
        Just("00000000-0000-0000-0000-000000000000".to_owned()),
        "[A-Za-z0-9._~-]{0,40}",
    ]
}

/// Every (method, path template) of the document with a request body.
fn operations_with_bodies(doc: &Value) -> Vec<(Method, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if op.get("requestBody").is_none() {
                continue;
            }
            if let Ok(m) = method.to_uppercase().parse::<Method>() {
                ops.push((m, path.clone()));
            }
        }
    }
    ops
}

fn fill(template: &str, segment: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str(&urlencode(segment));
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn arbitrary_bodies_to_every_operation_get_a_json_answer_never_a_500() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (app, ops, tokens) = rt.block_on(async {
        let app = TestApp::spawn().await;
        let doc = app.get("/openapi.json", None).await.body;
        let ops = operations_with_bodies(&doc);
        let tokens = vec![
            None,
            Some(app.register("customer").await.token),
            Some(app.register("seller").await.token),
            Some(app.admin().await.token),
        ];
        (app, ops, tokens)
    });
    assert!(ops.len() >= 8, "operations with bodies: {ops:?}");

    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (body(), segment(), 0..tokens.len(), any::<bool>());
    let outcome = runner.run(&strategy, |(body, segment, who, json_type)| {
        rt.block_on(async {
            for (method, template) in &ops {
                let path = fill(template, &segment);
                let mut req = app
                    .client
                    .request(method.clone(), format!("{}{path}", app.base))
                    .header("idempotency-key", "fuzz")
                    .body(body.clone());
                if json_type {
                    req = req.header("content-type", "application/json");
                }
                if let Some(token) = &tokens[who] {
                    req = req.bearer_auth(token);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{method} {path}: {e}")))?;
                let status = resp.status();
                let json = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                let text = resp.text().await.unwrap_or_default();
                prop_assert!(
                    status.as_u16() < 500,
                    "{method} {path} answered {status}: {text}"
                );
                prop_assert!(
                    json || status == reqwest::StatusCode::NO_CONTENT,
                    "{method} {path} answered {status} without JSON: {text}"
                );
            }
            Ok(())
        })
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
