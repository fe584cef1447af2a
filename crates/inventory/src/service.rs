//! Inventory use cases: setting and reading stock over HTTP, and the
//! reservation protocol the checkout saga drives through [`InventoryClient`].

use crate::domain::{normalize_lines, validate_on_hand, ReservationStatus, Stock, Warehouse};
use crate::store::{CommitResult, InventoryStore, PartResult, Reserved, SetResult};
use async_trait::async_trait;
use mercato_contracts::clients::{
    CatalogClient, ClientError, ClientResult, InventoryClient, ReserveOutcome,
};
use mercato_contracts::types::{ProductStatus, SkuInfo, SkuQuantity, SkuStock};
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::{time, ApiError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The longest a reservation may be held; a longer ttl is cut to this.
pub const MAX_RESERVATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Expired reservations released per sweep query.
const SWEEP_BATCH: i64 = 100;

/// At most this many SKUs in a low-stock answer.
pub const LOW_STOCK_LIMIT: usize = 50;

/// SKUs running out, with what to restock them by.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LowStock {
    /// `inventory.low_stock_threshold`: a SKU with no more than this
    /// available is running out.
    pub threshold: i64,
    pub items: Vec<LowStockItem>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LowStockItem {
    pub sku: String,
    pub available: i64,
    pub product_id: Uuid,
    /// The product's title, with the variant's.
    pub title: String,
}

pub struct InventoryService {
    store: InventoryStore,
    catalog: Arc<dyn CatalogClient>,
}

impl InventoryService {
    pub fn new(store: InventoryStore, catalog: Arc<dyn CatalogClient>) -> Self {
        Self { store, catalog }
    }

    pub fn store(&self) -> &InventoryStore {
        &self.store
    }

    /// What the catalog knows of `sku`: 404 when nothing, 503 when it cannot say.
    async fn known_sku(&self, sku: &str) -> Result<SkuInfo, ApiError> {
        match self.catalog.sku(sku).await {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(ApiError::not_found("sku")),
            Err(e) => {
                tracing::warn!(error = %e, "catalog did not answer a SKU lookup");
                Err(ApiError::unavailable(
                    "the catalog is temporarily unavailable",
                ))
            }
        }
    }

    /// Every SKU running out (at most the low-stock threshold available),
    /// fewest first, at most [`LOW_STOCK_LIMIT`] (admins).
    pub async fn low_stock(&self, caller: Caller) -> Result<LowStock, ApiError> {
        caller.require(&[Role::Admin])?;
        let (threshold, rows) = self.store.low(LOW_STOCK_LIMIT as i64).await?;
        let mut items = Vec::with_capacity(rows.len());
        for (sku, available) in rows {
            let info = match self.catalog.sku(&sku).await {
                Ok(Some(info)) if info.status == ProductStatus::Active => info,
                // Gone from the catalog or archived: nothing to restock.
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "catalog did not answer a SKU lookup");
                    return Err(ApiError::unavailable(
                        "the catalog is temporarily unavailable",
                    ));
                }
            };
            items.push(LowStockItem {
                sku,
                available: available.max(0),
                product_id: info.product_id,
                title: info.title,
            });
        }
        Ok(LowStock { threshold, items })
    }

    /// Sets the on-hand count of `sku` in `warehouse` (default `main`); only
    /// the seller of the SKU's product or an admin may.
    pub async fn set_stock(
        &self,
        caller: Caller,
        sku: &str,
        warehouse: Option<&str>,
        quantity: i64,
    ) -> Result<Stock, ApiError> {
        caller.require(&[Role::Seller, Role::Admin])?;
        let info = self.known_sku(sku).await?;
        if !caller.is_admin() && info.seller_id != caller.user_id {
            return Err(ApiError::forbidden(
                "only the product's seller or an admin may set its stock",
            ));
        }
        let warehouse = match warehouse {
            Some(w) => Warehouse::parse(w)?,
            None => Warehouse::main(),
        };
        let quantity = validate_on_hand(quantity)?;
        match self.store.set_on_hand(sku, &warehouse, quantity).await? {
            SetResult::Set(stock) => {
                metrics::counter!("mercato_inventory_stock_sets_total").increment(1);
                Ok(stock)
            }
            SetResult::BelowReserved { reserved } => Err(ApiError::conflict(
                "below_reserved",
                format!(
                    "{reserved} units are reserved in warehouse {}; on-hand stock cannot go below that",
                    warehouse.as_str()
                ),
            )),
        }
    }

    /// The stock of a SKU the catalog knows; zeros when it was never stocked.
    pub async fn stock(&self, sku: &str) -> Result<Stock, ApiError> {
        self.known_sku(sku).await?;
        Ok(self.store.stock(sku).await?)
    }

    /// Where a reservation is in its life; `None` when it was never made.
    pub async fn reservation_status(
        &self,
        reservation_id: Uuid,
    ) -> anyhow::Result<Option<ReservationStatus>> {
        self.store.status(reservation_id).await
    }

    /// Releases every held reservation past its expiry; returns how many.
    pub async fn release_expired(&self) -> anyhow::Result<usize> {
        let mut released = 0;
        loop {
            let due = self.store.expired(time::now(), SWEEP_BATCH).await?;
            for id in &due {
                // A commit may win the race for the same reservation; then
                // this finds it no longer held and does nothing.
                if self.store.release(*id, "expired").await? {
                    released += 1;
                    metrics::counter!("mercato_inventory_releases_total", "reason" => "expired")
                        .increment(1);
                }
            }
            if (due.len() as i64) < SWEEP_BATCH {
                return Ok(released);
            }
        }
    }

    /// Runs [`Self::release_expired`] every `every` until `shutdown`.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        let every = every.max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                match service.release_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(released = n, "released expired reservations"),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "reservation sweep failed; will retry")
                    }
                }
            }
        })
    }
}

