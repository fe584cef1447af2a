//! Programs that drive a running Mercato server over its public HTTP API:
//! `mercato-bench` (throughput and latency, `scripts/bench`) and
//! `mercato-soak` (sustained mixed traffic with hang-ups, slow clients and
//! CPU contention, then an audit of the shop, `scripts/soak`).

pub mod api;
pub mod memory;
pub mod phases;
pub mod soak;
pub mod stats;
