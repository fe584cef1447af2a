//! The Mercato binary's library: settings, the composition root and the
//! demo data, shared by `main.rs` and the black-box tests.

mod access;
pub mod admin;
pub mod app;
pub mod config;
pub mod demo;
pub mod distributed;
mod proxy;

pub use app::Application;
pub use config::Settings;