fn unavailable(e: anyhow::Error) -> ClientError {
    tracing::warn!(error = %format!("{e:#}"), "inventory store failed");
    ClientError::Unavailable("inventory", "the inventory store failed".into())
}

#[async_trait]
impl InventoryClient for InventoryService {
    async fn reserve(
        &self,
        reservation_id: Uuid,
        lines: &[SkuQuantity],
        ttl: Duration,
    ) -> ClientResult<ReserveOutcome> {
        let lines =
            normalize_lines(lines).map_err(|e| ClientError::Failed("inventory", e.to_string()))?;
        let ttl = chrono::Duration::from_std(ttl.min(MAX_RESERVATION_TTL))
            .unwrap_or_else(|_| chrono::Duration::minutes(15));
        let expires_at = time::now() + ttl;
        let result = self
            .store
            .reserve(reservation_id, &lines, expires_at)
            .await
            .map_err(unavailable)?;
        let outcome = match (&result.outcome, result.replayed) {
            (_, true) => "replayed",
            (Reserved::Held, false) => "reserved",
            (Reserved::OutOfStock { .. }, false) => "out_of_stock",
        };
        metrics::counter!("mercato_inventory_reservations_total", "outcome" => outcome)
            .increment(1);
        Ok(match result.outcome {
            Reserved::Held => ReserveOutcome::Reserved,
            Reserved::OutOfStock { sku } => ReserveOutcome::OutOfStock { sku },
        })
    }

    async fn release(&self, reservation_id: Uuid) -> ClientResult<()> {
        if self
            .store
            .release(reservation_id, "requested")
            .await
            .map_err(unavailable)?
        {
            metrics::counter!("mercato_inventory_releases_total", "reason" => "requested")
                .increment(1);
        }
        Ok(())
    }

    async fn commit(&self, reservation_id: Uuid) -> ClientResult<()> {
        match self
            .store
            .commit(reservation_id)
            .await
            .map_err(unavailable)?
        {
            CommitResult::Committed => {
                metrics::counter!("mercato_inventory_commits_total").increment(1);
                Ok(())
            }
            CommitResult::AlreadyCommitted => Ok(()),
            CommitResult::Refused(why) => Err(ClientError::Failed(
                "inventory",
                format!("reservation {reservation_id} cannot be committed: {why}"),
            )),
        }
    }

    async fn restock(&self, reservation_id: Uuid) -> ClientResult<()> {
        if self
            .store
            .restock(reservation_id)
            .await
            .map_err(unavailable)?
        {
            metrics::counter!("mercato_inventory_restocks_total").increment(1);
        }
        Ok(())
    }

    async fn restock_part(
        &self,
        reservation_id: Uuid,
        restock_id: Uuid,
        lines: &[SkuQuantity],
        warehouse: Option<&str>,
    ) -> ClientResult<()> {
        let warehouse = warehouse
            .map(Warehouse::parse)
            .transpose()
            .map_err(|e| ClientError::Failed("inventory", e.to_string()))?;
        match self
            .store
            .restock_part(reservation_id, restock_id, lines, warehouse.as_ref())
            .await
            .map_err(unavailable)?
        {
            PartResult::Done => {
                metrics::counter!("mercato_inventory_restocks_total").increment(1);
                Ok(())
            }
            PartResult::AlreadyDone => Ok(()),
            PartResult::Refused(why) => Err(ClientError::Failed("inventory", why)),
        }
    }

