//! The search service: answers searches from the last committed index,
//! applies catalog and inventory events to the index writer, and commits
//! them in the background.

use crate::consumer::{SearchConsumer, CONSUMER, EVENT_TYPES};
use crate::domain::{ProductDoc, SearchRequest, SearchResults};
use crate::index::SearchIndex;
use crate::store::SearchStore;
use anyhow::Context as _;
use mercato_contracts::types::Product;
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

    /// Starts the bus consumer and the committer. The returned task ends
    /// after `shutdown`, once the consumer has stopped and a final commit
    /// has been made.
    pub async fn start(
        self: &Arc<Self>,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        if self.rebuild {
            bus.rewind(CONSUMER)
                .await
                .context("rewinding the search consumer")?;
        }
        let consumer = bus.subscribe(
            Subscription {
                consumer: CONSUMER.to_owned(),
                event_types: EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
                handler: Arc::new(SearchConsumer::new(self.clone())),
            },
            shutdown.clone(),
        );
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

    /// Indexes a product's new state, or removes it when it is no longer
    /// searchable.
    pub async fn apply_product(&self, product: &Product) -> anyhow::Result<()> {
        match ProductDoc::from_product(product) {
            Some(doc) => {
                let available = self.store.upsert_product(&doc).await?;
                self.replace(&doc, available).await
            }
            None => self.remove(product.id).await,
        }
    }

    pub async fn remove(&self, product_id: Uuid) -> anyhow::Result<()> {
        self.store.remove_product(product_id).await?;
        let term = self.index.id_term(product_id);
        self.write(|w| {
            w.delete_term(term);
            Ok(())
        })
        .await
    }

    pub async fn apply_stock(&self, sku: &str, available: i64) -> anyhow::Result<()> {
        match self.store.set_stock(sku, available).await? {
            Some(stocked) => self.replace(&stocked.doc, stocked.available).await,
            None => Ok(()),
        }
    }

    async fn replace(&self, doc: &ProductDoc, available: i64) -> anyhow::Result<()> {
        let term = self.index.id_term(doc.product_id);
        let document = self.index.document(doc, available);
        self.write(|w| {
            w.delete_term(term);
            w.add_document(document)?;
            Ok(())
        })
        .await
    }

    async fn write(
        &self,
        f: impl FnOnce(&IndexWriter) -> tantivy::Result<()>,
    ) -> anyhow::Result<()> {
        let guard = self.writer.lock().await;
        let writer = guard
            .as_ref()
            .context("the search index is closed for this run")?;
        f(writer)?;
        self.dirty.store(true, Ordering::Release);
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
    use crate::domain::RawSearchQuery;
    use chrono::Utc;
    use mercato_contracts::events::{ProductCreated, StockChanged};
    use mercato_contracts::types::{ProductStatus, Variant};
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

    fn created(title: &str, sku: &str) -> Envelope {
        let now = Utc::now();
        let product = Product {
            id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            title: title.into(),
            description: String::new(),
            category: "c".into(),
            status: ProductStatus::Active,
            variants: vec![Variant {
                sku: sku.into(),
                title: String::new(),
                price: Money::new(100, Currency::parse("EUR").expect("currency")),
                attributes: Default::default(),
            }],
            created_at: now,
            updated_at: now,
        };
        Envelope::new(
            "catalog",
            product.id.to_string(),
            &ProductCreated { product },
        )
        .expect("envelope")
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
        drop(run.service);

        let run = start(dir.path(), &bus).await;
        assert!(run.service.rebuilding(), "an unclean stop is rebuilt");
        run.wait_for("bookshelf", 1).await;
        run.stop().await;
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
        assert!(service.apply_product(&e.product).await.is_err());
    }
}
