//! The store suite: every test runs the same assertions against SQLite and
//! PostgreSQL (a fresh database per test on the server named by
//! `MERCATO_TEST_POSTGRES_URL`, dropped afterwards; set
//! `MERCATO_TEST_SKIP_POSTGRES=1` to run SQLite only).

mod support;

mod analytics;
mod bus;
mod cancellation;
mod cart;
mod catalog;
mod identity;
mod notifications;
mod orders_payments;
mod pricing;
mod recommendations;
mod reviews;
mod subscriptions;
