//! `JetStreamBus` against a real NATS server: `MERCATO_TEST_NATS_URL`, or
//! the local one that `scripts/services` starts. Every test has its own
//! subject prefix and streams, deleted when it ends (even when it fails).

use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_trait::async_trait;
use mercato_kernel::bus::jetstream::{JetStreamBus, JetStreamConfig, StreamSpec};
use mercato_kernel::bus::{DeadLetter, EventBus, EventHandler, Subscription, MAX_ATTEMPTS};
use mercato_kernel::event::{current_correlation, Envelope};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);
/// Long enough for a stray delivery to show up; several pull cycles.
const SETTLE: Duration = Duration::from_millis(600);

fn nats_url() -> String {
    std::env::var("MERCATO_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Deletes the test's streams (and with them their consumers) on drop,
/// from a thread of its own so that it also runs when the test panics.
struct Cleanup {
    stream_prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let stream_prefix = self.stream_prefix.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use futures::StreamExt;
                let Ok(client) = async_nats::connect(nats_url()).await else {
                    return;
                };
                let js = async_nats::jetstream::new(client);
                let mut names = js.stream_names();
                let mut ours = Vec::new();
                while let Some(Ok(name)) = names.next().await {
                    if name.starts_with(&stream_prefix) {
                        ours.push(name);
                    }
                }
                for name in ours {
                    let _ = js.delete_stream(&name).await;
                }
            });
        })
        .join();
    }
}

struct Fixture {
    bus: JetStreamBus,
    prefix: String,
    _cleanup: Cleanup,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(tune: impl FnOnce(&mut JetStreamConfig)) -> Fixture {
    // The bus's logs, shown for a failing test.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("mercato_kernel=debug")
        .with_test_writer()
        .try_init();
    // The tail of a UUIDv7 is random.
    let id = mercato_kernel::id::new_id().simple().to_string();
    let tag = &id[id.len() - 10..];
    let prefix = format!("jstest_{tag}");
    let cleanup = Cleanup {
        stream_prefix: format!("{}_", prefix.to_uppercase()),
    };
    let mut config = JetStreamConfig::new(nats_url());
    config.prefix = prefix.clone();
    config.streams = vec![
        StreamSpec::new("orders", &["order"]),
        StreamSpec::new("catalog", &["product", "price"]),
    ];
    config.fetch_wait = Duration::from_millis(200);
    config.retry_base = Duration::from_millis(10);
    config.retry_cap = Duration::from_millis(80);
    config.ack_wait = Duration::from_secs(5);
    tune(&mut config);
    let bus = JetStreamBus::connect(config)
        .await
        .expect("NATS with JetStream is reachable (scripts/services starts it)");
    Fixture {
        bus,
        prefix,
        _cleanup: cleanup,
    }
}

fn event(event_type: &str, subject: &str) -> Envelope {
    Envelope {
        id: mercato_kernel::id::new_id(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        occurred_at: mercato_kernel::time::now(),
        source: "test".into(),
        subject: subject.to_owned(),
        correlation_id: Some("corr-1".into()),
        causation_id: None,
        payload: serde_json::json!({ "subject": subject }),
    }
}

fn orders(n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| event("order.placed", &format!("o-{i}")))
        .collect()
}

fn ids(events: &[Envelope]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// Records what it handled; fails every event whose id is in `poison`
/// while `healthy` is false.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Envelope>>,
    caused_by: Mutex<Vec<Option<Uuid>>>,
    attempts: Mutex<Vec<Uuid>>,
    poison: Mutex<HashSet<Uuid>>,
    healthy: AtomicBool,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn seen(&self) -> Vec<Envelope> {
        self.seen.lock().expect("lock").clone()
    }

    fn attempts_of(&self, id: Uuid) -> usize {
        self.attempts
            .lock()
            .expect("lock")
            .iter()
            .filter(|a| **a == id)
            .count()
    }

    async fn wait_for(&self, n: usize) -> Vec<Envelope> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} events, got {}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        self.attempts.lock().expect("lock").push(event.id);
        if !self.healthy.load(Ordering::SeqCst)
            && self.poison.lock().expect("lock").contains(&event.id)
        {
            anyhow::bail!("boom: {} cannot be handled", event.id);
        }
        self.caused_by
            .lock()
            .expect("lock")
            .push(current_correlation().causation_id);
        self.seen.lock().expect("lock").push(event.clone());
        Ok(())
    }
}

