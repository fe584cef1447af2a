//! The load generator's parts, shared by the programs of this crate.

pub mod api;
pub mod memory;
pub mod phases;
pub mod stats;
