//! Cart lines in Redis, for deployments where every cart replica shares one
//! Redis (`cart.store = "redis"`).
//!
//! Keys, under the configured prefix:
//! - `<prefix>:cart:<customer_id>`: a hash, SKU → `"<quantity>:<added_at>"`
//!   (`added_at` in microseconds since the Unix epoch);
//! - `<prefix>:cart-sku:<sku>`: a set of the customers whose cart holds the
//!   SKU, so an archived product can be taken out of every cart;
//! - `<prefix>:cart-checkout:<order_id>`: set when an order's purchase was
//!   taken out of its cart, kept for [`CHECKOUT_MARKER_TTL_SECS`];
//! - `<prefix>:cart-promo:<customer_id>`: the promotion code on the cart;
//! - `<prefix>:cart-currency:<customer_id>`: the currency the customer picked.
//!
//! Every change that reads before it writes is one Lua script, so it is
//! atomic in Redis: two concurrent adds cannot both pass the `max` check.
//! The scripts touch keys they compute (a cart found through a SKU's set),
//! so they need one Redis (with replicas), not a Redis Cluster.

use crate::domain::CartLine;
use mercato_contracts::types::SkuQuantity;
use mercato_kernel::cache::{within, RedisConnection};
use mercato_kernel::time::Timestamp;
use mercato_kernel::ApiError;
use redis::AsyncCommands as _;
use redis::Script;
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// How long the record that an order was taken out of its cart is kept:
/// far longer than a checkout retries.
pub const CHECKOUT_MARKER_TTL_SECS: u64 = 30 * 24 * 3600;

/// Customers taken out of a SKU's set per script call, so that archiving a
/// product held by many carts never blocks Redis for long.
const PURGE_BATCH: usize = 500;

/// KEYS[1]: the cart. KEYS[2]: the SKU's set of customers. ARGV: SKU,
/// quantity to add, max, added_at (a new line's), customer id.
/// 1 when added, 0 (nothing changed) when the line would exceed max.
const ADD: &str = r"
local line = redis.call('HGET', KEYS[1], ARGV[1])
local quantity = tonumber(ARGV[2])
local added_at = ARGV[4]
if line then
  local sep = string.find(line, ':', 1, true)
  quantity = quantity + tonumber(string.sub(line, 1, sep - 1))
  added_at = string.sub(line, sep + 1)
end
if quantity > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d:%s', quantity, added_at))
redis.call('SADD', KEYS[2], ARGV[5])
return 1
";

/// KEYS[1]: the cart. ARGV: SKU, quantity. 1 when set, 0 without such a line.
const SET_QUANTITY: &str = r"
local line = redis.call('HGET', KEYS[1], ARGV[1])
if not line then return 0 end
local sep = string.find(line, ':', 1, true)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. string.sub(line, sep + 1))
return 1
";

/// KEYS[1]: the order's marker. KEYS[2]: the cart. KEYS[3]: the cart's
/// promotion code. KEYS[3 + n]: the set of the n-th bought SKU. ARGV[1]:
/// customer id. ARGV[2]: the marker's time to live in seconds. ARGV[1 +
/// 2n], ARGV[2 + 2n]: the n-th bought SKU and quantity. 0 when the marker
/// was already set (nothing changed), else 1. Units added after the order
/// was placed stay in the cart; the code goes with the order.
const CHECK_OUT: &str = r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('DEL', KEYS[3])
for i = 4, #KEYS do
  local sku = ARGV[2 * i - 5]
  local bought = tonumber(ARGV[2 * i - 4])
  local line = redis.call('HGET', KEYS[2], sku)
  if line then
    local sep = string.find(line, ':', 1, true)
    local quantity = tonumber(string.sub(line, 1, sep - 1))
    if quantity <= bought then
      redis.call('HDEL', KEYS[2], sku)
      redis.call('SREM', KEYS[i], ARGV[1])
    else
      redis.call('HSET', KEYS[2], sku, string.format('%d:%s', quantity - bought, string.sub(line, sep + 1)))
    end
  end
