//! Identifiers. Every entity id is a UUIDv7: unique without coordination and
//! ordered by creation time, so ids double as stable list cursors.

use uuid::Uuid;

/// A new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Parses an id taken from a path or body; `None` when it is not a UUID.
pub fn parse_id(raw: &str) -> Option<Uuid> {
    Uuid::parse_str(raw).ok()
}
