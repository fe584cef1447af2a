//! The distributed event bus: [`JetStreamBus`], the [`EventBus`] on NATS
//! JetStream.
//!
//! # Layout
//!
//! - Subjects are `<prefix>.<event type>`: `mercato.order.confirmed`. The
//!   prefix is configurable, so that several installations (or test runs)
//!   can share one NATS account.
//! - One stream per publishing context, `<PREFIX>_<CONTEXT>` (`MERCATO_CATALOG`),
//!   covering `<prefix>.<namespace>.>` for each event type namespace the
//!   context publishes (`product`, `price`). The grouping comes from
//!   [`JetStreamConfig::streams`]; a namespace missing from it gets a stream
//!   of its own, `<PREFIX>_<NAMESPACE>`. Streams are keyed by the event type
//!   rather than by the envelope's `source`, because a subscriber knows only
//!   the event types it wants: with the type in the subject it can create the
//!   stream and its consumer before the publishing context has ever run, and
//!   filter on the subject alone.
//! - Dead letters go to `<PREFIX>_DLQ` under `<prefix>.dlq.<consumer>`, the
//!   original envelope as the payload and the failure in headers
//!   (`Mercato-Consumer`, `Mercato-Error`, `Mercato-Attempts`,
//!   `Mercato-Original-Subject`, `Mercato-Original-Stream`,
//!   `Mercato-Original-Seq`).
//! - Replays of dead letters go to `<PREFIX>_REPLAY` under
//!   `<prefix>.replay.<consumer>`, a work-queue stream: every subscription
//!   also reads its own subject there (a durable consumer of the same name),
//!   so a replay reaches the consumer that parked the event and no other,
//!   and leaves the stream once acknowledged.
//! - `dlq` and `replay` are therefore not event namespaces.
//! - Streams are created on first use (get-or-create, idempotent across
//!   replicas) by whichever side comes first, publisher or subscriber; the
//!   dead-letter stream when the bus connects.
//!
//! # Delivery
//!
//! [`EventBus::publish`] sends every envelope with `Nats-Msg-Id` set to the
//! event id and waits for JetStream's acknowledgement, so the outbox relay
//! marks a row published only once the event is stored; a re-send within the
//! duplicate window is dropped by the server. [`EventBus::subscribe`] binds a
//! durable pull consumer named after the subscription (`.`, `*`, `>` and
//! spaces replaced, plus a short hash of the original name when anything was
//! replaced) on each stream that holds a wanted event type. Replicas that
//! subscribe with the same name share the work. A handler's success acks the
//! message; a failure naks it with an exponential, jittered delay; the
//! failure on the [`MAX_ATTEMPTS`]th delivery parks it in the dead-letter
//! stream and terminates it. A panicking handler counts as a failure. While a
//! handler runs, the bus tells the server it is still working, so a slow
//! handler is not redelivered elsewhere meanwhile.
//!
//! Unlike [`super::LogBus`], a failing event does not hold back the events
//! after it (they are delivered while it waits for its retry), and replicas
//! work in parallel: handlers must not rely on the order of events beyond
//! what their inbox and the state they check give them. Events of different
//! streams are never ordered with respect to each other.
//!
//! A NATS server before 2.10 allows one filter subject per consumer: when a
//! subscription wants several types from one stream, its consumer reads the
//! namespace (or the whole stream) and the bus acknowledges the unwanted
//! events without calling the handler.
//!
//! # Production settings
//!
//! What a deployment needs for events to survive the loss of a server:
//!
//! - **A JetStream cluster of 3 servers** and [`JetStreamConfig::replicas`] =
//!   3 (R3), so every stream and consumer survives one server lost. The
//!   default of 1 is for a single development server.
//! - **File storage** (always set by this bus) on persistent volumes: the
//!   server's `store_dir` must not be an ephemeral container path.
//! - **Retention: limits, no age limit by default**
//!   ([`JetStreamConfig::max_age`] `None`). Consumers that rebuild a read
//!   model (`rewind`) replay the whole history; bounding the age bounds what
//!   a rebuild can see. Size the volumes for it, or set `max_age` and accept
//!   that rebuilds start later.
//! - **Duplicate window** ([`JetStreamConfig::duplicate_window`], 2 minutes by
//!   default): longer than the time an outbox relay may take between
//!   JetStream's ack and marking its rows published, including a restart.
//!   Duplicates older than the window are still stored, and consumers drop
//!   them through their inbox.
//! - **`max_deliver`**: handler failures are retried until the
//!   [`MAX_ATTEMPTS`]th delivery, then parked. The server-side bound is
//!   [`SERVER_MAX_DELIVER`], slightly higher, so that a message whose last
//!   delivery was lost to a crash still gets delivered and parked rather
//!   than silently abandoned.
//! - **`ack_wait`** ([`JetStreamConfig::ack_wait`], 30 s): the time before an
//!   unacknowledged delivery (its replica died) goes to another replica.
//!   Long-running handlers are kept alive by progress acks, so this only
//!   needs to cover a process pause. The consumers set no server-side
//!   `backoff` list: the delay between retries of a failed handler travels
//!   with each negative ack (exponential with jitter, from
//!   [`JetStreamConfig::retry_base`] to [`JetStreamConfig::retry_cap`]), and
//!   NATS 2.9 miscomputes delayed naks on consumers that have one.
//! - **DLQ**: `<PREFIX>_DLQ` has the same storage and replicas and no age
//!   limit. Monitor its message count (alert when it grows) and inspect or
//!   replay through [`JetStreamBus::dead_letters`] and
//!   [`JetStreamBus::replay_dead_letter`]. A replay waits in
//!   `<PREFIX>_REPLAY` (same storage and replicas, work-queue retention)
//!   until its consumer acknowledges it; one whose consumer never runs
//!   again stays there.
//! - **Consumers**: one durable name per consumer, shared by its replicas. A
//!   consumer whose state is local to a replica (a search index) has a
//!   name per replica ([`Subscription::per_instance`]; search subscribes as
//!   `search-<instance>`): the bus creates it with
//!   [`JetStreamConfig::instance_inactive_threshold`] (1 hour), after which
//!   the server removes the consumer of an instance that is gone, so that
//!   replicas coming and going do not pile up consumers. Its dead letters
//!   and replays carry its own name: a dead letter parked by an instance
//!   that is gone needs no replay (its successor built its state from the
//!   whole history), and replayed it would wait in `<PREFIX>_REPLAY` for a
//!   consumer that never comes.
//! - **Credentials**: put them in the URL (`nats://user:password@host:4222`)
//!   and give the account JetStream limits large enough for the streams.
//! - **One layout everywhere**: every process must get the same prefix and
//!   [`JetStreamConfig::streams`]. Existing streams are never altered: a
//!   layout change needs the streams edited by hand (the bus logs a warning
//!   when a stream covers other subjects than configured). A consumer whose
//!   event types change between releases is recreated where it stood.
//! - **Shutdown**: a consumer stops within [`JetStreamConfig::fetch_wait`]
//!   (2 s) plus the handler in progress, handing unstarted messages back.
//! - **Server**: NATS 2.9 or later with JetStream enabled (tested with 2.9).

