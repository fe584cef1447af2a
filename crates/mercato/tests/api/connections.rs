//! What clients can do to the HTTP stack itself: heads it cannot parse,
//! heads and bodies that never finish, connections that sit idle, more
//! connections than the server takes. Every answer is the JSON error shape,
//! and nothing a slow client does holds the server for long.

use crate::support::TestApp;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn authority(app: &TestApp) -> String {
    app.base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(authority(app))
        .await
        .expect("server accepts")
}

/// Everything the server sends until it closes the connection (or `within` passes).
async fn read_all(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Status and JSON body of a raw HTTP/1.1 answer.
fn parse(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {text:?}"));
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json"),
        "not JSON: {head}"
    );
    // What every answer carries, those the HTTP stack makes included.
    for header in [
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(header), "no {header}: {head}");
    }
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, body)
}

async fn exchange(app: &TestApp, request: &[u8]) -> (u16, Value) {
    let mut stream = connect(app).await;
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request).await;
    let (raw, _) = read_all(&mut stream, Duration::from_secs(10)).await;
    parse(&raw)
}

#[tokio::test]
async fn heads_the_server_cannot_parse_get_json_errors() {
    let app = TestApp::spawn().await;
    let long = format!(
        "GET /api/v1/products/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let (status, body) = exchange(&app, long.as_bytes()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (414, Some("uri_too_long"))
    );

    let fat = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fat: {}\r\n\r\n",
        "a".repeat(500_000)
    );
    let (status, body) = exchange(&app, fat.as_bytes()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (431, Some("headers_too_large"))
    );

    let (status, body) = exchange(&app, b"BL\x01AH / HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}

#[tokio::test]
async fn a_body_over_the_limit_on_checkout_gets_a_json_413() {
    let app = TestApp::spawn().await;
    let customer = app.register("customer").await;
    let body = format!(
        "{{\"payment\": {{\"token\": \"{}\"}}}}",
        "x".repeat(5_000_000)
    );
    let r = app
        .client
        .post(app.url("/checkout"))
        .bearer_auth(&customer.token)
        .header("content-type", "application/json")
        .header("idempotency-key", "huge-body")
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.headers()["content-type"]
        .to_str()
        .is_ok_and(|v| v.starts_with("application/json")));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn slow_heads_stalled_bodies_and_idle_connections_are_cut_off() {
    let app = TestApp::spawn_with(|s| {
        s.http.header_read_timeout_ms = 500;
        s.http.body_read_timeout_ms = 700;
        s.http.idle_timeout_ms = 1_500;
    })
    .await;
    if app.contexts.is_none() {
        return; // an external server has its own time-outs
    }

    // Half a head, then nothing: closed once the head time-out has passed.
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("sent");
    let started = Instant::now();
    let (_, closed) = read_all(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "a half head is not held");
    assert!(
        started.elapsed() < Duration::from_millis(1_400),
        "closed by the head time-out, not the idle one"
    );

    // A body that never finishes: 408 in the JSON shape.
    let mut stalled = connect(&app).await;
    stalled
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"email\"",
        )
        .await
        .expect("sent");
    let (raw, _) = read_all(&mut stalled, Duration::from_secs(5)).await;
    let (status, body) = parse(&raw);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (408, Some("request_timeout"))
    );

    // A kept-alive connection that sends nothing more is closed by the idle
    // time-out; one that never sent anything too.
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sent");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.expect("answered");
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut silent = connect(&app).await;
    let (_, idle_closed) = read_all(&mut idle, Duration::from_secs(5)).await;
    let (_, silent_closed) = read_all(&mut silent, Duration::from_secs(5)).await;
    assert!(idle_closed && silent_closed);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let app = TestApp::spawn_with(|s| s.http.max_connections = 4).await;
    if app.contexts.is_none() {
        return;
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect(&app).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("sent");
        let mut head = [0u8; 12];
        c.read_exact(&mut head).await.expect("answered");
        held.push(c);
    }
    let mut extra = connect(&app).await;
    let (_, closed) = read_all(&mut extra, Duration::from_secs(2)).await;
    assert!(closed, "the fifth connection is closed");
    held.pop();
    // Once one is gone, a new connection is served.
    let mut answered = false;
    for _ in 0..50 {
        let mut c = connect(&app).await;
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut head = [0u8; 12];
        if c.read_exact(&mut head).await.is_ok() && &head == b"HTTP/1.1 200" {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "a freed slot is taken again");
}