fn subscription(consumer: &str, types: &[&str], handler: Arc<Recorder>) -> Subscription {
    Subscription {
        consumer: consumer.to_owned(),
        per_instance: false,
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        handler,
    }
}

async fn stop(token: CancellationToken, task: tokio::task::JoinHandle<()>) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the consumer stops promptly")
        .expect("the consumer task does not panic");
}

async fn stream_messages(bus: &JetStreamBus, stream: &str) -> u64 {
    let mut stream = bus.context().get_stream(stream).await.expect("stream");
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test]
async fn events_are_delivered_in_order_to_the_types_subscribed() {
    let f = fixture().await;
    let token = CancellationToken::new();
    let all_orders = Recorder::new();
    let picky = Recorder::new();
    let t1 = f.bus.subscribe(
        subscription("order-log", &["order.*"], all_orders.clone()),
        token.clone(),
    );
    // Two streams, and two namespaces of the catalog stream in one consumer.
    let t2 = f.bus.subscribe(
        subscription(
            "picky",
            &["order.confirmed", "product.created", "price.changed"],
            picky.clone(),
        ),
        token.clone(),
    );

    let first = orders(5);
    f.bus.publish(&first).await.expect("publish");
    let confirmed = event("order.confirmed", "o-9");
    let created = event("product.created", "p-1");
    let updated = event("product.updated", "p-1");
    let repriced = event("price.changed", "p-1");
    f.bus
        .publish(&[
            created.clone(),
            confirmed.clone(),
            updated.clone(),
            repriced.clone(),
        ])
        .await
        .expect("publish");

    let mut expected = ids(&first);
    expected.push(confirmed.id);
    let seen = all_orders.wait_for(6).await;
    assert_eq!(ids(&seen), expected);
    assert_eq!(seen[0], first[0], "the envelope arrives intact");
    assert_eq!(
        *all_orders.caused_by.lock().expect("lock"),
        expected.iter().map(|id| Some(*id)).collect::<Vec<_>>(),
        "handlers run in the correlation of the event"
    );

    picky.wait_for(3).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(all_orders.seen().len(), 6);
    let picked: HashSet<Uuid> = ids(&picky.seen()).into_iter().collect();
    assert_eq!(
        picked,
        HashSet::from([confirmed.id, created.id, repriced.id])
    );
    assert_eq!(picky.seen().len(), 3);
    // product.created before price.changed: same stream, published in that order.
    let catalog: Vec<Uuid> = ids(&picky.seen())
        .into_iter()
        .filter(|id| *id != confirmed.id)
        .collect();
    assert_eq!(catalog, vec![created.id, repriced.id]);

    let orders_stream = f.bus.stream_for("order.placed").expect("stream");
    assert_eq!(orders_stream, format!("{}_ORDERS", f.prefix.to_uppercase()));
    assert_eq!(stream_messages(&f.bus, &orders_stream).await, 6);
    stop(token.clone(), t1).await;
    stop(token, t2).await;
}

#[tokio::test]
async fn a_republished_event_id_is_dropped() {
    let f = fixture().await;
    let once = event("order.placed", "o-1");
    let other = event("order.placed", "o-2");
    f.bus
        .publish(std::slice::from_ref(&once))
        .await
        .expect("publish");
    // The relay re-sends a batch whose marking failed.
    f.bus
        .publish(&[once.clone(), other.clone()])
        .await
        .expect("publish again");
    f.bus
        .publish(std::slice::from_ref(&once))
        .await
        .expect("and again");

    let stream = f.bus.stream_for("order.placed").expect("stream");
    assert_eq!(stream_messages(&f.bus, &stream).await, 2);

    let token = CancellationToken::new();
    let rec = Recorder::new();
    let task = f.bus.subscribe(
        subscription("c", &["order.placed"], rec.clone()),
        token.clone(),
    );
    rec.wait_for(2).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(ids(&rec.seen()), vec![once.id, other.id]);
    stop(token, task).await;
}

