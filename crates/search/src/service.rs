//! The search service: answers searches from the last committed index,
//! applies catalog and inventory events to the index writer, and commits
//! them in the background.

use crate::consumer::{instance_consumer, SearchConsumer, CONSUMER, EVENT_TYPES};
use crate::domain::{ProductDoc, SearchRequest, SearchResults, Suggestions};
use crate::index::SearchIndex;
use crate::store::SearchStore;
use anyhow::Context as _;
use mercato_contracts::types::{Product, Rating};
use mercato_kernel::bus::{EventBus, Subscription};
use mercato_kernel::db::Db;
use mercato_kernel::ApiError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::IndexWriter;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Written after the final commit of a clean shutdown; its absence at start
/// means the index may miss events the bus already counts as delivered.
const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";
/// How often pending changes are committed and made searchable.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(250);
/// How long shutdown waits for the consumer to finish its batch.
const CONSUMER_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// At most this many suggestions.
const SUGGESTIONS: usize = 10;

pub struct SearchService {
    dir: PathBuf,
    store: SearchStore,
    index: Arc<SearchIndex>,
    /// `None` once closed: events arriving after the final commit fail and
    /// stay unacknowledged, so the next run sees them again.
    writer: Arc<Mutex<Option<IndexWriter>>>,
    /// Uncommitted changes are waiting in the writer.
    dirty: AtomicBool,
    /// The index was (re)created empty: the consumer must replay the log.
    rebuild: bool,
}

