use crate::support::stores;
use async_trait::async_trait;
use mercato_kernel::bus::{EventBus, EventHandler, LogBus, Subscription};
use mercato_kernel::db::{Migrations, Tx};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::idempotency::{self, StoredResponse};
use mercato_kernel::outbox::{relay_batch, Outbox};
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
