//! Crash tests with the real binary: SIGKILL (or an injected abort) in the
//! middle of checkouts, then a restart on the same data dir. Every
//! acknowledged order must survive and every saga must finish, confirmed or
//! fully compensated, with stock conserved and money taken at most once.

#[path = "support/blackbox.rs"]
mod blackbox;
#[path = "support/ports.rs"]
mod ports;

use blackbox::{address, audit, shop, Api};
use ports::claim_port;
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Acknowledged checkouts after which the burst test kills the server.
const KILL_AFTER_ACKS: usize = 8;

struct Server {
    child: Child,
    base: String,
}

fn mercato(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mercato"));
    cmd.env("MERCATO_DATA_DIR", data_dir)
        .env("MERCATO_AUTH__PASSWORD_MEMORY_KIB", "1024")
        .env("MERCATO_AUTH__PASSWORD_ITERATIONS", "1")
        .env("MERCATO_LOG", "warn")
        .env_remove("MERCATO_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

async fn start(data_dir: &Path, port: u16, failpoint: Option<&str>) -> Server {
    start_with(data_dir, port, failpoint, &[]).await
}

async fn start_with(
    data_dir: &Path,
    port: u16,
    failpoint: Option<&str>,
    env: &[(&str, &str)],
) -> Server {
    let mut cmd = mercato(data_dir);
    cmd.envs(env.iter().copied());
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")]);
    if let Some(f) = failpoint {
        cmd.env("MERCATO_FAILPOINT", f);
    }
    let child = cmd.spawn().expect("mercato starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == StatusCode::OK {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Server { child, base }
}

impl Server {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to die by itself (an injected abort).
    async fn died(&mut self) {
        let started = Instant::now();
        loop {
            if self.child.try_wait().expect("wait").is_some() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the failpoint never fired"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The signed amounts of an order's payment ledger, oldest first.
async fn ledger(api: &Api, admin: &str, order_id: &str) -> Vec<i64> {
    let payment = api
        .ok(
            reqwest::Method::GET,
            &format!("/payments/orders/{order_id}"),
            Some(admin),
            None,
        )
        .await;
    payment["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|e| e["amount"]["amount"].as_i64())
        .collect()
}

fn create_admin(data_dir: &Path) {
    let status = mercato(data_dir)
        .args([
            "admin",
            "create-user",
            "--email",
            "admin@crash.test",
            "--password",
            "admin-password",
            "--role",
            "admin",
        ])
        .status()
        .expect("admin command runs");
    assert!(status.success());
}

#[tokio::test]
async fn sigkill_during_a_burst_of_checkouts_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    create_admin(dir.path());
    let claim = claim_port();
    let port = claim.port;
    let mut server = start(dir.path(), port, None).await;
    let api = Api::new(&server.base);
    let (_, sku) = shop(&api, 1000).await;
    let mut customers = Vec::new();
    for i in 0..40 {
        let token = api.sign_up("customer").await.token;
        api.ok(
            reqwest::Method::POST,
            "/cart/items",
            Some(&token),
            Some(json!({"sku": sku, "quantity": 1 + i % 3})),
        )
        .await;
        customers.push(token);
    }
    // Fire every checkout at once and kill the server while they are in
    // flight: as soon as the first few are acknowledged, whatever the speed of
    // the machine, so some orders are acknowledged and others still running.
    let api_ref = &api;
    let acks = AtomicUsize::new(0);
    let first_acks = Notify::new();
    let (acks_ref, first_acks_ref) = (&acks, &first_acks);
    let burst =
        futures::future::join_all(customers.iter().enumerate().map(|(i, token)| async move {
            tokio::time::sleep(Duration::from_millis(2 * i as u64)).await;
            let body = json!({"payment": {"token": "tok_visa"}, "shipping_address": address()});
            match api_ref
                .call(
                    reqwest::Method::POST,
                    "/checkout",
                    Some(token),
                    Some(body),
                    Some(&format!("k-{i}")),
                )
                .await
            {
                Ok((StatusCode::ACCEPTED, v)) => {
                    if acks_ref.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ACKS {
                        first_acks_ref.notify_one();
                    }
                    Some((token.clone(), v["id"].as_str().expect("id").to_owned()))
                }
                _ => None,
            }
        }));
    let killer = async {
        // notify_one keeps the permit if the waiter is not there yet.
        let _ = tokio::time::timeout(Duration::from_secs(30), first_acks.notified()).await;
        server.kill();
    };
    let (acknowledged, ()) = tokio::join!(burst, killer);
    let acknowledged: Vec<(String, String)> = acknowledged.into_iter().flatten().collect();
    assert!(
        !acknowledged.is_empty(),
        "some checkouts were acknowledged before the kill"
    );

    let started = Instant::now();
    let server = start(dir.path(), port, None).await;
    let ready_in = started.elapsed();
    eprintln!(
        "restarted and ready in {ready_in:?}; {} orders acknowledged before the kill",
        acknowledged.len()
    );
    let api = Api::new(&server.base);
    let admin = api.login("admin@crash.test", "admin-password").await;
    let _ = audit(&api, &admin, &sku, 1000, &acknowledged).await;
}

/// For every saga step: the process dies right after the step's effect, the
/// restarted process resumes the saga, and the effect happened once.
#[tokio::test]
async fn a_saga_resumes_after_a_crash_at_every_step() {
    let cases = [
        ("reserve", "tok_visa", "confirmed"),
        ("pay", "tok_visa", "confirmed"),
        ("commit", "tok_visa", "confirmed"),
        ("empty_cart", "tok_visa", "confirmed"),
        ("confirm_emptied", "tok_visa", "confirmed"),
        ("pay", "tok_decline", "cancelled"),
        ("refund_payment", "tok_decline", "cancelled"),
        ("release_stock", "tok_decline", "cancelled"),
        ("cancel_order", "tok_decline", "cancelled"),
    ];
    for (step, token, outcome) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        create_admin(dir.path());
        let claim = claim_port();
        let port = claim.port;
        let mut server = start(dir.path(), port, Some(&format!("saga_crash_after:{step}"))).await;
        let api = Api::new(&server.base);
        let (_, sku) = shop(&api, 10).await;
        let customer = api.sign_up("customer").await.token;
        api.ok(
            reqwest::Method::POST,
            "/cart/items",
            Some(&customer),
            Some(json!({"sku": sku, "quantity": 2})),
        )
        .await;
        let (status, order) = api
            .call(
                reqwest::Method::POST,
                "/checkout",
                Some(&customer),
                Some(json!({"payment": {"token": token}, "shipping_address": address()})),
                Some("once"),
            )
            .await
            .expect("checkout");
        assert_eq!(status, StatusCode::ACCEPTED, "{step}: {order}");
        let id = order["id"].as_str().expect("id").to_owned();
        server.died().await;

        let server = start(dir.path(), port, None).await;
        let api = Api::new(&server.base);
        let admin = api.login("admin@crash.test", "admin-password").await;
        let _ = audit(&api, &admin, &sku, 10, &[(customer.clone(), id.clone())]).await;
        let order = api
            .ok(
                reqwest::Method::GET,
                &format!("/orders/{id}"),
                Some(&customer),
                None,
            )
            .await;
        assert_eq!(order["status"], outcome, "crash after {step}: {order}");
        let cart = api
            .ok(reqwest::Method::GET, "/cart", Some(&customer), None)
            .await;
        let expected_lines = if outcome == "confirmed" { 0 } else { 1 };
        assert_eq!(
            cart["items"].as_array().map(Vec::len),
            Some(expected_lines),
            "crash after {step}: {cart}"
        );
    }
}

/// The promotion's steps: the process dies right after the code was
/// redeemed (or given back), the restarted process resumes the saga, and
/// the code was used exactly once by a confirmed order and not at all by a
/// cancelled one.
#[tokio::test]
async fn a_saga_with_a_code_resumes_after_a_crash_at_its_promotion_steps() {
    let cases = [
        ("redeem", "tok_visa", "confirmed", 1),
        ("pay", "tok_decline", "cancelled", 0),
        ("release_promotion", "tok_decline", "cancelled", 0),
    ];
    for (step, token, outcome, used) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        create_admin(dir.path());
        let claim = claim_port();
        let port = claim.port;
        let mut server = start(dir.path(), port, Some(&format!("saga_crash_after:{step}"))).await;
        let api = Api::new(&server.base);
        let admin = api.login("admin@crash.test", "admin-password").await;
        let promo = api
            .ok(
                reqwest::Method::POST,
                "/promotions",
                Some(&admin),
                Some(json!({"code": "CRASH", "kind": "percentage", "value": 10, "usage_limit": 1})),
            )
            .await;
        let (_, sku) = shop(&api, 10).await;
        let customer = api.sign_up("customer").await.token;
        api.ok(
            reqwest::Method::POST,
            "/cart/items",
            Some(&customer),
            Some(json!({"sku": sku, "quantity": 2})),
        )
        .await;
        api.ok(
            reqwest::Method::POST,
            "/cart/promotions",
            Some(&customer),
            Some(json!({"code": "crash"})),
        )
        .await;
        let (status, order) = api
            .call(
                reqwest::Method::POST,
                "/checkout",
                Some(&customer),
                Some(json!({"payment": {"token": token}, "shipping_address": address()})),
                Some("once"),
            )
            .await
            .expect("checkout");
        assert_eq!(status, StatusCode::ACCEPTED, "{step}: {order}");
        let id = order["id"].as_str().expect("id").to_owned();
        server.died().await;

        let server = start(dir.path(), port, None).await;
        let api = Api::new(&server.base);
        let admin = api.login("admin@crash.test", "admin-password").await;
        let _ = audit(&api, &admin, &sku, 10, &[(customer.clone(), id.clone())]).await;
        let order = api
            .ok(
                reqwest::Method::GET,
                &format!("/orders/{id}"),
                Some(&customer),
                None,
            )
            .await;
        assert_eq!(order["status"], outcome, "crash after {step}: {order}");
        let promo = api
            .ok(
                reqwest::Method::GET,
                &format!("/promotions/{}", promo["id"].as_str().expect("id")),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(promo["times_used"], used, "crash after {step}: {promo}");
    }
}

/// The commit step fails (the reservation expired while the payment was
/// taken): the payment is refunded, nothing stays reserved, and the order is
/// cancelled.
#[tokio::test]
async fn a_failed_commit_refunds_the_payment_and_cancels() {
    let dir = tempfile::tempdir().expect("temp dir");
    create_admin(dir.path());
    let claim = claim_port();
    let port = claim.port;
    let server = start_with(
        dir.path(),
        port,
        Some("saga_pause_before:commit:400"),
        &[
            ("MERCATO_ORDERS__RESERVATION_TTL_SECS", "0"),
            ("MERCATO_INVENTORY__RESERVATION_SWEEP_MS", "20"),
        ],
    )
    .await;
    let api = Api::new(&server.base);
    let admin = api.login("admin@crash.test", "admin-password").await;
    let (_, sku) = shop(&api, 10).await;
    let customer = api.sign_up("customer").await.token;
    api.ok(
        reqwest::Method::POST,
        "/cart/items",
        Some(&customer),
        Some(json!({"sku": sku, "quantity": 3})),
    )
    .await;
    let (status, order) = api
        .call(
            reqwest::Method::POST,
            "/checkout",
            Some(&customer),
            Some(json!({"payment": {"token": "tok_visa"}, "shipping_address": address()})),
            Some("expiring"),
        )
        .await
        .expect("checkout");
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = order["id"].as_str().expect("id").to_owned();
    let _ = audit(&api, &admin, &sku, 10, &[(customer.clone(), id.clone())]).await;
    let order = api
        .ok(
            reqwest::Method::GET,
            &format!("/orders/{id}"),
            Some(&customer),
            None,
        )
        .await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], "out_of_stock");
    assert_eq!(order["payment"]["status"], "refunded");
    assert_eq!(
        ledger(&api, &admin, &id).await,
        vec![2100, -2100],
        "captured, then refunded"
    );
}

/// What is refunded in [`a_refund_resumes_after_a_crash_at_each_of_its_steps`].
#[derive(Debug, Clone, Copy)]
enum Refunding {
    /// A return of one of the two units, received.
    Return,
    /// 300 of the order's 1400, by amount.
    Amount,
    /// The rest of the order (a refund without a body).
    Rest,
}

/// The process dies right after a refund's step had its effect (stock put
/// back, money refunded at the provider) and before the step was recorded;
/// the restarted process resumes the refund, and the payments ledger holds
/// that refund exactly once, the stock came back exactly once.
#[tokio::test]
async fn a_refund_resumes_after_a_crash_at_each_of_its_steps() {
    let cases = [
        ("restock_items", Refunding::Return, vec![1400, -700], 9),
        ("refund_amount", Refunding::Return, vec![1400, -700], 9),
        ("refund_amount", Refunding::Amount, vec![1400, -300], 8),
        ("refund_payment", Refunding::Rest, vec![1400, -1400], 10),
    ];
    // The provider outlives the restarts, as a real one would.
    let provider = mercato_payments::testprovider::TestProvider::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let (bound, _task) = provider
        .serve("127.0.0.1:0".parse().expect("addr"), stop.clone())
        .await
        .expect("test provider");
    let provider_url = format!("http://{bound}");
    let env = [("MERCATO_PAYMENTS__PROVIDER_URL", provider_url.as_str())];
    let env = &env;
    let runs = cases
        .into_iter()
        .map(|(step, what, expected, available)| async move {
            let dir = tempfile::tempdir().expect("temp dir");
            create_admin(dir.path());
            let claim = claim_port();
            let port = claim.port;
            let mut server = start_with(dir.path(), port, None, env).await;
            let api = Api::new(&server.base);
            let admin = api.login("admin@crash.test", "admin-password").await;
            let (seller, sku) = shop(&api, 10).await;
            let customer = api.sign_up("customer").await.token;
            api.ok(
                reqwest::Method::POST,
                "/cart/items",
                Some(&customer),
                Some(json!({"sku": sku, "quantity": 2})),
            )
            .await;
            let id = api
                .place_order(&customer, "tok_visa", "once")
                .await
                .expect("acknowledged");
            assert_eq!(api.settled(&customer, &id).await["status"], "confirmed");
            for step in ["ship", "deliver"] {
                api.ok(
                    reqwest::Method::POST,
                    &format!("/orders/{id}/{step}"),
                    Some(&seller),
                    None,
                )
                .await;
            }
            let return_id = api
                .ok(
                    reqwest::Method::POST,
                    &format!("/orders/{id}/returns"),
                    Some(&customer),
                    Some(json!({"items": [{"sku": sku, "quantity": 1}], "reason": "Chipped"})),
                )
                .await["id"]
                .as_str()
                .expect("return id")
                .to_owned();
            server.kill();

            let failpoint = format!("saga_crash_after:{step}");
            let mut server = start_with(dir.path(), port, Some(&failpoint), env).await;
            let api = Api::new(&server.base);
            let (path, body) = match what {
                Refunding::Return => (format!("/returns/{return_id}/receive"), None),
                Refunding::Amount => (
                    format!("/orders/{id}/refund"),
                    Some(json!({"amount": {"amount": 300, "currency": "EUR"}})),
                ),
                Refunding::Rest => (format!("/orders/{id}/refund"), None),
            };
            // The process dies in the middle of the request.
            let _ = api
                .call(
                    reqwest::Method::POST,
                    &path,
                    Some(&admin),
                    body,
                    Some("refund"),
                )
                .await;
            server.died().await;

            let server = start_with(dir.path(), port, None, env).await;
            let api = Api::new(&server.base);
            let started = Instant::now();
            let payment = loop {
                let amounts = ledger(&api, &admin, &id).await;
                let order = api
                    .ok(
                        reqwest::Method::GET,
                        &format!("/orders/{id}"),
                        Some(&admin),
                        None,
                    )
                    .await;
                let refunded = order["refunded_total"]["amount"].as_i64();
                // The unwind puts the stock back after the refund.
                let on_hand = api.available(&sku).await;
                if amounts.len() == expected.len()
                    && refunded == Some(-expected[1])
                    && on_hand == available
                {
                    break amounts;
                }
                assert!(
                started.elapsed() < Duration::from_secs(30),
                "crash after {step} ({what:?}): the refund never finished: {amounts:?}, {order}"
            );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(payment, expected, "crash after {step} ({what:?})");
            assert_eq!(
                api.available(&sku).await,
                available,
                "crash after {step} ({what:?})"
            );
            if let Refunding::Return = what {
                let ret = api
                    .ok(
                        reqwest::Method::GET,
                        &format!("/returns/{return_id}"),
                        Some(&admin),
                        None,
                    )
                    .await;
                assert_eq!(ret["status"], "refunded", "crash after {step}: {ret}");
            }
        });
    futures::future::join_all(runs).await;
    stop.cancel();
}