#[tokio::test]
async fn replicas_of_a_consumer_share_the_events() {
    let f = fixture_with(|c| c.batch_size = 2).await;
    let token = CancellationToken::new();
    let a = Recorder::new();
    let b = Recorder::new();
    let ta = f.bus.subscribe(
        subscription("shared", &["order.*"], a.clone()),
        token.clone(),
    );
    let tb = f.bus.subscribe(
        subscription("shared", &["order.*"], b.clone()),
        token.clone(),
    );
    let events = orders(30);
    f.bus.publish(&events).await.expect("publish");

    let deadline = tokio::time::Instant::now() + WAIT;
    while a.seen().len() + b.seen().len() < events.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all events were handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let mut handled = ids(&a.seen());
    handled.extend(ids(&b.seen()));
    assert_eq!(
        handled.len(),
        events.len(),
        "each event is handled once in total"
    );
    let distinct: HashSet<Uuid> = handled.into_iter().collect();
    assert_eq!(distinct, ids(&events).into_iter().collect::<HashSet<_>>());
    stop(token.clone(), ta).await;
    stop(token, tb).await;
}

fn instance_subscription(consumer: &str, types: &[&str], handler: Arc<Recorder>) -> Subscription {
    let sub = Subscription::of_instance(consumer, types.iter().copied(), handler);
    assert!(sub.per_instance);
    sub
}

/// The consumer `name` on `stream`, or `None` when the server has none.
async fn consumer_info(
    bus: &JetStreamBus,
    stream: &str,
    name: &str,
) -> Option<async_nats::jetstream::consumer::Info> {
    let stream = bus.context().get_stream(stream).await.expect("stream");
    match stream.consumer_info(name).await {
        Ok(info) => Some(info),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => None,
        Err(e) => panic!("reading the consumer {name}: {e}"),
    }
}

