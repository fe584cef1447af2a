//! Idempotency keys (invariant 7): the first request with a key stores its
//! answer in the same transaction as its effect; a replay with the same body
//! gets that answer back, a replay with another body is a 409.

use crate::db::{Db, Tx};
use crate::error::ApiError;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

pub const HEADER: &str = "idempotency-key";

/// What a key may be: 1 to 255 visible ASCII characters (`!` to `~`, no
/// spaces). The same text is the header's `pattern` in the OpenAPI document.
pub const KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// The `Idempotency-Key` header, required: 400 `idempotency_key_required`
/// when missing, 400 `invalid_idempotency_key` unless it is 1 to 255
/// visible ASCII characters.
pub fn require_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let raw = headers.get(HEADER).ok_or_else(|| {
        ApiError::bad_request(
            "idempotency_key_required",
            "this request needs an Idempotency-Key header",
        )
    })?;
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (b'!'..=b'~').contains(b)) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters, without spaces",
        ));
    }
    // Visible ASCII is UTF-8.
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// A fingerprint of what the request asked for.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// A stored answer.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// A stored answer goes out as it was stored: its status, its JSON body.
impl axum::response::IntoResponse for StoredResponse {
    fn into_response(self) -> axum::response::Response {
        let status =
            axum::http::StatusCode::from_u16(self.status).unwrap_or(axum::http::StatusCode::OK);
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response()
    }
}

/// Looks a key up: `Ok(None)` when it is new, the stored answer when the same
/// request was seen, 409 when the key was used for a different request.
pub async fn lookup(
    db: &Db,
    scope: &str,
    key: &str,
    request_hash: &str,
) -> Result<Option<StoredResponse>, ApiError> {
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = $1 AND idem_key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(db.pool())
    .await?;
    match row {
        None => Ok(None),
        Some((hash, _, _)) if hash != request_hash => Err(ApiError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request",
        )),
        Some((_, status, body)) => Ok(Some(StoredResponse {
            status: u16::try_from(status).unwrap_or(200),
            body,
        })),
    }
}

/// Stores the answer in the transaction that made the effect. `false` when
/// another request with the same key committed first: the caller rolls back
/// and answers with [`lookup`].
pub async fn record(
    tx: &mut Tx,
    scope: &str,
    key: &str,
    request_hash: &str,
    response: &StoredResponse,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO idempotency_keys (scope, idem_key, request_hash, status, response, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(i64::from(response.status))
    .bind(&response.body)
    .bind(crate::time::to_db(&crate::time::now()))
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Fills in the answer of a key recorded with an empty one: for effects
/// whose answer is known only after they have run. The first answer written
/// stays; returns the stored answer, which every request with the key gets.
pub async fn complete(
    db: &Db,
    scope: &str,
    key: &str,
    response: &StoredResponse,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    db.execute(
        sqlx::query(
            "UPDATE idempotency_keys SET status = $3, response = $4
             WHERE scope = $1 AND idem_key = $2 AND response = ''",
        )
        .bind(scope)
        .bind(key)
        .bind(i64::from(response.status))
        .bind(&response.body),
    )
    .await?;
    stored(db, scope, key).await
}

/// [`complete`] inside the transaction of the effect's last part, so that
/// the answer and that part commit together.
pub async fn complete_in(
    tx: &mut Tx,
    scope: &str,
    key: &str,
    response: &StoredResponse,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, response = $4
         WHERE scope = $1 AND idem_key = $2 AND response = ''",
    )
    .bind(scope)
    .bind(key)
    .bind(i64::from(response.status))
    .bind(&response.body)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The answer stored for a key, if any (without checking the request).
async fn stored(db: &Db, scope: &str, key: &str) -> Result<Option<StoredResponse>, sqlx::Error> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT status, response FROM idempotency_keys WHERE scope = $1 AND idem_key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(status, body)| StoredResponse {
        status: u16::try_from(status).unwrap_or(200),
        body,
    }))
}

/// Waits up to `patience` for the request that holds a key to fill in its
/// answer (see [`complete`]); `None` if it has not by then.
pub async fn completed(
    db: &Db,
    scope: &str,
    key: &str,
    patience: std::time::Duration,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(answer) = stored(db, scope, key).await? {
            if !answer.body.is_empty() {
                return Ok(Some(answer));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn key(raw: &[u8]) -> Result<String, String> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(raw) {
            headers.insert(HEADER, v);
        }
        require_key(&headers).map_err(|e| e.code.into_owned())
    }

    #[test]
    fn keys_are_1_to_255_visible_ascii_characters() {
        assert_eq!(key(b"order-1"), Ok("order-1".to_owned()));
        assert_eq!(key(b"!~"), Ok("!~".to_owned()));
        assert!(key("k".repeat(255).as_bytes()).is_ok());
        for bad in [
            "k".repeat(256).into_bytes(),
            b"two words".to_vec(),
            b"tab\there".to_vec(),
            "caf\u{e9}".as_bytes().to_vec(),
            b"".to_vec(),
        ] {
            assert_eq!(
                key(&bad),
                Err("invalid_idempotency_key".to_owned()),
                "{bad:?}"
            );
        }
        assert_eq!(
            require_key(&HeaderMap::new()).map_err(|e| e.code.into_owned()),
            Err("idempotency_key_required".to_owned())
        );
    }
}
