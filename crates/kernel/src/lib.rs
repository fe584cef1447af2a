//! Shared building blocks of every Mercato context.
//!
//! Contexts never depend on each other; they share only this crate and
//! `mercato-contracts`. The kernel holds what is the same everywhere: ids,
//! money, the error type every endpoint answers with, caller authentication,
//! telemetry, and the storage plumbing behind the architecture invariants
//! (the transactional outbox, the consumer inbox, idempotency keys and the
//! event bus).

pub mod auth;
pub mod bus;
pub mod cache;
pub mod db;
pub mod error;
pub mod event;
pub mod http;
pub mod id;
pub mod idempotency;
pub mod inbox;
pub mod internal;
pub mod money;
pub mod number;
pub mod outbox;
pub mod page;
pub mod resilience;
pub mod slug;
pub mod telemetry;
pub mod time;

pub use error::{ApiError, ApiResult};
pub use event::Envelope;
pub use money::{Currency, Money};
