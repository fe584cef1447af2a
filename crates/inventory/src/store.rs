//! Stock rows, reservations and the outbox, in one database.
//!
//! Every change of stock is a conditional update whose `WHERE` re-checks the
//! invariant it needs (`on_hand - reserved >= n`, `reserved >= n`,
//! `status = 'held'`), and `rows_affected` tells whether it applied. Nothing
//! is decided from a value read earlier, so the rules hold with any number of
//! concurrent callers and replicas, at any isolation level.

use crate::domain::{
    plan_allocation, ReservationStatus, Stock, Transition, Warehouse, WarehouseStock,
    MAIN_WAREHOUSE,
};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use mercato_contracts::events::{
    InventoryCommitted, InventoryReleased, InventoryReserved, StockChanged, StockLow,
};
use mercato_contracts::types::SkuQuantity;
use mercato_kernel::db::{Db, Tx};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{time, Envelope};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Clone)]
pub struct InventoryStore {
    db: Db,
    outbox: Outbox,
    low_stock_threshold: i64,
}

/// How often a reservation re-reads a SKU's warehouses after another caller
/// took the stock it had planned on. Each retry sees fresher counts.
const TAKE_ATTEMPTS: usize = 8;

/// What `reserve` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    Held,
    OutOfStock { sku: String },
}

/// What `reserve` answers, and whether this call made the outcome or found it stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveResult {
    pub outcome: Reserved,
    pub replayed: bool,
}

/// What `set_on_hand` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetResult {
    Set(Stock),
    /// The warehouse holds more reserved units than the new on-hand count.
    BelowReserved {
        reserved: i64,
    },
}

/// What a partial restock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartResult {
    Done,
    /// This restock id was put back before.
    AlreadyDone,
    /// Nothing was put back: the reservation is not committed, or a line
    /// asks for more than is still sold.
    Refused(String),
}

/// What `commit` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    Committed,
    AlreadyCommitted,
    Refused(&'static str),
}

/// On-hand and reserved units of one SKU over all warehouses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Totals {
    on_hand: i64,
    reserved: i64,
}

impl Totals {
    fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

impl InventoryStore {
    pub fn new(db: Db, outbox: Outbox, low_stock_threshold: i64) -> Self {
        Self {
            db,
            outbox,
            low_stock_threshold,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The SKU's stock; no rows means nothing was ever stocked.
    pub async fn stock(&self, sku: &str) -> anyhow::Result<Stock> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT warehouse, on_hand, reserved FROM stock WHERE sku = $1")
                .bind(sku)
                .fetch_all(self.db.pool())
                .await?;
        Ok(Stock::from_rows(sku, warehouse_rows(rows)))
    }

    /// The stocked SKUs with no more than the low-stock threshold
    /// available, fewest first, at most `limit`; and that threshold.
    pub async fn low(&self, limit: i64) -> anyhow::Result<(i64, Vec<(String, i64)>)> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT sku, CAST(SUM(on_hand - reserved) AS BIGINT) AS available FROM stock
             GROUP BY sku HAVING SUM(on_hand - reserved) <= $1
             ORDER BY available, sku LIMIT $2",
        )
        .bind(self.low_stock_threshold)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok((self.low_stock_threshold, rows))
    }