impl SearchService {
    /// Opens the read model kept in `dir` (`<data_dir>/search`): the index
    /// in `dir/index` and its source state in `dir/state.db`.
    ///
    /// Both are wiped, and the service marked for a rebuild, when the index
    /// is missing, when the previous run did not shut down cleanly, or when
    /// the index was written with another schema.
    pub async fn open(dir: &Path) -> anyhow::Result<SearchService> {
        let index_dir = dir.join("index");
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean = marker.is_file() && index_dir.join("meta.json").is_file();
        let mut rebuild = !clean;
        if rebuild {
            wipe(dir)?;
        } else {
            std::fs::remove_file(&marker)
                .with_context(|| format!("removing {}", marker.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let index = match SearchIndex::open(&index_dir) {
            Ok(index) => index,
            Err(e) if !rebuild => {
                tracing::warn!(error = %format!("{e:#}"), "the search index cannot be opened; rebuilding it");
                wipe(dir)?;
                std::fs::create_dir_all(dir)?;
                rebuild = true;
                SearchIndex::open(&index_dir)?
            }
            Err(e) => return Err(e.context("creating the search index")),
        };
        let writer = index.writer().context("opening the search index writer")?;
        let db = Db::sqlite_file(&dir.join("state.db")).await?;
        db.migrate(crate::NAME, &crate::MIGRATIONS)
            .await
            .context("migrating the search store")?;
        if rebuild {
            tracing::info!(dir = %dir.display(), "the search index will be rebuilt from the event log");
        }
        let service = SearchService {
            dir: dir.to_path_buf(),
            store: SearchStore::new(db),
            index: Arc::new(index),
            writer: Arc::new(Mutex::new(Some(writer))),
            dirty: AtomicBool::new(false),
            rebuild,
        };
        service.record_document_count();
        Ok(service)
    }

    /// Whether this run rebuilds the index from the whole event log.
    pub fn rebuilding(&self) -> bool {
        self.rebuild
    }

    pub fn store(&self) -> &SearchStore {
        &self.store
    }

    /// Starts the bus consumer, `search`, and the committer: the index of
    /// the only search process (embedded mode). The returned task ends
    /// after `shutdown`, once the consumer has stopped and a final commit
    /// has been made.
    pub async fn start(
        self: &Arc<Self>,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        let subscription = Subscription::shared(
            CONSUMER,
            EVENT_TYPES,
            Arc::new(SearchConsumer::new(self.clone())),
        );
        self.start_with(subscription, bus, shutdown).await
    }

    /// Like [`Self::start`], for one of several search replicas (distributed
    /// mode): the consumer is the instance's own,
    /// [`instance_consumer`]`(instance)`, so that this index gets every
    /// event and a rebuild rewinds no other replica's consumer; the bus
    /// forgets it once the instance has been gone for a while
    /// ([`Subscription::per_instance`]).
    pub async fn start_instance(
        self: &Arc<Self>,
        instance: &str,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        let name = instance_consumer(instance)?;
        tracing::info!(consumer = %name, "search consumes as its own instance");
        let subscription = Subscription::of_instance(
            name,
            EVENT_TYPES,
            Arc::new(SearchConsumer::new(self.clone())),
        );
        self.start_with(subscription, bus, shutdown).await
    }

    async fn start_with(
        self: &Arc<Self>,
        subscription: Subscription,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        if self.rebuild {
            bus.rewind(&subscription.consumer)
                .await
                .with_context(|| format!("rewinding the consumer {}", subscription.consumer))?;
        }
        let consumer = bus.subscribe(subscription, shutdown.clone());
        let service = self.clone();
        Ok(tokio::spawn(async move {
            service.run_committer(consumer, shutdown).await
        }))
    }

    /// Readiness: the search store answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        Ok(self.store.db().ping().await?)
    }

    pub async fn search(&self, req: SearchRequest) -> Result<SearchResults, ApiError> {
        let started = Instant::now();
        let index = self.index.clone();
        let result = tokio::task::spawn_blocking(move || index.search(&req))
            .await
            .map_err(ApiError::internal)?;
        metrics::histogram!("mercato_search_latency_seconds")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Completions of what a customer is typing: at most 10.
    pub async fn suggest(&self, text: String) -> Result<Suggestions, ApiError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.suggest(&text, SUGGESTIONS))
            .await
            .map_err(ApiError::internal)?
    }

    /// Indexes a product's new state, described by an event of `version`,
    /// or removes it when it is no longer searchable. An event older than
    /// what the read model holds of the product changes nothing (see
    /// [`crate::store`]).
    pub async fn apply_product(&self, product: &Product, version: i64) -> anyhow::Result<()> {
        let guard = self.writer.lock().await;
        let writer = open_writer(&guard)?;
        let term = self.index.id_term(product.id);
        match ProductDoc::from_product(product) {
            Some(doc) => {
                let Some((available, rating)) = self.store.upsert_product(&doc, version).await?
                else {
                    skipped(product.id, version);
                    return Ok(());
                };
                writer.delete_term(term);
                writer.add_document(self.index.document(&doc, available, &rating))?;
            }
            None => {
                if !self.store.remove_product(product.id, version).await? {
                    skipped(product.id, version);
                    return Ok(());
                }
                writer.delete_term(term);
            }
        }
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes an archived product, as an event of `version` says; an event
    /// older than what the read model holds changes nothing.
    pub async fn remove(&self, product_id: Uuid, version: i64) -> anyhow::Result<()> {
        let guard = self.writer.lock().await;
        let writer = open_writer(&guard)?;
        if !self.store.remove_product(product_id, version).await? {
            skipped(product_id, version);
            return Ok(());
        }
        writer.delete_term(self.index.id_term(product_id));
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Applies a SKU's available stock as of its stock `version`; an older
    /// change than the one applied is dropped.
    pub async fn apply_stock(&self, sku: &str, available: i64, version: i64) -> anyhow::Result<()> {
        let guard = self.writer.lock().await;
        let writer = open_writer(&guard)?;
        if let Some(stocked) = self.store.set_stock(sku, available, version).await? {
            writer.delete_term(self.index.id_term(stocked.doc.product_id));
            writer.add_document(self.index.document(
                &stocked.doc,
                stocked.available,
                &stocked.rating,
            ))?;
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Applies a product's rating as of its rating `version`; an older
    /// change than the one applied is dropped.
    pub async fn apply_rating(
        &self,
        product_id: Uuid,
        rating: &Rating,
        version: i64,
    ) -> anyhow::Result<()> {
        let guard = self.writer.lock().await;
        let writer = open_writer(&guard)?;
        if let Some(stocked) = self.store.set_rating(product_id, rating, version).await? {
            writer.delete_term(self.index.id_term(product_id));
            writer.add_document(self.index.document(
                &stocked.doc,
                stocked.available,
                &stocked.rating,
            ))?;
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Commits what the writer holds and makes it searchable.
    pub async fn commit(&self) -> anyhow::Result<()> {
        let mut guard = self.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if let Some(writer) = guard.as_mut() {
                writer.commit()?;
            }
            Ok(())
        })
        .await??;
        self.index.reader.reload()?;
        self.record_document_count();
        Ok(())
    }

    fn record_document_count(&self) {
        let docs = self.index.reader.searcher().num_docs();
        metrics::gauge!("mercato_search_documents").set(docs as f64);
    }

    async fn run_committer(self: Arc<Self>, consumer: JoinHandle<()>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(COMMIT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if self.dirty.swap(false, Ordering::AcqRel) {
                if let Err(e) = self.commit().await {
                    self.dirty.store(true, Ordering::Release);
                    tracing::warn!(error = %format!("{e:#}"), "committing the search index failed");
                }
            }
        }
        // The consumer stops on the same token but may finish its batch
        // first; everything it handled must be in the final commit.
        let consumer_stopped = tokio::time::timeout(CONSUMER_STOP_TIMEOUT, consumer)
            .await
            .is_ok();
        match self.close().await {
            Ok(()) if consumer_stopped => {
                if let Err(e) = self.mark_clean() {
                    tracing::warn!(error = %format!("{e:#}"), "marking the search index clean failed");
                }
            }
            Ok(()) => tracing::warn!(
                "the search consumer did not stop in time; the index will be rebuilt at next start"
            ),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "the final search commit failed; the index will be rebuilt at next start"
            ),
        }
    }

    /// The final commit: takes the writer away, commits, and releases the
    /// index lock.
    async fn close(&self) -> anyhow::Result<()> {
        let Some(mut writer) = self.writer.lock().await.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            writer.commit()?;
            // Dropping the writer releases the index lock; merges still
            // running are abandoned, the committed segments stay valid.
            drop(writer);
            Ok(())
        })
        .await??;
        self.index.reader.reload()?;
        self.record_document_count();
        Ok(())
    }

    fn mark_clean(&self) -> anyhow::Result<()> {
        let marker = self.dir.join(CLEAN_SHUTDOWN_MARKER);
        let file = std::fs::File::create(&marker)
            .with_context(|| format!("creating {}", marker.display()))?;
        file.sync_all()?;
        Ok(())
    }
}

/// The writer, unless the index is closed for this run. Every change takes
/// the writer's lock before it reads or writes the store and keeps it until
/// the index has the change, so the store and the index see changes in the
/// same order even when the bus hands over events concurrently (JetStream
/// reads each stream, and the replays, on their own).
fn open_writer(guard: &Option<IndexWriter>) -> anyhow::Result<&IndexWriter> {
    guard
        .as_ref()
        .context("the search index is closed for this run")
}

/// An event older than the state held: logged and counted, not applied.
fn skipped(product_id: Uuid, version: i64) {
    tracing::debug!(%product_id, version, "an older product event was not applied");
    metrics::counter!("mercato_search_stale_events_total").increment(1);
}

/// Removes the whole read model: the index and the state it was built from
/// go together, or a replay would meet state it has already applied.
fn wipe(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::SearchConsumer;
    use crate::domain::RawSearchQuery;
    use chrono::Utc;
    use mercato_contracts::events::{
        ProductArchived, ProductCreated, ProductUpdated, StockChanged,
    };
    use mercato_contracts::types::{ProductStatus, Variant};
    use mercato_kernel::bus::EventHandler;
    use mercato_kernel::bus::LogBus;
    use mercato_kernel::{Currency, Envelope, Money};

    struct Running {
        service: Arc<SearchService>,
        shutdown: CancellationToken,
        task: JoinHandle<()>,
    }

    async fn start(dir: &Path, bus: &LogBus) -> Running {
        let service = Arc::new(
            SearchService::open(&dir.join("search"))
                .await
                .expect("open"),
        );
        let shutdown = CancellationToken::new();
        let task = service
            .start(Arc::new(bus.clone()), shutdown.clone())
            .await
            .expect("start");
        Running {
            service,
            shutdown,
            task,
        }
    }

    impl Running {
        async fn stop(self) -> Arc<SearchService> {
            self.shutdown.cancel();
            self.task.await.expect("committer ends");
            self.service
        }

        async fn total(&self, q: &str) -> u64 {
            let req = RawSearchQuery {
                q: Some(q.into()),
                ..Default::default()
            }
            .validate()
            .expect("valid");
            self.service.search(req).await.expect("search").total
        }

        async fn wait_for(&self, q: &str, total: u64) {
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.total(q).await != total {
                assert!(Instant::now() < deadline, "{q:?} never had {total} hits");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn product(title: &str, sku: &str, price: i64) -> Product {
        let now = Utc::now();
        Product {
            id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            title: title.into(),
            description: String::new(),
            category: "c".into(),
            category_path: vec!["c".into()],
            status: ProductStatus::Active,
            images: Vec::new(),
            rating: Default::default(),
            variants: vec![Variant {
                sku: sku.into(),
                title: String::new(),
                price: Money::new(price, Currency::parse("EUR").expect("currency")),
                prices: Vec::new(),
                attributes: Default::default(),
            }],
            created_at: now,
            updated_at: now,
        }
    }

    /// `p` renamed and repriced, as a later change would leave it.
    fn changed(p: &Product, title: &str, price: i64) -> Product {
        let mut p = p.clone();
        p.title = title.into();
        p.variants[0].price.amount = price;
        p.updated_at = Utc::now();
        p
    }

    fn created_event(product: &Product, version: i64) -> Envelope {
        let product = product.clone();
        Envelope::new(
            "catalog",
            product.id.to_string(),
            &ProductCreated { product, version },
        )
        .expect("envelope")
    }

    fn updated_event(product: &Product, version: i64) -> Envelope {
        let product = product.clone();
        Envelope::new(
            "catalog",
            product.id.to_string(),
            &ProductUpdated { product, version },
        )
        .expect("envelope")
    }

    fn archived_event(product: &Product, version: i64) -> Envelope {
        Envelope::new(
            "catalog",
            product.id.to_string(),
            &ProductArchived {
                product_id: product.id,
                skus: product.variants.iter().map(|v| v.sku.clone()).collect(),
                version,
            },
        )
        .expect("envelope")
    }

    fn created(title: &str, sku: &str) -> Envelope {
        created_event(&product(title, sku, 100), 1)
    }

    /// Everything the committed index lists: (title, price) per product.
    async fn listed(service: &SearchService) -> Vec<(String, i64)> {
        let req = RawSearchQuery::default().validate().expect("valid");
        let r = service.search(req).await.expect("search");
        let mut hits: Vec<(String, i64)> = r
            .items
            .into_iter()
            .map(|h| (h.title, h.price.amount))
            .collect();
        hits.sort();
        hits
    }

    /// A service and its consumer, without a bus: events are handed to the
    /// handler as the bus would hand them, in the order a test chooses.
    async fn consumer(dir: &Path) -> (Arc<SearchService>, SearchConsumer) {
        let service = Arc::new(
            SearchService::open(&dir.join("search"))
                .await
                .expect("open"),
        );
        let consumer = SearchConsumer::new(service.clone());
        (service, consumer)
    }

    async fn deliver(consumer: &SearchConsumer, events: &[&Envelope]) {
        for e in events {
            consumer.handle(e).await.expect("handled");
        }
    }

    #[tokio::test]
    async fn a_clean_restart_keeps_the_index_and_a_crash_rebuilds_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = LogBus::open(
            Db::sqlite_file(&dir.path().join("events.db"))
                .await
                .expect("db"),
        )
        .await
        .expect("bus");

        let run = start(dir.path(), &bus).await;
        assert!(run.service.rebuilding(), "a missing index is rebuilt");
        bus.publish(&[created("Walnut bookshelf", "SHELF-1")])
            .await
            .expect("publish");
        run.wait_for("bookshelf", 1).await;
        let stock = Envelope::new(
            "inventory",
            "SHELF-1",
            &StockChanged {
                sku: "SHELF-1".into(),
                available: 7,
                reserved: 0,
                version: 0,
            },
        )
        .expect("envelope");
        bus.publish(&[stock]).await.expect("publish");
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let req = RawSearchQuery::default().validate().expect("valid");
            let r = run.service.search(req).await.expect("search");
            if r.items.first().map(|h| h.available) == Some(7) {
                assert!(r.items[0].in_stock);
                break;
            }
            assert!(Instant::now() < deadline, "stock never reached the index");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stopped = run.stop().await;
        drop(stopped);
        assert!(dir
            .path()
            .join("search")
            .join(CLEAN_SHUTDOWN_MARKER)
            .is_file());

        // Clean: the index is reused, nothing is replayed.
        let run = start(dir.path(), &bus).await;
        assert!(!run.service.rebuilding());
        assert_eq!(run.total("bookshelf").await, 1);
        assert!(
            !dir.path()
                .join("search")
                .join(CLEAN_SHUTDOWN_MARKER)
                .exists(),
            "the marker is taken at start"
        );
        // A crash: the task is dropped without its final commit.
        run.task.abort();
        let _ = run.task.await;
        run.shutdown.cancel();
        // Until its consumer lets go, the old service's index writer may
        // still write into the folder the next start wipes; a crashed
        // process writes nothing more.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&run.service) > 1 {
            assert!(Instant::now() < deadline, "the consumer never stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(run.service);

        let run = start(dir.path(), &bus).await;
        assert!(run.service.rebuilding(), "an unclean stop is rebuilt");
        run.wait_for("bookshelf", 1).await;
        run.stop().await;
    }

    async fn start_instance(dir: &Path, instance: &str, bus: &LogBus) -> Running {
        let service = Arc::new(
            SearchService::open(&dir.join("search"))
                .await
                .expect("open"),
        );
        let shutdown = CancellationToken::new();
        let task = service
            .start_instance(instance, Arc::new(bus.clone()), shutdown.clone())
            .await
            .expect("start");
        Running {
            service,
            shutdown,
            task,
        }
    }

    /// Two replicas, each with its own data dir: both indexes get every
    /// event, and a replica that rebuilds rewinds its own consumer only.
    #[tokio::test]
    async fn each_instance_reads_every_event_through_its_own_consumer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = LogBus::open(
            Db::sqlite_file(&dir.path().join("events.db"))
                .await
                .expect("db"),
        )
        .await
        .expect("bus");
        let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
        let a = start_instance(&a_dir, "host-a", &bus).await;
        let b = start_instance(&b_dir, "host-b", &bus).await;
        let events: Vec<Envelope> = (0..6)
            .map(|i| created(&format!("Oak stool {i}"), &format!("STOOL-{i}")))
            .collect();
        bus.publish(&events).await.expect("publish");
        a.wait_for("stool", 6).await;
        b.wait_for("stool", 6).await;
        b.stop().await;
        a.stop().await;
        let head = bus.position("search-host-a").await.expect("position");
        assert_eq!(bus.position("search-host-b").await.expect("position"), head);
        assert!(head > 0);

        // b lost its index: it rebuilds from the start of the log; a goes on
        // from where it stopped.
        std::fs::remove_dir_all(&b_dir).expect("wipe b");
        let b = start_instance(&b_dir, "host-b", &bus).await;
        assert!(b.service.rebuilding());
        let a = start_instance(&a_dir, "host-a", &bus).await;
        assert!(!a.service.rebuilding());
        b.wait_for("stool", 6).await;
        assert_eq!(a.total("stool").await, 6);
        assert_eq!(
            bus.position("search-host-a").await.expect("position"),
            head,
            "a's consumer was not rewound"
        );
        assert_eq!(
            bus.position(CONSUMER).await.expect("position"),
            0,
            "the embedded consumer was never used"
        );
        a.stop().await;
        b.stop().await;
    }

    #[tokio::test]
    async fn events_after_the_final_commit_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let service = SearchService::open(&dir.path().join("search"))
            .await
            .expect("open");
        service.close().await.expect("close");
        let env = created("Late", "LATE-1");
        let e: ProductCreated = env.decode().expect("decode");
        assert!(service.apply_product(&e.product, e.version).await.is_err());
        // Refused before the store was touched: the next run applies it.
        assert_eq!(
            service
                .store()
                .product_version(e.product.id)
                .await
                .expect("v"),
            None
        );
    }

    #[tokio::test]
    async fn an_older_update_delivered_after_a_newer_one_leaves_the_newer_state() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = LogBus::open(
            Db::sqlite_file(&dir.path().join("events.db"))
                .await
                .expect("db"),
        )
        .await
        .expect("bus");
        let run = start(dir.path(), &bus).await;

        let desk = product("Oak desk", "DESK-1", 100);
        let v2 = changed(&desk, "Birch desk", 150);
        let v3 = changed(&v2, "Walnut desk", 300);
        // Version 2 arrives last, as a redelivery after a failure would.
        bus.publish(&[
            created_event(&desk, 1),
            updated_event(&v3, 3),
            updated_event(&v2, 2),
            created("Brass lamp", "LAMP-1"),
        ])
        .await
        .expect("publish");
        // The log is handled in order: once the lamp shows, so has version 2.
        run.wait_for("lamp", 1).await;
        assert_eq!(
            listed(&run.service).await,
            [
                ("Brass lamp".to_owned(), 100),
                ("Walnut desk".to_owned(), 300)
            ]
        );
        assert_eq!(run.total("birch").await, 0);
        assert_eq!(
            run.service
                .store()
                .product_version(desk.id)
                .await
                .expect("version"),
            Some(3)
        );
        run.stop().await;
    }

    #[tokio::test]
    async fn a_replayed_creation_does_not_bring_the_old_title_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (service, consumer) = consumer(dir.path()).await;
        let desk = product("Oak desk", "DESK-1", 100);
        let creation = created_event(&desk, 1);
        let update = updated_event(&changed(&desk, "Walnut desk", 300), 2);

        deliver(&consumer, &[&creation, &update]).await;
        // The creation again, as a replayed dead letter hands it over.
        deliver(&consumer, &[&creation]).await;
        service.commit().await.expect("commit");
        assert_eq!(listed(&service).await, [("Walnut desk".to_owned(), 300)]);

        // A stock change rebuilds the document from the state kept, which
        // is still the update's.
        let stock = Envelope::new(
            "inventory",
            "DESK-1",
            &StockChanged {
                sku: "DESK-1".into(),
                available: 4,
                reserved: 0,
                version: 0,
            },
        )
        .expect("envelope");
        deliver(&consumer, &[&stock]).await;
        service.commit().await.expect("commit");
        assert_eq!(listed(&service).await, [("Walnut desk".to_owned(), 300)]);

        // The update delivered again is applied again and changes nothing.
        deliver(&consumer, &[&update]).await;
        service.commit().await.expect("commit");
        assert_eq!(listed(&service).await, [("Walnut desk".to_owned(), 300)]);
        assert_eq!(service.store().count_products().await.expect("count"), 1);
    }

    #[tokio::test]
    async fn an_archived_product_stays_archived_when_an_older_update_arrives() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (service, consumer) = consumer(dir.path()).await;
        let desk = product("Oak desk", "DESK-1", 100);
        let v2 = changed(&desk, "Walnut desk", 300);
        let update = updated_event(&v2, 2);
        deliver(
            &consumer,
            &[&created_event(&desk, 1), &update, &archived_event(&v2, 3)],
        )
        .await;
        service.commit().await.expect("commit");
        assert!(listed(&service).await.is_empty());

        // Late: the update, then the creation.
        deliver(&consumer, &[&update, &created_event(&desk, 1)]).await;
        service.commit().await.expect("commit");
        assert!(listed(&service).await.is_empty());
        assert_eq!(service.store().count_products().await.expect("count"), 0);
        assert_eq!(
            service.store().product_version(desk.id).await.expect("v"),
            Some(3)
        );
    }

