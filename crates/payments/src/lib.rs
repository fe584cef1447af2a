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

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[Migration {
        version: 1,
        name: "intents_and_ledger",
        sql: include_str!("../migrations/sqlite.sql"),
    }],
    postgres: &[Migration {
        version: 1,
        name: "intents_and_ledger",
        sql: include_str!("../migrations/postgres.sql"),
    }],
};
