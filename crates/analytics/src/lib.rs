//! Analytics: reports on what the shop sells and how visitors get there,
//! built from events only. Interactions come from the gateway (product
//! views, searches with their result counts, cart additions, checkouts) and
//! from clients (`POST /events`); orders' events give placed and confirmed
//! orders with their lines, and refunds; catalog's events which seller each
//! product is of. Reports: sales per period, top products, the funnel from
//! views to confirmed orders, and search terms, for the shop (admins) and
//! for each seller's own products; JSON, or CSV when asked.
//!
//! Rooms: [`domain`] (ranges, periods, report shapes, CSV), [`store`],
//! [`service`] (with the consumer), [`routes`].

pub mod domain;
pub mod routes;
pub mod service;
pub mod store;

pub use service::AnalyticsService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "analytics";

/// Plain SQL both backends take.
const SCHEMA: Migration = Migration {
    version: 1,
    name: "interactions_orders_refunds",
    sql: include_str!("../migrations/1_analytics.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[SCHEMA],
    postgres: &[SCHEMA],
};
