//! Time is stored as RFC 3339 text in UTC with microsecond precision, which
//! sorts correctly as text and reads back identically on SQLite and PostgreSQL.

use chrono::{DateTime, SecondsFormat, Utc};

pub type Timestamp = DateTime<Utc>;

pub fn now() -> Timestamp {
    // Truncated to microseconds so that a value written and read back is equal.
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

pub fn to_db(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn from_db(s: &str) -> Result<Timestamp, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}
