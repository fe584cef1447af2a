//! Payments: one payment intent per order, charged through a
//! [`provider::PaymentProvider`], with captures and refunds recorded in an
//! append-only ledger and published as events.
//!
//! Every call to the provider has a time-out, sits behind a circuit breaker
//! and is retried only when the request provably never left (a refused
//! connection). A charge that times out is voided at the provider by its
//! idempotency key before it is reported failed, so a time-out never leaves a
//! charge behind.
//!
//! [`testprovider`] is the built-in test provider: a real HTTP service, run
//! in process on a loopback port in embedded mode or on its own with
//! `mercato test-provider`.

pub mod provider;
pub mod routes;
pub mod service;
pub mod store;
pub mod testprovider;

pub use service::PaymentsService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "payments";

/// Partial refunds: an intent counts what was refunded of it, and the ledger
/// takes one entry per provider reference (a capture's charge id, a
/// refund's key) instead of one per kind. Plain SQL both backends take.
const PARTIAL_REFUNDS: Migration = Migration {
    version: 2,
    name: "partial_refunds",
    sql: "ALTER TABLE payment_intents ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0;
          UPDATE payment_intents SET refunded_amount = amount WHERE status = 'refunded';
          CREATE TABLE ledger (
              id TEXT PRIMARY KEY,
              intent_id TEXT NOT NULL,
              kind TEXT NOT NULL,
              amount BIGINT NOT NULL,
              currency TEXT NOT NULL,
              provider_ref TEXT NOT NULL,
              created_at TEXT NOT NULL,
              UNIQUE (intent_id, provider_ref)
          );
          INSERT INTO ledger (id, intent_id, kind, amount, currency, provider_ref, created_at)
              SELECT id, intent_id, kind, amount, currency, provider_ref, created_at FROM ledger_entries;
          DROP TABLE ledger_entries;
          ALTER TABLE ledger RENAME TO ledger_entries",
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            name: "intents_and_ledger",
            sql: include_str!("../migrations/sqlite.sql"),
        },
        PARTIAL_REFUNDS,
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "intents_and_ledger",
            sql: include_str!("../migrations/postgres.sql"),
        },
        PARTIAL_REFUNDS,
    ],
};
