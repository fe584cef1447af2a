//! Inventory: stock per SKU per warehouse, and reservations with expiry.
//!
//! Stock is never negative and never oversold: every change is a
//! conditional atomic update in the store (see [`store`]), never a read
//! followed by a write. The checkout saga drives reservations through
//! [`mercato_contracts::clients::InventoryClient`]: reserve (all lines or
//! none, `main` warehouse first), release, commit and restock, each keyed by
//! the reservation id and idempotent. A sweeper releases reservations that
//! outlive their expiry. Changes publish `inventory.reserved`,
//! `inventory.released`, `inventory.committed`, `stock.changed` and
//! `stock.low` through the outbox.
//!
//! Rooms: [`domain`], [`store`], [`service`], [`routes`].

pub mod domain;
pub mod routes;
pub mod service;
pub mod store;

pub use service::InventoryService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "inventory";

// Migrations written once, for both backends.
const SKU_VERSIONS: Migration = Migration {
    version: 2,
    name: "sku_versions",
    sql: include_str!("../migrations/2_sku_versions.sql"),
};

const RESTOCKS: Migration = Migration {
    version: 3,
    name: "restocks",
    sql: include_str!("../migrations/3_restocks.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            name: "stock_reservations",
            sql: include_str!("../migrations/sqlite.sql"),
        },
        SKU_VERSIONS,
        RESTOCKS,
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "stock_reservations",
            sql: include_str!("../migrations/postgres.sql"),
        },
        SKU_VERSIONS,
        RESTOCKS,
    ],
};
