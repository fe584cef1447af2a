//! Cart lines, on SQLite or PostgreSQL.

use crate::domain::CartLine;
use mercato_contracts::events::CartCheckedOut;
use mercato_contracts::types::SkuQuantity;
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::time::Timestamp;
use mercato_kernel::{inbox, time, Envelope};
use uuid::Uuid;

#[derive(Clone)]
pub struct CartStore {
    db: Db,
    outbox: Outbox,
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
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The customer's lines, in the order they were first added.
    pub async fn lines(&self, customer_id: Uuid) -> anyhow::Result<Vec<CartLine>> {
        let rows: Vec<LineRow> = sqlx::query_as(
            "SELECT sku, quantity, added_at FROM cart_lines WHERE customer_id = $1 ORDER BY added_at, sku",
        )
        .bind(customer_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter().map(line_from_row).collect()
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
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "INSERT INTO cart_lines (customer_id, sku, quantity, added_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (customer_id, sku) DO UPDATE SET quantity = cart_lines.quantity + excluded.quantity
             WHERE cart_lines.quantity + excluded.quantity <= $5",
        )
        .bind(customer_id.to_string())
        .bind(sku)
        .bind(quantity)
        .bind(time::to_db(&now))
        .bind(max)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the quantity of a line; `false` when the cart has no such line.
    pub async fn set_quantity(
        &self,
        customer_id: Uuid,
        sku: &str,
        quantity: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let done =
            sqlx::query("UPDATE cart_lines SET quantity = $3 WHERE customer_id = $1 AND sku = $2")
                .bind(customer_id.to_string())
                .bind(sku)
                .bind(quantity)
                .execute(tx.conn())
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a line; a no-op when there is none.
    pub async fn remove(&self, customer_id: Uuid, sku: &str) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1 AND sku = $2")
            .bind(customer_id.to_string())
            .bind(sku)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes what `order_id` bought out of the cart and records
    /// `cart.checked_out`, in one transaction, once per order. `false` when
    /// the order had already been taken out.
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
        let customer = customer_id.to_string();
        let mut tx = self.db.begin().await?;
        let first = sqlx::query(
            "INSERT INTO cart_checkouts (order_id, customer_id, processed_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(order_id.to_string())
        .bind(&customer)
        .bind(time::to_db(&time::now()))
        .execute(tx.conn())
        .await?;
        if first.rows_affected() == 0 {
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
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes `skus` from every cart, once per event (`consumer` claims
    /// `event_id` in the same transaction). `false` for a repeated event.
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