use super::{DeadLetter, EventBus, Subscription, MAX_ATTEMPTS};
use crate::event::{with_correlation, Envelope};
use anyhow::Context as _;
use async_nats::header::HeaderValue;
use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{AckKind, Context, Message};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The server-side delivery bound of every consumer (see the module docs).
pub const SERVER_MAX_DELIVER: i64 = MAX_ATTEMPTS as i64 + 2;

const H_CONSUMER: &str = "Mercato-Consumer";
const H_ERROR: &str = "Mercato-Error";
const H_ATTEMPTS: &str = "Mercato-Attempts";
const H_SUBJECT: &str = "Mercato-Original-Subject";
const H_STREAM: &str = "Mercato-Original-Stream";
const H_SEQ: &str = "Mercato-Original-Seq";
const DLQ: &str = "dlq";
const REPLAY: &str = "replay";
/// Header values are kept short: an error chain can be long.
const MAX_HEADER_VALUE: usize = 1024;

/// The event type namespaces one context publishes; they share its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The publishing context: `catalog` gives the stream `<PREFIX>_CATALOG`.
    pub context: String,
    /// First segments of its event types: `product`, `price`.
    pub namespaces: Vec<String>,
    /// Age after which this stream's events are discarded, in place of
    /// [`JetStreamConfig::max_age`]; for a stream of many events nothing
    /// rebuilds from its whole history (interactions).
    pub max_age: Option<Duration>,
}

impl StreamSpec {
    pub fn new(context: &str, namespaces: &[&str]) -> Self {
        Self {
            context: context.to_owned(),
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            max_age: None,
        }
    }

    /// The stream keeps its events for `age` (when it is created: an
    /// existing stream keeps its own limits).
    pub fn keeping(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }
}

#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// `nats://host:4222`, optionally with credentials; several separated by commas.
    pub url: String,
    /// First subject token(s) of every subject, and (upper-cased) of every stream name.
    pub prefix: String,
    /// Which namespaces share a context's stream.
    pub streams: Vec<StreamSpec>,
    /// Stream replicas: 1 for one server, 3 in a cluster.
    pub replicas: usize,
    /// How long JetStream remembers a message id to drop a re-send.
    pub duplicate_window: Duration,
    /// Age after which events are discarded; `None` keeps them.
    pub max_age: Option<Duration>,
    /// Time before an unacknowledged delivery is redelivered.
    pub ack_wait: Duration,
    /// How long one pull request waits for messages; also the longest a
    /// consumer takes to stop.
    pub fetch_wait: Duration,
    /// Messages fetched per pull request.
    pub batch_size: usize,
    /// Unacknowledged messages a consumer may have out, over all replicas.
    pub max_ack_pending: i64,
    /// Redelivery delay after a handler failure: exponential from `retry_base`, at most `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Bound of every call to the server (connect, publish ack, API requests).
    pub request_timeout: Duration,
    /// How long the server keeps a consumer of one process instance
    /// ([`Subscription::per_instance`]) that nobody reads: it is removed,
    /// with its position, once its instance has been gone this long. A
    /// restart within it goes on where the instance stopped. Must exceed
    /// the longest a running instance may go without asking for messages:
    /// the handling of one batch ([`Self::batch_size`] events).
    pub instance_inactive_threshold: Duration,
}

impl JetStreamConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "mercato".into(),
            streams: Vec::new(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: None,
            ack_wait: Duration::from_secs(30),
            fetch_wait: Duration::from_secs(2),
            batch_size: 64,
            max_ack_pending: 1000,
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            instance_inactive_threshold: Duration::from_secs(3600),
        }
    }
}

