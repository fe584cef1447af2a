//! Pricing: what a cart or an order costs. It owns promotions (codes, their
//! limits and redemptions), shipping methods and tax rates, and answers
//! quotes through [`mercato_contracts::clients::PricingClient`]: the cart
//! asks for its totals, the checkout for the totals it freezes into the
//! order, always `total = subtotal - discount_total + shipping_total +
//! tax_total` ([`domain::quote`]).
//!
//! A code is redeemed by the checkout saga with a conditional atomic update
//! ([`store::PricingStore::redeem`]): `times_used` never passes
//! `usage_limit`, nor a customer's uses `per_customer_limit`, however many
//! checkouts race. A redemption is keyed by the order, so repeating it has
//! no second effect, and giving it back (a cancelled order) is idempotent
//! too. Both publish events (`promotion.redeemed`, `promotion.released`).
//!
//! Rooms: [`domain`], [`store`], [`service`], [`routes`].

pub mod domain;
pub mod routes;
pub mod service;
pub mod store;

pub use service::PricingService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "pricing";

/// Plain SQL both backends take.
const SCHEMA: Migration = Migration {
    version: 1,
    name: "promotions_shipping_tax",
    sql: include_str!("../migrations/1_pricing.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[SCHEMA],
    postgres: &[SCHEMA],
};
