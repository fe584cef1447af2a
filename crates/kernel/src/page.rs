//! Cursor pagination: `?limit=` (default 20, at most 100) and `?cursor=`,
//! answered as `{"items": [...], "next_cursor": "<string or null>"}`.
//!
//! A `limit` above 100 is served as 100; below 1 it is 422. A cursor is the
//! sort key of the last item of a page in base64url without padding; any
//! string of that alphabet and shape is accepted (one the server did not
//! issue just starts the page somewhere), anything else is 400
//! `invalid_cursor`.

use crate::error::ApiError;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// What a cursor looks like: base64url without padding (a length that is
/// not 1 more than a multiple of 4), or empty for the first page. The same
/// text is in the `#[param(pattern)]` of every list's query.
pub const CURSOR_PATTERN: &str = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$";

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, at least 1 (default 20); values above 100 are served as 100.
    #[param(minimum = 1, default = 20)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; empty or absent for the first.
    #[param(pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

/// A validated page request. The cursor is the sort key of the last item of
/// the previous page; lists are ordered by that key, newest first.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

impl PageQuery {
    pub fn validate(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            limit: page_limit(self.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
            after: cursor(self.cursor.as_deref())?,
        })
    }
}

/// A `limit` query parameter as text (a route that reads its parameters as
/// strings): 400 `invalid_query` when it is not an integer, otherwise as
/// [`page_limit`]; empty is absent.
pub fn limit_param(raw: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    let n = match raw {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("limit must be an integer, got {raw:?}"),
            )
        })?),
    };
    page_limit(n, default, max)
}

/// A list's `limit`: `default` when absent, 422 below 1, `max` above it.
pub fn page_limit(limit: Option<i64>, default: u32, max: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if n < 1 => Err(ApiError::validation("limit must be at least 1")),
        Some(n) => Ok(u32::try_from(n).map_or(max, |n| n.min(max))),
    }
}

/// The sort key a `cursor` carries; `None` for the first page.
pub fn cursor(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(c) => decode_cursor(c).map(Some),
    }
}

/// Decodes base64url, with or without the unused low bits of the last
/// character set. Bytes that are not UTF-8 (or are NUL, which a text column
/// cannot hold) become U+FFFD: such a key sorts somewhere, which is all a
/// cursor the server did not issue can ask for.
fn decode_cursor(c: &str) -> Result<String, ApiError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let bytes = LENIENT
        .decode(c)
        .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not valid"))?;
    Ok(String::from_utf8_lossy(&bytes).replace('\0', "\u{fffd}"))
}

pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order: the extra
    /// row only tells that there is a next page.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Self {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(|r| encode_cursor(&key(r)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_caps_and_rejects_zero() {
        let q = |limit| PageQuery {
            limit,
            cursor: None,
        };
        assert_eq!(q(None).validate().map(|p| p.limit).ok(), Some(20));
        assert_eq!(q(Some(500)).validate().map(|p| p.limit).ok(), Some(100));
        assert_eq!(
            q(Some(i64::MAX)).validate().map(|p| p.limit).ok(),
            Some(100)
        );
        assert_eq!(q(Some(7)).validate().map(|p| p.limit).ok(), Some(7));
        assert!(q(Some(0)).validate().is_err());
        assert!(q(Some(-1)).validate().is_err());
    }

    #[test]
    fn every_cursor_of_the_documented_shape_is_accepted() {
        let c = |c: &str| {
            PageQuery {
                limit: None,
                cursor: Some(c.to_owned()),
            }
            .validate()
            .map(|p| p.after)
        };
        // Not UTF-8, trailing bits set, NUL bytes: still a position.
        for ok in ["__main__", "AB", "ABC", "AAAA", "_-_-_-"] {
            let after = c(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(after.is_some_and(|a| !a.contains('\0')), "{ok}");
        }
        assert_eq!(c("").ok(), Some(None));
        // Not base64url, or a length no encoding has.
        for bad in ["%%%", "A", "AAAAA", "a=", "ab cd", "é"] {
            assert!(c(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_cursor_pattern_is_the_one_in_the_document() {
        let mut doc = String::new();
        for p in <PageQuery as IntoParams>::into_params(|| None) {
            doc.push_str(&serde_json::to_string(&p).unwrap_or_default());
        }
        let escaped = serde_json::to_string(CURSOR_PATTERN).unwrap_or_default();
        assert!(doc.contains(&escaped), "{doc}");
    }

    #[test]
    fn cursor_round_trips_and_garbage_is_rejected() {
        let rows: Vec<u32> = (0..5).collect();
        let page = Page::from_rows(rows, 3, |r| r.to_string());
        assert_eq!(page.items, vec![0, 1, 2]);
        let cursor = page.next_cursor.expect("has next page");
        let req = PageQuery {
            limit: None,
            cursor: Some(cursor),
        }
        .validate()
        .expect("valid cursor");
        assert_eq!(req.after.as_deref(), Some("2"));
        let bad = PageQuery {
            limit: None,
            cursor: Some("%%%".into()),
        };
        assert!(bad.validate().is_err());
    }
}
