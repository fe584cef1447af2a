//! Interaction capture at the public edge (see
//! [`mercato_contracts::interactions`]): the observation a context put in
//! its answer's header is taken off and, when the answer is a success,
//! recorded with who made the request as an `interaction.*` event.
//!
//! Recording never waits: the observation goes into a bounded buffer, and a
//! task gathers what arrives there for up to [`WINDOW`], coalescing what one
//! visitor did alike (the same product viewed again, the same search) into
//! one event with a count, and publishes the window's events together. A
//! product read thousands of times a second thus costs the bus an event per
//! visitor and window, not per read. When the buffer is full (the bus is
//! slow or down) an observation is dropped and counted
//! (`mercato_interactions_dropped_total{reason}`); what was published is
//! counted in `mercato_interactions_recorded_total` (observations, not
//! events).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mercato_contracts::interactions::{Observed, Visitor, HEADER, SESSION_HEADER};
use mercato_kernel::auth::Authentication;
use mercato_kernel::bus::EventBus;
use mercato_kernel::Envelope;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long observations are gathered before they are published.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Distinct observations a window holds at most; a full window is
/// published at once.
const MAX_DISTINCT: usize = 2_000;
/// Events published in one call, at most.
const BATCH: usize = 500;
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

/// One observation by one visitor.
type Seen = (Observed, Visitor);

/// The buffer interactions go into; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Seen>,
}

impl Recorder {
    /// A recorder holding at most `capacity` observations not yet gathered,
    /// and the task that publishes them until `shutdown` (then what is
    /// left, once) to the bus `bus` resolves to: observations are buffered
    /// (and dropped once the buffer is full) until it does.
    pub fn start(
        bus: impl Future<Output = Arc<dyn EventBus>> + Send + 'static,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> (Recorder, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(publish_windows(bus, rx, shutdown));
        (Recorder { tx }, task)
    }

    fn record(&self, seen: Seen) {
        let reason = match self.tx.try_send(seen) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => "buffer_full",
            Err(mpsc::error::TrySendError::Closed(_)) => "stopped",
        };
        metrics::counter!("mercato_interactions_dropped_total", "reason" => reason).increment(1);
    }
}

/// A window's observations: each distinct one, how often.
#[derive(Default)]
struct Window {
    seen: HashMap<Seen, u64>,
    observations: u64,
}

impl Window {
    fn add(&mut self, seen: Seen) {
        *self.seen.entry(seen).or_insert(0) += 1;
        self.observations += 1;
    }

    fn full(&self) -> bool {
        self.seen.len() >= MAX_DISTINCT
    }
}

async fn publish_windows(
    bus: impl Future<Output = Arc<dyn EventBus>>,
    mut rx: mpsc::Receiver<Seen>,
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
            seen = rx.recv() => match seen {
                Some(seen) => seen,
                None => return,
            },
            _ = shutdown.cancelled() => {
                rx.close();
                let mut rest = Window::default();
                while let Ok(seen) = rx.try_recv() {
                    rest.add(seen);
                }
                publish(bus.as_ref(), rest).await;
                return;
            }
        };
        let mut window = Window::default();
        window.add(first);
        let until = Instant::now() + WINDOW;
        while !window.full() {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(seen)) => window.add(seen),
                Ok(None) | Err(_) => break,
            }
        }
        publish(bus.as_ref(), window).await;
    }
}

async fn publish(bus: &dyn EventBus, window: Window) {
    let observations = window.observations;
    let events: Vec<Envelope> = window
        .seen
        .into_iter()
        .filter_map(
            |((observed, visitor), count)| match observed.event(visitor, count) {
                Ok(event) => Some(event),
                Err(e) => {
                    tracing::debug!(error = %e, "an interaction could not be encoded");
                    None
                }
            },
        )
        .collect();
    let mut failed = false;
    for batch in events.chunks(BATCH) {
        match tokio::time::timeout(PUBLISH_TIMEOUT, bus.publish(batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, events = batch.len(), "interactions not recorded: the bus refused them");
                failed = true;
            }
            Err(_) => {
                tracing::warn!(
                    events = batch.len(),
                    "interactions not recorded: the bus did not answer in time"
                );
                failed = true;
            }
        }
    }
    if failed {
        metrics::counter!("mercato_interactions_dropped_total", "reason" => "bus")
            .increment(observations);
    } else {
        metrics::counter!("mercato_interactions_recorded_total").increment(observations);
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
        match Observed::from_header(&value) {
            Some(observed) => recorder.record((observed, visitor)),
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

    fn viewed(product: u128) -> Seen {
        let seen = Observed::ProductViewed {
            product_id: uuid::Uuid::from_u128(product),
        };
        (seen, Visitor::default())
    }

    /// Alike observations become one event with their count; the others
    /// an event each.
    #[tokio::test]
    async fn a_windows_alike_interactions_become_one_event() {
        let (_dir, log) = log().await;
        let shutdown = CancellationToken::new();
        let bus: Arc<dyn EventBus> = Arc::new(log.clone());
        let (recorder, task) = Recorder::start(async move { bus }, 16, shutdown.clone());
        for product in [1, 1, 1, 2] {
            recorder.record(viewed(product));
        }
        shutdown.cancel();
        task.await.expect("publisher");
        let mut counts: Vec<(String, u64)> = log
            .read(0, 10)
            .await
            .expect("the log")
            .into_iter()
            .map(|(_, e)| {
                assert_eq!(e.event_type, "interaction.product_viewed");
                assert_eq!(e.source, "gateway");
                (e.subject.clone(), e.payload["count"].as_u64().unwrap_or(0))
            })
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [
                (uuid::Uuid::from_u128(1).to_string(), 3),
                (uuid::Uuid::from_u128(2).to_string(), 1)
            ]
        );
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
        for product in 0..10 {
            recorder.record(viewed(product));
        }
        let _ = reachable.send(());
        shutdown.cancel();
        task.await.expect("publisher");
        assert_eq!(log.read(0, 100).await.expect("the log").len(), 2);
    }
}