end
return 1
";

/// KEYS[1]: the SKU's set of customers. ARGV: the carts' key prefix
/// (`<prefix>:cart:`), SKU, batch size. Takes up to a batch of customers out
/// of the set and the SKU out of their carts; returns how many.
const PURGE: &str = r"
local customers = redis.call('SPOP', KEYS[1], ARGV[3])
for _, customer in ipairs(customers) do
  redis.call('HDEL', ARGV[1] .. customer, ARGV[2])
end
return #customers
";

pub(super) struct RedisLines {
    conn: RedisConnection,
    prefix: String,
    timeout: Duration,
    add: Script,
    set_quantity: Script,
    check_out: Script,
    purge: Script,
}

impl RedisLines {
    pub(super) fn new(conn: RedisConnection, prefix: &str, timeout: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
            add: Script::new(ADD),
            set_quantity: Script::new(SET_QUANTITY),
            check_out: Script::new(CHECK_OUT),
            purge: Script::new(PURGE),
        }
    }

    fn cart_key(&self, customer_id: Uuid) -> String {
        format!("{}:cart:{customer_id}", self.prefix)
    }

    fn sku_key(&self, sku: &str) -> String {
        format!("{}:cart-sku:{sku}", self.prefix)
    }

    fn checkout_key(&self, order_id: Uuid) -> String {
        format!("{}:cart-checkout:{order_id}", self.prefix)
    }

    fn promo_key(&self, customer_id: Uuid) -> String {
        format!("{}:cart-promo:{customer_id}", self.prefix)
    }

    fn currency_key(&self, customer_id: Uuid) -> String {
        format!("{}:cart-currency:{customer_id}", self.prefix)
    }

    pub(super) async fn currency(&self, customer_id: Uuid) -> anyhow::Result<Option<String>> {
        let mut conn = self.conn.clone();
        self.call(conn.get(self.currency_key(customer_id))).await
    }

    pub(super) async fn set_currency(
        &self,
        customer_id: Uuid,
        currency: &str,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        self.call(conn.set(self.currency_key(customer_id), currency))
            .await
    }

    pub(super) async fn promotion_code(&self, customer_id: Uuid) -> anyhow::Result<Option<String>> {
        let mut conn = self.conn.clone();
        self.call(conn.get(self.promo_key(customer_id))).await
    }

    pub(super) async fn set_promotion_code(
        &self,
        customer_id: Uuid,
        code: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let key = self.promo_key(customer_id);
        match code {
            Some(code) => self.call(conn.set(key, code)).await,
            None => self.call(conn.del(key)).await,
        }
    }

    /// Runs one Redis call within the time-out. A failure is a 503 to a
    /// client (carts are temporarily unavailable), its cause logged here.
    async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        within(self.timeout, call).await.map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "the cart store in Redis failed");
            metrics::counter!("mercato_cart_redis_errors_total").increment(1);
            e.context(ApiError::unavailable("carts are temporarily unavailable"))
        })
    }

    pub(super) async fn lines(&self, customer_id: Uuid) -> anyhow::Result<Vec<CartLine>> {
        let mut conn = self.conn.clone();
        let stored: std::collections::HashMap<String, String> =
            self.call(conn.hgetall(self.cart_key(customer_id))).await?;
        let mut lines = stored
            .into_iter()
            .map(|(sku, value)| line_from_value(sku, &value))
            .collect::<anyhow::Result<Vec<_>>>()?;
        lines.sort_by(|a, b| a.added_at.cmp(&b.added_at).then_with(|| a.sku.cmp(&b.sku)));
        Ok(lines)
    }

    pub(super) async fn add(
        &self,
        customer_id: Uuid,
        sku: &str,
        quantity: i64,
        max: i64,
        now: Timestamp,
    ) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let mut call = self.add.key(self.cart_key(customer_id));
        call.key(self.sku_key(sku))
            .arg(sku)
            .arg(quantity)
            .arg(max)
            .arg(now.timestamp_micros())
            .arg(customer_id.to_string());
        let added: i64 = self.call(call.invoke_async(&mut conn)).await?;
        Ok(added == 1)
    }

    pub(super) async fn set_quantity(
        &self,
        customer_id: Uuid,
        sku: &str,
        quantity: i64,
    ) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let mut call = self.set_quantity.key(self.cart_key(customer_id));
        call.arg(sku).arg(quantity);
        let set: i64 = self.call(call.invoke_async(&mut conn)).await?;
        Ok(set == 1)
    }

    pub(super) async fn remove(&self, customer_id: Uuid, sku: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.cart_key(customer_id), sku)
            .ignore()
            .srem(self.sku_key(sku), customer_id.to_string())
            .ignore();
        self.call(pipe.exec_async(&mut conn)).await
    }

    /// Takes what `order_id` bought out of the cart, once per order: `false`
    /// (and no change) when the order's marker was already set.
    pub(super) async fn check_out(
        &self,
        customer_id: Uuid,
        order_id: Uuid,
        bought: &[SkuQuantity],
    ) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let mut call = self.check_out.key(self.checkout_key(order_id));
        call.key(self.cart_key(customer_id))
            .key(self.promo_key(customer_id))
            .arg(customer_id.to_string())
            .arg(CHECKOUT_MARKER_TTL_SECS);
        for b in bought.iter().filter(|b| b.quantity > 0) {
            call.key(self.sku_key(&b.sku)).arg(&b.sku).arg(b.quantity);
        }
        let first: i64 = self.call(call.invoke_async(&mut conn)).await?;
        Ok(first == 1)
    }

    /// One `PING` within the time-out. Not counted as a store error: it is
    /// the readiness check, asked every few seconds while Redis is away.
    pub(super) async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let pong: String = within(self.timeout, conn.ping()).await?;
        anyhow::ensure!(pong == "PONG", "redis answered {pong:?} to PING");
        Ok(())
    }

    /// Takes `skus` out of every cart. Repeating it has no further effect.
    pub(super) async fn remove_skus_everywhere(&self, skus: &[String]) -> anyhow::Result<()> {
        let carts = format!("{}:cart:", self.prefix);
        for sku in skus {
            loop {
                let mut conn = self.conn.clone();
                let mut call = self.purge.key(self.sku_key(sku));
                call.arg(&carts).arg(sku).arg(PURGE_BATCH);
                let taken: usize = self.call(call.invoke_async(&mut conn)).await?;
                if taken < PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// A line from its stored `"<quantity>:<added_at micros>"`.
fn line_from_value(sku: String, value: &str) -> anyhow::Result<CartLine> {
    let parsed = value.split_once(':').and_then(|(quantity, added_at)| {
        let quantity = quantity.parse::<i64>().ok()?;
        let added_at = Timestamp::from_timestamp_micros(added_at.parse::<i64>().ok()?)?;
        Some((quantity, added_at))
    });
    let Some((quantity, added_at)) = parsed else {
        anyhow::bail!("malformed cart line in Redis for SKU {sku:?}: {value:?}");
    };
    Ok(CartLine {
        sku,
        quantity,
        added_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_lines_read_back_exactly() {
        let now = mercato_kernel::time::now();
        let value = format!("{}:{}", 7, now.timestamp_micros());
        let line = line_from_value("A".into(), &value).expect("a line");
        assert_eq!(
            line,
            CartLine {
                sku: "A".into(),
                quantity: 7,
                added_at: now
            }
        );
    }

    #[test]
    fn malformed_lines_are_errors() {
        for value in ["", "7", "x:1", "7:", "7:x"] {
            assert!(line_from_value("A".into(), value).is_err(), "{value:?}");
        }
    }
}