/// The event bus on NATS JetStream. Cloning shares the connection.
#[derive(Clone)]
pub struct JetStreamBus {
    inner: Arc<Inner>,
}

struct Inner {
    js: Context,
    config: JetStreamConfig,
    /// Upper-cased, sanitised prefix of stream names.
    stream_prefix: String,
    /// Namespace to stream name, from the configured layout.
    routes: HashMap<String, String>,
    /// Stream name to the age its events are kept, where its spec says.
    max_ages: HashMap<String, Duration>,
    /// Streams known to exist, so that publishing does not ask every time.
    ready: Mutex<HashSet<String>>,
}

/// Per stream: the subjects it covers, the subjects wanted from it, and
/// the namespaces these belong to.
type Wanted = (Vec<String>, BTreeSet<String>, BTreeSet<String>);

/// Where one subscription reads from one stream.
#[derive(Debug, Clone)]
struct Binding {
    stream: String,
    stream_subjects: Vec<String>,
    /// Empty for the whole stream.
    filter: String,
}

impl JetStreamBus {
    /// Connects and makes sure the dead-letter stream exists.
    pub async fn connect(config: JetStreamConfig) -> anyhow::Result<Self> {
        validate_subject_tokens(&config.prefix).context("invalid JetStream subject prefix")?;
        anyhow::ensure!(
            config.batch_size > 0,
            "the JetStream batch size must be positive"
        );
        let stream_prefix = sanitize_name(&config.prefix).to_uppercase();
        let mut routes = HashMap::new();
        let mut max_ages = HashMap::new();
        for spec in &config.streams {
            let context = sanitize_name(&spec.context).to_uppercase();
            anyhow::ensure!(
                !context.is_empty() && context != "DLQ" && context != "REPLAY",
                "invalid JetStream stream context {:?}",
                spec.context
            );
            if let Some(age) = spec.max_age {
                max_ages.insert(format!("{stream_prefix}_{context}"), age);
            }
            for ns in &spec.namespaces {
                validate_namespace(ns)?;
                let stream = format!("{stream_prefix}_{context}");
                if let Some(other) = routes.insert(ns.clone(), stream.clone()) {
                    anyhow::ensure!(
                        other == stream,
                        "event namespace {ns:?} is assigned to two streams"
                    );
                }
            }
        }
        let timeout = config.request_timeout;
        // Several seed servers of a cluster may be given, comma-separated.
        let servers: Vec<async_nats::ServerAddr> = config
            .url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .with_context(|| format!("invalid NATS server address {s:?}"))
            })
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(!servers.is_empty(), "no NATS server address given");
        let client = tokio::time::timeout(
            timeout,
            async_nats::ConnectOptions::new()
                .name("mercato")
                .connection_timeout(timeout)
                .request_timeout(Some(timeout))
                .event_callback(|event| async move {
                    match event {
                        async_nats::Event::Connected => tracing::info!("NATS connection restored"),
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS connection lost; reconnecting")
                        }
                        other => tracing::warn!(event = %other, "NATS client event"),
                    }
                })
                .connect(servers),
        )
        .await
        .context("connecting to NATS timed out")?
        .context("connecting to NATS")?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client);
        let bus = Self {
            inner: Arc::new(Inner {
                js,
                config,
                stream_prefix,
                routes,
                max_ages,
                ready: Mutex::new(HashSet::new()),
            }),
        };
        let (name, subjects) = bus.dlq_stream();
        bus.ensure_stream(&name, &subjects).await?;
        Ok(bus)
    }

    /// The JetStream context, for administration and tests.
    pub fn context(&self) -> &Context {
        &self.inner.js
    }

    /// The stream that holds events of this type.
    pub fn stream_for(&self, event_type: &str) -> anyhow::Result<String> {
        let ns = namespace(event_type)?;
        Ok(self.stream_of_namespace(ns).0)
    }

    /// Deletes every stream of this bus's prefix, with their consumers and
    /// messages: what tearing down a test or a throw-away cluster needs.
    /// Returns how many were deleted.
    pub async fn delete_streams(&self) -> anyhow::Result<usize> {
        let prefix = format!("{}_", self.inner.stream_prefix);
        let mut names = self.inner.js.stream_names();
        let mut doomed = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.context("listing streams")?;
            if name.starts_with(&prefix) {
                doomed.push(name);
            }
        }
        for name in &doomed {
            self.inner
                .js
                .delete_stream(name)
                .await
                .with_context(|| format!("deleting stream {name}"))?;
        }
        self.inner.ready.lock().map(|mut r| r.clear()).ok();
        Ok(doomed.len())
    }

    /// The name of the dead-letter stream.
    pub fn dead_letter_stream(&self) -> String {
        self.dlq_stream().0
    }

    /// The oldest `limit` parked events; `seq` is their position in the
    /// dead-letter stream, what [`Self::replay_dead_letter`] takes.
    pub async fn dead_letters(&self, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let (name, _) = self.dlq_stream();
        let stream = self
            .inner
            .js
            .get_stream_no_info(&name)
            .await
            .context("opening the dead-letter stream")?;
        let filter = format!("{}.{DLQ}.>", self.inner.config.prefix);
        let mut out = Vec::new();
        let mut next = 1u64;
        while out.len() < limit {
            let found = stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(filter.clone())
                .send()
                .await;
            let msg = match found {
                Ok(msg) => msg,
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(anyhow::Error::new(e).context("reading dead letters")),
            };
            next = msg.sequence + 1;
            match dead_letter_of(&msg) {
                Some(dead) => out.push(dead),
                None => {
                    tracing::warn!(stream = %name, seq = msg.sequence, "undecodable dead letter skipped")
                }
            }
        }
        Ok(out)
    }

    /// Sends a parked event again to the consumer that parked it, and to no
    /// other: to `<prefix>.replay.<consumer>` in the replay stream, which
    /// only that consumer reads. Then removes it from the dead letters.
    /// `false` when there is no dead letter at `seq`.
    pub async fn replay_dead_letter(&self, seq: i64) -> anyhow::Result<bool> {
        let Ok(seq) = u64::try_from(seq) else {
            return Ok(false);
        };
        if seq == 0 {
            return Ok(false);
        }
        let (name, _) = self.dlq_stream();
        let stream = self
            .inner
            .js
            .get_stream_no_info(&name)
            .await
            .context("opening the dead-letter stream")?;
        let msg = match stream.get_raw_message(seq).await {
            Ok(msg) => msg,
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(false),
            Err(e) => return Err(anyhow::Error::new(e).context("reading the dead letter")),
        };
        let dead = dead_letter_of(&msg)
            .context("the dead letter names no consumer or holds no envelope")?;
        let env = dead.envelope;
        let (stream_name, subjects) = self.replay_stream();
        self.ensure_stream(&stream_name, &subjects).await?;
        let mut headers = HeaderMap::new();
        headers.insert(H_CONSUMER, header_value(&dead.consumer));
        // The same message id when a replay is retried, so that it lands once.
        let msg_id = format!("{}-{REPLAY}-{seq}", env.id);
        let publish = Publish::build()
            .payload(msg.payload.clone())
            .headers(headers)
            .message_id(msg_id);
        self.publish_one(&stream_name, self.replay_subject(&dead.consumer), publish)
            .await?;
        match stream.delete_message(seq).await {
            Ok(_) => {}
            // Replayed concurrently by someone else.
            Err(e)
                if matches!(e.kind(), stream::DeleteMessageErrorKind::JetStream(ref j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::NO_MESSAGE_FOUND) =>
            {
                tracing::info!(seq, error = %e, "dead letter already gone after its replay")
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context("removing the replayed dead letter"))
            }
        }
        tracing::info!(consumer = %dead.consumer, event_id = %env.id, event_type = %env.event_type, seq, "dead letter replayed");
        Ok(true)
    }

    fn dlq_stream(&self) -> (String, Vec<String>) {
        (
            format!("{}_DLQ", self.inner.stream_prefix),
            vec![format!("{}.{DLQ}.>", self.inner.config.prefix)],
        )
    }

    /// The name of the replay stream.
    pub fn replay_stream_name(&self) -> String {
        self.replay_stream().0
    }

    fn replay_stream(&self) -> (String, Vec<String>) {
        (
            format!("{}_REPLAY", self.inner.stream_prefix),
            vec![format!("{}.{REPLAY}.>", self.inner.config.prefix)],
        )
    }

    /// Where the replays of one consumer go (its replicas share them).
    fn replay_subject(&self, consumer: &str) -> String {
        format!(
            "{}.{REPLAY}.{}",
            self.inner.config.prefix,
            durable_name(consumer)
        )
    }

    /// The stream of a namespace and the subjects it covers.
    fn stream_of_namespace(&self, ns: &str) -> (String, Vec<String>) {
        let prefix = &self.inner.config.prefix;
        match self.inner.routes.get(ns) {
            Some(stream) => {
                let subjects = self
                    .inner
                    .routes
                    .iter()
                    .filter(|(_, s)| *s == stream)
                    .map(|(n, _)| format!("{prefix}.{n}.>"))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                (stream.clone(), subjects)
            }
            None => (
                format!(
                    "{}_{}",
                    self.inner.stream_prefix,
                    sanitize_name(ns).to_uppercase()
                ),
                vec![format!("{prefix}.{ns}.>")],
            ),
        }
    }

    /// Whether a stream is one of this bus's event streams: by its subjects,
    /// since `MERCATO_` also begins the streams of a prefix `mercato.x`.
    fn holds_events(&self, config: &stream::Config) -> bool {
        let prefix = &self.inner.config.prefix;
        config
            .name
            .starts_with(&format!("{}_", self.inner.stream_prefix))
            && !config.subjects.is_empty()
            && config.subjects.iter().all(|subject| {
                subject
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .and_then(|rest| rest.strip_suffix(".>"))
                    .is_some_and(|ns| !ns.contains('.') && ns != DLQ && ns != REPLAY)
            })
    }

    fn subject_of(&self, event_type: &str) -> anyhow::Result<String> {
        validate_subject_tokens(event_type)
            .with_context(|| format!("event type {event_type:?} cannot be a subject"))?;
        validate_namespace(namespace(event_type)?)?;
        Ok(format!("{}.{event_type}", self.inner.config.prefix))
    }

    fn stream_config(&self, name: &str, subjects: &[String]) -> stream::Config {
        let c = &self.inner.config;
        let replays = name == self.replay_stream().0;
        stream::Config {
            name: name.to_owned(),
            subjects: subjects.to_vec(),
            description: Some(if replays {
                format!("Mercato replays of dead letters under {}", c.prefix)
            } else {
                format!("Mercato events under {}", c.prefix)
            }),
            storage: StorageType::File,
            // A replay is gone once its consumer acknowledged it.
            retention: if replays {
                RetentionPolicy::WorkQueue
            } else {
                RetentionPolicy::Limits
            },
            num_replicas: c.replicas.max(1),
            duplicate_window: c.duplicate_window,
            max_age: if replays || name == self.dlq_stream().0 {
                Duration::ZERO
            } else {
                self.inner
                    .max_ages
                    .get(name)
                    .copied()
                    .or(c.max_age)
                    .unwrap_or(Duration::ZERO)
            },
            ..Default::default()
        }
    }

    async fn ensure_stream(&self, name: &str, subjects: &[String]) -> anyhow::Result<()> {
        if self.ready().contains(name) {
            return Ok(());
        }
        let mut stream = self
            .inner
            .js
            .get_or_create_stream(self.stream_config(name, subjects))
            .await
            .with_context(|| format!("creating the JetStream stream {name}"))?;
        let info = stream
            .info()
            .await
            .with_context(|| format!("reading the JetStream stream {name}"))?;
        let mut have = info.config.subjects.clone();
        have.sort();
        let mut want = subjects.to_vec();
        want.sort();
        if have != want {
            tracing::warn!(
                stream = name,
                ?have,
                ?want,
                "the JetStream stream covers other subjects than configured"
            );
        }
        self.ready().insert(name.to_owned());
        Ok(())
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set is only a cache: a panic elsewhere cannot corrupt it.
        self.inner.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn publish_one(
        &self,
        stream: &str,
        subject: String,
        publish: Publish,
    ) -> anyhow::Result<()> {
        let timeout = self.inner.config.request_timeout;
        let sent = tokio::time::timeout(timeout, self.inner.js.send_publish(subject, publish))
            .await
            .context("publishing to JetStream timed out");
        let ack = match sent {
            Ok(Ok(ack)) => tokio::time::timeout(timeout, ack)
                .await
                .context("JetStream did not acknowledge in time")
                .and_then(|r| r.context("JetStream refused the message")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("publishing to JetStream")),
            Err(e) => Err(e),
        };
        if ack.is_err() {
            // The stream may have been deleted; look again next time.
            self.ready().remove(stream);
        }
        ack.map(|_| ())
    }

    /// Which streams a subscription reads and with which filter.
    fn plan(&self, sub: &Subscription) -> anyhow::Result<Vec<Binding>> {
        anyhow::ensure!(
            !sub.event_types.is_empty(),
            "subscription {} wants no event types",
            sub.consumer
        );
        let prefix = &self.inner.config.prefix;
        let mut by_stream: BTreeMap<String, Wanted> = BTreeMap::new();
        for pattern in &sub.event_types {
            let (name, subject) = match pattern.strip_suffix(".*") {
                Some(head) => (head, format!("{prefix}.{head}.>")),
                None => (pattern.as_str(), format!("{prefix}.{pattern}")),
            };
            validate_subject_tokens(name)
                .with_context(|| format!("event type pattern {pattern:?} cannot be a subject"))?;
            let ns = namespace(name)?;
            validate_namespace(ns)?;
            let (stream, subjects) = self.stream_of_namespace(ns);
            let entry = by_stream
                .entry(stream)
                .or_insert_with(|| (subjects, BTreeSet::new(), BTreeSet::new()));
            entry.1.insert(subject);
            entry.2.insert(ns.to_owned());
        }
        let (replay_stream, replay_subjects) = self.replay_stream();
        let replays = Binding {
            stream: replay_stream,
            stream_subjects: replay_subjects,
            filter: self.replay_subject(&sub.consumer),
        };
        Ok(by_stream
            .into_iter()
            .map(|(stream, (stream_subjects, wanted, namespaces))| {
                let filter = if wanted.len() == 1 {
                    wanted.into_iter().next().unwrap_or_default()
                } else if namespaces.len() == 1 && stream_subjects.len() > 1 {
                    namespaces
                        .into_iter()
                        .next()
                        .map(|ns| format!("{prefix}.{ns}.>"))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                Binding {
                    stream,
                    stream_subjects,
                    filter,
                }
            })
            .chain(std::iter::once(replays))
            .collect())
    }

    async fn consume(self, sub: Subscription, shutdown: CancellationToken) {
        let plan = match self.plan(&sub) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(consumer = %sub.consumer, error = %format!("{e:#}"), "subscription cannot be bound to JetStream");
                return;
            }
        };
        let sub = Arc::new(sub);
        futures::future::join_all(plan.into_iter().map(|b| {
            self.clone()
                .consume_stream(sub.clone(), b, shutdown.clone())
        }))
        .await;
    }

    /// Runs one consumer until shutdown, starting over after any error.
    async fn consume_stream(
        self,
        sub: Arc<Subscription>,
        binding: Binding,
        shutdown: CancellationToken,
    ) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            if let Err(e) = self
                .run_consumer(&sub, &binding, &shutdown, &mut failures)
                .await
            {
                failures = failures.saturating_add(1);
                // The stream may be gone; the next round looks again.
                self.ready().remove(&binding.stream);
                tracing::warn!(consumer = %sub.consumer, stream = %binding.stream, error = %format!("{e:#}"), "JetStream consumer failed; retrying");
                let pause = crate::resilience::backoff(
                    failures,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    async fn run_consumer(
        &self,
        sub: &Subscription,
        binding: &Binding,
        shutdown: &CancellationToken,
        failures: &mut u32,
    ) -> anyhow::Result<()> {
        self.ensure_stream(&binding.stream, &binding.stream_subjects)
            .await?;
        let consumer = self.ensure_consumer(sub, binding).await?;
        let c = &self.inner.config;
        while !shutdown.is_cancelled() {
            let mut batch = consumer
                .batch()
                .max_messages(c.batch_size)
                .expires(c.fetch_wait)
                .messages()
                .await
                .context("requesting messages")?;
            *failures = 0;
            // The pull request stays open on the server until it expires, so
            // it is drained rather than dropped: a message sent to a dropped
            // request would wait `ack_wait` before anyone saw it again.
            while let Some(msg) = batch.next().await {
                let msg = msg.map_err(|e| anyhow::anyhow!("receiving messages: {e}"))?;
                if shutdown.is_cancelled() {
                    // Delayed past this request's end, or it would come straight back to it.
                    ack(&msg, AckKind::Nak(Some(c.fetch_wait)), &sub.consumer).await;
                    continue;
                }
                self.deliver(sub, &msg).await;
            }
        }
        Ok(())
    }

    async fn ensure_consumer(
        &self,
        sub: &Subscription,
        binding: &Binding,
    ) -> anyhow::Result<consumer::Consumer<pull::Config>> {
        let durable = durable_name(&sub.consumer);
        let stream = self
            .inner
            .js
            .get_stream_no_info(&binding.stream)
            .await
            .with_context(|| format!("opening the stream {}", binding.stream))?;
        let existing: Response<consumer::Info> = self
            .inner
            .js
            .request(
                format!("CONSUMER.INFO.{}.{durable}", binding.stream),
                &serde_json::json!({}),
            )
            .await
            .context("reading the consumer")?;
        let deliver_policy = match existing {
            Response::Ok(info) if info.config.filter_subject == binding.filter => {
                return stream
                    .get_consumer(&durable)
                    .await
                    .map_err(|e| anyhow::anyhow!("opening the consumer {durable}: {e}"));
            }
            Response::Ok(info) => {
                // Only servers from 2.10 on can change a filter in place; the
                // consumer is recreated where it stood instead.
                let start_sequence = info.ack_floor.stream_sequence + 1;
                tracing::warn!(consumer = %durable, stream = %binding.stream, from = %info.config.filter_subject, to = %binding.filter, start_sequence, "consumer filter changed; recreating the consumer");
                stream
                    .delete_consumer(&durable)
                    .await
                    .context("deleting the outdated consumer")?;
                DeliverPolicy::ByStartSequence { start_sequence }
            }
            Response::Err { error } if error.code() == 404 => DeliverPolicy::All,
            Response::Err { error } => {
                return Err(anyhow::Error::new(error).context("reading the consumer"));
            }
        };
        let c = &self.inner.config;
        stream
            .create_consumer(pull::Config {
                durable_name: Some(durable.clone()),
                description: Some(if sub.per_instance {
                    format!("Mercato consumer {} of one instance", sub.consumer)
                } else {
                    format!("Mercato consumer {}", sub.consumer)
                }),
                deliver_policy,
                ack_policy: AckPolicy::Explicit,
                ack_wait: c.ack_wait,
                max_deliver: SERVER_MAX_DELIVER,
                filter_subject: binding.filter.clone(),
                max_ack_pending: c.max_ack_pending,
                // Zero keeps the consumer; an instance's goes after its instance.
                inactive_threshold: if sub.per_instance {
                    c.instance_inactive_threshold
                } else {
                    Duration::ZERO
                },
                // No server-side `backoff`: handler failures carry their own
                // delay in the nak, and with a backoff list older servers
                // (2.9) time a delayed nak against the wrong ack wait.
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the consumer {durable} on {}", binding.stream))
    }

    async fn deliver(&self, sub: &Subscription, msg: &Message) {
        let (delivered, stream, stream_seq) = match msg.info() {
            Ok(info) => (info.delivered, info.stream.to_owned(), info.stream_sequence),
            Err(e) => {
                tracing::warn!(consumer = %sub.consumer, error = %e, "message without delivery metadata skipped");
                return;
            }
        };
        let env: Envelope = match serde_json::from_slice(&msg.payload) {
            Ok(env) => env,
            Err(e) => {
                // It will never decode; it stays in its stream for inspection.
                tracing::error!(consumer = %sub.consumer, stream = %stream, seq = stream_seq, error = %e, "undecodable event terminated");
                ack(msg, AckKind::Term, &sub.consumer).await;
                return;
            }
        };
        if !sub.wants(&env.event_type) {
            ack(msg, AckKind::Ack, &sub.consumer).await;
            return;
        }
        let started = Instant::now();
        let result = self.run_handler(sub, &env, msg).await;
        metrics::histogram!("mercato_event_handle_seconds", "consumer" => sub.consumer.clone())
            .record(started.elapsed().as_secs_f64());
        let attempt = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
        match result {
            Ok(()) => {
                metrics::counter!("mercato_events_consumed_total", "consumer" => sub.consumer.clone(), "outcome" => "ok").increment(1);
                ack(msg, AckKind::Ack, &sub.consumer).await;
            }
            Err(error) if attempt >= MAX_ATTEMPTS => {
                tracing::error!(consumer = %sub.consumer, event_id = %env.id, event_type = %env.event_type, error = %error, "event parked as a dead letter");
                match self.park(sub, msg, &env, &error).await {
                    Ok(()) => {
                        metrics::counter!("mercato_events_consumed_total", "consumer" => sub.consumer.clone(), "outcome" => "dead_letter").increment(1);
                        ack(msg, AckKind::Term, &sub.consumer).await;
                    }
                    Err(e) => {
                        tracing::error!(consumer = %sub.consumer, event_id = %env.id, error = %format!("{e:#}"), "parking a dead letter failed; redelivering");
                        ack(
                            msg,
                            AckKind::Nak(Some(self.retry_delay(attempt))),
                            &sub.consumer,
                        )
                        .await;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(consumer = %sub.consumer, event_id = %env.id, attempt, error = %error, "event handling failed; retrying");
                ack(
                    msg,
                    AckKind::Nak(Some(self.retry_delay(attempt))),
                    &sub.consumer,
                )
                .await;
            }
        }
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        let c = &self.inner.config;
        crate::resilience::backoff(attempt, c.retry_base, c.retry_cap)
    }

    /// Runs the handler in the event's correlation, telling the server it is
    /// still at work while it runs.
    async fn run_handler(
        &self,
        sub: &Subscription,
        env: &Envelope,
        msg: &Message,
    ) -> Result<(), String> {
        let handled = AssertUnwindSafe(with_correlation(
            env.caused_correlation(),
            sub.handler.handle(env),
        ))
        .catch_unwind();
        tokio::pin!(handled);
        let period = (self.inner.config.ack_wait / 3).max(Duration::from_millis(100));
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                result = &mut handled => {
                    return match result {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(format!("{e:#}")),
                        Err(_) => Err("the handler panicked".to_owned()),
                    };
                }
                _ = progress.tick() => ack(msg, AckKind::Progress, &sub.consumer).await,
            }
        }
    }

    async fn park(
        &self,
        sub: &Subscription,
        msg: &Message,
        env: &Envelope,
        error: &str,
    ) -> anyhow::Result<()> {
        let durable = durable_name(&sub.consumer);
        let mut headers = HeaderMap::new();
        headers.insert(H_CONSUMER, header_value(&sub.consumer));
        headers.insert(H_ERROR, header_value(error));
        headers.insert(H_SUBJECT, header_value(msg.subject.as_str()));
        // Which message this is: a replay that fails again is another
        // message, parked again even within the duplicate window.
        let mut origin = String::new();
        if let Ok(info) = msg.info() {
            headers.insert(H_ATTEMPTS, header_value(&info.delivered.to_string()));
            headers.insert(H_STREAM, header_value(info.stream));
            headers.insert(H_SEQ, header_value(&info.stream_sequence.to_string()));
            origin = format!("-{}-{}", info.stream, info.stream_sequence);
        }
        let subject = format!("{}.{DLQ}.{durable}", self.inner.config.prefix);
        let (dlq, subjects) = self.dlq_stream();
        self.ensure_stream(&dlq, &subjects).await?;
        // Parked once even if terminating the original fails and it comes back.
        let publish = Publish::build()
            .payload(msg.payload.clone())
            .headers(headers)
            .message_id(format!("{}-{DLQ}-{durable}{origin}", env.id));
        self.publish_one(&dlq, subject, publish)
            .await
            .context("parking the dead letter")
    }
}

#[async_trait]
impl EventBus for JetStreamBus {
    async fn publish(&self, events: &[Envelope]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut prepared = Vec::with_capacity(events.len());
        for env in events {
            let subject = self.subject_of(&env.event_type)?;
            let (stream, subjects) = self.stream_of_namespace(namespace(&env.event_type)?);
            self.ensure_stream(&stream, &subjects).await?;
            prepared.push((env, subject, stream));
        }
        let timeout = self.inner.config.request_timeout;
        // All sent before any ack is awaited: one round trip for the batch.
        let mut pending = Vec::with_capacity(prepared.len());
        for (env, subject, stream) in prepared {
            let payload = serde_json::to_vec(env)?;
            let sent = tokio::time::timeout(
                timeout,
                self.inner.js.send_publish(
                    subject,
                    Publish::build()
                        .payload(payload.into())
                        .message_id(env.id.to_string()),
                ),
            )
            .await
            .context("publishing to JetStream timed out")
            .and_then(|r| r.context("publishing to JetStream"));
            match sent {
                Ok(ack) => pending.push((env, stream, ack)),
                Err(e) => {
                    self.ready().remove(&stream);
                    return Err(e);
                }
            }
        }
        for (env, stream, ack) in pending {
            let acked = tokio::time::timeout(timeout, ack)
                .await
                .context("JetStream did not acknowledge in time")
                .and_then(|r| r.context("JetStream refused the event"));
            match acked {
                Ok(ack) if ack.duplicate => {
                    tracing::debug!(event_id = %env.id, stream = %ack.stream, "duplicate event dropped by JetStream")
                }
                Ok(_) => {}
                Err(e) => {
                    self.ready().remove(&stream);
                    return Err(e.context(format!("event {}", env.id)));
                }
            }
        }
        Ok(())
    }

    fn subscribe(
        &self,
        sub: Subscription,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().consume(sub, shutdown))
    }

    async fn ping(&self) -> anyhow::Result<()> {
        // The account info, read loosely: its shape varies between server versions.
        let answer: Response<serde_json::Value> = tokio::time::timeout(
            self.inner.config.request_timeout,
            self.inner.js.request("INFO", &serde_json::json!({})),
        )
        .await
        .context("JetStream did not answer in time")?
        .context("JetStream is not available")?;
        match answer {
            Response::Ok(_) => Ok(()),
            Response::Err { error } => {
                Err(anyhow::Error::new(error).context("JetStream is not available"))
            }
        }
    }

    async fn parked(&self, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        self.dead_letters(limit).await
    }

    async fn replay(&self, seq: i64) -> anyhow::Result<bool> {
        self.replay_dead_letter(seq).await
    }

    async fn rewind(&self, consumer: &str) -> anyhow::Result<()> {
        let durable = durable_name(consumer);
        let mut infos = self.inner.js.streams();
        let mut streams = Vec::new();
        while let Some(info) = infos.next().await {
            let info = info.context("listing JetStream streams")?;
            if self.holds_events(&info.config) {
                streams.push(info.config.name);
            }
        }
        for stream in streams {
            let deleted: Response<serde_json::Value> = self
                .inner
                .js
                .request(
                    format!("CONSUMER.DELETE.{stream}.{durable}"),
                    &serde_json::json!({}),
                )
                .await
                .with_context(|| format!("deleting the consumer {durable} on {stream}"))?;
            match deleted {
                Response::Ok(_) => {
                    tracing::info!(consumer = %durable, stream = %stream, "consumer rewound")
                }
                Response::Err { error } if error.code() == 404 => {}
                Response::Err { error } => {
                    return Err(anyhow::Error::new(error)
                        .context(format!("deleting the consumer {durable} on {stream}")));
                }
            }
        }
        Ok(())
    }
}

async fn ack(msg: &Message, kind: AckKind, consumer: &str) {
    if let Err(e) = msg.ack_with(kind).await {
        // The server redelivers what it does not hear about.
        tracing::warn!(consumer, ?kind, error = %e, "acknowledging a message failed");
    }
}

fn dead_letter_of(msg: &StreamMessage) -> Option<DeadLetter> {
    let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_owned());
    Some(DeadLetter {
        consumer: header(H_CONSUMER)?,
        seq: i64::try_from(msg.sequence).ok()?,
        envelope: serde_json::from_slice(&msg.payload).ok()?,
        error: header(H_ERROR).unwrap_or_default(),
        attempts: header(H_ATTEMPTS)
            .and_then(|a| a.parse().ok())
            .unwrap_or_default(),
    })
}

/// A header value from any text: NATS headers end at a line break.
fn header_value(text: &str) -> HeaderValue {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() > MAX_HEADER_VALUE {
        let mut end = MAX_HEADER_VALUE;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean.parse().unwrap_or_default()
}

/// The first segment of an event type: `order` for `order.confirmed`.
fn namespace(event_type: &str) -> anyhow::Result<&str> {
    match event_type.split('.').next() {
        Some(ns) if !ns.is_empty() => Ok(ns),
        _ => anyhow::bail!("event type {event_type:?} has no namespace"),
    }
}

fn validate_namespace(ns: &str) -> anyhow::Result<()> {
    validate_subject_tokens(ns)?;
    anyhow::ensure!(
        !ns.contains('.') && ns != DLQ && ns != REPLAY,
        "{ns:?} cannot be an event namespace"
    );
    Ok(())
}

/// Dotted tokens without wildcards, spaces or control characters.
fn validate_subject_tokens(text: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        text.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
        }),
        "{text:?} is not a valid subject"
    );
    Ok(())
}

