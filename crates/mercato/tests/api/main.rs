//! The black-box HTTP suite: the real server, the public API, nothing else.

#[path = "../support/mod.rs"]
mod support;

mod analytics;
mod cart;
mod catalog;
mod connections;
mod fuzz;
mod identity;
mod internal;
mod inventory;
mod notifications;
mod openapi;
mod orders;
mod platform;
mod pricing;
mod recommendations;
mod redis;
mod returns;
mod reviews;
mod search;
mod storefront;
mod subscriptions;