    async fn stock(&self, skus: &[String]) -> ClientResult<Vec<SkuStock>> {
        let available = self.store.available(skus).await.map_err(unavailable)?;
        Ok(skus
            .iter()
            .map(|sku| SkuStock {
                sku: sku.clone(),
                available: available.get(sku).copied().unwrap_or(0).max(0),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_contracts::events::StockChanged;
    use mercato_contracts::types::ProductStatus;
    use mercato_kernel::db::{Db, StoreConfig};
    use mercato_kernel::outbox::{Outbox, PLATFORM_MIGRATIONS};
    use mercato_kernel::{Currency, Money};
    use std::collections::HashMap;

    struct FakeCatalog {
        skus: HashMap<String, Uuid>,
    }

    #[async_trait]
    impl CatalogClient for FakeCatalog {
        async fn sku(&self, sku: &str) -> ClientResult<Option<SkuInfo>> {
            Ok(self.skus.get(sku).map(|seller| SkuInfo {
                sku: sku.to_owned(),
                product_id: Uuid::now_v7(),
                seller_id: *seller,
                title: "T".into(),
                price: Money::new(100, Currency::parse("EUR").expect("currency")),
                status: ProductStatus::Active,
                category: String::new(),
                prices: Vec::new(),
            }))
        }

        /// Inventory reads SKUs only; this catalog knows no product pages.
        async fn product(
            &self,
            _: Uuid,
        ) -> ClientResult<Option<mercato_contracts::types::Product>> {
            Ok(None)
        }
    }

    struct Fixture {
        service: Arc<InventoryService>,
        seller: Caller,
        _dir: Option<tempfile::TempDir>,
    }

    async fn migrated(db: Db) -> Db {
        db.migrate("platform", &PLATFORM_MIGRATIONS)
            .await
            .expect("platform migrations");
        db.migrate(crate::NAME, &crate::MIGRATIONS)
            .await
            .expect("inventory migrations");
        db
    }

    /// The same service on every backend: SQLite always, PostgreSQL when
    /// `MERCATO_TEST_POSTGRES_URL` is set (each run in a schema of its own).
    async fn fixtures(skus: &[&str]) -> Vec<Fixture> {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = Db::sqlite_file(&dir.path().join("inventory.db"))
            .await
            .expect("sqlite");
        let mut out = vec![fixture(migrated(sqlite).await, skus, Some(dir))];
        if let Ok(url) = std::env::var("MERCATO_TEST_POSTGRES_URL") {
            let pg = Db::connect(&StoreConfig {
                url,
                schema: Some(format!("inventory_test_{}", Uuid::now_v7().simple())),
                max_connections: 8,
            })
            .await
            .expect("postgres");
            out.push(fixture(migrated(pg).await, skus, None));
        }
        out
    }

    fn fixture(db: Db, skus: &[&str], dir: Option<tempfile::TempDir>) -> Fixture {
        let seller = Caller {
            user_id: Uuid::now_v7(),
            role: Role::Seller,
        };
        let catalog = FakeCatalog {
            skus: skus
                .iter()
                .map(|s| ((*s).to_owned(), seller.user_id))
                .collect(),
        };
        Fixture {
            service: Arc::new(InventoryService::new(
                InventoryStore::new(db, Outbox::new(), 5),
                Arc::new(catalog),
            )),
            seller,
            _dir: dir,
        }
    }

    impl Fixture {
        async fn set(&self, sku: &str, warehouse: &str, n: i64) -> Stock {
            self.service
                .set_stock(self.seller, sku, Some(warehouse), n)
                .await
                .expect("set stock")
        }

        async fn stock(&self, sku: &str) -> Stock {
            self.service.stock(sku).await.expect("stock")
        }

        async fn events(&self) -> Vec<mercato_kernel::Envelope> {
            let rows: Vec<(String,)> = sqlx::query_as("SELECT envelope FROM outbox ORDER BY seq")
                .fetch_all(self.service.store().db().pool())
                .await
                .expect("outbox");
            rows.iter()
                .map(|(j,)| serde_json::from_str(j).expect("envelope"))
                .collect()
        }
    }

    fn lines(items: &[(&str, i64)]) -> Vec<SkuQuantity> {
        items
            .iter()
            .map(|(sku, quantity)| SkuQuantity {
                sku: (*sku).to_owned(),
                quantity: *quantity,
            })
            .collect()
    }

    const TTL: Duration = Duration::from_secs(600);

    #[tokio::test]
    async fn a_line_is_served_from_main_first_then_other_warehouses_by_name() {
        for f in fixtures(&["A"]).await {
            f.set("A", "zeta", 5).await;
            f.set("A", "beta", 2).await;
            f.set("A", "main", 3).await;
            let id = Uuid::now_v7();
            assert_eq!(
                f.service.reserve(id, &lines(&[("A", 6)]), TTL).await.ok(),
                Some(ReserveOutcome::Reserved)
            );
            let s = f.stock("A").await;
            let per: Vec<(&str, i64)> = s
                .warehouses
                .iter()
                .map(|w| (w.warehouse.as_str(), w.reserved))
                .collect();
            assert_eq!(per, vec![("main", 3), ("beta", 2), ("zeta", 1)]);
            assert_eq!((s.available, s.reserved), (4, 6));

            f.service.commit(id).await.expect("commit");
            let s = f.stock("A").await;
            assert_eq!((s.available, s.reserved), (4, 0));
            let on_hand: Vec<i64> = s.warehouses.iter().map(|w| w.on_hand).collect();
            assert_eq!(on_hand, vec![0, 0, 4]);

            f.service.restock(id).await.expect("restock");
            f.service.restock(id).await.expect("restock twice");
            let s = f.stock("A").await;
            assert_eq!((s.available, s.reserved), (10, 0));
        }
    }

    #[tokio::test]
    async fn reserve_is_all_or_nothing_and_its_outcome_is_stored() {
        for f in fixtures(&["A", "B"]).await {
            f.set("A", "main", 5).await;
            f.set("B", "main", 1).await;
            let id = Uuid::now_v7();
            let out = f
                .service
                .reserve(id, &lines(&[("A", 2), ("B", 2)]), TTL)
                .await
                .expect("answers");
            assert_eq!(out, ReserveOutcome::OutOfStock { sku: "B".into() });
            assert_eq!(f.stock("A").await.reserved, 0, "nothing held for A");

            // More stock arrives, but the same reservation id keeps its first answer.
            f.set("B", "main", 10).await;
            let again = f
                .service
                .reserve(id, &lines(&[("A", 2), ("B", 2)]), TTL)
                .await
                .expect("answers");
            assert_eq!(again, ReserveOutcome::OutOfStock { sku: "B".into() });
            assert!(f.service.commit(id).await.is_err());

            let ok = Uuid::now_v7();
            for _ in 0..2 {
                let out = f
                    .service
                    .reserve(ok, &lines(&[("A", 2), ("B", 2)]), TTL)
                    .await;
                assert_eq!(out.ok(), Some(ReserveOutcome::Reserved));
            }
            assert_eq!(f.stock("A").await.reserved, 2, "held once");
        }
    }

    #[tokio::test]
    async fn release_gives_stock_back_once_and_ignores_unknown_ids() {
        for f in fixtures(&["A"]).await {
            f.set("A", "main", 3).await;
            let id = Uuid::now_v7();
            f.service
                .reserve(id, &lines(&[("A", 3)]), TTL)
                .await
                .expect("reserve");
            assert_eq!(f.stock("A").await.available, 0);
            f.service.release(id).await.expect("release");
            f.service.release(id).await.expect("release twice");
            f.service
                .release(Uuid::now_v7())
                .await
                .expect("unknown id is a no-op");
            let s = f.stock("A").await;
            assert_eq!((s.available, s.reserved), (3, 0));
            assert!(
                matches!(f.service.commit(id).await, Err(ClientError::Failed(..))),
                "a released reservation cannot be sold"
            );
            let released: Vec<_> = f
                .events()
                .await
                .into_iter()
                .filter(|e| e.event_type == "inventory.released")
                .collect();
            assert_eq!(released.len(), 1);
            assert_eq!(released[0].payload["reason"], "requested");
        }
    }

    #[tokio::test]
    async fn returns_put_back_part_once_and_a_full_restock_only_the_rest() {
        for f in fixtures(&["A", "B"]).await {
            f.set("A", "main", 2).await;
            f.set("A", "east", 5).await;
            f.set("B", "main", 5).await;
            let id = Uuid::now_v7();
            f.service
                .reserve(id, &lines(&[("A", 4), ("B", 2)]), TTL)
                .await
                .expect("reserve");
            let early = Uuid::now_v7();
            assert!(
                matches!(
                    f.service
                        .restock_part(id, early, &lines(&[("A", 1)]), None)
                        .await,
                    Err(ClientError::Failed(..))
                ),
                "nothing is sold before the commit"
            );
            f.service.commit(id).await.expect("commit");
            assert_eq!(f.stock("A").await.available, 3);

            // One A back where it came from first (main), twice by one id.
            let first = Uuid::now_v7();
            for _ in 0..2 {
                f.service
                    .restock_part(id, first, &lines(&[("A", 1)]), None)
                    .await
                    .expect("restock part");
            }
            // One B into a warehouse that had none of it.
            f.service
                .restock_part(id, Uuid::now_v7(), &lines(&[("B", 1)]), Some("returns"))
                .await
                .expect("restock into another warehouse");
            assert!(
                matches!(
                    f.service
                        .restock_part(id, Uuid::now_v7(), &lines(&[("A", 4)]), None)
                        .await,
                    Err(ClientError::Failed(..))
                ),
                "more than is still sold"
            );
            let a = f.stock("A").await;
            assert_eq!(a.available, 4);
            let b = f.stock("B").await;
            assert_eq!(b.available, 4);
            assert!(b
                .warehouses
                .iter()
                .any(|w| w.warehouse == "returns" && w.on_hand == 1));

            // The full restock puts back the 3 A and 1 B still sold.
            f.service.restock(id).await.expect("restock");
            f.service.restock(id).await.expect("restock twice");
            assert_eq!(f.stock("A").await.available, 7);
            assert_eq!(f.stock("B").await.available, 5);
        }
    }

    #[tokio::test]
    async fn commit_is_idempotent_and_release_after_commit_changes_nothing() {
        for f in fixtures(&["A"]).await {
            f.set("A", "main", 4).await;
            let id = Uuid::now_v7();
            f.service
                .reserve(id, &lines(&[("A", 3)]), TTL)
                .await
                .expect("reserve");
            f.service.commit(id).await.expect("commit");
            f.service.commit(id).await.expect("commit twice");
            f.service.release(id).await.expect("release is a no-op");
            let s = f.stock("A").await;
            assert_eq!(
                (s.available, s.reserved, s.warehouses[0].on_hand),
                (1, 0, 1)
            );
            assert!(matches!(
                f.service.commit(Uuid::now_v7()).await,
                Err(ClientError::Failed(..))
            ));
        }
    }

    #[tokio::test]
    async fn expired_reservations_are_released_and_cannot_be_committed() {
        for f in fixtures(&["A"]).await {
            f.set("A", "main", 2).await;
            let short = Uuid::now_v7();
            let long = Uuid::now_v7();
            f.service
                .reserve(short, &lines(&[("A", 1)]), Duration::from_millis(1))
                .await
                .expect("reserve");
            f.service
                .reserve(long, &lines(&[("A", 1)]), TTL)
                .await
                .expect("reserve");
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(f.service.release_expired().await.expect("sweep"), 1);
            assert_eq!(f.service.release_expired().await.expect("sweep"), 0);
            assert!(matches!(
                f.service.commit(short).await,
                Err(ClientError::Failed(..))
            ));
            f.service.commit(long).await.expect("the live one commits");
            let s = f.stock("A").await;
            assert_eq!((s.available, s.reserved), (1, 0));
            let released = f
                .events()
                .await
                .into_iter()
                .find(|e| e.event_type == "inventory.released")
                .expect("released event");
            assert_eq!(released.payload["reason"], "expired");
        }
    }

    #[tokio::test]
    async fn stock_events_follow_every_change_and_low_stock_is_signalled_on_crossing() {
        for f in fixtures(&["A"]).await {
            f.set("A", "main", 6).await;
            let id = Uuid::now_v7();
            f.service
                .reserve(id, &lines(&[("A", 2)]), TTL)
                .await
                .expect("reserve");
            f.service
                .reserve(Uuid::now_v7(), &lines(&[("A", 1)]), TTL)
                .await
                .expect("reserve");
            let events = f.events().await;
            let changed: Vec<(i64, i64)> = events
                .iter()
                .filter(|e| e.event_type == "stock.changed")
                .map(|e| {
                    (
                        e.payload["available"].as_i64().unwrap_or(-1),
                        e.payload["reserved"].as_i64().unwrap_or(-1),
                    )
                })
                .collect();
            assert_eq!(changed, vec![(6, 0), (4, 2), (3, 3)]);
            let low: Vec<i64> = events
                .iter()
                .filter(|e| e.event_type == "stock.low")
                .map(|e| e.payload["available"].as_i64().unwrap_or(-1))
                .collect();
            assert_eq!(low, vec![4], "once, when falling below 5");
            assert!(events.iter().any(|e| e.event_type == "inventory.reserved"
                && e.subject == id.to_string()
                && e.payload["lines"][0]["quantity"] == 2));
        }
    }

    #[tokio::test]
    async fn on_hand_cannot_go_below_reserved() {
        for f in fixtures(&["A"]).await {
            f.set("A", "main", 5).await;
            f.service
                .reserve(Uuid::now_v7(), &lines(&[("A", 4)]), TTL)
                .await
                .expect("reserve");
            let e = f
                .service
                .set_stock(f.seller, "A", None, 3)
                .await
                .expect_err("below reserved");
            assert_eq!(
                (e.status.as_u16(), e.code.as_ref()),
                (409, "below_reserved")
            );
            let s = f.set("A", "main", 4).await;
            assert_eq!((s.available, s.reserved), (0, 4));
        }
    }

    #[tokio::test]
    async fn invalid_reservations_fail_without_touching_stock() {
        for f in fixtures(&["A"]).await {
            f.set("A", "main", 5).await;
            for bad in [lines(&[]), lines(&[("A", 0)]), lines(&[("A", -3)])] {
                assert!(matches!(
                    f.service.reserve(Uuid::now_v7(), &bad, TTL).await,
                    Err(ClientError::Failed(..))
                ));
            }
            assert_eq!(
                f.service
                    .reserve(Uuid::now_v7(), &lines(&[("NOPE", 1)]), TTL)
                    .await
                    .ok(),
                Some(ReserveOutcome::OutOfStock { sku: "NOPE".into() })
            );
            assert_eq!(f.stock("A").await.available, 5);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_never_oversell_across_warehouses() {
        for f in fixtures(&["A", "B"]).await {
            f.set("A", "main", 6).await;
            f.set("A", "spare", 4).await;
            f.set("B", "main", 100).await;
            let calls = (0..60).map(|i| {
                let service = f.service.clone();
                tokio::spawn(async move {
                    // Lines in both orders, so that lock ordering is exercised too.
                    let items = if i % 2 == 0 {
                        lines(&[("A", 1), ("B", 1)])
                    } else {
                        lines(&[("B", 1), ("A", 1)])
                    };
                    service.reserve(Uuid::now_v7(), &items, TTL).await
                })
            });
            let outcomes = futures_join(calls).await;
            let reserved = outcomes
                .iter()
                .filter(|o| matches!(o, Ok(ReserveOutcome::Reserved)))
                .count();
            assert_eq!(reserved, 10, "{outcomes:?}");
            let a = f.stock("A").await;
            assert_eq!((a.available, a.reserved), (0, 10));
            assert!(a.warehouses.iter().all(|w| w.on_hand == w.reserved));
            let b = f.stock("B").await;
            assert_eq!((b.available, b.reserved), (90, 10), "B held only with A");
        }
    }

    /// Changes to different warehouses of one SKU at once: each
    /// `stock.changed` has its own version, and the newest one carries the
    /// SKU's final totals (on PostgreSQL too, where the writers run at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_changes_of_a_sku_publish_ordered_versions_and_true_totals() {
        for f in fixtures(&["A"]).await {
            let f = Arc::new(f);
            let calls = (0..12).map(|i| {
                let f = f.clone();
                tokio::spawn(async move { f.set("A", &format!("w{i}"), i + 1).await })
            });
            futures_join(calls).await;
            let mut changes: Vec<StockChanged> = f
                .events()
                .await
                .iter()
                .filter(|e| e.event_type == "stock.changed")
                .map(|e| e.decode().expect("stock.changed"))
                .collect();
            assert_eq!(changes.len(), 12);
            changes.sort_by_key(|c| c.version);
            let versions: Vec<i64> = changes.iter().map(|c| c.version).collect();
            assert_eq!(versions, (1..=12).collect::<Vec<_>>());
            // Each change saw every earlier one: totals grow with the version.
            assert!(changes.windows(2).all(|w| w[0].available < w[1].available));
            let last = changes.last().expect("a change");
            assert_eq!(last.available, (1..=12).sum::<i64>());
            assert_eq!(last.available, f.stock("A").await.available);
        }
    }

    async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for h in handles.collect::<Vec<_>>() {
            out.push(h.await.expect("task"));
        }
        out
    }
}