/// A name JetStream accepts for a stream or consumer.
fn sanitize_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The durable consumer name of a subscription. Names that had to change get
/// a hash of the original, so that `a.b` and `a_b` stay apart.
pub fn durable_name(consumer: &str) -> String {
    let clean = sanitize_name(consumer);
    if clean == consumer && !clean.is_empty() {
        return clean;
    }
    let digest = Sha256::digest(consumer.as_bytes());
    format!("{clean}_{}", hex::encode(&digest[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_names_are_valid_and_distinct() {
        assert_eq!(durable_name("search"), "search");
        assert_eq!(
            durable_name("notifications-directory"),
            "notifications-directory"
        );
        let dotted = durable_name("search.replica 1");
        assert!(dotted.starts_with("search_replica_1_"));
        assert!(!dotted.contains(['.', ' ', '*', '>']));
        assert_ne!(durable_name("a.b"), durable_name("a_b"));
        assert!(!durable_name("").is_empty());
    }

    #[test]
    fn subjects_reject_wildcards_and_blanks() {
        assert!(validate_subject_tokens("order.confirmed").is_ok());
        assert!(validate_subject_tokens("order.*").is_err());
        assert!(validate_subject_tokens("order..x").is_err());
        assert!(validate_subject_tokens("order.con firmed").is_err());
        assert!(validate_subject_tokens("").is_err());
        assert!(validate_namespace("dlq").is_err());
        assert!(validate_namespace("replay").is_err());
    }

    #[test]
    fn header_values_drop_line_breaks_and_stay_short() {
        let value = header_value("first\r\nsecond");
        assert_eq!(value.as_str(), "first  second");
        let long = "é".repeat(MAX_HEADER_VALUE);
        assert!(header_value(&long).as_str().len() <= MAX_HEADER_VALUE);
    }
}
