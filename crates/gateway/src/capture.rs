//! Interaction capture at the public edge (see
//! [`mercato_contracts::interactions`]): the observation a context put in
//! its answer's header is taken off and, when the answer is a success,
//! recorded with who made the request as an `interaction.*` event.
//!
//! Recording never waits: the event goes into a bounded buffer, and a task
//! publishes what gathered there in batches. When the buffer is full (the
//! bus is slow or down) the event is dropped and counted
//! (`mercato_interactions_dropped_total{reason}`); what was published is
//! counted in `mercato_interactions_recorded_total`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mercato_contracts::interactions::{Observed, Visitor, HEADER, SESSION_HEADER};
use mercato_kernel::auth::Authentication;
use mercato_kernel::bus::EventBus;
use mercato_kernel::Envelope;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Events published together, at most.
const BATCH: usize = 500;
/// How long the first event of a batch waits for others.
const GATHER: Duration = Duration::from_millis(200);
/// A publication that takes longer fails: its events are dropped.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// What a router does with the interaction header of its answers.
#[derive(Clone)]
pub enum Capture {
    /// A context behind a gateway: the header goes on to the gateway.
    Relay,
    /// The public edge: the header is taken off, and the observation
    /// recorded when there is a recorder.
    Edge(Option<Recorder>),
}

/// The buffer interactions go into; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Envelope>,
}

impl Recorder {
    /// A recorder holding at most `capacity` events not yet published, and
    /// the task that publishes them until `shutdown` (then what is left,
    /// once) to the bus `bus` resolves to: events are buffered (and dropped
    /// once the buffer is full) until it does.
    pub fn start(
        bus: impl Future<Output = Arc<dyn EventBus>> + Send + 'static,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> (Recorder, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(publish_batches(bus, rx, shutdown));
        (Recorder { tx }, task)
    }

    fn record(&self, event: Envelope) {
        let reason = match self.tx.try_send(event) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => "buffer_full",
            Err(mpsc::error::TrySendError::Closed(_)) => "stopped",
        };
        metrics::counter!("mercato_interactions_dropped_total", "reason" => reason).increment(1);
    }
}

async fn publish_batches(
    bus: impl Future<Output = Arc<dyn EventBus>>,
    mut rx: mpsc::Receiver<Envelope>,
    shutdown: CancellationToken,
) {
    // A bus already there is taken even when stopping: what was recorded
    // goes out.
    let bus = tokio::select! {
        biased;
        bus = bus => bus,
        _ = shutdown.cancelled() => return,
    };
    loop {
        let first = tokio::select! {
            event = rx.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = shutdown.cancelled() => {
                rx.close();
                let mut rest = Vec::new();
                while let Ok(event) = rx.try_recv() {
                    rest.push(event);
                }
                for batch in rest.chunks(BATCH) {
                    publish(bus.as_ref(), batch).await;
                }
                return;
            }
        };
        let mut batch = vec![first];
        let until = Instant::now() + GATHER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        publish(bus.as_ref(), &batch).await;
    }
}

async fn publish(bus: &dyn EventBus, batch: &[Envelope]) {
    let n = batch.len() as u64;
    match tokio::time::timeout(PUBLISH_TIMEOUT, bus.publish(batch)).await {
        Ok(Ok(())) => {
            metrics::counter!("mercato_interactions_recorded_total").increment(n);
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, events = n, "interactions not recorded: the bus refused them");
            metrics::counter!("mercato_interactions_dropped_total", "reason" => "bus").increment(n);
        }
        Err(_) => {
            tracing::warn!(
                events = n,
                "interactions not recorded: the bus did not answer in time"
            );
            metrics::counter!("mercato_interactions_dropped_total", "reason" => "bus").increment(n);
        }
    }
}

/// Middleware at the edge, inside authentication (it reads the caller).
pub(crate) async fn capture(
    State(recorder): State<Option<Recorder>>,
    req: Request,
    next: Next,
) -> Response {
    let visitor = Visitor {
        customer_id: match req.extensions().get::<Authentication>() {
            Some(Authentication::User(caller)) => Some(caller.user_id),
            _ => None,
        },
        session_id: Visitor::session(req.headers().get(SESSION_HEADER)),
    };
    let mut response = next.run(req).await;
    let Some(value) = response.headers_mut().remove(HEADER) else {
        return response;
    };
    if let Some(recorder) = recorder.filter(|_| response.status().is_success()) {
        match Observed::from_header(&value).map(|seen| seen.event(visitor)) {
            Some(Ok(event)) => recorder.record(event),
            Some(Err(e)) => tracing::debug!(error = %e, "an interaction could not be encoded"),
            None => tracing::debug!("an interaction header that is not one"),
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_kernel::bus::LogBus;
    use mercato_kernel::db::{Db, StoreConfig};

    async fn log() -> (tempfile::TempDir, LogBus) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = Db::connect(&StoreConfig {
            url: format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("events.db").display()
            ),
            schema: None,
            max_connections: 1,
        })
        .await
        .expect("store");
        (dir, LogBus::open(db).await.expect("log"))
    }

    fn viewed() -> Envelope {
        let seen = Observed::ProductViewed {
            product_id: uuid::Uuid::nil(),
        };
        seen.event(Visitor::default()).expect("event")
    }

    #[tokio::test]
    async fn recorded_interactions_reach_the_bus_in_a_batch() {
        let (_dir, log) = log().await;
        let shutdown = CancellationToken::new();
        let bus: Arc<dyn EventBus> = Arc::new(log.clone());
        let (recorder, task) = Recorder::start(async move { bus }, 16, shutdown.clone());
        for _ in 0..3 {
            recorder.record(viewed());
        }
        shutdown.cancel();
        task.await.expect("publisher");
        let events = log.read(0, 10).await.expect("the log");
        assert_eq!(events.len(), 3);
        assert!(events
            .iter()
            .all(|(_, e)| e.event_type == "interaction.product_viewed" && e.source == "gateway"));
    }

    /// While the bus cannot be reached, what does not fit in the buffer is
    /// dropped at once: recording never waits.
    #[tokio::test]
    async fn what_does_not_fit_while_the_bus_is_away_is_dropped() {
        let (_dir, log) = log().await;
        let (reachable, reached) = tokio::sync::oneshot::channel::<()>();
        let bus: Arc<dyn EventBus> = Arc::new(log.clone());
        let shutdown = CancellationToken::new();
        let (recorder, task) = Recorder::start(
            async move {
                let _ = reached.await;
                bus
            },
            2,
            shutdown.clone(),
        );
        for _ in 0..10 {
            recorder.record(viewed());
        }
        let _ = reachable.send(());
        tokio::time::sleep(GATHER * 2).await;
        shutdown.cancel();
        task.await.expect("publisher");
        assert_eq!(log.read(0, 100).await.expect("the log").len(), 2);
    }
}
