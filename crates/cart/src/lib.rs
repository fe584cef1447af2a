//! Cart: one cart per customer.
//!
//! The store keeps only what the customer chose: SKU, quantity and when it
//! was first added. Prices, titles and availability belong to the catalog,
//! so every read prices the lines afresh through
//! [`mercato_contracts::clients::CatalogClient`]; a line whose product was
//! archived or whose SKU is gone is left out of the priced cart, and the
//! `product.archived` consumer ([`consumer`]) removes it for good.
//!
//! The lines are kept in the context's database or in Redis ([`store`]);
//! the outbox and inbox are in the database either way.
//!
//! A cart holds at most one promotion code; its discount comes from the
//! pricing context ([`mercato_contracts::clients::PricingClient`]), which
//! computes every total of carts and orders.
//!
//! Checkout reads the cart and, once the order is confirmed, takes the
//! bought quantities out of it through
//! [`mercato_contracts::clients::CartClient`], once per order, publishing
//! `cart.checked_out`.
//!
//! Rooms: [`domain`], [`store`], [`service`], [`routes`], [`consumer`].

pub mod consumer;
pub mod domain;
pub mod routes;
pub mod service;
pub mod store;

pub use service::CartService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "cart";

/// The code and the currency a customer put on the cart: plain SQL both
/// backends take.
const CART_PROMOTIONS: Migration = Migration {
    version: 2,
    name: "cart_promotions",
    sql: include_str!("../migrations/2_cart_promotions.sql"),
};
const CART_CURRENCIES: Migration = Migration {
    version: 3,
    name: "cart_currencies",
    sql: include_str!("../migrations/3_cart_currencies.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            name: "cart_lines",
            sql: include_str!("../migrations/sqlite.sql"),
        },
        CART_PROMOTIONS,
        CART_CURRENCIES,
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "cart_lines",
            sql: include_str!("../migrations/postgres.sql"),
        },
        CART_PROMOTIONS,
        CART_CURRENCIES,
    ],
};
