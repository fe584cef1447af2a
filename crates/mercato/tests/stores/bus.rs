use crate::support::{pending_events, stores};
use async_trait::async_trait;
use mercato_kernel::bus::{EventBus, EventHandler, LogBus, Subscription};
use mercato_kernel::db::{Migrations, Tx};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::idempotency::{self, StoredResponse};
use mercato_kernel::outbox::{prune_upto, relay_batch, Outbox};
use mercato_kernel::{inbox, Envelope};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const NONE: Migrations = Migrations {
    sqlite: &[],
    postgres: &[],
};

#[derive(Serialize, Deserialize)]
struct Ticked {
    n: u32,
}
impl DomainEvent for Ticked {
    const TYPE: &'static str = "test.ticked";
}

#[derive(Serialize, Deserialize)]
struct Other;
impl DomainEvent for Other {
    const TYPE: &'static str = "other.happened";
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<u32>>>);

#[async_trait]
impl EventHandler for Collect {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let t: Ticked = event.decode()?;
        self.0.lock().expect("lock").push(t.n);
        Ok(())
    }
}

impl Collect {
    fn seen(&self) -> Vec<u32> {
        self.0.lock().expect("lock").clone()
    }
}

async fn write(db: &mercato_kernel::db::Db, outbox: &Outbox, events: &[Envelope]) {
    let mut tx: Tx = db.begin().await.expect("begin");
    outbox.add(&mut tx, events).await.expect("outbox");
    tx.commit().await.expect("commit");
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen in 5 s");
}

#[tokio::test]
async fn the_outbox_reaches_consumers_in_order_once_and_offsets_survive() {
    for s in stores("events", &NONE).await {
        let bus = LogBus::open(s.db.clone()).await.expect("bus");
        let outbox = Outbox::new();
        let events: Vec<Envelope> = (1..=5)
            .map(|n| Envelope::new("test", "x", &Ticked { n }).expect("event"))
            .collect();
        write(&s.db, &outbox, &events[..3]).await;
        write(
            &s.db,
            &outbox,
            &[Envelope::new("test", "y", &Other).expect("event")],
        )
        .await;
        write(&s.db, &outbox, &events[3..]).await;
        assert_eq!(relay_batch(&s.db, &bus).await.expect("relay"), 6);
        assert_eq!(
            relay_batch(&s.db, &bus).await.expect("relay"),
            0,
            "published once"
        );
        // Publishing the same event again is dropped by the log.
        bus.publish(&events[..1]).await.expect("republish");

        let seen = Collect::default();
        let stop = CancellationToken::new();
        let task = bus.subscribe(
            Subscription {
                consumer: "c1".into(),
                per_instance: false,
                event_types: vec!["test.*".into()],
                handler: Arc::new(seen.clone()),
            },
            stop.clone(),
        );
        wait_for("delivery", || seen.seen().len() == 5).await;
        assert_eq!(seen.seen(), vec![1, 2, 3, 4, 5], "{:?}", s.backend);
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();
        task.await.expect("consumer stops");

        // A restarted consumer resumes after its offset: only new events.
        write(
            &s.db,
            &outbox,
            &[Envelope::new("test", "x", &Ticked { n: 6 }).expect("event")],
        )
        .await;
        relay_batch(&s.db, &bus).await.expect("relay");
        let again = Collect::default();
        let stop = CancellationToken::new();
        let task = bus.subscribe(
            Subscription {
                consumer: "c1".into(),
                per_instance: false,
                event_types: vec!["test.ticked".into()],
                handler: Arc::new(again.clone()),
            },
            stop.clone(),
        );
        wait_for("delivery after restart", || again.seen() == vec![6]).await;
        stop.cancel();
        task.await.expect("consumer stops");
        assert_eq!(
            bus.read(0, 100).await.expect("read").len(),
            7,
            "{:?}",
            s.backend
        );
    }
}

