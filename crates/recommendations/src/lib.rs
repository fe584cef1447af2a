//! Recommendations and experiments, built from events only. Confirmed
//! orders give the units sold per product (best sellers), who bought what,
//! and how many orders held each pair of products (`bought_together`);
//! catalog and inventory events give the products, their categories and
//! titles (`similar`: the same category, by the share of title words) and
//! whether they have stock (nothing archived or out of stock is
//! recommended). Every replica serves from that state. A signed-in
//! customer's product views and cart additions (the gateway's
//! interactions) join what they bought as their history.
//!
//! Experiments split subjects over weighted variants by a hash of the
//! experiment's key and the subject (sticky, with no state to share); the
//! first assignment counts as an exposure (`experiment.exposed`), a
//! confirmed order of an exposed customer as a conversion, and the first
//! two variants are compared by a two-proportion z-test.
//!
//! Rooms: [`domain`], [`store`], [`service`] (with the consumer), [`routes`].

pub mod domain;
pub mod routes;
pub mod service;
pub mod store;

pub use service::RecommendationsService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "recommendations";

/// Plain SQL both backends take.
const SCHEMA: Migration = Migration {
    version: 1,
    name: "model_and_experiments",
    sql: include_str!("../migrations/1_recommendations.sql"),
};

const INTERESTS: Migration = Migration {
    version: 2,
    name: "interests",
    sql: include_str!("../migrations/2_interests.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[SCHEMA, INTERESTS],
    postgres: &[SCHEMA, INTERESTS],
};