/// Replicas whose state is their own (search indexes) subscribe under
/// names of their own: each gets every event, and the server forgets the
/// consumer of an instance that stopped reading once the threshold passed,
/// while it keeps those still read and the shared ones.
#[tokio::test]
async fn consumers_of_instances_each_get_every_event_and_go_with_their_instance() {
    // Long enough that a loaded machine still pulls within it (the real
    // default is an hour).
    let threshold = Duration::from_secs(3);
    let f = fixture_with(|c| c.instance_inactive_threshold = threshold).await;
    let (token_a, token_b, token_shared) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let (a, b, shared) = (Recorder::new(), Recorder::new(), Recorder::new());
    let ta = f.bus.subscribe(
        instance_subscription("search-host-a", &["order.*"], a.clone()),
        token_a.clone(),
    );
    let tb = f.bus.subscribe(
        instance_subscription("search-host-b", &["order.*"], b.clone()),
        token_b.clone(),
    );
    let ts = f.bus.subscribe(
        subscription("order-log", &["order.*"], shared.clone()),
        token_shared.clone(),
    );
    let events = orders(20);
    f.bus.publish(&events).await.expect("publish");
    a.wait_for(20).await;
    b.wait_for(20).await;
    shared.wait_for(20).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(ids(&a.seen()), ids(&events), "a got every event once");
    assert_eq!(ids(&b.seen()), ids(&events), "b got every event once");

    let orders_stream = f.bus.stream_for("order.placed").expect("stream");
    let replays = f.bus.replay_stream_name();
    for name in ["search-host-a", "search-host-b"] {
        for stream in [&orders_stream, &replays] {
            let info = consumer_info(&f.bus, stream, name)
                .await
                .unwrap_or_else(|| panic!("{name} on {stream}"));
            assert_eq!(
                info.config.inactive_threshold, threshold,
                "{name} on {stream}"
            );
            assert_eq!(info.config.durable_name.as_deref(), Some(name));
        }
    }
    let info = consumer_info(&f.bus, &orders_stream, "order-log")
        .await
        .expect("the shared consumer");
    assert_eq!(info.config.inactive_threshold, Duration::ZERO, "kept");

    // Read for longer than the threshold, the consumers stay.
    tokio::time::sleep(threshold * 2).await;
    let later = orders(1);
    f.bus.publish(&later).await.expect("publish");
    a.wait_for(21).await;
    b.wait_for(21).await;

    // a's instance is gone: its consumers follow, on every stream. The
    // server looks once per threshold, so within two of them.
    stop(token_a, ta).await;
    let stopped = tokio::time::Instant::now();
    for stream in [&orders_stream, &replays] {
        while consumer_info(&f.bus, stream, "search-host-a")
            .await
            .is_some()
        {
            assert!(
                stopped.elapsed() < WAIT * 3,
                "the consumer of a stopped instance stays on {stream}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(consumer_info(&f.bus, &orders_stream, "search-host-b")
        .await
        .is_some());
    stop(token_shared, ts).await;
    tokio::time::sleep(threshold * 2).await;
    assert!(
        consumer_info(&f.bus, &orders_stream, "order-log")
            .await
            .is_some(),
        "a shared consumer is kept while nobody reads it"
    );
    stop(token_b, tb).await;
}

/// An instance restarted under its name before the threshold goes on from
/// its consumer's position.
#[tokio::test]
async fn an_instance_restarted_in_time_resumes_where_it_stopped() {
    let f = fixture().await;
    let before = orders(3);
    f.bus.publish(&before).await.expect("publish");
    let token = CancellationToken::new();
    let rec = Recorder::new();
    let task = f.bus.subscribe(
        instance_subscription("search-host-a", &["order.*"], rec.clone()),
        token.clone(),
    );
    rec.wait_for(3).await;
    stop(token, task).await;

    let after = orders(2);
    f.bus.publish(&after).await.expect("publish while stopped");
    let token = CancellationToken::new();
    let again = Recorder::new();
    let task = f.bus.subscribe(
        instance_subscription("search-host-a", &["order.*"], again.clone()),
        token.clone(),
    );
    again.wait_for(2).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(ids(&again.seen()), ids(&after));
    let stream = f.bus.stream_for("order.placed").expect("stream");
    let info = consumer_info(&f.bus, &stream, "search-host-a")
        .await
        .expect("the consumer");
    assert_eq!(
        info.config.inactive_threshold,
        Duration::from_secs(3600),
        "an hour by default"
    );
    stop(token, task).await;
}

#[tokio::test]
async fn a_failing_event_is_retried_parked_and_replayed() {
    let f = fixture().await;
    let token = CancellationToken::new();
    let rec = Recorder::new();
    let poison = event("order.placed", "o-poison");
    let fine = event("order.placed", "o-fine");
    rec.poison.lock().expect("lock").insert(poison.id);
    let task = f.bus.subscribe(
        subscription("poisoned", &["order.placed"], rec.clone()),
        token.clone(),
    );
    f.bus
        .publish(&[poison.clone(), fine.clone()])
        .await
        .expect("publish");

    // The healthy event is not held back by the failing one.
    assert_eq!(ids(&rec.wait_for(1).await), vec![fine.id]);

    let deadline = tokio::time::Instant::now() + WAIT;
    let dead = loop {
        let dead = f.bus.dead_letters(10).await.expect("dead letters");
        if !dead.is_empty() {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing was parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].consumer, "poisoned");
    assert_eq!(dead[0].envelope, poison);
    assert_eq!(dead[0].attempts, i64::from(MAX_ATTEMPTS));
    assert!(dead[0].error.contains("boom"), "error: {}", dead[0].error);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        rec.attempts_of(poison.id),
        MAX_ATTEMPTS as usize,
        "tried exactly the bounded number of times"
    );
    assert_eq!(rec.seen().len(), 1);

    // Fixed: the replay reaches the consumer and leaves the dead letters.
    rec.healthy.store(true, Ordering::SeqCst);
    assert!(f.bus.replay_dead_letter(dead[0].seq).await.expect("replay"));
    let seen = rec.wait_for(2).await;
    assert_eq!(ids(&seen), vec![fine.id, poison.id]);
    assert!(f
        .bus
        .dead_letters(10)
        .await
        .expect("dead letters")
        .is_empty());
    assert!(!f
        .bus
        .replay_dead_letter(dead[0].seq)
        .await
        .expect("replay twice"));
    assert!(!f
        .bus
        .replay_dead_letter(424_242)
        .await
        .expect("unknown seq"));
    tokio::time::sleep(SETTLE).await;
    // Nothing else arrived. (Delivery is at least once: on a loaded machine
    // an event whose ack came late may be seen again, so the distinct
    // events are counted.)
    let mut distinct = ids(&rec.seen());
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2);
    stop(token, task).await;
}