    #[tokio::test]
    async fn events_without_a_version_apply_as_they_come() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (service, consumer) = consumer(dir.path()).await;
        let desk = product("Oak desk", "DESK-1", 100);
        // Events published before versions were carried have no such field.
        let unversioned = |mut e: Envelope| {
            let removed = e.payload.as_object_mut().and_then(|o| o.remove("version"));
            assert_eq!(removed, Some(serde_json::json!(0)));
            e
        };
        let creation = unversioned(created_event(&desk, 0));
        let update = unversioned(updated_event(&changed(&desk, "Walnut desk", 300), 0));
        deliver(&consumer, &[&creation, &update]).await;
        service.commit().await.expect("commit");
        assert_eq!(listed(&service).await, [("Walnut desk".to_owned(), 300)]);

        // Nothing orders them, so a late one overwrites, as it always did;
        // the next versioned event applies whatever its version.
        deliver(&consumer, &[&creation]).await;
        service.commit().await.expect("commit");
        assert_eq!(listed(&service).await, [("Oak desk".to_owned(), 100)]);
        let v2 = updated_event(&changed(&desk, "Birch desk", 150), 2);
        deliver(&consumer, &[&v2]).await;
        service.commit().await.expect("commit");
        assert_eq!(listed(&service).await, [("Birch desk".to_owned(), 150)]);
    }
}
