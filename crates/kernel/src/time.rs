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

/// What a time in a request body looks like: RFC 3339 with an upper-case
/// `T` and `Z` (or an offset), seconds, at most nine digits of fraction,
/// and a date the calendar has. The same text is in the `pattern` of every
/// such field of the OpenAPI document, and [`parse_instant`] takes exactly
/// what it matches.
pub const INSTANT_PATTERN: &str = r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$";

/// A time from a request, as [`INSTANT_PATTERN`] describes it; `None` for
/// anything else (a lower-case `t`, a leap second, February 30th).
pub fn parse_instant(raw: &str) -> Option<Timestamp> {
    let b = raw.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|d| d.len() == range.len() && d.iter().all(u8::is_ascii_digit))
    };
    let number = |range: std::ops::Range<usize>| {
        b.get(range).map_or(99, |d| {
            d.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'))
        })
    };
    let shaped = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19)
        && number(11..13) <= 23
        && number(14..16) <= 59
        && number(17..19) <= 59;
    if !shaped {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let fraction = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&fraction) {
            return None;
        }
        i += 1 + fraction;
    }
    let zone_ok = match b.get(i) {
        Some(b'Z') => b.len() == i + 1,
        Some(b'+' | b'-') => {
            b.len() == i + 6
                && digits(i + 1..i + 3)
                && b[i + 3] == b':'
                && digits(i + 4..i + 6)
                && number(i + 1..i + 3) <= 23
                && number(i + 4..i + 6) <= 59
        }
        _ => false,
    };
    if !zone_ok {
        return None;
    }
    // The calendar: months and days that exist.
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An optional time in a request body (`null` or absent is `None`), as
/// [`parse_instant`] takes it.
pub fn optional_instant<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Timestamp>, D::Error> {
    use serde::Deserialize;
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(s) => parse_instant(&s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_taken_exactly_as_the_pattern_says() {
        for ok in [
            "2026-12-01T00:00:00Z",
            "2024-02-29T23:59:59.123456789+01:00",
            "2000-02-29T12:00:00-05:30",
            "0001-01-01T00:00:00Z",
        ] {
            assert!(parse_instant(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01t00:00:00Z",
            "2026-12-01T00:00:00z",
            "2026-12-01 00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T00:00:60Z",
            "2026-12-01T00:00:00.Z",
            "2026-12-01T00:00:00.1234567890Z",
            "2026-12-01T00:00:00+24:00",
            "2026-12-01T00:00:00+0100",
            "2026-12-01T00:00:00Z ",
        ] {
            assert!(parse_instant(bad).is_none(), "{bad:?}");
        }
    }
}
