//! The black-box HTTP suite: the real server, the public API, nothing else.

#[path = "../support/mod.rs"]
mod support;

mod catalog;
mod identity;
mod platform;
