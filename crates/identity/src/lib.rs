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

/// Failed sign-ins per account, counted in a time window (see
/// [`service::LoginThrottle`]); plain SQL that both backends take. The
/// subject is a hash of the address, so the table holds nothing personal.
const LOGIN_FAILURES: Migration = Migration {
    version: 2,
    name: "login_failures",
    sql: "CREATE TABLE login_failures (
        subject TEXT PRIMARY KEY,
        failures BIGINT NOT NULL,
        window_start TEXT NOT NULL
    )",
};

/// What a user wants to be told, and how. Plain SQL both backends take.
const PREFERENCES: Migration = Migration {
    version: 3,
    name: "user_preferences",
    sql: "CREATE TABLE user_preferences (
        user_id TEXT PRIMARY KEY,
        email BIGINT NOT NULL,
        sms BIGINT NOT NULL,
        push BIGINT NOT NULL,
        marketing BIGINT NOT NULL,
        updated_at TEXT NOT NULL
    )",
};

/// A user's saved addresses. Plain SQL both backends take.
const ADDRESSES: Migration = Migration {
    version: 4,
    name: "addresses",
    sql: "CREATE TABLE addresses (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        address TEXT NOT NULL,
        is_default BIGINT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX addresses_user ON addresses (user_id, id)",
};

/// Accounts an admin has disabled. Plain SQL both backends take.
const DISABLED: Migration = Migration {
    version: 5,
    name: "disabled_users",
    sql: "ALTER TABLE users ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0",
};

/// When a user erased their account (`DELETE /me`).
const ERASED: Migration = Migration {
    version: 6,
    name: "erased_users",
    sql: "ALTER TABLE users ADD COLUMN erased_at TEXT",
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            name: "users",
            sql: include_str!("../migrations/sqlite.sql"),
        },
        LOGIN_FAILURES,
        PREFERENCES,
        ADDRESSES,
        DISABLED,
        ERASED,
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "users",
            sql: include_str!("../migrations/postgres.sql"),
        },
        LOGIN_FAILURES,
        PREFERENCES,
        ADDRESSES,
        DISABLED,
        ERASED,
    ],
};
