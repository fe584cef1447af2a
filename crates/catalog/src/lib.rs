//! Catalog: products, their variants (SKUs), categories and prices.
//!
//! Products are event-sourced: [`domain::ProductAggregate`] decides which
//! [`domain::CatalogEvent`]s a command causes; the store appends them to the
//! event store with optimistic concurrency and, in the same transaction,
//! updates the current-state projection the API reads and writes the
//! integration events (`product.created`, `product.updated`,
//! `price.changed`, `product.archived`) to the outbox.
//!
//! Rooms: [`domain`], [`store`], [`service`], [`routes`].

pub mod cache;
pub mod domain;
pub mod routes;
pub mod service;
pub mod store;

pub use service::CatalogService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "catalog";

/// Categories with parents, and what products keep of them and of their
/// images. Plain SQL both backends take.
const CATEGORIES: Migration = Migration {
    version: 2,
    name: "categories_and_images",
    sql: include_str!("../migrations/2_categories.sql"),
};

/// The rating reviews tell of each product. Plain SQL both backends take.
const RATINGS: Migration = Migration {
    version: 3,
    name: "product_ratings",
    sql: include_str!("../migrations/3_ratings.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            name: "products",
            sql: include_str!("../migrations/sqlite.sql"),
        },
        CATEGORIES,
        RATINGS,
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "products",
            sql: include_str!("../migrations/postgres.sql"),
        },
        CATEGORIES,
        RATINGS,
    ],
};
