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

/// What an id in a request body looks like: a UUID in its hyphenated form.
/// The same text is in the `pattern` of such fields of the OpenAPI
/// document; [`strict_id`] takes exactly what it matches.
pub const ID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A UUID in its hyphenated form only (not braced, URN or without hyphens).
pub fn strict_id(raw: &str) -> Option<Uuid> {
    let hyphens_in_place = raw.len() == 36
        && raw
            .bytes()
            .enumerate()
            .all(|(i, b)| matches!(i, 8 | 13 | 18 | 23) == (b == b'-'));
    if hyphens_in_place {
        Uuid::parse_str(raw).ok()
    } else {
        None
    }
}

/// An optional id in a request body (`null` or absent is `None`), as
/// [`strict_id`] takes it.
pub fn optional_id<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Uuid>, D::Error> {
    use serde::Deserialize;
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(s) => strict_id(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an id"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyphenated_uuids_are_ids() {
        let id = new_id();
        assert_eq!(strict_id(&id.to_string()), Some(id));
        assert_eq!(strict_id(&id.to_string().to_uppercase()), Some(id));
        for bad in [
            String::new(),
            id.simple().to_string(),
            format!("{{{id}}}"),
            id.urn().to_string(),
            format!("{id} "),
        ] {
            assert_eq!(strict_id(&bad), None, "{bad}");
        }
    }
}
