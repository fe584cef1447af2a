//! Subscriptions: recurring orders. A customer subscribes to some SKUs
//! every week or month; the first order is placed at once and one per
//! period after, each through the orders context's checkout saga
//! ([`mercato_contracts::clients::OrdersClient`]), without a cart.
//!
//! A period never gets two orders, however many replicas run the scheduler
//! and however often an admin renews: every order is claimed first, by a
//! row keyed by (subscription, period, attempt) that goes in only while no
//! order of the period is live ([`store::SubscriptionsStore::claim`]), and
//! the order's id is chosen with the claim, so that repeating the call to
//! orders places that one order. A declined order is tried again after a
//! pause (three attempts in all); after the last the subscription is
//! `past_due` and `subscription.past_due` tells the customer.
//!
//! Rooms: [`domain`], [`store`], [`service`] (with the scheduler and the
//! consumers of order outcomes and erasures), [`routes`].

pub mod domain;
pub mod routes;
pub mod service;
pub mod store;

pub use service::SubscriptionsService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "subscriptions";

/// Plain SQL both backends take.
const SCHEMA: Migration = Migration {
    version: 1,
    name: "subscriptions_and_their_orders",
    sql: include_str!("../migrations/1_subscriptions.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[SCHEMA],
    postgres: &[SCHEMA],
};