    /// Each SKU's units on hand and not reserved, over its warehouses, in
    /// one query (a SKU without stock is left out).
    pub async fn available(
        &self,
        skus: &[String],
    ) -> anyhow::Result<std::collections::HashMap<String, i64>> {
        if skus.is_empty() {
            return Ok(Default::default());
        }
        let placeholders: Vec<String> = (1..=skus.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT sku, CAST(SUM(on_hand - reserved) AS BIGINT) FROM stock
             WHERE sku IN ({}) GROUP BY sku",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
        for sku in skus {
            query = query.bind(sku);
        }
        Ok(query.fetch_all(self.db.pool()).await?.into_iter().collect())
    }

    /// Sets the on-hand count of one warehouse, unless that would leave less
    /// on hand than is reserved there.
    pub async fn set_on_hand(
        &self,
        sku: &str,
        warehouse: &Warehouse,
        quantity: i64,
    ) -> anyhow::Result<SetResult> {
        let now = time::to_db(&time::now());
        let mut tx = self.db.begin().await?;
        let version = next_version(&mut tx, sku).await?;
        let before = totals(&mut tx, sku).await?;
        let applied = sqlx::query(
            "INSERT INTO stock (sku, warehouse, on_hand, reserved, updated_at) VALUES ($1, $2, $3, 0, $4)
             ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = excluded.on_hand, updated_at = excluded.updated_at
             WHERE stock.reserved <= excluded.on_hand",
        )
        .bind(sku)
        .bind(warehouse.as_str())
        .bind(quantity)
        .bind(&now)
        .execute(tx.conn())
        .await?;
        if applied.rows_affected() == 0 {
            let (reserved,): (i64,) =
                sqlx::query_as("SELECT reserved FROM stock WHERE sku = $1 AND warehouse = $2")
                    .bind(sku)
                    .bind(warehouse.as_str())
                    .fetch_one(tx.conn())
                    .await?;
            return Ok(SetResult::BelowReserved { reserved });
        }
        let after = totals(&mut tx, sku).await?;
        let events = self.stock_events(sku, before, after, version)?;
        self.outbox.add(&mut tx, &events).await?;
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT warehouse, on_hand, reserved FROM stock WHERE sku = $1")
                .bind(sku)
                .fetch_all(tx.conn())
                .await?;
        tx.commit().await?;
        Ok(SetResult::Set(Stock::from_rows(sku, warehouse_rows(rows))))
    }

    /// Holds every line or none, in one transaction. `lines` are merged and
    /// sorted by SKU (see [`crate::domain::normalize_lines`]). The first
    /// outcome for an id is stored and every later call answers it.
    pub async fn reserve(
        &self,
        id: Uuid,
        lines: &[(String, i64)],
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<ReserveResult> {
        let now = time::now();
        let mut tx = self.db.begin().await?;
        // Claiming the id first serialises callers of the same reservation:
        // on PostgreSQL a second insert waits for the first to finish.
        let claimed = sqlx::query(
            "INSERT INTO reservations (id, status, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(ReservationStatus::Held.as_str())
        .bind(time::to_db(&expires_at))
        .bind(time::to_db(&now))
        .bind(time::to_db(&now))
        .execute(tx.conn())
        .await?;
        if claimed.rows_affected() == 0 {
            drop(tx);
            return self.stored_outcome(id).await;
        }
        let mut events = vec![Envelope::new(
            crate::NAME,
            id.to_string(),
            &InventoryReserved {
                reservation_id: id,
                lines: lines
                    .iter()
                    .map(|(sku, quantity)| SkuQuantity {
                        sku: sku.clone(),
                        quantity: *quantity,
                    })
                    .collect(),
                expires_at,
            },
        )?];
        for (sku, need) in lines {
            let version = next_version(&mut tx, sku).await?;
            let before = totals(&mut tx, sku).await?;
            if !self.take(&mut tx, id, sku, *need).await? {
                // Rolls back every unit already taken for earlier lines.
                drop(tx);
                return self.record_out_of_stock(id, sku).await;
            }
            let after = totals(&mut tx, sku).await?;
            events.extend(self.stock_events(sku, before, after, version)?);
        }
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(ReserveResult {
            outcome: Reserved::Held,
            replayed: false,
        })
    }

    /// Takes `need` units of `sku` for reservation `id`, from `main` first,
    /// then the other warehouses by name. `false` when there is too little.
    async fn take(&self, tx: &mut Tx, id: Uuid, sku: &str, need: i64) -> anyhow::Result<bool> {
        let now = time::to_db(&time::now());
        let mut left = need;
        let mut taken: BTreeMap<String, i64> = BTreeMap::new();
        for _ in 0..TAKE_ATTEMPTS {
            let available: Vec<(String, i64)> = sqlx::query_as(
                "SELECT warehouse, on_hand - reserved FROM stock WHERE sku = $1 AND on_hand > reserved",
            )
            .bind(sku)
            .fetch_all(tx.conn())
            .await?;
            let Some(plan) = plan_allocation(left, &available) else {
                return Ok(false);
            };
            for (warehouse, n) in plan {
                let applied = sqlx::query(
                    "UPDATE stock SET reserved = reserved + $1, updated_at = $2
                     WHERE sku = $3 AND warehouse = $4 AND on_hand - reserved >= $5",
                )
                .bind(n)
                .bind(&now)
                .bind(sku)
                .bind(&warehouse)
                .bind(n)
                .execute(tx.conn())
                .await?;
                if applied.rows_affected() != 1 {
                    // Another caller got there first: plan again from fresh counts.
                    break;
                }
                left -= n;
                *taken.entry(warehouse).or_default() += n;
            }
            if left == 0 {
                for (warehouse, quantity) in &taken {
                    sqlx::query(
                        "INSERT INTO reservation_lines (reservation_id, sku, warehouse, quantity) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id.to_string())
                    .bind(sku)
                    .bind(warehouse)
                    .bind(quantity)
                    .execute(tx.conn())
                    .await?;
                }
                return Ok(true);
            }
        }
        tracing::warn!(%sku, %id, "stock kept changing under a reservation; reporting it out of stock");
        Ok(false)
    }

    /// Stores that the first attempt of `id` found `sku` short, unless
    /// another attempt already stored an outcome.
    async fn record_out_of_stock(&self, id: Uuid, sku: &str) -> anyhow::Result<ReserveResult> {
        let now = time::to_db(&time::now());
        let mut tx = self.db.begin().await?;
        let stored = sqlx::query(
            "INSERT INTO reservations (id, status, out_of_stock_sku, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(ReservationStatus::OutOfStock.as_str())
        .bind(sku)
        .bind(&now)
        .bind(&now)
        .bind(&now)
        .execute(tx.conn())
        .await?;
        if stored.rows_affected() == 0 {
            drop(tx);
            return self.stored_outcome(id).await;
        }
        tx.commit().await?;
        Ok(ReserveResult {
            outcome: Reserved::OutOfStock {
                sku: sku.to_owned(),
            },
            replayed: false,
        })
    }

    async fn stored_outcome(&self, id: Uuid) -> anyhow::Result<ReserveResult> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT status, out_of_stock_sku FROM reservations WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        let (status, sku) = row.with_context(|| format!("reservation {id} vanished"))?;
        let outcome = match ReservationStatus::parse(&status) {
            Some(ReservationStatus::OutOfStock) => Reserved::OutOfStock {
                sku: sku.unwrap_or_default(),
            },
            Some(_) => Reserved::Held,
            None => anyhow::bail!("reservation {id} has an unknown status {status:?}"),
        };
        Ok(ReserveResult {
            outcome,
            replayed: true,
        })
    }

    /// The status of a reservation; `None` when it was never made.
    pub async fn status(&self, id: Uuid) -> anyhow::Result<Option<ReservationStatus>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT status FROM reservations WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|(s,)| {
            ReservationStatus::parse(&s)
                .with_context(|| format!("reservation {id} has an unknown status {s:?}"))
        })
        .transpose()
    }

    /// Gives held stock back. `false` when the reservation held nothing
    /// (unknown, already released, committed or out of stock).
    pub async fn release(&self, id: Uuid, reason: &str) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if !self
            .transition(
                &mut tx,
                id,
                ReservationStatus::Held,
                ReservationStatus::Released,
                Some(reason),
            )
            .await?
        {
            return Ok(false);
        }
        let mut events = vec![Envelope::new(
            crate::NAME,
            id.to_string(),
            &InventoryReleased {
                reservation_id: id,
                reason: reason.to_owned(),
            },
        )?];
        events.extend(
            self.apply_lines(
                &mut tx,
                id,
                "UPDATE stock SET reserved = reserved - $1, updated_at = $2
                 WHERE sku = $3 AND warehouse = $4 AND reserved >= $1",
            )
            .await?,
        );
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Turns held stock into sold stock.
    pub async fn commit(&self, id: Uuid) -> anyhow::Result<CommitResult> {
        let mut tx = self.db.begin().await?;
        if !self
            .transition(
                &mut tx,
                id,
                ReservationStatus::Held,
                ReservationStatus::Committed,
                None,
            )
            .await?
        {
            drop(tx);
            let status = self.status(id).await?;
            return match ReservationStatus::on_commit(status) {
                Transition::AlreadyDone => Ok(CommitResult::AlreadyCommitted),
                Transition::Refuse(why) => Ok(CommitResult::Refused(why)),
                Transition::Apply => {
                    anyhow::bail!("reservation {id} is held but could not be committed")
                }
            };
        }
        let mut events = vec![Envelope::new(
            crate::NAME,
            id.to_string(),
            &InventoryCommitted { reservation_id: id },
        )?];
        events.extend(
            self.apply_lines(
                &mut tx,
                id,
                "UPDATE stock SET on_hand = on_hand - $1, reserved = reserved - $1, updated_at = $2
                 WHERE sku = $3 AND warehouse = $4 AND reserved >= $1",
            )
            .await?,
        );
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(CommitResult::Committed)
    }

    /// Puts sold stock back on hand: what is still sold, less what
    /// [`Self::restock_part`] put back. `false` when nothing of it was sold.
    pub async fn restock(&self, id: Uuid) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if !self
            .transition(
                &mut tx,
                id,
                ReservationStatus::Committed,
                ReservationStatus::Restocked,
                None,
            )
            .await?
        {
            return Ok(false);
        }
        let mut events = Vec::new();
        for (sku, parts) in still_sold(&mut tx, id).await? {
            events.extend(self.put_back(&mut tx, &sku, &parts).await?);
        }
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Puts part of a committed reservation's stock back on hand (a
    /// return): each line into `warehouse`, or into the first warehouse
    /// (allocation order) its SKU was taken from. Once per `restock_id`.
    pub async fn restock_part(
        &self,
        id: Uuid,
        restock_id: Uuid,
        lines: &[SkuQuantity],
        warehouse: Option<&Warehouse>,
    ) -> anyhow::Result<PartResult> {
        let mut tx = self.db.begin().await?;
        let now = time::to_db(&time::now());
        // Takes the reservation's row, so restocks of one reservation follow
        // one another on PostgreSQL too.
        let held =
            sqlx::query("UPDATE reservations SET updated_at = $1 WHERE id = $2 AND status = $3")
                .bind(&now)
                .bind(id.to_string())
                .bind(ReservationStatus::Committed.as_str())
                .execute(tx.conn())
                .await?;
        let done: Option<(String,)> =
            sqlx::query_as("SELECT sku FROM restocks WHERE id = $1 LIMIT 1")
                .bind(restock_id.to_string())
                .fetch_optional(tx.conn())
                .await?;
        if done.is_some() {
            return Ok(PartResult::AlreadyDone);
        }
        if held.rows_affected() == 0 {
            let status = self.status(id).await?;
            // A full restock came first and put back all that was sold.
            if status == Some(ReservationStatus::Restocked) {
                return Ok(PartResult::AlreadyDone);
            }
            return Ok(PartResult::Refused(format!(
                "reservation {id} is {}",
                status.map_or("unknown", |s| s.as_str())
            )));
        }
        let sold = still_sold(&mut tx, id).await?;
        let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
        for line in lines {
            *wanted.entry(line.sku.as_str()).or_default() += line.quantity;
        }
        let mut events = Vec::new();
        for (sku, quantity) in wanted {
            let parts = sold.get(sku).map(Vec::as_slice).unwrap_or_default();
            let left: i64 = parts.iter().map(|(_, q)| q).sum();
            if quantity <= 0 || quantity > left {
                return Ok(PartResult::Refused(format!(
                    "{quantity} of {sku} cannot be put back: {left} sold and not put back yet"
                )));
            }
            let to = match (warehouse, parts.first()) {
                (Some(w), _) => w.as_str().to_owned(),
                (None, Some((first, _))) => first.clone(),
                (None, None) => MAIN_WAREHOUSE.to_owned(),
            };
            sqlx::query(
                "INSERT INTO restocks (id, reservation_id, sku, warehouse, quantity, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(restock_id.to_string())
            .bind(id.to_string())
            .bind(sku)
            .bind(&to)
            .bind(quantity)
            .bind(&now)
            .execute(tx.conn())
            .await?;
            events.extend(self.put_back(&mut tx, sku, &[(to, quantity)]).await?);
        }
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(PartResult::Done)
    }

    /// Adds `parts` (warehouse, quantity) of one SKU to stock on hand,
    /// creating a warehouse's row when it has none; the SKU's stock events.
    async fn put_back(
        &self,
        tx: &mut Tx,
        sku: &str,
        parts: &[(String, i64)],
    ) -> anyhow::Result<Vec<Envelope>> {
        let now = time::to_db(&time::now());
        let version = next_version(tx, sku).await?;
        let before = totals(tx, sku).await?;
        for (warehouse, quantity) in parts.iter().filter(|(_, q)| *q > 0) {
            sqlx::query(
                "INSERT INTO stock (sku, warehouse, on_hand, reserved, updated_at) VALUES ($1, $2, $3, 0, $4)
                 ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = stock.on_hand + excluded.on_hand,
                    updated_at = excluded.updated_at",
            )
            .bind(sku)
            .bind(warehouse)
            .bind(quantity)
            .bind(&now)
            .execute(tx.conn())
            .await?;
        }
        let after = totals(tx, sku).await?;
        self.stock_events(sku, before, after, version)
    }

    /// Moves a reservation from one status to another if it is in the first.
    async fn transition(
        &self,
        tx: &mut Tx,
        id: Uuid,
        from: ReservationStatus,
        to: ReservationStatus,
        reason: Option<&str>,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE reservations SET status = $1, release_reason = COALESCE($2, release_reason), updated_at = $3
             WHERE id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(time::to_db(&time::now()))
        .bind(id.to_string())
        .bind(from.as_str())
        .execute(tx.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Runs `sql` (binding `$1` quantity, `$2` time, `$3` sku, `$4` warehouse) once per
    /// stored line of the reservation; each must hit exactly one row, or the
    /// whole transaction is abandoned. Returns the stock events of the SKUs touched.
    async fn apply_lines(&self, tx: &mut Tx, id: Uuid, sql: &str) -> anyhow::Result<Vec<Envelope>> {
        let now = time::to_db(&time::now());
        let lines: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT sku, warehouse, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY sku, warehouse",
        )
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?;
        let mut by_sku: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for (sku, warehouse, quantity) in lines {
            by_sku.entry(sku).or_default().push((warehouse, quantity));
        }
        let mut events = Vec::new();
        for (sku, mut parts) in by_sku {
            parts.sort_by(|a, b| crate::domain::allocation_order(&a.0, &b.0));
            let version = next_version(tx, &sku).await?;
            let before = totals(tx, &sku).await?;
            for (warehouse, quantity) in parts {
                let applied = sqlx::query(sql)
                    .bind(quantity)
                    .bind(&now)
                    .bind(&sku)
                    .bind(&warehouse)
                    .execute(tx.conn())
                    .await?;
                anyhow::ensure!(
                    applied.rows_affected() == 1,
                    "stock of {sku} in {warehouse} does not match reservation {id}"
                );
            }
            let after = totals(tx, &sku).await?;
            events.extend(self.stock_events(&sku, before, after, version)?);
        }
        Ok(events)
    }

    /// Held reservations whose time is up, oldest first.
    pub async fn expired(&self, now: DateTime<Utc>, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM reservations WHERE status = $1 AND expires_at < $2 ORDER BY expires_at LIMIT $3",
        )
        .bind(ReservationStatus::Held.as_str())
        .bind(time::to_db(&now))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(id,)| Uuid::parse_str(&id).map_err(Into::into))
            .collect()
    }

    /// `stock.changed` when the SKU's counts moved, and `stock.low` when
    /// available stock has just fallen below the threshold.
    fn stock_events(
        &self,
        sku: &str,
        before: Totals,
        after: Totals,
        version: i64,
    ) -> anyhow::Result<Vec<Envelope>> {
        let mut events = Vec::new();
        if before.available() != after.available() || before.reserved != after.reserved {
            events.push(Envelope::new(
                crate::NAME,
                sku,
                &StockChanged {
                    sku: sku.to_owned(),
                    available: after.available(),
                    reserved: after.reserved,
                    version,
                },
            )?);
        }
        if crate::domain::fell_below(
            before.available(),
            after.available(),
            self.low_stock_threshold,
        ) {
            events.push(Envelope::new(
                crate::NAME,
                sku,
                &StockLow {
                    sku: sku.to_owned(),
                    available: after.available(),
                },
            )?);
        }
        Ok(events)
    }
}

/// Takes the SKU's turn and its next version. On PostgreSQL the upsert
/// waits for any other transaction changing the same SKU to end, so the
/// totals read after it include every committed change, and versions follow
/// commit order. Callers touching several SKUs take them in SKU order.
async fn next_version(tx: &mut Tx, sku: &str) -> anyhow::Result<i64> {
    let (version,): (i64,) = sqlx::query_as(
        "INSERT INTO sku_versions (sku, version) VALUES ($1, 1)
         ON CONFLICT (sku) DO UPDATE SET version = sku_versions.version + 1
         RETURNING version",
    )
    .bind(sku)
    .fetch_one(tx.conn())
    .await?;
    Ok(version)
}

/// What of a reservation is still sold, per SKU (in SKU order) and the
/// warehouse it was taken from (in allocation order): its lines, less what
/// restocks put back, taken off each SKU's warehouses in allocation order.
async fn still_sold(tx: &mut Tx, id: Uuid) -> anyhow::Result<BTreeMap<String, Vec<(String, i64)>>> {
    let lines: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT sku, warehouse, quantity FROM reservation_lines WHERE reservation_id = $1",
    )
    .bind(id.to_string())
    .fetch_all(tx.conn())
    .await?;
    let back: Vec<(String, i64)> = sqlx::query_as(
        "SELECT sku, CAST(SUM(quantity) AS BIGINT) FROM restocks WHERE reservation_id = $1 GROUP BY sku",
    )
    .bind(id.to_string())
    .fetch_all(tx.conn())
    .await?;
    let mut sold: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for (sku, warehouse, quantity) in lines {
        sold.entry(sku).or_default().push((warehouse, quantity));
    }
    for parts in sold.values_mut() {
        parts.sort_by(|a, b| crate::domain::allocation_order(&a.0, &b.0));
    }
    for (sku, mut returned) in back {
        for (_, quantity) in sold.get_mut(&sku).into_iter().flatten() {
            let taken = returned.min(*quantity);
            *quantity -= taken;
            returned -= taken;
        }
    }
    Ok(sold)
}

async fn totals(tx: &mut Tx, sku: &str) -> anyhow::Result<Totals> {
    let (on_hand, reserved): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(on_hand), 0) AS BIGINT), CAST(COALESCE(SUM(reserved), 0) AS BIGINT)
         FROM stock WHERE sku = $1",
    )
    .bind(sku)
    .fetch_one(tx.conn())
    .await?;
    Ok(Totals { on_hand, reserved })
}

fn warehouse_rows(rows: Vec<(String, i64, i64)>) -> Vec<WarehouseStock> {
    rows.into_iter()
        .map(|(warehouse, on_hand, reserved)| WarehouseStock {
            warehouse,
            on_hand,
            reserved,
        })
        .collect()
}