/// A batch larger than one append statement keeps its order, wakes the
/// consumer that wants it while it waits, and the offset of a consumer that
/// has nothing to do is left alone.
#[tokio::test]
async fn a_large_batch_is_appended_in_order_and_wakes_its_consumers() {
    for s in stores("events", &NONE).await {
        let bus = LogBus::open(s.db.clone()).await.expect("bus");
        let seen = Collect::default();
        let stop = CancellationToken::new();
        let task = bus.subscribe(
            Subscription {
                consumer: "ticks".into(),
                per_instance: false,
                event_types: vec!["test.ticked".into()],
                handler: Arc::new(seen.clone()),
            },
            stop.clone(),
        );
        let others = Collect::default();
        let other_task = bus.subscribe(
            Subscription {
                consumer: "others".into(),
                per_instance: false,
                event_types: vec!["other.*".into()],
                handler: Arc::new(others.clone()),
            },
            stop.clone(),
        );
        // Both consumers are idle before anything is published.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let events: Vec<Envelope> = (1..=250)
            .map(|n| Envelope::new("test", "x", &Ticked { n }).expect("event"))
            .collect();
        bus.publish(&events).await.expect("publish");
        wait_for("delivery of the batch", || seen.seen().len() == 250).await;
        assert_eq!(
            seen.seen(),
            (1..=250).collect::<Vec<u32>>(),
            "{:?}",
            s.backend
        );
        let log = bus.read(0, 1000).await.expect("read");
        let ids: Vec<_> = log.iter().map(|(_, e)| e.id).collect();
        assert_eq!(ids, events.iter().map(|e| e.id).collect::<Vec<_>>());
        assert!(log.windows(2).all(|w| w[0].0 < w[1].0));
        stop.cancel();
        task.await.expect("consumer stops");
        other_task.await.expect("consumer stops");
        assert!(others.seen().is_empty());
        assert_eq!(
            bus.position("ticks").await.expect("position"),
            log[249].0,
            "the offset is saved when the consumer stops"
        );
    }
}

struct Failing;

#[async_trait]
impl EventHandler for Failing {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let t: Ticked = event.decode()?;
        anyhow::ensure!(t.n != 1, "poison event");
        Ok(())
    }
}

#[tokio::test]
async fn a_poison_event_is_parked_and_the_consumer_moves_on() {
    for s in stores("events", &NONE).await {
        let bus = LogBus::open(s.db.clone()).await.expect("bus");
        let events: Vec<Envelope> = (1..=2)
            .map(|n| Envelope::new("test", "x", &Ticked { n }).expect("event"))
            .collect();
        bus.publish(&events).await.expect("publish");
        let stop = CancellationToken::new();
        let task = bus.subscribe(
            Subscription {
                consumer: "poisoned".into(),
                per_instance: false,
                event_types: vec!["test.ticked".into()],
                handler: Arc::new(Failing),
            },
            stop.clone(),
        );
        for _ in 0..400 {
            if bus.position("poisoned").await.expect("position") >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        stop.cancel();
        task.await.expect("stops");
        let dead = bus.dead_letters().await.expect("dead letters");
        assert_eq!(dead.len(), 1, "{:?}", s.backend);
        assert_eq!(dead[0].envelope.id, events[0].id);
        assert!(dead[0].error.contains("poison"));
        assert_eq!(bus.position("poisoned").await.expect("position"), 2);
    }
}

/// Counts its calls per event; fails on `n == 1` until made healthy.
#[derive(Clone, Default)]
struct Flaky {
    calls: Arc<Mutex<Vec<u32>>>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl EventHandler for Flaky {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let t: Ticked = event.decode()?;
        self.calls.lock().expect("lock").push(t.n);
        anyhow::ensure!(
            t.n != 1 || self.healthy.load(std::sync::atomic::Ordering::SeqCst),
            "poison event"
        );
        Ok(())
    }
}

impl Flaky {
    fn calls_of(&self, n: u32) -> usize {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| **c == n)
            .count()
    }
}

