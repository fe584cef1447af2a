//! Identity: who is calling. Users with argon2id password hashes, the roles
//! customer, seller and admin, and the signed access tokens every other
//! context verifies (see `mercato_kernel::auth`).
//!
//! Rooms: [`domain`] (validated email, password rules, hashing), [`store`]
//! (users and the outbox), [`service`] (register, log in, look up),
//! [`routes`] (the HTTP API).

pub mod domain;
pub mod hashing;
pub mod routes;
pub mod service;
pub mod store;

pub use service::IdentityService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "identity";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[Migration {
        version: 1,
        name: "users",
        sql: include_str!("../migrations/sqlite.sql"),
    }],
    postgres: &[Migration {
        version: 1,
        name: "users",
        sql: include_str!("../migrations/postgres.sql"),
    }],
};