/// Waits until the dead letters are exactly `n`, none of them in `gone`.
async fn parked_besides(bus: &JetStreamBus, gone: &[i64], n: usize) -> Vec<DeadLetter> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let dead: Vec<DeadLetter> = bus
            .dead_letters(10)
            .await
            .expect("dead letters")
            .into_iter()
            .filter(|d| !gone.contains(&d.seq))
            .collect();
        if dead.len() >= n {
            return dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} dead letters, got {}",
            dead.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_replay_reaches_only_the_consumer_that_parked_the_event() {
    let f = fixture().await;
    let poison = event("order.placed", "o-poison");
    let failing = Recorder::new();
    failing.poison.lock().expect("lock").insert(poison.id);
    let other = Recorder::new();
    let token = CancellationToken::new();
    let failing_task = f.bus.subscribe(
        subscription("fails", &["order.placed"], failing.clone()),
        token.clone(),
    );
    // Another consumer of the type, reading the whole namespace.
    let other_token = CancellationToken::new();
    let other_task = f.bus.subscribe(
        subscription("handles", &["order.*"], other.clone()),
        other_token.clone(),
    );
    f.bus
        .publish(std::slice::from_ref(&poison))
        .await
        .expect("publish");
    assert_eq!(ids(&other.wait_for(1).await), vec![poison.id]);
    let dead = parked_besides(&f.bus, &[], 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].consumer, "fails");
    let events_stream = f.bus.stream_for("order.placed").expect("stream");
    assert_eq!(stream_messages(&f.bus, &events_stream).await, 1);

    // Replayed while the cause is still there: only the consumer that
    // parked it tries again, every attempt, and parks it again.
    assert!(f.bus.replay(dead[0].seq).await.expect("replay"));
    let again = parked_besides(&f.bus, &[dead[0].seq], 1).await;
    assert_eq!(again.len(), 1, "the first dead letter is gone");
    assert_eq!(again[0].consumer, "fails");
    assert_eq!(again[0].envelope, poison);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(failing.attempts_of(poison.id), 2 * MAX_ATTEMPTS as usize);
    assert_eq!(
        other.attempts_of(poison.id),
        1,
        "the other consumer is left alone"
    );

    // Fixed, and replayed while the consumer is stopped: the replay waits
    // for it and reaches it when it starts again, and nobody else.
    stop(token, failing_task).await;
    failing.healthy.store(true, Ordering::SeqCst);
    assert!(f.bus.replay(again[0].seq).await.expect("replay"));
    assert!(!f.bus.replay(again[0].seq).await.expect("replay twice"));
    tokio::time::sleep(SETTLE).await;
    assert!(failing.seen().is_empty());
    let token = CancellationToken::new();
    let failing_task = f.bus.subscribe(
        subscription("fails", &["order.placed"], failing.clone()),
        token.clone(),
    );
    assert_eq!(ids(&failing.wait_for(1).await), vec![poison.id]);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(failing.seen().len(), 1);
    assert_eq!(
        other.attempts_of(poison.id),
        1,
        "the other consumer is left alone"
    );
    assert_eq!(other.seen().len(), 1);
    assert!(f
        .bus
        .dead_letters(10)
        .await
        .expect("dead letters")
        .is_empty());
    // The event's stream is untouched, and an acknowledged replay is gone.
    assert_eq!(stream_messages(&f.bus, &events_stream).await, 1);
    let replays = f.bus.replay_stream_name();
    let deadline = tokio::time::Instant::now() + WAIT;
    while stream_messages(&f.bus, &replays).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay stays in its stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(token, failing_task).await;
    stop(other_token, other_task).await;
}

#[tokio::test]
async fn a_consumer_resumes_where_it_stopped() {
    let f = fixture().await;
    let before = orders(3);
    f.bus.publish(&before).await.expect("publish");
    let token = CancellationToken::new();
    let rec = Recorder::new();
    let task = f.bus.subscribe(
        subscription("resumer", &["order.*"], rec.clone()),
        token.clone(),
    );
    rec.wait_for(3).await;
    stop(token, task).await;

    let after = orders(2);
    f.bus.publish(&after).await.expect("publish while stopped");
    let token = CancellationToken::new();
    let again = Recorder::new();
    let task = f.bus.subscribe(
        subscription("resumer", &["order.*"], again.clone()),
        token.clone(),
    );
    again.wait_for(2).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(ids(&again.seen()), ids(&after));
    stop(token, task).await;
}

