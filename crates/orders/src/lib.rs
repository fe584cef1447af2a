//! Orders: the order lifecycle, its audit trail, and the checkout saga that
//! orchestrates inventory and payments.
//!
//! A checkout stores the order (`pending`), its saga and the answer to its
//! `Idempotency-Key` in one transaction, with the totals of a quote from
//! the pricing context frozen into it, then [`saga::SagaRunner`] drives the
//! steps: reserve stock, redeem the promotion code, take payment, commit the
//! reservation, confirm the order, empty the cart. Each step is idempotent (keyed by the order id) and
//! has an undo; a step that fails, or does not succeed before the saga's
//! deadline, turns the saga around: refund, release, cancel. The saga's
//! state is stored after every step, and a lease lets exactly one runner
//! drive a saga at a time, so after a crash any runner resumes it.
//!
//! Returns and partial refunds ([`returns`]) run sagas of their own on the
//! same runner.
//!
//! Rooms: [`domain`], [`store`], [`saga`], [`returns`], [`service`],
//! [`routes`], [`watch`].

pub mod domain;
pub mod returns;
pub mod routes;
pub mod saga;
pub mod service;
pub mod store;
pub mod watch;

pub use saga::SagaRunner;
pub use service::OrdersService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "orders";

/// One cart, one order: a customer has at most one order pending, so that
/// a cart cannot be checked out again while its order is being placed.
/// Plain SQL that both backends take.
const ONE_PENDING_ORDER: Migration = Migration {
    version: 2,
    name: "one_pending_order_per_customer",
    sql: "CREATE UNIQUE INDEX orders_one_pending ON orders (customer_id) WHERE status = 'pending'",
};

/// The totals a checkout froze from its quote (JSON), and how much of the
/// order was refunded. Orders placed before have neither: their total was
/// their subtotal.
const PRICING: Migration = Migration {
    version: 3,
    name: "order_pricing",
    sql: "ALTER TABLE orders ADD COLUMN pricing TEXT;
          ALTER TABLE orders ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0",
};

/// Returns and partial refunds (see [`returns`]): what of each order's total
/// refunds have claimed, every refund, every return. Plain SQL both
/// backends take.
const RETURNS: Migration = Migration {
    version: 4,
    name: "returns_and_refunds",
    sql: "ALTER TABLE orders ADD COLUMN refund_claimed BIGINT NOT NULL DEFAULT 0;
          UPDATE orders SET refund_claimed = refunded_amount;
          UPDATE orders SET refund_claimed = total_amount WHERE status IN ('cancelled', 'refunded');
          CREATE TABLE refunds (
              id TEXT PRIMARY KEY,
              order_id TEXT NOT NULL,
              amount BIGINT NOT NULL,
              reason TEXT,
              return_id TEXT UNIQUE,
              status TEXT NOT NULL,
              created_at TEXT NOT NULL,
              updated_at TEXT NOT NULL
          );
          CREATE INDEX refunds_order ON refunds (order_id);
          CREATE TABLE returns (
              id TEXT PRIMARY KEY,
              order_id TEXT NOT NULL,
              customer_id TEXT NOT NULL,
              status TEXT NOT NULL,
              items TEXT NOT NULL,
              reason TEXT NOT NULL,
              refund_amount BIGINT NOT NULL,
              currency TEXT NOT NULL,
              rejection_reason TEXT,
              warehouse TEXT,
              created_at TEXT NOT NULL,
              updated_at TEXT NOT NULL
          );
          CREATE INDEX returns_order ON returns (order_id, id)",
};

/// Orders placed for a subscription: they come from no cart, so the one
/// pending order per customer (a cart's) does not count them. Plain SQL
/// both backends take.
const SUBSCRIPTION_ORDERS: Migration = Migration {
    version: 5,
    name: "subscription_orders",
    sql: "ALTER TABLE orders ADD COLUMN subscription_id TEXT;
          DROP INDEX orders_one_pending;
          CREATE UNIQUE INDEX orders_one_pending ON orders (customer_id)
              WHERE status = 'pending' AND subscription_id IS NULL",
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            name: "orders_and_sagas",
            sql: include_str!("../migrations/sqlite.sql"),
        },
        ONE_PENDING_ORDER,
        PRICING,
        RETURNS,
        SUBSCRIPTION_ORDERS,
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "orders_and_sagas",
            sql: include_str!("../migrations/postgres.sql"),
        },
        ONE_PENDING_ORDER,
        PRICING,
        RETURNS,
        SUBSCRIPTION_ORDERS,
    ],
};