async fn parked_once_more(bus: &LogBus, before: &[i64]) -> mercato_kernel::bus::DeadLetter {
    for _ in 0..400 {
        let dead = bus.dead_letters().await.expect("dead letters");
        if let Some(d) = dead.into_iter().find(|d| !before.contains(&d.seq)) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing was parked in 10 s");
}

#[tokio::test]
async fn a_replay_reaches_only_the_consumer_that_parked_the_event() {
    for s in stores("replays", &NONE).await {
        let bus = LogBus::open(s.db.clone()).await.expect("bus");
        let failing = Flaky::default();
        let other = Collect::default();
        let subscribe =
            |consumer: &str, handler: Arc<dyn EventHandler>, stop: &CancellationToken| {
                bus.subscribe(
                    Subscription {
                        consumer: consumer.into(),
                        per_instance: false,
                        event_types: vec!["test.ticked".into()],
                        handler,
                    },
                    stop.clone(),
                )
            };
        let stop = CancellationToken::new();
        let failing_task = subscribe("fails", Arc::new(failing.clone()), &stop);
        let other_stop = CancellationToken::new();
        let other_task = subscribe("handles", Arc::new(other.clone()), &other_stop);
        let events: Vec<Envelope> = (1..=2)
            .map(|n| Envelope::new("test", "x", &Ticked { n }).expect("event"))
            .collect();
        bus.publish(&events).await.expect("publish");
        let first = parked_once_more(&bus, &[]).await;
        assert_eq!(first.consumer, "fails", "{:?}", s.backend);
        assert_eq!(first.envelope.id, events[0].id);
        wait_for("the other consumer", || other.seen() == vec![1, 2]).await;

        // Replayed while the cause is still there: only the consumer that
        // parked it tries again, every attempt, and parks it again.
        assert!(bus.replay(first.seq).await.expect("replay"));
        let second = parked_once_more(&bus, &[first.seq]).await;
        assert_eq!(second.consumer, "fails");
        assert_eq!(second.envelope.id, events[0].id);
        assert_eq!(bus.dead_letters().await.expect("dead letters").len(), 1);
        assert_eq!(
            failing.calls_of(1),
            2 * mercato_kernel::bus::MAX_ATTEMPTS as usize
        );
        assert_eq!(failing.calls_of(2), 1);

        // Fixed, and replayed while the consumer is stopped: the replay
        // waits for it and reaches it when it starts again.
        stop.cancel();
        failing_task.await.expect("stops");
        failing
            .healthy
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(bus.replay(second.seq).await.expect("replay"));
        assert!(!bus.replay(second.seq).await.expect("replay twice"));
        assert!(!bus.replay(424_242).await.expect("unknown dead letter"));
        let stop = CancellationToken::new();
        let failing_task = subscribe("fails", Arc::new(failing.clone()), &stop);
        wait_for("the replay", || {
            failing.calls_of(1) == 2 * mercato_kernel::bus::MAX_ATTEMPTS as usize + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            failing.calls_of(2),
            1,
            "the log is not read again ({:?})",
            s.backend
        );
        assert_eq!(
            other.seen(),
            vec![1, 2],
            "the other consumer never sees it again ({:?})",
            s.backend
        );
        assert!(bus.dead_letters().await.expect("dead letters").is_empty());
        assert_eq!(
            bus.read(0, 100).await.expect("read").len(),
            2,
            "the log is unchanged"
        );
        stop.cancel();
        other_stop.cancel();
        failing_task.await.expect("stops");
        other_task.await.expect("stops");
    }
}

#[tokio::test]
async fn the_inbox_lets_an_event_through_once() {
    for s in stores("inbox", &NONE).await {
        let id = mercato_kernel::id::new_id();
        let mut tx = s.db.begin().await.expect("begin");
        assert!(inbox::claim(&mut tx, "c", id).await.expect("claim"));
        tx.commit().await.expect("commit");
        let mut tx = s.db.begin().await.expect("begin");
        assert!(
            !inbox::claim(&mut tx, "c", id).await.expect("claim"),
            "{:?}",
            s.backend
        );
        assert!(inbox::claim(&mut tx, "other consumer", id)
            .await
            .expect("claim"));
        drop(tx);
        // A rolled-back claim does not count.
        let mut tx = s.db.begin().await.expect("begin");
        assert!(inbox::claim(&mut tx, "other consumer", id)
            .await
            .expect("claim"));
    }
}

#[tokio::test]
async fn idempotency_keys_replay_and_refuse_other_requests() {
    for s in stores("idem", &NONE).await {
        let answer = StoredResponse {
            status: 202,
            body: "{\"id\":1}".into(),
        };
        assert!(idempotency::lookup(&s.db, "scope", "k1", "h1")
            .await
            .expect("lookup")
            .is_none());
        let mut tx = s.db.begin().await.expect("begin");
        assert!(idempotency::record(&mut tx, "scope", "k1", "h1", &answer)
            .await
            .expect("record"));
        tx.commit().await.expect("commit");
        let replay = idempotency::lookup(&s.db, "scope", "k1", "h1")
            .await
            .expect("lookup")
            .expect("stored");
        assert_eq!(
            (replay.status, replay.body.as_str()),
            (202, "{\"id\":1}"),
            "{:?}",
            s.backend
        );
        let other = idempotency::lookup(&s.db, "scope", "k1", "h2").await;
        assert_eq!(other.map(|_| ()).map_err(|e| e.status.as_u16()), Err(409));
        assert!(idempotency::lookup(&s.db, "another scope", "k1", "h2")
            .await
            .expect("lookup")
            .is_none());
        let mut tx = s.db.begin().await.expect("begin");
        assert!(!idempotency::record(&mut tx, "scope", "k1", "h1", &answer)
            .await
            .expect("record"));
    }
}

/// A bus that records what it is given and, on the first publish, lets a
/// writer commit before the relay marks its batch published.
struct CommitDuringPublish {
    published: Mutex<Vec<uuid::Uuid>>,
    during: tokio::sync::Mutex<Option<Tx>>,
}

#[async_trait]
impl EventBus for CommitDuringPublish {
    async fn publish(&self, events: &[Envelope]) -> anyhow::Result<()> {
        self.published
            .lock()
            .expect("lock")
            .extend(events.iter().map(|e| e.id));
        if let Some(tx) = self.during.lock().await.take() {
            tx.commit().await?;
        }
        Ok(())
    }
    fn subscribe(
        &self,
        _sub: Subscription,
        _shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async {})
    }
    async fn ping(&self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn rewind(&self, _consumer: &str) -> anyhow::Result<()> {
        Ok(())
    }
    async fn parked(&self, _limit: usize) -> anyhow::Result<Vec<mercato_kernel::bus::DeadLetter>> {
        Ok(Vec::new())
    }
    async fn replay(&self, _seq: i64) -> anyhow::Result<bool> {
        Ok(false)
    }
}

/// On PostgreSQL an outbox row can commit after a row with a higher
/// sequence number: the relay must not mark it published with its batch.
#[tokio::test]
async fn an_outbox_row_committed_late_is_still_published() {
    for s in stores("events", &NONE).await {
        if s.backend != mercato_kernel::db::Backend::Postgres {
            // SQLite serialises writers: rows commit in sequence order.
            continue;
        }
        let outbox = Outbox::new();
        let event = |n| Envelope::new("test", "x", &Ticked { n }).expect("event");
        let (first, late, third) = (event(1), event(2), event(3));
        write(&s.db, &outbox, std::slice::from_ref(&first)).await;
        let mut open = s.db.begin().await.expect("begin");
        outbox
            .add(&mut open, std::slice::from_ref(&late))
            .await
            .expect("outbox");
        write(&s.db, &outbox, std::slice::from_ref(&third)).await;

        let bus = CommitDuringPublish {
            published: Mutex::new(Vec::new()),
            during: tokio::sync::Mutex::new(Some(open)),
        };
        assert_eq!(relay_batch(&s.db, &bus).await.expect("relay"), 2);
        assert_eq!(
            relay_batch(&s.db, &bus).await.expect("relay"),
            1,
            "the late row is still pending"
        );
        assert_eq!(
            *bus.published.lock().expect("lock"),
            vec![first.id, third.id, late.id]
        );
    }
}

#[tokio::test]
async fn pruning_deletes_published_rows_up_to_a_mark_and_keeps_the_rest() {
    for s in stores("prune", &NONE).await {
        let bus = LogBus::open(s.db.clone()).await.expect("bus");
        let outbox = Outbox::new();
        // More rows than one prune statement deletes.
        let events: Vec<Envelope> = (0..2_600)
            .map(|n| Envelope::new("test", "x", &Ticked { n }).expect("event"))
            .collect();
        for chunk in events.chunks(500) {
            write(&s.db, &outbox, chunk).await;
        }
        while relay_batch(&s.db, &bus).await.expect("relay") > 0 {}
        let later: Vec<Envelope> = (0..3)
            .map(|n| Envelope::new("test", "x", &Ticked { n }).expect("event"))
            .collect();
        write(&s.db, &outbox, &later).await;
        let (upto,): (i64,) = sqlx::query_as("SELECT CAST(MAX(seq) AS BIGINT) FROM outbox")
            .fetch_one(s.db.pool())
            .await
            .expect("max seq");

        // The mark covers every row; only the published ones go.
        let pruned = prune_upto(&s.db, upto).await.expect("prune");
        assert_eq!(pruned, 2_600, "{:?}", s.backend);
        assert_eq!(pending_events(&s.db).await.len(), 3, "{:?}", s.backend);
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
            .fetch_one(s.db.pool())
            .await
            .expect("count");
        assert_eq!(left, 3, "{:?}", s.backend);
        assert_eq!(relay_batch(&s.db, &bus).await.expect("relay"), 3);
    }
}