#[tokio::test]
async fn rewind_delivers_the_history_again() {
    let f = fixture().await;
    let history = orders(3);
    f.bus.publish(&history).await.expect("publish");
    // A name JetStream does not accept as it is.
    let consumer = "read.model *1";
    let token = CancellationToken::new();
    let rec = Recorder::new();
    let task = f.bus.subscribe(
        subscription(consumer, &["order.*"], rec.clone()),
        token.clone(),
    );
    rec.wait_for(3).await;
    stop(token, task).await;

    f.bus.rewind(consumer).await.expect("rewind");
    f.bus.rewind(consumer).await.expect("rewinding twice");
    f.bus
        .rewind("never-subscribed")
        .await
        .expect("unknown consumer");
    let token = CancellationToken::new();
    let again = Recorder::new();
    let task = f.bus.subscribe(
        subscription(consumer, &["order.*"], again.clone()),
        token.clone(),
    );
    again.wait_for(3).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(ids(&again.seen()), ids(&history));
    stop(token, task).await;
}

#[tokio::test]
async fn ping_answers_and_an_unreachable_server_fails_fast() {
    let f = fixture().await;
    f.bus.ping().await.expect("ping");

    let mut config = JetStreamConfig::new("nats://127.0.0.1:1");
    config.request_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    assert!(JetStreamBus::connect(config).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn events_that_cannot_be_subjects_are_refused() {
    let f = fixture().await;
    for bad in ["order.*", "order..placed", "dlq.parked", "order placed", ""] {
        assert!(
            f.bus.publish(&[event(bad, "x")]).await.is_err(),
            "{bad:?} was accepted"
        );
    }
}

#[tokio::test]
async fn a_consumer_that_wants_more_types_keeps_its_position() {
    let f = fixture().await;
    let old = orders(2);
    f.bus.publish(&old).await.expect("publish");
    let token = CancellationToken::new();
    let rec = Recorder::new();
    let task = f.bus.subscribe(
        subscription("evolving", &["order.placed"], rec.clone()),
        token.clone(),
    );
    rec.wait_for(2).await;
    stop(token, task).await;

    let placed = event("order.placed", "o-3");
    let confirmed = event("order.confirmed", "o-3");
    f.bus
        .publish(&[placed.clone(), confirmed.clone()])
        .await
        .expect("publish");
    // A new release subscribes to one more type: another filter subject.
    let token = CancellationToken::new();
    let again = Recorder::new();
    let task = f.bus.subscribe(
        subscription(
            "evolving",
            &["order.placed", "order.confirmed"],
            again.clone(),
        ),
        token.clone(),
    );
    again.wait_for(2).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(ids(&again.seen()), vec![placed.id, confirmed.id]);
    stop(token, task).await;
}

/// `bus.nats_url` may list the seed servers of a cluster, comma-separated.
#[tokio::test]
async fn several_seed_servers_may_be_given() {
    let url = nats_url();
    let both = format!("{url}, {url}");
    let f = fixture_with(|c| c.url = both).await;
    f.bus.ping().await.expect("connected through the seed list");

    let mut bad = JetStreamConfig::new(format!("{url},nats://127.0.0.1:notaport"));
    bad.prefix = f.prefix.clone();
    let err = match JetStreamBus::connect(bad).await {
        Ok(_) => panic!("an invalid address is refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("notaport"), "{err}");
}

#[tokio::test]
async fn a_stream_may_keep_its_events_for_a_time_of_its_own() {
    let f = fixture_with(|c| {
        c.streams.push(
            StreamSpec::new("interactions", &["interaction"]).keeping(Duration::from_secs(3600)),
        );
    })
    .await;
    f.bus
        .publish(&[
            event("interaction.product_viewed", "p-1"),
            event("order.placed", "o-1"),
        ])
        .await
        .expect("published");
    let max_age = |stream: String| {
        let bus = &f.bus;
        async move {
            let mut s = bus.context().get_stream(stream).await.expect("stream");
            s.info().await.expect("stream info").config.max_age
        }
    };
    let upper = f.prefix.to_uppercase();
    assert_eq!(
        max_age(format!("{upper}_INTERACTIONS")).await,
        Duration::from_secs(3600)
    );
    assert_eq!(max_age(format!("{upper}_ORDERS")).await, Duration::ZERO);
}
