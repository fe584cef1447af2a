//! Cursor pagination: `?limit=` (default 20, at most 100) and `?cursor=`,
//! answered as `{"items": [...], "next_cursor": "<string or null>"}`.

use crate::error::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
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
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(0) => return Err(ApiError::validation("limit must be at least 1")),
            Some(n) => n.min(MAX_LIMIT),
        };
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c)?),
        };
        Ok(PageRequest { limit, after })
    }
}

fn decode_cursor(c: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not valid"))
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
        assert!(q(Some(0)).validate().is_err());
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
