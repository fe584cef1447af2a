//! Notifications: telling people what happened to their orders.
//!
//! A recipient directory is kept from `user.registered`. Each
//! `order.confirmed`, `order.cancelled`, `order.shipped` and `order.refunded`
//! becomes exactly one notification for the order's customer, however often
//! the event is delivered (the inbox claim and a unique key on the event and
//! template, in one transaction), rendered from templates compiled into the
//! binary. A background dispatcher delivers them through a [`Channel`]
//! (SMTP, or a local JSON-lines sink), retries failures with backoff and
//! jitter, and publishes `notification.sent` or `notification.failed`
//! through the outbox with each final outcome.
//!
//! Rooms: [`domain`], [`templates`], [`store`], [`service`] (the event
//! consumers), [`dispatcher`], [`channel`], [`routes`].

pub mod channel;
pub mod dispatcher;
pub mod domain;
pub mod routes;
pub mod service;
pub mod store;
pub mod templates;

pub use channel::Channel;
pub use dispatcher::DispatcherConfig;
pub use service::NotificationsService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "notifications";

/// Whether a recipient takes e-mail. Plain SQL both backends take.
const EMAIL_PREFERENCE: Migration = Migration {
    version: 2,
    name: "recipient_email_preference",
    sql: "ALTER TABLE recipients ADD COLUMN email_enabled BIGINT NOT NULL DEFAULT 1",
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            name: "recipients_notifications",
            sql: include_str!("../migrations/sqlite.sql"),
        },
        EMAIL_PREFERENCE,
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "recipients_notifications",
            sql: include_str!("../migrations/postgres.sql"),
        },
        EMAIL_PREFERENCE,
    ],
};
