//! Reviews: what customers who bought a product say of it. One review per
//! customer and product, from verified buyers only (who bought what comes
//! from order events); moderation holds reviews with links, words of the
//! shop's block list, or all of them (`reviews.moderation = "pre"`) for an
//! admin; helpfulness votes, one per person; rating aggregates per product
//! and per seller, moved by deltas in the transaction of each review's
//! change and told as `rating.changed`, which catalog and search apply.
//!
//! Rooms: [`domain`], [`store`], [`service`] (with its consumers), [`routes`].

pub mod domain;
pub mod routes;
pub mod service;
pub mod store;

pub use service::ReviewsService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "reviews";

/// Plain SQL both backends take.
const SCHEMA: Migration = Migration {
    version: 1,
    name: "reviews_votes_purchases_ratings",
    sql: include_str!("../migrations/1_reviews.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[SCHEMA],
    postgres: &[SCHEMA],
};
