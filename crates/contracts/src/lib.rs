//! What Mercato contexts agree on, and all they agree on: the payloads of the
//! events they publish, the DTOs that cross a context boundary, and the
//! client traits through which one context calls another. In embedded mode a
//! client trait is implemented by the other context's service in process; in
//! distributed mode by an HTTP client. Callers cannot tell the difference.

pub mod clients;
pub mod events;
pub mod http;
pub mod interactions;
pub mod internal;
pub mod types;
