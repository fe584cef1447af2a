//! Cart lines: in the context's SQL store (SQLite or PostgreSQL), or in
//! Redis ([`CartStore::with_redis`]).
//!
//! The SQL store is there either way: it holds the outbox
//! (`cart.checked_out`), the inbox of the `product.archived` consumer and
//! the orders already taken out of a cart (`cart_checkouts`).

mod in_redis;

pub use in_redis::CHECKOUT_MARKER_TTL_SECS;

use crate::domain::CartLine;
use in_redis::RedisLines;
use mercato_contracts::events::CartCheckedOut;
use mercato_contracts::types::SkuQuantity;
use mercato_kernel::cache::RedisConnection;
use mercato_kernel::db::{Db, Tx};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::time::Timestamp;
use mercato_kernel::{inbox, time, Currency, Envelope};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub struct CartStore {
    db: Db,
    outbox: Outbox,
    /// Where the lines are when not in `db`.
    redis: Option<Arc<RedisLines>>,
}

type LineRow = (String, i64, String);

fn line_from_row((sku, quantity, added_at): LineRow) -> anyhow::Result<CartLine> {
    Ok(CartLine {
        sku,
        quantity,
        added_at: time::from_db(&added_at)?,
    })
}

impl CartStore {
    /// Lines in `db`, with the outbox and inbox.
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self {
            db,
            outbox,
            redis: None,
        }
    }

    /// The lines in Redis under `<prefix>:cart...` keys instead (the outbox
    /// and inbox stay in `db`), each Redis call bounded by `timeout`. A
    /// Redis failure is an error that answers 503 (`unavailable`).
    pub fn with_redis(self, conn: RedisConnection, prefix: &str, timeout: Duration) -> Self {
        Self {
            redis: Some(Arc::new(RedisLines::new(conn, prefix, timeout))),
            ..self
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// `"redis"` or `"database"`: where the lines are.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "database"
        }
    }

    /// Whether the lines can be reached, for readiness: with the lines in
    /// Redis, a `PING` answered within the time-out (the error says why
    /// not); with the lines in the database, always `Ok`, as the database
    /// has its own check.
    pub async fn ping_lines(&self) -> anyhow::Result<()> {
        match &self.redis {
            Some(redis) => redis.ping().await,
            None => Ok(()),
        }
    }

    /// The customer's lines, in the order they were first added.
    pub async fn lines(&self, customer_id: Uuid) -> anyhow::Result<Vec<CartLine>> {
        if let Some(redis) = &self.redis {
            return redis.lines(customer_id).await;
        }
        let rows: Vec<LineRow> = sqlx::query_as(
            "SELECT sku, quantity, added_at FROM cart_lines WHERE customer_id = $1 ORDER BY added_at, sku",
        )
        .bind(customer_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter().map(line_from_row).collect()
    }

    /// The promotion code on the customer's cart.
    pub async fn promotion_code(&self, customer_id: Uuid) -> anyhow::Result<Option<String>> {
        if let Some(redis) = &self.redis {
            return redis.promotion_code(customer_id).await;
        }
        let row: Option<(String,)> =
            sqlx::query_as("SELECT code FROM cart_promotions WHERE customer_id = $1")
                .bind(customer_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(c,)| c))
    }

    /// Puts a code on the cart, in place of any other; `None` takes it off.
    pub async fn set_promotion_code(
        &self,
        customer_id: Uuid,
        code: Option<&str>,
    ) -> anyhow::Result<()> {
        if let Some(redis) = &self.redis {
            return redis.set_promotion_code(customer_id, code).await;
        }
        let query = match code {
            Some(code) => sqlx::query(
                "INSERT INTO cart_promotions (customer_id, code, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (customer_id) DO UPDATE SET code = excluded.code, updated_at = excluded.updated_at",
            )
            .bind(customer_id.to_string())
            .bind(code)
            .bind(time::to_db(&time::now())),
            None => sqlx::query("DELETE FROM cart_promotions WHERE customer_id = $1")
                .bind(customer_id.to_string()),
        };
        self.db.execute(query).await?;
        Ok(())
    }

    /// The currency the customer picked for the cart.
    pub async fn currency(&self, customer_id: Uuid) -> anyhow::Result<Option<Currency>> {
        let raw = match &self.redis {
            Some(redis) => redis.currency(customer_id).await?,
            None => {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT currency FROM cart_currencies WHERE customer_id = $1")
                        .bind(customer_id.to_string())
                        .fetch_optional(self.db.pool())
                        .await?;
                row.map(|(c,)| c)
            }
        };
        Ok(raw.map(|c| Currency::parse(&c)).transpose()?)
    }

    /// Keeps the currency the customer picked for the cart.
    pub async fn set_currency(&self, customer_id: Uuid, currency: &Currency) -> anyhow::Result<()> {
        if let Some(redis) = &self.redis {
            return redis.set_currency(customer_id, currency.as_str()).await;
        }
        let query = sqlx::query(
            "INSERT INTO cart_currencies (customer_id, currency, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (customer_id) DO UPDATE SET currency = excluded.currency, updated_at = excluded.updated_at",
        )
        .bind(customer_id.to_string())
        .bind(currency.as_str())
        .bind(time::to_db(&time::now()));
        self.db.execute(query).await?;
        Ok(())
    }

    /// Adds `quantity` units of `sku`, to the line if there is one. `false`
    /// (and no change) when the line would then hold more than `max`; the
    /// check is part of the write, so concurrent adds cannot pass it together.
    pub async fn add(
        &self,
        customer_id: Uuid,
        sku: &str,
        quantity: i64,
        max: i64,
        now: Timestamp,
    ) -> anyhow::Result<bool> {
        if let Some(redis) = &self.redis {
            return redis.add(customer_id, sku, quantity, max, now).await;
        }
        let query = sqlx::query(
            "INSERT INTO cart_lines (customer_id, sku, quantity, added_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (customer_id, sku) DO UPDATE SET quantity = cart_lines.quantity + excluded.quantity
             WHERE cart_lines.quantity + excluded.quantity <= $5",
        )
        .bind(customer_id.to_string())
        .bind(sku)
        .bind(quantity)
        .bind(time::to_db(&now))
        .bind(max);
        let done = self.db.execute(query).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the quantity of a line; `false` when the cart has no such line.
    pub async fn set_quantity(
        &self,
        customer_id: Uuid,
        sku: &str,
        quantity: i64,
    ) -> anyhow::Result<bool> {
        if let Some(redis) = &self.redis {
            return redis.set_quantity(customer_id, sku, quantity).await;
        }
        let query =
            sqlx::query("UPDATE cart_lines SET quantity = $3 WHERE customer_id = $1 AND sku = $2")
                .bind(customer_id.to_string())
                .bind(sku)
                .bind(quantity);
        let done = self.db.execute(query).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a line; a no-op when there is none.
    pub async fn remove(&self, customer_id: Uuid, sku: &str) -> anyhow::Result<()> {
        if let Some(redis) = &self.redis {
            return redis.remove(customer_id, sku).await;
        }
        let query = sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1 AND sku = $2")
            .bind(customer_id.to_string())
            .bind(sku);
        self.db.execute(query).await?;
        Ok(())
    }

    /// Takes what `order_id` bought out of the cart and records
    /// `cart.checked_out`, once per order. `false` when the order had already
    /// been taken out.
    ///
    /// In the database it is one transaction. In Redis the lines change in
    /// one script that also sets the order's marker, then the event is
    /// recorded in the SQL store, gated by the order's row in
    /// `cart_checkouts`: a call repeated after a failure between the two
    /// finds the marker set (`false`, the lines are not touched again) and
    /// still records the event, exactly once.
    pub async fn check_out(
        &self,
        customer_id: Uuid,
        order_id: Uuid,
        bought: &[SkuQuantity],
    ) -> anyhow::Result<bool> {
        let event = Envelope::new(
            crate::NAME,
            customer_id.to_string(),
            &CartCheckedOut {
                customer_id,
                order_id,
            },
        )?;
        if let Some(redis) = &self.redis {
            // The code went with the order (in the same script).
            let first = redis.check_out(customer_id, order_id, bought).await?;
            let mut tx = self.db.begin().await?;
            if record_checkout(&mut tx, customer_id, order_id).await? {
                self.outbox.add(&mut tx, &[event]).await?;
                tx.commit().await?;
            }
            return Ok(first);
        }
        let customer = customer_id.to_string();
        let mut tx = self.db.begin().await?;
        if !record_checkout(&mut tx, customer_id, order_id).await? {
            return Ok(false);
        }
        for b in bought.iter().filter(|b| b.quantity > 0) {
            // Units added after the order was placed stay in the cart.
            sqlx::query(
                "DELETE FROM cart_lines WHERE customer_id = $1 AND sku = $2 AND quantity <= $3",
            )
            .bind(&customer)
            .bind(&b.sku)
            .bind(b.quantity)
            .execute(tx.conn())
            .await?;
            sqlx::query(
                "UPDATE cart_lines SET quantity = quantity - $3 WHERE customer_id = $1 AND sku = $2",
            )
            .bind(&customer)
            .bind(&b.sku)
            .bind(b.quantity)
            .execute(tx.conn())
            .await?;
        }
        // The code went with the order.
        sqlx::query("DELETE FROM cart_promotions WHERE customer_id = $1")
            .bind(&customer)
            .execute(tx.conn())
            .await?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes `skus` from every cart, once per event (`consumer` claims
    /// `event_id` in the same transaction). `false` for a repeated event.
    /// With the lines in Redis, they are removed there while the claim is
    /// held and before it commits; a failure in between leaves the event
    /// unclaimed, and removing again is harmless.
    pub async fn remove_skus_everywhere(
        &self,
        consumer: &str,
        event_id: Uuid,
        skus: &[String],
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if !inbox::claim(&mut tx, consumer, event_id).await? {
            return Ok(false);
        }
        if let Some(redis) = &self.redis {
            redis.remove_skus_everywhere(skus).await?;
            tx.commit().await?;
            return Ok(true);
        }
        for sku in skus {
            sqlx::query("DELETE FROM cart_lines WHERE sku = $1")
                .bind(sku)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// Records that `order_id` was taken out of the customer's cart; `false`
/// when it already was.
async fn record_checkout(tx: &mut Tx, customer_id: Uuid, order_id: Uuid) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO cart_checkouts (order_id, customer_id, processed_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(customer_id.to_string())
    .bind(time::to_db(&time::now()))
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}
